// User function interfaces: process functions and their contexts.
//
// Most operators take plain lambdas (Map, Filter, FlatMap, KeyBy, Reduce). Process and keyed
// Process take either a lambda `(const In&, Context&, Collector<Out>&)` or a class derived from
// ProcessFunction / KeyedProcessFunction (with optional Open/Close). Every parallel subtask gets
// its own copy of the function object, so a function may keep per-subtask members without locks.
//
//   class Dedup : public sluice::KeyedProcessFunction<int64_t, Click, Click> {
//    public:
//     void ProcessElement(const Click& c, Context& ctx, sluice::Collector<Click>& out) override {
//       if (ctx.CurrentKey() != last_) out.Collect(c);
//       last_ = ctx.CurrentKey();
//     }
//    private:
//     int64_t last_ = -1;
//   };
#pragma once

#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#include <sluice/core/collector.h>
#include <sluice/core/output_tag.h>
#include <sluice/core/runtime_context.h>
#include <sluice/core/status.h>
#include <sluice/internal/keyed_state_backend.h>
#include <sluice/internal/operator_state_store.h>
#include <sluice/internal/side_outputs.h>
#include <sluice/internal/timer_queue.h>
#include <sluice/time/clock.h>
#include <sluice/state/keyed_state.h>
#include <sluice/state/operator_state.h>
#include <sluice/time/time.h>
#include <sluice/window/windows.h>

namespace sluice {

// Context of ProcessFunction::ProcessElement. Valid only during the call.
class ProcessContext {
 public:
  ProcessContext(const RuntimeContext* runtime, internal::SideOutputs* side)
      : runtime_(runtime), side_(side) {}

  // Emits `value` to the side output `tag`, with the current record's timestamp.
  template <typename S, typename V>
  void Output(const OutputTag<S>& tag, V&& value) {
    side_->Emit(tag, S(std::forward<V>(value)), timestamp_);
  }

  const RuntimeContext& runtime() const { return *runtime_; }

  // The event timestamp of the current record; kNoTimestamp when it has none.
  Timestamp timestamp() const { return timestamp_; }
  // The operator's current event time: the last watermark it received (kMinWatermark at first).
  Timestamp CurrentWatermark() const { return watermark_; }

  // --- Runtime side -------------------------------------------------------------------------------
  void SetTimestamp(Timestamp t) { timestamp_ = t; }
  void SetWatermark(Timestamp w) { watermark_ = w; }

 private:
  const RuntimeContext* runtime_;
  internal::SideOutputs* side_;
  Timestamp timestamp_ = kNoTimestamp;
  Timestamp watermark_ = kMinWatermark;
};

// Context of KeyedProcessFunction::ProcessElement: also knows the key of the current record.
template <typename K>
class KeyedProcessContext : public ProcessContext {
 public:
  using ProcessContext::ProcessContext;
  const K& CurrentKey() const { return *key_; }

  // Timers of the current key, as Flink's TimerService: one timer per (key, time) — registering
  // twice is one timer; OnTimer(time, ctx, out) of the function runs when event time (the
  // watermark) or processing time reaches `time`. Event-time timers fire in time order before the
  // watermark that passed them goes downstream.
  void RegisterEventTimeTimer(Timestamp time) { timers_->event.Register(time, *key_, {}); }
  void DeleteEventTimeTimer(Timestamp time) { timers_->event.Delete(time, *key_, {}); }
  void RegisterProcessingTimeTimer(Timestamp time) {
    timers_->processing.Register(time, *key_, {});
  }
  void DeleteProcessingTimeTimer(Timestamp time) { timers_->processing.Delete(time, *key_, {}); }
  Timestamp CurrentProcessingTime() const { return timers_->clock->NowMillis(); }
  // In OnTimer: which kind of timer fired.
  TimeDomain time_domain() const { return domain_; }

