#include "runtime/task.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <utility>

#include <boost/asio/post.hpp>

#include "absl/strings/str_cat.h"

#include "runtime/checkpoint_coordinator.h"
#include "runtime/job.h"

namespace sluice::internal {
namespace {
// Steps a task takes before it yields its worker to other tasks.
constexpr int kStepsPerSlice = 32;
}  // namespace

Task::Task(Job* job, std::string name, int batch_size)
    : job_(job), name_(std::move(name)), batch_size_(batch_size) {}

Task::~Task() = default;

void Task::AddOperator(std::unique_ptr<OperatorBase> op, int node_id, int subtask) {
  if (operators_.empty()) source_ = dynamic_cast<SourceOperatorBase*>(op.get());
  operators_.push_back(std::move(op));
  operator_ids_.emplace_back(node_id, subtask);
}

void Task::TriggerCheckpoint(int64_t id) {
  trigger_.store(id, std::memory_order_release);
  Wake();
}

void Task::NotifyCheckpointComplete(int64_t id) {
  completed_.store(id, std::memory_order_release);
  Wake();
}

void Task::NotifyCheckpointAborted(int64_t id) {
  aborted_.store(id, std::memory_order_release);
  Wake();
}

void Task::DeliverNotifications() {
  const int64_t done = completed_.load(std::memory_order_acquire);
  if (done > notified_) {
    notified_ = done;
    for (auto& op : operators_) op->NotifyCheckpointComplete(done);
  }
  const int64_t aborted = aborted_.load(std::memory_order_acquire);
  if (aborted > notified_aborted_) {
    notified_aborted_ = aborted;
    for (auto& op : operators_) op->NotifyCheckpointAborted(aborted);
  }
}

void Task::PerformCheckpoint(int64_t id) {
  performed_ = id;
  std::vector<SubtaskSnapshot> snapshots;
  snapshots.reserve(operators_.size());
  const bool savepoint = job_->IsSavepoint(id);
  for (size_t i = 0; i < operators_.size(); ++i) {
    SubtaskSnapshot s;
    s.node_id = operator_ids_[i].first;
    s.subtask = operator_ids_[i].second;
    s.state.canonical = savepoint;
    s.state.watermark = operators_[i]->EventTimeProgress();
    // The synchronous part of the snapshot: the time the task spends away from its records.
    const auto start = std::chrono::steady_clock::now();
    operators_[i]->SnapshotState(id, s.state);
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - start);
    job_->counters().Add(operators_[i]->name(), "checkpointSyncMicros", micros.count());
    snapshots.push_back(std::move(s));
  }
  // An ended task's outputs have ended too: nobody downstream waits for its barrier.
  if (!awaiting_final_) {
    for (auto& w : writers_) w->EmitBarrier(id);
  }
  job_->AcknowledgeCheckpoint(id, std::move(snapshots), awaiting_final_);
}

void Task::OnBarrier(Input& input, int64_t id) {
  if (id <= performed_ || id < aligning_) return;  // a barrier of a checkpoint taken or given up
  if (id > aligning_) {
    // A newer checkpoint: an unfinished alignment for an older one is abandoned.
    for (Input& in : inputs_) in.blocked = false;
    aligning_ = id;
  }
  input.barrier = id;
  if (exactly_once_) input.blocked = true;
  MaybeFinishAlignment();
}

void Task::MaybeFinishAlignment() {
  if (aligning_ <= performed_) return;
  for (const Input& in : inputs_) {
    if (!in.ended && in.barrier != aligning_) return;
  }
  for (Input& in : inputs_) in.blocked = false;
  PerformCheckpoint(aligning_);
}

void Task::AddWriter(std::unique_ptr<ExchangeWriterBase> writer) {
  writers_.push_back(std::move(writer));
}

void Task::AddInput(Channel* channel, int gate) {
  if (static_cast<int>(gates_.size()) <= gate) gates_.resize(static_cast<size_t>(gate) + 1);
  Gate& g = gates_[static_cast<size_t>(gate)];
  inputs_.push_back({channel, gate, g.combiner.AddInput()});
  ++g.open_inputs;
  ++open_inputs_;
}

boost::asio::any_io_executor Task::executor() { return job_->pool().get_executor(); }

