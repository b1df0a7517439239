// WindowKeyLists: the per-window key lists that replace per-(key, window) timers in the slicing
// window operator. Exact order of firings and cleanups, deduplication, and snapshot records that
// equal what a TimerQueue of the same timers holds (so checkpoints restore across both).
#include <sluice/internal/timer_queue.h>
#include <sluice/internal/window_key_lists.h>

#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice::internal {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAreArray;

// ("fire" | "clean", window start, key) in the order Advance called them.
using Call = std::tuple<std::string, Timestamp, std::string>;

std::vector<Call> AdvanceTo(WindowKeyLists<std::string>& lists, Timestamp watermark) {
  std::vector<Call> calls;
  lists.Advance(
      watermark,
      [&](Timestamp start, const std::string& key) { calls.emplace_back("fire", start, key); },
      [&](Timestamp start, const std::string& key) { calls.emplace_back("clean", start, key); });
  return calls;
}

using Record = std::tuple<Timestamp, std::string, Timestamp>;  // (time, key, start)

template <typename Timers>
std::vector<Record> Records(const Timers& timers) {
  std::vector<Record> out;
  timers.ForEachWithSequence([&](Timestamp time, uint64_t, const std::string& key,
                                 Timestamp start) { out.emplace_back(time, key, start); });
  return out;
}

TEST(WindowKeyListsTest, TumblingWithoutLatenessFiresAndCleansEachWindowOnceInArrivalOrder) {
  WindowKeyLists<std::string> lists(/*size=*/10, /*allowed_lateness=*/0, /*unique_adds=*/true);
  lists.Add(10, "b", true);
  lists.Add(0, "a", true);
  lists.Add(10, "a", true);
  lists.Add(0, "c", true);
  EXPECT_THAT(AdvanceTo(lists, 8), ElementsAre());
  EXPECT_THAT(AdvanceTo(lists, 9), ElementsAre(Call{"fire", 0, "a"}, Call{"fire", 0, "c"},
                                               Call{"clean", 0, "a"}, Call{"clean", 0, "c"}));
  EXPECT_EQ(lists.num_windows(), 1u);
  EXPECT_THAT(AdvanceTo(lists, 100), ElementsAre(Call{"fire", 10, "b"}, Call{"fire", 10, "a"},
                                                 Call{"clean", 10, "b"}, Call{"clean", 10, "a"}));
  EXPECT_TRUE(lists.empty());
  EXPECT_THAT(AdvanceTo(lists, 1000), ElementsAre());
}

TEST(WindowKeyListsTest, SlidingKeysAddedPerSliceFireOncePerWindow) {
  // Size 30, slide 10: a key added for three slices of window 0 fires once, in the order of its
  // first arrival.
  WindowKeyLists<std::string> lists(30, 0, /*unique_adds=*/false);
  for (const char* key : {"x", "y", "x", "z", "y", "x"}) lists.Add(0, key, true);
  EXPECT_THAT(AdvanceTo(lists, 29),
              ElementsAre(Call{"fire", 0, "x"}, Call{"fire", 0, "y"}, Call{"fire", 0, "z"},
                          Call{"clean", 0, "x"}, Call{"clean", 0, "y"}, Call{"clean", 0, "z"}));
}

TEST(WindowKeyListsTest, LatenessDelaysTheCleanupAndLateKeysAreCleanedWithTheOthers) {
  // Size 10, lateness 15: window 0 fires at 9 and is cleaned at 24; window 10 fires at 19 and is
  // cleaned at 34; window 20 fires at 29.
  WindowKeyLists<std::string> lists(10, 15, /*unique_adds=*/false);
  lists.Add(0, "a", true);
  lists.Add(10, "b", true);
  lists.Add(20, "c", true);
  EXPECT_THAT(AdvanceTo(lists, 19), ElementsAre(Call{"fire", 0, "a"}, Call{"fire", 10, "b"}));
  // Late contents within the lateness: only the cleanup is pending (the operator fired at once).
  lists.Add(0, "d", false);
  lists.Add(0, "a", false);
  // 24: cleanup of 0 comes before the firing of 20 at 29; 34 cleans 10 after that firing.
  EXPECT_THAT(AdvanceTo(lists, 34), ElementsAre(Call{"clean", 0, "a"}, Call{"clean", 0, "d"},
                                                Call{"fire", 20, "c"}, Call{"clean", 10, "b"}));
  EXPECT_EQ(lists.num_windows(), 1u);
}

