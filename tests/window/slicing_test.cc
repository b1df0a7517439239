// Sliding and tumbling windows with Reduce/Aggregate run on shared slices
// (internal::SlicingWindowOperator), event-time session windows with Reduce/Aggregate on per-key
// session vectors (internal::SessionWindowOperator, HashMap backend); the same windows with a
// Process function keep every element per window (internal::WindowOperator). They must give
// exactly the same firings, re-firings, late records and dropped counts, on random inputs with
// lateness.
#include <sluice/sluice.h>

#include <cstdint>
#include <iostream>
#include <map>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "window/window_test_util.h"

namespace sluice {
namespace {

using ::testing::UnorderedElementsAreArray;

struct Event {
  int64_t key = 0;
  Timestamp time = 0;
  int64_t value = 0;
  int64_t count = 1;
  Timestamp watermark_after = kMinWatermark;  // a punctuated watermark after this event
};

// Emits the watermark an event carries, right after it.
class Punctuated final : public WatermarkGenerator<Event> {
 public:
  void OnEvent(const Event& e, Timestamp, WatermarkOutput& out) override {
    if (e.watermark_after != kMinWatermark) out.EmitWatermark(e.watermark_after);
  }
  void OnPeriodicEmit(WatermarkOutput&) override {}
};

// (key, window start, window end, sum, count, output timestamp)
using Firing = std::tuple<int64_t, Timestamp, Timestamp, int64_t, int64_t, Timestamp>;

class SumAggregate final : public AggregateFunction<Event, std::pair<int64_t, int64_t>, Event> {
 public:
  std::pair<int64_t, int64_t> CreateAccumulator() override { return {0, 0}; }
  void Add(const Event& e, std::pair<int64_t, int64_t>& acc) override {
    acc.first += e.value;
    acc.second += e.count;
  }
  Event GetResult(const std::pair<int64_t, int64_t>& acc) override {
    return Event{0, 0, acc.first, acc.second};
  }
  void Merge(const std::pair<int64_t, int64_t>& from, std::pair<int64_t, int64_t>& into) override {
    into.first += from.first;
    into.second += from.second;
  }
};

struct Spec {
  int64_t size, slide, offset, lateness;
};

std::vector<Event> RandomEvents(uint32_t seed, int n) {
  std::mt19937 rng(seed);
  std::vector<Event> events;
  Timestamp max_time = 0;
  for (int i = 0; i < n; ++i) {
    Event e;
    e.key = std::uniform_int_distribution<int64_t>(0, 4)(rng);
    // Mostly increasing time with disorder up to 3 s; one in ten up to 15 s behind.
    Timestamp base = static_cast<Timestamp>(i) * 150;
    int64_t disorder = std::uniform_int_distribution<int>(0, 9)(rng) == 0
                           ? std::uniform_int_distribution<int64_t>(0, 15000)(rng)
                           : std::uniform_int_distribution<int64_t>(0, 3000)(rng);
    e.time = std::max<Timestamp>(0, base - disorder);
    e.value = std::uniform_int_distribution<int64_t>(1, 100)(rng);
    max_time = std::max(max_time, e.time);
    if (std::uniform_int_distribution<int>(0, 4)(rng) == 0) e.watermark_after = max_time - 2000;
    events.push_back(e);
  }
  return events;
}

// `events` as a stream with their times and the watermarks they carry.
DataStream<Event> Punctuate(StreamEnvironment& env, const std::vector<Event>& events) {
  return env.FromSource(CollectionSource<Event>(events),
                        WatermarkStrategy<Event>::ForGenerator([] {
                          return std::make_unique<Punctuated>();
                        }).WithTimestampAssigner([](const Event& e) { return e.time; }));
}

struct Result {
  std::vector<Firing> firings;
  std::vector<Event> late;
  int64_t dropped = 0;
};

enum class Function { kReduceProcess, kAggregateProcess, kProcess };

template <typename Assigner>
Result RunWindows(const std::vector<Event>& events, Assigner assigner, int64_t lateness,
                  Function fn, int parallelism, bool two_phase = false) {
  StreamEnvironment env(window_test::WithTestBackend(
      {.parallelism = parallelism, .execution_mode = ExecutionMode::kStreaming}));
  CollectSink<Firing> firings;
  CollectSink<Event> late_sink;
  OutputTag<Event> late("late");
  auto windowed = Punctuate(env, events)
                      .KeyBy([](const Event& e) { return e.key; })
                      .Window(assigner)
                      .AllowedLateness(absl::Milliseconds(lateness))
                      .SideOutputLateData(late);
  if (two_phase) windowed = windowed.TwoPhase();
  auto emit = [](const int64_t& key, WindowContext<TimeWindow>& ctx, std::span<const Event> in,
                 Collector<Firing>& out) {
    int64_t sum = 0, count = 0;
    for (const Event& e : in) {
      sum += e.value;
      count += e.count;
    }
    out.Collect(Firing(key, ctx.window().start, ctx.window().end, sum, count, 0));
  };
  DataStream<Firing> out = [&] {
    switch (fn) {
      case Function::kReduceProcess:
        return windowed.Reduce(
            [](const Event& a, const Event& b) {
              return Event{a.key, a.time, a.value + b.value, a.count + b.count};
            },
            emit);
      case Function::kAggregateProcess:
        return windowed.Aggregate(SumAggregate(), emit);
      case Function::kProcess:
      default:
        return windowed.Process(emit);
    }
  }();
  // Record each firing's output timestamp.
  out.Process([](const Firing& f, ProcessContext& ctx, Collector<Firing>& o) {
       Firing g = f;
       std::get<5>(g) = ctx.timestamp();
       o.Collect(g);
     })
      .SinkTo(firings);
  out.GetSideOutput(late).SinkTo(late_sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("slicing");
  EXPECT_TRUE(job.ok()) << job.status();
  absl::Status status = job->Wait();
  EXPECT_TRUE(status.ok()) << status;
  Result r{firings.values(), late_sink.values(), 0};
  auto counters = job->Counters();
  if (auto it = counters.find("Window.numLateRecordsDropped"); it != counters.end()) {
    r.dropped = it->second;
  }
  return r;
}

std::vector<std::tuple<int64_t, Timestamp, int64_t>> LateKeys(const std::vector<Event>& late) {
  std::vector<std::tuple<int64_t, Timestamp, int64_t>> v;
  for (const Event& e : late) v.emplace_back(e.key, e.time, e.value);
  return v;
}

class SlicingTest : public ::testing::TestWithParam<int> {};

// Shared slices, and two phases (TwoPhase: partials per slice before the exchange, merged after
// it), give the firings, re-firings and late records of per-window contents. In two phases the
// local phase runs at the source's parallelism (1), so its watermarks and late records are the
// reference's; the global phase runs at the test's parallelism.
TEST_P(SlicingTest, SharedSlicesAndTwoPhaseEqualPerWindowContentsOnRandomInput) {
  const std::vector<Spec> specs = {{10000, 10000, 0, 0},
                                   {10000, 10000, 3000, 4000},
                                   {10000, 5000, 0, 0},
                                   {10000, 3000, 1000, 2500},
                                   {6000, 4000, -1000, 7000},
                                   {4000, 1000, 0, 20000},
                                   // Hopping windows (slide > size): records in the gaps.
                                   {3000, 7000, 500, 2000}};
  size_t late_records = 0, refirings = 0, firings = 0;
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    std::vector<Event> events = RandomEvents(seed, 600);
    for (const Spec& spec : specs) {
      SCOPED_TRACE(testing::Message()
                   << "seed " << seed << " size " << spec.size << " slide " << spec.slide
                   << " offset " << spec.offset << " lateness " << spec.lateness);
      auto assigner =
          SlidingEventTimeWindows::Of(absl::Milliseconds(spec.size), absl::Milliseconds(spec.slide),
                                      absl::Milliseconds(spec.offset));
      Result reference = RunWindows(events, assigner, spec.lateness, Function::kProcess, 1);
      ASSERT_FALSE(reference.firings.empty());
      late_records += reference.late.size();
      firings += reference.firings.size();
      std::map<std::tuple<int64_t, Timestamp>, int> per_window;
      for (const Firing& f : reference.firings) {
        if (++per_window[{std::get<0>(f), std::get<1>(f)}] > 1) ++refirings;
      }
      for (Function fn : {Function::kReduceProcess, Function::kAggregateProcess}) {
        for (bool two_phase : {false, true}) {
          SCOPED_TRACE(two_phase ? "two phases" : "one phase");
          Result sliced = RunWindows(events, assigner, spec.lateness, fn, GetParam(), two_phase);
          EXPECT_THAT(sliced.firings, UnorderedElementsAreArray(reference.firings));
          EXPECT_THAT(LateKeys(sliced.late), UnorderedElementsAreArray(LateKeys(reference.late)));
          EXPECT_EQ(sliced.dropped, 0);  // every late record went to the side output
        }
      }
      // Every output timestamp is the window's max timestamp.
      for (const Firing& f : reference.firings) EXPECT_EQ(std::get<5>(f), std::get<2>(f) - 1);
      if (spec.slide == spec.size) {
        // Tumbling windows through their own assigner take the same path.
        auto tumbling = TumblingEventTimeWindows::Of(absl::Milliseconds(spec.size),
                                                     absl::Milliseconds(spec.offset));
        Result t =
            RunWindows(events, tumbling, spec.lateness, Function::kReduceProcess, GetParam());
        EXPECT_THAT(t.firings, UnorderedElementsAreArray(reference.firings));
      }
    }
  }
  // The inputs exercise every path: late records, re-firings within the lateness.
  EXPECT_GT(late_records, 50u);
  EXPECT_GT(refirings, 50u);
  std::cout << firings << " firings, " << refirings << " re-firings, " << late_records
            << " late records\n";
}

TEST_P(SlicingTest, SessionOperatorEqualsTheGeneralWindowOperatorOnRandomInput) {
  // (gap, lateness): sessions that break often and ones that span most of the input; merges of
  // two or more sessions come from records up to 15 s out of order.
  const std::vector<std::pair<int64_t, int64_t>> specs = {
      {300, 0}, {300, 5000}, {1000, 0}, {1000, 2500}, {4000, 20000}};
  size_t late_records = 0, refirings = 0, firings = 0, bridged = 0;
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    std::vector<Event> events = RandomEvents(seed, 600);
    for (const auto& [gap, lateness] : specs) {
      SCOPED_TRACE(testing::Message()
                   << "seed " << seed << " gap " << gap << " lateness " << lateness);
      auto assigner = EventTimeSessionWindows::WithGap(absl::Milliseconds(gap));
      Result reference = RunWindows(events, assigner, lateness, Function::kProcess, 1);
      ASSERT_FALSE(reference.firings.empty());
      late_records += reference.late.size();
      firings += reference.firings.size();
      std::map<std::tuple<int64_t, Timestamp>, int> per_window;
      std::map<int64_t, std::vector<std::pair<Timestamp, Timestamp>>> fired;  // per key
      for (const Firing& f : reference.firings) {
        if (++per_window[{std::get<0>(f), std::get<1>(f)}] > 1) ++refirings;
        auto& windows = fired[std::get<0>(f)];
        // A firing that covers two windows fired before: sessions bridged by a late record.
        int covered = 0;
        for (const auto& [start, end] : windows) {
          if (start >= std::get<1>(f) && end <= std::get<2>(f)) ++covered;
        }
        if (covered >= 2) ++bridged;
        windows.emplace_back(std::get<1>(f), std::get<2>(f));
      }
      for (Function fn : {Function::kReduceProcess, Function::kAggregateProcess}) {
        Result sessions = RunWindows(events, assigner, lateness, fn, GetParam());
        EXPECT_THAT(sessions.firings, UnorderedElementsAreArray(reference.firings));
        EXPECT_THAT(LateKeys(sessions.late), UnorderedElementsAreArray(LateKeys(reference.late)));
        EXPECT_EQ(sessions.dropped, 0);
      }
      for (const Firing& f : reference.firings) EXPECT_EQ(std::get<5>(f), std::get<2>(f) - 1);
    }
  }
  EXPECT_GT(late_records, 50u);
  EXPECT_GT(refirings, 50u);
  EXPECT_GT(bridged, 5u);
  std::cout << firings << " session firings, " << refirings << " re-firings, " << bridged
            << " bridging re-firings, " << late_records << " late records\n";
}

// WindowAll in two phases over three input subtasks: each folds its share of every window into
// one partial (numPartials: exactly one per subtask and window), the one global subtask merges
// them into the exact sums.
TEST_P(SlicingTest, TwoPhaseWindowAllMergesOnePartialPerSubtaskAndWindow) {
  std::vector<Event> events;
  std::map<Timestamp, std::pair<int64_t, int64_t>> expected;  // window start → (sum, count)
  for (int64_t i = 0; i < 2700; ++i) {
    Event e{i % 5, i * 37, i % 101 + 1};
    if (i % 10 == 9) e.watermark_after = e.time;  // no record is ever late
    events.push_back(e);
    auto& [sum, count] = expected[e.time / 1000 * 1000];
    sum += e.value;
    ++count;
  }
  StreamEnvironment env(window_test::WithTestBackend(
      {.parallelism = GetParam(), .execution_mode = ExecutionMode::kStreaming}));
  CollectSink<Firing> sink;
  Punctuate(env, events)
      .Rebalance()
      .Map([](const Event& e) { return e; })
      .SetParallelism(3)
      .WindowAll(TumblingEventTimeWindows::Of(absl::Seconds(1)))
      .TwoPhase()
      .Aggregate(
          SumAggregate(),
          [](WindowContext<TimeWindow>& ctx, std::span<const Event> in, Collector<Firing>& out) {
            out.Collect(
                Firing(0, ctx.window().start, ctx.window().end, in[0].value, in[0].count, 0));
          })
      .SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("two-phase all");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(job->Wait().ok());
  std::vector<Firing> want;
  for (const auto& [start, sc] : expected) {
    want.push_back(Firing(0, start, start + 1000, sc.first, sc.second, 0));
  }
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(want));
  // 27 consecutive records per window, dealt round-robin: every subtask has some of each.
  EXPECT_EQ(job->Counters()["Local All Window.numPartials"],
            3 * static_cast<int64_t>(expected.size()));
}

