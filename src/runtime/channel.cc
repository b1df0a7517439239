#include "runtime/channel.h"

#include <algorithm>
#include <utility>

#include "runtime/task.h"

namespace sluice::internal {

void Channel::Push(ChannelMessage message) {
  bool was_empty;
  {
    std::lock_guard<std::mutex> lock(mu_);
    was_empty = queue_.empty();
    queue_.push_back(std::move(message));
    high_watermark_ = std::max(high_watermark_, queue_.size());
  }
  // The consumer only sleeps after it found every input empty, so waking on the transition from
  // empty is enough.
  if (was_empty) consumer_->Wake();
}

bool Channel::HasCapacity() {
  std::lock_guard<std::mutex> lock(mu_);
  if (queue_.size() < capacity_) return true;
  producer_waiting_ = true;
  return false;
}

bool Channel::Pop(ChannelMessage* message) {
  bool wake_producer = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.empty()) return false;
    *message = std::move(queue_.front());
    queue_.pop_front();
    if (producer_waiting_ && queue_.size() < capacity_) {
      producer_waiting_ = false;
      wake_producer = true;
    }
  }
  if (wake_producer) producer_->Wake();
  return true;
}

std::unique_ptr<AnyBatch> Channel::TakeFreeBatch() {
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.empty()) return nullptr;
  std::unique_ptr<AnyBatch> batch = std::move(free_.back());
  free_.pop_back();
  return batch;
}

void Channel::Recycle(std::unique_ptr<AnyBatch> batch) {
  batch->Recycle();  // the records' destructors run on the consumer's thread, outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  // Enough for a full queue plus the batches in the producer's and consumer's hands.
  if (free_.size() < capacity_ + 2) free_.push_back(std::move(batch));
}

}  // namespace sluice::internal
