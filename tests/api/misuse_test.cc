// Misuse is reported by Execute() with a precise status before any record flows; execution modes.
#include <sluice/sluice.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

// A generator that counts the records it makes: misuse must be caught before the first one.
struct Counted {
  std::shared_ptr<std::atomic<int64_t>> made = std::make_shared<std::atomic<int64_t>>(0);
  int64_t operator()(int64_t i) const {
    ++*made;
    return i;
  }
};

void ExpectError(const absl::Status& status, absl::StatusCode code,
                 const std::vector<std::string>& substrings) {
  EXPECT_EQ(status.code(), code) << status;
  for (const std::string& s : substrings) {
    EXPECT_THAT(std::string(status.message()), HasSubstr(s));
  }
}

absl::Status RunWithOptions(RuntimeOptions options, Counted gen) {
  StreamEnvironment env(options);
  CollectSink<int64_t> sink;
  env.FromSource(GeneratorSource(gen, {.count = 100})).SinkTo(sink);
  return env.Execute();
}

TEST(RuntimeOptionsTest, DefaultsAreValid) { EXPECT_TRUE(RuntimeOptions{}.Validate().ok()); }

TEST(RuntimeOptionsTest, InvalidFields) {
  struct Case {
    RuntimeOptions options;
    std::string field;
  };
  std::vector<Case> cases = {
      {{.parallelism = -1}, "parallelism"},
      {{.max_parallelism = 0}, "max_parallelism"},
      {{.max_parallelism = 40000}, "max_parallelism"},
      {{.batch_size = 0}, "batch_size"},
      {{.batch_size = -3}, "batch_size"},
      {{.channel_capacity = 0}, "channel_capacity"},
      {{.worker_threads = -1}, "worker_threads"},
  };
  for (const Case& c : cases) {
    Counted gen;
    absl::Status status = RunWithOptions(c.options, gen);
    ExpectError(status, absl::StatusCode::kInvalidArgument, {"RuntimeOptions." + c.field});
    EXPECT_EQ(gen.made->load(), 0);
  }
}

TEST(RuntimeOptionsTest, BoundaryValuesAreValid) {
  for (RuntimeOptions options :
       {RuntimeOptions{.max_parallelism = 1}, RuntimeOptions{.max_parallelism = 32768},
        RuntimeOptions{.batch_size = 1, .channel_capacity = 1},
        RuntimeOptions{.parallelism = 1, .worker_threads = 1}}) {
    EXPECT_TRUE(options.Validate().ok());
    Counted gen;
    EXPECT_TRUE(RunWithOptions(options, gen).ok());
    EXPECT_EQ(gen.made->load(), 100);
  }
}

TEST(MisuseTest, SetParallelismZero) {
  StreamEnvironment env({.parallelism = 2});
  Counted gen;
  CollectSink<int64_t> sink;
  env.FromSource(GeneratorSource(gen, {.count = 10}))
      .Map([](int64_t x) { return x; })
      .Name("mapper")
      .SetParallelism(0)
      .SinkTo(sink);
  ExpectError(env.Execute(), absl::StatusCode::kInvalidArgument,
              {"mapper", "parallelism must be >= 1, got 0"});
  EXPECT_EQ(gen.made->load(), 0);
}

TEST(MisuseTest, SinkParallelismZero) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 10).SinkTo(sink).SetParallelism(-2);
  ExpectError(env.Execute(), absl::StatusCode::kInvalidArgument,
              {"Sink: Collect", "parallelism must be >= 1, got -2"});
}

TEST(MisuseTest, ParallelNonParallelSource) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromCollection(std::vector<int64_t>{1, 2}).SetParallelism(2).SinkTo(sink);
  ExpectError(env.Execute(), absl::StatusCode::kInvalidArgument,
              {"Source: Collection Source", "at most 1", "parallelism 2"});
  EXPECT_EQ(sink.size(), 0u);
}

TEST(MisuseTest, ForwardBetweenDifferentParallelism) {
  StreamEnvironment env({.parallelism = 2});
  Counted gen;
  CollectSink<int64_t> sink;
  env.FromSource(GeneratorSource(gen, {.count = 10}))
      .Name("gen")
      .Forward()
      .Map([](int64_t x) { return x; })
      .Name("narrow")
      .SetParallelism(1)
      .SinkTo(sink);
  ExpectError(env.Execute(), absl::StatusCode::kInvalidArgument,
              {"forward partitioning", "'gen' (parallelism 2)", "'narrow' (parallelism 1)"});
  EXPECT_EQ(gen.made->load(), 0);
}

