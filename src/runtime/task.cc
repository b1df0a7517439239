#include "runtime/task.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <utility>

#include <boost/asio/post.hpp>

#include "absl/strings/str_cat.h"

#include "runtime/job.h"

namespace sluice::internal {
namespace {
// Steps a task takes before it yields its worker to other tasks.
constexpr int kStepsPerSlice = 32;
}  // namespace

Task::Task(Job* job, std::string name, int batch_size)
    : job_(job), name_(std::move(name)), batch_size_(batch_size) {}

Task::~Task() = default;

void Task::AddOperator(std::unique_ptr<OperatorBase> op) {
  if (operators_.empty()) source_ = dynamic_cast<SourceOperatorBase*>(op.get());
  operators_.push_back(std::move(op));
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
    Timestamp deadline = FireProcessingTime();
    for (int i = 0; i < kStepsPerSlice; ++i) {
      retry_after_ = absl::InfiniteDuration();
      Outcome outcome = Step();
      if (outcome == Outcome::kFinished) {
        Finish();
        return Outcome::kFinished;
      }
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
        return Outcome::kFinished;
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
    if (input.ended) continue;
    ChannelMessage message;
    if (!input.channel->Pop(&message)) continue;
    if (message.kind == ChannelMessage::Kind::kData) {
      operators_.front()->ProcessBatch(input.gate, *message.batch);
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
    input.ended = true;
    --open_inputs_;
    if (--gate.open_inputs == 0) {
      operators_.front()->EndOfInput(input.gate);
    } else {
      // An ended channel counts as +infinity: it no longer holds the gate back.
      gate.combiner.Release(input.slot);
      SyncGate(input.gate);
    }
    return open_inputs_ == 0 ? Outcome::kFinished : Outcome::kYield;
  }
  FlushWriters();
  return Outcome::kIdle;
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

void Task::Finish() {
  finished_ = true;
  for (auto& op : operators_) op->Close();
  if (timer_) timer_->cancel();
  job_->TaskFinished();
}

}  // namespace sluice::internal
