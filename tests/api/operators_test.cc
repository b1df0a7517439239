// Every transformation of the DataStream API, checked against its exact output.
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
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/test_util.h"

namespace sluice {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

using testing_util::Range;

// --- Map -----------------------------------------------------------------------------------------

TEST(MapTest, ParallelismOneKeepsOrder) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 5).Map([](int64_t x) { return x * x; }).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), ElementsAre(1, 4, 9, 16, 25));
}

TEST(MapTest, ChangesTheRecordType) {
  StreamEnvironment env({.parallelism = 3});
  CollectSink<std::string> sink;
  env.FromSequence(1, 4)
      .Map([](const int64_t& x) { return std::string(static_cast<size_t>(x), 'x'); })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre("x", "xx", "xxx", "xxxx"));
}

TEST(MapTest, MovesFromItsInput) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<size_t> sink;
  env.FromCollection(std::vector<std::string>{"a", "bb", "ccc"})
      .Map([](std::string s) { return s.size(); })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), ElementsAre(1u, 2u, 3u));
}

TEST(MapTest, ManyRecordsAtParallelismFour) {
  StreamEnvironment env({.parallelism = 4, .batch_size = 64});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 10000).Map([](int64_t x) { return -x; }).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  std::vector<int64_t> expected;
  for (int64_t i = 1; i <= 10000; ++i) expected.push_back(-i);
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

// --- Filter --------------------------------------------------------------------------------------

TEST(FilterTest, KeepsMatchingRecords) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 20).Filter([](int64_t x) { return x % 3 == 0; }).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(3, 6, 9, 12, 15, 18));
}

TEST(FilterTest, CanDropEverything) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 100).Filter([](int64_t) { return false; }).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), IsEmpty());
}

TEST(MapFilterTest, Chain) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 10)
      .Map([](int64_t x) { return x * 10; })
      .Filter([](int64_t x) { return x % 20 == 0; })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("map-filter").ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(20, 40, 60, 80, 100));
}

// --- FlatMap -------------------------------------------------------------------------------------

TEST(FlatMapTest, ZeroOneOrManyOutputsWithDeducedType) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  // x copies of x: 0 → nothing, 1 → one record, 4 → four records.
  env.FromCollection(std::vector<int64_t>{0, 1, 4, 0, 2})
      .FlatMap([](const int64_t& x, Collector<int64_t>& out) {
        for (int64_t i = 0; i < x; ++i) out.Collect(x);
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(1, 4, 4, 4, 4, 2, 2));
}

TEST(FlatMapTest, OutputTypeGivenExplicitlyForAGenericLambda) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<std::string> sink;
  env.FromCollection(std::vector<std::string>{"a b", "", "c d e"})
      .FlatMap<std::string>([](const auto& line, auto& out) {
        std::string word;
        for (char c : line) {
          if (c == ' ') {
            out.Collect(word);
            word.clear();
          } else {
            word += c;
          }
        }
        if (!word.empty()) out.Emplace(std::move(word));
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), ElementsAre("a", "b", "c", "d", "e"));
}

TEST(FlatMapTest, OutputTypeGivenExplicitlyForATypedLambda) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int> sink;
  env.FromSequence(1, 3)
      .FlatMap<int>([](const int64_t& x, Collector<int>& out) {
        out.Collect(static_cast<int>(x));
        out.Collect(static_cast<int>(-x));
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), ElementsAre(1, -1, 2, -2, 3, -3));
}

TEST(FlatMapTest, ExpansionLargerThanABatch) {
  StreamEnvironment env({.parallelism = 2, .batch_size = 8, .channel_capacity = 1});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 4)
      .FlatMap([](const int64_t& x, Collector<int64_t>& out) {
        for (int64_t i = 0; i < 1000; ++i) out.Collect(x * 10000 + i);
      })
      .Rebalance()
      .Map([](int64_t x) { return x; })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  std::vector<int64_t> expected;
  for (int64_t x = 1; x <= 4; ++x) {
    for (int64_t i = 0; i < 1000; ++i) expected.push_back(x * 10000 + i);
  }
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

