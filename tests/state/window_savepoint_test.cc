// Event-time windows with an incremental function — on shared slices (sliding and tumbling) and
// session windows (the session operator on HashMap, the general window operator on RocksDB), with
// allowed lateness and late re-firings — stopped with a savepoint in the middle of the input and
// resumed at another parallelism, on both backends and into the other backend: what the first run
// emitted plus what the resumed run emitted is exactly what one uninterrupted run emits — no
// firing lost (pending windows restored), none repeated (windows that fired stay fired and are
// only cleaned up).
#include <sluice/sluice.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "state/gated_source.h"

namespace sluice {
namespace {

using state_test::Feed;
using state_test::GatedSource;
using state_test::WaitFor;
using ::testing::UnorderedElementsAreArray;

struct Event {
  int64_t key = 0;
  Timestamp time = 0;
  int64_t value = 0;
  Timestamp watermark_after = kMinWatermark;
};

class Punctuated final : public WatermarkGenerator<Event> {
 public:
  void OnEvent(const Event& e, Timestamp, WatermarkOutput& out) override {
    if (e.watermark_after != kMinWatermark) out.EmitWatermark(e.watermark_after);
  }
  void OnPeriodicEmit(WatermarkOutput&) override {}
};

using KV = std::pair<int64_t, int64_t>;

// (sum, count) of the values.
class SumCount final : public AggregateFunction<Event, KV, KV> {
 public:
  KV CreateAccumulator() override { return {0, 0}; }
  void Add(const Event& in, KV& acc) override {
    acc.first += in.value;
    acc.second += 1;
  }
  KV GetResult(const KV& acc) override { return acc; }
  void Merge(const KV& from, KV& into) override {
    into.first += from.first;
    into.second += from.second;
  }
};

// (key, window start, window end, sum, count)
using Firing = std::tuple<int64_t, Timestamp, Timestamp, int64_t, int64_t>;

// 600 events over 8 keys, mostly in order with up to 3 s of disorder and one in eight up to 9 s
// behind (late within or beyond the allowed lateness); every event carries the watermark (the
// largest time so far minus 2 s). Event `cut` is on time: after a restore, the watermark starts
// from nothing until the first event brings it back, and an on-time event is treated the same
// either way.
std::vector<Event> MakeEvents(uint32_t seed, size_t cut) {
  std::mt19937 rng(seed);
  std::vector<Event> events;
  Timestamp max_time = 0;
  for (int i = 0; i < 600; ++i) {
    Event e;
    e.key = std::uniform_int_distribution<int64_t>(0, 7)(rng);
    const Timestamp base = static_cast<Timestamp>(i) * 100;
    const int64_t disorder = std::uniform_int_distribution<int>(0, 7)(rng) == 0
                                 ? std::uniform_int_distribution<int64_t>(0, 9000)(rng)
                                 : std::uniform_int_distribution<int64_t>(0, 3000)(rng);
    e.time = static_cast<size_t>(i) == cut ? max_time + 1 : std::max<Timestamp>(0, base - disorder);
    e.value = std::uniform_int_distribution<int64_t>(1, 100)(rng);
    max_time = std::max(max_time, e.time);
    e.watermark_after = max_time - 2000;
    events.push_back(e);
  }
  return events;
}

struct WindowSpec {
  int64_t size_ms, slide_ms, lateness_ms;
  int64_t session_gap_ms = 0;  // > 0: session windows instead
};

struct Param {
  StateBackendKind backend;
  int first_parallelism;
  int resumed_parallelism;
  StateBackendKind resumed_backend;
};

class WindowSavepointTest : public state_test::TempDirTest,
                            public ::testing::WithParamInterface<Param> {
 protected:
  RuntimeOptions Options(int parallelism, bool resumed = false) const {
    RuntimeOptions o;
    o.parallelism = parallelism;
    o.execution_mode = ExecutionMode::kStreaming;
    o.state_backend = resumed ? GetParam().resumed_backend : GetParam().backend;
    o.rocksdb.local_dir = dir_ + "/rocksdb";
    o.checkpointing.interval = absl::ZeroDuration();
    o.checkpointing.directory = dir_ + "/checkpoints";
    return o;
  }

  // Sum and count per key and window (Aggregate on slices; size == slide is a tumbling window);
  // `seen` counts the records that left the source.
  static void Build(StreamEnvironment& env, std::shared_ptr<Feed<Event>> feed,
                    const WindowSpec& spec, std::shared_ptr<std::atomic<int64_t>> seen,
                    CollectSink<Firing>& sink) {
    // The records are counted where their timestamps are assigned (in the source task): the
    // window operator reads the source's channels directly, so every record meets the watermark
    // it met in the uninterrupted run.
    auto keyed = env.FromSource(GatedSource<Event>(std::move(feed)),
                                WatermarkStrategy<Event>::ForGenerator([] {
                                  return std::make_unique<Punctuated>();
                                }).WithTimestampAssigner([seen](const Event& e) {
                                  seen->fetch_add(1);
                                  return e.time;
                                }))
                     .KeyBy([](const Event& e) { return e.key; });
    auto emit = [](const int64_t& key, WindowContext<TimeWindow>& ctx,
                   std::span<const KV> sum_count, Collector<Firing>& out) {
      for (const auto& [sum, count] : sum_count) {
        out.Collect(Firing(key, ctx.window().start, ctx.window().end, sum, count));
      }
    };
    const absl::Duration lateness = absl::Milliseconds(spec.lateness_ms);
    if (spec.session_gap_ms > 0) {
      keyed.Window(EventTimeSessionWindows::WithGap(absl::Milliseconds(spec.session_gap_ms)))
          .AllowedLateness(lateness)
          .Aggregate(SumCount(), emit)
          .SinkTo(sink);
    } else {
      keyed
          .Window(SlidingEventTimeWindows::Of(absl::Milliseconds(spec.size_ms),
                                              absl::Milliseconds(spec.slide_ms)))
          .AllowedLateness(lateness)
          .Aggregate(SumCount(), emit)
          .SinkTo(sink);
    }
  }

  // With `second_savepoint`, the resumed job is stopped with another savepoint before any record
  // or watermark reaches it (its windows must stay fired through the first one's watermark), and
  // the rest runs from that one.
  void RunCase(uint32_t seed, const WindowSpec& spec, bool second_savepoint = false) {
    SCOPED_TRACE(testing::Message()
                 << "seed " << seed << " size " << spec.size_ms << " slide " << spec.slide_ms
                 << " lateness " << spec.lateness_ms << " session gap " << spec.session_gap_ms);
    const size_t cut = 300;
    const std::vector<Event> events = MakeEvents(seed, cut);

    // One uninterrupted run.
    std::vector<Firing> expected;
    {
      auto feed = std::make_shared<Feed<Event>>(events, /*finish_at_end=*/true);
      feed->open = static_cast<int64_t>(events.size());
      StreamEnvironment env(Options(GetParam().first_parallelism));
      CollectSink<Firing> sink;
      Build(env, feed, spec, std::make_shared<std::atomic<int64_t>>(0), sink);
      absl::Status status = env.Execute("uninterrupted");
      ASSERT_TRUE(status.ok()) << status;
      expected = sink.values();
    }

    // The first `cut` events, a savepoint, then the rest at another parallelism.
    const std::string savepoint =
        dir_ + "/savepoint-" + std::to_string(seed) + "-" + std::to_string(spec.size_ms) + "-" +
        std::to_string(spec.slide_ms) + "-" + std::to_string(spec.session_gap_ms);
    auto feed = std::make_shared<Feed<Event>>(events, /*finish_at_end=*/true);
    std::vector<Firing> before, after;
    {
      StreamEnvironment env(Options(GetParam().first_parallelism));
      CollectSink<Firing> sink;
      auto seen = std::make_shared<std::atomic<int64_t>>(0);
      Build(env, feed, spec, seen, sink);
      absl::StatusOr<JobHandle> job = env.ExecuteAsync("first");
      ASSERT_TRUE(job.ok()) << job.status();
      feed->open = static_cast<int64_t>(cut);
      WaitFor([&] { return seen->load() == static_cast<int64_t>(cut); });
      absl::StatusOr<std::string> stopped = job->StopWithSavepoint(savepoint);
      ASSERT_TRUE(stopped.ok()) << stopped.status();
      job->Wait().IgnoreError();
      before = sink.values();
    }
    std::string resume_from = savepoint;
    if (second_savepoint) {
      RuntimeOptions o = Options(GetParam().resumed_parallelism, /*resumed=*/true);
      o.restore_from = savepoint;
      StreamEnvironment env(o);
      CollectSink<Firing> sink;
      Build(env, feed, spec, std::make_shared<std::atomic<int64_t>>(0), sink);
      absl::StatusOr<JobHandle> job = env.ExecuteAsync("idle");
      ASSERT_TRUE(job.ok()) << job.status();
      resume_from = savepoint + "-again";
      absl::StatusOr<std::string> stopped = job->StopWithSavepoint(resume_from);
      ASSERT_TRUE(stopped.ok()) << stopped.status();
      job->Wait().IgnoreError();
      EXPECT_THAT(sink.values(), ::testing::IsEmpty());
    }
    {
      RuntimeOptions o = Options(GetParam().resumed_parallelism, /*resumed=*/true);
      o.restore_from = resume_from;
      StreamEnvironment env(o);
      CollectSink<Firing> sink;
      Build(env, feed, spec, std::make_shared<std::atomic<int64_t>>(0), sink);
      feed->open = static_cast<int64_t>(events.size());
      absl::Status status = env.Execute("resumed");
      ASSERT_TRUE(status.ok()) << status;
      after = sink.values();
    }
    // Both runs did part of the work, and late re-firings happened on both sides of the cut.
    ASSERT_FALSE(before.empty());
    ASSERT_FALSE(after.empty());
    std::vector<Firing> all = before;
    all.insert(all.end(), after.begin(), after.end());
    EXPECT_THAT(all, UnorderedElementsAreArray(expected));
    std::map<std::pair<int64_t, Timestamp>, int> fired_before;
    for (const Firing& f : before) fired_before[{std::get<0>(f), std::get<1>(f)}]++;
    int refired_after_cut = 0;
    for (const Firing& f : after)
      refired_after_cut += fired_before.count({std::get<0>(f), std::get<1>(f)});
    if (spec.lateness_ms > 0) {
      EXPECT_GT(refired_after_cut, 0);
    }
  }
};

TEST_P(WindowSavepointTest, SlidingWindowsWithLatenessResumeExactly) {
  for (uint32_t seed : {1u, 2u}) RunCase(seed, WindowSpec{4000, 1000, 5000});
}

// The second job restores the first one's windows and is stopped again before its watermark
// moved: windows fired before the first savepoint stay fired (they are not fired again).
TEST_P(WindowSavepointTest, ASavepointTakenBeforeTheWatermarkReturnsKeepsWindowsFired) {
  RunCase(5, WindowSpec{4000, 1000, 5000}, /*second_savepoint=*/true);
  RunCase(3, WindowSpec{3000, 3000, 2000}, /*second_savepoint=*/true);
}

TEST_P(WindowSavepointTest, TumblingWindowsResumeExactly) {
  RunCase(3, WindowSpec{3000, 3000, 2000});
  RunCase(4, WindowSpec{3000, 3000, 0});
}

// Session windows: on HashMap the session operator, on RocksDB the general window operator; a
// savepoint of either restores into the other.
TEST_P(WindowSavepointTest, SessionWindowsResumeExactly) {
  for (uint32_t seed : {1u, 2u}) RunCase(seed, WindowSpec{0, 0, 5000, 700});
  RunCase(3, WindowSpec{0, 0, 0, 1500});
  RunCase(4, WindowSpec{0, 0, 3000, 1200}, /*second_savepoint=*/true);
}

constexpr StateBackendKind kHashMap = StateBackendKind::kHashMap;
constexpr StateBackendKind kRocksDb = StateBackendKind::kRocksDb;
INSTANTIATE_TEST_SUITE_P(
    Backends, WindowSavepointTest,
    ::testing::Values(Param{kHashMap, 2, 3, kHashMap}, Param{kHashMap, 3, 1, kHashMap},
                      Param{kRocksDb, 2, 3, kRocksDb}, Param{kRocksDb, 1, 2, kRocksDb},
                      Param{kHashMap, 2, 1, kRocksDb}, Param{kRocksDb, 2, 3, kHashMap}),
    [](const ::testing::TestParamInfo<Param>& info) {
      std::string name = std::string(StateBackendName(info.param.backend)) + "_" +
                         std::to_string(info.param.first_parallelism) + "_to_" +
                         std::to_string(info.param.resumed_parallelism);
      if (info.param.resumed_backend != info.param.backend) {
        name += std::string("_") + StateBackendName(info.param.resumed_backend);
      }
      return name;
    });

}  // namespace
}  // namespace sluice
