// RuntimeOptions: how a StreamEnvironment runs its jobs.
//
//   sluice::StreamEnvironment env({.parallelism = 4, .batch_size = 512});
//   sluice::StreamEnvironment batch_env({.execution_mode = sluice::ExecutionMode::kBatch});
#pragma once

#include <cstdint>
#include <memory>
#include <string>

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

// As Flink's CheckpointingMode.
enum class CheckpointingMode {
  // Barriers are aligned: a task's state reflects exactly the records before the barrier on every
  // input. With replayable sources and exactly-once sinks, results are exactly once.
  kExactlyOnce,
  // No alignment: records behind an early barrier may be in the snapshot and replayed again.
  kAtLeastOnce,
};

// Periodic checkpoints (Flink's execution.checkpointing.*). See docs/checkpointing.md.
struct CheckpointOptions {
  // Time between the start of two checkpoints. Zero = no periodic checkpoints.
  absl::Duration interval = absl::ZeroDuration();
  // Checkpoint storage root: chk-<id>/ directories, shared/ files. Required with an interval.
  std::string directory;
  CheckpointingMode mode = CheckpointingMode::kExactlyOnce;
  // A checkpoint not complete after this long is aborted. Default 10 min.
  absl::Duration timeout = absl::Minutes(10);
  // Least time between the end of one checkpoint and the start of the next. Default 0.
  absl::Duration min_pause = absl::ZeroDuration();
  // Failed checkpoints in a row the job tolerates; one more fails the job. Default 0.
  int tolerable_failures = 0;
  // Complete checkpoints kept in `directory`. Default 1.
  int retained = 1;
  // HashMap backend: after a full checkpoint of a subtask's keyed state, checkpoints write only
  // what changed since the one before (a file of changes, in shared/) and reference the earlier
  // files, until the changes written add up to the full file's size (at least 1 MiB) or 16 files
  // of changes follow it; then a full file again.
  // A restore applies the chain. Off: every checkpoint writes the whole keyed state. Savepoints
  // are always whole. (RocksDB: RocksDbStateOptions.incremental_checkpoints.) Default on.
  bool incremental = true;
  // With periodic checkpoints, a task that reached the end of its input stays up and keeps taking
  // part in checkpoints (Flink's checkpoints after tasks finish), and the job ends only after a
  // final checkpoint taken once every task reached its end: two-phase-commit sinks commit their
  // last transaction when that checkpoint completes, so a failure at any moment of a bounded job
  // repeats nothing. Off: tasks end at once, sinks commit at the end of input, and a failure after
  // that replays what followed the last checkpoint. Default on.
  bool final_checkpoint = true;
  // A resume from a storage root (RuntimeOptions::restore_from, or a restart after a failure)
  // whose newest complete checkpoint is damaged. Off (default): the job fails with DataLoss
  // naming the damaged checkpoint and the older ones — exactly-once holds only against the newest
  // completed checkpoint, and exactly-once sinks may have committed output after an older one.
  // On: the job resumes from the newest older checkpoint that validates and logs a warning
  // (core/log.h) saying that output committed after it will be produced again. (Flink never falls
  // back.)
  bool fall_back_to_older_checkpoint = false;
};

// What the job does when it fails (Flink's restart-strategy). It restarts in-process from the
// latest complete checkpoint (from the beginning when there is none).
struct RestartStrategy {
  enum class Kind { kNone, kFixedDelay, kExponentialDelay, kFailureRate };
  Kind kind = Kind::kNone;
  // kFixedDelay: attempts after the first failure; kFailureRate: failures allowed per interval.
  int attempts = 3;
  absl::Duration delay = absl::Seconds(1);  // kFixedDelay, kFailureRate; kExponentialDelay start
  absl::Duration max_delay = absl::Minutes(5);              // kExponentialDelay
  double backoff_multiplier = 2.0;                          // kExponentialDelay
  absl::Duration failure_rate_interval = absl::Minutes(1);  // kFailureRate

  static RestartStrategy None() { return {}; }
  static RestartStrategy FixedDelay(int attempts, absl::Duration delay) {
    RestartStrategy r;
    r.kind = Kind::kFixedDelay;
    r.attempts = attempts;
    r.delay = delay;
    return r;
  }
  static RestartStrategy ExponentialDelay(absl::Duration initial, absl::Duration max,
                                          double multiplier) {
    RestartStrategy r;
    r.kind = Kind::kExponentialDelay;
    r.delay = initial;
    r.max_delay = max;
    r.backoff_multiplier = multiplier;
    return r;
  }
  static RestartStrategy FailureRate(int failures, absl::Duration interval, absl::Duration delay) {
    RestartStrategy r;
    r.kind = Kind::kFailureRate;
    r.attempts = failures;
    r.failure_rate_interval = interval;
    r.delay = delay;
    return r;
  }
};

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
  // See ExecutionMode. Default kStreaming, as Flink's: a job over bounded sources (a collection, a
  // file) keeps its watermarks, late data and per-record updates unless kBatch/kAutomatic is set.
  ExecutionMode execution_mode = ExecutionMode::kStreaming;
  // How often periodic watermark generators emit (Flink's auto-watermark interval). Default 200 ms.
  absl::Duration auto_watermark_interval = absl::Milliseconds(200);
  // Where processing time comes from. nullptr = the system clock. Tests inject a ManualClock.
  std::shared_ptr<Clock> clock;
  // Where keyed state lives. Default kHashMap.
  StateBackendKind state_backend = StateBackendKind::kHashMap;
  // Used when state_backend is kRocksDb.
  RocksDbStateOptions rocksdb;
  // Periodic checkpoints; off by default.
  CheckpointOptions checkpointing;
  // Resume from a checkpoint (chk-<id> directory), a savepoint directory, or a checkpoint storage
  // root (its latest valid checkpoint). Empty = start fresh.
  std::string restore_from;
  // State in restore_from that matches no operator of this job (its uid or derived id is gone:
  // an operator was removed, or one without a Uid() moved in the graph) fails the job at start,
  // naming the operator. True: that state is dropped (a logged warning names each operator),
  // as Flink's --allowNonRestoredState.
  bool allow_non_restored_state = false;
  // Restarts after a failure. Default: none (the failure ends the job).
  RestartStrategy restart_strategy;

  // Returns InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

}  // namespace sluice