// --- Process -------------------------------------------------------------------------------------

TEST(ProcessTest, Lambda) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<std::string> sink;
  env.FromSequence(1, 4)
      .Process([](const int64_t& x, ProcessContext&, Collector<std::string>& out) {
        if (x % 2 == 0) out.Collect("even " + std::to_string(x));
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre("even 2", "even 4"));
}

TEST(ProcessTest, GenericLambdaWithExplicitOutput) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 3)
      .Process<int64_t>([](const auto& x, auto&, auto& out) { out.Collect(x + 100); })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), ElementsAre(101, 102, 103));
}

// Records Open/Close calls and the RuntimeContext each subtask saw.
struct Lifecycle {
  std::mutex mu;
  std::vector<std::tuple<int, int, std::string>> opened;  // (subtask, parallelism, operator name)
  int closed = 0;
  int64_t processed = 0;
};

class TaggingFunction : public ProcessFunction<int64_t, std::pair<int, int64_t>> {
 public:
  explicit TaggingFunction(std::shared_ptr<Lifecycle> life) : life_(std::move(life)) {}
  void Open(const RuntimeContext& ctx) override {
    subtask_ = ctx.subtask_index;
    std::lock_guard<std::mutex> lock(life_->mu);
    life_->opened.emplace_back(ctx.subtask_index, ctx.parallelism, ctx.operator_name);
  }
  void ProcessElement(const int64_t& x, Context& ctx,
                      Collector<std::pair<int, int64_t>>& out) override {
    EXPECT_EQ(ctx.runtime().subtask_index, subtask_);
    ++count_;
    out.Collect({subtask_, x});
  }
  void Close() override {
    std::lock_guard<std::mutex> lock(life_->mu);
    ++life_->closed;
    life_->processed += count_;
  }

 private:
  std::shared_ptr<Lifecycle> life_;
  int subtask_ = -1;
  int64_t count_ = 0;
};

TEST(ProcessTest, FunctionClassIsOpenedAndClosedOncePerSubtask) {
  auto life = std::make_shared<Lifecycle>();
  StreamEnvironment env({.parallelism = 3});
  CollectSink<std::pair<int, int64_t>> sink;
  env.FromSequence(1, 300).Rebalance().Process(TaggingFunction(life)).Name("tagger").SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(life->opened, UnorderedElementsAre(std::tuple(0, 3, std::string("tagger")),
                                                 std::tuple(1, 3, std::string("tagger")),
                                                 std::tuple(2, 3, std::string("tagger"))));
  EXPECT_EQ(life->closed, 3);
  EXPECT_EQ(life->processed, 300);
  std::vector<std::pair<int, int64_t>> got = sink.values();
  ASSERT_EQ(got.size(), 300u);
  std::vector<int64_t> values;
  for (const auto& [subtask, x] : got) {
    EXPECT_GE(subtask, 0);
    EXPECT_LT(subtask, 3);
    values.push_back(x);
  }
  EXPECT_THAT(values, UnorderedElementsAreArray(Range(1, 300)));
}

// --- Side outputs --------------------------------------------------------------------------------

