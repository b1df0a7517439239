// End-to-end jobs that combine most of the API: user record types, keyed state in a process
// function, side outputs, unions, broadcast and several sinks.
#include <sluice/sluice.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice {
namespace {

using ::testing::UnorderedElementsAreArray;

struct Click {
  int64_t user;
  std::string page;
  int64_t time;
  bool operator==(const Click&) const = default;
};

struct UserPage {
  int64_t user;
  std::string page;
  bool operator==(const UserPage&) const = default;
  bool operator<(const UserPage& o) const {
    return std::tie(user, page) < std::tie(o.user, o.page);
  }
  template <typename H>
  friend H AbslHashValue(H h, const UserPage& k) {
    return H::combine(std::move(h), k.user, k.page);
  }
};

Click MakeClick(int64_t i) {
  static const char* kPages[] = {"/home", "/cart", "/search", "/item"};
  return Click{i % 11, kPages[(i * 7) % 4], i};
}

// Counts clicks per (user, page) and emits a line at every 5th click; clicks with a negative
// time go to a side output; the first click of each key is announced on another side output.
class PageCounter : public KeyedProcessFunction<UserPage, Click, std::string> {
 public:
  PageCounter(OutputTag<Click> invalid, OutputTag<UserPage> first)
      : invalid_(std::move(invalid)), first_(std::move(first)) {}
  void ProcessElement(const Click& c, Context& ctx, Collector<std::string>& out) override {
    if (c.time % 13 == 0) {
      ctx.Output(invalid_, c);
      return;
    }
    int64_t& n = counts_[ctx.CurrentKey()];
    if (n == 0) ctx.Output(first_, ctx.CurrentKey());
    if (++n % 5 == 0)
      out.Collect(absl::StrCat(ctx.CurrentKey().user, ctx.CurrentKey().page, "#", n));
  }

 private:
  OutputTag<Click> invalid_;
  OutputTag<UserPage> first_;
  std::map<UserPage, int64_t> counts_;
};

struct Expected {
  std::vector<std::string> milestones;
  std::vector<int64_t> invalid_times;
  std::vector<UserPage> first_keys;
};

Expected Compute(int64_t n) {
  Expected e;
  std::map<UserPage, int64_t> counts;
  for (int64_t i = 0; i < n; ++i) {
    Click c = MakeClick(i);
    if (c.time % 13 == 0) {
      e.invalid_times.push_back(c.time);
      continue;
    }
    UserPage k{c.user, c.page};
    int64_t& count = counts[k];
    if (count == 0) e.first_keys.push_back(k);
    if (++count % 5 == 0) e.milestones.push_back(absl::StrCat(k.user, k.page, "#", count));
  }
  return e;
}

class ClickPipelineTest : public ::testing::TestWithParam<int> {};

TEST_P(ClickPipelineTest, CountsSideOutputsAndUnions) {
  const int parallelism = GetParam();
  constexpr int64_t kClicks = 3000;
  StreamEnvironment env(
      {.parallelism = parallelism, .batch_size = 50, .channel_capacity = 4, .worker_threads = 2});
  OutputTag<Click> invalid("invalid");
  OutputTag<UserPage> first("first");
  CollectSink<std::string> milestones;
  CollectSink<int64_t> invalid_times;
  CollectSink<std::string> first_keys;

  auto clicks = env.FromSource(GeneratorSource(MakeClick, {.count = kClicks}), "clicks");
  auto counted = clicks.KeyBy([](const Click& c) {
                         return UserPage{c.user, c.page};
                       })
                     .Process(PageCounter(invalid, first))
                     .Name("page-counter");
  counted.SinkTo(milestones);
  counted.GetSideOutput(invalid)
      .Map([](const Click& c) { return c.time; })
      .SetParallelism(1)
      .SinkTo(invalid_times);
  // First-seen keys as text, unioned with a fixed header stream.
  auto header = env.FromCollection(std::vector<std::string>{"header"});
  header
      .Union(counted.GetSideOutput(first).Map(
          [](const UserPage& k) { return absl::StrCat(k.user, k.page); }))
      .SinkTo(first_keys);
  absl::Status status = env.Execute("clicks");
  ASSERT_TRUE(status.ok()) << status;

  Expected e = Compute(kClicks);
  EXPECT_THAT(milestones.values(), UnorderedElementsAreArray(e.milestones));
  // The Map at parallelism 1 merges the invalid clicks of every subtask: only the multiset is
  // fixed.
  EXPECT_THAT(invalid_times.values(), UnorderedElementsAreArray(e.invalid_times));
  std::vector<std::string> keys = {"header"};
  for (const UserPage& k : e.first_keys) keys.push_back(absl::StrCat(k.user, k.page));
  EXPECT_THAT(first_keys.values(), UnorderedElementsAreArray(keys));
}

INSTANTIATE_TEST_SUITE_P(Parallelism, ClickPipelineTest, ::testing::Values(1, 2, 4));

// Enrichment by broadcast: every subtask of the consumer sees every rule.
TEST(BroadcastPipelineTest, EverySubtaskSeesEveryRule) {
  StreamEnvironment env({.parallelism = 3});
  CollectSink<std::tuple<int, int64_t>> seen;
  env.FromSequence(1, 12)
      .Broadcast()
      .Process([](const int64_t& x, ProcessContext& ctx, Collector<std::tuple<int, int64_t>>& out) {
        out.Collect({ctx.runtime().subtask_index, x});
      })
      .SinkTo(seen);
  ASSERT_TRUE(env.Execute().ok());
  std::vector<std::tuple<int, int64_t>> expected;
  for (int s = 0; s < 3; ++s) {
    for (int64_t x = 1; x <= 12; ++x) expected.emplace_back(s, x);
  }
  EXPECT_THAT(seen.values(), UnorderedElementsAreArray(expected));
}

// A printed word count: PrintSink's exact lines (in batch mode the final count per word only).
TEST(WordCountTest, PrintsFinalCountsInBatchMode) {
  StreamEnvironment env({.parallelism = 2, .execution_mode = ExecutionMode::kBatch});
  env.FromCollection(std::vector<std::string>{"to be or not to be", "to do"})
      .FlatMap([](const std::string& line, Collector<std::string>& out) {
        size_t start = 0;
        while (start < line.size()) {
          size_t end = line.find(' ', start);
          if (end == std::string::npos) end = line.size();
          out.Collect(line.substr(start, end - start));
          start = end + 1;
        }
      })
      .Map([](const std::string& w) { return std::pair<std::string, int64_t>(w, 1); })
      .KeyBy([](const auto& p) { return p.first; })
      .Reduce([](const auto& a, const auto& b) { return std::pair(a.first, a.second + b.second); })
      .SinkTo(PrintSink<std::pair<std::string, int64_t>>())
      .SetParallelism(1);
  ::testing::internal::CaptureStdout();
  absl::Status status = env.Execute("word-count");
  std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_TRUE(status.ok()) << status;
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    ASSERT_NE(end, std::string::npos) << "unterminated line in " << out;
    lines.push_back(out.substr(start, end - start));
    start = end + 1;
  }
  EXPECT_THAT(lines,
              UnorderedElementsAreArray({"(to,3)", "(be,2)", "(or,1)", "(not,1)", "(do,1)"}));
}

}  // namespace
}  // namespace sluice
