// WatermarkStrategy<T>: how records get their event timestamps and how watermarks are generated,
// with Flink's semantics ("Generating Watermarks").
//
//   auto strategy = sluice::WatermarkStrategy<Click>::ForBoundedOutOfOrderness(absl::Seconds(5))
//                       .WithTimestampAssigner([](const Click& c) { return c.time_ms; })
//                       .WithIdleness(absl::Minutes(1));
//   env.FromSource(source, strategy, "clicks");            // per source subtask
//   stream.AssignTimestampsAndWatermarks(strategy);          // or after any operator
//
// A watermark W asserts that no more records with timestamp <= W will arrive; later ones are late.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

#include "absl/time/time.h"

#include <sluice/time/clock.h>
#include <sluice/time/time.h>

namespace sluice {

// Where a generator emits. Watermarks that do not advance are ignored by the runtime.
class WatermarkOutput {
 public:
  virtual ~WatermarkOutput() = default;
  virtual void EmitWatermark(Timestamp watermark) = 0;
  // No records for a while: downstream operators stop waiting for this input's watermark.
  virtual void MarkIdle() = 0;
  virtual void MarkActive() = 0;
};

// Periodic generators emit in OnPeriodicEmit (called every
// RuntimeOptions::auto_watermark_interval), punctuated ones in OnEvent. One instance per source
// subtask; not shared between threads.
template <typename T>
class WatermarkGenerator {
 public:
  virtual ~WatermarkGenerator() = default;
  virtual void OnEvent(const T& event, Timestamp timestamp, WatermarkOutput& output) = 0;
  virtual void OnPeriodicEmit(WatermarkOutput& output) = 0;
  // Whether OnEvent may emit (a punctuated generator). When false the runtime calls OnEvents
  // once per batch and hands the batch downstream without copying it; a watermark emitted there
  // anyway goes out after the batch. The default keeps Flink's per-record order.
  virtual bool EmitsOnEvent() const { return true; }
  // With EmitsOnEvent() false, the runtime calls this once per batch; built-in generators
  // override it with a tight loop.
  virtual void OnEvents(const T* events, const Timestamp* timestamps, size_t n,
                        WatermarkOutput& output) {
    for (size_t i = 0; i < n; ++i) OnEvent(events[i], timestamps[i], output);
  }
};

// Watermark = highest timestamp seen - max_out_of_orderness - 1 (Flink's
// BoundedOutOfOrdernessWatermarks). With zero out-of-orderness: monotonous timestamps.
template <typename T>
class BoundedOutOfOrdernessWatermarks final : public WatermarkGenerator<T> {
 public:
  explicit BoundedOutOfOrdernessWatermarks(absl::Duration max_out_of_orderness)
      : delay_(ToMillis(max_out_of_orderness)), max_timestamp_(kMinWatermark + delay_ + 1) {}

  void OnEvent(const T&, Timestamp timestamp, WatermarkOutput&) override {
    max_timestamp_ = std::max(max_timestamp_, timestamp);
  }
  bool EmitsOnEvent() const override { return false; }
  void OnEvents(const T*, const Timestamp* timestamps, size_t n, WatermarkOutput&) override {
    Timestamp m = max_timestamp_;
    for (size_t i = 0; i < n; ++i) m = std::max(m, timestamps[i]);
    max_timestamp_ = m;
  }
  void OnPeriodicEmit(WatermarkOutput& output) override {
    output.EmitWatermark(max_timestamp_ - delay_ - 1);
  }

 private:
  int64_t delay_;
  Timestamp max_timestamp_;
};

// Wraps a generator: when no record arrived for `timeout` of processing time (counted from the
// generator's creation or the last record), the input is marked idle at the next periodic emit
// (Flink's WatermarksWithIdleness); the next record marks it active again.
template <typename T>
class WatermarksWithIdleness final : public WatermarkGenerator<T> {
 public:
  WatermarksWithIdleness(std::unique_ptr<WatermarkGenerator<T>> inner, absl::Duration timeout,
                         const Clock* clock)
      : inner_(std::move(inner)),
        timeout_(ToMillis(timeout)),
        clock_(clock),
        last_activity_(clock->NowMillis()) {}

