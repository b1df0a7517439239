// Triggers decide when a window's function runs (FIRE) and when its contents go (PURGE); evictors
// remove elements before or after the function runs. Flink's semantics ("Windows": Triggers,
// Evictors).
//
//   .Window(sluice::GlobalWindows::Create())
//   .Trigger(sluice::PurgingTrigger(sluice::CountTrigger::Of(100)))
//   .Evictor(sluice::TimeEvictor::Of(absl::Seconds(10)))
//
// Built-in triggers and evictors are concrete types (the window operator calls them without
// virtual dispatch). A user trigger derives from Trigger<T, W> or is any type with the same
// methods.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/time/time.h"

#include <sluice/time/time.h>
#include <sluice/window/windows.h>

namespace sluice {

enum class TriggerResult { kContinue, kFire, kPurge, kFireAndPurge };

inline bool IsFire(TriggerResult r) {
  return r == TriggerResult::kFire || r == TriggerResult::kFireAndPurge;
}
inline bool IsPurge(TriggerResult r) {
  return r == TriggerResult::kPurge || r == TriggerResult::kFireAndPurge;
}

// What a trigger sees of the window operator, for the current key and window.
class TriggerContext {
 public:
  virtual ~TriggerContext() = default;
  virtual Timestamp CurrentWatermark() const = 0;
  virtual Timestamp CurrentProcessingTime() const = 0;
  // Timers are per (key, window, time): registering twice is one timer.
  virtual void RegisterEventTimeTimer(Timestamp time) = 0;
  virtual void DeleteEventTimeTimer(Timestamp time) = 0;
  virtual void RegisterProcessingTimeTimer(Timestamp time) = 0;
  virtual void DeleteProcessingTimeTimer(Timestamp time) = 0;
  // Trigger state of the current key and window: small integer slots (a count, a fire time),
  // empty until set; cleared with the window.
  virtual std::optional<int64_t>& State(int slot) = 0;
};

// During OnMerge: the current window is the result of merging several windows.
class OnMergeContext : public TriggerContext {
 public:
  // Combines slot `slot` of all merged windows into the result window with `fn`.
  virtual void MergeState(int slot, int64_t (*fn)(int64_t, int64_t)) = 0;
};

// How many State() slots a trigger may use per window: TriggerContext::State(0..7), or fewer when
// the trigger declares `static constexpr int kStateSlots` (the stateless built-ins say 0, so a
// window keeps no room for trigger state).
inline constexpr int kMaxTriggerStateSlots = 8;
template <typename Trig>
constexpr int TriggerStateSlots() {
  if constexpr (requires { Trig::kStateSlots; }) {
    static_assert(Trig::kStateSlots >= 0 && Trig::kStateSlots <= kMaxTriggerStateSlots);
    return Trig::kStateSlots;
  } else {
    return kMaxTriggerStateSlots;
  }
}

// Base class for user triggers (optional: any type with these methods works).
template <typename T, typename W>
class Trigger {
 public:
  virtual ~Trigger() = default;
  virtual TriggerResult OnElement(const T& element, Timestamp timestamp, const W& window,
                                  TriggerContext& ctx) = 0;
  virtual TriggerResult OnEventTime(Timestamp time, const W& window, TriggerContext& ctx) = 0;
  virtual TriggerResult OnProcessingTime(Timestamp time, const W& window, TriggerContext& ctx) = 0;
  virtual bool CanMerge() const { return false; }
  virtual void OnMerge(const W& /*window*/, OnMergeContext& /*ctx*/) {}
  virtual void Clear(const W& window, TriggerContext& ctx) = 0;
};

// Fires when the watermark passes the window's end (the default of event-time assigners). A
// late element within the allowed lateness fires the window again at once.
class EventTimeTrigger {
 public:
  static constexpr int kStateSlots = 0;  // keeps no per-window state
  static EventTimeTrigger Create() { return {}; }
  template <typename T, typename W>
  TriggerResult OnElement(const T&, Timestamp, const W& w, TriggerContext& ctx) {
    if (w.max_timestamp() <= ctx.CurrentWatermark()) return TriggerResult::kFire;
    ctx.RegisterEventTimeTimer(w.max_timestamp());
    return TriggerResult::kContinue;
  }
  template <typename W>
  TriggerResult OnEventTime(Timestamp time, const W& w, TriggerContext&) {
    return time == w.max_timestamp() ? TriggerResult::kFire : TriggerResult::kContinue;
  }
  template <typename W>
  TriggerResult OnProcessingTime(Timestamp, const W&, TriggerContext&) {
    return TriggerResult::kContinue;
  }
  bool CanMerge() const { return true; }
  template <typename W>
  void OnMerge(const W& w, OnMergeContext& ctx) {
    // Only if the watermark is not yet past the end of the merged window, else the timer would
    // fire at once and the window fire twice (Flink does the same).
    if (w.max_timestamp() > ctx.CurrentWatermark()) ctx.RegisterEventTimeTimer(w.max_timestamp());
  }
  template <typename W>
  void Clear(const W& w, TriggerContext& ctx) {
    ctx.DeleteEventTimeTimer(w.max_timestamp());
  }
};

// Fires when processing time passes the window's end (the default of processing-time assigners).
class ProcessingTimeTrigger {
 public:
  static constexpr int kStateSlots = 0;  // keeps no per-window state
  static ProcessingTimeTrigger Create() { return {}; }
  template <typename T, typename W>
  TriggerResult OnElement(const T&, Timestamp, const W& w, TriggerContext& ctx) {
    ctx.RegisterProcessingTimeTimer(w.max_timestamp());
    return TriggerResult::kContinue;
  }
  template <typename W>
  TriggerResult OnEventTime(Timestamp, const W&, TriggerContext&) {
    return TriggerResult::kContinue;
  }
  template <typename W>
  TriggerResult OnProcessingTime(Timestamp, const W&, TriggerContext&) {
    return TriggerResult::kFire;
  }
  bool CanMerge() const { return true; }
  template <typename W>
  void OnMerge(const W& w, OnMergeContext& ctx) {
    if (w.max_timestamp() > ctx.CurrentProcessingTime()) {
      ctx.RegisterProcessingTimeTimer(w.max_timestamp());
    }
  }
  template <typename W>
  void Clear(const W& w, TriggerContext& ctx) {
    ctx.DeleteProcessingTimeTimer(w.max_timestamp());
  }
};

// Never fires: the default of GlobalWindows.
class NeverTrigger {
 public:
  static constexpr int kStateSlots = 0;  // keeps no per-window state
  template <typename T, typename W>
  TriggerResult OnElement(const T&, Timestamp, const W&, TriggerContext&) {
    return TriggerResult::kContinue;
  }
  template <typename W>
  TriggerResult OnEventTime(Timestamp, const W&, TriggerContext&) {
    return TriggerResult::kContinue;
  }
  template <typename W>
  TriggerResult OnProcessingTime(Timestamp, const W&, TriggerContext&) {
    return TriggerResult::kContinue;
  }
  bool CanMerge() const { return true; }
  template <typename W>
  void OnMerge(const W&, OnMergeContext&) {}
  template <typename W>
  void Clear(const W&, TriggerContext&) {}
};

// Fires once the window holds `count` elements (then counts again from zero).
class CountTrigger {
 public:
  static CountTrigger Of(int64_t count) { return CountTrigger(count); }
  template <typename T, typename W>
  TriggerResult OnElement(const T&, Timestamp, const W&, TriggerContext& ctx) {
    std::optional<int64_t>& n = ctx.State(kCountSlot);
    n = n.value_or(0) + 1;
    if (*n >= count_) {
      n.reset();
      return TriggerResult::kFire;
    }
    return TriggerResult::kContinue;
  }
  template <typename W>
  TriggerResult OnEventTime(Timestamp, const W&, TriggerContext&) {
    return TriggerResult::kContinue;
  }
  template <typename W>
  TriggerResult OnProcessingTime(Timestamp, const W&, TriggerContext&) {
    return TriggerResult::kContinue;
  }
  bool CanMerge() const { return true; }
  template <typename W>
  void OnMerge(const W&, OnMergeContext& ctx) {
    ctx.MergeState(kCountSlot, [](int64_t a, int64_t b) { return a + b; });
  }
  template <typename W>
  void Clear(const W&, TriggerContext& ctx) {
    ctx.State(kCountSlot).reset();
  }
  int64_t count() const { return count_; }

