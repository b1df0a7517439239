// The window operator against Flink's WindowOperator semantics: window functions, WindowAll,
// custom triggers, evictors, continuous and purging triggers, allowed lateness, late data, session
// merging with late data, output timestamps, failures and misuse. Each job runs at parallelism 1,
// 2 and 4 with punctuated watermarks, so every firing is exact.
#include <sluice/sluice.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/time.h"
#include "window/window_test_util.h"

namespace sluice {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using window_test::ByKey;
using window_test::Ev;
using window_test::EventSource;
using window_test::F;
using window_test::Fired;
using window_test::ListAllValues;
using window_test::ListValues;
using window_test::OfKey;
using window_test::Stamped;
using window_test::Streaming;
using window_test::WithMark;

constexpr Timestamp kMax = kMaxWatermark;

Fired G(std::string key, std::vector<int64_t> values, Timestamp wm = kMinWatermark) {
  return {std::move(key), kMinWatermark, kMaxWatermark, std::move(values), wm, kMaxWatermark};
}

// A firing reported by a Reduce/Aggregate + process function: the window and its result(s).
template <typename W>
Fired Result(const std::string& key, WindowContext<W>& ctx, std::vector<int64_t> values) {
  Fired f{key, 0, 0, std::move(values), ctx.CurrentWatermark()};
  std::tie(f.start, f.end) = window_test::Bounds(ctx.window());
  return f;
}

class WindowOperatorTest : public ::testing::TestWithParam<int> {
 protected:
  template <typename Build>
  std::vector<Fired> Run(std::vector<Ev> events, Build build) {
    return window_test::RunFired(GetParam(), std::move(events), build);
  }
};

// --- Window functions ----------------------------------------------------------------------------

// Records what Clear() saw: (key, window start, watermark).
using Cleared = std::tuple<std::string, Timestamp, Timestamp>;
struct ClearLog {
  std::mutex mu;
  std::vector<Cleared> entries;
};

// Reports each firing; windows with two or more elements also go to side output `big`; Clear()
// logs the windows it is told to forget.
class Inspect final : public ProcessWindowFunction<Ev, Fired, std::string, TimeWindow> {
 public:
  Inspect(OutputTag<Fired> big, std::shared_ptr<ClearLog> log)
      : big_(std::move(big)), log_(std::move(log)) {}
  void Open(const RuntimeContext&) override { opened_ = true; }
  void Process(const std::string& key, Context& ctx, std::span<const Ev> elements,
               Collector<Fired>& out) override {
    EXPECT_TRUE(opened_);
    Fired f = F(key, ctx.window().start, ctx.window().end, {}, ctx.CurrentWatermark());
    f.timestamp = kNoTimestamp;
    for (const Ev& e : elements) f.values.push_back(e.value);
    if (elements.size() >= 2) ctx.Output(big_, f);
    out.Collect(std::move(f));
  }
  void Clear(const std::string& key, Context& ctx) override {
    std::lock_guard<std::mutex> lock(log_->mu);
    log_->entries.push_back({key, ctx.window().start, ctx.CurrentWatermark()});
  }

 private:
  OutputTag<Fired> big_;
  std::shared_ptr<ClearLog> log_;
  bool opened_ = false;
};

TEST_P(WindowOperatorTest, ProcessFunctionSeesWindowWatermarkSideOutputsAndClear) {
  StreamEnvironment env(Streaming(GetParam()));
  OutputTag<Fired> big("big-windows");
  auto log = std::make_shared<ClearLog>();
  CollectSink<Fired> sink;
  CollectSink<Fired> big_sink;
  std::vector<Ev> events = {{"a", 1, 1},
                            {"a", 4, 2},
                            WithMark({"b", 3, 3}, 9),
                            WithMark({"a", 5, 4}, 14),  // late, within the allowed lateness
                            {"a", 12, 5}};
  auto fired = EventSource(env, events)
                   .KeyBy(ByKey)
                   .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
                   .AllowedLateness(absl::Milliseconds(5))
                   .Process(Inspect(big, log));
  Stamped(fired).SinkTo(sink);
  Stamped(fired.GetSideOutput(big)).SinkTo(big_sink);
  absl::Status status = env.Execute("inspect");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(),
              UnorderedElementsAre(F("a", 0, 10, {1, 2}, 9), F("b", 0, 10, {3}, 9),
                                   F("a", 0, 10, {1, 2, 4}, 9), F("a", 10, 20, {5}, kMax)));
  // Side outputs of a window function carry the window's max timestamp too.
  EXPECT_THAT(big_sink.values(),
              UnorderedElementsAre(F("a", 0, 10, {1, 2}, 9), F("a", 0, 10, {1, 2, 4}, 9)));
  // Each window is cleared once, when the watermark passes its end + allowed lateness.
  EXPECT_THAT(log->entries, UnorderedElementsAre(Cleared("a", 0, 14), Cleared("b", 0, 14),
                                                 Cleared("a", 10, kMax)));
}

