// Task: one parallel subtask of a chain of fused operators, run cooperatively on the job's worker
// pool. A task runs on at most one worker at a time; it runs a bounded slice of work, then yields,
// waits for input, for room in its output channels, or for a timer.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "absl/time/time.h"

#include <sluice/internal/graph.h>
#include <sluice/internal/operators.h>
#include <sluice/internal/watermark_combiner.h>

#include "runtime/channel.h"
#include "runtime/task_services.h"

namespace sluice::internal {

class Job;

class Task final : public TaskServices {
 public:
  Task(Job* job, std::string name, int batch_size);
  ~Task() override;

  const std::string& name() const { return name_; }

  // --- Wiring, before Start() -------------------------------------------------------------------
  // Operators in topological order; the first is the head (a source or the input of the task).
  void AddOperator(std::unique_ptr<OperatorBase> op, int node_id = -1, int subtask = 0);
  // Checkpoints: barriers are aligned (exactly-once) or not (at-least-once).
  void SetExactlyOnce(bool exactly_once) { exactly_once_ = exactly_once; }
  bool is_source() const { return source_ != nullptr; }
  bool finished() const { return finished_flag_.load(std::memory_order_acquire); }
  // The task reached the end of its input and waits for the job's final checkpoint (only with
  // final checkpoints): it takes part in checkpoints when the coordinator asks it directly.
  bool ended() const { return ended_flag_.load(std::memory_order_seq_cst); }
  // --- Called by the checkpoint coordinator (any thread) ------------------------------------------
  // Source tasks: take checkpoint `id` at the next poll boundary and send its barrier. Ended
  // tasks: take it now.
  void TriggerCheckpoint(int64_t id);
  void NotifyCheckpointComplete(int64_t id);
  void NotifyCheckpointAborted(int64_t id);
  // Restores the task's operators (before Start).
  const std::vector<std::unique_ptr<OperatorBase>>& operators() const { return operators_; }
  // After a restore (before Start): the head operator is never told a watermark at or below the
  // one it had reached (its inputs' watermarks start again from nothing).
  void RestoreInputWatermark(Timestamp watermark);
  const std::vector<std::pair<int, int>>& operator_ids() const { return operator_ids_; }
  void AddWriter(std::unique_ptr<ExchangeWriterBase> writer);
  void AddInput(Channel* channel, int gate);

  // Schedules the first slice.
  void Start() { Wake(); }
  // Closes the operators of a task that was never started (its job failed to build). Called on
  // the thread that built the job, never together with Start().
  void CloseUnstarted();

  // --- TaskServices ------------------------------------------------------------------------------
  void Wake() override;
  boost::asio::any_io_executor executor() override;

 private:
  // kEnded: the input ended (the head operator was told); kFinished: the task is done.
  enum class Outcome { kYield, kIdle, kEnded, kFinished };
  struct Input {
    Channel* channel;
    int gate;
    int slot;  // in the gate's combiner
    bool ended = false;
    bool blocked = false;  // exactly-once alignment: its barrier came, others' have not
    int64_t barrier = 0;   // the last barrier it delivered
  };
  // Per input gate: its channels' watermarks and idleness, and what the head operator was told.
  struct Gate {
    WatermarkCombiner combiner{WatermarkCombiner::Mode::kChannels};
    CombinedOutput told;
    int open_inputs = 0;
  };
  // Hands what changed in the gate's combined watermark and status to the head operator: ACTIVE
  // before a watermark, IDLE after it. The gate's watermark is the minimum over its active
  // channels; the gate is idle when all its open channels are.
  void SyncGate(int gate);
  // Runs the processing-time callbacks that are due; returns the earliest pending deadline.
  Timestamp FireProcessingTime();

  void Run();
  Outcome RunSlice();
  // One step of work; kYield = did something.
  Outcome Step();
  bool WritersHaveCapacity();
  void FlushWriters();
  void ArmTimer(absl::Duration delay);
  // A barrier arrived on `input`; aligns, then checkpoints when every input delivered it.
  void OnBarrier(Input& input, int64_t id);
  void MaybeFinishAlignment();
  // Snapshots every operator, forwards barrier `id` and acknowledges it.
  void PerformCheckpoint(int64_t id);
  void DeliverNotifications();
  // The input ended: either ends the task at once (kFinished) or, with final checkpoints, starts
  // waiting for the final checkpoint (kIdle).
  Outcome OnEnded();
  // The clean end: EndOfTask on every operator, then Finish().
  void EndTask();
  // Closes every operator, releases the timer and reports to the job.
  void Finish();

  Job* const job_;
  const std::string name_;
  const int batch_size_;
  std::vector<std::unique_ptr<OperatorBase>> operators_;
  SourceOperatorBase* source_ = nullptr;
  std::vector<std::unique_ptr<ExchangeWriterBase>> writers_;
  std::vector<Input> inputs_;
  std::vector<Gate> gates_;
  absl::Duration retry_after_ = absl::InfiniteDuration();
  int open_inputs_ = 0;
  size_t next_input_ = 0;
  bool opened_ = false;
  bool finished_ = false;
  std::optional<boost::asio::steady_timer> timer_;
  std::atomic<int64_t> pending_{0};

  // Checkpoints.
  std::vector<std::pair<int, int>> operator_ids_;  // (node id, subtask) per operator
  bool exactly_once_ = true;
  std::atomic<int64_t> trigger_{0};
  std::atomic<int64_t> completed_{0};
  std::atomic<int64_t> aborted_{0};
  int64_t notified_ = 0;
  int64_t notified_aborted_ = 0;
  int64_t aligning_ = 0;   // the newest barrier seen on an input
  int64_t performed_ = 0;  // the newest checkpoint this task took
  std::atomic<bool> finished_flag_{false};
  bool awaiting_final_ = false;  // ended, waiting for the final checkpoint
  std::atomic<bool> ended_flag_{false};
};

}  // namespace sluice::internal
