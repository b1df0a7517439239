// Built-in sources and sinks, and the key types KeyBy accepts.
#include <sluice/sluice.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/test_util.h"

namespace sluice {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

using testing_util::Range;

// --- Sources -------------------------------------------------------------------------------------

TEST(FromCollectionTest, EmitsInOrder) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<std::string> sink;
  env.FromCollection(std::vector<std::string>{"x", "y", "z"}).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), ElementsAre("x", "y", "z"));
}

TEST(FromCollectionTest, EmptyCollection) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int> sink;
  env.FromCollection(std::vector<int>{}).Map([](int x) { return x; }).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), IsEmpty());
}

TEST(FromCollectionTest, IsNonParallelAndFeedsParallelOperators) {
  StreamEnvironment env({.parallelism = 4, .batch_size = 3});
  CollectSink<int64_t> sink;
  env.FromCollection(Range(1, 100)).Map([](int64_t x) { return x; }).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(Range(1, 100)));
}

TEST(FromSequenceTest, SplitsTheRangeOverSubtasks) {
  for (int p : {1, 2, 3, 7}) {
    StreamEnvironment env({.parallelism = p});
    CollectSink<int64_t> sink;
    env.FromSequence(-5, 94).SinkTo(sink);
    ASSERT_TRUE(env.Execute().ok());
    EXPECT_THAT(sink.values(), UnorderedElementsAreArray(Range(-5, 94))) << "parallelism " << p;
  }
}

TEST(FromSequenceTest, EmptyAndSingle) {
  StreamEnvironment env({.parallelism = 3});
  CollectSink<int64_t> empty, single;
  env.FromSequence(5, 4).SinkTo(empty);
  env.FromSequence(7, 7).SinkTo(single);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(empty.values(), IsEmpty());
  EXPECT_THAT(single.values(), ElementsAre(7));
}

TEST(GeneratorSourceTest, BoundedCountGivesEachIndexExactlyOnce) {
  for (int p : {1, 2, 3, 5}) {
    StreamEnvironment env({.parallelism = p, .batch_size = 10});
    CollectSink<std::pair<int, int64_t>> sink;
    env.FromSource(GeneratorSource([](int64_t i) { return i; }, {.count = 1001}))
        .Process(
            [](const int64_t& i, ProcessContext& ctx, Collector<std::pair<int, int64_t>>& out) {
              out.Collect({ctx.runtime().subtask_index, i});
            })
        .SinkTo(sink);
    ASSERT_TRUE(env.Execute().ok());
    std::vector<int64_t> indices;
    std::map<int, std::vector<int64_t>> by_subtask;
    for (const auto& [s, i] : sink.values()) {
      indices.push_back(i);
      by_subtask[s].push_back(i);
    }
    EXPECT_THAT(indices, UnorderedElementsAreArray(Range(0, 1000))) << "parallelism " << p;
    // Every subtask generates a contiguous range.
    for (auto& [s, v] : by_subtask) {
      std::sort(v.begin(), v.end());
      EXPECT_EQ(v.back() - v.front() + 1, static_cast<int64_t>(v.size())) << "subtask " << s;
    }
  }
}

TEST(GeneratorSourceTest, TypeErasedGenerator) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<std::string> sink;
  env.FromSource(GeneratorSource<std::string>([](int64_t i) { return std::to_string(i * i); },
                                              {.count = 4}))
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre("0", "1", "4", "9"));
}

TEST(GeneratorSourceTest, ZeroCount) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSource(GeneratorSource([](int64_t i) { return i; }, {.count = 0})).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), IsEmpty());
}

TEST(GeneratorSourceTest, RateLimitedCompletes) {
  StreamEnvironment env({.parallelism = 2, .batch_size = 16});
  CollectSink<int64_t> sink;
  env.FromSource(
         GeneratorSource([](int64_t i) { return i; }, {.count = 200, .records_per_second = 2000}))
      .SinkTo(sink);
  absl::Time start = absl::Now();
  ASSERT_TRUE(env.Execute().ok());
  // 200 records at 2000/s take about 0.1 s; only a loose lower bound, never an upper one.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(Range(0, 199)));
}