// WindowAll sessions run in the session operator too (one subtask, one key).
TEST_P(SlicingTest, AllWindowSessionsMergeAndFire) {
  std::vector<Event> events = {{7, 0, 1}, {8, 5, 2}, {9, 30, 4}, {7, 14, 8, 1, 45}, {8, 50, 16}};
  StreamEnvironment env(window_test::WithTestBackend(
      {.parallelism = GetParam(), .execution_mode = ExecutionMode::kStreaming}));
  CollectSink<Firing> sink;
  Punctuate(env, events)
      .WindowAll(EventTimeSessionWindows::WithGap(absl::Milliseconds(10)))
      .Reduce(
          [](const Event& a, const Event& b) {
            return Event{a.key, a.time, a.value + b.value, a.count + b.count};
          },
          [](WindowContext<TimeWindow>& ctx, std::span<const Event> in, Collector<Firing>& out) {
            out.Collect(
                Firing(0, ctx.window().start, ctx.window().end, in[0].value, in[0].count, 0));
          })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("all sessions").ok());
  // [0,15) and [14,24) merge into [0,24) before the watermark 45 fires it and [30,40) (with
  // several source subtasks the watermark waits for the others to end).
  EXPECT_THAT(sink.values(), ::testing::UnorderedElementsAre(Firing(0, 0, 24, 11, 3, 0),
                                                             Firing(0, 30, 40, 4, 1, 0),
                                                             Firing(0, 50, 60, 16, 1, 0)));
}