  // --- Runtime side -------------------------------------------------------------------------------
  struct Timers {
    internal::TimerQueue<K, internal::VoidNamespace> event;
    internal::TimerQueue<K, internal::VoidNamespace> processing;
    const Clock* clock = nullptr;
  };
  void SetTimers(Timers* timers) { timers_ = timers; }
  void SetState(internal::KeyedStateBackend<K>* state) { state_ = state; }
  void SetCurrentKey(K key) {
    key_.emplace(std::move(key));
    if (state_ != nullptr) state_->SetCurrentKey(&*key_);
  }
  void SetTimeDomain(TimeDomain d) { domain_ = d; }

 private:
  std::optional<K> key_;
  Timers* timers_ = nullptr;
  internal::KeyedStateBackend<K>* state_ = nullptr;
  TimeDomain domain_ = TimeDomain::kEventTime;
};

template <typename In, typename Out>
class ProcessFunction {
 public:
  using InputType = In;
  using OutputType = Out;
  using Context = ProcessContext;
  virtual ~ProcessFunction() = default;
  virtual void Open(const RuntimeContext&) {}
  virtual void ProcessElement(const In& value, Context& ctx, Collector<Out>& out) = 0;
  virtual void Close() {}
};

template <typename K, typename In, typename Out>
class KeyedProcessFunction {
 public:
  using KeyType = K;
  using InputType = In;
  using OutputType = Out;
  using Context = KeyedProcessContext<K>;
  virtual ~KeyedProcessFunction() = default;
  virtual void Open(const RuntimeContext&) {}
  virtual void ProcessElement(const In& value, Context& ctx, Collector<Out>& out) = 0;
  // A timer registered through the context fired; ctx.CurrentKey() is its key and
  // ctx.time_domain() its kind. Records emitted from an event-time timer carry `time`.
  virtual void OnTimer(Timestamp /*time*/, Context& /*ctx*/, Collector<Out>& /*out*/) {}
  virtual void Close() {}
};

// --- Two inputs ----------------------------------------------------------------------------------

// A process function over two connected streams keyed by the same key type
// (`a.Connect(b).KeyBy(key_a, key_b).Process(fn)`, or `keyed_a.Connect(keyed_b).Process(fn)`), as
// Flink's KeyedCoProcessFunction. ProcessElement1 sees the records of the first input,
// ProcessElement2 those of the second; both share the function object of a subtask, and through
// the context the current key, its timers and the side outputs. Event-time timers fire when the
// operator's watermark (the smaller of its two inputs' watermarks) passes them.
//
//   class Enrich : public sluice::KeyedCoProcessFunction<int64_t, Order, Customer, Enriched> {
//     void ProcessElement1(const Order& o, Context& ctx, Collector<Enriched>& out) override;
//     void ProcessElement2(const Customer& c, Context& ctx, Collector<Enriched>& out) override;
//     void OnTimer(Timestamp t, Context& ctx, Collector<Enriched>& out) override;
//   };
template <typename K, typename In1, typename In2, typename Out>
class KeyedCoProcessFunction {
 public:
  using KeyType = K;
  using FirstInputType = In1;
  using SecondInputType = In2;
  using OutputType = Out;
  using Context = KeyedProcessContext<K>;
  virtual ~KeyedCoProcessFunction() = default;
  virtual void Open(const RuntimeContext&) {}
  virtual void ProcessElement1(const In1& value, Context& ctx, Collector<Out>& out) = 0;
  virtual void ProcessElement2(const In2& value, Context& ctx, Collector<Out>& out) = 0;
  // A timer registered through the context fired; ctx.CurrentKey() is its key and
  // ctx.time_domain() its kind. Records emitted from an event-time timer carry `time`.
  virtual void OnTimer(Timestamp /*time*/, Context& /*ctx*/, Collector<Out>& /*out*/) {}
  virtual void Close() {}
};

// Context of ProcessJoinFunction::ProcessElement: the timestamps of the joined pair. Valid only
// during the call.
class ProcessJoinContext {
 public:
  ProcessJoinContext(const RuntimeContext* runtime, internal::SideOutputs* side)
      : runtime_(runtime), side_(side) {}