// Re-firings within the allowed lateness carry everything the window holds, for a list window,
// Reduce + process and Aggregate + process alike; after the window's cleanup time its late records
// go to the side output. A late (but allowed) record of a window that does not exist yet creates
// it and fires it at once.
class SumAndCount final : public AggregateFunction<Ev, std::pair<int64_t, int64_t>, Ev> {
 public:
  std::pair<int64_t, int64_t> CreateAccumulator() override { return {0, 0}; }
  void Add(const Ev& e, std::pair<int64_t, int64_t>& acc) override {
    acc.first += e.value;
    acc.second += 1;
  }
  Ev GetResult(const std::pair<int64_t, int64_t>& acc) override {
    return {"", acc.second, acc.first};  // ts = count, value = sum
  }
  void Merge(const std::pair<int64_t, int64_t>& from, std::pair<int64_t, int64_t>& into) override {
    into.first += from.first;
    into.second += from.second;
  }
};

TEST_P(WindowOperatorTest, AllowedLatenessRefiresWithAccumulatedContents) {
  std::vector<Ev> events = {
      {"a", 1, 1},  WithMark({"a", 5, 2}, 9),   {"a", 3, 3}, WithMark({"a", 7, 4}, 12), {"a", 8, 5},
      {"b", 4, 10}, WithMark({"a", 15, 6}, 14),  // [0, 10) is cleaned up at 9 + 5
      {"a", 2, 7},                               // too late
      {"a", 16, 8}};
  StreamEnvironment env(Streaming(GetParam()));
  OutputTag<Ev> late("late");
  CollectSink<Fired> lists, sums, aggregates;
  CollectSink<Ev> late_lists, late_sums, late_aggregates;
  auto windowed = EventSource(env, events)
                      .KeyBy(ByKey)
                      .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
                      .AllowedLateness(absl::Milliseconds(5))
                      .SideOutputLateData(late);
  auto list = windowed.Process<Fired>(ListValues{});
  auto sum = windowed.Reduce(
      [](const Ev& x, const Ev& y) {
        return Ev{x.key, 0, x.value + y.value};
      },
      [](const std::string& key, WindowContext<TimeWindow>& ctx, std::span<const Ev> r,
         Collector<Fired>& out) { out.Collect(Result(key, ctx, {r[0].value})); });
  auto aggregate =
      windowed.Aggregate(SumAndCount(), [](const std::string& key, WindowContext<TimeWindow>& ctx,
                                           std::span<const Ev> r, Collector<Fired>& out) {
        out.Collect(Result(key, ctx, {r[0].value, r[0].ts}));
      });
  Stamped(list).SinkTo(lists);
  Stamped(sum).SinkTo(sums);
  Stamped(aggregate).SinkTo(aggregates);
  list.GetSideOutput(late).SinkTo(late_lists);
  sum.GetSideOutput(late).SinkTo(late_sums);
  aggregate.GetSideOutput(late).SinkTo(late_aggregates);
  absl::Status status = env.Execute("lateness");
  ASSERT_TRUE(status.ok()) << status;

  EXPECT_THAT(
      lists.values(),
      UnorderedElementsAre(F("a", 0, 10, {1, 2}, 9), F("a", 0, 10, {1, 2, 3}, 9),
                           F("a", 0, 10, {1, 2, 3, 4}, 9), F("a", 0, 10, {1, 2, 3, 4, 5}, 12),
                           F("b", 0, 10, {10}, 12), F("a", 10, 20, {6, 8}, kMax)));
  EXPECT_THAT(OfKey(lists.values(), "a"),
              ElementsAre(F("a", 0, 10, {1, 2}, 9), F("a", 0, 10, {1, 2, 3}, 9),
                          F("a", 0, 10, {1, 2, 3, 4}, 9), F("a", 0, 10, {1, 2, 3, 4, 5}, 12),
                          F("a", 10, 20, {6, 8}, kMax)));
  EXPECT_THAT(sums.values(),
              UnorderedElementsAre(F("a", 0, 10, {3}, 9), F("a", 0, 10, {6}, 9),
                                   F("a", 0, 10, {10}, 9), F("a", 0, 10, {15}, 12),
                                   F("b", 0, 10, {10}, 12), F("a", 10, 20, {14}, kMax)));
  EXPECT_THAT(aggregates.values(),
              UnorderedElementsAre(F("a", 0, 10, {3, 2}, 9), F("a", 0, 10, {6, 3}, 9),
                                   F("a", 0, 10, {10, 4}, 9), F("a", 0, 10, {15, 5}, 12),
                                   F("b", 0, 10, {10, 1}, 12), F("a", 10, 20, {14, 2}, kMax)));
  for (auto* s : {&late_lists, &late_sums, &late_aggregates}) {
    EXPECT_THAT(s->values(), ElementsAre(Ev{"a", 2, 7}));
  }
}

// Sliding windows: a record whose newest window is still open goes only into the windows that are
// not late and is neither late nor dropped; a record whose every window is late is dropped and
// counted.
TEST_P(WindowOperatorTest, PartlyLateRecordsGoIntoTheLiveWindowsOnly) {
  StreamEnvironment env(Streaming(GetParam()));
  CollectSink<Fired> sink;
  std::vector<Ev> events = {WithMark({"a", 1, 1}, 9), {"a", 7, 2}, {"a", 2, 3}};
  Stamped(EventSource(env, events)
              .KeyBy(ByKey)
              .Window(SlidingEventTimeWindows::Of(absl::Milliseconds(10), absl::Milliseconds(5)))
              .Process<Fired>(ListValues{}))
      .SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("partly-late");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(job->Wait().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(F("a", -5, 5, {1}, 9), F("a", 0, 10, {1}, 9),
                                                  F("a", 5, 15, {2}, kMax)));
  EXPECT_EQ(job->Counters()["Window.numLateRecordsDropped"], 1);
}

