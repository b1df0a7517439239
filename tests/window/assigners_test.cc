// Window boundaries exactly as Flink's assigners compute them.
#include <sluice/window/windows.h>

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/time.h"

namespace sluice {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

template <typename A>
std::vector<TimeWindow> Assign(const A& assigner, Timestamp t) {
  std::vector<TimeWindow> out;
  assigner.AssignWindows(0, t, out);
  return out;
}

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kMinute = 60'000;

TEST(TumblingWindowsTest, AlignedToEpochWithoutOffset) {
  auto hourly = TumblingEventTimeWindows::Of(absl::Hours(1));
  // 1:30 falls into 1:00:00.000 - 1:59:59.999.
  EXPECT_THAT(Assign(hourly, kHour + 30 * kMinute), ElementsAre(TimeWindow{kHour, 2 * kHour}));
  EXPECT_EQ(TimeWindow({kHour, 2 * kHour}).max_timestamp(), 2 * kHour - 1);
  // The boundary belongs to the next window: [start, end).
  EXPECT_THAT(Assign(hourly, 2 * kHour), ElementsAre(TimeWindow{2 * kHour, 3 * kHour}));
  EXPECT_THAT(Assign(hourly, 2 * kHour - 1), ElementsAre(TimeWindow{kHour, 2 * kHour}));
}

TEST(TumblingWindowsTest, OffsetShiftsWindows) {
  // Flink's docs: hourly windows with a 15 minute offset give 1:15:00.000 - 2:14:59.999.
  auto shifted = TumblingEventTimeWindows::Of(absl::Hours(1), absl::Minutes(15));
  EXPECT_THAT(Assign(shifted, kHour + 20 * kMinute),
              ElementsAre(TimeWindow{kHour + 15 * kMinute, 2 * kHour + 15 * kMinute}));
  EXPECT_THAT(Assign(shifted, kHour + 10 * kMinute),
              ElementsAre(TimeWindow{15 * kMinute, kHour + 15 * kMinute}));
  // A negative offset (e.g. a time zone west of UTC).
  auto west = TumblingEventTimeWindows::Of(absl::Hours(1), absl::Minutes(-15));
  EXPECT_THAT(Assign(west, kHour), ElementsAre(TimeWindow{45 * kMinute, kHour + 45 * kMinute}));
}

TEST(TumblingWindowsTest, NegativeTimestamps) {
  auto tens = TumblingEventTimeWindows::Of(absl::Milliseconds(10));
  EXPECT_THAT(Assign(tens, -1), ElementsAre(TimeWindow{-10, 0}));
  EXPECT_THAT(Assign(tens, -10), ElementsAre(TimeWindow{-10, 0}));
  EXPECT_THAT(Assign(tens, -11), ElementsAre(TimeWindow{-20, -10}));
}

TEST(SlidingWindowsTest, EveryWindowContainingTheTimestampLatestFirst) {
  auto sliding = SlidingEventTimeWindows::Of(absl::Milliseconds(10), absl::Milliseconds(5));
  EXPECT_THAT(Assign(sliding, 12), ElementsAre(TimeWindow{10, 20}, TimeWindow{5, 15}));
  EXPECT_THAT(Assign(sliding, 10), ElementsAre(TimeWindow{10, 20}, TimeWindow{5, 15}));
  EXPECT_THAT(Assign(sliding, 9), ElementsAre(TimeWindow{5, 15}, TimeWindow{0, 10}));
  auto thirds = SlidingEventTimeWindows::Of(absl::Milliseconds(9), absl::Milliseconds(3),
                                            absl::Milliseconds(1));
  EXPECT_THAT(Assign(thirds, 7),
              ElementsAre(TimeWindow{7, 16}, TimeWindow{4, 13}, TimeWindow{1, 10}));
}

TEST(WindowAssignerTest, InvalidParametersAreReported) {
  EXPECT_THAT(TumblingEventTimeWindows::Of(absl::ZeroDuration()).Validate().message(),
              HasSubstr("size and slide must be > 0"));
  absl::Status offset =
      TumblingEventTimeWindows::Of(absl::Seconds(10), absl::Seconds(10)).Validate();
  EXPECT_EQ(offset.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(offset.message(), HasSubstr("abs(offset) < size"));
  EXPECT_FALSE(SlidingEventTimeWindows::Of(absl::Seconds(10), absl::Seconds(5), absl::Seconds(5))
                   .Validate()
                   .ok());
  EXPECT_TRUE(SlidingEventTimeWindows::Of(absl::Seconds(10), absl::Seconds(5), absl::Seconds(4))
                  .Validate()
                  .ok());
  EXPECT_FALSE(EventTimeSessionWindows::WithGap(absl::ZeroDuration()).Validate().ok());
}

TEST(SessionWindowsTest, MergeOverlappingAndTouchingWindows) {
  auto sessions = EventTimeSessionWindows::WithGap(absl::Milliseconds(5));
  std::vector<TimeWindow> windows;
  for (Timestamp t : {1, 3, 20, 8, 40}) sessions.AssignWindows(0, t, windows);
  // [1,6) [3,8) [8,13) touch and merge into [1,13); [20,25) and [40,45) stay alone.
  std::vector<std::pair<TimeWindow, std::vector<TimeWindow>>> merges;
  internal::MergeTimeWindows(windows, [&](const TimeWindow& result, const auto& members) {
    merges.push_back({result, members});
  });
  ASSERT_EQ(merges.size(), 1u);
  EXPECT_EQ(merges[0].first, (TimeWindow{1, 13}));
  EXPECT_THAT(merges[0].second, ElementsAre(TimeWindow{1, 6}, TimeWindow{3, 8}, TimeWindow{8, 13}));
}

TEST(SessionWindowsTest, DynamicGapPerRecord) {
  auto sessions =
      EventTimeSessionWindows::WithDynamicGap([](int v) { return absl::Milliseconds(v); });
  std::vector<TimeWindow> out;
  sessions.AssignWindows(7, 100, out);
  EXPECT_THAT(out, ElementsAre(TimeWindow{100, 107}));
  EXPECT_THROW(sessions.AssignWindows(0, 100, out), std::invalid_argument);
}

}  // namespace
}  // namespace sluice