  void OnEvent(const T& event, Timestamp timestamp, WatermarkOutput& output) override {
    Activity(output);
    inner_->OnEvent(event, timestamp, output);
  }
  bool EmitsOnEvent() const override { return inner_->EmitsOnEvent(); }
  void OnEvents(const T* events, const Timestamp* timestamps, size_t n,
                WatermarkOutput& output) override {
    if (n == 0) return;
    Activity(output);
    inner_->OnEvents(events, timestamps, n, output);
  }
  void OnPeriodicEmit(WatermarkOutput& output) override {
    if (idle_) return;
    if (clock_->NowMillis() - last_activity_ >= timeout_) {
      idle_ = true;
      output.MarkIdle();
      return;
    }
    inner_->OnPeriodicEmit(output);
  }

 private:
  void Activity(WatermarkOutput& output) {
    last_activity_ = clock_->NowMillis();
    if (idle_) {
      idle_ = false;
      output.MarkActive();
    }
  }
  std::unique_ptr<WatermarkGenerator<T>> inner_;
  int64_t timeout_;
  const Clock* clock_;
  Timestamp last_activity_;
  bool idle_ = false;
};

template <typename T>
class WatermarkStrategy {
 public:
  using GeneratorFactory = std::function<std::unique_ptr<WatermarkGenerator<T>>()>;
  // Assigns timestamps to a batch in place: timestamps[i] holds the record's previous timestamp
  // (from the source, or kNoTimestamp) and receives the new one. One call per batch.
  using BatchAssigner = std::function<void(const T* values, Timestamp* timestamps, size_t n)>;

  // Timestamps never decrease: watermark = highest timestamp - 1.
  static WatermarkStrategy ForMonotonousTimestamps() {
    return ForBoundedOutOfOrderness(absl::ZeroDuration());
  }
  static WatermarkStrategy ForBoundedOutOfOrderness(absl::Duration max_out_of_orderness) {
    return WatermarkStrategy([max_out_of_orderness] {
      return std::unique_ptr<WatermarkGenerator<T>>(
          new BoundedOutOfOrdernessWatermarks<T>(max_out_of_orderness));
    });
  }
  // A custom periodic or punctuated generator: `factory()` returns a new
  // std::unique_ptr<WatermarkGenerator<T>> for every parallel instance.
  template <typename F>
  static WatermarkStrategy ForGenerator(F factory) {
    return WatermarkStrategy(
        [factory]() -> std::unique_ptr<WatermarkGenerator<T>> { return factory(); });
  }
  // Timestamps are assigned (or kept from the source) but no watermarks are generated.
  static WatermarkStrategy NoWatermarks() { return WatermarkStrategy(nullptr); }

  // `assigner(const T&) -> Timestamp`, or `assigner(const T&, Timestamp previous) -> Timestamp`.
  // Without one, records keep the timestamp their source gave them.
  template <typename F>
  WatermarkStrategy WithTimestampAssigner(F assigner) const {
    WatermarkStrategy s = *this;
    s.assigner_ = [assigner](const T* values, Timestamp* timestamps, size_t n) {
      for (size_t i = 0; i < n; ++i) {
        if constexpr (std::is_invocable_v<const F&, const T&, Timestamp>) {
          timestamps[i] = assigner(values[i], timestamps[i]);
        } else {
          timestamps[i] = assigner(values[i]);
        }
      }
    };
    return s;
  }

  // Marks the input idle after `timeout` without records, so it does not hold back watermarks.
  WatermarkStrategy WithIdleness(absl::Duration timeout) const {
    WatermarkStrategy s = *this;
    s.idleness_ = timeout;
    return s;
  }

  // --- Runtime side ------------------------------------------------------------------------------
  bool has_generator() const { return static_cast<bool>(factory_); }
  const BatchAssigner& assigner() const { return assigner_; }
  absl::Duration idleness() const { return idleness_; }
  std::unique_ptr<WatermarkGenerator<T>> CreateGenerator(const Clock* clock) const {
    if (!factory_) return nullptr;
    std::unique_ptr<WatermarkGenerator<T>> g = factory_();
    if (g != nullptr && idleness_ > absl::ZeroDuration()) {
      g = std::make_unique<WatermarksWithIdleness<T>>(std::move(g), idleness_, clock);
    }
    return g;
  }

 private:
  explicit WatermarkStrategy(GeneratorFactory factory) : factory_(std::move(factory)) {}

  GeneratorFactory factory_;
  BatchAssigner assigner_;
  absl::Duration idleness_ = absl::ZeroDuration();
};

}  // namespace sluice