// --- Non-keyed windows -----------------------------------------------------------------------------

// (The window function runs in one subtask; its results reach the sinks of a wider job through a
// rebalance, so their order there is not fixed.)
TEST_P(WindowOperatorTest, WindowAllAndCountWindowAll) {
  std::vector<Ev> events = {{"a", 1, 1},  WithMark({"b", 2, 2}, 9),
                            {"c", 5, 5},  // late
                            {"c", 11, 3}, {"a", 12, 4},
                            {"b", 13, 6}, {"a", 14, 7}};
  {
    StreamEnvironment env(Streaming(GetParam()));
    CollectSink<Fired> sink;
    Stamped(EventSource(env, events)
                .WindowAll(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
                .Process<Fired>(ListAllValues{}))
        .SinkTo(sink);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("window-all");
    ASSERT_TRUE(job.ok()) << job.status();
    ASSERT_TRUE(job->Wait().ok());
    EXPECT_THAT(sink.values(),
                UnorderedElementsAre(F("*", 0, 10, {1, 2}, 9), F("*", 10, 20, {3, 4, 6, 7}, kMax)));
    EXPECT_EQ(job->Counters()["All Window.numLateRecordsDropped"], 1);
  }
  auto tumbling = Run(events, [](DataStream<Ev> in) {
    return in.CountWindowAll(3).Process<Fired>(ListAllValues{});
  });
  // Count windows fire on records, seeing the watermark of the moment (9 after the second record).
  EXPECT_THAT(tumbling, UnorderedElementsAre(G("*", {1, 2, 5}, 9), G("*", {3, 4, 6}, 9)));
  auto sliding = Run(events, [](DataStream<Ev> in) {
    return in.CountWindowAll(3, 2).Process<Fired>(ListAllValues{});
  });
  EXPECT_THAT(sliding,
              UnorderedElementsAre(G("*", {1, 2}), G("*", {2, 5, 3}, 9), G("*", {3, 4, 6}, 9)));
  auto sums = Run(events, [](DataStream<Ev> in) {
    return in.WindowAll(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
        .Reduce([](const Ev& x, const Ev& y) {
          return Ev{"*", 0, x.value + y.value};
        })
        .Map([](const Ev& e) {
          return Fired{e.key, 0, 0, {e.value}};
        });
  });
  EXPECT_THAT(sums, UnorderedElementsAre(Fired{"*", 0, 0, {3}, kMinWatermark, 9},
                                         Fired{"*", 0, 0, {20}, kMinWatermark, 19}));
}

// --- Triggers ------------------------------------------------------------------------------------

// On global windows: value 100 → FIRE, 200 → FIRE_AND_PURGE, 300 → PURGE; other records are
// counted in trigger state slot 0 and every third one fires (the count then starts again).
class CommandTrigger : public Trigger<Ev, GlobalWindow> {
 public:
  TriggerResult OnElement(const Ev& e, Timestamp, const GlobalWindow&,
                          TriggerContext& ctx) override {
    if (e.value == 100) return TriggerResult::kFire;
    if (e.value == 200) return TriggerResult::kFireAndPurge;
    if (e.value == 300) return TriggerResult::kPurge;
    std::optional<int64_t>& n = ctx.State(0);
    n = n.value_or(0) + 1;
    if (*n < 3) return TriggerResult::kContinue;
    n.reset();
    return TriggerResult::kFire;
  }
  TriggerResult OnEventTime(Timestamp, const GlobalWindow&, TriggerContext&) override {
    return TriggerResult::kContinue;
  }
  TriggerResult OnProcessingTime(Timestamp, const GlobalWindow&, TriggerContext&) override {
    return TriggerResult::kContinue;
  }
  void Clear(const GlobalWindow&, TriggerContext& ctx) override { ctx.State(0).reset(); }
};

TEST_P(WindowOperatorTest, CustomTriggerFirePurgeAndFireAndPurgeWithState) {
  std::vector<Ev> events;
  for (int64_t v : {1, 2, 100, 3, 4, 300, 5, 200, 6, 7, 8, 9}) events.push_back({"a", v, v});
  events.insert(events.begin() + 4, Ev{"b", 0, 10});
  events.insert(events.begin() + 7, Ev{"b", 0, 100});
  events.push_back({"b", 0, 11});
  auto fired = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(GlobalWindows::Create())
        .Trigger(CommandTrigger())
        .Process<Fired>(ListValues{});
  });
  // The record is added before the trigger sees it; PURGE drops the contents (300 too) without
  // firing; the count lives on across FIRE and PURGE.
  EXPECT_THAT(OfKey(fired, "a"), ElementsAre(G("a", {1, 2, 100}), G("a", {1, 2, 100, 3}),
                                             G("a", {5, 200}), G("a", {6}), G("a", {6, 7, 8, 9})));
  EXPECT_THAT(OfKey(fired, "b"), ElementsAre(G("b", {10, 100})));
  EXPECT_EQ(fired.size(), 6u);
}

