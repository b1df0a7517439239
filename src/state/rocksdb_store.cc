// RocksDbStore: the embedded RocksDB instance behind the keyed state of one subtask, and
// RocksDbStateOptions::Validate. See include/sluice/internal/rocksdb_store.h.
//
// Durability comes from native checkpoints, not from the WAL: writes skip the WAL and
// CreateNativeCheckpoint flushes the memtables first.
//
// TTL: every column family gets its own compaction-filter factory (owned through the column
// family options, so it is there whether the family was created now or found on disk at Open).
// ColumnFamily() sets the factory's layout and ttl; each compaction takes a snapshot of them and
// of the clock, so the filter itself needs no synchronization.
#include <sluice/internal/rocksdb_store.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "rocksdb/cache.h"
#include "rocksdb/compaction_filter.h"
#include "rocksdb/convenience.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/status.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_buffer_manager.h"

#include <sluice/core/status.h>
#include <sluice/internal/job_failure.h>

namespace sluice {

namespace {

absl::Status BadField(const char* field, const char* requirement, int64_t got) {
  return absl::InvalidArgumentError(
      absl::StrCat("RocksDbStateOptions.", field, " must be ", requirement, ", got ", got));
}

}  // namespace

absl::Status RocksDbStateOptions::Validate() const {
  if (block_cache_bytes <= 0) return BadField("block_cache_bytes", "> 0", block_cache_bytes);
  if (write_buffer_bytes <= 0) return BadField("write_buffer_bytes", "> 0", write_buffer_bytes);
  if (max_write_buffer_number < 1) {
    return BadField("max_write_buffer_number", ">= 1", max_write_buffer_number);
  }
  if (write_buffer_budget_bytes <= 0) {
    return BadField("write_buffer_budget_bytes", "> 0", write_buffer_budget_bytes);
  }
  if (block_size_bytes < 1024) return BadField("block_size_bytes", ">= 1024", block_size_bytes);
  // RocksDB keeps the block size in 32 bits internally.
  if (block_size_bytes > (int64_t{1} << 30)) {
    return BadField("block_size_bytes", "<= 1073741824", block_size_bytes);
  }
  if (background_threads < 1) return BadField("background_threads", ">= 1", background_threads);
  if (window_cache_bytes < 0) return BadField("window_cache_bytes", ">= 0", window_cache_bytes);
  return absl::OkStatus();
}

namespace internal {

struct RocksDbResources {
  std::shared_ptr<rocksdb::Cache> block_cache;
  // Charged to block_cache, so memtables and blocks share one memory bound.
  std::shared_ptr<rocksdb::WriteBufferManager> write_buffer_manager;
  // max_background_jobs of every instance. RocksDB sizes the process-wide pools of
  // rocksdb::Env::Default() to the largest value any open instance asks for.
  int background_threads = 1;
};

std::shared_ptr<RocksDbResources> MakeRocksDbResources(const RocksDbStateOptions& options) {
  // Open() validates the options; clamp here so a caller that skipped Validate() still gets
  // working (if small) resources rather than a RocksDB assertion.
  auto resources = std::make_shared<RocksDbResources>();
  const int64_t blocks = std::max<int64_t>(options.block_cache_bytes, 1);
  const int64_t memtables = std::max<int64_t>(options.write_buffer_budget_bytes, 1);
  // The memtables are charged to the cache, so its capacity is both budgets: blocks keep
  // block_cache_bytes however full the memtables are (with the memtables taking the whole of a
  // shared capacity, filter and index blocks were evicted and re-read from the files at every
  // get). Index and filter blocks go to the high-priority pool, as Flink's managed memory does.
  rocksdb::LRUCacheOptions cache;
  cache.capacity = static_cast<size_t>(blocks + memtables);
  cache.high_pri_pool_ratio = 0.1;
  resources->block_cache = rocksdb::NewLRUCache(cache);
  resources->write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(
      static_cast<size_t>(memtables), resources->block_cache);
  resources->background_threads = std::max(options.background_threads, 1);
  return resources;
}

namespace {

// ---- List encoding -------------------------------------------------------------------------

// Reads a varint32 (LEB128) at *pos; false if truncated or longer than 32 bits.
bool ReadVarint32(std::string_view in, size_t* pos, uint32_t* value) {
  uint32_t result = 0;
  for (int shift = 0; shift <= 28; shift += 7) {
    if (*pos >= in.size()) return false;
    const auto byte = static_cast<uint8_t>(in[(*pos)++]);
    if (shift == 28 && (byte & 0xF0) != 0) return false;  // Does not fit in 32 bits.
    result |= static_cast<uint32_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return true;
    }
  }
  return false;
}

// Calls fn(record, element) for each [varint32 length][element] record of `encoded`, where
// `record` includes the length prefix. Stops and returns false at the first malformed record.
template <typename Fn>
bool ForEachListRecord(std::string_view encoded, Fn&& fn) {
  size_t pos = 0;
  while (pos < encoded.size()) {
    const size_t start = pos;
    uint32_t length = 0;
    if (!ReadVarint32(encoded, &pos, &length)) return false;
    if (length > encoded.size() - pos) return false;
    fn(encoded.substr(start, pos - start + length), encoded.substr(pos, length));
    pos += length;
  }
  return true;
}

int64_t DecodeFixed64Le(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return static_cast<int64_t>(v);
}

// ---- Merge operator: list append -----------------------------------------------------------

// An encoded list is a concatenation of records, so appending is concatenation.
class ListAppendOperator final : public rocksdb::MergeOperator {
 public:
  bool FullMergeV2(const MergeOperationInput& merge_in,
                   MergeOperationOutput* merge_out) const override {
    size_t size = merge_in.existing_value != nullptr ? merge_in.existing_value->size() : 0;
    for (const rocksdb::Slice& op : merge_in.operand_list) size += op.size();
    std::string& out = merge_out->new_value;
    out.clear();
    out.reserve(size);
    if (merge_in.existing_value != nullptr) {
      out.append(merge_in.existing_value->data(), merge_in.existing_value->size());
    }
    for (const rocksdb::Slice& op : merge_in.operand_list) out.append(op.data(), op.size());
    return true;
  }