  Timestamp LeftTimestamp() const { return left_; }
  Timestamp RightTimestamp() const { return right_; }
  // The timestamp of the joined pair: the larger of the two, which output records carry.
  Timestamp timestamp() const { return left_ > right_ ? left_ : right_; }

  // Emits `value` to the side output `tag`, with the pair's timestamp.
  template <typename S, typename V>
  void Output(const OutputTag<S>& tag, V&& value) {
    side_->Emit(tag, S(std::forward<V>(value)), timestamp());
  }

  const RuntimeContext& runtime() const { return *runtime_; }

  // --- Runtime side -------------------------------------------------------------------------------
  void SetTimestamps(Timestamp left, Timestamp right) {
    left_ = left;
    right_ = right;
  }

 private:
  const RuntimeContext* runtime_;
  internal::SideOutputs* side_;
  Timestamp left_ = kNoTimestamp;
  Timestamp right_ = kNoTimestamp;
};

// The function of an interval join (`keyed_a.IntervalJoin(keyed_b).Between(lo, hi).Process(fn)`),
// as Flink's ProcessJoinFunction: called once per joined pair, with the pair's timestamps in the
// context. Records it emits carry the larger of the two timestamps.
template <typename In1, typename In2, typename Out>
class ProcessJoinFunction {
 public:
  using FirstInputType = In1;
  using SecondInputType = In2;
  using OutputType = Out;
  using Context = ProcessJoinContext;
  virtual ~ProcessJoinFunction() = default;
  virtual void Open(const RuntimeContext&) {}
  virtual void ProcessElement(const In1& left, const In2& right, Context& ctx,
                              Collector<Out>& out) = 0;
  virtual void Close() {}
};

// --- Broadcast state pattern ---------------------------------------------------------------------

namespace internal {

// Where broadcast process contexts find the operator's broadcast states.
class BroadcastStateLookup {
 public:
  // --- Runtime side -------------------------------------------------------------------------------
  void SetBroadcastStates(OperatorStateStore* store, const Clock* clock) {
    store_ = store;
    clock_ = clock;
  }