// On event-time windows: fires early every second record (count in slot 0) and at the end of the
// window through an event-time timer, which Clear() deletes.
class EarlyAndOnTime : public Trigger<Ev, TimeWindow> {
 public:
  TriggerResult OnElement(const Ev&, Timestamp, const TimeWindow& w, TriggerContext& ctx) override {
    ctx.RegisterEventTimeTimer(w.max_timestamp());
    std::optional<int64_t>& n = ctx.State(0);
    n = n.value_or(0) + 1;
    if (*n < 2) return TriggerResult::kContinue;
    n.reset();
    return TriggerResult::kFire;
  }
  TriggerResult OnEventTime(Timestamp time, const TimeWindow& w, TriggerContext&) override {
    return time == w.max_timestamp() ? TriggerResult::kFire : TriggerResult::kContinue;
  }
  TriggerResult OnProcessingTime(Timestamp, const TimeWindow&, TriggerContext&) override {
    return TriggerResult::kContinue;
  }
  void Clear(const TimeWindow& w, TriggerContext& ctx) override {
    ctx.DeleteEventTimeTimer(w.max_timestamp());
    ctx.State(0).reset();
  }
};

TEST_P(WindowOperatorTest, CustomTriggerWithEventTimeTimersAndEarlyFirings) {
  std::vector<Ev> events = {
      {"a", 1, 1}, {"a", 2, 2}, WithMark({"a", 3, 3}, 9), {"a", 15, 4}, {"a", 16, 5}};
  auto fired = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
        .Trigger(EarlyAndOnTime())
        .Process<Fired>(ListValues{});
  });
  EXPECT_THAT(fired, ElementsAre(F("a", 0, 10, {1, 2}, kMinWatermark), F("a", 0, 10, {1, 2, 3}, 9),
                                 F("a", 10, 20, {4, 5}, 9), F("a", 10, 20, {4, 5}, kMax)));
}

class SlotEight : public EarlyAndOnTime {
 public:
  TriggerResult OnElement(const Ev&, Timestamp, const TimeWindow&, TriggerContext& ctx) override {
    ctx.State(8) = 1;
    return TriggerResult::kContinue;
  }
};

TEST(WindowTriggerTest, TriggerStateSlotOutOfRangeFailsTheJob) {
  StreamEnvironment env(Streaming(1));
  CollectSink<Fired> sink;
  EventSource(env, {{"a", 1, 1}})
      .KeyBy(ByKey)
      .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
      .Trigger(SlotEight())
      .Process<Fired>(ListValues{})
      .SinkTo(sink);
  absl::Status status = env.Execute("slot-eight");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("trigger state slot 8 is out of range"));
}

// ContinuousEventTimeTrigger(3 s) on 10 s windows: fires at every multiple of 3 s the watermark
// passes (timers registered from a firing fire in the same watermark when due) and at the window's
// end, each time with everything the window holds. Purging, each firing starts the window afresh.
TEST_P(WindowOperatorTest, ContinuousEventTimeTriggerAndPurgingTrigger) {
  std::vector<Ev> events = {{"a", 1000, 1},
                            WithMark({"a", 4000, 2}, 2500),
                            WithMark({"a", 2000, 3}, 3000),
                            WithMark({"a", 5000, 4}, 9999),
                            {"a", 12000, 5}};
  auto continuous = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(TumblingEventTimeWindows::Of(absl::Seconds(10)))
        .Trigger(ContinuousEventTimeTrigger::Of(absl::Seconds(3)))
        .Process<Fired>(ListValues{});
  });
  EXPECT_THAT(continuous, ElementsAre(F("a", 0, 10000, {1, 2, 3}, 3000),     // at 3 s
                                      F("a", 0, 10000, {1, 2, 3, 4}, 9999),  // at 6 s
                                      F("a", 0, 10000, {1, 2, 3, 4}, 9999),  // at 9 s
                                      F("a", 0, 10000, {1, 2, 3, 4}, 9999),  // at the end
                                      F("a", 10000, 20000, {5}, kMax),       // at 15 s
                                      F("a", 10000, 20000, {5}, kMax),       // at 18 s
                                      F("a", 10000, 20000, {5}, kMax)));     // at the end
  auto purging = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(TumblingEventTimeWindows::Of(absl::Seconds(10)))
        .Trigger(PurgingTrigger(ContinuousEventTimeTrigger::Of(absl::Seconds(3))))
        .Process<Fired>(ListValues{});
  });
  EXPECT_THAT(purging, ElementsAre(F("a", 0, 10000, {1, 2, 3}, 3000), F("a", 0, 10000, {4}, 9999),
                                   F("a", 10000, 20000, {5}, kMax)));
}

// A CountTrigger on session windows: when sessions merge, their counts add up (OnMerge).
TEST_P(WindowOperatorTest, CountTriggerStateMergesWithSessions) {
  std::vector<Ev> events = {
      {"a", 0, 0}, {"a", 20, 20}, {"a", 10, 10}, {"a", 5, 5}, {"a", 100, 100}};
  auto fired = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(EventTimeSessionWindows::WithGap(absl::Milliseconds(10)))
        .Trigger(CountTrigger::Of(3))
        .Process<Fired>(ListValues{.sort = true});
  });
  // [0, 10) and [20, 30) hold one record each; [10, 20) joins them: 1 + 1 + 1 = 3 fires.
  EXPECT_THAT(fired, ElementsAre(F("a", 0, 30, {0, 10, 20}, kMinWatermark)));
}