  bool PartialMergeMulti(const rocksdb::Slice& /*key*/,
                         const std::deque<rocksdb::Slice>& operand_list, std::string* new_value,
                         rocksdb::Logger* /*logger*/) const override {
    size_t size = 0;
    for (const rocksdb::Slice& op : operand_list) size += op.size();
    new_value->clear();
    new_value->reserve(size);
    for (const rocksdb::Slice& op : operand_list) new_value->append(op.data(), op.size());
    return true;
  }

  bool PartialMerge(const rocksdb::Slice& /*key*/, const rocksdb::Slice& left,
                    const rocksdb::Slice& right, std::string* new_value,
                    rocksdb::Logger* /*logger*/) const override {
    new_value->clear();
    new_value->reserve(left.size() + right.size());
    new_value->append(left.data(), left.size());
    new_value->append(right.data(), right.size());
    return true;
  }

  const char* Name() const override { return "SluiceListAppend"; }
};

// ---- TTL compaction filter -----------------------------------------------------------------

// True when an entry stamped `ts` is expired at `now` (ts + ttl_ms <= now, without overflow).
bool Expired(int64_t ts, int64_t ttl_ms, int64_t now) {
  return ts <= std::numeric_limits<int64_t>::max() - ttl_ms && ts + ttl_ms <= now;
}

// One compaction's filter: the settings and the time are fixed when the compaction starts, so
// it is used by a single thread and needs no synchronization.
class TtlFilter final : public rocksdb::CompactionFilter {
 public:
  TtlFilter(TtlLayout layout, int64_t ttl_ms, int64_t now)
      : layout_(layout), ttl_ms_(ttl_ms), now_(now) {}

  Decision FilterV2(int /*level*/, const rocksdb::Slice& /*key*/, ValueType value_type,
                    const rocksdb::Slice& existing_value, std::string* new_value,
                    std::string* /*skip_until*/) const override {
    const std::string_view value(existing_value.data(), existing_value.size());
    if (value_type == ValueType::kValue) {
      return layout_ == TtlLayout::kValue ? FilterValue(value) : FilterList(value, new_value);
    }
    // A list merge operand is a run of list records, and the list is the concatenation of its
    // operands, so dropping expired records operand by operand gives the same list. This is
    // what makes TTL apply to lists built by Append before they were ever merged into a value.
    if (value_type == ValueType::kMergeOperand && layout_ == TtlLayout::kList) {
      return FilterList(value, new_value);
    }
    return Decision::kKeep;
  }

  const char* Name() const override { return "SluiceTtlFilter"; }