TEST_P(SlicingTest, LateRecordsAreCountedWhenNoSideOutputIsSet) {
  std::vector<Event> events = {{1, 1000, 5, 1, 20000}, {1, 2000, 7}, {1, 25000, 1}};
  StreamEnvironment env(window_test::WithTestBackend(
      {.parallelism = GetParam(), .execution_mode = ExecutionMode::kStreaming}));
  CollectSink<Event> sink;
  Punctuate(env, events)
      .KeyBy([](const Event& e) { return e.key; })
      .Window(SlidingEventTimeWindows::Of(absl::Seconds(10), absl::Seconds(5)))
      .Reduce([](const Event& a, const Event& b) {
        return Event{a.key, a.time, a.value + b.value, a.count + b.count};
      })
      .SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("dropped");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(job->Wait().ok());
  // Windows [-5000, 5000) and [0, 10000) hold the first event and fire at watermark 20000; the
  // second is late for both and dropped; the third fills [20000, 30000) and [25000, 35000).
  std::vector<std::pair<int64_t, int64_t>> got;
  for (const Event& e : sink.values()) got.emplace_back(e.value, e.count);
  EXPECT_THAT(got, UnorderedElementsAreArray(
                       std::vector<std::pair<int64_t, int64_t>>{{5, 1}, {5, 1}, {1, 1}, {1, 1}}));
  EXPECT_EQ(job->Counters()["Window.numLateRecordsDropped"], 1);
}