TEST(MisuseTest, KeyedParallelismAboveMaxParallelism) {
  StreamEnvironment env({.parallelism = 2, .max_parallelism = 4});
  Counted gen;
  CollectSink<int64_t> sink;
  env.FromSource(GeneratorSource(gen, {.count = 10}))
      .KeyBy([](int64_t x) { return x; })
      .Reduce([](int64_t a, int64_t b) { return a + b; })
      .Name("summer")
      .SetParallelism(5)
      .SinkTo(sink);
  ExpectError(env.Execute(), absl::StatusCode::kInvalidArgument,
              {"summer", "parallelism 5", "max_parallelism", "4"});
  EXPECT_EQ(gen.made->load(), 0);
}

TEST(MisuseTest, NonKeyedParallelismAboveMaxParallelismIsFine) {
  StreamEnvironment env({.parallelism = 2, .max_parallelism = 1});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 5).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(1, 2, 3, 4, 5));
}

TEST(MisuseTest, BatchModeWithUnboundedSource) {
  StreamEnvironment env({.parallelism = 1, .execution_mode = ExecutionMode::kBatch});
  Counted gen;
  CollectSink<int64_t> sink;
  env.FromSource(GeneratorSource(gen, {}), "endless").SinkTo(sink);
  ExpectError(env.Execute(), absl::StatusCode::kInvalidArgument, {"BATCH", "endless", "unbounded"});
  EXPECT_EQ(gen.made->load(), 0);
}

TEST(MisuseTest, NoSink) {
  StreamEnvironment env({.parallelism = 1});
  Counted gen;
  env.FromSource(GeneratorSource(gen, {.count = 10})).Map([](int64_t x) { return x; });
  ExpectError(env.Execute(), absl::StatusCode::kFailedPrecondition, {"no sink"});
  EXPECT_EQ(gen.made->load(), 0);
}

TEST(MisuseTest, EmptyEnvironment) {
  StreamEnvironment env;
  ExpectError(env.Execute(), absl::StatusCode::kFailedPrecondition, {"no operators"});
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ExpectError(job.status(), absl::StatusCode::kFailedPrecondition, {"no operators"});
}

TEST(MisuseTest, SideOutputOfASource) {
  StreamEnvironment env({.parallelism = 1});
  OutputTag<int64_t> tag("extra");
  CollectSink<int64_t> sink;
  auto source = env.FromSequence(1, 10);
  source.SinkTo(sink);
  source.GetSideOutput(tag).SinkTo(sink);
  ExpectError(env.Execute(), absl::StatusCode::kInvalidArgument,
              {"GetSideOutput('extra')", "source", "Sequence"});
  EXPECT_EQ(sink.size(), 0u);
}

TEST(MisuseTest, SideOutputRequestedWithTwoTypes) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> a;
  CollectSink<std::string> b;
  auto p = env.FromSequence(1, 10).Process(
      [](const int64_t& x, ProcessContext&, Collector<int64_t>& out) { out.Collect(x); });
  p.GetSideOutput(OutputTag<int64_t>("x")).SinkTo(a);
  p.GetSideOutput(OutputTag<std::string>("x")).SinkTo(b);
  ExpectError(env.Execute(), absl::StatusCode::kInvalidArgument, {"side output 'x'", "two"});
}

TEST(MisuseTest, SideOutputEmittedWithAnotherTypeFailsTheJob) {
  // The process function emits an int64 under a tag that was requested as a string: the job
  // fails with an error instead of aborting the process.
  StreamEnvironment env({.parallelism = 1});
  CollectSink<std::string> side;
  CollectSink<int64_t> main_sink;
  OutputTag<int64_t> as_int("x");
  OutputTag<std::string> as_string("x");
  auto p = env.FromSequence(1, 10).Process(
      [as_int](const int64_t& x, ProcessContext& ctx, Collector<int64_t>& out) {
        ctx.Output(as_int, x);
        out.Collect(x);
      });
  p.Name("mixer").SinkTo(main_sink);
  p.GetSideOutput(as_string).SinkTo(side);
  absl::Status status = env.Execute();
  ExpectError(status, absl::StatusCode::kInvalidArgument, {"mixer", "side output 'x'"});
}