 private:
  Decision FilterValue(std::string_view value) const {
    if (value.size() < 8) return Decision::kKeep;  // Malformed: not ours to drop.
    return Expired(DecodeFixed64Le(value.data()), ttl_ms_, now_) ? Decision::kRemove
                                                                 : Decision::kKeep;
  }

  Decision FilterList(std::string_view value, std::string* new_value) const {
    bool malformed = false;
    size_t kept_records = 0;
    size_t total_records = 0;
    std::string kept;
    const bool ok = ForEachListRecord(value, [&](std::string_view record, std::string_view elem) {
      ++total_records;
      if (elem.size() < 8) {
        malformed = true;
        return;
      }
      if (!Expired(DecodeFixed64Le(elem.data()), ttl_ms_, now_)) {
        kept.append(record);
        ++kept_records;
      }
    });
    if (!ok || malformed) return Decision::kKeep;
    if (kept_records == total_records) return Decision::kKeep;
    if (kept_records == 0) return Decision::kRemove;
    *new_value = std::move(kept);
    return Decision::kChangeValue;
  }

  const TtlLayout layout_;
  const int64_t ttl_ms_;
  const int64_t now_;
};

// One per column family. RocksDB may call it from several background threads at once.
class TtlFilterFactory final : public rocksdb::CompactionFilterFactory {
 public:
  explicit TtlFilterFactory(const Clock* clock) : clock_(clock) {}

  void Set(TtlLayout layout, int64_t ttl_ms) {
    std::lock_guard<std::mutex> lock(mu_);
    layout_ = layout;
    ttl_ms_ = ttl_ms;
  }

  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context& /*context*/) override {
    TtlLayout layout;
    int64_t ttl_ms;
    {
      std::lock_guard<std::mutex> lock(mu_);
      layout = layout_;
      ttl_ms = ttl_ms_;
    }
    if (layout == TtlLayout::kNone || ttl_ms <= 0 || clock_ == nullptr) return nullptr;
    return std::make_unique<TtlFilter>(layout, ttl_ms, clock_->NowMillis());
  }

  const char* Name() const override { return "SluiceTtlFilterFactory"; }

 private:
  const Clock* const clock_;
  std::mutex mu_;
  TtlLayout layout_ = TtlLayout::kNone;
  int64_t ttl_ms_ = 0;
};

// ---- Helpers -------------------------------------------------------------------------------

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
std::string_view ToView(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

// The smallest string greater than every string starting with `prefix`, or false when there is
// none (prefix empty or all 0xFF bytes).
bool PrefixSuccessor(std::string_view prefix, std::string* out) {
  std::string s(prefix);
  while (!s.empty() && static_cast<uint8_t>(s.back()) == 0xFF) s.pop_back();
  if (s.empty()) return false;
  s.back() = static_cast<char>(static_cast<uint8_t>(s.back()) + 1);
  *out = std::move(s);
  return true;
}

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view context) {
  std::string message = absl::StrCat(context, ": ", s.ToString());
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  if (s.IsCorruption()) return absl::DataLossError(message);
  return absl::InternalError(message);
}

}  // namespace

// ---- RocksDbStore --------------------------------------------------------------------------

struct RocksDbStore::Impl {
  struct Family {
    std::string name;
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    std::shared_ptr<TtlFilterFactory> ttl;
  };

  ~Impl() {
    if (db == nullptr) return;
    for (Family& f : families) {
      if (f.handle != nullptr) db->DestroyColumnFamilyHandle(f.handle).PermitUncheckedError();
    }
    // With the WAL off, Close() flushes the memtables (avoid_flush_during_shutdown is false), so
    // a reopened instance sees everything written.
    db->Close().PermitUncheckedError();
  }

  rocksdb::ColumnFamilyOptions FamilyOptions(std::shared_ptr<TtlFilterFactory> ttl) const {
    rocksdb::ColumnFamilyOptions cf = base_cf_options;
    cf.compaction_filter_factory = std::move(ttl);
    return cf;
  }

  std::string Where(absl::string_view op, int cf) const {
    return absl::StrCat("RocksDB state backend at ", path, ": ", op, " in column family '",
                        families[static_cast<size_t>(cf)].name, "'");
  }

  [[noreturn]] void Fail(absl::string_view op, int cf, const rocksdb::Status& s) const {
    throw JobFailure(absl::InternalError(absl::StrCat(Where(op, cf), ": ", s.ToString())));
  }

