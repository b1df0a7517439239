// RuntimeOptions: how a StreamEnvironment runs its jobs.
//
//   sluice::StreamEnvironment env({.parallelism = 4, .batch_size = 512});
//   sluice::StreamEnvironment batch_env({.execution_mode = sluice::ExecutionMode::kBatch});
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"

#include <sluice/state/rocksdb_options.h>
#include <sluice/state/state.h>
#include <sluice/time/clock.h>

namespace sluice {

// As Flink's `execution.runtime-mode`.
enum class ExecutionMode {
  // Continuous processing; rolling aggregations emit an update per record.
  kStreaming,
  // Bounded inputs only; rolling aggregations emit one final result per key at end of input.
  kBatch,
  // kBatch when every source of the job is bounded, kStreaming otherwise.
  kAutomatic,
};

const char* ExecutionModeName(ExecutionMode mode);

struct RuntimeOptions {
  // Default parallelism of every operator. 0 = the number of hardware threads.
  int parallelism = 0;
  // Number of key groups, the unit in which keyed state is distributed and rescaled. Also the upper
  // bound for the parallelism of keyed operators. Range [1, 32768]. Default 128 (as Flink).
  int max_parallelism = 128;
  // Records per batch handed between operators and threads. Default 1024.
  int batch_size = 1024;
  // Batches a channel between two tasks holds before its producer waits (backpressure). Default 16.
  int channel_capacity = 16;
  // Worker threads that run all tasks of a job. 0 = the number of hardware threads.
  int worker_threads = 0;
  // See ExecutionMode. Default kAutomatic.
  ExecutionMode execution_mode = ExecutionMode::kAutomatic;
  // How often periodic watermark generators emit (Flink's auto-watermark interval). Default 200 ms.
  absl::Duration auto_watermark_interval = absl::Milliseconds(200);
  // Where processing time comes from. nullptr = the system clock. Tests inject a ManualClock.
  std::shared_ptr<Clock> clock;
  // Where keyed state lives. Default kHashMap.
  StateBackendKind state_backend = StateBackendKind::kHashMap;
  // Used when state_backend is kRocksDb.
  RocksDbStateOptions rocksdb;

  // Returns InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

}  // namespace sluice