// --- Evictors ------------------------------------------------------------------------------------

// Global windows with CountTrigger(3) (not purging), so what an evictor leaves stays for the
// next firing.
template <typename E>
std::vector<Fired> WithEvictor(int parallelism, const std::vector<int64_t>& values,
                               const std::vector<Timestamp>& times, E evictor) {
  std::vector<Ev> events;
  for (size_t i = 0; i < values.size(); ++i) events.push_back({"a", times[i], values[i]});
  return window_test::RunFired(parallelism, events, [&](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(GlobalWindows::Create())
        .Trigger(CountTrigger::Of(3))
        .Evictor(evictor)
        .template Process<Fired>(ListValues{});
  });
}

TEST_P(WindowOperatorTest, CountEvictorBeforeAndAfter) {
  std::vector<int64_t> v = {1, 2, 3, 4, 5, 6};
  std::vector<Timestamp> t = {1, 2, 3, 4, 5, 6};
  EXPECT_THAT(WithEvictor(GetParam(), v, t, CountEvictor::Of(2)),
              ElementsAre(G("a", {2, 3}), G("a", {5, 6})));
  EXPECT_THAT(WithEvictor(GetParam(), v, t, CountEvictor::Of(2, /*evict_after=*/true)),
              ElementsAre(G("a", {1, 2, 3}), G("a", {2, 3, 4, 5, 6})));
}

TEST_P(WindowOperatorTest, TimeEvictorBeforeAndAfter) {
  // Keeps the elements newer than (newest timestamp - 15 ms).
  std::vector<int64_t> v = {1, 2, 3, 4, 5, 6};
  std::vector<Timestamp> t = {10, 40, 20, 50, 45, 30};
  EXPECT_THAT(WithEvictor(GetParam(), v, t, TimeEvictor::Of(absl::Milliseconds(15))),
              ElementsAre(G("a", {2}), G("a", {2, 4, 5})));
  EXPECT_THAT(
      WithEvictor(GetParam(), v, t, TimeEvictor::Of(absl::Milliseconds(15), /*evict_after=*/true)),
      ElementsAre(G("a", {1, 2, 3}), G("a", {2, 4, 5, 6})));
}

TEST_P(WindowOperatorTest, DeltaEvictorBeforeAndAfter) {
  // Removes the elements whose |value - last value| >= 3.
  auto delta = [](const Ev& a, const Ev& b) { return std::abs(double(a.value - b.value)); };
  std::vector<int64_t> v = {1, 5, 2, 9, 8, 7};
  std::vector<Timestamp> t = {1, 2, 3, 4, 5, 6};
  EXPECT_THAT(WithEvictor(GetParam(), v, t, MakeDeltaEvictor(3.0, delta)),
              ElementsAre(G("a", {1, 2}), G("a", {9, 8, 7})));
  EXPECT_THAT(WithEvictor(GetParam(), v, t, MakeDeltaEvictor(3.0, delta, /*evict_after=*/true)),
              ElementsAre(G("a", {1, 5, 2}), G("a", {1, 2, 9, 8, 7})));
}

// With an evictor, Reduce and Aggregate run over what the evictor left, at each firing.
TEST_P(WindowOperatorTest, EvictorWithReduceAndAggregateOnTimeWindows) {
  std::vector<Ev> events = {{"a", 1, 1}, {"a", 2, 2}, {"a", 3, 3}, {"b", 4, 10}, {"a", 12, 4}};
  auto sums = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
        .Evictor(CountEvictor::Of(2))
        .Reduce(
            [](const Ev& x, const Ev& y) {
              return Ev{x.key, 0, x.value + y.value};
            },
            [](const std::string& key, WindowContext<TimeWindow>& ctx, std::span<const Ev> r,
               Collector<Fired>& out) { out.Collect(Result(key, ctx, {r[0].value})); });
  });
  EXPECT_THAT(sums, UnorderedElementsAre(F("a", 0, 10, {5}, kMax), F("b", 0, 10, {10}, kMax),
                                         F("a", 10, 20, {4}, kMax)));
  auto aggregates = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
        .Evictor(CountEvictor::Of(2))
        .Aggregate(SumAndCount(), [](const std::string& key, WindowContext<TimeWindow>& ctx,
                                     std::span<const Ev> r, Collector<Fired>& out) {
          out.Collect(Result(key, ctx, {r[0].value, r[0].ts}));
        });
  });
  EXPECT_THAT(aggregates,
              UnorderedElementsAre(F("a", 0, 10, {5, 2}, kMax), F("b", 0, 10, {10, 1}, kMax),
                                   F("a", 10, 20, {4, 1}, kMax)));
}

// An evictor may leave a window empty; a later FIRE of the trigger then has no contents and, as
// in Flink's EvictingWindowOperator (whose emptied list state reads as null), calls no function.
TEST_P(WindowOperatorTest, AWindowEmptiedByAnEvictorDoesNotFire) {
  std::vector<Ev> events = {{"a", 1, 1}, WithMark({"a", 2, 2}, 35), WithMark({"a", 36, 3}, 45)};
  auto fired = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(100)))
        .Trigger(ContinuousEventTimeTrigger::Of(absl::Milliseconds(10)))
        .Evictor(CountEvictor::Of(0, /*evict_after=*/true))
        .Process<Fired>(ListValues{});
  });
  // Firings at 10 and 40; the timers at 20, 30, 50, ..., 90 and 99 find the window empty.
  EXPECT_THAT(fired, ElementsAre(F("a", 0, 100, {1, 2}, 35), F("a", 0, 100, {3}, 45)));
}