 private:
  static constexpr int kCountSlot = 0;
  explicit CountTrigger(int64_t count) : count_(count) {}
  int64_t count_;
};

// Turns every FIRE of `inner` into FIRE_AND_PURGE.
template <typename Inner>
class PurgingTrigger {
 public:
  static constexpr int kStateSlots = TriggerStateSlots<Inner>();
  explicit PurgingTrigger(Inner inner) : inner_(std::move(inner)) {}
  static PurgingTrigger Of(Inner inner) { return PurgingTrigger(std::move(inner)); }
  template <typename T, typename W>
  TriggerResult OnElement(const T& e, Timestamp ts, const W& w, TriggerContext& ctx) {
    return Purging(inner_.OnElement(e, ts, w, ctx));
  }
  template <typename W>
  TriggerResult OnEventTime(Timestamp t, const W& w, TriggerContext& ctx) {
    return Purging(inner_.OnEventTime(t, w, ctx));
  }
  template <typename W>
  TriggerResult OnProcessingTime(Timestamp t, const W& w, TriggerContext& ctx) {
    return Purging(inner_.OnProcessingTime(t, w, ctx));
  }
  bool CanMerge() const { return inner_.CanMerge(); }
  template <typename W>
  void OnMerge(const W& w, OnMergeContext& ctx) {
    inner_.OnMerge(w, ctx);
  }
  template <typename W>
  void Clear(const W& w, TriggerContext& ctx) {
    inner_.Clear(w, ctx);
  }

