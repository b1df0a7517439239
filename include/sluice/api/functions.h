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
  void SetCurrentKey(K key) { key_.emplace(std::move(key)); }
  void SetTimeDomain(TimeDomain d) { domain_ = d; }

 private:
  std::optional<K> key_;
  Timers* timers_ = nullptr;
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

}  // namespace sluice
