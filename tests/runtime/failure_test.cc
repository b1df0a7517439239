// Failure propagation: an exception in any user function fails the job promptly with its message
// and the operator's name, never hangs, and leaves no thread behind.
#include <sluice/sluice.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime_test_util.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using testing_util::BaselineThreadCount;
using testing_util::ThreadCount;
using testing_util::ThreadCountSettled;
using testing_util::WaitOrFail;

// Runs the job described in `env` asynchronously; expects it to fail with all of `substrings`
// within the no-hang bound and the thread count to return to its value before the job.
void ExpectJobFails(StreamEnvironment& env, const std::vector<std::string>& substrings,
                    absl::StatusCode code = absl::StatusCode::kUnknown) {
  const int threads_before = BaselineThreadCount();
  {
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("failing");
    ASSERT_TRUE(job.ok()) << job.status();
    absl::Status status = WaitOrFail(*job);
    EXPECT_EQ(status.code(), code) << status;
    for (const std::string& s : substrings) {
      EXPECT_THAT(std::string(status.message()), HasSubstr(s));
    }
    // Wait() joined the worker pool.
    EXPECT_LE(ThreadCountSettled(threads_before), threads_before);
  }
  EXPECT_LE(ThreadCountSettled(threads_before), threads_before);
}

struct FailureCase {
  int parallelism;
  int batch_size;
  int channel_capacity;
};

class MapFailureTest : public ::testing::TestWithParam<FailureCase> {};

TEST_P(MapFailureTest, ThrowingMapFailsTheJobWithItsMessageAndName) {
  const FailureCase c = GetParam();
  StreamEnvironment env({.parallelism = c.parallelism,
                         .batch_size = c.batch_size,
                         .channel_capacity = c.channel_capacity,
                         .worker_threads = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 100000)
      .Rebalance()
      .Map([](int64_t x) -> int64_t {
        if (x == 777) throw std::runtime_error("boom");
        return x;
      })
      .Name("exploder")
      .Rebalance()
      .SinkTo(sink);
  ExpectJobFails(env, {"boom", "exploder"});
  EXPECT_LT(sink.size(), 100000u);
}

INSTANTIATE_TEST_SUITE_P(Shapes, MapFailureTest,
                         ::testing::Values(FailureCase{1, 1024, 16}, FailureCase{2, 7, 1},
                                           FailureCase{4, 1, 1}, FailureCase{3, 64, 2}),
                         [](const ::testing::TestParamInfo<FailureCase>& info) {
                           const FailureCase& c = info.param;
                           return "P" + std::to_string(c.parallelism) + "Batch" +
                                  std::to_string(c.batch_size) + "Capacity" +
                                  std::to_string(c.channel_capacity);
                         });

TEST(FailureTest, ThrowingMapInAChain) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 1000)
      .Map([](int64_t x) -> int64_t {
        if (x == 500) throw std::runtime_error("boom");
        return x;
      })
      .Name("exploder")
      .SinkTo(sink);
  ExpectJobFails(env, {"boom", "exploder"});
}

TEST(FailureTest, ThrowingMapStopsAnUnboundedJob) {
  StreamEnvironment env({.parallelism = 2, .batch_size = 32, .worker_threads = 2});
  CollectSink<int64_t> sink;
  env.FromSource(GeneratorSource([](int64_t i) { return i; }, {}))
      .Rebalance()
      .Map([](int64_t x) -> int64_t {
        if (x == 5000) throw std::runtime_error("boom");
        return x;
      })
      .Name("exploder")
      .SinkTo(sink);
  ExpectJobFails(env, {"boom", "exploder"});
}

TEST(FailureTest, NonStandardException) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 10)
      .Filter([](int64_t x) -> bool {
        if (x == 5) throw 42;
        return true;
      })
      .Name("odd-thrower")
      .SinkTo(sink);
  ExpectJobFails(env, {"odd-thrower"});
}

TEST(FailureTest, ThrowingFlatMapAndProcess) {
  {
    StreamEnvironment env({.parallelism = 2});
    CollectSink<int64_t> sink;
    env.FromSequence(1, 100)
        .FlatMap([](const int64_t& x, Collector<int64_t>& out) {
          if (x == 50) throw std::invalid_argument("flat boom");
          out.Collect(x);
        })
        .Name("flat")
        .SinkTo(sink);
    ExpectJobFails(env, {"flat boom", "flat"});
  }
  {
    StreamEnvironment env({.parallelism = 2});
    CollectSink<int64_t> sink;
    env.FromSequence(1, 100)
        .KeyBy([](int64_t x) { return x % 3; })
        .Process([](const int64_t& x, KeyedProcessContext<int64_t>&, Collector<int64_t>& out) {
          if (x == 50) throw std::runtime_error("keyed boom");
          out.Collect(x);
        })
        .Name("keyed")
        .SinkTo(sink);
    ExpectJobFails(env, {"keyed boom", "keyed"});
  }
  {
    StreamEnvironment env({.parallelism = 2});
    CollectSink<int64_t> sink;
    env.FromSequence(1, 100)
        .KeyBy([](int64_t x) { return x % 3; })
        .Reduce([](int64_t a, int64_t b) -> int64_t {
          if (a + b > 1000) throw std::runtime_error("reduce boom");
          return a + b;
        })
        .Name("summer")
        .SinkTo(sink);
    ExpectJobFails(env, {"reduce boom", "summer"});
  }
}