TEST(SideOutputTest, FromProcess) {
  StreamEnvironment env({.parallelism = 2});
  OutputTag<std::string> odd("odd");
  OutputTag<int64_t> big("big");
  CollectSink<int64_t> main_sink;
  CollectSink<std::string> odd_sink;
  CollectSink<int64_t> big_sink;
  auto main = env.FromSequence(1, 10).Process(
      [odd, big](const int64_t& x, ProcessContext& ctx, Collector<int64_t>& out) {
        if (x % 2 == 1) {
          ctx.Output(odd, "odd " + std::to_string(x));
        } else {
          out.Collect(x);
        }
        if (x > 8) ctx.Output(big, x);
      });
  main.SinkTo(main_sink);
  main.GetSideOutput(odd).SinkTo(odd_sink);
  main.GetSideOutput(big).Map([](int64_t x) { return x * 100; }).SinkTo(big_sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(main_sink.values(), UnorderedElementsAre(2, 4, 6, 8, 10));
  EXPECT_THAT(odd_sink.values(), UnorderedElementsAre("odd 1", "odd 3", "odd 5", "odd 7", "odd 9"));
  EXPECT_THAT(big_sink.values(), UnorderedElementsAre(900, 1000));
}

TEST(SideOutputTest, UnconsumedSideOutputIsDiscarded) {
  StreamEnvironment env({.parallelism = 2});
  OutputTag<int64_t> dropped("dropped");
  CollectSink<int64_t> sink;
  env.FromSequence(1, 6)
      .Process([dropped](const int64_t& x, ProcessContext& ctx, Collector<int64_t>& out) {
        ctx.Output(dropped, x);
        out.Collect(x);
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(Range(1, 6)));
}

TEST(SideOutputTest, SideOutputConsumedAtAnotherParallelism) {
  StreamEnvironment env({.parallelism = 3});
  OutputTag<int64_t> neg("neg");
  CollectSink<int64_t> side;
  auto main = env.FromSequence(1, 50).Process(
      [neg](const int64_t& x, ProcessContext& ctx, Collector<int64_t>&) { ctx.Output(neg, -x); });
  main.GetSideOutput(neg).Map([](int64_t x) { return x; }).SetParallelism(1).SinkTo(side);
  ASSERT_TRUE(env.Execute().ok());
  std::vector<int64_t> expected;
  for (int64_t i = 1; i <= 50; ++i) expected.push_back(-i);
  EXPECT_THAT(side.values(), UnorderedElementsAreArray(expected));
}

TEST(SideOutputTest, FromKeyedProcess) {
  StreamEnvironment env({.parallelism = 2});
  OutputTag<std::string> first_seen("first-seen");
  CollectSink<std::pair<int64_t, int64_t>> main_sink;
  CollectSink<std::string> side_sink;
  auto main = env.FromSequence(1, 12)
                  .KeyBy([](int64_t x) { return x % 3; })
                  .Process([first_seen, seen = std::set<int64_t>()](
                               const int64_t& x, KeyedProcessContext<int64_t>& ctx,
                               Collector<std::pair<int64_t, int64_t>>& out) mutable {
                    if (seen.insert(ctx.CurrentKey()).second) {
                      ctx.Output(first_seen, "key " + std::to_string(ctx.CurrentKey()));
                    }
                    out.Collect({ctx.CurrentKey(), x});
                  });
  main.SinkTo(main_sink);
  main.GetSideOutput(first_seen).SinkTo(side_sink);
  ASSERT_TRUE(env.Execute().ok());
  std::vector<std::pair<int64_t, int64_t>> expected;
  for (int64_t x = 1; x <= 12; ++x) expected.emplace_back(x % 3, x);
  EXPECT_THAT(main_sink.values(), UnorderedElementsAreArray(expected));
  EXPECT_THAT(side_sink.values(), UnorderedElementsAre("key 0", "key 1", "key 2"));
}

// --- KeyBy / Reduce / keyed Process --------------------------------------------------------------

using Count = std::pair<std::string, int>;

TEST(ReduceTest, StreamingEmitsEveryRollingUpdate) {
  StreamEnvironment env({.parallelism = 2, .execution_mode = ExecutionMode::kStreaming});
  CollectSink<Count> sink;
  env.FromCollection(std::vector<Count>{{"a", 1}, {"b", 2}, {"a", 3}, {"a", 10}, {"b", 5}})
      .KeyBy([](const Count& p) { return p.first; })
      .Reduce(
          [](const Count& acc, const Count& v) { return Count(acc.first, acc.second + v.second); })
      .SinkTo(sink);
  absl::Status status = env.Execute("reduce");
  ASSERT_TRUE(status.ok()) << status;
  // One collection source: the records of a key arrive in order, so the updates are exact.
  EXPECT_THAT(sink.values(), UnorderedElementsAre(Count("a", 1), Count("b", 2), Count("a", 4),
                                                  Count("a", 14), Count("b", 7)));
}

TEST(ReduceTest, BatchEmitsOnlyTheFinalValuePerKey) {
  StreamEnvironment env({.parallelism = 2, .execution_mode = ExecutionMode::kBatch});
  CollectSink<Count> sink;
  env.FromCollection(std::vector<Count>{{"a", 1}, {"b", 2}, {"a", 3}, {"a", 10}, {"b", 5}})
      .KeyBy([](const Count& p) { return p.first; })
      .Reduce(
          [](const Count& acc, const Count& v) { return Count(acc.first, acc.second + v.second); })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(Count("a", 14), Count("b", 7)));
}

TEST(ReduceTest, ParallelSourceStreamingCountsEveryUpdate) {
  // Counting makes the multiset of rolling updates independent of arrival order.
  StreamEnvironment env(
      {.parallelism = 4, .batch_size = 16, .execution_mode = ExecutionMode::kStreaming});
  CollectSink<std::pair<int64_t, int64_t>> sink;
  env.FromSequence(0, 999)
      .Map([](int64_t x) { return std::pair<int64_t, int64_t>(x % 10, 1); })
      .KeyBy([](const std::pair<int64_t, int64_t>& p) { return p.first; })
      .Reduce([](const auto& acc, const auto& v) {
        return std::pair<int64_t, int64_t>(acc.first, acc.second + v.second);
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  std::vector<std::pair<int64_t, int64_t>> expected;
  for (int64_t k = 0; k < 10; ++k) {
    for (int64_t c = 1; c <= 100; ++c) expected.emplace_back(k, c);
  }
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

TEST(ReduceTest, ErasedKeyedStreamType) {
  StreamEnvironment env({.parallelism = 2, .execution_mode = ExecutionMode::kBatch});
  CollectSink<int64_t> sink;
  KeyedStream<int64_t, int64_t> keyed =
      env.FromSequence(1, 10).KeyBy([](int64_t x) { return x % 2; });
  keyed.Reduce([](int64_t a, int64_t b) { return a + b; }).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(30, 25));
}

TEST(KeyedProcessTest, CurrentKeyIsTheKeyOfTheRecord) {
  StreamEnvironment env({.parallelism = 3});
  CollectSink<std::pair<std::string, std::string>> sink;
  std::vector<std::string> words = {"apple", "avocado", "banana", "blueberry", "cherry", "apricot"};
  env.FromCollection(words)
      .KeyBy([](const std::string& w) { return w.substr(0, 1); })
      .Process([](const std::string& w, KeyedProcessContext<std::string>& ctx,
                  Collector<std::pair<std::string, std::string>>& out) {
        out.Collect({ctx.CurrentKey(), w});
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  using P = std::pair<std::string, std::string>;
  EXPECT_THAT(sink.values(),
              UnorderedElementsAre(P("a", "apple"), P("a", "avocado"), P("b", "banana"),
                                   P("b", "blueberry"), P("c", "cherry"), P("a", "apricot")));
}

class KeyCounter : public KeyedProcessFunction<int64_t, int64_t, std::pair<int64_t, int64_t>> {
 public:
  void Open(const RuntimeContext& ctx) override { parallelism_ = ctx.parallelism; }
  void ProcessElement(const int64_t& x, Context& ctx,
                      Collector<std::pair<int64_t, int64_t>>& out) override {
    EXPECT_EQ(parallelism_, 2);
    EXPECT_EQ(ctx.CurrentKey(), x % 2);
    out.Collect({ctx.CurrentKey(), ++counts_[ctx.CurrentKey()]});
  }

 private:
  std::map<int64_t, int64_t> counts_;
  int parallelism_ = 0;
};

TEST(KeyedProcessTest, FunctionClass) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<std::pair<int64_t, int64_t>> sink;
  env.FromSequence(1, 6).KeyBy([](int64_t x) { return x % 2; }).Process(KeyCounter()).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  using P = std::pair<int64_t, int64_t>;
  EXPECT_THAT(sink.values(),
              UnorderedElementsAre(P(1, 1), P(1, 2), P(1, 3), P(0, 1), P(0, 2), P(0, 3)));
}

// --- Union ---------------------------------------------------------------------------------------

TEST(UnionTest, TwoStreams) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  auto a = env.FromSequence(1, 5);
  auto b = env.FromCollection(std::vector<int64_t>{100, 200});
  a.Union(b).Map([](int64_t x) { return x + 1; }).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(2, 3, 4, 5, 6, 101, 201));
}

TEST(UnionTest, ThreeStreamsIntoASink) {
  StreamEnvironment env({.parallelism = 3});
  CollectSink<int64_t> sink;
  auto a = env.FromSequence(1, 3);
  auto b = env.FromSequence(10, 12).Map([](int64_t x) { return x; });
  auto c = env.FromCollection(std::vector<int64_t>{-1});
  a.Union(b, c).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(1, 2, 3, 10, 11, 12, -1));
}

TEST(UnionTest, WithItselfDuplicates) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  auto a = env.FromSequence(1, 3);
  a.Union(a).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(1, 1, 2, 2, 3, 3));
}