 private:
  static TriggerResult Purging(TriggerResult r) {
    return IsFire(r) ? TriggerResult::kFireAndPurge : r;
  }
  Inner inner_;
};

namespace internal {

// Flink's ContinuousEventTimeTrigger / ContinuousProcessingTimeTrigger: fires every `interval`
// (aligned to multiples of it) and at the end of the window.
template <TimeDomain D>
class ContinuousTrigger {
 public:
  static ContinuousTrigger Of(absl::Duration interval) {
    return ContinuousTrigger(ToMillis(interval));
  }

  template <typename T, typename W>
  TriggerResult OnElement(const T&, Timestamp timestamp, const W& w, TriggerContext& ctx) {
    if constexpr (D == TimeDomain::kEventTime) {
      if (w.max_timestamp() <= ctx.CurrentWatermark()) return TriggerResult::kFire;
      ctx.RegisterEventTimeTimer(w.max_timestamp());
      std::optional<int64_t>& next = ctx.State(kFireSlot);
      if (!next) RegisterNext(timestamp - (timestamp % interval_), w, ctx);
    } else {
      std::optional<int64_t>& next = ctx.State(kFireSlot);
      if (!next) {
        Timestamp now = ctx.CurrentProcessingTime();
        RegisterNext(now - (now % interval_), w, ctx);
      }
    }
    return TriggerResult::kContinue;
  }
  template <typename W>
  TriggerResult OnEventTime(Timestamp time, const W& w, TriggerContext& ctx) {
    if constexpr (D == TimeDomain::kEventTime) {
      if (time == w.max_timestamp()) return TriggerResult::kFire;
      std::optional<int64_t>& next = ctx.State(kFireSlot);
      if (next && *next == time) {
        next.reset();
        RegisterNext(time, w, ctx);
        return TriggerResult::kFire;
      }
    }
    return TriggerResult::kContinue;
  }
  template <typename W>
  TriggerResult OnProcessingTime(Timestamp time, const W& w, TriggerContext& ctx) {
    if constexpr (D == TimeDomain::kProcessingTime) {
      std::optional<int64_t>& next = ctx.State(kFireSlot);
      if (next && *next == time) {
        next.reset();
        RegisterNext(time, w, ctx);
        return TriggerResult::kFire;
      }
    }
    return TriggerResult::kContinue;
  }
  bool CanMerge() const { return true; }
  template <typename W>
  void OnMerge(const W& w, OnMergeContext& ctx) {
    if constexpr (D == TimeDomain::kEventTime) {
      if (w.max_timestamp() > ctx.CurrentWatermark()) ctx.RegisterEventTimeTimer(w.max_timestamp());
    }
    ctx.MergeState(kFireSlot, [](int64_t a, int64_t b) { return std::min(a, b); });
    std::optional<int64_t>& next = ctx.State(kFireSlot);
    if (next) Register(*next, ctx);
  }
  template <typename W>
  void Clear(const W&, TriggerContext& ctx) {
    std::optional<int64_t>& next = ctx.State(kFireSlot);
    if (next) {
      if constexpr (D == TimeDomain::kEventTime) {
        ctx.DeleteEventTimeTimer(*next);
      } else {
        ctx.DeleteProcessingTimeTimer(*next);
      }
      next.reset();
    }
  }

