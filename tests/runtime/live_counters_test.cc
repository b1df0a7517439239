// Counters are live: JobHandle::Counters() shows what operators counted while the job still runs
// (user counters from RuntimeContext::GetCounter and the window operator's
// numLateRecordsDropped), summed over subtasks, and exact once the records are in.
#include <sluice/sluice.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

#include "../state/gated_source.h"

namespace sluice {
namespace {

using state_test::Feed;
using state_test::GatedSource;
using state_test::WaitFor;
using ::testing::UnorderedElementsAreArray;

struct Ev {
  int64_t key = 0;
  Timestamp time = 0;
};

class CountSeen final : public ProcessFunction<Ev, Ev> {
 public:
  void Open(const RuntimeContext& ctx) override {
    seen_ = ctx.GetCounter("seen");
    // Registering again hands back the same cell (it is not reset, nor counted twice).
    again_ = ctx.GetCounter("seen");
  }
  void ProcessElement(const Ev& e, Context&, Collector<Ev>& out) override {
    (e.key == 0 ? seen_ : again_)->Inc();
    out.Collect(e);
  }

 private:
  Counter* seen_ = nullptr;
  Counter* again_ = nullptr;
};

int64_t Get(const std::map<std::string, int64_t>& counters, const std::string& name) {
  auto it = counters.find(name);
  return it == counters.end() ? -1 : it->second;
}

TEST(LiveCountersTest, CountersAreReadWhileTheJobRuns) {
  // 100 records at 0..99 ms (keys 0 and 1), then 30 at 0..29 ms: late for their closed windows.
  std::vector<Ev> values;
  for (int64_t i = 0; i < 100; ++i) values.push_back({i % 2, i});
  for (int64_t i = 0; i < 30; ++i) values.push_back({i % 2, i});
  auto feed = std::make_shared<Feed<Ev>>(values);

  RuntimeOptions options;
  options.parallelism = 2;
  options.auto_watermark_interval = absl::Milliseconds(1);
  StreamEnvironment env(options);
  CollectSink<std::string> sink;
  env.FromSource(GatedSource<Ev>(feed),
                 WatermarkStrategy<Ev>::ForMonotonousTimestamps().WithTimestampAssigner(
                     [](const Ev& e) { return e.time; }))
      .Process(CountSeen{})
      .Name("count")
      .KeyBy([](const Ev& e) { return e.key; })
      .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
      .Process([](const int64_t& key, WindowContext<TimeWindow>& ctx, std::span<const Ev> in,
                  Collector<std::string>& out) {
        out.Collect(absl::StrCat(key, " ", ctx.window().start, " ", in.size()));
      })
      .SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("live counters");
  ASSERT_TRUE(job.ok()) << job.status();

  // Registered counters show from the start, at 0.
  WaitFor([&] {
    auto c = job->Counters();
    return Get(c, "count.seen") == 0 && Get(c, "Window.numLateRecordsDropped") == 0;
  });

  feed->open = 100;
  // The watermark reaches 98: windows [0, 10) .. [80, 90) fire, each with 5 records per key.
  WaitFor([&] { return sink.size() == 18; });
  std::vector<std::string> want;
  for (int64_t start = 0; start < 90; start += 10) {
    for (int64_t key = 0; key < 2; ++key) want.push_back(absl::StrCat(key, " ", start, " 5"));
  }
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(want));
  WaitFor([&] { return Get(job->Counters(), "count.seen") == 100; });
  EXPECT_EQ(Get(job->Counters(), "Window.numLateRecordsDropped"), 0);

  feed->open = 130;
  WaitFor([&] {
    auto c = job->Counters();
    return Get(c, "count.seen") == 130 && Get(c, "Window.numLateRecordsDropped") == 30;
  });
  EXPECT_FALSE(job->IsDone());  // read live, not published at the end
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(want));  // late records fired nothing

  job->Cancel();
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  const auto final_counters = job->Counters();
  EXPECT_EQ(Get(final_counters, "count.seen"), 130);
  EXPECT_EQ(Get(final_counters, "Window.numLateRecordsDropped"), 30);
}

TEST(CountersTest, CellsOfANameAreSummedWithWhatWasAdded) {
  Counters counters;
  Counter* a = counters.Register("Map", "seen", /*node_id=*/1, /*subtask=*/0);
  Counter* b = counters.Register("Map", "seen", 1, 1);
  Counter* other_node = counters.Register("Map", "seen", 2, 0);  // another operator named Map
  EXPECT_EQ(counters.Register("Map", "seen", 1, 0), a);
  EXPECT_NE(a, b);
  EXPECT_NE(a, other_node);
  a->Inc();
  a->Inc(4);
  b->Inc(10);
  b->Dec(3);
  other_node->Inc(100);
  counters.Add("Map", "seen", 1000);
  counters.Add("Sink", "flushes", 2);
  counters.Register("Window", "numLateRecordsDropped", 3, 0);
  EXPECT_EQ(counters.Snapshot(),
            (std::map<std::string, int64_t>{
                {"Map.seen", 1112}, {"Sink.flushes", 2}, {"Window.numLateRecordsDropped", 0}}));
}

// A reader never sees a counter go back or a torn value while its one writer counts.
TEST(CountersTest, ReadersSeeAMonotonicCountWhileItsWriterCounts) {
  Counters counters;
  Counter* cell = counters.Register("op", "n", 0, 0);
  constexpr int64_t kIncrements = 1'000'000;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int64_t i = 0; i < kIncrements; ++i) cell->Inc();
    done = true;
  });
  int64_t last = 0;
  bool monotonic = true;
  while (!done.load()) {
    const int64_t now = counters.Snapshot()["op.n"];
    monotonic = monotonic && now >= last && now <= kIncrements;
    last = now;
  }
  writer.join();
  EXPECT_TRUE(monotonic);
  EXPECT_EQ(counters.Snapshot()["op.n"], kIncrements);
}

TEST(CountersTest, ACounterOutsideARunningJobIsAClearError) {
  RuntimeContext ctx;
  ctx.operator_name = "Enrich";
  try {
    ctx.GetCounter("seen");
    FAIL() << "no error";
  } catch (const internal::JobFailure& e) {
    EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(e.status().message(),
              "operator 'Enrich': counter 'seen': this RuntimeContext belongs to no running job "
              "(no counters)");
  }
}

}  // namespace
}  // namespace sluice
