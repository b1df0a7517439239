// RocksDbStateOptions: how the embedded RocksDB state backend uses disk and memory.
//
//   sluice::StreamEnvironment env({
//       .state_backend = sluice::StateBackendKind::kRocksDb,
//       .rocksdb = {.local_dir = "/mnt/nvme/sluice", .block_cache_bytes = 256 << 20}});
//
// Each keyed subtask owns one RocksDB instance under `local_dir`, with one column family per
// state. All instances of a job share one block cache and one write-buffer budget, so the job's
// RocksDB memory is bounded by block_cache_bytes + write_buffer_budget_bytes.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace sluice {

struct RocksDbStateOptions {
  // Directory for the working instances (not the checkpoints). Empty = $TMPDIR (or /tmp) +
  // "/sluice-rocksdb". Each job creates a unique subdirectory and removes it when it ends.
  std::string local_dir;
  // LRU block cache shared by every instance of the job. Default 64 MiB.
  int64_t block_cache_bytes = int64_t{64} << 20;
  // Memtable size per column family before it is flushed. Default 8 MiB.
  int64_t write_buffer_bytes = int64_t{8} << 20;
  // Memtables per column family (one active, the rest flushing). Default 2.
  int max_write_buffer_number = 2;
  // Total memtable memory of the job's instances (RocksDB's WriteBufferManager). It is charged
  // to the shared cache, whose capacity is block_cache_bytes + this, so blocks keep
  // block_cache_bytes however full the memtables are. Default 64 MiB.
  int64_t write_buffer_budget_bytes = int64_t{64} << 20;
  // LZ4 compression of SST files. Default true.
  bool compression = true;
  // Block size of SST files. Default 4 KiB.
  int64_t block_size_bytes = 4096;
  // Background threads for flushes and compactions (per job). Default 2.
  int background_threads = 2;
  // Checkpoints upload the instance's native files and reuse the SST files that earlier
  // checkpoints uploaded, so a checkpoint costs what changed (Flink's incremental checkpoints;
  // Flink's default is off, Sluice's is on). Off: every checkpoint writes the canonical format.
  // Savepoints are always canonical. Default true.
  bool incremental_checkpoints = true;
  // Memory each window operator subtask uses to cache window contents between RocksDB writes:
  // records fold into cached Reduce/Aggregate contents (or append to pending elements of Process
  // and evicting windows), and what changed is written to RocksDB when the cache is full (it is
  // then emptied) and before every checkpoint. Counted approximately: keys, entries and pending
  // elements (a state holding heap memory, such as a vector, counts by its inline size). 0: no
  // cache, every record reads and writes RocksDB (Flink's behaviour). Default 64 MiB.
  int64_t window_cache_bytes = int64_t{64} << 20;

  // InvalidArgument naming the first bad field ("RocksDbStateOptions.block_cache_bytes must be
  // > 0, got -1").
  absl::Status Validate() const;
};

}  // namespace sluice
