// Timers of keyed process functions (Flink's TimerService semantics).
#include <sluice/sluice.h>

#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/clock.h"

namespace sluice {
namespace {

using ::testing::ElementsAreArray;
using ::testing::UnorderedElementsAreArray;

struct Event {
  std::string key;
  Timestamp time;
};

// (what, key, time, output timestamp)
using Fired = std::tuple<std::string, std::string, Timestamp, Timestamp>;

// Registers an event-time timer 1000 ms after each event (deduplicated per key and time);
// an event with time 5000 deletes the timer of the key at 4000 + 1000.
class TimeoutPerKey : public KeyedProcessFunction<std::string, Event, Fired> {
 public:
  void ProcessElement(const Event& e, Context& ctx, Collector<Fired>& out) override {
    ctx.RegisterEventTimeTimer(e.time + 1000);
    if (e.time == 5000) ctx.DeleteEventTimeTimer(5000);
    out.Collect(Fired("event", ctx.CurrentKey(), e.time, ctx.timestamp()));
  }
  void OnTimer(Timestamp time, Context& ctx, Collector<Fired>& out) override {
    EXPECT_EQ(ctx.time_domain(), TimeDomain::kEventTime);
    EXPECT_LE(time, ctx.CurrentWatermark());
    out.Collect(Fired("timer", ctx.CurrentKey(), time, ctx.timestamp()));
  }
};

std::vector<Event> Events() {
  return {{"a", 1000}, {"b", 1000}, {"a", 1000}, {"a", 4000}, {"b", 2500}, {"a", 5000}};
}

class TimersTest : public ::testing::TestWithParam<int> {};

TEST_P(TimersTest, EventTimeTimersFireOncePerKeyAndTimeAndCanBeDeleted) {
  StreamEnvironment env({.parallelism = GetParam(), .execution_mode = ExecutionMode::kStreaming});
  CollectSink<Fired> sink;
  env.FromSource(CollectionSource<Event>(Events()),
                 WatermarkStrategy<Event>::ForMonotonousTimestamps().WithTimestampAssigner(
                     [](const Event& e) { return e.time; }))
      .KeyBy([](const Event& e) { return e.key; })
      .Process(TimeoutPerKey())
      .SinkTo(sink);
  absl::Status status = env.Execute("timers");
  ASSERT_TRUE(status.ok()) << status;
  std::vector<Fired> expected = {
      {"event", "a", 1000, 1000},
      {"event", "b", 1000, 1000},
      {"event", "a", 1000, 1000},
      {"event", "a", 4000, 4000},
      {"event", "b", 2500, 2500},
      {"event", "a", 5000, 5000},
      // a: 2000 once (registered twice), 5000 deleted, 6000; b: 2000, 3500.
      {"timer", "a", 2000, 2000},
      {"timer", "a", 6000, 6000},
      {"timer", "b", 2000, 2000},
      {"timer", "b", 3500, 3500}};
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
  // Per key, timers fire in time order.
  std::vector<Timestamp> a_timers;
  for (const Fired& f : sink.values()) {
    if (std::get<0>(f) == "timer" && std::get<1>(f) == "a") a_timers.push_back(std::get<2>(f));
  }
  EXPECT_THAT(a_timers, ElementsAreArray(std::vector<Timestamp>{2000, 6000}));
}

INSTANTIATE_TEST_SUITE_P(Parallelism, TimersTest, ::testing::Values(1, 2, 4));

// A source that emits its records and then stays open (unbounded) until cancelled.
class OpenEndedSource : public Source<Event> {
 public:
  explicit OpenEndedSource(std::vector<Event> events) : events_(std::move(events)) {}
  bool IsBounded() const override { return false; }
  int MaxParallelism() const override { return 1; }
  absl::StatusOr<std::unique_ptr<SourceReader<Event>>> CreateReader(const SourceContext&) override {
    return std::unique_ptr<SourceReader<Event>>(new Reader(events_));
  }

 private:
  class Reader : public SourceReader<Event> {
   public:
    explicit Reader(std::vector<Event> events) : events_(std::move(events)) {}
    absl::StatusOr<PollResult> PollNext(Collector<Event>& out, int) override {
      if (done_) return PollResult::WaitForWake();
      for (const Event& e : events_) out.Collect(e);
      done_ = true;
      return PollResult::WaitForWake();
    }

   private:
    std::vector<Event> events_;
    bool done_ = false;
  };
  std::vector<Event> events_;
};

class ProcessingTimeout : public KeyedProcessFunction<std::string, Event, Fired> {
 public:
  void ProcessElement(const Event& e, Context& ctx, Collector<Fired>& out) override {
    ctx.RegisterProcessingTimeTimer(ctx.CurrentProcessingTime() + 5000);
    out.Collect(Fired("event", ctx.CurrentKey(), e.time, kNoTimestamp));
  }
  void OnTimer(Timestamp time, Context& ctx, Collector<Fired>& out) override {
    EXPECT_EQ(ctx.time_domain(), TimeDomain::kProcessingTime);
    out.Collect(Fired("timer", ctx.CurrentKey(), time, ctx.timestamp()));
  }
};

bool WaitForSize(const CollectSink<Fired>& sink, size_t n) {
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (sink.size() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  return sink.size() >= n;
}

TEST(ProcessingTimeTimersTest, FireWhenTheManualClockReachesThem) {
  auto clock = std::make_shared<ManualClock>(10'000);
  StreamEnvironment env({.parallelism = 2, .clock = clock});
  CollectSink<Fired> sink;
  env.FromSource(OpenEndedSource({{"x", 1}, {"y", 2}}))
      .KeyBy([](const Event& e) { return e.key; })
      .Process(ProcessingTimeout())
      .SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("processing-timers");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(WaitForSize(sink, 2));
  clock->Advance(absl::Milliseconds(4999));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(sink.size(), 2u);  // not due yet
  clock->Advance(absl::Milliseconds(1));
  ASSERT_TRUE(WaitForSize(sink, 4));
  job->Cancel();
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  std::vector<Fired> expected = {{"event", "x", 1, kNoTimestamp},
                                 {"event", "y", 2, kNoTimestamp},
                                 {"timer", "x", 15'000, kNoTimestamp},
                                 {"timer", "y", 15'000, kNoTimestamp}};
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

}  // namespace
}  // namespace sluice
