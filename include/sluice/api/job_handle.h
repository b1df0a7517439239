// JobHandle: a job started with StreamEnvironment::ExecuteAsync.
//
//   absl::StatusOr<sluice::JobHandle> job = env.ExecuteAsync("clicks");
//   ...
//   job->Cancel();
//   absl::Status status = job->Wait();   // absl::CancelledError after Cancel()
//
// Thread-safe. Destroying the handle of a running job cancels it and waits for it, so a job never
// outlives its handle and never leaks a thread. A moved-from handle has no job: Wait() returns
// FailedPrecondition, WaitFor() and IsDone() return true, Cancel() does nothing.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

#include "absl/status/status.h"
#include "absl/time/time.h"

#include <sluice/api/job_graph.h>

namespace sluice {
namespace internal {
class JobRunner;
}  // namespace internal

class JobHandle {
 public:
  explicit JobHandle(std::shared_ptr<internal::JobRunner> job);
  JobHandle(JobHandle&&) noexcept;
  JobHandle& operator=(JobHandle&&) noexcept;
  ~JobHandle();

  // Blocks until the job has ended and every worker thread has stopped; returns OK when every
  // source was exhausted and every record reached the sinks, the failure otherwise.
  // Must not be called from inside the job (a user function).
  absl::Status Wait();
  // Waits at most `timeout`; true when the job has ended.
  bool WaitFor(absl::Duration timeout);
  // Asks the job to stop; returns at once. Wait() then returns CancelledError.
  void Cancel();
  bool IsDone() const;
  const std::string& name() const;
  // The job's counters ("<operator name>.<counter>" → value summed over subtasks), e.g.
  // "Window.numLateRecordsDropped": live while the job runs (since its latest (re)start), final
  // once Wait() returned. Empty for a moved-from handle.
  std::map<std::string, int64_t> Counters() const;
  // The job's vertices (chains of operators with their parallelism) and the edges between them
  // (api/job_graph.h). Empty for a moved-from handle.
  JobGraph Graph() const;

  // Takes a savepoint (a self-contained, canonical snapshot of the whole job) into `dir` and
  // returns its path once it is complete; the job keeps running. Resume a job from it with
  // RuntimeOptions::restore_from — at another parallelism or with the other state backend too.
  absl::StatusOr<std::string> TriggerSavepoint(const std::string& dir);
  // Takes a savepoint, then cancels the job (Flink's stop-with-savepoint). Wait() then returns
  // CancelledError.
  absl::StatusOr<std::string> StopWithSavepoint(const std::string& dir);
  // Number of the last complete checkpoint or savepoint (0 = none yet).
  int64_t LastCompletedCheckpoint() const;

 private:
  std::shared_ptr<internal::JobRunner> job_;
};

}  // namespace sluice
