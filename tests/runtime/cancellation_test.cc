// Cancellation of running jobs, and the JobHandle contract.
#include <sluice/sluice.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

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

// Waits until `counter` reaches `at_least` (the job is really running), at most 30 s.
void AwaitProgress(const std::atomic<int64_t>& counter, int64_t at_least) {
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (counter.load() < at_least && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_GE(counter.load(), at_least) << "the job made no progress";
}

struct UnboundedCase {
  double records_per_second;
  int parallelism;
};

class UnboundedCancelTest : public ::testing::TestWithParam<UnboundedCase> {};

TEST_P(UnboundedCancelTest, CancelFromTheTestThread) {
  const UnboundedCase c = GetParam();
  const int threads_before = BaselineThreadCount();
  auto seen = std::make_shared<std::atomic<int64_t>>(0);
  StreamEnvironment env({.parallelism = c.parallelism, .batch_size = 64, .worker_threads = 2});
  env.FromSource(
         GeneratorSource([](int64_t i) { return i; }, {.records_per_second = c.records_per_second}))
      .Rebalance()
      .Map([](int64_t x) { return x * 2; })
      .KeyBy([](int64_t x) { return x % 7; })
      .Reduce([](int64_t a, int64_t b) { return a + b; })
      .SinkTo(CallbackSink<int64_t>([seen](const int64_t&) { ++*seen; }));
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("endless");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->name(), "endless");
  AwaitProgress(*seen, 10);
  EXPECT_FALSE(job->IsDone());
  job->Cancel();
  ASSERT_TRUE(job->WaitFor(absl::Seconds(30))) << "cancelled job did not end";
  EXPECT_TRUE(job->IsDone());
  absl::Status status = job->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("endless"));
  EXPECT_LE(ThreadCountSettled(threads_before), threads_before);
}

INSTANTIATE_TEST_SUITE_P(Rates, UnboundedCancelTest,
                         ::testing::Values(UnboundedCase{0, 1}, UnboundedCase{0, 3},
                                           UnboundedCase{500, 1}, UnboundedCase{500, 2}),
                         [](const ::testing::TestParamInfo<UnboundedCase>& info) {
                           return std::string(info.param.records_per_second > 0 ? "RateLimited"
                                                                                : "Unlimited") +
                                  "P" + std::to_string(info.param.parallelism);
                         });

// A source that never has data: the job is idle, and only Cancel() ends it.
class Silent : public Source<int> {
 public:
  bool IsBounded() const override { return false; }
  std::string Describe() const override { return "silent"; }
  absl::StatusOr<std::unique_ptr<SourceReader<int>>> CreateReader(const SourceContext&) override {
    return std::unique_ptr<SourceReader<int>>(new Reader());
  }

 private:
  class Reader : public SourceReader<int> {
   public:
    absl::StatusOr<PollResult> PollNext(Collector<int>&, int) override {
      return PollResult::WaitForWake();
    }
  };
};

TEST(CancelTest, IdleJobCancelsQuickly) {
  const int threads_before = BaselineThreadCount();
  StreamEnvironment env({.parallelism = 2, .worker_threads = 2});
  CollectSink<int> sink;
  env.FromSource(Silent()).Rebalance().Map([](int x) { return x; }).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok());
  EXPECT_FALSE(job->WaitFor(absl::Milliseconds(50)));
  job->Cancel();
  EXPECT_TRUE(job->WaitFor(absl::Seconds(2)));
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  EXPECT_LE(ThreadCountSettled(threads_before), threads_before);
}

TEST(CancelTest, SlowlyRateLimitedJobCancelsQuickly) {
  // One record per 10 s: the source task sleeps on a timer when it is cancelled.
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> sink;
  env.FromSource(GeneratorSource([](int64_t i) { return i; }, {.records_per_second = 0.1}))
      .SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok());
  absl::SleepFor(absl::Milliseconds(20));
  job->Cancel();
  EXPECT_TRUE(job->WaitFor(absl::Seconds(2)));
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
}

TEST(CancelTest, CancelIsIdempotentAndWaitCanBeRepeated) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int> sink;
  env.FromSource(Silent()).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok());
  job->Cancel();
  job->Cancel();
  EXPECT_EQ(WaitOrFail(*job).code(), absl::StatusCode::kCancelled);
  job->Cancel();
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(job->WaitFor(absl::ZeroDuration()));
}

TEST(CancelTest, CancelAfterCompletionKeepsSuccess) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 100).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(WaitOrFail(*job).ok());
  job->Cancel();
  EXPECT_TRUE(job->Wait().ok());
  EXPECT_EQ(sink.size(), 100u);
}

TEST(CancelTest, WaitForWithInfiniteTimeout) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 1000).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok());
  EXPECT_TRUE(job->WaitFor(absl::InfiniteDuration()));
  EXPECT_TRUE(job->Wait().ok());
  EXPECT_EQ(sink.size(), 1000u);
}

TEST(CancelTest, WaitForWithNegativeTimeout) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int> sink;
  env.FromSource(Silent()).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok());
  EXPECT_FALSE(job->WaitFor(-absl::Seconds(1)));
  EXPECT_FALSE(job->WaitFor(absl::ZeroDuration()));
}

TEST(CancelTest, CancelFromAnotherThreadUnblocksWait) {
  StreamEnvironment env({.parallelism = 2, .worker_threads = 2});
  CollectSink<int> sink;
  env.FromSource(Silent()).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok());
  std::thread canceller([&job] {
    absl::SleepFor(absl::Milliseconds(30));
    job->Cancel();
  });
  absl::Status status = WaitOrFail(*job);
  canceller.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
}

