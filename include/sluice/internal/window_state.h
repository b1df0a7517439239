// Window contents in the RocksDB backend. Internal.
//
// With StateBackendKind::kRocksDb the window operators keep what they hold per (key, window) or
// (key, slice) in column families of their subtask's RocksDB instance instead of in memory:
//
//   column family        key                                       value
//   _window_contents     [key group BE16][key][window]             the contents (below)
//   _window_triggers     [key group BE16][key][window]             [u8 slot mask][8 bytes per slot]
//   _slices              [key group BE16][key][8-byte slice start] the slice's partial result
//
// so a key group is one contiguous range (as the keyed state tables of keyed_state_backend.h).
// Contents of Reduce/Aggregate windows and slices are the serialized value/accumulator, read,
// updated and written per record; contents of Process windows and evicting windows are a RocksDB
// list ([varint32 length][element]..., see rocksdb_store.h) that a record appends to (a RocksDB
// merge) and that is read back only when the window fires or merges.
//
// Snapshots stay canonical: RocksWindowSnapshot is the operator's InternalKeyedState on this
// backend; its WriteKeyGroup scans the column families for the key group and emits the same
// records, under the same names, as the in-memory structures do on the HashMap backend.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/core/key.h>
#include <sluice/internal/job_failure.h>
#include <sluice/internal/keyed_state_backend.h>
#include <sluice/internal/rocksdb_store.h>
#include <sluice/state/serializer.h>

namespace sluice::internal {

// A type whose bytes can be part of a RocksDB key: a canonical encoding, or an empty type (the
// key of WindowAll, GlobalWindow), written as one 0 byte (its Serializer writes one byte too).
template <typename T>
inline constexpr bool kRocksKeyable = Serializable<T> &&
                                      (IsCanonicallySerialized<T>() || std::is_empty_v<T>);

template <typename T>
void WriteRocksKeyPart(const T& v, std::string* out) {
  if constexpr (std::is_empty_v<T>) {
    out->push_back('\0');
  } else {
    Serializer<T>::Write(v, out);
  }
}

// Runs `body` (a batch, a watermark, a timer) of operator `op` whose state is in RocksDB: a
// failure of the store (a JobFailure naming the instance, column family and operation) fails the
// job with a status that names the operator too.
template <typename Body>
void GuardRocksDb(const std::string& op, Body&& body) {
  try {
    body();
  } catch (const JobFailure& f) {
    const std::string tag = absl::StrCat("operator '", op, "'");
    const std::string message(f.status().message());
    if (message.find(tag) != std::string::npos) throw;
    throw JobFailure(absl::Status(f.status().code(), absl::StrCat(tag, ": ", message)));
  }
}

// One column family of window state and the key being built: [key group][key] once per record
// (SetKey), then [namespace] per window (KeyFor).
class RocksWindowColumn {
 public:
  bool open() const { return db_ != nullptr; }
  RocksDbStore* db() const { return db_; }
  int cf() const { return cf_; }
  const std::string& name() const { return name_; }

  // Opens the instance of `store` (if needed) and the column family `name`.
  absl::Status Open(KeyedStateStore& store, std::string name) {
    if (db_ != nullptr) return absl::OkStatus();
    SLUICE_RETURN_IF_ERROR(store.EnsureRocksDb());
    absl::StatusOr<int> cf = store.rocksdb()->ColumnFamily(name);
    if (!cf.ok()) return cf.status();
    name_ = std::move(name);
    cf_ = *cf;
    db_ = store.rocksdb();
    return absl::OkStatus();
  }

  template <typename K>
  void SetKey(const K& key, int max_parallelism) {
    const int kg = KeyGroupFor(key, max_parallelism);
    key_.clear();
    key_.push_back(static_cast<char>((kg >> 8) & 0xFF));
    key_.push_back(static_cast<char>(kg & 0xFF));
    WriteRocksKeyPart(key, &key_);
    prefix_ = key_.size();
  }
  // [key group][current key][ns]; valid until the next call.
  template <typename N>
  const std::string& KeyFor(const N& ns) {
    key_.resize(prefix_);
    WriteRocksKeyPart(ns, &key_);
    return key_;
  }

