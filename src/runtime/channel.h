// Channel: a bounded single-producer, single-consumer queue of batches and control events between
// two tasks. Thread-safe. The lock is taken once per batch, never per record.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include <sluice/internal/batch.h>
#include <sluice/internal/graph.h>

namespace sluice::internal {

class Task;

struct ChannelMessage {
  enum class Kind { kData, kWatermark, kWatermarkStatus, kEndOfInput, kBarrier };
  Kind kind = Kind::kData;
  std::unique_ptr<AnyBatch> batch;
  Timestamp watermark = kMinWatermark;  // kWatermark only
  bool idle = false;                    // kWatermarkStatus only: idle (true) or active (false)
  int64_t checkpoint_id = 0;            // kBarrier only
};

class Channel final : public OutputChannel {
 public:
  Channel(size_t capacity, Task* producer, Task* consumer)
      : capacity_(capacity), producer_(producer), consumer_(consumer) {}

  void PushBatch(std::unique_ptr<AnyBatch> batch) override {
    Push({ChannelMessage::Kind::kData, std::move(batch)});
  }
  void PushEndOfInput() override { Push({ChannelMessage::Kind::kEndOfInput, nullptr}); }
  void PushWatermark(Timestamp watermark) override {
    Push({ChannelMessage::Kind::kWatermark, nullptr, watermark});
  }
  void PushWatermarkStatus(bool idle) override {
    Push({ChannelMessage::Kind::kWatermarkStatus, nullptr, kMinWatermark, idle});
  }
  void PushBarrier(int64_t id) override {
    ChannelMessage m{ChannelMessage::Kind::kBarrier, nullptr};
    m.checkpoint_id = id;
    Push(std::move(m));
  }
  bool HasCapacity() override;
  std::unique_ptr<AnyBatch> TakeFreeBatch() override;

  // Takes the oldest message; false when the channel is empty.
  bool Pop(ChannelMessage* message);
  // The consumer is done with `batch`: emptied, it goes back to the producer (a few are kept; a
  // batch's memory is then reused rather than freed in one thread and allocated in another).
  void Recycle(std::unique_ptr<AnyBatch> batch);

  // The most messages this channel has held at once (for tests and metrics).
  size_t high_watermark() const {
    std::lock_guard<std::mutex> lock(mu_);
    return high_watermark_;
  }

 private:
  void Push(ChannelMessage message);

  const size_t capacity_;
  Task* const producer_;
  Task* const consumer_;
  mutable std::mutex mu_;
  std::deque<ChannelMessage> queue_;
  std::vector<std::unique_ptr<AnyBatch>> free_;  // emptied batches for the producer
  bool producer_waiting_ = false;
  size_t high_watermark_ = 0;
};

}  // namespace sluice::internal
