// Keyed state used from jobs: keyed process functions, keyed co-process functions and window
// process functions (per-window and global state), on both backends and at parallelism 1 and 2.
#include <sluice/sluice.h>

#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "window/window_test_util.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;
using window_test::Ev;
using window_test::WithMark;

struct Param {
  StateBackendKind backend;
  int parallelism;
};

class StateJobTest : public ::testing::TestWithParam<Param> {
 protected:
  RuntimeOptions Options() const {
    RuntimeOptions o = window_test::Streaming(GetParam().parallelism);
    o.state_backend = GetParam().backend;
    o.rocksdb.local_dir = ::testing::TempDir() + "/state_job_test";
    return o;
  }
};

// Per key: running count (ValueState), distinct values seen (MapState), last three values
// (ListState), sum (ReducingState).
using Summary = std::tuple<std::string, int64_t, int64_t, std::vector<int64_t>, int64_t>;

class Summarize final : public KeyedProcessFunction<std::string, Ev, Summary> {
 public:
  void Open(const RuntimeContext& ctx) override {
    count_ = ctx.GetState(ValueStateDescriptor<int64_t>("count"));
    distinct_ = ctx.GetMapState(MapStateDescriptor<int64_t, bool>("distinct"));
    last_ = ctx.GetListState(ListStateDescriptor<int64_t>("last"));
    sum_ = ctx.GetReducingState(
        MakeReducingStateDescriptor<int64_t>("sum", [](int64_t a, int64_t b) { return a + b; }));
  }
  void ProcessElement(const Ev& e, Context& ctx, Collector<Summary>& out) override {
    const int64_t n = count_.Value().value_or(0) + 1;
    count_.Update(n);
    distinct_.Put(e.value, true);
    std::vector<int64_t> last = last_.Get();
    last.push_back(e.value);
    if (last.size() > 3) last.erase(last.begin());
    last_.Update(last);
    sum_.Add(e.value);
    out.Collect(Summary(ctx.CurrentKey(), n, static_cast<int64_t>(distinct_.Entries().size()), last,
                        *sum_.Get()));
  }

 private:
  ValueState<int64_t> count_;
  MapState<int64_t, bool> distinct_;
  ListState<int64_t> last_;
  ReducingState<int64_t> sum_;
};