TEST(WindowKeyListsTest, ACleanupGoesBeforeAFiringOfTheSameTime) {
  // Size 10, lateness 10: window 0's cleanup (19) and window 10's firing (19) are due together.
  WindowKeyLists<std::string> lists(10, 10, true);
  lists.Add(10, "late-window", true);
  lists.Add(0, "early", true);
  EXPECT_THAT(AdvanceTo(lists, 9), ElementsAre(Call{"fire", 0, "early"}));
  EXPECT_THAT(AdvanceTo(lists, 19),
              ElementsAre(Call{"clean", 0, "early"}, Call{"fire", 10, "late-window"}));
}

TEST(WindowKeyListsTest, SnapshotRecordsEqualTheTimersOfATimerQueue) {
  // The same state as per-(key, window) timers: firing at the max timestamp and cleanup at max +
  // lateness for pending keys, cleanup only for fired ones.
  WindowKeyLists<std::string> lists(10, 5, false);
  TimerQueue<std::string, Timestamp> queue;
  lists.Add(0, "a", true);
  lists.Add(0, "a", true);
  lists.Add(10, "b", true);
  AdvanceTo(lists, 9);  // window 0 fired; its cleanup (14) is pending
  lists.Add(0, "c", false);
  queue.Register(14, "a", 0);
  queue.Register(14, "c", 0);
  queue.Register(19, "b", 10);
  queue.Register(24, "b", 10);
  EXPECT_THAT(Records(lists), UnorderedElementsAreArray(Records(queue)));
}

TEST(WindowKeyListsTest, RestoreRebuildsTheListsInSequenceOrderFromRecordsInAnyOrder) {
  WindowKeyLists<std::string> lists(10, 5, false);
  // Records of two old subtasks, given out of order: window 0 fired for "c" only (cleanup
  // record alone), still pending for "a" and "b" (whose order is their sequence numbers).
  lists.Restore(14, 7, "c", 0);
  lists.Restore(9, 5, "b", 0);
  lists.Restore(14, 6, "b", 0);
  lists.Restore(9, 1, "a", 0);
  lists.Restore(14, 2, "a", 0);
  lists.Restore(19, 3, "z", 10);
  lists.FinishRestore();
  EXPECT_THAT(AdvanceTo(lists, 9), ElementsAre(Call{"fire", 0, "a"}, Call{"fire", 0, "b"}));
  EXPECT_THAT(AdvanceTo(lists, 14),
              ElementsAre(Call{"clean", 0, "c"}, Call{"clean", 0, "a"}, Call{"clean", 0, "b"}));
  // A record without its cleanup record (another lateness) still cleans the window.
  EXPECT_THAT(AdvanceTo(lists, 24), ElementsAre(Call{"fire", 10, "z"}, Call{"clean", 10, "z"}));
  EXPECT_TRUE(lists.empty());
}

TEST(WindowKeyListsTest, SnapshotThenRestoreGivesTheSameFutureCalls) {
  WindowKeyLists<std::string> original(20, 10, false);
  for (const auto& [start, key, pending] :
       std::vector<std::tuple<Timestamp, std::string, bool>>{{0, "k1", true},
                                                             {10, "k2", true},
                                                             {0, "k3", true},
                                                             {10, "k1", true},
                                                             {20, "k3", true}}) {
    original.Add(start, key, pending);
  }
  AdvanceTo(original, 19);
  original.Add(0, "k4", false);
  WindowKeyLists<std::string> restored(20, 10, false);
  original.ForEachWithSequence([&](Timestamp time, uint64_t seq, const std::string& key,
                                   Timestamp start) { restored.Restore(time, seq, key, start); });
  restored.FinishRestore();
  const std::vector<Call> expected = AdvanceTo(original, 1000);
  EXPECT_THAT(
      expected,
      ElementsAre(Call{"clean", 0, "k1"}, Call{"clean", 0, "k3"}, Call{"clean", 0, "k4"},
                  Call{"fire", 10, "k2"}, Call{"fire", 10, "k1"}, Call{"clean", 10, "k2"},
                  Call{"clean", 10, "k1"}, Call{"fire", 20, "k3"}, Call{"clean", 20, "k3"}));
  EXPECT_EQ(AdvanceTo(restored, 1000), expected);
}

}  // namespace
}  // namespace sluice::internal
