// StreamEnvironment: where a job is described and executed.
//
//   sluice::StreamEnvironment env({.parallelism = 4});
//   env.FromSequence(1, 1000)
//       .Map([](int64_t x) { return x * x; })
//       .SinkTo(sluice::PrintSink<int64_t>());
//   absl::Status status = env.Execute("squares");
//
// Not thread-safe: describe a job from one thread. Execute() consumes the described job (as in
// Flink), so the environment can describe and run another one afterwards.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <sluice/api/job_handle.h>
#include <sluice/connectors/source.h>
#include <sluice/core/runtime_options.h>
#include <sluice/internal/graph.h>
#include <sluice/time/watermark_strategy.h>

namespace sluice {

template <typename T>
class DataStream;

class StreamEnvironment {
 public:
  explicit StreamEnvironment(RuntimeOptions options = {});
  ~StreamEnvironment();
  StreamEnvironment(const StreamEnvironment&) = delete;
  StreamEnvironment& operator=(const StreamEnvironment&) = delete;

  const RuntimeOptions& options() const { return options_; }

  // A stream read from `source` (any class derived from Source<T>). `name` defaults to
  // "Source: <source.Describe()>".
  template <typename S>
    requires std::derived_from<S, Source<typename S::value_type>>
  DataStream<typename S::value_type> FromSource(S source, std::string name = "");

  // As above, with event timestamps and watermarks from `strategy`, generated in each source
  // subtask (the operator is fused with the source and shares its parallelism).
  template <typename S>
    requires std::derived_from<S, Source<typename S::value_type>>
  DataStream<typename S::value_type> FromSource(
      S source, WatermarkStrategy<typename S::value_type> strategy, std::string name = "");

  // The elements of `values`, in order, from one (non-parallel) source subtask. Bounded.
  template <typename T>
  DataStream<T> FromCollection(std::vector<T> values);

  // The numbers [from, to], split into contiguous ranges over the source's subtasks. Bounded.
  DataStream<int64_t> FromSequence(int64_t from, int64_t to);

  // Runs the described job to completion (bounded inputs) or until it fails or is cancelled.
  // Misuse found while building the job (bad options, bad parallelism, an unbounded source in
  // BATCH mode) is reported before any record flows.
  absl::Status Execute(std::string job_name = "sluice-job");

  // Starts the described job and returns at once.
  absl::StatusOr<JobHandle> ExecuteAsync(std::string job_name = "sluice-job");

  // --- Internal: used by the typed API -----------------------------------------------------------
  internal::StreamGraph& graph() { return *graph_; }
  void RecordError(absl::Status status) { graph_->errors.push_back(std::move(status)); }

 private:
  RuntimeOptions options_;
  std::unique_ptr<internal::StreamGraph> graph_;
};

}  // namespace sluice

#include <sluice/api/data_stream.h>