// Each side of a union keeps its own partitioning (as in Flink).
TEST(UnionTest, EachInputKeepsItsPartitioning) {
  StreamEnvironment env({.parallelism = 3});
  CollectSink<std::pair<int, int64_t>> sink;
  auto plain = env.FromCollection(std::vector<int64_t>{1, 2});
  auto broadcast = env.FromCollection(std::vector<int64_t>{100}).Broadcast();
  plain.Union(broadcast)
      .Process([](const int64_t& x, ProcessContext& ctx, Collector<std::pair<int, int64_t>>& out) {
        out.Collect({ctx.runtime().subtask_index, x});
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  std::vector<std::pair<int, int64_t>> got = sink.values();
  std::multiset<int64_t> values;
  std::set<int> broadcast_subtasks;
  for (const auto& [subtask, x] : got) {
    values.insert(x);
    if (x == 100) broadcast_subtasks.insert(subtask);
  }
  EXPECT_THAT(values, UnorderedElementsAre(1, 2, 100, 100, 100));
  EXPECT_THAT(broadcast_subtasks, ElementsAre(0, 1, 2));
}

TEST(UnionTest, BroadcastSideDoesNotBroadcastTheOtherSide) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  auto a = env.FromCollection(std::vector<int64_t>{1, 2, 3}).Broadcast();
  auto b = env.FromCollection(std::vector<int64_t>{7});
  a.Union(b).Map([](int64_t x) { return x; }).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(1, 1, 2, 2, 3, 3, 7));
}

