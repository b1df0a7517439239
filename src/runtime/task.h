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
  void AddOperator(std::unique_ptr<OperatorBase> op);
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
  enum class Outcome { kYield, kIdle, kFinished };
  struct Input {
    Channel* channel;
    int gate;
    int slot;  // in the gate's combiner
    bool ended = false;
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
};

}  // namespace sluice::internal
