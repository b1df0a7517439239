// The examples of Flink's "Windows" documentation (and the 10-second-window example of the
// Flink/Kinesis deck), with the exact firings Flink's semantics give, at parallelism 1, 2 and 4.
#include <sluice/sluice.h>

#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/time.h"
#include "window/window_test_util.h"

namespace sluice {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;
using window_test::ByKey;
using window_test::Ev;
using window_test::EventSource;
using window_test::F;
using window_test::Fired;
using window_test::ListValues;
using window_test::OfKey;
using window_test::Stamped;
using window_test::Streaming;
using window_test::WithMark;

constexpr int64_t kSecond = 1000;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;

// A firing of a global window (GlobalWindow::max_timestamp() is +infinity).
Fired G(std::string key, std::vector<int64_t> values, Timestamp wm = kMinWatermark) {
  return {std::move(key), kMinWatermark, kMaxWatermark, std::move(values), wm, kMaxWatermark};
}

class FlinkExamplesTest : public ::testing::TestWithParam<int> {
 protected:
  template <typename Build>
  std::vector<Fired> Run(std::vector<Ev> events, Build build) {
    return window_test::RunFired(GetParam(), std::move(events), build);
  }
};

// "daily tumbling event-time windows offset by -8 hours": windows start at 00:00 of UTC+8
// (16:00 UTC of the day before).
TEST_P(FlinkExamplesTest, DailyTumblingWindowsOffsetByMinus8Hours) {
  const int64_t local_midnight = 16 * kHour;  // 1970-01-02 00:00 in UTC+8
  std::vector<Ev> events = {{"cn", 0, 1},
                            {"cn", local_midnight - 1, 2},
                            WithMark({"cn", local_midnight, 3}, local_midnight),
                            {"cn", local_midnight + 20 * kHour, 4},
                            {"cn", -8 * kHour - 1, 5}};  // 1969-12-31 23:59:59.999 in UTC+8
  auto fired = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(TumblingEventTimeWindows::Of(absl::Hours(24), absl::Hours(-8)))
        .Process<Fired>(ListValues{});
  });
  // {5} is for a window the watermark passed long ago: it is late and dropped.
  EXPECT_THAT(fired, UnorderedElementsAre(
                         F("cn", -8 * kHour, local_midnight, {1, 2}, local_midnight),
                         F("cn", local_midnight, local_midnight + kDay, {3, 4}, kMaxWatermark)));
}

// "sliding event-time windows": 10 s windows every 5 s; each record is in two windows.
TEST_P(FlinkExamplesTest, SlidingWindowsOfTenSecondsEveryFiveSeconds) {
  std::vector<Ev> events = {{"a", 1 * kSecond, 1},
                            {"a", 6 * kSecond, 2},
                            WithMark({"b", 7 * kSecond, 4}, 10 * kSecond - 1),
                            {"a", 12 * kSecond, 3}};
  auto fired = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(SlidingEventTimeWindows::Of(absl::Seconds(10), absl::Seconds(5)))
        .Process<Fired>(ListValues{});
  });
  EXPECT_THAT(fired, UnorderedElementsAre(
                         F("a", -5000, 5000, {1}, 9999), F("a", 0, 10000, {1, 2}, 9999),
                         F("b", 0, 10000, {4}, 9999), F("a", 5000, 15000, {2, 3}, kMaxWatermark),
                         F("b", 5000, 15000, {4}, kMaxWatermark),
                         F("a", 10000, 20000, {3}, kMaxWatermark)));
}

// Sliding windows with an offset: starts at 2 s + k * 5 s.
TEST_P(FlinkExamplesTest, SlidingWindowsWithOffset) {
  std::vector<Ev> events = {{"a", 6 * kSecond, 1}, {"a", 7 * kSecond, 2}, {"a", 1 * kSecond, 3}};
  auto fired = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(SlidingEventTimeWindows::Of(absl::Seconds(10), absl::Seconds(5), absl::Seconds(2)))
        .Process<Fired>(ListValues{});
  });
  EXPECT_THAT(fired, UnorderedElementsAre(F("a", -8000, 2000, {3}, kMaxWatermark),
                                          F("a", -3000, 7000, {1, 3}, kMaxWatermark),
                                          F("a", 2000, 12000, {1, 2}, kMaxWatermark),
                                          F("a", 7000, 17000, {2}, kMaxWatermark)));
}