  rocksdb::ColumnFamilyHandle* Handle(int cf) const {
    SLUICE_CHECK(cf >= 0 && static_cast<size_t>(cf) < families.size());
    return families[static_cast<size_t>(cf)].handle;
  }

  // Deletes [begin, end) where "" as `end` means no upper bound.
  void DeleteFrom(int cf, absl::string_view op, std::string_view begin, std::string_view end) {
    rocksdb::ColumnFamilyHandle* h = Handle(cf);
    rocksdb::Status s;
    if (!end.empty()) {
      if (end <= begin) return;
      s = db->DeleteRange(write_options, h, ToSlice(begin), ToSlice(end));
    } else {
      // DeleteRange needs an end: use the last key, and delete that one on its own.
      std::string last;
      {
        std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read_options, h));
        it->SeekToLast();
        if (!it->status().ok()) Fail(op, cf, it->status());
        if (!it->Valid() || ToView(it->key()) < begin) return;
        last.assign(it->key().data(), it->key().size());
      }
      if (begin < last) s = db->DeleteRange(write_options, h, ToSlice(begin), ToSlice(last));
      if (s.ok()) s = db->Delete(write_options, h, ToSlice(last));
    }
    if (!s.ok()) Fail(op, cf, s);
  }

  std::string path;
  const Clock* clock = nullptr;
  RocksDbStateOptions options;
  std::shared_ptr<RocksDbResources> resources;
  rocksdb::ColumnFamilyOptions base_cf_options;
  rocksdb::WriteOptions write_options;
  rocksdb::ReadOptions read_options;

  // Guards `families` growth (ColumnFamily) against the calls that walk all of them.
  mutable std::mutex mu;
  std::vector<Family> families;  // [0] is "default".
  absl::flat_hash_map<std::string, int> index_by_name;
  std::unique_ptr<rocksdb::DB> db;
};

absl::StatusOr<std::unique_ptr<RocksDbStore>> RocksDbStore::Open(
    const RocksDbStateOptions& options, std::shared_ptr<RocksDbResources> resources,
    const std::string& path, const Clock* ttl_clock) {
  SLUICE_RETURN_IF_ERROR(options.Validate());
  const std::string where = absl::StrCat("RocksDB state backend at ", path);
  if (path.empty()) return absl::InvalidArgumentError("RocksDB state backend: empty path");
  if (resources == nullptr) resources = MakeRocksDbResources(options);

  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": cannot create the directory: ", ec.message()));
  }
  if (!std::filesystem::is_directory(path, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(where, ": not a directory"));
  }

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->clock = ttl_clock;
  impl->options = options;
  impl->resources = resources;
  impl->write_options.disableWAL = true;

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = resources->block_cache;
  table.block_size = static_cast<size_t>(options.block_size_bytes);
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));

  rocksdb::ColumnFamilyOptions& cf = impl->base_cf_options;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf.write_buffer_size = static_cast<size_t>(options.write_buffer_bytes);
  cf.max_write_buffer_number = options.max_write_buffer_number;
  cf.merge_operator = std::make_shared<ListAppendOperator>();
  // A bloom filter over whole keys in the memtable: a get of an absent key (a window or slice a
  // key has no contents in, a state never written) skips the skip-list search.
  cf.memtable_prefix_bloom_size_ratio = 0.1;
  cf.memtable_whole_key_filtering = true;
  cf.compression = rocksdb::kNoCompression;
  if (options.compression) {
    const std::vector<rocksdb::CompressionType> supported = rocksdb::GetSupportedCompressions();
    if (std::find(supported.begin(), supported.end(), rocksdb::kLZ4Compression) !=
        supported.end()) {
      cf.compression = rocksdb::kLZ4Compression;
    }
  }

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.write_buffer_manager = resources->write_buffer_manager;
  db_options.max_background_jobs = resources->background_threads;
  db_options.keep_log_file_num = 4;

  std::vector<std::string> names;
  if (std::filesystem::exists(std::filesystem::path(path) / "CURRENT", ec)) {
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(db_options, path, &names);
    if (!s.ok()) return FromRocks(s, absl::StrCat(where, ": listing column families"));
  }
  if (std::find(names.begin(), names.end(), rocksdb::kDefaultColumnFamilyName) == names.end()) {
    names.insert(names.begin(), rocksdb::kDefaultColumnFamilyName);
  }
  // "default" first, so it is index 0.
  std::stable_partition(names.begin(), names.end(), [](const std::string& n) {
    return n == rocksdb::kDefaultColumnFamilyName;
  });

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    auto ttl = std::make_shared<TtlFilterFactory>(ttl_clock);
    descriptors.emplace_back(name, impl->FamilyOptions(ttl));
    impl->families.push_back(Impl::Family{name, nullptr, std::move(ttl)});
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path, descriptors, &handles, &db);
  if (!s.ok()) return FromRocks(s, absl::StrCat(where, ": open"));
  impl->db.reset(db);
  SLUICE_CHECK(handles.size() == impl->families.size());
  for (size_t i = 0; i < handles.size(); ++i) {
    impl->families[i].handle = handles[i];
    impl->index_by_name[impl->families[i].name] = static_cast<int>(i);
  }
  return std::unique_ptr<RocksDbStore>(new RocksDbStore(std::move(impl)));
}

