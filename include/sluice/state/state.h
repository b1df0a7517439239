// Keyed state, as Flink's "Working with State": named descriptors, and handles scoped to the key
// of the record (or timer) being processed.
//
//   class CountPerKey : public sluice::KeyedProcessFunction<std::string, Click, Count> {
//    public:
//     void Open(const sluice::RuntimeContext& ctx) override {
//       count_ = ctx.GetState(sluice::ValueStateDescriptor<int64_t>("count"));
//     }
//     void ProcessElement(const Click& c, Context& ctx, sluice::Collector<Count>& out) override {
//       int64_t n = count_.Value().value_or(0) + 1;
//       count_.Update(n);
//       out.Collect({ctx.CurrentKey(), n});
//     }
//    private:
//     sluice::ValueState<int64_t> count_;
//   };
//
// The same code runs on either backend (StateBackendKind::kHashMap or kRocksDb): the HashMap
// backend keeps objects, the RocksDB backend serializes with sluice::Serializer<T>
// (state/serializer.h). A handle is cheap to copy; it is valid for the life of the operator and
// always refers to the current key.
#pragma once

#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/time/time.h"

#include <sluice/state/serializer.h>

namespace sluice {

// Time-to-live of state entries, as Flink's StateTtlConfig. Time is processing time from the
// job's clock (RuntimeOptions::clock). An expired entry is never returned; it is removed when it
// is accessed, left out of checkpoints and savepoints, and (RocksDB) dropped by compactions.
// List state expires per element and map state per entry, as in Flink.
struct StateTtlConfig {
  enum class UpdateType {
    kOnCreateAndWrite,  // the clock restarts when the entry is written
    kOnReadAndWrite,    // ... and also when it is read
  };
  absl::Duration ttl = absl::ZeroDuration();
  UpdateType update_type = UpdateType::kOnCreateAndWrite;
};

namespace internal {
struct StateDescriptorBase {
  explicit StateDescriptorBase(std::string n) : name(std::move(n)) {}
  std::string name;
  std::optional<StateTtlConfig> ttl;
};
}  // namespace internal

template <typename T>
struct ValueStateDescriptor : internal::StateDescriptorBase {
  using ValueType = T;
  explicit ValueStateDescriptor(std::string name) : StateDescriptorBase(std::move(name)) {}
  ValueStateDescriptor& EnableTimeToLive(StateTtlConfig config) {
    ttl = config;
    return *this;
  }
};

template <typename T>
struct ListStateDescriptor : internal::StateDescriptorBase {
  using ValueType = T;
  explicit ListStateDescriptor(std::string name) : StateDescriptorBase(std::move(name)) {}
  ListStateDescriptor& EnableTimeToLive(StateTtlConfig config) {
    ttl = config;
    return *this;
  }
};

template <typename UK, typename UV>
struct MapStateDescriptor : internal::StateDescriptorBase {
  using UserKeyType = UK;
  using UserValueType = UV;
  explicit MapStateDescriptor(std::string name) : StateDescriptorBase(std::move(name)) {}
  MapStateDescriptor& EnableTimeToLive(StateTtlConfig config) {
    ttl = config;
    return *this;
  }
};

// `reduce(const T& accumulated, const T& added) -> T`.
//   sluice::ReducingStateDescriptor<int64_t, decltype(sum)> desc("total", sum);
//   auto desc = sluice::MakeReducingStateDescriptor<int64_t>("total", [](int64_t a, int64_t b) { return a + b; });
template <typename T, typename F>
struct ReducingStateDescriptor : internal::StateDescriptorBase {
  using ValueType = T;
  ReducingStateDescriptor(std::string name, F f)
      : StateDescriptorBase(std::move(name)), reduce(std::move(f)) {}
  ReducingStateDescriptor& EnableTimeToLive(StateTtlConfig config) {
    ttl = config;
    return *this;
  }
  F reduce;
};
template <typename T, typename F>
ReducingStateDescriptor<T, F> MakeReducingStateDescriptor(std::string name, F reduce) {
  return ReducingStateDescriptor<T, F>(std::move(name), std::move(reduce));
}

// `Agg` is an AggregateFunction<In, Acc, Out> (window/window_functions.h) or any class with the
// same members and InputType / AccumulatorType / OutputType.
template <typename Agg>
struct AggregatingStateDescriptor : internal::StateDescriptorBase {
  using InputType = typename Agg::InputType;
  using AccumulatorType = typename Agg::AccumulatorType;
  using OutputType = typename Agg::OutputType;
  AggregatingStateDescriptor(std::string name, Agg a)
      : StateDescriptorBase(std::move(name)), aggregate(std::move(a)) {}
  AggregatingStateDescriptor& EnableTimeToLive(StateTtlConfig config) {
    ttl = config;
    return *this;
  }
  Agg aggregate;
};

// --- Handles ---------------------------------------------------------------------------------------

namespace internal {
template <typename T>
class ValueStateImpl {
 public:
  virtual ~ValueStateImpl() = default;
  virtual std::optional<T> Value() = 0;
  virtual void Update(T value) = 0;
  virtual void Clear() = 0;
};
template <typename T>
class ListStateImpl {
 public:
  virtual ~ListStateImpl() = default;
  virtual std::vector<T> Get() = 0;
  virtual void Add(T value) = 0;
  virtual void AddAll(std::vector<T> values) = 0;
  virtual void Update(std::vector<T> values) = 0;
  virtual void Clear() = 0;
};
template <typename UK, typename UV>
class MapStateImpl {
 public:
  virtual ~MapStateImpl() = default;
  virtual std::optional<UV> Get(const UK& key) = 0;
  virtual bool Contains(const UK& key) = 0;
  virtual void Put(UK key, UV value) = 0;
  virtual void Remove(const UK& key) = 0;
  virtual std::vector<std::pair<UK, UV>> Entries() = 0;
  virtual bool IsEmpty() = 0;
  virtual void Clear() = 0;
};
template <typename In, typename Out>
class MergingStateImpl {
 public:
  virtual ~MergingStateImpl() = default;
  virtual std::optional<Out> Get() = 0;
  virtual void Add(In value) = 0;
  virtual void Clear() = 0;
};
}  // namespace internal

// A single value per key. Value() is empty when nothing was stored (or it expired).
template <typename T>
class ValueState {
 public:
  ValueState() = default;
  explicit ValueState(internal::ValueStateImpl<T>* impl) : impl_(impl) {}
  std::optional<T> Value() const { return impl_->Value(); }
  void Update(T value) const { impl_->Update(std::move(value)); }
  void Clear() const { impl_->Clear(); }
  explicit operator bool() const { return impl_ != nullptr; }

