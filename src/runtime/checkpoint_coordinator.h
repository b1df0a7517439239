// CheckpointCoordinator: triggers checkpoints and savepoints, collects the tasks' snapshots,
// writes them to checkpoint storage and completes them (Flink's CheckpointCoordinator).
//
// It runs on its own thread (one per job that checkpoints): triggering is a timer, and writing
// state files is the asynchronous part of a checkpoint, so tasks never wait for the disk. A
// checkpoint: (1) the coordinator asks every source task to checkpoint; (2) each task snapshots its
// operators when the barrier has reached it on all inputs, forwards the barrier and acknowledges
// with its snapshots; (3) once every task has acknowledged, the coordinator writes the state files
// and the _metadata (the checkpoint is complete when _metadata is durable) and (4) tells every
// task, so two-phase-commit sinks commit. At most one checkpoint is in flight.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include <sluice/core/runtime_options.h>
#include <sluice/internal/operators.h>

#include "checkpoint/checkpoint_storage.h"

namespace sluice::internal {

class Job;
class Task;

// SubtaskState.backend of a subtask whose keyed state is a native RocksDB checkpoint.
inline constexpr const char* kNativeRocksDbBackend = "rocksdb-native";

// One operator subtask's contribution to a checkpoint.
struct SubtaskSnapshot {
  int node_id = 0;
  int subtask = 0;
  OperatorStateSnapshot state;
};

// What the coordinator knows of each operator of the job.
struct OperatorInfo {
  int node_id = 0;
  std::string name;
  int parallelism = 1;
  std::string operator_id;  // runtime/operator_ids.h
  std::string uid;          // the user's Uid(), "" when none
};

class CheckpointCoordinator {
 public:
  CheckpointCoordinator(Job* job, std::string job_name, CheckpointOptions options,
                        std::unique_ptr<CheckpointStorage> storage, int max_parallelism,
                        std::vector<OperatorInfo> operators, std::vector<Task*> tasks,
                        int64_t first_id);
  ~CheckpointCoordinator();

  void Start();
  // Stops the thread; aborts a checkpoint in flight. Idempotent.
  void Stop();

  // --- Called by tasks (any thread) ---------------------------------------------------------------
  // `ended`: the task had reached the end of its input when it took the snapshot.
  void Acknowledge(int64_t id, std::vector<SubtaskSnapshot> snapshots, bool ended);
  // A task reached the end of its input (final checkpoints only): once every task has, the final
  // checkpoint is triggered without waiting for the interval.
  void TaskEnded();
  // The checkpoint in flight (0: none). Lock-free: read by a task that just ended, which then
  // takes part in it (no barrier reaches it any more).
  int64_t pending_id() const { return pending_id_.load(std::memory_order_seq_cst); }
  // A task cannot take part in checkpoint `id` (a source that ended before its barrier).
  void Decline(int64_t id, absl::Status why);

  // Takes a savepoint into `dir` and waits until it is complete (or failed). Any thread but a
  // task's.
  absl::StatusOr<std::string> TriggerSavepoint(const std::string& dir);

  // Checkpoints completed so far (tests, metrics).
  int64_t completed() const;
  // True when `id` is the savepoint in flight (its snapshots must be canonical). Any thread.
  bool IsSavepoint(int64_t id) const;

 private:
  // The change log of one subtask's keyed state (incremental checkpoints): its files as the latest
  // complete checkpoint lists them, and the backend's position after the last one.
  struct KeyedChain {
    KeyedChangeLogPosition position;
    checkpoint::FileRef full;
    std::vector<uint64_t> full_offsets;
    std::vector<checkpoint::KeyedStateChanges> changes;
    uint64_t changes_bytes = 0;
  };
  using SubtaskId = std::pair<int, int>;  // (node, subtask)

  struct Pending {
    int64_t id = 0;
    bool savepoint = false;
    std::string savepoint_dir;
    absl::Time started;
    std::unique_ptr<PendingCheckpoint> writer;
    checkpoint::CheckpointMetadata metadata;
    std::map<SubtaskId, checkpoint::SubtaskState*> subtasks;
    // Keyed state written by this checkpoint: a change log (its chain), or canonical (none).
    std::map<SubtaskId, std::optional<KeyedChain>> chains;
    size_t acks = 0;
    bool all_ended = true;  // every acknowledging task had reached the end of its input
    absl::Status failure;
    bool declined = false;
  };

  void Run();
  bool AnyTaskFinished() const;
  // Starts checkpoint (or savepoint) `id`. Called with mu_ held.
  absl::Status TriggerLocked(std::unique_lock<std::mutex>& lock, bool savepoint,
                             const std::string& dir);
  // Writes one task's snapshots. Without mu_.
  absl::Status Write(Pending& p, std::vector<SubtaskSnapshot>& snapshots);
  // Uploads the files of a native RocksDB snapshot and lists them in `st`.
  absl::Status WriteNativeFiles(Pending& p, SubtaskSnapshot& s, checkpoint::SubtaskState& st);
  void Finish(std::unique_lock<std::mutex>& lock, absl::Status status);

  Job* const job_;
  const std::string job_name_;
  const CheckpointOptions options_;
  std::unique_ptr<CheckpointStorage> storage_;
  const int max_parallelism_;
  const std::vector<OperatorInfo> operators_;
  const std::vector<Task*> tasks_;

  std::mutex stop_mu_;  // serializes Stop()
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  bool stop_ = false;
  int64_t next_id_;
  int64_t completed_ = 0;
  std::atomic<int64_t> pending_id_{0};
  std::map<SubtaskId, KeyedChain> chains_;  // as of the latest complete checkpoint
  size_t ended_tasks_ = 0;
  bool final_done_ = false;  // the final checkpoint completed: no more are triggered
  int consecutive_failures_ = 0;
  absl::Time last_end_ = absl::InfinitePast();
  absl::Time next_trigger_ = absl::InfiniteFuture();
  std::unique_ptr<Pending> pending_;
  std::vector<std::vector<SubtaskSnapshot>> acks_;  // received, not yet written
  // Savepoint requests and their results.
  struct SavepointRequest {
    std::string dir;
    bool started = false;
    bool done = false;
    absl::StatusOr<std::string> result = absl::UnknownError("pending");
  };
  std::vector<std::shared_ptr<SavepointRequest>> savepoints_;
  std::shared_ptr<SavepointRequest> current_savepoint_;
};

}  // namespace sluice::internal
