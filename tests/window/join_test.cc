// Window join and co-group (Flink's JoinedStreams / CoGroupedStreams) against nested loops.
#include <sluice/sluice.h>

#include <algorithm>
#include <cstdint>
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

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

struct Left {
  int64_t key;
  Timestamp time;
  int64_t id;
};
struct Right {
  std::string key;  // the same key as text: Where/EqualTo select int64_t from both
  Timestamp time;
  int64_t id;
};

int64_t RightKey(const Right& r) { return std::stoll(r.key); }

// (left id, right id, output timestamp)
using Pair = std::tuple<int64_t, int64_t, Timestamp>;

template <typename T>
std::vector<T> Shuffled(std::vector<T> v, std::mt19937& rng, int64_t max_disorder) {
  // Bounded disorder: sort by (time + random jitter).
  std::vector<std::pair<int64_t, T>> keyed;
  for (T& x : v) {
    keyed.emplace_back(x.time + std::uniform_int_distribution<int64_t>(0, max_disorder)(rng),
                       std::move(x));
  }
  std::stable_sort(keyed.begin(), keyed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<T> out;
  for (auto& [_, x] : keyed) out.push_back(std::move(x));
  return out;
}

struct Input {
  std::vector<Left> left;
  std::vector<Right> right;
};

Input RandomInput(uint32_t seed) {
  std::mt19937 rng(seed);
  Input in;
  for (int i = 0; i < 300; ++i) {
    in.left.push_back({std::uniform_int_distribution<int64_t>(0, 6)(rng),
                       std::uniform_int_distribution<Timestamp>(0, 20000)(rng), i});
    in.right.push_back({std::to_string(std::uniform_int_distribution<int64_t>(0, 6)(rng)),
                        std::uniform_int_distribution<Timestamp>(0, 20000)(rng), 1000 + i});
  }
  in.left = Shuffled(in.left, rng, 400);
  in.right = Shuffled(in.right, rng, 400);
  return in;
}

// The windows [start, start + size) with start = k * slide that contain t.
std::vector<Timestamp> WindowStarts(Timestamp t, int64_t size, int64_t slide) {
  std::vector<Timestamp> starts;
  for (Timestamp s = t - (t % slide); s > t - size; s -= slide) starts.push_back(s);
  return starts;
}

class WindowJoinTest : public ::testing::TestWithParam<int> {};

TEST_P(WindowJoinTest, JoinEqualsNestedLoopPerKeyAndWindow) {
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    for (auto [size, slide] : {std::pair<int64_t, int64_t>{2000, 2000}, {3000, 1000}}) {
      SCOPED_TRACE(testing::Message() << "seed " << seed << " size " << size << " slide " << slide);
      Input in = RandomInput(seed);
      StreamEnvironment env(window_test::WithTestBackend(
          {.parallelism = GetParam(), .execution_mode = ExecutionMode::kStreaming}));
      auto left = env.FromSource(CollectionSource<Left>(in.left),
                                 WatermarkStrategy<Left>::ForBoundedOutOfOrderness(absl::Seconds(1))
                                     .WithTimestampAssigner([](const Left& l) { return l.time; }));
      auto right =
          env.FromSource(CollectionSource<Right>(in.right),
                         WatermarkStrategy<Right>::ForBoundedOutOfOrderness(absl::Seconds(1))
                             .WithTimestampAssigner([](const Right& r) { return r.time; }));
      CollectSink<Pair> sink;
      left.Join(right)
          .Where([](const Left& l) { return l.key; })
          .EqualTo([](const Right& r) { return RightKey(r); })
          .Window(SlidingEventTimeWindows::Of(absl::Milliseconds(size), absl::Milliseconds(slide)))
          .Apply([](const Left& l, const Right& r) { return Pair(l.id, r.id, 0); })
          .Process([](const Pair& p, ProcessContext& ctx, Collector<Pair>& out) {
            out.Collect(Pair(std::get<0>(p), std::get<1>(p), ctx.timestamp()));
          })
          .SinkTo(sink);
      absl::Status status = env.Execute("join");
      ASSERT_TRUE(status.ok()) << status;

      std::vector<Pair> expected;
      for (const Left& l : in.left) {
        for (const Right& r : in.right) {
          if (l.key != RightKey(r)) continue;
          for (Timestamp s : WindowStarts(l.time, size, slide)) {
            if (r.time >= s && r.time < s + size) expected.emplace_back(l.id, r.id, s + size - 1);
          }
        }
      }
      ASSERT_GT(expected.size(), 100u);
      std::vector<Pair> got = sink.values();
      std::sort(got.begin(), got.end());
      std::sort(expected.begin(), expected.end());
      EXPECT_EQ(got, expected);
    }
  }
}

// (key, window start, left ids, right ids), ids sorted.
using Group = std::tuple<int64_t, Timestamp, std::vector<int64_t>, std::vector<int64_t>>;