  // True when the column family holds no entry.
  bool Empty() {
    bool empty = true;
    db_->Scan(cf_, std::string_view(), std::string_view(), [&](std::string_view, std::string_view) {
      empty = false;
      return false;
    });
    return empty;
  }
  bool Get(std::string_view key, std::string* value) { return db_->Get(cf_, key, value); }
  void Put(std::string_view key, std::string_view value) { db_->Put(cf_, key, value); }
  void Delete(std::string_view key) { db_->Delete(cf_, key); }
  void Append(std::string_view key, std::string_view elements) { db_->Append(cf_, key, elements); }
  // Every entry of key group `kg`, in key order.
  void ScanKeyGroup(int kg,
                    absl::FunctionRef<bool(std::string_view key, std::string_view value)> fn) {
    std::string begin(2, '\0'), end;
    begin[0] = static_cast<char>((kg >> 8) & 0xFF);
    begin[1] = static_cast<char>(kg & 0xFF);
    if (kg < 0xFFFF) {
      end.assign(2, '\0');
      end[0] = static_cast<char>(((kg + 1) >> 8) & 0xFF);
      end[1] = static_cast<char>((kg + 1) & 0xFF);
    }
    db_->Scan(cf_, begin, end, fn);
  }
  [[noreturn]] void Corrupt(const std::string& op) const {
    ThrowStateError(absl::DataLossError(absl::StrCat("operator '", op, "': window state '", name_,
                                                     "' in RocksDB at ", db_->path(),
                                                     " holds a value that does not decode")));
  }

 private:
  RocksDbStore* db_ = nullptr;
  int cf_ = -1;
  std::string name_;
  std::string key_;
  size_t prefix_ = 0;
};

// How a contents policy's state is kept in RocksDB. Reduce/Aggregate (and any policy without
// kAppend): the serialized state, read-modify-write. Process and evicting windows specialize
// this (window_operator.h) to append elements.
template <typename Acc>
struct RocksContentsCodec {
  using State = typename Acc::State;
  static constexpr bool kAppend = false;
  static void Write(const State& s, std::string* out) { Serializer<State>::Write(s, out); }
  static bool Read(std::string_view stored, State* s) {
    ByteReader in(stored);
    return Serializer<State>::Read(in, s) && in.empty();
  }
};

// The contents of windows (or slices) in one column family, behind a write-back cache.
//
// Read-modify-write policies (Reduce/Aggregate): the contents of recently used (key, window)s
// stay in memory, decoded, and a record folds into them without touching RocksDB. Appending
// policies (Process, evictors): the elements a record appends wait in memory, per key, and reach
// RocksDB as one merge per key. Both are written back when the cache holds more than
// RocksDbStateOptions::window_cache_bytes (it is then emptied), before every snapshot (Flush, from
// the operator's PrepareSnapshot) and at the end of a restore. So a hot (key, window) costs RocksDB one write per checkpoint interval instead of a
// read and a write (or a merge) per record: Flink SQL's mini-batch, for the DataStream window
// operators. While RocksDB holds nothing the cache does not (the column family was empty when
// opened and nothing left the cache since), a miss means "absent" and reads nothing.
// window_cache_bytes = 0 turns the cache off: every record reads and writes RocksDB.
template <typename Acc, typename In>
class RocksContents {
 public:
  using State = typename Acc::State;
  using Codec = RocksContentsCodec<Acc>;
  static constexpr bool kAppend = Codec::kAppend;

  RocksWindowColumn& column() { return column_; }

  // Opens the column family `name` of `store`'s instance and sizes the cache from its options.
  absl::Status Open(KeyedStateStore& store, std::string name) {
    if (column_.open()) return absl::OkStatus();
    SLUICE_RETURN_IF_ERROR(column_.Open(store, std::move(name)));
    capacity_ = static_cast<size_t>(column_.db()->options().window_cache_bytes);
    complete_ = capacity_ > 0 && column_.Empty();
    return absl::OkStatus();
  }