TEST(GeneratorSourceTest, NegativeRateIsAnError) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int64_t> sink;
  env.FromSource(
         GeneratorSource([](int64_t i) { return i; }, {.count = 10, .records_per_second = -1}))
      .SinkTo(sink);
  absl::Status status = env.Execute();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("records_per_second"));
}

// A user-defined source: counts down, one record per poll.
class Countdown : public Source<int> {
 public:
  explicit Countdown(int from) : from_(from) {}
  bool IsBounded() const override { return true; }
  int MaxParallelism() const override { return 1; }
  std::string Describe() const override { return "countdown"; }
  absl::StatusOr<std::unique_ptr<SourceReader<int>>> CreateReader(const SourceContext&) override {
    return std::unique_ptr<SourceReader<int>>(new Reader(from_));
  }

 private:
  class Reader : public SourceReader<int> {
   public:
    explicit Reader(int next) : next_(next) {}
    absl::StatusOr<PollResult> PollNext(Collector<int>& out, int) override {
      if (next_ < 0) return PollResult::End();
      out.Collect(next_--);
      return PollResult::More();
    }

   private:
    int next_;
  };
  int from_;
};

TEST(CustomSourceTest, PolledUntilEnd) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<int> sink;
  env.FromSource(Countdown(3)).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), ElementsAre(3, 2, 1, 0));
}

// --- Sinks ---------------------------------------------------------------------------------------

TEST(CollectSinkTest, ClearAndSize) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 10).SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_EQ(sink.size(), 10u);
  sink.Clear();
  EXPECT_EQ(sink.size(), 0u);
}

TEST(CallbackSinkTest, CalledOncePerRecord) {
  StreamEnvironment env({.parallelism = 3});
  auto mu = std::make_shared<std::mutex>();
  auto got = std::make_shared<std::vector<int64_t>>();
  env.FromSequence(1, 30).SinkTo(CallbackSink<int64_t>([mu, got](const int64_t& x) {
    std::lock_guard<std::mutex> lock(*mu);
    got->push_back(x);
  }));
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(*got, UnorderedElementsAreArray(Range(1, 30)));
}

TEST(CallbackSinkTest, TypedCallbackInlines) {
  StreamEnvironment env({.parallelism = 1});
  std::atomic<int64_t> sum{0};
  auto add = [&sum](const int64_t& x) { sum += x; };
  env.FromSequence(1, 100).SinkTo(CallbackSink<int64_t, decltype(add)>(add));
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_EQ(sum.load(), 5050);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  return lines;
}

TEST(PrintSinkTest, ParallelismOneHasNoPrefix) {
  StreamEnvironment env({.parallelism = 1});
  env.FromCollection(std::vector<std::pair<std::string, int>>{{"a", 1}, {"b", 2}})
      .SinkTo(PrintSink<std::pair<std::string, int>>());
  testing::internal::CaptureStdout();
  absl::Status status = env.Execute();
  std::string out = testing::internal::GetCapturedStdout();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(out, "(a,1)\n(b,2)\n");
}

TEST(PrintSinkTest, ParallelSubtasksPrefixLinesWithTheirOneBasedIndex) {
  StreamEnvironment env({.parallelism = 3});
  env.FromSequence(1, 30).SinkTo(PrintSink<int64_t>());
  testing::internal::CaptureStdout();
  absl::Status status = env.Execute();
  std::string out = testing::internal::GetCapturedStdout();
  ASSERT_TRUE(status.ok()) << status;
  std::vector<std::string> lines = Lines(out);
  ASSERT_EQ(lines.size(), 30u) << out;
  std::vector<int64_t> values;
  std::set<std::string> prefixes;
  for (const std::string& line : lines) {
    size_t gt = line.find("> ");
    ASSERT_NE(gt, std::string::npos) << line;
    std::string prefix = line.substr(0, gt);
    prefixes.insert(prefix);
    EXPECT_TRUE(prefix == "1" || prefix == "2" || prefix == "3") << line;
    values.push_back(std::stoll(line.substr(gt + 2)));
    // The sequence source gives subtask i (1-based i+1) the i-th third, and the sink is chained.
    int64_t v = values.back();
    EXPECT_EQ(prefix, std::to_string((v - 1) / 10 + 1)) << line;
  }
  EXPECT_THAT(prefixes, ElementsAre("1", "2", "3"));
  EXPECT_THAT(values, UnorderedElementsAreArray(Range(1, 30)));
}

