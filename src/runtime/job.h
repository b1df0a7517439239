// Job: the execution graph of one Execute() call — tasks, channels and the worker pool they run on.
//
// Build() compiles a StreamGraph: resolves parallelism and partitioning, fuses chainable operators
// into tasks, creates one channel per (producer subtask, consumer subtask) of every non-chained
// edge, and instantiates every operator, reader and writer. Only then does Start() let records
// flow. Thread-safe after Build().
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/thread_pool.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include <sluice/api/job_graph.h>
#include <sluice/core/counters.h>
#include <sluice/core/runtime_options.h>
#include <sluice/internal/graph.h>

#include "checkpoint/checkpoint_storage.h"
#include "checkpoint/directory_lock.h"
#include "runtime/channel.h"
#include "runtime/checkpoint_coordinator.h"
#include "runtime/task.h"

namespace sluice::internal {

class Job {
 public:
  static absl::StatusOr<std::shared_ptr<Job>> Build(StreamGraph graph,
                                                    const RuntimeOptions& options,
                                                    std::string name);
  ~Job();

  void Start();
  // Blocks until every task has finished, then joins the worker pool. Any thread but a worker;
  // concurrent callers all return after the pool is joined.
  absl::Status Wait();
  // True when every task has finished within `timeout` (InfiniteDuration waits without limit).
  bool WaitFor(absl::Duration timeout);
  void Cancel();
  bool IsDone() const;
  const std::string& name() const { return name_; }

  // --- Called by tasks ---------------------------------------------------------------------------
  // Records the first failure and cancels every task.
  void Fail(absl::Status status);
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }
  void TaskFinished();
  boost::asio::thread_pool& pool() { return *pool_; }
  const Clock& clock() const { return *clock_; }

  // --- Checkpoints -------------------------------------------------------------------------------
  void AcknowledgeCheckpoint(int64_t id, std::vector<SubtaskSnapshot> snapshots, bool ended);
  // True when the job ends with a final checkpoint (CheckpointOptions::final_checkpoint with
  // periodic checkpoints): a task that reached the end of its input waits for it.
  bool final_checkpoints() const { return final_checkpoints_; }
  // A task reached the end of its input and now waits for the final checkpoint.
  void TaskEnded() { coordinator_->TaskEnded(); }
  // The checkpoint in flight, 0 when none.
  int64_t PendingCheckpointId() const { return coordinator_->pending_id(); }
  // Set by the coordinator before it announces the final checkpoint's completion.
  void SetFinalCheckpoint(int64_t id) { final_checkpoint_.store(id, std::memory_order_release); }
  // True when a task told of the completion of checkpoints up to `notified` may end.
  bool FinalCheckpointCompleted(int64_t notified) const {
    const int64_t id = final_checkpoint_.load(std::memory_order_acquire);
    return id > 0 && notified >= id;
  }
  // True when checkpoint `id` is a savepoint (snapshots in the canonical format).
  bool IsSavepoint(int64_t id) const;
  void DeclineCheckpoint(int64_t id, absl::Status why);
  // Takes a savepoint into `dir`; returns its path once complete. Not from a task.
  absl::StatusOr<std::string> TriggerSavepoint(const std::string& dir);
  int64_t CompletedCheckpoints() const;

  // The largest number of batches any channel held at once (tests of backpressure).
  size_t MaxChannelOccupancy() const;
  const Counters& counters() const { return counters_; }
  const JobGraph& plan() const { return plan_; }
  Counters& counters() { return counters_; }

 private:
  explicit Job(std::string name) : name_(std::move(name)) {}
  absl::Status Compile(StreamGraph graph, const RuntimeOptions& options);
  // Copies the native RocksDB files of an old subtask into a fresh local directory (verifying
  // each file) and returns it, for KeyedStateBackend::RestoreNative.
  absl::StatusOr<std::string> StageNativeFiles(const RestoredCheckpoint& restored,
                                               const checkpoint::SubtaskState& st,
                                               const std::string& what);
  // Gives each operator the state saved under its id (`operator_ids`, by node); state of no
  // operator is refused unless options.allow_non_restored_state.
  absl::Status Restore(const StreamGraph& graph, const std::vector<int>& parallelism,
                       const std::vector<std::string>& operator_ids, const RuntimeOptions& options,
                       const RestoredCheckpoint& restored);
  void WakeAll();
  void JoinPool();

  const std::string name_;
  // Declared before the tasks: it must outlive them, since their timers and I/O objects are bound
  // to it. ~Job() joins it before anything is destroyed, so no handler runs on a dead task.
  std::optional<boost::asio::thread_pool> pool_;
  Counters counters_;  // outlives the operators that add to it
  JobGraph plan_;
  std::vector<std::unique_ptr<Channel>> channels_;
  std::vector<std::unique_ptr<Task>> tasks_;
  std::shared_ptr<Clock> clock_;
  StateBackendSetup state_;  // outlives the operators whose backends use it
  std::unique_ptr<CheckpointCoordinator> coordinator_;
  // Held while the job runs: its RocksDB working directory (state_.rocksdb_job_dir).
  std::unique_ptr<DirectoryLock> rocksdb_dir_lock_;
  absl::Duration checkpoint_interval_ = absl::ZeroDuration();
  bool final_checkpoints_ = false;
  std::atomic<int64_t> final_checkpoint_{0};
  int clock_listener_ = -1;
  std::atomic<bool> cancelled_{false};

  mutable std::mutex mu_;
  std::condition_variable done_cv_;
  size_t running_tasks_ = 0;
  bool started_ = false;
  bool done_ = false;
  absl::Status status_;

  // Serializes joining the pool; held for the whole join so every Wait() returns after it.
  std::mutex join_mu_;
  bool joined_ = false;
};

}  // namespace sluice::internal