TEST_P(StateJobTest, KeyedProcessFunctionKeepsStatePerKey) {
  StreamEnvironment env(Options());
  CollectSink<Summary> sink;
  std::vector<Ev> events;
  std::vector<Summary> expected;
  std::map<std::string, std::vector<int64_t>> seen;
  for (int i = 0; i < 200; ++i) {
    std::string key = "k" + std::to_string(i % 7);
    int64_t value = (i * 13) % 5;
    events.push_back({key, i, value});
    auto& s = seen[key];
    s.push_back(value);
    std::vector<int64_t> distinct(s.begin(), s.end());
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    std::vector<int64_t> last(s.end() - std::min<ptrdiff_t>(3, static_cast<ptrdiff_t>(s.size())),
                              s.end());
    int64_t sum = 0;
    for (int64_t v : s) sum += v;
    expected.emplace_back(key, static_cast<int64_t>(s.size()),
                          static_cast<int64_t>(distinct.size()), last, sum);
  }
  window_test::EventSource(env, events).KeyBy(window_test::ByKey).Process(Summarize()).SinkTo(sink);
  absl::Status status = env.Execute("summaries");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

// A window function that numbers its firings per window (WindowState) and counts the windows a
// key fired (GlobalState); Clear() frees the per-window state.
using Firing = std::tuple<std::string, Timestamp, int64_t, int64_t,
                          int64_t>;  // key, start, sum, firing, fired windows

class NumberFirings final : public ProcessWindowFunction<Ev, Firing, std::string, TimeWindow> {
 public:
  void Process(const std::string& key, Context& ctx, std::span<const Ev> elements,
               Collector<Firing>& out) override {
    ValueState<int64_t> firing =
        ctx.WindowState().GetState(ValueStateDescriptor<int64_t>("firing"));
    ValueState<int64_t> windows =
        ctx.GlobalState().GetState(ValueStateDescriptor<int64_t>("windows"));
    const int64_t n = firing.Value().value_or(0) + 1;
    firing.Update(n);
    int64_t w = windows.Value().value_or(0);
    if (n == 1) windows.Update(++w);
    int64_t sum = 0;
    for (const Ev& e : elements) sum += e.value;
    out.Collect(Firing(key, ctx.window().start, sum, n, w));
  }
  void Clear(const std::string&, Context& ctx) override {
    ctx.WindowState().GetState(ValueStateDescriptor<int64_t>("firing")).Clear();
  }
};

TEST_P(StateJobTest, WindowFunctionHasPerWindowAndGlobalState) {
  StreamEnvironment env(Options());
  CollectSink<Firing> sink;
  std::vector<Ev> events = {{"a", 1, 1},
                            {"a", 4, 2},
                            WithMark({"b", 3, 3}, 9),      // fires [0,10) for a and b
                            WithMark({"a", 5, 4}, 12),     // late but allowed: a's [0,10) again
                            WithMark({"a", 6, 8}, 13),     // and again
                            WithMark({"a", 12, 5}, 100)};  // [10,20) fires; [0,10) is purged
  window_test::EventSource(env, events)
      .KeyBy(window_test::ByKey)
      .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
      .AllowedLateness(absl::Milliseconds(5))
      .Process(NumberFirings())
      .SinkTo(sink);
  absl::Status status = env.Execute("firings");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(std::vector<Firing>{{"a", 0, 3, 1, 1},
                                                                           {"b", 0, 3, 1, 1},
                                                                           {"a", 0, 7, 2, 1},
                                                                           {"a", 0, 15, 3, 1},
                                                                           {"a", 10, 5, 1, 2}}));
}

class PerWindowStateInSessions final
    : public ProcessWindowFunction<Ev, int64_t, std::string, TimeWindow> {
 public:
  void Process(const std::string&, Context& ctx, std::span<const Ev>,
               Collector<int64_t>&) override {
    ctx.WindowState().GetState(ValueStateDescriptor<int64_t>("x"));
  }
};

TEST_P(StateJobTest, PerWindowStateIsRefusedForMergingWindows) {
  StreamEnvironment env(Options());
  CollectSink<int64_t> sink;
  window_test::EventSource(env, {WithMark({"a", 1, 1}, 100)})
      .KeyBy(window_test::ByKey)
      .Window(EventTimeSessionWindows::WithGap(absl::Milliseconds(10)))
      .Process(PerWindowStateInSessions())
      .SinkTo(sink);
  absl::Status status = env.Execute("sessions");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("not available with merging windows"));
}

TEST_P(StateJobTest, KeyedStateOutsideAKeyedStreamFailsTheJob) {
  StreamEnvironment env(Options());
  CollectSink<Ev> sink;
  class Unkeyed final : public ProcessFunction<Ev, Ev> {
   public:
    void Open(const RuntimeContext& ctx) override {
      ctx.GetState(ValueStateDescriptor<int64_t>("count"));
    }
    void ProcessElement(const Ev& e, Context&, Collector<Ev>& out) override { out.Collect(e); }
  };
  window_test::EventSource(env, {{"a", 1, 1}}).Process(Unkeyed()).Name("unkeyed").SinkTo(sink);
  absl::Status status = env.Execute("unkeyed");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("operator 'unkeyed': state 'count': keyed state is only available"));
}

INSTANTIATE_TEST_SUITE_P(Backends, StateJobTest,
                         ::testing::Values(Param{StateBackendKind::kHashMap, 1},
                                           Param{StateBackendKind::kHashMap, 2},
                                           Param{StateBackendKind::kRocksDb, 1},
                                           Param{StateBackendKind::kRocksDb, 2}),
                         [](const auto& info) {
                           return std::string(StateBackendName(info.param.backend)) + "_p" +
                                  std::to_string(info.param.parallelism);
                         });

}  // namespace
}  // namespace sluice