// "event-time session windows with static gap": records of a key less than a gap apart (their
// [t, t + gap) windows overlap or touch) form one session.
TEST_P(FlinkExamplesTest, SessionWindowsWithStaticGap) {
  std::vector<Ev> events = {
      {"user1", 0, 0},           {"user2", 2 * kMinute, 2},
      {"user1", 5 * kMinute, 5}, {"user1", 14 * kMinute, 14},
      {"user1", 3 * kMinute, 3}, WithMark({"user1", 30 * kMinute, 30}, 25 * kMinute)};
  auto fired = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(EventTimeSessionWindows::WithGap(absl::Minutes(10)))
        .Process<Fired>(ListValues{.sort = true});
  });
  EXPECT_THAT(fired,
              UnorderedElementsAre(F("user1", 0, 24 * kMinute, {0, 3, 5, 14}, 25 * kMinute),
                                   F("user2", 2 * kMinute, 12 * kMinute, {2}, 25 * kMinute),
                                   F("user1", 30 * kMinute, 40 * kMinute, {30}, kMaxWatermark)));
}

// "event-time session windows with dynamic gap": the gap comes from each record (here: `value`
// seconds). A record whose window touches two sessions joins them.
TEST_P(FlinkExamplesTest, SessionWindowsWithDynamicGap) {
  std::vector<Ev> events = {{"a", 0, 5},              // [0 s, 5 s)
                            {"a", 4 * kSecond, 1},    // [4 s, 5 s), inside
                            {"a", 6 * kSecond, 10},   // [6 s, 16 s), a second session
                            {"b", 100 * kSecond, 2},  // [100 s, 102 s)
                            WithMark({"a", 5 * kSecond, 1}, 20 * kSecond)};  // [5 s, 6 s) joins
  auto fired = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(EventTimeSessionWindows::WithDynamicGap(
            [](const Ev& e) { return absl::Seconds(e.value); }))
        .Process<Fired>(ListValues{.sort = true});
  });
  EXPECT_THAT(fired,
              UnorderedElementsAre(F("a", 0, 16 * kSecond, {1, 1, 5, 10}, 20 * kSecond),
                                   F("b", 100 * kSecond, 102 * kSecond, {2}, kMaxWatermark)));
}

// "Global windows" fire only with a trigger: a CountTrigger (not purging) fires every 2 records of
// a key with everything the window holds so far.
TEST_P(FlinkExamplesTest, GlobalWindowsWithCountTrigger) {
  std::vector<Ev> events = {{"a", 1, 1},  {"b", 2, 10}, {"a", 3, 2}, {"a", 4, 3},
                            {"b", 5, 11}, {"a", 6, 4},  {"a", 7, 5}, {"b", 8, 12}};
  auto fired = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(GlobalWindows::Create())
        .Trigger(CountTrigger::Of(2))
        .Process<Fired>(ListValues{});
  });
  EXPECT_THAT(fired, UnorderedElementsAre(G("a", {1, 2}), G("a", {1, 2, 3, 4}), G("b", {10, 11})));
  EXPECT_THAT(OfKey(fired, "a"), ElementsAre(G("a", {1, 2}), G("a", {1, 2, 3, 4})));
}

// countWindow(3): GlobalWindows + PurgingTrigger(CountTrigger(3)). countWindow(3, 2):
// GlobalWindows + CountEvictor(3) + CountTrigger(2): every 2 records, the last 3.
TEST_P(FlinkExamplesTest, TumblingAndSlidingCountWindows) {
  std::vector<Ev> events;
  for (int64_t i = 1; i <= 7; ++i) {
    events.push_back({"a", i, i});
    if (i <= 2) events.push_back({"b", i, 10 + i});
  }
  auto tumbling = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey).CountWindow(3).Process<Fired>(ListValues{});
  });
  EXPECT_THAT(tumbling, UnorderedElementsAre(G("a", {1, 2, 3}), G("a", {4, 5, 6})));
  auto sliding = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey).CountWindow(3, 2).Process<Fired>(ListValues{});
  });
  EXPECT_THAT(sliding, UnorderedElementsAre(G("a", {1, 2}), G("a", {2, 3, 4}), G("a", {4, 5, 6}),
                                            G("b", {11, 12})));
  EXPECT_THAT(OfKey(sliding, "a"),
              ElementsAre(G("a", {1, 2}), G("a", {2, 3, 4}), G("a", {4, 5, 6})));
  // The same with an incremental function: the reduce runs over what the evictor left.
  auto sums = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .CountWindow(3, 2)
        .Reduce([](const Ev& x, const Ev& y) {
          return Ev{x.key, 0, x.value + y.value};
        })
        .Map([](const Ev& e) {
          return Fired{e.key, 0, 0, {e.value}};
        });
  });
  auto sum = [](std::string key, int64_t v) {
    return Fired{std::move(key), 0, 0, {v}, kMinWatermark, kMaxWatermark};
  };
  EXPECT_THAT(sums, UnorderedElementsAre(sum("a", 3), sum("a", 9), sum("a", 15), sum("b", 23)));
}

