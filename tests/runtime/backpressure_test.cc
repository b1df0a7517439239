// Backpressure: a fast source feeding a slow sink holds only what the bounded channels hold.
#include <sluice/sluice.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime_test_util.h"

namespace sluice {
namespace {

using testing_util::WaitOrFail;

// Counters shared by the generator and the sink: records made and records fully consumed.
struct Flow {
  std::atomic<int64_t> produced{0};
  std::atomic<int64_t> consumed{0};
  std::atomic<int64_t> max_in_flight{0};
  std::atomic<int64_t> sum{0};

  void Produced() {
    int64_t in_flight = produced.fetch_add(1) + 1 - consumed.load();
    int64_t seen = max_in_flight.load();
    while (in_flight > seen && !max_in_flight.compare_exchange_weak(seen, in_flight)) {
    }
  }
};

// A sink that sleeps about 1 ms per batch, then counts the batch as consumed.
class SlowSink : public Sink<int64_t> {
 public:
  explicit SlowSink(std::shared_ptr<Flow> flow) : flow_(std::move(flow)) {}
  std::string Describe() const override { return "slow"; }
  absl::StatusOr<std::unique_ptr<SinkWriter<int64_t>>> CreateWriter(
      const RuntimeContext&) override {
    return std::unique_ptr<SinkWriter<int64_t>>(new Writer(flow_));
  }

 private:
  class Writer : public SinkWriter<int64_t> {
   public:
    explicit Writer(std::shared_ptr<Flow> flow) : flow_(std::move(flow)) {}
    absl::Status Write(std::vector<int64_t>& records) override {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      int64_t s = 0;
      for (int64_t r : records) s += r;
      flow_->sum += s;
      flow_->consumed += static_cast<int64_t>(records.size());
      return absl::OkStatus();
    }

   private:
    std::shared_ptr<Flow> flow_;
  };
  std::shared_ptr<Flow> flow_;
};

struct BackpressureCase {
  int source_parallelism;
  int map_parallelism;  // 0 = no map stage
  int sink_parallelism;
};

class BackpressureTest : public ::testing::TestWithParam<BackpressureCase> {};

TEST_P(BackpressureTest, InFlightRecordsStayBoundedByChannelCapacity) {
  const BackpressureCase c = GetParam();
  constexpr int kBatch = 16;
  constexpr int kCapacity = 2;
  constexpr int64_t kCount = 12000;
  auto flow = std::make_shared<Flow>();
  StreamEnvironment env(
      {.parallelism = 1, .batch_size = kBatch, .channel_capacity = kCapacity, .worker_threads = 4});
  auto source = env.FromSource(GeneratorSource(
                                   [flow](int64_t i) {
                                     flow->Produced();
                                     return i;
                                   },
                                   {.count = kCount}))
                    .SetParallelism(c.source_parallelism);
  int channels = 0;
  int operators = 2;
  int upstream = c.source_parallelism;
  DataStream<int64_t> stream = source;
  if (c.map_parallelism > 0) {
    stream = stream.Rebalance().Map([](int64_t x) { return x; }).SetParallelism(c.map_parallelism);
    channels += upstream * c.map_parallelism;
    upstream = c.map_parallelism;
    ++operators;
  }
  stream.Rebalance().SinkTo(SlowSink(flow)).SetParallelism(c.sink_parallelism);
  channels += upstream * c.sink_parallelism;
  int subtasks = c.source_parallelism + c.sink_parallelism + std::max(c.map_parallelism, 0);

  absl::StatusOr<JobHandle> job = env.ExecuteAsync("backpressure");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(WaitOrFail(*job).ok());

  EXPECT_EQ(flow->produced.load(), kCount);
  EXPECT_EQ(flow->consumed.load(), kCount);
  EXPECT_EQ(flow->sum.load(), kCount * (kCount - 1) / 2);
  // Each channel holds at most `capacity` batches (+1 pushed after the last capacity check); each
  // writer buffers at most one partial batch per channel; each subtask holds a batch in hand.
  const int64_t bound = static_cast<int64_t>(channels) * (kCapacity + 2) * kBatch +
                        static_cast<int64_t>(subtasks) * operators * kBatch;
  EXPECT_LE(flow->max_in_flight.load(), bound)
      << "channels " << channels << ", subtasks " << subtasks;
  RecordProperty("max_in_flight", static_cast<int>(flow->max_in_flight.load()));
  RecordProperty("bound", static_cast<int>(bound));
  // Sanity: the test can tell bounded from unbounded (the source is much faster than the sink).
  EXPECT_LT(bound * 5, kCount);
}

INSTANTIATE_TEST_SUITE_P(Shapes, BackpressureTest,
                         ::testing::Values(BackpressureCase{1, 0, 1}, BackpressureCase{1, 0, 2},
                                           BackpressureCase{2, 0, 1}, BackpressureCase{2, 2, 2},
                                           BackpressureCase{1, 3, 1}),
                         [](const ::testing::TestParamInfo<BackpressureCase>& info) {
                           const BackpressureCase& c = info.param;
                           return "Source" + std::to_string(c.source_parallelism) + "Map" +
                                  std::to_string(c.map_parallelism) + "Sink" +
                                  std::to_string(c.sink_parallelism);
                         });

// The slow sink chained to its source: no channel at all, so at most a batch or two in flight.
TEST(BackpressureChainTest, ChainedSlowSinkHoldsOneBatch) {
  auto flow = std::make_shared<Flow>();
  StreamEnvironment env({.parallelism = 1, .batch_size = 16, .channel_capacity = 2});
  env.FromSource(GeneratorSource(
                     [flow](int64_t i) {
                       flow->Produced();
                       return i;
                     },
                     {.count = 1600}))
      .SinkTo(SlowSink(flow));
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(WaitOrFail(*job).ok());
  EXPECT_EQ(flow->consumed.load(), 1600);
  EXPECT_LE(flow->max_in_flight.load(), 16);
}

// Backpressure across a keyed exchange and a fan-out FlatMap.
TEST(BackpressureChainTest, KeyedExchangeWithExpansion) {
  auto flow = std::make_shared<Flow>();
  constexpr int kBatch = 16, kCapacity = 2;
  StreamEnvironment env({.parallelism = 2,
                         .batch_size = kBatch,
                         .channel_capacity = kCapacity,
                         .execution_mode = ExecutionMode::kStreaming});
  env.FromSource(GeneratorSource(
                     [flow](int64_t i) {
                       flow->Produced();
                       return i;
                     },
                     {.count = 6000}))
      .KeyBy([](int64_t x) { return x % 13; })
      .Process([](const int64_t& x, KeyedProcessContext<int64_t>&, Collector<int64_t>& out) {
        out.Collect(x);
      })
      .Rebalance()
      .SinkTo(SlowSink(flow));
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(WaitOrFail(*job).ok());
  EXPECT_EQ(flow->consumed.load(), 6000);
  const int64_t channels = 2 * 2 + 2 * 2;
  EXPECT_LE(flow->max_in_flight.load(), channels * (kCapacity + 2) * kBatch + 6 * 3 * kBatch);
}

}  // namespace
}  // namespace sluice
