// The sink interface: a Sink<T> creates one SinkWriter<T> per parallel subtask; the runtime hands
// each writer whole batches.
//
//   class Stdout : public sluice::Sink<int> {
//     absl::StatusOr<std::unique_ptr<sluice::SinkWriter<int>>> CreateWriter(
//         const sluice::RuntimeContext& ctx) override { ... }
//   };
//   stream.SinkTo(Stdout());
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include <sluice/core/runtime_context.h>

namespace sluice {

// One parallel instance of a sink. Used by a single thread at a time.
template <typename T>
class SinkWriter {
 public:
  virtual ~SinkWriter() = default;
  // Writes a batch; may move from the records. An error fails the job with that status.
  virtual absl::Status Write(std::vector<T>& records) = 0;
  // All input has arrived; with checkpoints the job's final checkpoint follows. A sink that buffers
  // moves what it holds into what that checkpoint's SnapshotState covers (e.g. delivers it into
  // the open transaction). Default: nothing.
  virtual absl::Status EndOfInput() { return absl::OkStatus(); }
  // The job ends cleanly: all input has arrived and, with checkpoints, the job's final checkpoint
  // completed (its SnapshotState and NotifyCheckpointComplete came first). Make everything
  // written durable/visible.
  virtual absl::Status Finish() { return absl::OkStatus(); }
  // Releases resources; called after Finish(), or instead of it when the job fails or is cancelled.
  virtual void Close() {}

  // --- Checkpoints (docs/checkpointing.md) ---------------------------------------------------------
  // Checkpoint `id`'s barrier arrived: every record before it was written. An at-least-once sink
  // flushes here; a two-phase-commit sink pre-commits its open transaction and returns what it
  // needs to commit it later (TwoPhaseCommitSink). The default keeps no state.
  virtual absl::StatusOr<std::string> SnapshotState(int64_t /*id*/) { return std::string(); }
  // Checkpoint `id` is complete: commit what was pre-committed for it (and before it).
  virtual absl::Status NotifyCheckpointComplete(int64_t /*id*/) { return absl::OkStatus(); }
  // Called once before the first Write when the job resumes: the states that old subtasks'
  // SnapshotState returned (old subtask j goes to new subtask j % parallelism). A
  // two-phase-commit sink commits their pre-committed transactions here (the checkpoint they
  // belong to is complete) — commits must therefore be idempotent.
  virtual absl::Status RestoreState(const std::vector<std::string>& /*states*/) {
    return absl::OkStatus();
  }
};

template <typename T>
class Sink {
 public:
  using value_type = T;
  virtual ~Sink() = default;
  virtual absl::StatusOr<std::unique_ptr<SinkWriter<T>>> CreateWriter(
      const RuntimeContext& ctx) = 0;
  // The largest parallelism this sink supports.
  virtual int MaxParallelism() const { return 1 << 15; }
  // A short description used in the default operator name ("Sink: <description>").
  virtual std::string Describe() const { return "custom"; }
  // The file or directory this sink writes and owns alone, if any (a FirehoseSink: its staging
  // directory, as sinks of other streams may share the delivery tree). Two sinks of a job may not
  // own the same path (or one inside the other): Execute() refuses such a job, naming both; and a
  // running job locks the path, so a second job on it fails at once.
  virtual std::string OutputPath() const { return ""; }
};

}  // namespace sluice