void Task::Wake() {
  // Only the wake that moves `pending_` from 0 posts the task: it never runs on two workers.
  if (pending_.fetch_add(1, std::memory_order_acq_rel) == 0) {
    boost::asio::post(job_->pool(), [this] { Run(); });
  }
}

void Task::Run() {
  while (true) {
    int64_t seen = pending_.load(std::memory_order_acquire);
    Outcome outcome = finished_ ? Outcome::kFinished : RunSlice();
    if (outcome == Outcome::kFinished) return;  // pending_ stays > 0: never posted again
    if (outcome == Outcome::kYield) {
      boost::asio::post(job_->pool(), [this] { Run(); });
      return;
    }
    // Idle: sleep unless somebody woke us while we ran.
    if (pending_.compare_exchange_strong(seen, 0, std::memory_order_acq_rel)) return;
  }
}

Task::Outcome Task::RunSlice() {
  if (job_->cancelled()) {
    Finish();
    return Outcome::kFinished;
  }
  try {
    if (!opened_) {
      opened_ = true;
      // Downstream operators first, so an operator never emits into an unopened one.
      for (auto it = operators_.rbegin(); it != operators_.rend(); ++it) (*it)->Open();
    }
    DeliverNotifications();
    if (awaiting_final_) {
      // Ended: take the checkpoints the coordinator asks for; end after the final one.
      if (const int64_t id = trigger_.exchange(0, std::memory_order_acq_rel); id > performed_) {
        PerformCheckpoint(id);
      }
      if (!job_->FinalCheckpointCompleted(notified_)) return Outcome::kIdle;
      EndTask();
      return Outcome::kFinished;
    }
    Timestamp deadline = FireProcessingTime();
    for (int i = 0; i < kStepsPerSlice; ++i) {
      retry_after_ = absl::InfiniteDuration();
      Outcome outcome = Step();
      if (outcome == Outcome::kEnded) return OnEnded();
      if (outcome == Outcome::kIdle) {
        // Sleep until woken, or until a reader's retry time or a processing-time deadline. A
        // manual clock wakes the task itself when it moves.
        absl::Duration delay = retry_after_;
        if (deadline != kMaxWatermark && !job_->clock().IsManual()) {
          Timestamp now = job_->clock().NowMillis();
          delay = std::min(delay, absl::Milliseconds(std::max<Timestamp>(0, deadline - now)));
        }
        if (delay != absl::InfiniteDuration()) ArmTimer(delay);
        return Outcome::kIdle;
      }
      if (job_->cancelled()) {
        Finish();
        return Outcome::kFinished;
      }
    }
    return Outcome::kYield;
  } catch (const JobFailure& failure) {
    job_->Fail(failure.status());
  } catch (const std::exception& e) {
    job_->Fail(absl::InternalError(absl::StrCat("task '", name_, "': ", e.what())));
  } catch (...) {
    job_->Fail(absl::InternalError(absl::StrCat("task '", name_, "': unknown exception")));
  }
  Finish();
  return Outcome::kFinished;
}