TEST(MisuseTest, SetParallelismOnAUnion) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> sink;
  auto a = env.FromSequence(1, 2);
  a.Union(env.FromSequence(3, 4)).SetParallelism(2).SinkTo(sink);
  ExpectError(env.Execute(), absl::StatusCode::kInvalidArgument, {"SetParallelism()", "union"});
}

TEST(MisuseTest, SinkAboveItsMaxParallelism) {
  class Single : public Sink<int64_t> {
   public:
    int MaxParallelism() const override { return 1; }
    std::string Describe() const override { return "single"; }
    absl::StatusOr<std::unique_ptr<SinkWriter<int64_t>>> CreateWriter(
        const RuntimeContext&) override {
      return absl::UnimplementedError("never");
    }
  };
  StreamEnvironment env({.parallelism = 1});
  env.FromSequence(1, 2).SinkTo(Single()).SetParallelism(3);
  ExpectError(env.Execute(), absl::StatusCode::kInvalidArgument, {"Sink: single", "at most 1"});
}

TEST(MisuseTest, SinkWriterCreationFailure) {
  class Refusing : public Sink<int64_t> {
   public:
    std::string Describe() const override { return "refusing"; }
    absl::StatusOr<std::unique_ptr<SinkWriter<int64_t>>> CreateWriter(
        const RuntimeContext&) override {
      return absl::PermissionDeniedError("no access");
    }
  };
  StreamEnvironment env({.parallelism = 2});
  env.FromSequence(1, 2).SinkTo(Refusing());
  ExpectError(env.Execute(), absl::StatusCode::kPermissionDenied, {"Sink: refusing", "no access"});
}

TEST(MisuseTest, ErrorsDoNotPoisonTheNextJob) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 2).SetParallelism(0).SinkTo(sink);
  EXPECT_FALSE(env.Execute().ok());
  env.FromSequence(1, 2).SinkTo(sink);
  EXPECT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(1, 2));
}

TEST(MisuseTest, SideOutputWithEmptyTag) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<std::string> sink;
  auto p = env.FromSequence(1, 10).Map([](int64_t x) { return x; });
  p.GetSideOutput(OutputTag<std::string>("")).SinkTo(sink);
  ExpectError(env.Execute(), absl::StatusCode::kInvalidArgument, {"GetSideOutput()", "non-empty"});
}

TEST(MisuseTest, StreamOfAnExecutedJob) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> sink;
  auto old = env.FromSequence(1, 3);
  DataStreamSink<int64_t> old_sink = old.SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  // The next job must not reach into the graph of the executed one.
  env.FromSequence(1, 3).SinkTo(sink);
  old.Map([](int64_t x) { return x; }).SinkTo(sink);
  ExpectError(env.Execute(), absl::StatusCode::kFailedPrecondition,
              {"operator 'Map'", "already executed"});
  env.FromSequence(1, 3).SinkTo(sink);
  old.SetParallelism(3);
  ExpectError(env.Execute(), absl::StatusCode::kFailedPrecondition,
              {"SetParallelism()", "already executed"});
  env.FromSequence(1, 3).SinkTo(sink);
  old_sink.Name("renamed");
  ExpectError(env.Execute(), absl::StatusCode::kFailedPrecondition, {"Name()", "already executed"});
  env.FromSequence(1, 3).Union(old).SinkTo(sink);
  ExpectError(env.Execute(), absl::StatusCode::kFailedPrecondition,
              {"Union()", "already executed"});
  EXPECT_EQ(sink.size(), 3u);
}

TEST(MisuseTest, UnionAcrossEnvironments) {
  StreamEnvironment a({.parallelism = 1});
  StreamEnvironment b({.parallelism = 1});
  CollectSink<int64_t> sink;
  a.FromSequence(1, 3).Union(b.FromSequence(4, 6)).SinkTo(sink);
  ExpectError(a.Execute(), absl::StatusCode::kInvalidArgument, {"Union()", "different"});
}

TEST(MisuseTest, MovedFromJobHandle) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 3).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("moved");
  ASSERT_TRUE(job.ok());
  JobHandle other = std::move(*job);
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kFailedPrecondition);  // NOLINT: use after move
  EXPECT_TRUE(job->WaitFor(absl::Seconds(1)));
  EXPECT_TRUE(job->IsDone());
  job->Cancel();
  EXPECT_EQ(job->name(), "");
  EXPECT_TRUE(other.Wait().ok());
  EXPECT_EQ(other.name(), "moved");
  EXPECT_EQ(sink.size(), 3u);
}

