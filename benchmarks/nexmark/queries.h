// The Nexmark queries on Sluice's public API, and RunQuery, which builds one of them on a
// generated stream or an event file, runs it and measures it (used by sluice-nexmark and by the
// nexmark sample test).
//
//   nexmark::RunOptions options;
//   options.query = "q5";
//   options.input = "events.csv";
//   options.output = "/tmp/q5.csv";                     // the result lines (docs/nexmark.md)
//   absl::StatusOr<nexmark::RunResult> r = nexmark::RunQuery(options);
//
// q0, q1, q2, q3, q4, q5, q7, q8, q9 and q11 write the checked result lines of docs/nexmark.md;
// q12–q22 are benchmark workloads after Flink's nexmark SQL (their lines are documented there).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include <sluice/state/state.h>

#include "generator.h"

namespace nexmark {

struct QueryInfo {
  const char* name;
  // Result checked against the COST program (the Nexmark sample test).
  bool checked;
  // No state and no event time: records carry their emission time and the run reports latency.
  bool stateless;
  const char* description;
};

// Every query the runner knows, in order.
const std::vector<QueryInfo>& Queries();
// nullptr when `name` is not a known query.
const QueryInfo* FindQuery(const std::string& name);

struct RunOptions {
  std::string query;
  // Generated events (used when `input` is empty).
  GeneratorConfig generator;
  // An event file (docs/nexmark.md; read by one source subtask).
  std::string input;
  // Where to write the result lines; empty: results are counted and dropped.
  std::string output;
  int parallelism = 1;
  sluice::StateBackendKind state_backend = sluice::StateBackendKind::kHashMap;
  int64_t checkpoint_interval_ms = 0;
  std::string checkpoint_dir;
  // CheckpointOptions::incremental (false: every checkpoint writes the whole keyed state).
  bool incremental_checkpoints = true;
  // Where RocksDB keeps its files (state_backend kRocksDb); empty: a directory under /tmp.
  std::string rocksdb_dir;
  // RocksDbStateOptions::window_cache_bytes (-1: the default).
  int64_t rocksdb_window_cache_bytes = -1;
};

struct RunResult {
  int64_t events = 0;
  int64_t results = 0;
  double wall_seconds = 0;
  double cpu_seconds = 0;
  // Stateless queries: emission-to-sink latency percentiles in microseconds (-1 otherwise),
  // sampled on one record in 16.
  int64_t latency_samples = 0;
  int64_t latency_p50_us = -1;
  int64_t latency_p99_us = -1;
  int64_t latency_max_us = -1;
  // With checkpoints: the last complete one, and the time the task threads spent in their
  // synchronous part (counters "<operator>.checkpointSyncMicros", summed).
  int64_t checkpoints = 0;
  int64_t checkpoint_sync_us = -1;
};

absl::StatusOr<RunResult> RunQuery(const RunOptions& options);

}  // namespace nexmark