// --- Incremental functions fold in arrival order -------------------------------------------------

// Flink's ReducingState folds a window's records in the order they arrive, whatever their
// timestamps, so a reduce function need not be commutative (here: it records the order).
// Sluice shares slices between sliding windows by default (which needs a commutative reduce);
// WithoutSliceSharing() gives Flink's exact behaviour.
TEST_P(WindowOperatorTest, ReduceFoldsEachWindowInArrivalOrderWithoutSliceSharing) {
  std::vector<Ev> events = {{"a", 7, 1}, {"a", 2, 2}, {"a", 8, 3}};
  auto digits = [](const Ev& x, const Ev& y) { return Ev{x.key, 0, x.value * 10 + y.value}; };
  auto fired = Run(events, [&](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(SlidingEventTimeWindows::Of(absl::Milliseconds(10), absl::Milliseconds(5)))
        .WithoutSliceSharing()
        .Reduce(digits,
                [](const std::string& key, WindowContext<TimeWindow>& ctx, std::span<const Ev> r,
                   Collector<Fired>& out) { out.Collect(Result(key, ctx, {r[0].value})); });
  });
  // [0, 10) got 7, then 2, then 8; [5, 15) got 7 and 8; [-5, 5) got 2.
  EXPECT_THAT(fired, UnorderedElementsAre(F("a", -5, 5, {2}, kMax), F("a", 0, 10, {123}, kMax),
                                          F("a", 5, 15, {13}, kMax)));
}

// Flink calls AggregateFunction::merge only when windows merge (sessions): with
// WithoutSliceSharing(), an aggregate that does not support merging works with tumbling and
// sliding windows. (By default Sluice merges per-slice accumulators of sliding windows.)
class CountWithoutMerge final : public AggregateFunction<Ev, int64_t, int64_t> {
 public:
  int64_t CreateAccumulator() override { return 0; }
  void Add(const Ev&, int64_t& acc) override { ++acc; }
  int64_t GetResult(const int64_t& acc) override { return acc; }
  void Merge(const int64_t&, int64_t&) override {
    throw std::logic_error("merge is only needed by merging windows");
  }
};

TEST_P(WindowOperatorTest, AggregateWithoutMergeWorksWithoutSliceSharing) {
  std::vector<Ev> events = {{"a", 7, 1}, {"a", 2, 2}, {"a", 8, 3}};
  auto fired = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(SlidingEventTimeWindows::Of(absl::Milliseconds(10), absl::Milliseconds(5)))
        .WithoutSliceSharing()
        .Aggregate(CountWithoutMerge(), [](const std::string& key, WindowContext<TimeWindow>& ctx,
                                           std::span<const int64_t> r, Collector<Fired>& out) {
          out.Collect(Result(key, ctx, {r[0]}));
        });
  });
  EXPECT_THAT(fired, UnorderedElementsAre(F("a", -5, 5, {1}, kMax), F("a", 0, 10, {3}, kMax),
                                          F("a", 5, 15, {2}, kMax)));
}

// --- Sessions and late data ----------------------------------------------------------------------

// Gap 10 ms, allowed lateness 20 ms. A late record that bridges two fired (not yet cleaned up)
// sessions merges them, and the merged session fires at once with all their records; a late
// record that touches a live session joins it; one that reaches no live session and is beyond
// the lateness goes to the side output.
TEST_P(WindowOperatorTest, SessionMergingWithLateData) {
  std::vector<Ev> events = {{"a", 0, 1},
                            {"b", 5, 10},
                            WithMark({"a", 15, 2}, 26),
                            {"a", 7, 3},  // [7, 17) bridges [0, 10) and [15, 25)
                            WithMark({"a", 30, 4}, 45),
                            {"a", 20, 5},  // [20, 30) touches [30, 40)
                            {"a", 3, 6}};  // [3, 13): [0, 25) was cleaned up at 24 + 20
  StreamEnvironment env(Streaming(GetParam()));
  OutputTag<Ev> late("late");
  CollectSink<Fired> sink, sums;
  CollectSink<Ev> late_sink;
  auto windowed = EventSource(env, events)
                      .KeyBy(ByKey)
                      .Window(EventTimeSessionWindows::WithGap(absl::Milliseconds(10)))
                      .AllowedLateness(absl::Milliseconds(20))
                      .SideOutputLateData(late);
  auto sessions = windowed.Process<Fired>(ListValues{.sort = true});
  Stamped(sessions).SinkTo(sink);
  sessions.GetSideOutput(late).SinkTo(late_sink);
  Stamped(windowed.Aggregate(SumAndCount(), [](const std::string& key,
                                               WindowContext<TimeWindow>& ctx,
                                               std::span<const Ev> r, Collector<Fired>& out) {
    out.Collect(Result(key, ctx, {r[0].value, r[0].ts}));
  })).SinkTo(sums);
  absl::Status status = env.Execute("sessions-late");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(),
              UnorderedElementsAre(F("a", 0, 10, {1}, 26), F("a", 15, 25, {2}, 26),
                                   F("b", 5, 15, {10}, 26), F("a", 0, 25, {1, 2, 3}, 26),
                                   F("a", 30, 40, {4}, 45), F("a", 20, 40, {4, 5}, 45)));
  EXPECT_THAT(sums.values(),
              UnorderedElementsAre(F("a", 0, 10, {1, 1}, 26), F("a", 15, 25, {2, 1}, 26),
                                   F("b", 5, 15, {10, 1}, 26), F("a", 0, 25, {6, 3}, 26),
                                   F("a", 30, 40, {4, 1}, 45), F("a", 20, 40, {9, 2}, 45)));
  EXPECT_THAT(late_sink.values(), ElementsAre(Ev{"a", 3, 6}));
}