TEST(PrintSinkTest, Identifier) {
  StreamEnvironment env({.parallelism = 2});
  env.FromSequence(1, 2).SinkTo(PrintSink<int64_t>({.identifier = "nums"}));
  env.FromCollection(std::vector<std::string>{"solo"})
      .SinkTo(PrintSink<std::string>({.identifier = "words"}))
      .SetParallelism(1);
  testing::internal::CaptureStdout();
  absl::Status status = env.Execute();
  std::string out = testing::internal::GetCapturedStdout();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(Lines(out), UnorderedElementsAre("nums:1> 1", "nums:2> 2", "words> solo"));
}

// Emits one record, 100 * parallelism + subtask index, from each parallel reader.
class WhoAmISource final : public Source<int64_t> {
 public:
  bool IsBounded() const override { return true; }
  absl::StatusOr<std::unique_ptr<SourceReader<int64_t>>> CreateReader(
      const SourceContext& ctx) override {
    class R final : public SourceReader<int64_t> {
     public:
      explicit R(int64_t id) : id_(id) {}
      absl::StatusOr<PollResult> PollNext(Collector<int64_t>& out, int) override {
        if (done_) return PollResult::End();
        done_ = true;
        out.CollectWithTimestamp(id_, 0);
        return PollResult::More();
      }

     private:
      int64_t id_;
      bool done_ = false;
    };
    return std::unique_ptr<SourceReader<int64_t>>(
        new R(100 * ctx.parallelism() + ctx.subtask_index()));
  }
};

// SetParallelism on the stream of FromSource(source, strategy) sets the source's parallelism (the
// watermark operator fused after it follows it), as it does without a strategy.
TEST(SourceParallelismTest, SetParallelismAfterAWatermarkStrategyAppliesToTheSource) {
  StreamEnvironment env(RuntimeOptions{.parallelism = 3});
  CollectSink<int64_t> with_strategy, without;
  env.FromSource(WhoAmISource(), WatermarkStrategy<int64_t>::ForMonotonousTimestamps())
      .SetParallelism(1)
      .SinkTo(with_strategy);
  env.FromSource(WhoAmISource()).SetParallelism(2).SinkTo(without);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(with_strategy.values(), ElementsAre(100));
  EXPECT_THAT(without.values(), UnorderedElementsAre(200, 201));
}

// --- Key types -----------------------------------------------------------------------------------

struct UserPage {
  int64_t user;
  std::string page;
  bool operator==(const UserPage&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const UserPage& k) {
    return H::combine(std::move(h), k.user, k.page);
  }
};

struct Visit {
  int64_t user;
  std::string page;
  int64_t count;
  bool operator==(const Visit&) const = default;
};

std::vector<Visit> Visits() {
  std::vector<Visit> visits;
  for (int64_t i = 0; i < 120; ++i) {
    visits.push_back(Visit{i % 4, (i % 3 == 0) ? "/home" : "/cart", 1});
  }
  return visits;
}

// Expected final counts per (user, page) of Visits().
std::vector<Visit> ExpectedVisitCounts() {
  std::map<std::pair<int64_t, std::string>, int64_t> counts;
  for (const Visit& v : Visits()) ++counts[{v.user, v.page}];
  std::vector<Visit> expected;
  for (const auto& [k, c] : counts) expected.push_back(Visit{k.first, k.second, c});
  return expected;
}

Visit AddVisits(const Visit& a, const Visit& b) { return Visit{a.user, a.page, a.count + b.count}; }

TEST(KeyTypesTest, IntKey) {
  StreamEnvironment env({.parallelism = 3, .execution_mode = ExecutionMode::kBatch});
  CollectSink<std::pair<int, int>> sink;
  std::vector<std::pair<int, int>> input;
  for (int i = 0; i < 60; ++i) input.emplace_back(i % 6, 1);
  env.FromCollection(input)
      .KeyBy([](const std::pair<int, int>& p) { return p.first; })
      .Reduce([](const auto& a, const auto& b) { return std::pair(a.first, a.second + b.second); })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  using P = std::pair<int, int>;
  EXPECT_THAT(sink.values(),
              UnorderedElementsAre(P(0, 10), P(1, 10), P(2, 10), P(3, 10), P(4, 10), P(5, 10)));
}

