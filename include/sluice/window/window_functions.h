// The functions a window runs when it fires (Flink's "Window Functions"):
//
//   - Reduce(fn): `fn(const T&, const T&) -> T`, folded incrementally as elements arrive;
//   - Aggregate(agg): a class derived from AggregateFunction<In, Acc, Out>, incremental too;
//   - Process(fn): a ProcessWindowFunction that sees all elements of the window at once, with a
//     context (the window, the current watermark, processing time, side outputs);
//   - Reduce(fn, process) / Aggregate(agg, process): incremental, then Process once per firing with
//     the single pre-aggregated value.
//
//   class Average : public sluice::AggregateFunction<Bid, std::pair<int64_t, int64_t>, double> {
//    public:
//     std::pair<int64_t, int64_t> CreateAccumulator() override { return {0, 0}; }
//     void Add(const Bid& b, std::pair<int64_t, int64_t>& acc) override {
//       acc.first += b.price;
//       ++acc.second;
//     }
//     double GetResult(const std::pair<int64_t, int64_t>& acc) override {
//       return double(acc.first) / double(acc.second);
//     }
//     void Merge(const std::pair<int64_t, int64_t>& from, std::pair<int64_t, int64_t>& into) override {
//       into.first += from.first;
//       into.second += from.second;
//     }
//   };
//
// Records a window emits carry the timestamp window.max_timestamp(), as in Flink.
#pragma once

#include <span>
#include <utility>

#include <sluice/core/collector.h>
#include <sluice/core/output_tag.h>
#include <sluice/core/runtime_context.h>
#include <sluice/internal/side_outputs.h>
#include <sluice/time/clock.h>
#include <sluice/time/time.h>
#include <sluice/window/windows.h>

namespace sluice {

// Incremental aggregation: one accumulator per window (and key). Merge combines the accumulators
// of windows that merge (sessions) and of the slices Sluice shares between sliding windows. Mark
// the derived class `final` so the operator's calls inline.
template <typename In, typename Acc, typename Out>
class AggregateFunction {
 public:
  using InputType = In;
  using AccumulatorType = Acc;
  using OutputType = Out;
  virtual ~AggregateFunction() = default;
  virtual Acc CreateAccumulator() = 0;
  virtual void Add(const In& value, Acc& accumulator) = 0;
  virtual Out GetResult(const Acc& accumulator) = 0;
  virtual void Merge(const Acc& from, Acc& into) = 0;
};

// What a window function sees besides the elements. Valid only during the call.
template <typename W>
class WindowContext {
 public:
  WindowContext(const RuntimeContext* runtime, internal::SideOutputs* side, const Clock* clock)
      : runtime_(runtime), side_(side), clock_(clock) {}

  const W& window() const { return *window_; }
  // The operator's event time: the last watermark it received.
  Timestamp CurrentWatermark() const { return watermark_; }
  Timestamp CurrentProcessingTime() const { return clock_->NowMillis(); }
  const RuntimeContext& runtime() const { return *runtime_; }

  // Emits `value` to side output `tag`, with the timestamp window().max_timestamp().
  template <typename S, typename V>
  void Output(const OutputTag<S>& tag, V&& value) {
    side_->Emit(tag, S(std::forward<V>(value)), window_->max_timestamp());
  }

  // Keyed state of the current key and this window (Flink's windowState()). It lives as long as
  // the function keeps it: clear it in the function's Clear(ctx), which runs when the window is
  // purged (after window end + allowed lateness).
  // Not available with merging windows (sessions), as in Flink: the job fails with
  // FailedPrecondition; use GlobalState() there.
  StateAccess<W> WindowState() const {
    if (merging_) {
      internal::ThrowStateError(absl::FailedPreconditionError(absl::StrCat(
          "operator '", runtime_->operator_name,
          "': per-window state (WindowState()) is not available with merging windows "
          "(session windows); use GlobalState()")));
    }
    return StateAccess<W>(store_, &ns_, &runtime_->operator_name);
  }
  // Keyed state of the current key, shared by all its windows (Flink's globalState()).
  StateAccess<internal::VoidNamespace> GlobalState() const {
    return StateAccess<internal::VoidNamespace>(store_, &internal::kNoNamespace,
                                                &runtime_->operator_name);
  }

  // --- Runtime side -------------------------------------------------------------------------------
  void Set(const W* window, Timestamp watermark) {
    window_ = window;
    ns_.current = window;
    watermark_ = watermark;
  }
  void SetState(internal::KeyedStateStore* store, bool merging) {
    store_ = store;
    merging_ = merging;
  }

 private:
  const RuntimeContext* runtime_;
  internal::SideOutputs* side_;
  const Clock* clock_;
  internal::KeyedStateStore* store_ = nullptr;
  internal::NamespaceSlot<W> ns_;
  bool merging_ = false;
  const W* window_ = nullptr;
  Timestamp watermark_ = kMinWatermark;
};

// A window function over all elements of a window of a keyed stream (Window(...).Process).
// A lambda `(const K&, WindowContext<W>&, std::span<const In>, Collector<Out>&)` works too.
template <typename In, typename Out, typename K, typename W>
class ProcessWindowFunction {
 public:
  using InputType = In;
  using OutputType = Out;
  using KeyType = K;
  using Context = WindowContext<W>;
  virtual ~ProcessWindowFunction() = default;
  virtual void Open(const RuntimeContext&) {}
  virtual void Process(const K& key, Context& ctx, std::span<const In> elements,
                       Collector<Out>& out) = 0;
  // The window is being purged for good (its cleanup time passed).
  virtual void Clear(const K& /*key*/, Context& /*ctx*/) {}
  virtual void Close() {}
};

// The same for WindowAll: no key. A lambda `(WindowContext<W>&, std::span<const In>,
// Collector<Out>&)` works too.
template <typename In, typename Out, typename W>
class ProcessAllWindowFunction {
 public:
  using InputType = In;
  using OutputType = Out;
  using Context = WindowContext<W>;
  virtual ~ProcessAllWindowFunction() = default;
  virtual void Open(const RuntimeContext&) {}
  virtual void Process(Context& ctx, std::span<const In> elements, Collector<Out>& out) = 0;
  virtual void Clear(Context& /*ctx*/) {}
  virtual void Close() {}
};

}  // namespace sluice