RocksDbStore::RocksDbStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

const RocksDbStateOptions& RocksDbStore::options() const { return impl_->options; }

absl::StatusOr<std::unique_ptr<RocksDbStore>> RocksDbStore::OpenSibling(
    const std::string& path) const {
  return Open(impl_->options, impl_->resources, path, impl_->clock);
}
RocksDbStore::~RocksDbStore() = default;

const std::string& RocksDbStore::path() const { return impl_->path; }

absl::StatusOr<int> RocksDbStore::ColumnFamily(const std::string& name, TtlLayout layout,
                                               int64_t ttl_ms) {
  const std::string where =
      absl::StrCat("RocksDB state backend at ", impl_->path, ": column family '", name, "'");
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": empty name"));
  if (ttl_ms < 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ttl_ms must be >= 0, got ", ttl_ms));
  }
  if (ttl_ms > 0 && layout == TtlLayout::kNone) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ttl_ms ", ttl_ms, " needs a TTL layout (kValue or kList)"));
  }
  if (ttl_ms > 0 && impl_->clock == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": ttl_ms ", ttl_ms, " but the store was opened without a clock"));
  }
  if (ttl_ms == 0) layout = TtlLayout::kNone;

  std::lock_guard<std::mutex> lock(impl_->mu);
  if (auto it = impl_->index_by_name.find(name); it != impl_->index_by_name.end()) {
    impl_->families[static_cast<size_t>(it->second)].ttl->Set(layout, ttl_ms);
    return it->second;
  }
  auto ttl = std::make_shared<TtlFilterFactory>(impl_->clock);
  ttl->Set(layout, ttl_ms);
  rocksdb::ColumnFamilyHandle* handle = nullptr;
  rocksdb::Status s = impl_->db->CreateColumnFamily(impl_->FamilyOptions(ttl), name, &handle);
  if (!s.ok()) return FromRocks(s, absl::StrCat(where, ": create"));
  const int index = static_cast<int>(impl_->families.size());
  impl_->families.push_back(Impl::Family{name, handle, std::move(ttl)});
  impl_->index_by_name[name] = index;
  return index;
}

std::vector<std::string> RocksDbStore::ColumnFamilyNames() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<std::string> names;
  for (const Impl::Family& f : impl_->families) {
    if (f.name != rocksdb::kDefaultColumnFamilyName) names.push_back(f.name);
  }
  return names;
}

bool RocksDbStore::Get(int cf, std::string_view key, std::string* value) {
  std::string ignored;
  rocksdb::Status s = impl_->db->Get(impl_->read_options, impl_->Handle(cf), ToSlice(key),
                                     value != nullptr ? value : &ignored);
  if (s.IsNotFound()) return false;
  if (!s.ok()) impl_->Fail("Get", cf, s);
  return true;
}

void RocksDbStore::Put(int cf, std::string_view key, std::string_view value) {
  rocksdb::Status s =
      impl_->db->Put(impl_->write_options, impl_->Handle(cf), ToSlice(key), ToSlice(value));
  if (!s.ok()) impl_->Fail("Put", cf, s);
}

void RocksDbStore::Delete(int cf, std::string_view key) {
  rocksdb::Status s = impl_->db->Delete(impl_->write_options, impl_->Handle(cf), ToSlice(key));
  if (!s.ok()) impl_->Fail("Delete", cf, s);
}

void RocksDbStore::Append(int cf, std::string_view key, std::string_view encoded_elements) {
  rocksdb::Status s = impl_->db->Merge(impl_->write_options, impl_->Handle(cf), ToSlice(key),
                                       ToSlice(encoded_elements));
  if (!s.ok()) impl_->Fail("Append", cf, s);
}