 private:
  static constexpr int kFireSlot = 1;
  explicit ContinuousTrigger(int64_t interval) : interval_(interval) {}
  template <typename W>
  void RegisterNext(Timestamp time, const W& w, TriggerContext& ctx) {
    Timestamp next = std::min(SaturatingAdd(time, interval_), w.max_timestamp());
    ctx.State(kFireSlot) = next;
    Register(next, ctx);
  }
  void Register(Timestamp t, TriggerContext& ctx) {
    if constexpr (D == TimeDomain::kEventTime) {
      ctx.RegisterEventTimeTimer(t);
    } else {
      ctx.RegisterProcessingTimeTimer(t);
    }
  }
  int64_t interval_;
};

}  // namespace internal

using ContinuousEventTimeTrigger = internal::ContinuousTrigger<TimeDomain::kEventTime>;
using ContinuousProcessingTimeTrigger = internal::ContinuousTrigger<TimeDomain::kProcessingTime>;

// --- Evictors ------------------------------------------------------------------------------------

// An element of a window as evictors and window process functions see it.
template <typename T>
struct TimestampedValue {
  T value;
  Timestamp timestamp;
};

// Keeps the last `max_count` elements.
class CountEvictor {
 public:
  static CountEvictor Of(int64_t max_count, bool evict_after = false) {
    return CountEvictor(max_count, evict_after);
  }
  template <typename T, typename W>
  void EvictBefore(std::vector<TimestampedValue<T>>& elements, const W&) const {
    if (!evict_after_) Evict(elements);
  }
  template <typename T, typename W>
  void EvictAfter(std::vector<TimestampedValue<T>>& elements, const W&) const {
    if (evict_after_) Evict(elements);
  }

 private:
  CountEvictor(int64_t max_count, bool evict_after)
      : max_count_(max_count), evict_after_(evict_after) {}
  template <typename T>
  void Evict(std::vector<TimestampedValue<T>>& elements) const {
    if (static_cast<int64_t>(elements.size()) <= max_count_) return;
    elements.erase(elements.begin(), elements.end() - max_count_);
  }
  int64_t max_count_;
  bool evict_after_;
};

// Keeps the elements whose timestamp is within `window_size` of the newest one in the window.
class TimeEvictor {
 public:
  static TimeEvictor Of(absl::Duration window_size, bool evict_after = false) {
    return TimeEvictor(ToMillis(window_size), evict_after);
  }
  template <typename T, typename W>
  void EvictBefore(std::vector<TimestampedValue<T>>& elements, const W&) const {
    if (!evict_after_) Evict(elements);
  }
  template <typename T, typename W>
  void EvictAfter(std::vector<TimestampedValue<T>>& elements, const W&) const {
    if (evict_after_) Evict(elements);
  }

 private:
  TimeEvictor(int64_t size, bool evict_after) : size_(size), evict_after_(evict_after) {}
  template <typename T>
  void Evict(std::vector<TimestampedValue<T>>& elements) const {
    if (elements.empty() || elements.front().timestamp == kNoTimestamp) return;
    Timestamp newest = kMinWatermark;
    for (const auto& e : elements) newest = std::max(newest, e.timestamp);
    Timestamp cutoff = newest - size_;
    std::erase_if(elements, [cutoff](const auto& e) { return e.timestamp <= cutoff; });
  }
  int64_t size_;
  bool evict_after_;
};

// Removes the elements whose `delta(element, last element)` is >= `threshold`.
template <typename F>
class DeltaEvictor {
 public:
  DeltaEvictor(double threshold, F delta, bool evict_after)
      : threshold_(threshold), delta_(std::move(delta)), evict_after_(evict_after) {}
  template <typename T, typename W>
  void EvictBefore(std::vector<TimestampedValue<T>>& elements, const W&) const {
    if (!evict_after_) Evict(elements);
  }
  template <typename T, typename W>
  void EvictAfter(std::vector<TimestampedValue<T>>& elements, const W&) const {
    if (evict_after_) Evict(elements);
  }

 private:
  template <typename T>
  void Evict(std::vector<TimestampedValue<T>>& elements) const {
    if (elements.empty()) return;
    T last = elements.back().value;
    std::erase_if(elements, [&](const auto& e) { return delta_(e.value, last) >= threshold_; });
  }
  double threshold_;
  F delta_;
  bool evict_after_;
};

template <typename F>
DeltaEvictor<F> MakeDeltaEvictor(double threshold, F delta, bool evict_after = false) {
  return DeltaEvictor<F>(threshold, std::move(delta), evict_after);
}

// The evictor of a window without one.
struct NoEvictor {};

}  // namespace sluice