TEST(UnionTest, MainAndSideOutputOfOneOperator) {
  StreamEnvironment env({.parallelism = 2});
  OutputTag<int64_t> negated("negated");
  CollectSink<int64_t> sink;
  auto p = env.FromSequence(1, 5).Process(
      [negated](const int64_t& x, ProcessContext& ctx, Collector<int64_t>& out) {
        out.Collect(x);
        ctx.Output(negated, -x);
      });
  p.Union(p.GetSideOutput(negated)).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(1, 2, 3, 4, 5, -1, -2, -3, -4, -5));
}

TEST(UnionTest, Diamond) {
  StreamEnvironment env({.parallelism = 3,
                         .batch_size = 5,
                         .channel_capacity = 1,
                         .execution_mode = ExecutionMode::kBatch});  // final sums only
  CollectSink<int64_t> sink;
  auto s = env.FromSequence(1, 300);
  auto evens = s.Filter([](int64_t x) { return x % 2 == 0; });
  auto tens = s.Map([](int64_t x) { return x * 10; }).Rebalance();
  evens.Union(tens)
      .KeyBy([](int64_t x) { return x % 7; })
      .Reduce([](int64_t a, int64_t b) { return a + b; })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  std::vector<int64_t> sums(7, 0);
  for (int64_t x = 1; x <= 300; ++x) {
    if (x % 2 == 0) sums[static_cast<size_t>(x % 7)] += x;
    sums[static_cast<size_t>((x * 10) % 7)] += x * 10;
  }
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(sums));
}

// --- Partitioning --------------------------------------------------------------------------------

// Tags every record with the index of the subtask that saw it.
auto TagSubtask() {
  return [](const int64_t& x, ProcessContext& ctx, Collector<std::pair<int, int64_t>>& out) {
    out.Collect({ctx.runtime().subtask_index, x});
  };
}