 protected:
  template <typename K, typename V>
  BroadcastMap<K, V>* LookUp(const MapStateDescriptor<K, V>& d, const std::string& op) const {
    return store_->GetBroadcastMap(d, op);
  }
  OperatorStateStore* store_ = nullptr;
  const Clock* clock_ = nullptr;
};

// The keys of `backend` that have state `name` (registered first by the caller), for
// ApplyToKeyedState. HashMap backend: the keys of the backend that have an entry; RocksDB: a
// scan of the state's column family. Costs a pass over the subtask's state.
template <typename K>
absl::StatusOr<std::vector<K>> KeysWithState(KeyedStateBackend<K>& backend,
                                             const std::string& name) {
  std::vector<K> keys;
  absl::flat_hash_set<K> seen;
  bool bad = false;
  auto add = [&](std::string_view composite) {
    ByteReader in(composite);
    K key{};
    if (!Serializer<K>::Read(in, &key)) {
      bad = true;
      return false;
    }
    if (seen.insert(key).second) keys.push_back(std::move(key));
    return true;
  };
  const KeyGroupRange range = backend.key_groups();
  if (backend.kind() == StateBackendKind::kRocksDb) {
    const StateTableBase* table = nullptr;
    for (const auto& t : backend.tables()) {
      if (t->name() == name) table = t.get();
    }
    if (table == nullptr || backend.rocksdb() == nullptr) return keys;
    auto prefix = [](int kg) {
      std::string p(2, '\0');
      p[0] = static_cast<char>((kg >> 8) & 0xFF);
      p[1] = static_cast<char>(kg & 0xFF);
      return p;
    };
    const std::string end = range.end >= 0xFFFF ? std::string() : prefix(range.end + 1);
    backend.rocksdb()->Scan(table->column_family(), prefix(range.start), end,
                            [&](std::string_view k, std::string_view) {
                              return k.size() >= 2 && add(k.substr(2));
                            });
  } else {
    return backend.KeysWithEntries(name);
  }
  if (bad) {
    return absl::DataLossError(
        absl::StrCat("state '", name, "' holds a key that does not decode"));
  }
  return keys;
}

// The handle of keyed state `d` from `access`, whatever kind of descriptor it is.
template <typename Access, typename D>
auto KeyedStateHandle(const Access& access, const D& d) {
  if constexpr (requires { access.GetState(d); }) {
    return access.GetState(d);
  } else if constexpr (requires { access.GetListState(d); }) {
    return access.GetListState(d);
  } else if constexpr (requires { access.GetMapState(d); }) {
    return access.GetMapState(d);
  } else if constexpr (requires { access.GetReducingState(d); }) {
    return access.GetReducingState(d);
  } else {
    return access.GetAggregatingState(d);
  }
}

}  // namespace internal

// Context of BroadcastProcessFunction::ProcessElement (the non-broadcast input): read-only
// broadcast state. Valid only during the call.
class BroadcastReadOnlyContext : public ProcessContext, public internal::BroadcastStateLookup {
 public:
  using ProcessContext::ProcessContext;
  template <typename K, typename V>
  ReadOnlyBroadcastState<K, V> GetBroadcastState(const MapStateDescriptor<K, V>& d) const {
    return ReadOnlyBroadcastState<K, V>(this->LookUp(d, runtime().operator_name));
  }
  Timestamp CurrentProcessingTime() const { return clock_->NowMillis(); }
};

// Context of ProcessBroadcastElement (the broadcast input): read-write broadcast state.
class BroadcastContext : public ProcessContext, public internal::BroadcastStateLookup {
 public:
  using ProcessContext::ProcessContext;
  template <typename K, typename V>
  BroadcastState<K, V> GetBroadcastState(const MapStateDescriptor<K, V>& d) const {
    return BroadcastState<K, V>(this->LookUp(d, runtime().operator_name));
  }
  Timestamp CurrentProcessingTime() const { return clock_->NowMillis(); }
};

// Context of KeyedBroadcastProcessFunction::ProcessElement and OnTimer: the current key, its
// timers and keyed state (as KeyedProcessContext), and read-only broadcast state.
template <typename K>
class KeyedBroadcastReadOnlyContext : public KeyedProcessContext<K>,
                                      public internal::BroadcastStateLookup {
 public:
  using KeyedProcessContext<K>::KeyedProcessContext;
  template <typename UK, typename UV>
  ReadOnlyBroadcastState<UK, UV> GetBroadcastState(const MapStateDescriptor<UK, UV>& d) const {
    return ReadOnlyBroadcastState<UK, UV>(this->LookUp(d, this->runtime().operator_name));
  }
};

// Context of KeyedBroadcastProcessFunction::ProcessBroadcastElement: read-write broadcast state,
// and keyed state of every key through ApplyToKeyedState. There is no current key.
template <typename K>
class KeyedBroadcastContext : public ProcessContext, public internal::BroadcastStateLookup {
 public:
  using ProcessContext::ProcessContext;
  template <typename UK, typename UV>
  BroadcastState<UK, UV> GetBroadcastState(const MapStateDescriptor<UK, UV>& d) const {
    return BroadcastState<UK, UV>(this->LookUp(d, runtime().operator_name));
  }
  Timestamp CurrentProcessingTime() const { return clock_->NowMillis(); }