// "tumbling processing-time windows" of 5 s, driven by a ManualClock: a record goes into the
// window of the processing time at which the window operator takes it.
TEST_P(FlinkExamplesTest, TumblingProcessingTimeWindowsWithManualClock) {
  auto clock = std::make_shared<ManualClock>(1'000'000);
  StreamEnvironment env(Streaming(GetParam(), clock));
  window_test::PushSource<Ev> source;
  window_test::ObservedAssigner assigner(TumblingProcessingTimeWindows::Of(absl::Seconds(5)));
  CollectSink<Fired> sink;
  Stamped(env.FromSource(source).KeyBy(ByKey).Window(assigner).Process<Fired>(ListValues{}))
      .SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("processing-time");
  ASSERT_TRUE(job.ok()) << job.status();

  source.Push({{"a", 0, 1}, {"b", 0, 1}, {"a", 0, 2}});
  ASSERT_TRUE(window_test::WaitUntil([&] { return assigner.seen() == 3; }));
  clock->Set(1'006'000);  // past the end of [1'000'000, 1'005'000)
  ASSERT_TRUE(window_test::WaitUntil([&] { return sink.size() == 2; }));
  source.Push({{"a", 0, 3}, {"b", 0, 2}});
  ASSERT_TRUE(window_test::WaitUntil([&] { return assigner.seen() == 5; }));
  clock->Set(1'009'999);
  ASSERT_TRUE(window_test::WaitUntil([&] { return sink.size() == 4; }));
  job->Cancel();
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  // No watermarks in a processing-time job; records carry the window's max timestamp.
  EXPECT_THAT(sink.values(),
              UnorderedElementsAre(F("a", 1'000'000, 1'005'000, {1, 2}, kMinWatermark),
                                   F("b", 1'000'000, 1'005'000, {1}, kMinWatermark),
                                   F("a", 1'005'000, 1'010'000, {3}, kMinWatermark),
                                   F("b", 1'005'000, 1'010'000, {2}, kMinWatermark)));
}

// "processing-time session windows with static gap": the session of a record starts at the
// processing time the window operator takes it.
TEST_P(FlinkExamplesTest, ProcessingTimeSessionWindowsWithManualClock) {
  auto clock = std::make_shared<ManualClock>(0);
  StreamEnvironment env(Streaming(GetParam(), clock));
  window_test::PushSource<Ev> source;
  window_test::ObservedAssigner assigner(ProcessingTimeSessionWindows::WithGap(absl::Seconds(1)));
  CollectSink<Fired> sink;
  Stamped(
      env.FromSource(source).KeyBy(ByKey).Window(assigner).Process<Fired>(ListValues{.sort = true}))
      .SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("processing-time-sessions");
  ASSERT_TRUE(job.ok()) << job.status();

  source.Push({{"a", 0, 1}, {"b", 0, 7}});  // [0, 1000)
  ASSERT_TRUE(window_test::WaitUntil([&] { return assigner.seen() == 2; }));
  clock->Set(500);
  source.Push({{"a", 0, 2}});  // [500, 1500): the session of a grows to [0, 1500)
  ASSERT_TRUE(window_test::WaitUntil([&] { return assigner.seen() == 3; }));
  clock->Set(1200);  // b's session [0, 1000) ends
  ASSERT_TRUE(window_test::WaitUntil([&] { return sink.size() == 1; }));
  clock->Set(1499);  // a's ends
  ASSERT_TRUE(window_test::WaitUntil([&] { return sink.size() == 2; }));
  clock->Set(2000);
  source.Push({{"a", 0, 3}});  // [2000, 3000)
  ASSERT_TRUE(window_test::WaitUntil([&] { return assigner.seen() == 4; }));
  clock->Set(3000);
  ASSERT_TRUE(window_test::WaitUntil([&] { return sink.size() == 3; }));
  job->Cancel();
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(sink.values(), ElementsAre(F("b", 0, 1000, {7}, kMinWatermark),
                                         F("a", 0, 1500, {1, 2}, kMinWatermark),
                                         F("a", 2000, 3000, {3}, kMinWatermark)));
}