std::map<int, std::vector<int64_t>> BySubtask(const std::vector<std::pair<int, int64_t>>& tagged) {
  std::map<int, std::vector<int64_t>> m;
  for (const auto& [s, x] : tagged) m[s].push_back(x);
  for (auto& [s, v] : m) std::sort(v.begin(), v.end());
  return m;
}

TEST(PartitioningTest, RebalanceSpreadsRoundRobin) {
  StreamEnvironment env({.parallelism = 4});
  CollectSink<std::pair<int, int64_t>> sink;
  env.FromCollection(Range(1, 400)).Rebalance().Process(TagSubtask()).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  auto by = BySubtask(sink.values());
  ASSERT_EQ(by.size(), 4u);
  std::vector<int64_t> all;
  for (const auto& [s, v] : by) {
    EXPECT_EQ(v.size(), 100u) << "subtask " << s;  // one producer: exact round robin
    all.insert(all.end(), v.begin(), v.end());
  }
  EXPECT_THAT(all, UnorderedElementsAreArray(Range(1, 400)));
}

TEST(PartitioningTest, ShuffleDeliversEverythingSomewhere) {
  StreamEnvironment env({.parallelism = 4});
  CollectSink<std::pair<int, int64_t>> sink;
  env.FromCollection(Range(1, 2000)).Shuffle().Process(TagSubtask()).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  auto by = BySubtask(sink.values());
  EXPECT_EQ(by.size(), 4u);  // 2000 random picks reach all 4 subtasks
  std::vector<int64_t> all;
  for (const auto& [s, v] : by) all.insert(all.end(), v.begin(), v.end());
  EXPECT_THAT(all, UnorderedElementsAreArray(Range(1, 2000)));
}

TEST(PartitioningTest, BroadcastGivesEverySubtaskEveryRecord) {
  StreamEnvironment env({.parallelism = 3, .batch_size = 4});
  CollectSink<std::pair<int, int64_t>> sink;
  env.FromSequence(1, 50).Broadcast().Process(TagSubtask()).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  auto by = BySubtask(sink.values());
  ASSERT_EQ(by.size(), 3u);
  for (const auto& [s, v] : by) EXPECT_THAT(v, ElementsAreArray(Range(1, 50))) << "subtask " << s;
}

