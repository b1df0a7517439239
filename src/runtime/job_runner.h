// JobRunner: one Execute() call across its attempts. The first attempt is a Job built from the
// graph; when it fails and the restart strategy allows, the runner builds a new Job from the same
// graph, restored from the latest complete checkpoint (Flink's in-process restart), after the
// strategy's delay. Without a restart strategy it is a thin wrapper around the single Job and uses
// no thread of its own. Thread-safe.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include <sluice/core/runtime_options.h>
#include <sluice/internal/graph.h>

#include "checkpoint/directory_lock.h"
#include "runtime/job.h"

namespace sluice::internal {

class JobRunner {
 public:
  static absl::StatusOr<std::shared_ptr<JobRunner>> Start(StreamGraph graph, RuntimeOptions options,
                                                          std::string name);
  ~JobRunner();

  absl::Status Wait();
  bool WaitFor(absl::Duration timeout);
  void Cancel();
  bool IsDone() const;
  const std::string& name() const { return name_; }
  std::map<std::string, int64_t> Counters() const;
  JobGraph Graph() const;
  absl::StatusOr<std::string> TriggerSavepoint(const std::string& dir);
  int64_t CompletedCheckpoints() const;
  // Attempts started so far (1 + restarts).
  int attempts() const;

 private:
  JobRunner(StreamGraph graph, RuntimeOptions options, std::string name);
  std::shared_ptr<Job> Current() const;
  void Supervise();
  // The delay before the next restart, or an error when the strategy allows no more.
  absl::StatusOr<absl::Duration> NextDelay(const absl::Status& failure);
  // Sets options.restore_from to the checkpoint directory when it has a complete checkpoint.
  absl::Status SetRestoreFromLatest(RuntimeOptions& options) const;
  // Releases the directories once the job has ended (for good: no restart follows).
  void ReleaseDirectory();

  const StreamGraph graph_;
  RuntimeOptions options_;
  const std::string name_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<Job> job_;
  std::thread supervisor_;
  bool cancelled_ = false;
  bool done_ = false;
  absl::Status status_;
  int attempts_ = 1;
  int64_t last_checkpoint_ = 0;
  absl::Duration next_exponential_;
  std::vector<absl::Time> failures_;
  // The locks of the checkpoint directory and of the sinks' output paths, held from before the
  // first attempt until the job has ended: one job per directory, across this and other processes.
  std::vector<std::unique_ptr<DirectoryLock>> directory_locks_;
};

}  // namespace sluice::internal