// The deck's "Count Events in 10 Seconds Windows" (slides 80-82): events of seconds
// 3 1 11 7 8 | w9 | 15 12 13 10 4 | w15 | 18 | w5 | 21 | w21 | 13 25 27 in arrival order, where "wN"
// says every event up to second N has arrived (watermark N.999 s; w5 goes back and is ignored).
// [0, 10 s) fires at w9 (R1), [10 s, 20 s) at w21, [20 s, 30 s) at the end. Events 4 and 13 come
// after their window fired: without allowed lateness they are late (side output); with enough
// allowed lateness they are added and their window fires again at once with the updated count
// (R2).
std::vector<Ev> DeckEvents() {
  auto ev = [](int64_t second, Timestamp wm = window_test::kNoMark) {
    return WithMark({"deck", second * kSecond, second}, wm);
  };
  auto w = [](int64_t second) { return second * kSecond + 999; };
  return {ev(3),  ev(1),        ev(11),       ev(7),         ev(8, w(9)), ev(15), ev(12), ev(13),
          ev(10), ev(4, w(15)), ev(18, w(5)), ev(21, w(21)), ev(13),      ev(25), ev(27)};
}

TEST_P(FlinkExamplesTest, DeckTenSecondWindowsLateEventsGoToTheSideOutput) {
  StreamEnvironment env(Streaming(GetParam()));
  OutputTag<Ev> late("late-events");
  CollectSink<Fired> sink;
  CollectSink<Ev> late_sink;
  auto counts = env.FromSource(CollectionSource<Ev>(DeckEvents()), window_test::Punctuated<Ev>())
                    .KeyBy(ByKey)
                    .Window(TumblingEventTimeWindows::Of(absl::Seconds(10)))
                    .SideOutputLateData(late)
                    .Process<Fired>(ListValues{});
  Stamped(counts).SinkTo(sink);
  // Late records go out as they came in, with their own timestamp.
  counts.GetSideOutput(late)
      .Process([](const Ev& e, ProcessContext& ctx, Collector<Ev>& out) {
        out.Collect(Ev{e.key, ctx.timestamp(), e.value});
      })
      .SinkTo(late_sink);
  absl::Status status = env.Execute("deck");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(), ElementsAre(F("deck", 0, 10000, {3, 1, 7, 8}, 9999),
                                         F("deck", 10000, 20000, {11, 15, 12, 13, 10, 18}, 21999),
                                         F("deck", 20000, 30000, {21, 25, 27}, kMaxWatermark)));
  EXPECT_THAT(late_sink.values(), ElementsAre(Ev{"deck", 4000, 4}, Ev{"deck", 13000, 13}));
}

TEST_P(FlinkExamplesTest, DeckTenSecondWindowsWithAllowedLatenessFireAgain) {
  StreamEnvironment env(Streaming(GetParam()));
  OutputTag<Ev> late("late-events");
  CollectSink<Fired> sink;
  CollectSink<Ev> late_sink;
  auto counts = env.FromSource(CollectionSource<Ev>(DeckEvents()), window_test::Punctuated<Ev>())
                    .KeyBy(ByKey)
                    .Window(TumblingEventTimeWindows::Of(absl::Seconds(10)))
                    .AllowedLateness(absl::Seconds(5))
                    .SideOutputLateData(late)
                    .Process<Fired>(ListValues{});
  Stamped(counts).SinkTo(sink);
  counts.GetSideOutput(late).SinkTo(late_sink);
  absl::Status status = env.Execute("deck-lateness");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(),
              ElementsAre(F("deck", 0, 10000, {3, 1, 7, 8}, 9999),     // R1
                          F("deck", 0, 10000, {3, 1, 7, 8, 4}, 9999),  // R2: 4 is added
                          F("deck", 10000, 20000, {11, 15, 12, 13, 10, 18}, 21999),      // R1
                          F("deck", 10000, 20000, {11, 15, 12, 13, 10, 18, 13}, 21999),  // R2
                          F("deck", 20000, 30000, {21, 25, 27}, kMaxWatermark)));
  EXPECT_THAT(late_sink.values(), ElementsAre());
}

