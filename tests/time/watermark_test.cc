#include <sluice/time/watermark_strategy.h>

#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sluice/internal/timer_queue.h>
#include <sluice/time/clock.h>

namespace sluice {
namespace {

using ::testing::ElementsAre;

class RecordingOutput : public WatermarkOutput {
 public:
  void EmitWatermark(Timestamp w) override { events.push_back(w); }
  void MarkIdle() override { events.push_back(-1000); }
  void MarkActive() override { events.push_back(-2000); }
  std::vector<Timestamp> events;
};

TEST(WatermarkStrategyTest, BoundedOutOfOrdernessIsMaxMinusDelayMinusOne) {
  auto strategy = WatermarkStrategy<int>::ForBoundedOutOfOrderness(absl::Seconds(5));
  ManualClock clock;
  auto gen = strategy.CreateGenerator(&clock);
  RecordingOutput out;
  const int values[] = {0, 0, 0};
  const Timestamp ts[] = {10'000, 7'000, 12'000};
  gen->OnEvents(values, ts, 3, out);
  gen->OnPeriodicEmit(out);
  EXPECT_THAT(out.events, ElementsAre(12'000 - 5'000 - 1));
}

TEST(WatermarkStrategyTest, TimestampAssignerSeesPreviousTimestamp) {
  auto strategy = WatermarkStrategy<int>::ForMonotonousTimestamps().WithTimestampAssigner(
      [](const int& v, Timestamp previous) { return previous + v; });
  int values[] = {1, 2};
  Timestamp ts[] = {100, 200};
  strategy.assigner()(values, ts, 2);
  EXPECT_THAT(ts, ElementsAre(101, 202));
}

TEST(WatermarkStrategyTest, IdlenessMarksIdleAfterTimeoutAndActiveOnNextRecord) {
  ManualClock clock(0);
  auto strategy = WatermarkStrategy<int>::ForMonotonousTimestamps().WithIdleness(absl::Seconds(10));
  auto gen = strategy.CreateGenerator(&clock);
  RecordingOutput out;
  gen->OnEvent(0, 50, out);
  gen->OnPeriodicEmit(out);  // active: emits 49
  clock.Advance(absl::Seconds(10));
  gen->OnPeriodicEmit(out);  // idle
  gen->OnPeriodicEmit(out);  // stays idle, emits nothing
  gen->OnEvent(0, 60, out);  // active again
  gen->OnPeriodicEmit(out);
  EXPECT_THAT(out.events, ElementsAre(49, -1000, -2000, 59));
}

TEST(TimerQueueTest, DeduplicatesDeletesAndPopsInTimeOrder) {
  internal::TimerQueue<int, internal::VoidNamespace> q;
  EXPECT_TRUE(q.Register(30, 1, {}));
  EXPECT_TRUE(q.Register(10, 2, {}));
  EXPECT_FALSE(q.Register(30, 1, {}));  // the same (time, key) is one timer
  EXPECT_TRUE(q.Register(20, 1, {}));
  EXPECT_TRUE(q.Delete(20, 1, {}));
  EXPECT_FALSE(q.Delete(20, 1, {}));
  EXPECT_EQ(q.NextTime(), 10);
  internal::TimerQueue<int, internal::VoidNamespace>::Timer t;
  std::vector<std::pair<Timestamp, int>> fired;
  while (q.PopDue(25, &t)) fired.push_back({t.time, t.key});
  EXPECT_THAT(fired, ElementsAre(std::pair<Timestamp, int>(10, 2)));
  EXPECT_EQ(q.NextTime(), 30);
  EXPECT_TRUE(q.Register(20, 1, {}));  // registered again after deletion
  while (q.PopDue(kMaxWatermark, &t)) fired.push_back({t.time, t.key});
  EXPECT_THAT(fired, ElementsAre(std::pair<Timestamp, int>(10, 2), std::pair<Timestamp, int>(20, 1),
                                 std::pair<Timestamp, int>(30, 1)));
  EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace sluice