TEST(PartitioningTest, ForwardKeepsSubtaskIndex) {
  StreamEnvironment env({.parallelism = 3});
  CollectSink<std::pair<int, int64_t>> sink;
  // The sequence source gives subtask i the i-th contiguous third; forward keeps it there.
  env.FromSequence(0, 29)
      .Process(TagSubtask())
      .Forward()
      .Process([](const std::pair<int, int64_t>& p, ProcessContext& ctx,
                  Collector<std::pair<int, int64_t>>& out) {
        EXPECT_EQ(p.first, ctx.runtime().subtask_index);
        out.Collect(p);
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  auto by = BySubtask(sink.values());
  EXPECT_THAT(by[0], ElementsAreArray(Range(0, 9)));
  EXPECT_THAT(by[1], ElementsAreArray(Range(10, 19)));
  EXPECT_THAT(by[2], ElementsAreArray(Range(20, 29)));
}

TEST(PartitioningTest, KeyedPartitioningThenRebalance) {
  StreamEnvironment env({.parallelism = 2, .execution_mode = ExecutionMode::kBatch});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 100)
      .KeyBy([](int64_t x) { return x % 5; })
      .Reduce([](int64_t a, int64_t b) { return a + b; })
      .Rebalance()
      .Map([](int64_t x) { return x; })
      .SetParallelism(3)
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  // Keys 0..4: sums of {5,10,...,100}, {1,6,...,96}, ...
  std::vector<int64_t> expected(5, 0);
  for (int64_t x = 1; x <= 100; ++x) expected[static_cast<size_t>(x % 5)] += x;
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

// --- SetParallelism / Name -----------------------------------------------------------------------

TEST(SetParallelismTest, EachOperatorRunsWithItsOwnParallelism) {
  StreamEnvironment env({.parallelism = 2});
  auto seen = std::make_shared<std::mutex>();
  auto parallelisms = std::make_shared<std::map<std::string, std::set<std::pair<int, int>>>>();
  auto record = [seen, parallelisms](const int64_t& x, ProcessContext& ctx,
                                     Collector<int64_t>& out) {
    {
      std::lock_guard<std::mutex> lock(*seen);
      (*parallelisms)[ctx.runtime().operator_name].insert(
          {ctx.runtime().subtask_index, ctx.runtime().parallelism});
    }
    out.Collect(x);
  };
  CollectSink<int64_t> sink;
  env.FromSequence(1, 1000)
      .SetParallelism(1)
      .Process(record)
      .Name("p1")
      .SetParallelism(1)
      .Rebalance()
      .Process(record)
      .Name("p3")
      .SetParallelism(3)
      .Rebalance()
      .Process(record)
      .Name("pdefault")
      .SinkTo(sink)
      .SetParallelism(1);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(Range(1, 1000)));
  using S = std::set<std::pair<int, int>>;
  EXPECT_EQ((*parallelisms)["p1"], (S{{0, 1}}));
  EXPECT_EQ((*parallelisms)["p3"], (S{{0, 3}, {1, 3}, {2, 3}}));
  EXPECT_EQ((*parallelisms)["pdefault"], (S{{0, 2}, {1, 2}}));
}

TEST(SetParallelismTest, DefaultParallelismIsTheHardwareConcurrency) {
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  StreamEnvironment env;  // parallelism 0: one subtask per hardware thread
  auto parallelism = std::make_shared<std::atomic<int>>(0);
  CollectSink<int64_t> sink;
  env.FromSequence(1, 100)
      .Process([parallelism](const int64_t& x, ProcessContext& ctx, Collector<int64_t>& out) {
        parallelism->store(ctx.runtime().parallelism);
        out.Collect(x);
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_EQ(parallelism->load(), hardware);
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(Range(1, 100)));
}

TEST(NameTest, NameAppearsInTheErrorOfAFailingOperator) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 10)
      .Map([](int64_t x) -> int64_t {
        if (x == 3) throw std::runtime_error("bad record");
        return x;
      })
      .Name("my-special-mapper")
      .SinkTo(sink);
  absl::Status status = env.Execute();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("my-special-mapper"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("bad record"));
}

TEST(NameTest, SinkName) {
  StreamEnvironment env({.parallelism = 1});
  env.FromSequence(1, 10)
      .SinkTo(CallbackSink<int64_t>([](const int64_t&) { throw std::runtime_error("full"); }))
      .Name("my-sink");
  absl::Status status = env.Execute();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("my-sink"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("full"));
}

// --- Environment reuse ---------------------------------------------------------------------------

TEST(EnvironmentTest, ExecuteConsumesTheJobAndTheEnvironmentCanRunAnother) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> first;
  env.FromSequence(1, 3).SinkTo(first);
  ASSERT_TRUE(env.Execute("first").ok());
  CollectSink<int64_t> second;
  env.FromSequence(10, 12).SinkTo(second);
  ASSERT_TRUE(env.Execute("second").ok());
  EXPECT_THAT(first.values(), UnorderedElementsAre(1, 2, 3));
  EXPECT_THAT(second.values(), UnorderedElementsAre(10, 11, 12));
}

TEST(EnvironmentTest, SeveralSinksOnOneStream) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> a, b;
  auto s = env.FromSequence(1, 100).Map([](int64_t x) { return x * 2; });
  s.SinkTo(a);
  s.Filter([](int64_t x) { return x > 150; }).SinkTo(b);
  ASSERT_TRUE(env.Execute().ok());
  std::vector<int64_t> all, big;
  for (int64_t x = 1; x <= 100; ++x) {
    all.push_back(2 * x);
    if (2 * x > 150) big.push_back(2 * x);
  }
  EXPECT_THAT(a.values(), UnorderedElementsAreArray(all));
  EXPECT_THAT(b.values(), UnorderedElementsAreArray(big));
}

}  // namespace
}  // namespace sluice
