// A source fed by another thread: it answers WaitForWake() when empty and the feeder wakes it
// through SourceContext::Wake(). A lost wake-up would hang the job.
#include <sluice/sluice.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/clock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime_test_util.h"

namespace sluice {
namespace {

using ::testing::ElementsAreArray;
using ::testing::UnorderedElementsAreArray;
using testing_util::WaitOrFail;

struct Feed {
  std::mutex mu;
  std::deque<int> queue;
  bool closed = false;
  std::optional<SourceContext> context;

  void Push(int v) {
    {
      std::lock_guard<std::mutex> lock(mu);
      queue.push_back(v);
    }
    context->Wake();
  }
  void Close() {
    {
      std::lock_guard<std::mutex> lock(mu);
      closed = true;
    }
    context->Wake();
  }
};

class FedSource : public Source<int> {
 public:
  explicit FedSource(std::shared_ptr<Feed> feed) : feed_(std::move(feed)) {}
  bool IsBounded() const override { return true; }
  int MaxParallelism() const override { return 1; }
  std::string Describe() const override { return "fed"; }
  absl::StatusOr<std::unique_ptr<SourceReader<int>>> CreateReader(
      const SourceContext& ctx) override {
    std::lock_guard<std::mutex> lock(feed_->mu);
    feed_->context.emplace(ctx);
    return std::unique_ptr<SourceReader<int>>(new Reader(feed_));
  }

 private:
  class Reader : public SourceReader<int> {
   public:
    explicit Reader(std::shared_ptr<Feed> feed) : feed_(std::move(feed)) {}
    absl::StatusOr<PollResult> PollNext(Collector<int>& out, int max_records) override {
      std::lock_guard<std::mutex> lock(feed_->mu);
      for (int i = 0; i < max_records && !feed_->queue.empty(); ++i) {
        out.Collect(feed_->queue.front());
        feed_->queue.pop_front();
      }
      if (!feed_->queue.empty()) return PollResult::More();
      return feed_->closed ? PollResult::End() : PollResult::WaitForWake();
    }

   private:
    std::shared_ptr<Feed> feed_;
  };
  std::shared_ptr<Feed> feed_;
};

void FeedInBursts(Feed& feed, int count) {
  for (int i = 0; i < count; ++i) {
    feed.Push(i);
    if (i % 97 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  feed.Close();
}

TEST(ExternalSourceTest, EveryRecordArrivesInOrder) {
  auto feed = std::make_shared<Feed>();
  StreamEnvironment env({.parallelism = 1, .batch_size = 32, .worker_threads = 2});
  CollectSink<int> sink;
  env.FromSource(FedSource(feed)).Map([](int x) { return x; }).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("fed");
  ASSERT_TRUE(job.ok()) << job.status();
  std::thread feeder([&] { FeedInBursts(*feed, 5000); });
  absl::Status status = WaitOrFail(*job);
  feeder.join();
  ASSERT_TRUE(status.ok()) << status;
  std::vector<int> expected;
  for (int i = 0; i < 5000; ++i) expected.push_back(i);
  EXPECT_THAT(sink.values(), ElementsAreArray(expected));
}

TEST(ExternalSourceTest, FedThroughAnExchange) {
  for (int round = 0; round < 5; ++round) {
    auto feed = std::make_shared<Feed>();
    StreamEnvironment env(
        {.parallelism = 3, .batch_size = 4, .channel_capacity = 1, .worker_threads = 2});
    CollectSink<int> sink;
    env.FromSource(FedSource(feed)).Rebalance().Map([](int x) { return x; }).SinkTo(sink);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("fed");
    ASSERT_TRUE(job.ok()) << job.status();
    std::thread feeder([&] { FeedInBursts(*feed, 2000); });
    absl::Status status = WaitOrFail(*job);
    feeder.join();
    ASSERT_TRUE(status.ok()) << status;
    std::vector<int> expected;
    for (int i = 0; i < 2000; ++i) expected.push_back(i);
    EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
  }
}

}  // namespace
}  // namespace sluice
