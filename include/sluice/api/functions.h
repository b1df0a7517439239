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
#include <utility>

#include <sluice/core/collector.h>
#include <sluice/core/output_tag.h>
#include <sluice/core/runtime_context.h>
#include <sluice/core/status.h>
#include <sluice/internal/keyed_state_backend.h>
#include <sluice/internal/side_outputs.h>
#include <sluice/internal/timer_queue.h>
#include <sluice/time/clock.h>
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

}  // namespace sluice