TEST(CancelTest, ConcurrentWaitersBothSeeTheJoinedJob) {
  const int threads_before = BaselineThreadCount();
  StreamEnvironment env({.parallelism = 2, .worker_threads = 3});
  CollectSink<int> sink;
  env.FromSource(Silent()).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok());
  std::atomic<int> after_wait_threads{-1};
  std::thread waiter([&] {
    absl::Status s = job->Wait();
    EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
    after_wait_threads = ThreadCountSettled(threads_before + 1);
  });
  absl::SleepFor(absl::Milliseconds(20));
  job->Cancel();
  absl::Status status = job->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  // When Wait() returns the worker pool is joined, whichever thread joined it: only this thread
  // and the waiter remain beyond the threads from before.
  EXPECT_LE(ThreadCountSettled(threads_before + 1), threads_before + 1);
  waiter.join();
  EXPECT_LE(after_wait_threads.load(), threads_before + 1);
  EXPECT_LE(ThreadCountSettled(threads_before), threads_before);
}

TEST(CancelTest, DestroyingARunningHandleCancelsAndJoins) {
  const int threads_before = BaselineThreadCount();
  auto seen = std::make_shared<std::atomic<int64_t>>(0);
  {
    StreamEnvironment env({.parallelism = 2, .worker_threads = 2});
    env.FromSource(GeneratorSource([](int64_t i) { return i; }, {}))
        .Rebalance()
        .SinkTo(CallbackSink<int64_t>([seen](const int64_t&) { ++*seen; }));
    absl::StatusOr<JobHandle> job = env.ExecuteAsync();
    ASSERT_TRUE(job.ok());
    AwaitProgress(*seen, 1000);
    EXPECT_GT(ThreadCount(), threads_before);
  }  // ~JobHandle: cancel and join
  EXPECT_LE(ThreadCountSettled(threads_before), threads_before);
  int64_t after = seen->load();
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(seen->load(), after) << "records still flow after the handle was destroyed";
}

TEST(CancelTest, DestroyingAnIdleRateLimitedHandle) {
  const int threads_before = BaselineThreadCount();
  {
    StreamEnvironment env({.parallelism = 2, .worker_threads = 2});
    CollectSink<int64_t> sink;
    env.FromSource(GeneratorSource([](int64_t i) { return i; }, {.records_per_second = 1}))
        .SinkTo(sink);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync();
    ASSERT_TRUE(job.ok());
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_LE(ThreadCountSettled(threads_before), threads_before);
}

TEST(CancelTest, MoveAssigningAHandleCancelsTheOldJob) {
  StreamEnvironment env({.parallelism = 1, .worker_threads = 1});
  CollectSink<int> sink;
  env.FromSource(Silent()).SinkTo(sink);
  absl::StatusOr<JobHandle> first = env.ExecuteAsync("first");
  ASSERT_TRUE(first.ok());
  CollectSink<int64_t> numbers;
  env.FromSequence(1, 3).SinkTo(numbers);
  absl::StatusOr<JobHandle> second = env.ExecuteAsync("second");
  ASSERT_TRUE(second.ok());
  *first = std::move(*second);  // cancels and joins "first"
  EXPECT_EQ(first->name(), "second");
  EXPECT_TRUE(WaitOrFail(*first).ok());
  EXPECT_EQ(numbers.size(), 3u);
}

TEST(CancelTest, CancelDuringBackpressure) {
  // A sink blocked far behind its source: the source waits on a full channel when cancelled.
  StreamEnvironment env(
      {.parallelism = 1, .batch_size = 4, .channel_capacity = 1, .worker_threads = 2});
  auto seen = std::make_shared<std::atomic<int64_t>>(0);
  env.FromSource(GeneratorSource([](int64_t i) { return i; }, {}))
      .Rebalance()
      .SinkTo(CallbackSink<int64_t>([seen](const int64_t&) {
        ++*seen;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }));
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok());
  AwaitProgress(*seen, 50);
  job->Cancel();
  EXPECT_EQ(WaitOrFail(*job).code(), absl::StatusCode::kCancelled);
}

TEST(CancelTest, ManyShortJobsInARow) {
  const int threads_before = BaselineThreadCount();
  for (int i = 0; i < 30; ++i) {
    StreamEnvironment env(
        {.parallelism = 2, .batch_size = 3, .channel_capacity = 1, .worker_threads = 2});
    CollectSink<int64_t> sink;
    env.FromSequence(1, 50).Rebalance().Map([](int64_t x) { return x; }).SinkTo(sink);
    if (i % 2 == 0) {
      ASSERT_TRUE(env.Execute().ok());
      ASSERT_EQ(sink.size(), 50u);
    } else {
      absl::StatusOr<JobHandle> job = env.ExecuteAsync();
      ASSERT_TRUE(job.ok());
      job->Cancel();
      absl::Status status = WaitOrFail(*job);
      // Either it finished first or the cancel won.
      EXPECT_TRUE(status.ok() || status.code() == absl::StatusCode::kCancelled) << status;
      if (status.ok()) {
        EXPECT_EQ(sink.size(), 50u);
      }
    }
  }
  EXPECT_LE(ThreadCountSettled(threads_before), threads_before);
}

}  // namespace
}  // namespace sluice