  // Adds `v` to the contents at `key`. Read-modify-write policies return the updated state
  // (valid until the next call); appending ones return nullptr without reading anything.
  std::optional<State>* Add(const std::string& key, Acc& acc, const In& v, Timestamp ts,
                            const std::string& op) {
    if constexpr (kAppend) {
      element_.clear();
      Codec::WriteElement(v, ts, &element_);
      if (capacity_ > 0) {
        std::string& pending = Pending(key);
        const size_t before = pending.size();
        AppendListElement(element_, &pending);
        bytes_ += pending.size() - before;
        return nullptr;
      }
      encoded_.clear();
      AppendListElement(element_, &encoded_);
      column_.Append(key, encoded_);
      return nullptr;
    } else {
      if (capacity_ > 0) {
        Cached& c = Lookup(key, op);
        acc.Add(c.state, v, ts);
        c.dirty = true;
        return &c.state;
      }
      ReadStored(key, &current_, op);
      acc.Add(current_, v, ts);
      Put(key, *current_);
      return &current_;
    }
  }
  // Adds `v`; returns whether the contents existed before (the slicing operator's "new slice").
  bool AddAndCheckExisted(const std::string& key, Acc& acc, const In& v, Timestamp ts,
                          const std::string& op) {
    static_assert(!kAppend);
    if (capacity_ > 0) {
      Cached& c = Lookup(key, op);
      const bool existed = c.state.has_value();
      acc.Add(c.state, v, ts);
      c.dirty = true;
      return existed;
    }
    const bool existed = ReadStored(key, &current_, op);
    acc.Add(current_, v, ts);
    Put(key, *current_);
    return existed;
  }
  // The contents at `key` into *out (reset when absent); false when absent.
  bool Read(const std::string& key, std::optional<State>* out, const std::string& op) {
    if constexpr (kAppend) {
      if (!ReadBytes(key, &stored_)) {
        out->reset();
        return false;
      }
      out->emplace();
      if (!Codec::Read(stored_, &**out)) column_.Corrupt(op);
      return true;
    } else {
      if (capacity_ > 0) {
        if (auto it = cache_.find(key); it != cache_.end()) {
          *out = it->second.state;
          return out->has_value();
        }
        if (complete_) {
          out->reset();
          return false;
        }
      }
      return ReadStored(key, out, op);
    }
  }
  // Replaces the contents at `key` (an evictor's or an emptying function's changes).
  void Write(const std::string& key, const State& s) {
    if (capacity_ == 0) {
      Put(key, s);
    } else if constexpr (kAppend) {
      Delete(key);
      std::string& pending = Pending(key);
      Codec::Write(s, &pending);
      bytes_ += pending.size();
    } else {
      auto [it, fresh] = cache_.try_emplace(key);
      // Not read: whether RocksDB holds the key is unknown unless the cache is complete.
      if (fresh) {
        it->second.stored = !complete_;
        bytes_ += EntryBytes(key);
      }
      it->second.state = s;
      it->second.dirty = true;
    }
  }
  void Delete(const std::string& key) {
    if (capacity_ > 0) {
      if constexpr (kAppend) {
        if (auto it = appends_.find(key); it != appends_.end()) {
          bytes_ -= EntryBytes(key) + it->second.size();
          appends_.erase(it);
        }
        if (complete_) return;
      } else {
        if (auto it = cache_.find(key); it != cache_.end()) {
          const bool stored = it->second.stored;
          bytes_ -= EntryBytes(key);
          cache_.erase(it);
          if (stored) column_.Delete(key);
          return;
        }
        if (complete_) return;
      }
    }
    column_.Delete(key);
  }

  // Moves the contents at `from` into those at `to` (merging windows), combining with
  // acc.Merge as the in-memory path does: appended lists are concatenated without decoding.
  void MoveInto(const std::string& from, const std::string& to, Acc& acc, const std::string& op) {
    if constexpr (kAppend) {
      if (!ReadBytes(from, &stored_)) return;
      Delete(from);
      if (capacity_ > 0) {
        Pending(to).append(stored_);
        bytes_ += stored_.size();
      } else {
        column_.Append(to, stored_);
      }
    } else {
      std::optional<State> moved;
      if (!Read(from, &moved, op)) return;
      Delete(from);
      if (capacity_ > 0) {
        Cached& c = Lookup(to, op);
        acc.Merge(c.state, *moved);
        c.dirty = true;
        return;
      }
      ReadStored(to, &current_, op);
      acc.Merge(current_, *moved);
      Put(to, *current_);
    }
  }

  // Writes what the cache changed to RocksDB (before a snapshot scans or checkpoints the column
  // family). Cached contents stay cached; pending appends leave the cache.
  void Flush() {
    if constexpr (kAppend) {
      for (const auto& [key, elements] : appends_) column_.Append(key, elements);
      if (!appends_.empty()) complete_ = false;
      appends_.clear();
      bytes_ = 0;
    } else {
      for (auto& [key, c] : cache_) {
        if (!c.dirty) continue;
        if (c.state) {
          Put(key, *c.state);
          c.stored = true;
        } else if (c.stored) {
          column_.Delete(key);
          c.stored = false;
        }
        c.dirty = false;
      }
    }
  }
  // At the end of a batch (and during a restore): a cache above its bound is written back and
  // emptied.
  void EvictIfFull() {
    if (bytes_ <= capacity_) return;
    Flush();
    if (!cache_.empty()) complete_ = false;
    cache_.clear();
    bytes_ = 0;
  }
  // The cache's memory as it counts it (see EntryBytes), and its entries.
  size_t cached_bytes() const { return bytes_; }
  size_t cached_entries() const { return cache_.size() + appends_.size(); }