  // Calls `fn(const K& key, State state)` for every key of this subtask that has keyed state `d`
  // (any state descriptor), with the handle scoped to that key (Flink's applyToKeyedState). Both
  // backends; costs a pass over the subtask's keyed state. Needs a sluice::Serializer for K.
  template <typename D, typename Fn>
  void ApplyToKeyedState(const D& d, Fn&& fn) {
    static_assert(Serializable<K>,
                  "ApplyToKeyedState needs a sluice::Serializer for the key type");
    StateAccess<internal::VoidNamespace> access(state_, &internal::kNoNamespace,
                                                &runtime().operator_name);
    auto handle = internal::KeyedStateHandle(access, d);
    absl::StatusOr<std::vector<K>> keys = internal::KeysWithState(*state_, d.name);
    if (!keys.ok()) {
      throw internal::JobFailure(absl::Status(
          keys.status().code(),
          absl::StrCat("operator '", runtime().operator_name, "': ", keys.status().message())));
    }
    for (K& key : *keys) {
      key_.emplace(std::move(key));
      state_->SetCurrentKey(&*key_);
      fn(std::as_const(*key_), handle);
    }
  }

  // --- Runtime side -------------------------------------------------------------------------------
  void SetState(internal::KeyedStateBackend<K>* state) { state_ = state; }

 private:
  internal::KeyedStateBackend<K>* state_ = nullptr;
  std::optional<K> key_;
};

// The function of `stream.Connect(other.Broadcast(descriptors...)).Process(fn)`, as Flink's
// BroadcastProcessFunction: ProcessElement sees the records of the non-broadcast input with
// read-only broadcast state; ProcessBroadcastElement sees every record of the broadcast input (in
// every parallel instance) and may modify broadcast state, which must stay the same in every
// instance (so it must depend on the broadcast records only).
//
//   class Filter : public sluice::BroadcastProcessFunction<Event, Rule, Event> {
//     void ProcessElement(const Event& e, ReadOnlyContext& ctx, Collector<Event>& out) override {
//       if (ctx.GetBroadcastState(kRules).Contains(e.kind)) out.Collect(e);
//     }
//     void ProcessBroadcastElement(const Rule& r, Context& ctx, Collector<Event>&) override {
//       ctx.GetBroadcastState(kRules).Put(r.kind, r);
//     }
//   };
template <typename In1, typename In2, typename Out>
class BroadcastProcessFunction {
 public:
  using FirstInputType = In1;
  using SecondInputType = In2;
  using OutputType = Out;
  using ReadOnlyContext = BroadcastReadOnlyContext;
  using Context = BroadcastContext;
  virtual ~BroadcastProcessFunction() = default;
  virtual void Open(const RuntimeContext&) {}
  virtual void ProcessElement(const In1& value, ReadOnlyContext& ctx, Collector<Out>& out) = 0;
  virtual void ProcessBroadcastElement(const In2& value, Context& ctx, Collector<Out>& out) = 0;
  virtual void Close() {}
};

// The function of `keyed.Connect(other.Broadcast(descriptors...)).Process(fn)`, as Flink's
// KeyedBroadcastProcessFunction: ProcessElement and OnTimer have the current key, keyed state,
// timers and read-only broadcast state; ProcessBroadcastElement has read-write broadcast state
// and ctx.ApplyToKeyedState(descriptor, fn) over every key of the subtask.
template <typename K, typename In1, typename In2, typename Out>
class KeyedBroadcastProcessFunction {
 public:
  using KeyType = K;
  using FirstInputType = In1;
  using SecondInputType = In2;
  using OutputType = Out;
  using ReadOnlyContext = KeyedBroadcastReadOnlyContext<K>;
  using Context = KeyedBroadcastContext<K>;
  virtual ~KeyedBroadcastProcessFunction() = default;
  virtual void Open(const RuntimeContext&) {}
  virtual void ProcessElement(const In1& value, ReadOnlyContext& ctx, Collector<Out>& out) = 0;
  virtual void ProcessBroadcastElement(const In2& value, Context& ctx, Collector<Out>& out) = 0;
  // A timer registered in ProcessElement fired; ctx.CurrentKey() is its key.
  virtual void OnTimer(Timestamp /*time*/, ReadOnlyContext& /*ctx*/, Collector<Out>& /*out*/) {}
  virtual void Close() {}
};

}  // namespace sluice