// --- Failures and misuse -------------------------------------------------------------------------

TEST(WindowFailureTest, UserFunctionExceptionsFailTheJobWithTheirMessage) {
  auto run = [](auto build) {
    StreamEnvironment env(Streaming(2));
    CollectSink<Fired> sink;
    build(EventSource(env, {{"a", 1, 1}, {"a", 2, 2}, {"b", 3, 3}}).KeyBy(ByKey)).SinkTo(sink);
    return env.Execute("throws");
  };
  auto tumbling = TumblingEventTimeWindows::Of(absl::Milliseconds(10));
  absl::Status process = run([&](auto keyed) {
    return keyed.Window(tumbling).template Process<Fired>(
        [](const std::string&, WindowContext<TimeWindow>&, std::span<const Ev>, Collector<Fired>&) {
          throw std::runtime_error("window function failed");
        });
  });
  EXPECT_EQ(process.code(), absl::StatusCode::kUnknown) << process;
  EXPECT_THAT(std::string(process.message()), HasSubstr("threw: window function failed"));
  EXPECT_THAT(std::string(process.message()), HasSubstr("Window"));

  absl::Status reduce = run([&](auto keyed) {
    return keyed.Window(tumbling)
        .Reduce([](const Ev&, const Ev&) -> Ev { throw std::runtime_error("reduce failed"); })
        .Map([](const Ev& e) { return Fired{e.key}; });
  });
  EXPECT_EQ(reduce.code(), absl::StatusCode::kUnknown) << reduce;
  EXPECT_THAT(std::string(reduce.message()), HasSubstr("threw: reduce failed"));

  absl::Status count = run([&](auto keyed) {
    return keyed.CountWindow(2)
        .Reduce([](const Ev& x, const Ev&) {
          if (x.key == "a") throw std::invalid_argument("count window reduce failed");
          return x;
        })
        .Map([](const Ev& e) { return Fired{e.key}; });
  });
  EXPECT_EQ(count.code(), absl::StatusCode::kUnknown) << count;
  EXPECT_THAT(std::string(count.message()), HasSubstr("threw: count window reduce failed"));
}

TEST(WindowFailureTest, RecordsWithoutTimestampsFailEventTimeWindows) {
  for (int variant : {0, 1, 2}) {
    SCOPED_TRACE(variant);
    StreamEnvironment env(Streaming(2));
    CollectSink<Fired> sink;
    auto keyed = env.FromCollection<Ev>({{"a", 1, 1}, {"b", 2, 2}}).KeyBy(ByKey);
    if (variant == 0) {
      keyed.Window(TumblingEventTimeWindows::Of(absl::Milliseconds(5)))
          .Process<Fired>(ListValues{})
          .SinkTo(sink);
    } else if (variant == 1) {
      keyed.Window(EventTimeSessionWindows::WithGap(absl::Milliseconds(5)))
          .Process<Fired>(ListValues{})
          .SinkTo(sink);
    } else {
      keyed.Window(SlidingEventTimeWindows::Of(absl::Milliseconds(10), absl::Milliseconds(5)))
          .Reduce([](const Ev& x, const Ev&) { return x; })
          .Map([](const Ev& e) { return Fired{e.key}; })
          .SinkTo(sink);
    }
    absl::Status status = env.Execute("no-timestamps");
    EXPECT_EQ(status.code(), absl::StatusCode::kUnknown) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("has no timestamp"));
    EXPECT_THAT(std::string(status.message()), HasSubstr("WatermarkStrategy"));
  }
  // Count windows need no timestamps.
  StreamEnvironment env(Streaming(2));
  CollectSink<Fired> sink;
  Stamped(env.FromCollection<Ev>({{"a", 1, 1}, {"a", 2, 2}})
              .KeyBy(ByKey)
              .CountWindow(2)
              .Process<Fired>(ListValues{}))
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("count-no-timestamps").ok());
  EXPECT_THAT(sink.values(), ElementsAre(G("a", {1, 2})));
}

TEST(WindowFailureTest, DynamicSessionGapMustBePositive) {
  StreamEnvironment env(Streaming(2));
  CollectSink<Fired> sink;
  EventSource(env, {{"a", 1, 5}, {"a", 2, 0}})
      .KeyBy(ByKey)
      .Window(EventTimeSessionWindows::WithDynamicGap(
          [](const Ev& e) { return absl::Milliseconds(e.value); }))
      .Process<Fired>(ListValues{})
      .SinkTo(sink);
  absl::Status status = env.Execute("bad-gap");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("session window gap must be > 0"));
}