  // Canonical contents of a stored value: [u8 1][ContentsCodec<Acc>] (see window_operator.h).
  template <typename CanonicalWrite>
  void ToCanonical(std::string_view stored, std::string* out, CanonicalWrite&& write,
                   const std::string& op) {
    State s{};
    if (!Codec::Read(stored, &s)) column_.Corrupt(op);
    out->push_back(1);
    write(s, out);
  }

 private:
  struct Cached {
    std::optional<State> state;
    bool dirty = false;   // changed since it was last written to RocksDB
    bool stored = false;  // RocksDB may hold a value for the key
  };
  // What an entry costs beyond its pending bytes: the map slot and its control byte, and the key
  // when it does not fit std::string's inline buffer. The state is counted by its size (a state
  // holding heap memory, such as a vector, is undercounted).
  static size_t EntryBytes(const std::string& key) {
    constexpr size_t kSlot = std::max(sizeof(std::pair<const std::string, Cached>),
                                      sizeof(std::pair<const std::string, std::string>)) +
                             1;
    return kSlot + (key.size() >= 16 ? key.size() + 1 : 0);
  }
  // The cached entry of `key`, loaded from RocksDB on a miss.
  Cached& Lookup(const std::string& key, const std::string& op) {
    auto [it, fresh] = cache_.try_emplace(key);
    if (fresh) {
      bytes_ += EntryBytes(key);
      if (!complete_) it->second.stored = ReadStored(key, &it->second.state, op);
    }
    return it->second;
  }
  // Appending policies: the pending elements of `key`.
  std::string& Pending(const std::string& key) {
    auto [it, fresh] = appends_.try_emplace(key);
    if (fresh) bytes_ += EntryBytes(key);
    return it->second;
  }
  bool ReadStored(const std::string& key, std::optional<State>* out, const std::string& op) {
    out->reset();
    if (!column_.Get(key, &stored_)) return false;
    out->emplace();
    if (!Codec::Read(stored_, &**out)) column_.Corrupt(op);
    return true;
  }
  // Appending policies: the encoded list at `key` (stored elements, then pending ones).
  bool ReadBytes(const std::string& key, std::string* out) {
    out->clear();
    const bool stored = !complete_ && column_.Get(key, out);
    auto it = appends_.find(key);
    if (it == appends_.end()) return stored;
    out->append(it->second);
    return true;
  }
  void Put(const std::string& key, const State& s) {
    encoded_.clear();
    Codec::Write(s, &encoded_);
    column_.Put(key, encoded_);
  }

  RocksWindowColumn column_;
  std::optional<State> current_;
  std::string stored_, encoded_, element_;
  absl::flat_hash_map<std::string, Cached> cache_;         // read-modify-write policies
  absl::flat_hash_map<std::string, std::string> appends_;  // appending policies: encoded elements
  size_t bytes_ = 0;       // what the cache holds, as EntryBytes counts it
  size_t capacity_ = 0;    // RocksDbStateOptions::window_cache_bytes
  bool complete_ = false;  // RocksDB holds nothing that is not in the cache
};

// The records of an operator's window state on the RocksDB backend, in canonical snapshots:
// `write(kg, emit)` scans the column families. Registered under the same name as the in-memory
// InternalStateBuckets it replaces.
class RocksWindowSnapshot final : public InternalKeyedState {
 public:
  using Write =
      std::function<void(int, absl::FunctionRef<void(std::string_view, std::string_view)>)>;
  RocksWindowSnapshot(std::function<void()> prepare, Write write)
      : prepare_(std::move(prepare)), write_(std::move(write)) {}
  void PrepareSnapshot(size_t) override { prepare_(); }
  void WriteKeyGroup(int kg,
                     absl::FunctionRef<void(std::string_view, std::string_view)> emit) override {
    write_(kg, emit);
  }
  bool StoredInRocksDb() const override { return true; }

 private:
  std::function<void()> prepare_;
  Write write_;
};

}  // namespace sluice::internal