// --- Execution modes -----------------------------------------------------------------------------

TEST(ExecutionModeTest, Names) {
  EXPECT_STREQ(ExecutionModeName(ExecutionMode::kStreaming), "STREAMING");
  EXPECT_STREQ(ExecutionModeName(ExecutionMode::kBatch), "BATCH");
  EXPECT_STREQ(ExecutionModeName(ExecutionMode::kAutomatic), "AUTOMATIC");
}

// As Flink (execution.runtime-mode = STREAMING by default): a job over bounded sources runs in
// STREAMING mode unless the host asks otherwise — rolling aggregations emit every update, and
// watermarks and late data work as in an unbounded job.
TEST(ExecutionModeTest, StreamingIsTheDefault) {
  EXPECT_EQ(RuntimeOptions().execution_mode, ExecutionMode::kStreaming);
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  auto mode = std::make_shared<std::atomic<int>>(-1);
  env.FromSequence(1, 4)
      .KeyBy([](int64_t) { return 0; })
      .Reduce([](int64_t a, int64_t b) { return a + b; })
      .Process([mode](const int64_t& v, ProcessContext& ctx, Collector<int64_t>& out) {
        mode->store(ctx.runtime().batch_mode ? 1 : 0);
        out.Collect(v);
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(1, 3, 6, 10));
  EXPECT_EQ(mode->load(), 0);
}

TEST(ExecutionModeTest, AutomaticIsBatchWhenEverySourceIsBounded) {
  StreamEnvironment env({.parallelism = 2, .execution_mode = ExecutionMode::kAutomatic});
  CollectSink<std::pair<int64_t, int64_t>> sink;
  auto mode = std::make_shared<std::atomic<int>>(-1);
  env.FromSequence(1, 20)
      .Map([](int64_t x) { return std::pair<int64_t, int64_t>(x % 2, x); })
      .KeyBy([](const auto& p) { return p.first; })
      .Reduce([](const auto& a, const auto& b) { return std::pair(a.first, a.second + b.second); })
      .Process([mode](const std::pair<int64_t, int64_t>& p, ProcessContext& ctx,
                      Collector<std::pair<int64_t, int64_t>>& out) {
        mode->store(ctx.runtime().batch_mode ? 1 : 0);
        out.Collect(p);
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  using P = std::pair<int64_t, int64_t>;
  EXPECT_THAT(sink.values(), UnorderedElementsAre(P(0, 110), P(1, 100)));
  EXPECT_EQ(mode->load(), 1);
}

TEST(ExecutionModeTest, StreamingModeWithBoundedSources) {
  StreamEnvironment env({.parallelism = 1, .execution_mode = ExecutionMode::kStreaming});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 4)
      .KeyBy([](int64_t) { return 0; })
      .Reduce([](int64_t a, int64_t b) { return a + b; })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(1, 3, 6, 10));
}

TEST(ExecutionModeTest, AutomaticIsStreamingWhenASourceIsUnbounded) {
  StreamEnvironment env({.parallelism = 1, .worker_threads = 2});
  auto updates = std::make_shared<std::atomic<int64_t>>(0);
  auto batch_mode = std::make_shared<std::atomic<int>>(-1);
  auto bounded = env.FromSequence(1, 10);
  auto endless = env.FromSource(
      GeneratorSource([](int64_t) { return int64_t{0}; }, {.records_per_second = 1000}));
  bounded.Union(endless)
      .KeyBy([](int64_t x) { return x % 2; })
      .Reduce([](int64_t a, int64_t b) { return a + b; })
      .Process([batch_mode](const int64_t& x, ProcessContext& ctx, Collector<int64_t>& out) {
        batch_mode->store(ctx.runtime().batch_mode ? 1 : 0);
        out.Collect(x);
      })
      .SinkTo(CallbackSink<int64_t>([updates](const int64_t&) { ++*updates; }));
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok()) << job.status();
  // Rolling updates flow while the job runs: streaming mode.
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (updates->load() < 20 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  EXPECT_GE(updates->load(), 20);
  EXPECT_EQ(batch_mode->load(), 0);
  job->Cancel();
  ASSERT_TRUE(job->WaitFor(absl::Seconds(30))) << "cancelled job did not end";
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace sluice