Task::Outcome Task::Step() {
  // A source takes a checkpoint between two polls: its barrier follows what it emitted so far.
  if (source_ != nullptr) {
    const int64_t id = trigger_.exchange(0, std::memory_order_acq_rel);
    if (id > 0) PerformCheckpoint(id);
  }
  // Backpressure: take no new input while a downstream channel is full. The full channel wakes
  // this task when its consumer makes room.
  if (!WritersHaveCapacity()) return Outcome::kIdle;

  if (source_ != nullptr) {
    PollResult result = source_->Poll(batch_size_);
    switch (result.kind) {
      case PollResult::Kind::kMoreAvailable:
        return Outcome::kYield;
      case PollResult::Kind::kEndOfInput:
        source_->EndInput();
        return Outcome::kEnded;
      case PollResult::Kind::kNothingAvailable:
        FlushWriters();
        retry_after_ = result.retry_after;
        return Outcome::kIdle;
    }
  }

  // Round-robin over the input channels, one message per step.
  for (size_t tried = 0; tried < inputs_.size(); ++tried) {
    Input& input = inputs_[next_input_];
    next_input_ = next_input_ + 1 == inputs_.size() ? 0 : next_input_ + 1;
    if (input.ended || input.blocked) continue;
    ChannelMessage message;
    if (!input.channel->Pop(&message)) continue;
    if (message.kind == ChannelMessage::Kind::kData) {
      operators_.front()->ProcessBatch(input.gate, *message.batch);
      input.channel->Recycle(std::move(message.batch));
      return Outcome::kYield;
    }
    Gate& gate = gates_[static_cast<size_t>(input.gate)];
    if (message.kind == ChannelMessage::Kind::kWatermark) {
      gate.combiner.UpdateWatermark(input.slot, message.watermark);
      SyncGate(input.gate);
      return Outcome::kYield;
    }
    if (message.kind == ChannelMessage::Kind::kWatermarkStatus) {
      gate.combiner.SetIdle(input.slot, message.idle);
      SyncGate(input.gate);
      return Outcome::kYield;
    }
    if (message.kind == ChannelMessage::Kind::kBarrier) {
      OnBarrier(input, message.checkpoint_id);
      return Outcome::kYield;
    }
    input.ended = true;
    // An ended input counts as having delivered every barrier.
    MaybeFinishAlignment();
    --open_inputs_;
    if (--gate.open_inputs == 0) {
      operators_.front()->EndOfInput(input.gate);
    } else {
      // An ended channel counts as +infinity: it no longer holds the gate back.
      gate.combiner.Release(input.slot);
      SyncGate(input.gate);
    }
    return open_inputs_ == 0 ? Outcome::kEnded : Outcome::kYield;
  }
  FlushWriters();
  return Outcome::kIdle;
}

void Task::RestoreInputWatermark(Timestamp watermark) {
  for (Gate& g : gates_) g.told.watermark = std::max(g.told.watermark, watermark);
}

void Task::SyncGate(int gate) {
  Gate& g = gates_[static_cast<size_t>(gate)];
  OperatorBase* head = operators_.front().get();
  g.told.Sync(
      g.combiner, [&](bool idle) { head->ProcessWatermarkStatus(gate, idle); },
      [&](Timestamp w) { head->ProcessWatermark(gate, w); });
}

Timestamp Task::FireProcessingTime() {
  Timestamp next = kMaxWatermark;
  for (auto& op : operators_) next = std::min(next, op->NextProcessingDeadline());
  if (next == kMaxWatermark) return next;
  Timestamp now = job_->clock().NowMillis();
  next = kMaxWatermark;
  for (auto& op : operators_) {
    if (op->NextProcessingDeadline() <= now) op->OnProcessingTime(now);
    next = std::min(next, op->NextProcessingDeadline());
  }
  return next;
}

bool Task::WritersHaveCapacity() {
  bool ok = true;
  for (auto& w : writers_) ok = w->HasCapacity() && ok;
  return ok;
}

void Task::FlushWriters() {
  for (auto& w : writers_) w->FlushBuffers();
}

void Task::ArmTimer(absl::Duration delay) {
  if (!timer_) timer_.emplace(job_->pool());
  timer_->expires_after(absl::ToChronoNanoseconds(delay));
  timer_->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Wake();
  });
}

void Task::CloseUnstarted() {
  finished_ = true;
  for (auto& op : operators_) op->Close();
}

Task::Outcome Task::OnEnded() {
  FlushWriters();
  if (!job_->final_checkpoints()) {
    EndTask();
    return Outcome::kFinished;
  }
  awaiting_final_ = true;
  // Dekker with CheckpointCoordinator::TriggerLocked (both sequentially consistent): either the
  // coordinator sees this task ended and asks it, or this task sees the checkpoint in flight.
  ended_flag_.store(true, std::memory_order_seq_cst);
  if (const int64_t id = job_->PendingCheckpointId(); id > performed_) PerformCheckpoint(id);
  job_->TaskEnded();
  return Outcome::kIdle;
}

void Task::EndTask() {
  for (auto& op : operators_) op->EndOfTask();
  Finish();
}

void Task::Finish() {
  finished_ = true;
  finished_flag_.store(true, std::memory_order_release);
  if (const int64_t id = trigger_.exchange(0); id > 0) {
    job_->DeclineCheckpoint(
        id, absl::FailedPreconditionError(
                absl::StrCat("task '", name_, "' finished before checkpoint ", id, " reached it")));
  }
  for (auto& op : operators_) op->Close();
  if (timer_) timer_->cancel();
  job_->TaskFinished();
}

}  // namespace sluice::internal