TEST_P(FlinkExamplesTest, DeckLateEventsWithoutSideOutputAreCountedAsDropped) {
  for (int64_t lateness_s : {0, 5}) {
    StreamEnvironment env(Streaming(GetParam()));
    CollectSink<Fired> sink;
    env.FromSource(CollectionSource<Ev>(DeckEvents()), window_test::Punctuated<Ev>())
        .KeyBy(ByKey)
        .Window(TumblingEventTimeWindows::Of(absl::Seconds(10)))
        .AllowedLateness(absl::Seconds(lateness_s))
        .Process<Fired>(ListValues{})
        .SinkTo(sink);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("deck-dropped");
    ASSERT_TRUE(job.ok()) << job.status();
    ASSERT_TRUE(job->Wait().ok());
    EXPECT_EQ(job->Counters()["Window.numLateRecordsDropped"], lateness_s == 0 ? 2 : 0)
        << "lateness " << lateness_s << " s";
    EXPECT_EQ(sink.size(), lateness_s == 0 ? 3u : 5u);
  }
}

// Docs, "ReduceFunction": sums the second field of the records of a key and window.
TEST_P(FlinkExamplesTest, ReduceFunctionSumsPerWindow) {
  std::vector<Ev> events = {
      {"a", 1000, 1}, {"b", 2000, 10}, {"a", 3000, 2}, {"a", 6000, 4}, {"b", 9000, 20}};
  auto fired = Run(events, [](DataStream<Ev> in) {
    return in.KeyBy(ByKey)
        .Window(TumblingEventTimeWindows::Of(absl::Seconds(5)))
        .Reduce([](const Ev& v1, const Ev& v2) {
          return Ev{v1.key, 0, v1.value + v2.value};
        })
        .Map([](const Ev& e) {
          return Fired{e.key, 0, 0, {e.value}};
        });
  });
  auto sum = [](std::string key, int64_t v, Timestamp ts) {
    return Fired{std::move(key), 0, 0, {v}, kMinWatermark, ts};
  };
  EXPECT_THAT(fired, UnorderedElementsAre(sum("a", 3, 4999), sum("b", 10, 4999), sum("a", 4, 9999),
                                          sum("b", 20, 9999)));
}

// Docs, "AggregateFunction": the average of the second field.
class AverageAggregate final : public AggregateFunction<Ev, std::pair<int64_t, int64_t>, double> {
 public:
  std::pair<int64_t, int64_t> CreateAccumulator() override { return {0, 0}; }
  void Add(const Ev& value, std::pair<int64_t, int64_t>& acc) override {
    acc.first += value.value;
    acc.second += 1;
  }
  double GetResult(const std::pair<int64_t, int64_t>& acc) override {
    return static_cast<double>(acc.first) / static_cast<double>(acc.second);
  }
  void Merge(const std::pair<int64_t, int64_t>& from, std::pair<int64_t, int64_t>& into) override {
    into.first += from.first;
    into.second += from.second;
  }
};

std::vector<Ev> AverageEvents() {
  return {{"a", 1000, 1}, {"b", 2000, 10}, {"a", 3000, 2},
          {"a", 6000, 4}, {"b", 9000, 20}, {"a", 4000, 6}};
}

TEST_P(FlinkExamplesTest, AggregateFunctionAverages) {
  StreamEnvironment env(Streaming(GetParam()));
  CollectSink<double> sink;
  EventSource(env, AverageEvents())
      .KeyBy(ByKey)
      .Window(TumblingEventTimeWindows::Of(absl::Seconds(5)))
      .Aggregate(AverageAggregate())
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("average").ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(3.0, 10.0, 4.0, 20.0));
}

// Docs, "ProcessWindowFunction": counts the records of a window and names the window.
class CountWithWindow final
    : public ProcessWindowFunction<Ev, std::string, std::string, TimeWindow> {
 public:
  void Process(const std::string& key, Context& ctx, std::span<const Ev> elements,
               Collector<std::string>& out) override {
    std::ostringstream s;
    s << key << " Window: " << ctx.window() << " count: " << elements.size();
    out.Collect(s.str());
  }
};