void RocksDbStore::Scan(int cf, std::string_view begin, std::string_view end,
                        absl::FunctionRef<bool(std::string_view, std::string_view)> fn) {
  rocksdb::ReadOptions read_options = impl_->read_options;
  const rocksdb::Slice upper = ToSlice(end);  // Must outlive the iterator.
  if (!end.empty()) {
    if (end <= begin) return;
    read_options.iterate_upper_bound = &upper;
  }
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read_options, impl_->Handle(cf)));
  for (it->Seek(ToSlice(begin)); it->Valid(); it->Next()) {
    if (!fn(ToView(it->key()), ToView(it->value()))) return;
  }
  if (!it->status().ok()) impl_->Fail("Scan", cf, it->status());
}

void RocksDbStore::ScanPrefix(int cf, std::string_view prefix,
                              absl::FunctionRef<bool(std::string_view, std::string_view)> fn) {
  std::string end;
  if (PrefixSuccessor(prefix, &end)) {
    Scan(cf, prefix, end, fn);
    return;
  }
  // No successor: every key >= an all-0xFF prefix starts with it.
  Scan(cf, prefix, "", fn);
}

void RocksDbStore::DeletePrefix(int cf, std::string_view prefix) {
  std::string end;
  if (!PrefixSuccessor(prefix, &end)) end.clear();  // Unbounded: see ScanPrefix.
  impl_->DeleteFrom(cf, "DeletePrefix", prefix, end);
}

void RocksDbStore::DeleteRange(int cf, std::string_view begin, std::string_view end) {
  impl_->DeleteFrom(cf, "DeleteRange", begin, end);
}

absl::StatusOr<std::vector<std::string>> RocksDbStore::CreateNativeCheckpoint(
    const std::string& dir) {
  const std::string where =
      absl::StrCat("RocksDB state backend at ", impl_->path, ": checkpoint into ", dir);
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(where, ": the directory already exists"));
  }
  const std::filesystem::path parent = std::filesystem::path(dir).parent_path();
  if (!parent.empty()) {
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": cannot create ", parent.string(), ": ", ec.message()));
    }
  }
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    for (const Impl::Family& f : impl_->families) handles.push_back(f.handle);
    rocksdb::FlushOptions flush;
    flush.wait = true;
    rocksdb::Status s = impl_->db->Flush(flush, handles);
    if (!s.ok()) return FromRocks(s, absl::StrCat(where, ": flush"));
  }
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(impl_->db.get(), &raw);
  if (!s.ok()) return FromRocks(s, where);
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  s = checkpoint->CreateCheckpoint(dir);
  if (!s.ok()) return FromRocks(s, where);

  std::vector<std::string> files;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    files.push_back(it->path().filename().string());
  }
  if (ec) {
    return absl::InternalError(absl::StrCat(where, ": listing the files: ", ec.message()));
  }
  std::sort(files.begin(), files.end());
  return files;
}

absl::Status RocksDbStore::CompactAll() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  rocksdb::CompactRangeOptions options;
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (const Impl::Family& f : impl_->families) {
    rocksdb::Status s = impl_->db->CompactRange(options, f.handle, nullptr, nullptr);
    if (!s.ok()) {
      return FromRocks(s, absl::StrCat("RocksDB state backend at ", impl_->path,
                                       ": CompactAll in column family '", f.name, "'"));
    }
  }
  return absl::OkStatus();
}

// ---- List encoding -------------------------------------------------------------------------

void AppendListElement(std::string_view element, std::string* out) {
  SLUICE_CHECK(element.size() <= std::numeric_limits<uint32_t>::max());
  auto length = static_cast<uint32_t>(element.size());
  while (length >= 0x80) {
    out->push_back(static_cast<char>((length & 0x7F) | 0x80));
    length >>= 7;
  }
  out->push_back(static_cast<char>(length));
  out->append(element);
}

bool ForEachListElement(std::string_view encoded, absl::FunctionRef<void(std::string_view)> fn) {
  // Validate first so a malformed list calls fn for nothing.
  if (!ForEachListRecord(encoded, [](std::string_view, std::string_view) {})) return false;
  ForEachListRecord(encoded, [&](std::string_view, std::string_view element) { fn(element); });
  return true;
}

}  // namespace internal
}  // namespace sluice
