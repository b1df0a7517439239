// Operator chaining, seen through RuntimeContext::task_name, and the thread budget of a job.
#include <sluice/sluice.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
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

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAreArray;
using testing_util::BaselineThreadCount;
using testing_util::ThreadCount;
using testing_util::ThreadCountSettled;
using testing_util::WaitOrFail;

// Task names seen by the operators named in the map, per operator name.
struct TaskNames {
  std::mutex mu;
  std::map<std::string, std::set<std::string>> by_operator;
};

// A pass-through Process that records the task it runs in.
auto RecordTask(std::shared_ptr<TaskNames> names) {
  return [names](const int64_t& x, ProcessContext& ctx, Collector<int64_t>& out) {
    {
      std::lock_guard<std::mutex> lock(names->mu);
      names->by_operator[ctx.runtime().operator_name].insert(ctx.runtime().task_name);
    }
    out.Collect(x);
  };
}

TEST(ChainingTest, ForwardEdgesWithEqualParallelismFuse) {
  auto names = std::make_shared<TaskNames>();
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 100)
      .Map([](int64_t x) { return x + 1; })
      .Filter([](int64_t x) { return x > 0; })
      .Process(RecordTask(names))
      .Name("probe")
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(
      names->by_operator["probe"],
      ElementsAre("Source: Sequence 1..100 -> Map -> Filter -> probe -> Sink: Collect (1/2)",
                  "Source: Sequence 1..100 -> Map -> Filter -> probe -> Sink: Collect (2/2)"));
}

TEST(ChainingTest, KeyByAndParallelismChangesBreakTheChain) {
  auto names = std::make_shared<TaskNames>();
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 100)
      .Map([](int64_t x) { return x; })
      .Process(RecordTask(names))
      .Name("a")
      .KeyBy([](int64_t x) { return x % 5; })
      .Process([](const int64_t& x, KeyedProcessContext<int64_t>&, Collector<int64_t>& out) {
        out.Collect(x);
      })
      .Process(RecordTask(names))
      .Name("b")
      .Map([](int64_t x) { return x; })
      .SetParallelism(3)
      .Process(RecordTask(names))
      .Name("c")
      .SetParallelism(3)
      .Rebalance()
      .Process(RecordTask(names))
      .Name("d")
      .SetParallelism(3)
      .SinkTo(sink)
      .SetParallelism(3);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray([] {
                std::vector<int64_t> v;
                for (int64_t i = 1; i <= 100; ++i) v.push_back(i);
                return v;
              }()));
  EXPECT_THAT(names->by_operator["a"], ElementsAre("Source: Sequence 1..100 -> Map -> a (1/2)",
                                                   "Source: Sequence 1..100 -> Map -> a (2/2)"));
  EXPECT_THAT(names->by_operator["b"],
              ElementsAre("Keyed Process -> b (1/2)", "Keyed Process -> b (2/2)"));
  EXPECT_THAT(names->by_operator["c"],
              ElementsAre("Map -> c (1/3)", "Map -> c (2/3)", "Map -> c (3/3)"));
  // Rebalance() breaks the chain even at equal parallelism.
  EXPECT_THAT(names->by_operator["d"],
              ElementsAre("d -> Sink: Collect (1/3)", "d -> Sink: Collect (2/3)",
                          "d -> Sink: Collect (3/3)"));
}

TEST(ChainingTest, UnionInputIsNotChained) {
  auto names = std::make_shared<TaskNames>();
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> sink;
  auto a = env.FromSequence(1, 5);
  auto b = env.FromSequence(6, 10);
  a.Union(b).Process(RecordTask(names)).Name("u").SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(names->by_operator["u"], ElementsAre("u -> Sink: Collect (1/1)"));
  EXPECT_EQ(sink.size(), 10u);
}

TEST(ChainingTest, FanOutChainsEveryForwardConsumer) {
  auto names = std::make_shared<TaskNames>();
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> left, right;
  auto s = env.FromSequence(1, 5).Process(RecordTask(names)).Name("split");
  s.Process(RecordTask(names)).Name("left").SinkTo(left);
  s.Process(RecordTask(names)).Name("right").SinkTo(right);
  ASSERT_TRUE(env.Execute().ok());
  const std::string chain =
      "Source: Sequence 1..5 -> split -> left -> Sink: Collect -> right -> Sink: Collect (1/1)";
  EXPECT_THAT(names->by_operator["split"], ElementsAre(chain));
  EXPECT_THAT(names->by_operator["left"], ElementsAre(chain));
  EXPECT_THAT(names->by_operator["right"], ElementsAre(chain));
  EXPECT_EQ(left.size(), 5u);
  EXPECT_EQ(right.size(), 5u);
}

// --- Thread budget -------------------------------------------------------------------------------

TEST(ThreadBudgetTest, ManyOperatorsRunOnTheWorkerPoolOnly) {
  constexpr int kWorkers = 3;
  const int threads_before = BaselineThreadCount();
  std::atomic<int> max_threads{0};
  auto observe = [&max_threads] {
    int n = ThreadCount();
    int seen = max_threads.load();
    while (n > seen && !max_threads.compare_exchange_weak(seen, n)) {
    }
  };
  {
    StreamEnvironment env(
        {.parallelism = 8, .batch_size = 32, .channel_capacity = 2, .worker_threads = kWorkers});
    auto stream = env.FromSource(GeneratorSource([](int64_t i) { return i; }, {.count = 20000}));
    int operators = 1;
    for (int i = 0; operators < 49; ++i) {
      // Every third operator is behind a rebalance (a new task); the others chain.
      if (i % 3 == 0) stream = stream.Rebalance();
      stream = stream.Map([](int64_t x) { return x + 1; });
      ++operators;
    }
    std::atomic<int64_t> count{0};
    std::atomic<int64_t> calls{0};
    stream.SinkTo(CallbackSink<int64_t>([&](const int64_t&) {
      ++count;
      if (++calls % 500 == 0) observe();
    }));
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("fifty");
    ASSERT_TRUE(job.ok()) << job.status();
    while (!job->WaitFor(absl::Milliseconds(2))) observe();
    ASSERT_TRUE(WaitOrFail(*job).ok());
    EXPECT_EQ(count.load(), 20000);
    EXPECT_LE(ThreadCountSettled(threads_before), threads_before);
  }
  EXPECT_GT(max_threads.load(), threads_before);
  EXPECT_LE(max_threads.load(), threads_before + kWorkers + 2);
  EXPECT_LE(ThreadCountSettled(threads_before), threads_before);
}

TEST(ThreadBudgetTest, DefaultWorkerThreadsIsTheHardwareConcurrency) {
  const int threads_before = BaselineThreadCount();
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::atomic<int> max_threads{0};
  {
    StreamEnvironment env({.parallelism = 8});
    env.FromSource(GeneratorSource([](int64_t i) { return i; }, {.count = 4000}))
        .Rebalance()
        .Map([](int64_t x) { return x; })
        .SinkTo(CallbackSink<int64_t>([&](const int64_t& x) {
          if (x % 100 == 0) {
            int n = ThreadCount();
            int seen = max_threads.load();
            while (n > seen && !max_threads.compare_exchange_weak(seen, n)) {
            }
          }
        }));
    ASSERT_TRUE(env.Execute().ok());
  }
  EXPECT_LE(max_threads.load(), threads_before + hardware + 2);
  EXPECT_LE(ThreadCountSettled(threads_before), threads_before);
}

}  // namespace
}  // namespace sluice
