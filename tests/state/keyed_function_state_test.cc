// Keyed state in Map, FlatMap and Filter on a KeyedStream (Flink's rich functions on keyed
// streams), on both backends, and across a savepoint restored at another parallelism.
#include <sluice/sluice.h>

#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "state/gated_source.h"

namespace sluice {
namespace {

using state_test::Feed;
using state_test::GatedSource;
using state_test::WaitFor;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

using Rec = std::pair<std::string, int64_t>;      // key, value
using Counted = std::pair<std::string, int64_t>;  // key, running count

// Numbers the records of each key: (key, 1), (key, 2), ...
class CountPerKey {
 public:
  void Open(const RuntimeContext& ctx) {
    count_ = ctx.GetState(ValueStateDescriptor<int64_t>("count"));
  }
  Counted operator()(const Rec& r) const {
    const int64_t n = count_.Value().value_or(0) + 1;
    count_.Update(n);
    return {r.first, n};
  }

 private:
  ValueState<int64_t> count_;
};

// Emits (key, sum) for every second record of a key, from ListState.
class PairUp {
 public:
  void Open(const RuntimeContext& ctx) {
    pending_ = ctx.GetListState(ListStateDescriptor<int64_t>("pending"));
  }
  void operator()(const Rec& r, Collector<Counted>& out) const {
    std::vector<int64_t> p = pending_.Get();
    if (p.empty()) {
      pending_.Add(r.second);
    } else {
      out.Collect({r.first, p[0] + r.second});
      pending_.Clear();
    }
  }

 private:
  ListState<int64_t> pending_;
};

// Keeps the first record of each key.
class FirstPerKey {
 public:
  void Open(const RuntimeContext& ctx) { seen_ = ctx.GetState(ValueStateDescriptor<bool>("seen")); }
  bool operator()(const Rec&) const {
    if (seen_.Value()) return false;
    seen_.Update(true);
    return true;
  }

 private:
  ValueState<bool> seen_;
};

struct Param {
  StateBackendKind backend;
};

class KeyedFunctionStateTest : public state_test::TempDirTest,
                               public ::testing::WithParamInterface<Param> {
 protected:
  RuntimeOptions Options(int parallelism) const {
    RuntimeOptions o;
    o.parallelism = parallelism;
    o.execution_mode = ExecutionMode::kStreaming;
    o.state_backend = GetParam().backend;
    o.rocksdb.local_dir = dir_ + "/rocksdb";
    o.checkpointing.interval = absl::ZeroDuration();
    o.checkpointing.directory = dir_ + "/checkpoints";
    return o;
  }
  static std::vector<Rec> Records(int n, int keys) {
    std::vector<Rec> v;
    for (int i = 0; i < n; ++i) v.emplace_back("k" + std::to_string(i % keys), i);
    return v;
  }
};

TEST_P(KeyedFunctionStateTest, MapCountsPerKeyWithValueState) {
  StreamEnvironment env(Options(2));
  CollectSink<Counted> sink;
  env.FromCollection(Records(70, 7))
      .KeyBy([](const Rec& r) { return r.first; })
      .Map(CountPerKey())
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("count").ok());
  std::vector<Counted> expected;
  for (int i = 0; i < 70; ++i) expected.emplace_back("k" + std::to_string(i % 7), i / 7 + 1);
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

TEST_P(KeyedFunctionStateTest, FlatMapAndFilterUseKeyedState) {
  StreamEnvironment env(Options(2));
  CollectSink<Counted> pairs;
  CollectSink<Rec> firsts;
  auto keyed = env.FromCollection(Records(30, 3)).KeyBy([](const Rec& r) { return r.first; });
  keyed.FlatMap(PairUp()).SinkTo(pairs);
  keyed.Filter(FirstPerKey()).SinkTo(firsts);
  ASSERT_TRUE(env.Execute("pairs").ok());
  std::vector<Counted> expected;
  // Key k(i % 3) sees i, i + 3, i + 6, ...: pairs (i, i + 3) for i = 0..2, 6..8, 12..14, ...
  for (int i = 0; i < 30; ++i) {
    if ((i / 3) % 2 == 0) expected.emplace_back("k" + std::to_string(i % 3), i + (i + 3));
  }
  EXPECT_THAT(pairs.values(), UnorderedElementsAreArray(expected));
  EXPECT_THAT(firsts.values(),
              UnorderedElementsAreArray(std::vector<Rec>{{"k0", 0}, {"k1", 1}, {"k2", 2}}));
}

// Counts survive a savepoint restored at parallelism 3 (key groups move between subtasks).
TEST_P(KeyedFunctionStateTest, MapStateSurvivesASavepointAtAnotherParallelism) {
  auto feed = std::make_shared<Feed<Rec>>(Records(100, 5));
  const std::string savepoint = dir_ + "/savepoint";
  auto build = [&](StreamEnvironment& env, CollectSink<Counted>& sink) {
    env.FromSource(GatedSource<Rec>(feed))
        .KeyBy([](const Rec& r) { return r.first; })
        .Map(CountPerKey())
        .SinkTo(sink);
  };
  {
    StreamEnvironment env(Options(2));
    CollectSink<Counted> sink;
    build(env, sink);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("first");
    ASSERT_TRUE(job.ok()) << job.status();
    feed->open = 50;
    WaitFor([&] { return sink.size() == 50; });
    ASSERT_TRUE(job->StopWithSavepoint(savepoint).ok());
    job->Wait().IgnoreError();
  }
  RuntimeOptions o = Options(3);
  o.restore_from = savepoint;
  StreamEnvironment env(o);
  CollectSink<Counted> sink;
  build(env, sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("resumed");
  ASSERT_TRUE(job.ok()) << job.status();
  feed->open = 100;
  WaitFor([&] { return sink.size() == 50; });
  job->Cancel();
  job->Wait().IgnoreError();
  std::vector<Counted> expected;
  for (int i = 50; i < 100; ++i) expected.emplace_back("k" + std::to_string(i % 5), i / 5 + 1);
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

// Keyed state in a Map on a plain DataStream still fails the job clearly.
TEST_P(KeyedFunctionStateTest, KeyedStateInAMapOnAPlainStreamFailsTheJob) {
  StreamEnvironment env(Options(1));
  CollectSink<Counted> sink;
  env.FromCollection(Records(3, 1)).Map(CountPerKey()).Name("counter").SinkTo(sink);
  absl::Status status = env.Execute("misuse");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("operator 'counter': state 'count'"));
}

INSTANTIATE_TEST_SUITE_P(Backends, KeyedFunctionStateTest,
                         ::testing::Values(Param{StateBackendKind::kHashMap},
                                           Param{StateBackendKind::kRocksDb}),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return std::string(StateBackendName(info.param.backend));
                         });

}  // namespace
}  // namespace sluice
