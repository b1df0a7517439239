// RocksDbStore: one embedded RocksDB instance (the keyed state of one subtask), behind an
// interface that does not include RocksDB's headers. Internal: the typed state tables of
// include/sluice/state/ encode keys and values and call this; it is compiled in
// src/state/rocksdb_store.cc.
//
// Key layout (chosen by the callers, documented here): [key group: 2 bytes big-endian][key]
// [namespace][map key], so one key group is one contiguous range and rescaling is a range scan.
//
// Value layouts the TTL compaction filter understands (per column family, see TtlLayout):
//  * kValue: [8-byte little-endian timestamp (ms)][payload] — value, map entry, reducing and
//    aggregating state with TTL.
//  * kList: a list value is a concatenation of elements, each [varint32 length][element], and
//    with TTL each element is [8-byte little-endian timestamp][payload].
// An entry (or list element) is expired when timestamp + ttl_ms <= clock->NowMillis().
//
// Errors on the per-record path (Get/Put/Delete/Append/Scan) throw internal::JobFailure with an
// Internal status naming the instance directory, the column family and the operation: they fail
// the job. Open / checkpoint / restore return a Status.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <sluice/state/rocksdb_options.h>
#include <sluice/time/clock.h>

namespace sluice::internal {

// The block cache and write-buffer manager shared by all stores of one job. Opaque here.
struct RocksDbResources;
std::shared_ptr<RocksDbResources> MakeRocksDbResources(const RocksDbStateOptions& options);

enum class TtlLayout { kNone, kValue, kList };

class RocksDbStore {
 public:
  // Opens (creating if missing) the instance in directory `path`, with every column family that
  // already exists there (a restored native checkpoint). `ttl_clock` (not owned, outlives the
  // store, thread-safe) is what the TTL compaction filter compares against.
  static absl::StatusOr<std::unique_ptr<RocksDbStore>> Open(
      const RocksDbStateOptions& options, std::shared_ptr<RocksDbResources> resources,
      const std::string& path, const Clock* ttl_clock);
  ~RocksDbStore();
  RocksDbStore(const RocksDbStore&) = delete;
  RocksDbStore& operator=(const RocksDbStore&) = delete;

  const std::string& path() const;
  const RocksDbStateOptions& options() const;
  // Opens another instance (e.g. a native checkpoint to read from) at `path` with this one's
  // options, shared resources and TTL clock.
  absl::StatusOr<std::unique_ptr<RocksDbStore>> OpenSibling(const std::string& path) const;

  // The column family `name`, created if missing; returns its handle index (stable for the
  // store's life). `ttl_ms` > 0 enables the compaction filter with `layout` for this family
  // (the setting is per process: it is re-given after a restore).
  absl::StatusOr<int> ColumnFamily(const std::string& name, TtlLayout layout = TtlLayout::kNone,
                                   int64_t ttl_ms = 0);
  // Names of the column families that exist (excluding "default").
  std::vector<std::string> ColumnFamilyNames() const;

  // Point operations. Get returns false when the key is absent.
  bool Get(int cf, std::string_view key, std::string* value);
  void Put(int cf, std::string_view key, std::string_view value);
  void Delete(int cf, std::string_view key);
  // Appends list elements to the list value at `key` (a RocksDB merge): `encoded_elements` is
  // one or more [varint32 length][element] records (see AppendListElement).
  void Append(int cf, std::string_view key, std::string_view encoded_elements);

  // Calls fn(key, value) for every entry with begin <= key < end, in key order ("" as `end`
  // means no upper bound). fn returns false to stop.
  void Scan(int cf, std::string_view begin, std::string_view end,
            absl::FunctionRef<bool(std::string_view key, std::string_view value)> fn);
  // Calls fn for every entry whose key starts with `prefix`.
  void ScanPrefix(int cf, std::string_view prefix,
                  absl::FunctionRef<bool(std::string_view key, std::string_view value)> fn);
  // Deletes every entry whose key starts with `prefix` / lies in [begin, end).
  void DeletePrefix(int cf, std::string_view prefix);
  void DeleteRange(int cf, std::string_view begin, std::string_view end);

  // Flushes the memtables and writes a native checkpoint (hard links where possible) into
  // `dir`, which must not exist. Returns the names of the files written there (SST files keep
  // the names RocksDB gave them, so an unchanged SST has the same name in the next checkpoint:
  // incremental checkpoints upload only new names).
  absl::StatusOr<std::vector<std::string>> CreateNativeCheckpoint(const std::string& dir);

  // Runs a manual compaction of every column family (tests use it to exercise the TTL filter).
  absl::Status CompactAll();

 private:
  struct Impl;
  explicit RocksDbStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// List value encoding shared by the typed list state and the merge operator.
void AppendListElement(std::string_view element, std::string* out);
// Calls fn(element) for each element of an encoded list; false if `encoded` is malformed.
bool ForEachListElement(std::string_view encoded, absl::FunctionRef<void(std::string_view)> fn);

}  // namespace sluice::internal
