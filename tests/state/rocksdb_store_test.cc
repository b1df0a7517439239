// RocksDbStore: options validation, point operations, list merges, scans and range deletes,
// reopen, native checkpoints, the TTL compaction filter and the open error path.
#include <sluice/internal/rocksdb_store.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/state/rocksdb_options.h>
#include <sluice/time/clock.h>

namespace sluice::internal {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

using Entries = std::vector<std::pair<std::string, std::string>>;

// A fresh directory per test, removed at the end.
class RocksDbStoreTest : public ::testing::Test {
 protected:
  RocksDbStoreTest() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::path(::testing::TempDir()) /
            absl::StrCat("rocksdb_store_test-", ::getpid(), "-", info->name(), "-", counter++);
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  ~RocksDbStoreTest() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  std::string Dir(std::string_view name) const { return (root_ / std::string(name)).string(); }

  std::unique_ptr<RocksDbStore> OpenStore(const std::string& path) {
    auto store = RocksDbStore::Open(options_, resources_, path, &clock_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  int Cf(RocksDbStore& store, const std::string& name, TtlLayout layout = TtlLayout::kNone,
         int64_t ttl_ms = 0) {
    absl::StatusOr<int> cf = store.ColumnFamily(name, layout, ttl_ms);
    EXPECT_TRUE(cf.ok()) << cf.status();
    return cf.ok() ? *cf : -1;
  }

  static std::string Value(RocksDbStore& store, int cf, std::string_view key) {
    std::string value;
    return store.Get(cf, key, &value) ? value : "<absent>";
  }

  static Entries ScanAll(RocksDbStore& store, int cf, std::string_view begin = "",
                         std::string_view end = "") {
    Entries out;
    store.Scan(cf, begin, end, [&](std::string_view k, std::string_view v) {
      out.emplace_back(std::string(k), std::string(v));
      return true;
    });
    return out;
  }

  static std::vector<std::string> Elements(std::string_view encoded) {
    std::vector<std::string> out;
    EXPECT_TRUE(ForEachListElement(encoded, [&](std::string_view e) { out.emplace_back(e); }));
    return out;
  }

  fs::path root_;
  RocksDbStateOptions options_{.block_cache_bytes = 8 << 20, .write_buffer_budget_bytes = 8 << 20};
  std::shared_ptr<RocksDbResources> resources_ = MakeRocksDbResources(options_);
  ManualClock clock_{1000};
};

// [2-byte big-endian key group][rest]
std::string GroupKey(int group, std::string_view rest) {
  std::string key;
  key.push_back(static_cast<char>((group >> 8) & 0xFF));
  key.push_back(static_cast<char>(group & 0xFF));
  key.append(rest);
  return key;
}

std::string Stamped(int64_t ts, std::string_view payload) {
  std::string out;
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((static_cast<uint64_t>(ts) >> (8 * i)) & 0xFF));
  out.append(payload);
  return out;
}

std::set<std::string> SstNames(const std::vector<std::string>& files) {
  std::set<std::string> out;
  for (const std::string& f : files) {
    if (f.ends_with(".sst")) out.insert(f);
  }
  return out;
}

TEST(RocksDbStateOptionsTest, ValidateNamesTheBadField) {
  EXPECT_TRUE(RocksDbStateOptions{}.Validate().ok());
  struct Case {
    RocksDbStateOptions options;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{.block_cache_bytes = -1}, "RocksDbStateOptions.block_cache_bytes must be > 0, got -1"},
      {{.write_buffer_bytes = 0}, "RocksDbStateOptions.write_buffer_bytes must be > 0, got 0"},
      {{.max_write_buffer_number = 0},
       "RocksDbStateOptions.max_write_buffer_number must be >= 1, got 0"},
      {{.write_buffer_budget_bytes = -5},
       "RocksDbStateOptions.write_buffer_budget_bytes must be > 0, got -5"},
      {{.block_size_bytes = 512}, "RocksDbStateOptions.block_size_bytes must be >= 1024, got 512"},
      {{.block_size_bytes = int64_t{1} << 31},
       "RocksDbStateOptions.block_size_bytes must be <= 1073741824, got 2147483648"},
      {{.background_threads = 0}, "RocksDbStateOptions.background_threads must be >= 1, got 0"},
      {{.window_cache_bytes = -1}, "RocksDbStateOptions.window_cache_bytes must be >= 0, got -1"},
  };
  for (const Case& c : cases) {
    absl::Status status = c.options.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_EQ(status.message(), c.message);
  }
}

TEST_F(RocksDbStoreTest, OpenRejectsInvalidOptions) {
  RocksDbStateOptions bad{.background_threads = 0};
  auto store = RocksDbStore::Open(bad, resources_, Dir("db"), &clock_);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(store.status().message(), HasSubstr("background_threads"));
}

TEST_F(RocksDbStoreTest, PutGetDeleteAcrossColumnFamilies) {
  auto store = OpenStore(Dir("db"));
  ASSERT_NE(store, nullptr);
  const int a = Cf(*store, "a");
  const int b = Cf(*store, "b");
  EXPECT_NE(a, b);
  EXPECT_EQ(Cf(*store, "a"), a);  // Stable index.

  const std::string zero_key("k\0x", 3);
  const std::string zero_value("\0v\0\0w", 5);
  store->Put(a, "k1", "a1");
  store->Put(b, "k1", "b1");
  store->Put(a, zero_key, zero_value);
  EXPECT_EQ(Value(*store, a, "k1"), "a1");
  EXPECT_EQ(Value(*store, b, "k1"), "b1");
  EXPECT_EQ(Value(*store, a, zero_key), zero_value);
  EXPECT_EQ(Value(*store, b, zero_key), "<absent>");
  EXPECT_EQ(Value(*store, a, "k"), "<absent>");  // Only a prefix of zero_key.
  EXPECT_EQ(Value(*store, a, "missing"), "<absent>");

  store->Put(a, "k1", "a2");
  EXPECT_EQ(Value(*store, a, "k1"), "a2");
  store->Delete(a, "k1");
  EXPECT_EQ(Value(*store, a, "k1"), "<absent>");
  EXPECT_EQ(Value(*store, b, "k1"), "b1");
  store->Delete(a, "never-there");  // Not an error.

  EXPECT_THAT(store->ColumnFamilyNames(), UnorderedElementsAre("a", "b"));
}

TEST_F(RocksDbStoreTest, ColumnFamilyRejectsBadTtl) {
  auto store = OpenStore(Dir("db"));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->ColumnFamily("x", TtlLayout::kValue, -1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->ColumnFamily("x", TtlLayout::kNone, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->ColumnFamily("", TtlLayout::kNone, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(store->ColumnFamilyNames(), IsEmpty());
}

TEST(ListEncodingTest, RoundTripAndMalformed) {
  std::string encoded;
  const std::string big(300, 'x');  // Two-byte varint length.
  AppendListElement("a", &encoded);
  AppendListElement("", &encoded);
  AppendListElement(big, &encoded);
  AppendListElement(std::string_view("\0z", 2), &encoded);
  EXPECT_EQ(encoded.size(), (1 + 1) + 1 + (2 + 300) + (1 + 2));
  std::vector<std::string> out;
  EXPECT_TRUE(ForEachListElement(encoded, [&](std::string_view e) { out.emplace_back(e); }));
  EXPECT_THAT(out, ElementsAre("a", "", big, std::string("\0z", 2)));

  EXPECT_TRUE(ForEachListElement("", [](std::string_view) { ADD_FAILURE(); }));
  // Truncated element: nothing is reported.
  std::string truncated;
  AppendListElement("ok", &truncated);
  truncated.append(
      "\x05"
      "ab");
  int calls = 0;
  EXPECT_FALSE(ForEachListElement(truncated, [&](std::string_view) { ++calls; }));
  EXPECT_EQ(calls, 0);
  // Varint longer than 5 bytes.
  EXPECT_FALSE(ForEachListElement("\xff\xff\xff\xff\xff\x01", [](std::string_view) {}));
}

TEST_F(RocksDbStoreTest, AppendConcatenatesListsAcrossFlushes) {
  auto store = OpenStore(Dir("db"));
  ASSERT_NE(store, nullptr);
  const int cf = Cf(*store, "list");
  const std::string e3 = std::string("e") + '\0' + "3";  // An embedded zero byte.
  for (const std::string& e : {std::string("e1"), std::string("e2"), e3}) {
    std::string one;
    AppendListElement(e, &one);
    store->Append(cf, "key", one);
  }
  std::string two;
  AppendListElement("e4", &two);
  AppendListElement("e5", &two);
  store->Append(cf, "key", two);

  const std::vector<std::string> expected = {"e1", "e2", e3, "e4", "e5"};
  std::string value;
  ASSERT_TRUE(store->Get(cf, "key", &value));
  EXPECT_EQ(Elements(value), expected);

  ASSERT_TRUE(store->CompactAll().ok());
  ASSERT_TRUE(store->Get(cf, "key", &value));
  EXPECT_EQ(Elements(value), expected);

  // Merging onto the compacted value, then onto a Put value.
  std::string six;
  AppendListElement("e6", &six);
  store->Append(cf, "key", six);
  ASSERT_TRUE(store->CompactAll().ok());
  ASSERT_TRUE(store->Get(cf, "key", &value));
  std::vector<std::string> expected6 = expected;
  expected6.push_back("e6");
  EXPECT_EQ(Elements(value), expected6);

  std::string base;
  AppendListElement("p", &base);
  store->Put(cf, "other", base);
  store->Append(cf, "other", six);
  ASSERT_TRUE(store->Get(cf, "other", &value));
  EXPECT_THAT(Elements(value), ElementsAre("p", "e6"));
}

TEST_F(RocksDbStoreTest, ScanScanPrefixDeletePrefixDeleteRange) {
  auto store = OpenStore(Dir("db"));
  ASSERT_NE(store, nullptr);
  const int cf = Cf(*store, "s");
  for (int group : {0x0004, 0x0005, 0x0006, 0x00FF, 0x0100, 0xFFFF}) {
    for (const char* k : {"a", "b", "c"})
      store->Put(cf, GroupKey(group, k), absl::StrCat(group, k));
  }
  store->Put(cf, std::string(1, '\x00'), "short");  // Shorter than a key group prefix.

  // [0x0005, 0x0006): exactly group 5.
  EXPECT_THAT(ScanAll(*store, cf, GroupKey(5, ""), GroupKey(6, "")),
              ElementsAre(Pair(GroupKey(5, "a"), "5a"), Pair(GroupKey(5, "b"), "5b"),
                          Pair(GroupKey(5, "c"), "5c")));
  // Begin inside a group, end inside the next.
  EXPECT_THAT(ScanAll(*store, cf, GroupKey(5, "b"), GroupKey(6, "b")),
              ElementsAre(Pair(GroupKey(5, "b"), "5b"), Pair(GroupKey(5, "c"), "5c"),
                          Pair(GroupKey(6, "a"), "6a")));
  // Unbounded end.
  EXPECT_THAT(
      ScanAll(*store, cf, GroupKey(0xFFFF, "b")),
      ElementsAre(Pair(GroupKey(0xFFFF, "b"), "65535b"), Pair(GroupKey(0xFFFF, "c"), "65535c")));
  EXPECT_EQ(ScanAll(*store, cf).size(), 19u);
  // fn returning false stops.
  int seen = 0;
  store->Scan(cf, "", "", [&](std::string_view, std::string_view) { return ++seen < 2; });
  EXPECT_EQ(seen, 2);

  auto scan_prefix = [&](std::string_view prefix) {
    Entries out;
    store->ScanPrefix(cf, prefix, [&](std::string_view k, std::string_view v) {
      out.emplace_back(std::string(k), std::string(v));
      return true;
    });
    return out;
  };
  // 0x00FF: the successor carries into the first byte (0x0100), which must be excluded.
  EXPECT_THAT(scan_prefix(GroupKey(0x00FF, "")),
              ElementsAre(Pair(GroupKey(0x00FF, "a"), "255a"), Pair(GroupKey(0x00FF, "b"), "255b"),
                          Pair(GroupKey(0x00FF, "c"), "255c")));
  // 0xFFFF has no successor.
  EXPECT_THAT(
      scan_prefix(GroupKey(0xFFFF, "")),
      ElementsAre(Pair(GroupKey(0xFFFF, "a"), "65535a"), Pair(GroupKey(0xFFFF, "b"), "65535b"),
                  Pair(GroupKey(0xFFFF, "c"), "65535c")));
  EXPECT_THAT(scan_prefix(GroupKey(0x00FF, "b")), ElementsAre(Pair(GroupKey(0x00FF, "b"), "255b")));
  EXPECT_THAT(scan_prefix(GroupKey(0x0007, "")), IsEmpty());

  store->DeletePrefix(cf, GroupKey(0x00FF, ""));
  EXPECT_THAT(scan_prefix(GroupKey(0x00FF, "")), IsEmpty());
  EXPECT_EQ(scan_prefix(GroupKey(0x0100, "")).size(), 3u);  // Untouched neighbour.
  EXPECT_EQ(scan_prefix(GroupKey(0x0006, "")).size(), 3u);

  store->DeletePrefix(cf, GroupKey(0xFFFF, ""));
  EXPECT_THAT(scan_prefix(GroupKey(0xFFFF, "")), IsEmpty());
  EXPECT_EQ(scan_prefix(GroupKey(0x0100, "")).size(), 3u);

  // [group 4 "b", group 6 "b"): 4b 4c 5a 5b 5c 6a go.
  store->DeleteRange(cf, GroupKey(4, "b"), GroupKey(6, "b"));
  EXPECT_THAT(ScanAll(*store, cf),
              ElementsAre(Pair(std::string(1, '\x00'), "short"), Pair(GroupKey(4, "a"), "4a"),
                          Pair(GroupKey(6, "b"), "6b"), Pair(GroupKey(6, "c"), "6c"),
                          Pair(GroupKey(0x0100, "a"), "256a"), Pair(GroupKey(0x0100, "b"), "256b"),
                          Pair(GroupKey(0x0100, "c"), "256c")));
  // Empty and inverted ranges are no-ops.
  store->DeleteRange(cf, GroupKey(6, "b"), GroupKey(6, "b"));
  store->DeleteRange(cf, GroupKey(6, "c"), GroupKey(6, "b"));
  EXPECT_EQ(ScanAll(*store, cf).size(), 7u);
  // Still right after the range tombstones are compacted.
  ASSERT_TRUE(store->CompactAll().ok());
  EXPECT_EQ(ScanAll(*store, cf).size(), 7u);
  // "" as end: everything from begin on.
  store->DeleteRange(cf, GroupKey(6, "c"), "");
  EXPECT_THAT(ScanAll(*store, cf),
              ElementsAre(Pair(std::string(1, '\x00'), "short"), Pair(GroupKey(4, "a"), "4a"),
                          Pair(GroupKey(6, "b"), "6b")));
  store->DeletePrefix(cf, "");
  EXPECT_THAT(ScanAll(*store, cf), IsEmpty());
}

TEST_F(RocksDbStoreTest, ReopenKeepsColumnFamiliesAndData) {
  const std::string path = Dir("db");
  int a = -1;
  int b = -1;
  {
    auto store = OpenStore(path);
    ASSERT_NE(store, nullptr);
    a = Cf(*store, "alpha");
    b = Cf(*store, "beta");
    store->Put(a, "k", "va");
    store->Put(b, "k", "vb");
    std::string list;
    AppendListElement("x", &list);
    store->Append(b, "l", list);
    store->Append(b, "l", list);
  }
  auto store = OpenStore(path);
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(store->ColumnFamilyNames(), UnorderedElementsAre("alpha", "beta"));
  const int a2 = Cf(*store, "alpha");
  const int b2 = Cf(*store, "beta");
  EXPECT_EQ(Value(*store, a2, "k"), "va");
  EXPECT_EQ(Value(*store, b2, "k"), "vb");
  EXPECT_THAT(Elements(Value(*store, b2, "l")), ElementsAre("x", "x"));
  // Merges still work on a reopened instance.
  std::string list;
  AppendListElement("y", &list);
  store->Append(b2, "l", list);
  EXPECT_THAT(Elements(Value(*store, b2, "l")), ElementsAre("x", "x", "y"));
}

TEST_F(RocksDbStoreTest, NativeCheckpointsAreIncrementalAndRestorable) {
  auto store = OpenStore(Dir("db"));
  ASSERT_NE(store, nullptr);
  const int cf = Cf(*store, "state");
  store->Put(cf, "k1", "v1");
  store->Put(cf, "k2", "v2");

  const std::string dir_a = Dir("ckpt/a");
  absl::StatusOr<std::vector<std::string>> files_a = store->CreateNativeCheckpoint(dir_a);
  ASSERT_TRUE(files_a.ok()) << files_a.status();
  for (const std::string& f : *files_a) {
    EXPECT_EQ(f.find('/'), std::string::npos) << f;
    EXPECT_TRUE(fs::exists(fs::path(dir_a) / f)) << f;
  }
  EXPECT_THAT(*files_a, ::testing::Contains("CURRENT"));

  store->Put(cf, "k3", "v3");
  store->Put(cf, "k1", "v1-new");
  const std::string dir_b = Dir("ckpt/b");
  absl::StatusOr<std::vector<std::string>> files_b = store->CreateNativeCheckpoint(dir_b);
  ASSERT_TRUE(files_b.ok()) << files_b.status();

  const std::set<std::string> sst_a = SstNames(*files_a);
  const std::set<std::string> sst_b = SstNames(*files_b);
  ASSERT_FALSE(sst_a.empty());
  std::vector<std::string> shared;
  for (const std::string& f : sst_a) {
    if (sst_b.count(f) > 0) {
      shared.push_back(f);
      EXPECT_EQ(fs::file_size(fs::path(dir_a) / f), fs::file_size(fs::path(dir_b) / f)) << f;
    }
  }
  EXPECT_FALSE(shared.empty());
  EXPECT_GT(sst_b.size(), shared.size());  // The new data is in a new file.

  // An existing directory is refused.
  absl::StatusOr<std::vector<std::string>> again = store->CreateNativeCheckpoint(dir_a);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.status().message(), HasSubstr(dir_a));

  // Restore A from a copy, as a download from checkpoint storage would.
  const std::string restored = Dir("restored");
  fs::create_directories(restored);
  for (const std::string& f : *files_a) fs::copy_file(fs::path(dir_a) / f, fs::path(restored) / f);
  store.reset();
  auto copy = OpenStore(restored);
  ASSERT_NE(copy, nullptr);
  EXPECT_THAT(copy->ColumnFamilyNames(), ElementsAre("state"));
  const int cf2 = Cf(*copy, "state");
  EXPECT_THAT(ScanAll(*copy, cf2), ElementsAre(Pair("k1", "v1"), Pair("k2", "v2")));
}

TEST_F(RocksDbStoreTest, TtlDropsExpiredValues) {
  auto store = OpenStore(Dir("db"));
  ASSERT_NE(store, nullptr);
  const int cf = Cf(*store, "value-ttl", TtlLayout::kValue, 100);
  const int plain = Cf(*store, "plain");
  store->Put(cf, "old", Stamped(950, "a"));
  store->Put(cf, "new", Stamped(1050, "b"));
  store->Put(cf, "edge", Stamped(1000, "c"));   // 1000 + 100 <= 1100: expired.
  store->Put(cf, "short", "abc");               // Malformed: kept.
  store->Put(plain, "old", Stamped(950, "a"));  // No TTL there.

  ASSERT_TRUE(store->CompactAll().ok());  // At 1000 nothing is expired.
  EXPECT_EQ(ScanAll(*store, cf).size(), 4u);

  clock_.Set(1100);
  ASSERT_TRUE(store->CompactAll().ok());
  EXPECT_THAT(ScanAll(*store, cf),
              ElementsAre(Pair("new", Stamped(1050, "b")), Pair("short", "abc")));
  EXPECT_EQ(Value(*store, plain, "old"), Stamped(950, "a"));
}

TEST_F(RocksDbStoreTest, TtlFiltersListElements) {
  auto store = OpenStore(Dir("db"));
  ASSERT_NE(store, nullptr);
  const int cf = Cf(*store, "list-ttl", TtlLayout::kList, 100);
  auto append = [&](std::string_view key, int64_t ts, std::string_view payload) {
    std::string encoded;
    AppendListElement(Stamped(ts, payload), &encoded);
    store->Append(cf, key, encoded);
  };
  // Built by merges only (operands never merged into a value before the filter runs).
  append("mixed", 900, "a");
  append("mixed", 1060, "b");
  append("mixed", 1200, "c");
  append("all-old", 900, "x");
  append("all-old", 950, "y");
  // Written as a full value.
  std::string full;
  AppendListElement(Stamped(900, "a"), &full);
  AppendListElement(Stamped(1060, "b"), &full);
  AppendListElement(Stamped(1200, "c"), &full);
  store->Put(cf, "put", full);
  // Malformed: an element shorter than a timestamp.
  std::string malformed;
  AppendListElement(Stamped(900, "a"), &malformed);
  AppendListElement("abc", &malformed);
  store->Put(cf, "malformed", malformed);

  clock_.Set(1100);
  ASSERT_TRUE(store->CompactAll().ok());
  const std::vector<std::string> expected = {Stamped(1060, "b"), Stamped(1200, "c")};
  EXPECT_EQ(Elements(Value(*store, cf, "mixed")), expected);
  EXPECT_EQ(Elements(Value(*store, cf, "put")), expected);
  EXPECT_EQ(Value(*store, cf, "all-old"), "<absent>");
  EXPECT_EQ(Value(*store, cf, "malformed"), malformed);

  // Settled: a second compaction changes nothing; later everything expires.
  ASSERT_TRUE(store->CompactAll().ok());
  EXPECT_EQ(Elements(Value(*store, cf, "mixed")), expected);
  clock_.Set(1300);
  ASSERT_TRUE(store->CompactAll().ok());
  EXPECT_THAT(ScanAll(*store, cf), ElementsAre(Pair("malformed", malformed)));
}

TEST_F(RocksDbStoreTest, TtlAppliesToColumnFamiliesFoundAtReopen) {
  const std::string path = Dir("db");
  {
    auto store = OpenStore(path);
    ASSERT_NE(store, nullptr);
    const int cf = Cf(*store, "v");  // No TTL in the first life.
    store->Put(cf, "old", Stamped(950, "a"));
    store->Put(cf, "new", Stamped(1050, "b"));
  }
  auto store = OpenStore(path);
  ASSERT_NE(store, nullptr);
  const int cf = Cf(*store, "v", TtlLayout::kValue, 100);
  clock_.Set(1100);
  ASSERT_TRUE(store->CompactAll().ok());
  EXPECT_THAT(ScanAll(*store, cf), ElementsAre(Pair("new", Stamped(1050, "b"))));
}

TEST_F(RocksDbStoreTest, OpenOnRegularFileFailsNamingThePath) {
  const std::string file = Dir("not-a-dir");
  std::ofstream(file) << "hello";
  auto store = RocksDbStore::Open(options_, resources_, file, &clock_);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr(file));
  // Below a regular file, too.
  auto below = RocksDbStore::Open(options_, resources_, file + "/db", &clock_);
  ASSERT_FALSE(below.ok());
  EXPECT_THAT(below.status().message(), HasSubstr(file + "/db"));
}

TEST_F(RocksDbStoreTest, NullResourcesAndUncompressedWork) {
  RocksDbStateOptions options{.compression = false, .block_size_bytes = 1024};
  auto store = RocksDbStore::Open(options, nullptr, Dir("db"), nullptr);
  ASSERT_TRUE(store.ok()) << store.status();
  const int cf = Cf(**store, "c");
  for (int i = 0; i < 1000; ++i)
    (*store)->Put(cf, absl::StrCat("key", 1000 + i), std::string(100, 'v'));
  ASSERT_TRUE((*store)->CompactAll().ok());
  EXPECT_EQ(ScanAll(**store, cf).size(), 1000u);
  // TTL needs a clock.
  EXPECT_EQ((*store)->ColumnFamily("t", TtlLayout::kValue, 10).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace sluice::internal