 private:
  internal::ValueStateImpl<T>* impl_ = nullptr;
};

// A list per key. Get() of an absent list is empty; Update({}) clears it.
template <typename T>
class ListState {
 public:
  ListState() = default;
  explicit ListState(internal::ListStateImpl<T>* impl) : impl_(impl) {}
  std::vector<T> Get() const { return impl_->Get(); }
  void Add(T value) const { impl_->Add(std::move(value)); }
  void AddAll(std::vector<T> values) const { impl_->AddAll(std::move(values)); }
  void Update(std::vector<T> values) const { impl_->Update(std::move(values)); }
  void Clear() const { impl_->Clear(); }
  explicit operator bool() const { return impl_ != nullptr; }

 private:
  internal::ListStateImpl<T>* impl_ = nullptr;
};

// A map per key. Entries() is in user-key order on RocksDB (byte order of the encoding), and in
// no particular order on the HashMap backend.
template <typename UK, typename UV>
class MapState {
 public:
  MapState() = default;
  explicit MapState(internal::MapStateImpl<UK, UV>* impl) : impl_(impl) {}
  std::optional<UV> Get(const UK& key) const { return impl_->Get(key); }
  bool Contains(const UK& key) const { return impl_->Contains(key); }
  void Put(UK key, UV value) const { impl_->Put(std::move(key), std::move(value)); }
  void Remove(const UK& key) const { impl_->Remove(key); }
  std::vector<std::pair<UK, UV>> Entries() const { return impl_->Entries(); }
  bool IsEmpty() const { return impl_->IsEmpty(); }
  void Clear() const { impl_->Clear(); }
  explicit operator bool() const { return impl_ != nullptr; }

 private:
  internal::MapStateImpl<UK, UV>* impl_ = nullptr;
};

// One value per key, folded with the descriptor's reduce function on Add.
template <typename T>
class ReducingState {
 public:
  ReducingState() = default;
  explicit ReducingState(internal::MergingStateImpl<T, T>* impl) : impl_(impl) {}
  std::optional<T> Get() const { return impl_->Get(); }
  void Add(T value) const { impl_->Add(std::move(value)); }
  void Clear() const { impl_->Clear(); }
  explicit operator bool() const { return impl_ != nullptr; }

 private:
  internal::MergingStateImpl<T, T>* impl_ = nullptr;
};

// An accumulator per key, fed by Add and read through the AggregateFunction's GetResult.
template <typename In, typename Out>
class AggregatingState {
 public:
  AggregatingState() = default;
  explicit AggregatingState(internal::MergingStateImpl<In, Out>* impl) : impl_(impl) {}
  std::optional<Out> Get() const { return impl_->Get(); }
  void Add(In value) const { impl_->Add(std::move(value)); }
  void Clear() const { impl_->Clear(); }
  explicit operator bool() const { return impl_ != nullptr; }

 private:
  internal::MergingStateImpl<In, Out>* impl_ = nullptr;
};

enum class StateBackendKind {
  kHashMap,  // objects in abseil hash maps, grouped by key group (fastest; state must fit in RAM)
  kRocksDb,  // embedded RocksDB per subtask (state larger than RAM; incremental checkpoints)
};
inline const char* StateBackendName(StateBackendKind kind) {
  return kind == StateBackendKind::kHashMap ? "hashmap" : "rocksdb";
}

}  // namespace sluice