TEST_P(FlinkExamplesTest, ProcessWindowFunctionCountsWithTheWindow) {
  StreamEnvironment env(Streaming(GetParam()));
  CollectSink<std::string> sink;
  EventSource(env, AverageEvents())
      .KeyBy(ByKey)
      .Window(TumblingEventTimeWindows::Of(absl::Seconds(5)))
      .Process(CountWithWindow())
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("count").ok());
  EXPECT_THAT(sink.values(),
              UnorderedElementsAre("a Window: TimeWindow{start=0, end=5000} count: 3",
                                   "b Window: TimeWindow{start=0, end=5000} count: 1",
                                   "a Window: TimeWindow{start=5000, end=10000} count: 1",
                                   "b Window: TimeWindow{start=5000, end=10000} count: 1"));
}

// Docs, "ProcessWindowFunction with Incremental Aggregation": the smallest reading and the start
// of its window (ReduceFunction), and the average with the key (AggregateFunction).
TEST_P(FlinkExamplesTest, IncrementalAggregationWithProcessWindowFunction) {
  using StartAndMin = std::pair<Timestamp, int64_t>;
  using KeyAndAverage = std::pair<std::string, double>;
  StreamEnvironment env(Streaming(GetParam()));
  CollectSink<StartAndMin> mins;
  CollectSink<KeyAndAverage> averages;
  auto windowed = EventSource(env, AverageEvents())
                      .KeyBy(ByKey)
                      .Window(TumblingEventTimeWindows::Of(absl::Seconds(5)));
  windowed
      .Reduce([](const Ev& r1, const Ev& r2) { return r1.value > r2.value ? r2 : r1; },
              [](const std::string&, WindowContext<TimeWindow>& ctx, std::span<const Ev> min,
                 Collector<StartAndMin>& out) {
                EXPECT_EQ(min.size(), 1u);
                out.Collect(StartAndMin(ctx.window().start, min[0].value));
              })
      .SinkTo(mins);
  windowed
      .Aggregate(AverageAggregate(),
                 [](const std::string& key, WindowContext<TimeWindow>&,
                    std::span<const double> average, Collector<KeyAndAverage>& out) {
                   EXPECT_EQ(average.size(), 1u);
                   out.Collect(KeyAndAverage(key, average[0]));
                 })
      .SinkTo(averages);
  ASSERT_TRUE(env.Execute("incremental").ok());
  EXPECT_THAT(mins.values(), UnorderedElementsAre(StartAndMin(0, 1), StartAndMin(0, 10),
                                                  StartAndMin(5000, 4), StartAndMin(5000, 20)));
  EXPECT_THAT(averages.values(),
              UnorderedElementsAre(KeyAndAverage("a", 3.0), KeyAndAverage("b", 10.0),
                                   KeyAndAverage("a", 4.0), KeyAndAverage("b", 20.0)));
}

// Docs, "Consecutive windowed operations": the results of window [0, 5) of the first operation
// carry timestamp 4999 and so fall into window [0, 5) of the next one.
TEST_P(FlinkExamplesTest, ConsecutiveWindowedOperations) {
  std::vector<Ev> events = {{"a", 1000, 1}, {"b", 2000, 10}, {"c", 4999, 7},
                            {"a", 5000, 4}, {"b", 9000, 20}, {"c", 12000, 3}};
  StreamEnvironment env(Streaming(GetParam()));
  CollectSink<Fired> sink;
  auto per_key = EventSource(env, events)
                     .KeyBy(ByKey)
                     .Window(TumblingEventTimeWindows::Of(absl::Seconds(5)))
                     .Reduce([](const Ev& x, const Ev& y) {
                       return Ev{x.key, 0, x.value + y.value};
                     });
  Stamped(per_key.WindowAll(TumblingEventTimeWindows::Of(absl::Seconds(5)))
              .Process<Fired>([](WindowContext<TimeWindow>& ctx, std::span<const Ev> results,
                                 Collector<Fired>& out) {
                Fired top{"top", ctx.window().start, ctx.window().end, {}, ctx.CurrentWatermark()};
                for (const Ev& r : results) top.values.push_back(r.value);
                std::sort(top.values.rbegin(), top.values.rend());
                out.Collect(top);
              }))
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("consecutive").ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(F("top", 0, 5000, {10, 7, 1}, kMaxWatermark),
                                                  F("top", 5000, 10000, {20, 4}, kMaxWatermark),
                                                  F("top", 10000, 15000, {3}, kMaxWatermark)));
}

INSTANTIATE_TEST_SUITE_P(Parallelism, FlinkExamplesTest, ::testing::Values(1, 2, 4));

}  // namespace
}  // namespace sluice