// A trigger that cannot merge (CanMerge() is false by default).
class NonMergingTimeTrigger : public EarlyAndOnTime {};

using Keyed = decltype(std::declval<DataStream<Ev>>().KeyBy(ByKey));

TEST(WindowMisuseTest, ReportedByExecuteBeforeAnyRecordFlows) {
  struct Case {
    std::string name;
    std::function<void(Keyed, CollectSink<Fired>&)> build;
    std::string message;
  };
  auto tumbling = [](int64_t size_ms, int64_t offset_ms = 0) {
    return TumblingEventTimeWindows::Of(absl::Milliseconds(size_ms), absl::Milliseconds(offset_ms));
  };
  std::vector<Case> cases = {
      {"negative lateness",
       [&](auto k, auto& s) {
         k.Window(tumbling(10))
             .AllowedLateness(absl::Milliseconds(-1))
             .template Process<Fired>(ListValues{})
             .SinkTo(s);
       },
       "allowed lateness cannot be negative"},
      {"zero size",
       [&](auto k, auto& s) {
         k.Window(tumbling(0)).template Process<Fired>(ListValues{}).SinkTo(s);
       },
       "size and slide must be > 0"},
      {"1 h windows offset by -8 h",
       [&](auto k, auto& s) {
         k.Window(TumblingEventTimeWindows::Of(absl::Hours(1), absl::Hours(-8)))
             .template Process<Fired>(ListValues{})
             .SinkTo(s);
       },
       "abs(offset) < size"},
      {"sliding offset not below the slide (12 h / 1 h / -8 h)",
       [&](auto k, auto& s) {
         k.Window(
              SlidingProcessingTimeWindows::Of(absl::Hours(12), absl::Hours(1), absl::Hours(-8)))
             .template Process<Fired>(ListValues{})
             .SinkTo(s);
       },
       "abs(offset) < slide"},
      {"zero slide",
       [&](auto k, auto& s) {
         k.Window(SlidingEventTimeWindows::Of(absl::Seconds(1), absl::ZeroDuration()))
             .template Process<Fired>(ListValues{})
             .SinkTo(s);
       },
       "size and slide must be > 0"},
      {"zero session gap",
       [&](auto k, auto& s) {
         k.Window(EventTimeSessionWindows::WithGap(absl::ZeroDuration()))
             .template Process<Fired>(ListValues{})
             .SinkTo(s);
       },
       "gap must be > 0"},
      {"non-merging trigger with sessions",
       [&](auto k, auto& s) {
         k.Window(EventTimeSessionWindows::WithGap(absl::Seconds(1)))
             .Trigger(NonMergingTimeTrigger())
             .template Process<Fired>(ListValues{})
             .SinkTo(s);
       },
       "does not support merging"},
      {"count window of 0",
       [&](auto k, auto& s) { k.CountWindow(0).template Process<Fired>(ListValues{}).SinkTo(s); },
       "size must be > 0"},
      {"count window sliding by 0",
       [&](auto k, auto& s) {
         k.CountWindow(3, 0).template Process<Fired>(ListValues{}).SinkTo(s);
       },
       "size and slide must be > 0"},
      {"count window all of 0",
       [&](auto k, auto& s) {
         static_cast<const DataStream<Ev>&>(k)
             .CountWindowAll(0)
             .template Process<Fired>(ListAllValues{})
             .SinkTo(s);
       },
       "size must be > 0"},
      {"two phases with a process function",
       [&](auto k, auto& s) {
         k.Window(tumbling(10)).TwoPhase().template Process<Fired>(ListValues{}).SinkTo(s);
       },
       "TwoPhase() needs event-time tumbling or sliding windows"},
      {"two phases with sessions",
       [&](auto k, auto& s) {
         k.Window(EventTimeSessionWindows::WithGap(absl::Seconds(1)))
             .TwoPhase()
             .template Process<Fired>(ListValues{})
             .SinkTo(s);
       },
       "TwoPhase() needs event-time tumbling or sliding windows"},
      {"two phases without slice sharing",
       [&](auto k, auto& s) {
         k.Window(tumbling(10))
             .TwoPhase()
             .WithoutSliceSharing()
             .Reduce([](const Ev& a, const Ev&) { return a; })
             .Map([](const Ev&) { return Fired{}; })
             .SinkTo(s);
       },
       "TwoPhase() and WithoutSliceSharing() exclude each other"},
      {"late data tag without id",
       [&](auto k, auto& s) {
         k.Window(tumbling(10))
             .SideOutputLateData(OutputTag<Ev>(""))
             .template Process<Fired>(ListValues{})
             .SinkTo(s);
       },
       "non-empty id"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    StreamEnvironment env(Streaming(2));
    CollectSink<Fired> sink;
    auto made = std::make_shared<std::atomic<int64_t>>(0);
    auto source = env.FromSource(GeneratorSource(
                                     [made](int64_t i) {
                                       ++*made;
                                       return Ev{"k", i, i};
                                     },
                                     {.count = 100}),
                                 window_test::Punctuated<Ev>());
    c.build(source.KeyBy(ByKey), sink);
    absl::Status status = env.Execute("misuse");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message));
    EXPECT_EQ(made->load(), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Parallelism, WindowOperatorTest, ::testing::Values(1, 2, 4));

}  // namespace
}  // namespace sluice