TEST_P(WindowJoinTest, CoGroupSeesBothSidesOfEveryWindowEvenWhenOneIsEmpty) {
  Input in = RandomInput(7);
  // Bounded: batch mode.
  StreamEnvironment env(window_test::WithTestBackend({.parallelism = GetParam()}));
  auto left =
      env.FromSource(CollectionSource<Left>(in.left),
                     WatermarkStrategy<Left>::ForMonotonousTimestamps().WithTimestampAssigner(
                         [](const Left& l) { return l.time; }));
  auto right =
      env.FromSource(CollectionSource<Right>(in.right),
                     WatermarkStrategy<Right>::ForMonotonousTimestamps().WithTimestampAssigner(
                         [](const Right& r) { return r.time; }));
  CollectSink<Group> sink;
  left.CoGroup(right)
      .Where([](const Left& l) { return l.key; })
      .EqualTo([](const Right& r) { return RightKey(r); })
      .Window(TumblingEventTimeWindows::Of(absl::Seconds(1)))
      .Apply([](std::span<const Left> ls, std::span<const Right> rs, Collector<Group>& out) {
        int64_t key = ls.empty() ? RightKey(rs[0]) : ls[0].key;
        Timestamp time = ls.empty() ? rs[0].time : ls[0].time;
        std::vector<int64_t> lids, rids;
        for (const Left& l : ls) lids.push_back(l.id);
        for (const Right& r : rs) rids.push_back(r.id);
        std::sort(lids.begin(), lids.end());
        std::sort(rids.begin(), rids.end());
        out.Collect(Group(key, time - time % 1000, lids, rids));
      })
      .SinkTo(sink);
  absl::Status status = env.Execute("cogroup");
  ASSERT_TRUE(status.ok()) << status;

  std::map<std::pair<int64_t, Timestamp>, std::pair<std::vector<int64_t>, std::vector<int64_t>>>
      groups;
  for (const Left& l : in.left) groups[{l.key, l.time - l.time % 1000}].first.push_back(l.id);
  for (const Right& r : in.right) {
    groups[{RightKey(r), r.time - r.time % 1000}].second.push_back(r.id);
  }
  std::vector<Group> expected;
  size_t one_sided = 0;
  for (auto& [k, g] : groups) {
    std::sort(g.first.begin(), g.first.end());
    std::sort(g.second.begin(), g.second.end());
    if (g.first.empty() || g.second.empty()) ++one_sided;
    expected.emplace_back(k.first, k.second, g.first, g.second);
  }
  ASSERT_GT(one_sided, 0u);
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

TEST_P(WindowJoinTest, FlatJoinAndAThrowingJoinFunction) {
  StreamEnvironment env(window_test::WithTestBackend({.parallelism = GetParam()}));
  auto stamp = [](const Left& l) { return l.time; };
  auto left = env.FromSource(
      CollectionSource<Left>({{1, 100, 1}, {1, 200, 2}, {2, 300, 3}}),
      WatermarkStrategy<Left>::ForMonotonousTimestamps().WithTimestampAssigner(stamp));
  auto right = env.FromSource(
      CollectionSource<Left>({{1, 150, 10}, {2, 1500, 11}}),
      WatermarkStrategy<Left>::ForMonotonousTimestamps().WithTimestampAssigner(stamp));
  CollectSink<std::string> sink;
  left.Join(right)
      .Where([](const Left& l) { return l.key; })
      .EqualTo([](const Left& l) { return l.key; })
      .Window(TumblingEventTimeWindows::Of(absl::Seconds(1)))
      .Apply([](const Left& a, const Left& b, Collector<std::string>& out) {
        out.Collect(absl::StrCat(a.id, "-", b.id));
        out.Collect(absl::StrCat(b.id, "-", a.id));
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("flat join").ok());
  // Key 2's elements fall into different windows: no pair.
  EXPECT_THAT(sink.values(),
              UnorderedElementsAreArray(std::vector<std::string>{"1-10", "10-1", "2-10", "10-2"}));

  auto l2 = env.FromSource(
      CollectionSource<Left>({{1, 100, 1}}),
      WatermarkStrategy<Left>::ForMonotonousTimestamps().WithTimestampAssigner(stamp));
  auto r2 = env.FromSource(
      CollectionSource<Left>({{1, 150, 10}}),
      WatermarkStrategy<Left>::ForMonotonousTimestamps().WithTimestampAssigner(stamp));
  CollectSink<int64_t> unused;
  l2.Join(r2)
      .Where([](const Left& l) { return l.key; })
      .EqualTo([](const Left& l) { return l.key; })
      .Window(TumblingEventTimeWindows::Of(absl::Seconds(1)))
      .Apply([](const Left&, const Left&) -> int64_t { throw std::runtime_error("bad pair"); })
      .SinkTo(unused);
  absl::Status status = env.Execute("throwing join");
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("bad pair"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("Window Join"));
}

INSTANTIATE_TEST_SUITE_P(Parallelism, WindowJoinTest, ::testing::Values(1, 2, 4));

}  // namespace
}  // namespace sluice