TEST(KeyTypesTest, StringKey) {
  StreamEnvironment env({.parallelism = 3, .execution_mode = ExecutionMode::kBatch});
  CollectSink<Visit> sink;
  env.FromCollection(Visits())
      .KeyBy([](const Visit& v) { return v.page; })
      .Reduce([](const Visit& a, const Visit& b) {
        return Visit{-1, a.page, a.count + b.count};
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(Visit{-1, "/home", 40}, Visit{-1, "/cart", 80}));
}

TEST(KeyTypesTest, TupleKey) {
  StreamEnvironment env({.parallelism = 3, .execution_mode = ExecutionMode::kBatch});
  CollectSink<Visit> sink;
  env.FromCollection(Visits())
      .KeyBy([](const Visit& v) { return std::make_tuple(v.user, v.page); })
      .Reduce(AddVisits)
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(ExpectedVisitCounts()));
}

TEST(KeyTypesTest, UserStructKey) {
  StreamEnvironment env({.parallelism = 3, .execution_mode = ExecutionMode::kBatch});
  CollectSink<Visit> sink;
  env.FromCollection(Visits())
      .KeyBy([](const Visit& v) {
        return UserPage{v.user, v.page};
      })
      .Reduce(AddVisits)
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(ExpectedVisitCounts()));
}

TEST(KeyTypesTest, UserStructKeyInKeyedProcess) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromCollection(Visits())
      .KeyBy([](const Visit& v) {
        return UserPage{v.user, v.page};
      })
      .Process([](const Visit& v, KeyedProcessContext<UserPage>& ctx, Collector<int64_t>& out) {
        EXPECT_EQ(ctx.CurrentKey(), (UserPage{v.user, v.page}));
        out.Collect(v.user);
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_EQ(sink.size(), 120u);
}

// Every record of a key reaches the same subtask, the one that owns the key's key group.
template <typename K, typename Select>
void ExpectKeyRouting(std::vector<int64_t> input, Select select, int parallelism,
                      int max_parallelism) {
  StreamEnvironment env(
      {.parallelism = parallelism, .max_parallelism = max_parallelism, .batch_size = 7});
  CollectSink<std::pair<K, int>> sink;
  env.FromCollection(input)
      .Rebalance()
      .Map([](int64_t x) { return x; })
      .KeyBy(select)
      .Process([](const int64_t&, KeyedProcessContext<K>& ctx, Collector<std::pair<K, int>>& out) {
        out.Collect({ctx.CurrentKey(), ctx.runtime().subtask_index});
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  std::vector<std::pair<K, int>> got = sink.values();
  ASSERT_EQ(got.size(), input.size());
  std::map<K, std::set<int>> subtasks;
  for (const auto& [k, s] : got) subtasks[k].insert(s);
  std::set<int> used;
  for (const auto& [k, s] : subtasks) {
    ASSERT_EQ(s.size(), 1u) << "a key reached several subtasks";
    int expected =
        OperatorIndexForKeyGroup(KeyGroupFor(k, max_parallelism), max_parallelism, parallelism);
    EXPECT_EQ(*s.begin(), expected);
    used.insert(*s.begin());
  }
  if (subtasks.size() >= 50) {
    EXPECT_EQ(used.size(), static_cast<size_t>(parallelism));
  }
}

TEST(KeyRoutingTest, IntKeys) {
  ExpectKeyRouting<int64_t>(
      Range(0, 999), [](int64_t x) { return x % 97; }, 4, 128);
  ExpectKeyRouting<int64_t>(
      Range(0, 999), [](int64_t x) { return x % 97; }, 3, 7);
}

TEST(KeyRoutingTest, StringKeys) {
  ExpectKeyRouting<std::string>(
      Range(0, 999), [](int64_t x) { return "key-" + std::to_string(x % 61); }, 3, 128);
}

TEST(KeyRoutingTest, TupleKeys) {
  ExpectKeyRouting<std::tuple<int, std::string>>(
      Range(0, 999),
      [](int64_t x) { return std::make_tuple(static_cast<int>(x % 7), std::to_string(x % 11)); }, 5,
      256);
}

}  // namespace
}  // namespace sluice
