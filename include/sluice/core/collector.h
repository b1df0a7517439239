// Collector<T>: where an operator, a source or a user function emits records.
//
//   stream.FlatMap([](const std::string& line, sluice::Collector<std::string>& out) {
//     for (std::string_view word : absl::StrSplit(line, ' ')) out.Collect(std::string(word));
//   });
//
// Collect() appends to a batch in place; the batch goes downstream when it is full or when the
// operator finishes its input batch. Not thread-safe: a collector belongs to one subtask.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include <sluice/core/status.h>
#include <sluice/internal/batch.h>

namespace sluice {

template <typename T>
class Collector;

namespace internal {

// Type-erased face of a collector, for lists of outputs of different types.
class CollectorBase {
 public:
  virtual ~CollectorBase() = default;
  virtual const std::type_info& record_type() const = 0;
  virtual void AddConsumer(BatchConsumerBase* consumer) = 0;
  virtual void Flush() = 0;
  virtual void EndInput() = 0;
  virtual void EmitWatermark(Timestamp watermark) = 0;
  virtual void EmitWatermarkStatus(bool idle) = 0;
};

// Where Collector<T>::ForSplit of a source's output goes: implemented by the source operator
// when a watermark strategy runs per split after it.
template <typename T>
class SplitRouter {
 public:
  virtual ~SplitRouter() = default;
  virtual Collector<T>& ForSplit(std::string_view split_id) = 0;
  virtual void ReleaseSplit(std::string_view split_id) = 0;
};

}  // namespace internal

template <typename T>
class Collector final : public internal::CollectorBase {
 public:
  explicit Collector(size_t batch_size = 1024) : batch_size_(batch_size == 0 ? 1 : batch_size) {
    buffer_.reserve(batch_size_);
    timestamps_.reserve(batch_size_);
  }
  Collector(const Collector&) = delete;
  Collector& operator=(const Collector&) = delete;

  // Emits `value` with the timestamp of the record being processed (as Flink does).
  void Collect(const T& value) { CollectWithTimestamp(value, timestamp_); }
  void Collect(T&& value) { CollectWithTimestamp(std::move(value), timestamp_); }
  template <typename... Args>
  void Emplace(Args&&... args) {
    if (consumers_.empty()) return;
    buffer_.emplace_back(std::forward<Args>(args)...);
    timestamps_.push_back(timestamp_);
    if (buffer_.size() >= batch_size_) Flush();
  }
  void CollectWithTimestamp(const T& value, Timestamp timestamp) {
    if (consumers_.empty()) return;
    buffer_.push_back(value);
    timestamps_.push_back(timestamp);
    if (buffer_.size() >= batch_size_) Flush();
  }
  void CollectWithTimestamp(T&& value, Timestamp timestamp) {
    if (consumers_.empty()) return;
    buffer_.push_back(std::move(value));
    timestamps_.push_back(timestamp);
    if (buffer_.size() >= batch_size_) Flush();
  }

  // Emits a whole batch with its timestamps. With nothing buffered it goes to the consumer as it
  // is (no copy; the consumer may move from the records): the caller clears both vectors after.
  void CollectBatch(std::vector<T>& records, std::vector<Timestamp>& timestamps) {
    if (consumers_.empty() || records.empty()) return;
    if (!buffer_.empty()) {
      for (size_t i = 0; i < records.size(); ++i) {
        CollectWithTimestamp(std::move(records[i]), timestamps[i]);
      }
      return;
    }
    Deliver(records, timestamps);
  }

  // Sources only: the output for the records of split `split_id` (a partition, a shard, a
  // file). With FromSource(source, strategy) each split gets its own watermark generator (and
  // idleness), and the subtask's watermark is the minimum over its active splits; otherwise, and
  // everywhere but in a source reader, it is this collector itself. The reference stays valid
  // until ReleaseSplit(split_id); look it up once per run of records, not per record.
  Collector& ForSplit(std::string_view split_id) {
    return split_router_ == nullptr ? *this : split_router_->ForSplit(split_id);
  }
  // Sources only: split `split_id` is finished (or handed away); its records were all emitted,
  // and it no longer holds the watermark back. A later ForSplit with the same id starts afresh.
  // Unknown ids are ignored.
  void ReleaseSplit(std::string_view split_id) {
    if (split_router_ != nullptr) split_router_->ReleaseSplit(split_id);
  }

  // --- Runtime side -----------------------------------------------------------------------------
  const std::type_info& record_type() const override { return typeid(T); }

  void AddConsumer(internal::BatchConsumerBase* consumer) override {
    SLUICE_CHECK(consumer->record_type() == typeid(T));
    consumers_.push_back(static_cast<internal::BatchConsumer<T>*>(consumer));
  }

  bool has_consumers() const { return !consumers_.empty(); }

  // The timestamp Collect() gives the records that follow (set by the runtime per input record).
  void SetTimestamp(Timestamp timestamp) { timestamp_ = timestamp; }

  // Pushes the buffered records to every consumer (copies for all but the last).
  void Flush() override {
    if (buffer_.empty()) return;
    Deliver(buffer_, timestamps_);
    buffer_.clear();
    timestamps_.clear();
  }

  // Flushes, then forwards the watermark to every consumer.
  void EmitWatermark(Timestamp watermark) override {
    Flush();
    for (auto* consumer : consumers_) consumer->OnWatermark(watermark);
  }

  // Flushes, then tells every consumer that this output became idle or active.
  void EmitWatermarkStatus(bool idle) override {
    Flush();
    for (auto* consumer : consumers_) consumer->OnWatermarkStatus(idle);
  }

  // The source operator routes ForSplit/ReleaseSplit through `router` (nullptr: no splits).
  void SetSplitRouter(internal::SplitRouter<T>* router) { split_router_ = router; }

  // Flushes, then tells every consumer that this output has ended.
  void EndInput() override {
    Flush();
    for (auto* consumer : consumers_) consumer->OnEndOfInput();
  }

 private:
  // Hands a batch to every consumer: copies to all but the last, the batch itself to the last.
  void Deliver(std::vector<T>& records, std::vector<Timestamp>& timestamps) {
    for (size_t i = 0; i + 1 < consumers_.size(); ++i) {
      scratch_.assign(records.begin(), records.end());
      scratch_timestamps_.assign(timestamps.begin(), timestamps.end());
      consumers_[i]->Consume(scratch_, scratch_timestamps_);
      scratch_.clear();
      scratch_timestamps_.clear();
    }
    consumers_.back()->Consume(records, timestamps);
  }

  size_t batch_size_;
  std::vector<T> buffer_;
  std::vector<Timestamp> timestamps_;
  std::vector<T> scratch_;
  std::vector<Timestamp> scratch_timestamps_;
  Timestamp timestamp_ = kNoTimestamp;
  std::vector<internal::BatchConsumer<T>*> consumers_;
  internal::SplitRouter<T>* split_router_ = nullptr;
};

}  // namespace sluice