TEST(FailureTest, ThrowingKeySelector) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 100)
      .Map([](int64_t x) { return x; })
      .Name("before-keyby")
      .KeyBy([](int64_t x) -> int64_t {
        if (x == 60) throw std::runtime_error("key boom");
        return x;
      })
      .Reduce([](int64_t a, int64_t b) { return a + b; })
      .SinkTo(sink);
  ExpectJobFails(env, {"key boom"});
}

TEST(FailureTest, ThrowingSourceGenerator) {
  StreamEnvironment env({.parallelism = 2, .worker_threads = 2});
  CollectSink<int64_t> sink;
  env.FromSource(GeneratorSource(
                     [](int64_t i) -> int64_t {
                       if (i == 321) throw std::runtime_error("generator boom");
                       return i;
                     },
                     {.count = 100000}),
                 "my-generator")
      .Rebalance()
      .SinkTo(sink);
  ExpectJobFails(env, {"generator boom", "my-generator"});
}

TEST(FailureTest, SourceReaderError) {
  class Broken : public Source<int> {
   public:
    bool IsBounded() const override { return false; }
    std::string Describe() const override { return "broken"; }
    absl::StatusOr<std::unique_ptr<SourceReader<int>>> CreateReader(const SourceContext&) override {
      return std::unique_ptr<SourceReader<int>>(new Reader());
    }

   private:
    class Reader : public SourceReader<int> {
     public:
      absl::StatusOr<PollResult> PollNext(Collector<int>& out, int) override {
        if (++polls_ == 5) return absl::DataLossError("corrupt input at poll 5");
        out.Collect(polls_);
        return PollResult::More();
      }

     private:
      int polls_ = 0;
    };
  };
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int> sink;
  env.FromSource(Broken()).SinkTo(sink);
  ExpectJobFails(env, {"Source: broken", "corrupt input at poll 5"}, absl::StatusCode::kDataLoss);
}

TEST(FailureTest, ThrowingSinkCallback) {
  StreamEnvironment env({.parallelism = 2, .batch_size = 8, .channel_capacity = 1});
  env.FromSequence(1, 100000)
      .Rebalance()
      .SinkTo(CallbackSink<int64_t>([](const int64_t& x) {
        if (x == 4321) throw std::runtime_error("sink boom");
      }))
      .Name("bad-sink");
  ExpectJobFails(env, {"sink boom", "bad-sink"});
}

TEST(FailureTest, SinkWriterErrorStatus) {
  class Failing : public Sink<int64_t> {
   public:
    std::string Describe() const override { return "failing"; }
    absl::StatusOr<std::unique_ptr<SinkWriter<int64_t>>> CreateWriter(
        const RuntimeContext&) override {
      return std::unique_ptr<SinkWriter<int64_t>>(new Writer());
    }

   private:
    class Writer : public SinkWriter<int64_t> {
     public:
      absl::Status Write(std::vector<int64_t>&) override { return absl::OkStatus(); }
      absl::Status Finish() override { return absl::ResourceExhaustedError("disk full"); }
    };
  };
  StreamEnvironment env({.parallelism = 2});
  env.FromSequence(1, 100).SinkTo(Failing());
  ExpectJobFails(env, {"Sink: failing", "disk full"}, absl::StatusCode::kResourceExhausted);
}

class ThrowingOpen : public ProcessFunction<int64_t, int64_t> {
 public:
  explicit ThrowingOpen(std::shared_ptr<std::atomic<int>> processed)
      : processed_(std::move(processed)) {}
  void Open(const RuntimeContext& ctx) override {
    if (ctx.subtask_index == 1) throw std::runtime_error("open boom");
  }
  void ProcessElement(const int64_t& x, Context&, Collector<int64_t>& out) override {
    ++*processed_;
    out.Collect(x);
  }

 private:
  std::shared_ptr<std::atomic<int>> processed_;
};

TEST(FailureTest, ThrowingOpen) {
  auto processed = std::make_shared<std::atomic<int>>(0);
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSource(GeneratorSource([](int64_t i) { return i; }, {}))
      .Rebalance()
      .Process(ThrowingOpen(processed))
      .Name("opener")
      .SinkTo(sink);
  ExpectJobFails(env, {"open boom", "opener"});
}

TEST(FailureTest, FirstFailureWins) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 10)
      .Map([](int64_t x) -> int64_t {
        if (x == 2) throw std::runtime_error("first");
        return x;
      })
      .SinkTo(CallbackSink<int64_t>([](const int64_t&) { throw std::runtime_error("second"); }));
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok());
  absl::Status status = WaitOrFail(*job);
  // Batch of 1024: the map throws before anything reaches the sink.
  EXPECT_THAT(std::string(status.message()), HasSubstr("first"));
  // Cancel after the end changes nothing; Wait() may be called again.
  job->Cancel();
  EXPECT_EQ(job->Wait(), status);
}

TEST(FailureTest, ExecuteReturnsTheFailureSynchronously) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 100)
      .Map([](int64_t x) -> int64_t {
        if (x == 99) throw std::runtime_error("boom");
        return x;
      })
      .Name("exploder")
      .SinkTo(sink);
  const int threads_before = BaselineThreadCount();
  absl::Status status = env.Execute();
  EXPECT_THAT(std::string(status.message()), HasSubstr("boom"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("exploder"));
  EXPECT_LE(ThreadCountSettled(threads_before), threads_before);
}

}  // namespace
}  // namespace sluice
