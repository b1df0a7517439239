// Batches of records and the consumers they are pushed into. Internal: users never touch these.
#pragma once

#include <memory>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include <sluice/time/time.h>

namespace sluice::internal {

// Records an exchange writer writes in place, by index into a batch sized to the batch size
// (ExchangeWriter), instead of appending them.
template <typename T>
inline constexpr bool kWrittenInPlace = std::is_trivially_copyable_v<T>&&
    std::is_default_constructible_v<T>&& std::is_copy_assignable_v<T>;

// A batch of records of one type, type-erased so that channels between tasks are not templates.
class AnyBatch {
 public:
  virtual ~AnyBatch() = default;
  // Readies a consumed batch for its producer to fill again, keeping its capacity: records with
  // destructors are destroyed (on the caller's thread); records written in place are left as
  // they are, so the writer does not fill the batch with default values again before it
  // overwrites them.
  virtual void Recycle() = 0;
};

// Records and their event timestamps (kNoTimestamp when none), index by index.
template <typename T>
class Batch final : public AnyBatch {
 public:
  void Recycle() override {
    if constexpr (!kWrittenInPlace<T>) {
      records.clear();
      timestamps.clear();
    }
  }
  std::vector<T> records;
  std::vector<Timestamp> timestamps;
};

// Something records of one stream are pushed into: a chained operator or an exchange writer.
class BatchConsumerBase {
 public:
  virtual ~BatchConsumerBase() = default;
  // The type of the records this consumer takes; checked when a job is wired.
  virtual const std::type_info& record_type() const = 0;
  // The single upstream of this consumer has no more records.
  virtual void OnEndOfInput() = 0;
  // The upstream's event time advanced to `watermark`: no record with a timestamp <= watermark
  // follows (later ones are late).
  virtual void OnWatermark(Timestamp watermark) = 0;
  // The upstream became idle (true: no records and no watermarks for a while, so downstream
  // leaves it out of its watermark) or active again (false: sent before its next record or
  // watermark). A rare control event. The default forwards nothing: an operator that forwards
  // watermarks overrides it to forward the status too.
  virtual void OnWatermarkStatus(bool /*idle*/) {}
};

template <typename T>
class BatchConsumer;

// The per-split inputs of a consumer that generates watermarks per split: the timestamps and
// watermarks operator fused with a source (FromSource(source, strategy)). The source operator
// routes the records of each split (Collector<T>::ForSplit) into the consumer AddSplit returns.
template <typename T>
class SplitConsumers {
 public:
  virtual ~SplitConsumers() = default;
  // A consumer for the records of split `split_id`; valid until ReleaseSplit(it). Throws
  // JobFailure when user code (the generator factory) fails.
  virtual BatchConsumer<T>* AddSplit(std::string_view split_id) = 0;
  // The split is finished: it no longer holds the watermark back.
  virtual void ReleaseSplit(BatchConsumer<T>* split) = 0;
};

template <typename T>
class BatchConsumer : public BatchConsumerBase {
 public:
  const std::type_info& record_type() const final { return typeid(T); }
  // Takes the records of `records` with their `timestamps` (same size); it may move from them.
  // The caller clears both vectors afterwards and reuses their capacity.
  virtual void Consume(std::vector<T>& records, std::vector<Timestamp>& timestamps) = 0;
  // Non-null when this consumer generates watermarks per split (see SplitConsumers).
  virtual SplitConsumers<T>* splits() { return nullptr; }
};

}  // namespace sluice::internal
