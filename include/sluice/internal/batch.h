// Batches of records and the consumers they are pushed into. Internal: users never touch these.
#pragma once

#include <memory>
#include <typeinfo>
#include <vector>

namespace sluice::internal {

// A batch of records of one type, type-erased so that channels between tasks are not templates.
class AnyBatch {
 public:
  virtual ~AnyBatch() = default;
};

template <typename T>
class Batch final : public AnyBatch {
 public:
  std::vector<T> records;
};

// Something records of one stream are pushed into: a chained operator or an exchange writer.
class BatchConsumerBase {
 public:
  virtual ~BatchConsumerBase() = default;
  // The type of the records this consumer takes; checked when a job is wired.
  virtual const std::type_info& record_type() const = 0;
  // The single upstream of this consumer has no more records.
  virtual void OnEndOfInput() = 0;
};

template <typename T>
class BatchConsumer : public BatchConsumerBase {
 public:
  const std::type_info& record_type() const final { return typeid(T); }
  // Takes the records of `records`; it may move from them. The caller clears the vector afterwards
  // and reuses its capacity.
  virtual void Consume(std::vector<T>& records) = 0;
};

}  // namespace sluice::internal