// Hopping windows (size 5, slide 10): a record at 6 belongs to no window. Once the watermark is 8
// it is late (Flink: to the late-data side output, or counted as dropped); before, it is dropped
// without a count, as Flink's WindowOperator does. One phase and two phases alike.
TEST_P(SlicingTest, RecordsInTheGapOfHoppingWindowsAreLateOnceTheWatermarkPassedThem) {
  // (key, time, value, count, watermark after)
  std::vector<Event> events = {{1, 2, 1},     {1, 7, 100, 1, 8}, {1, 6, 10, 1, 9},
                               {1, 12, 1000}, {1, 5, 10000},     {1, 3, 100000, 1, 30}};
  for (bool two_phase : {false, true}) {
    for (bool side_output : {true, false}) {
      SCOPED_TRACE(testing::Message() << (two_phase ? "two phases" : "one phase")
                                      << (side_output ? ", side output" : ", no side output"));
      StreamEnvironment env(window_test::WithTestBackend(
          {.parallelism = GetParam(), .execution_mode = ExecutionMode::kStreaming}));
      CollectSink<Event> sink, late_sink;
      OutputTag<Event> late("late");
      auto windowed =
          Punctuate(env, events)
              .KeyBy([](const Event& e) { return e.key; })
              .Window(SlidingEventTimeWindows::Of(absl::Milliseconds(5), absl::Milliseconds(10)));
      if (side_output) windowed = windowed.SideOutputLateData(late);
      if (two_phase) windowed = windowed.TwoPhase();
      auto sums = windowed.Reduce([](const Event& a, const Event& b) {
        return Event{a.key, a.time, a.value + b.value, a.count + b.count};
      });
      sums.SinkTo(sink);
      sums.GetSideOutput(late).SinkTo(late_sink);
      absl::StatusOr<JobHandle> job = env.ExecuteAsync("hopping");
      ASSERT_TRUE(job.ok()) << job.status();
      ASSERT_TRUE(job->Wait().ok());
      // [0,5) holds 2 (fired at watermark 8) and [10,15) holds 12. 7 came before the watermark
      // passed it: dropped, not late. 6 (watermark 8), 5 and 3 (watermark 9) are late.
      std::vector<std::pair<int64_t, int64_t>> got;
      for (const Event& e : sink.values()) got.emplace_back(e.value, e.count);
      EXPECT_THAT(got, UnorderedElementsAreArray(
                           std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1000, 1}}));
      std::vector<int64_t> late_times;
      for (const Event& e : late_sink.values()) late_times.push_back(e.time);
      auto counters = job->Counters();
      int64_t dropped = 0;
      if (auto it = counters.find("Window.numLateRecordsDropped"); it != counters.end()) {
        dropped = it->second;
      }
      if (side_output) {
        EXPECT_THAT(late_times, ::testing::UnorderedElementsAre(6, 5, 3));
        EXPECT_EQ(dropped, 0);
      } else {
        EXPECT_THAT(late_times, ::testing::IsEmpty());
        EXPECT_EQ(dropped, 3);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Parallelism, SlicingTest, ::testing::Values(1, 2, 4));

}  // namespace
}  // namespace sluice
