// Property tests: the same job gives the same multiset of results at every parallelism, batch size
// and channel capacity.
#include <sluice/sluice.h>

#include <algorithm>
#include <cstdint>
#include <map>
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

struct Config {
  int parallelism;
  int batch_size;
  int channel_capacity;
  std::string ToString() const {
    return absl::StrCat("p=", parallelism, " batch=", batch_size, " capacity=", channel_capacity);
  }
};

std::vector<Config> AllConfigs() {
  std::vector<Config> configs;
  for (int p : {1, 2, 4}) {
    for (int b : {1, 7, 1024}) {
      for (int c : {1, 16}) configs.push_back({p, b, c});
    }
  }
  return configs;
}

RuntimeOptions OptionsFor(const Config& c, ExecutionMode mode) {
  return RuntimeOptions{.parallelism = c.parallelism,
                        .batch_size = c.batch_size,
                        .channel_capacity = c.channel_capacity,
                        .worker_threads = 2,
                        .execution_mode = mode};
}

// Lines of "words": deterministic, with repeated words.
std::vector<std::string> Corpus() {
  static const char* kWords[] = {"stream", "batch", "key", "sluice", "flink", "river", "gate"};
  std::vector<std::string> lines;
  for (int i = 0; i < 150; ++i) {
    std::string line;
    for (int j = 0; j <= i % 6; ++j) {
      if (!line.empty()) line += ' ';
      line += kWords[(i * 3 + j * 5) % 7];
    }
    lines.push_back(line);
  }
  return lines;
}

using WordCount = std::pair<std::string, int64_t>;

// flatMap → keyBy → reduce → map. In streaming mode a count reduce emits (w, 1), ..., (w, n) per
// word whatever the arrival order; in batch mode only (w, n).
std::vector<std::string> RunWordCount(const Config& c, ExecutionMode mode) {
  StreamEnvironment env(OptionsFor(c, mode));
  CollectSink<std::string> sink;
  env.FromCollection(Corpus())
      .Rebalance()
      .FlatMap([](const std::string& line, Collector<WordCount>& out) {
        size_t start = 0;
        while (start <= line.size()) {
          size_t end = line.find(' ', start);
          if (end == std::string::npos) end = line.size();
          if (end > start) out.Emplace(line.substr(start, end - start), 1);
          start = end + 1;
        }
      })
      .KeyBy([](const WordCount& wc) { return wc.first; })
      .Reduce([](const WordCount& a, const WordCount& b) {
        return WordCount(a.first, a.second + b.second);
      })
      .Map([](const WordCount& wc) { return absl::StrCat(wc.first, "=", wc.second); })
      .SinkTo(sink);
  absl::Status status = env.Execute("word-count");
  EXPECT_TRUE(status.ok()) << c.ToString() << ": " << status;
  return sink.values();
}

std::vector<std::string> ExpectedWordCount(ExecutionMode mode) {
  std::map<std::string, int64_t> counts;
  for (const std::string& line : Corpus()) {
    size_t start = 0;
    while (start <= line.size()) {
      size_t end = line.find(' ', start);
      if (end == std::string::npos) end = line.size();
      if (end > start) ++counts[line.substr(start, end - start)];
      start = end + 1;
    }
  }
  std::vector<std::string> expected;
  for (const auto& [w, n] : counts) {
    if (mode == ExecutionMode::kBatch) {
      expected.push_back(absl::StrCat(w, "=", n));
    } else {
      for (int64_t i = 1; i <= n; ++i) expected.push_back(absl::StrCat(w, "=", i));
    }
  }
  return expected;
}

TEST(PropertyTest, WordCountStreamingIsTheSameEverywhere) {
  const std::vector<std::string> expected = ExpectedWordCount(ExecutionMode::kStreaming);
  for (const Config& c : AllConfigs()) {
    EXPECT_THAT(RunWordCount(c, ExecutionMode::kStreaming), UnorderedElementsAreArray(expected))
        << c.ToString();
  }
}

TEST(PropertyTest, WordCountBatchIsTheSameEverywhere) {
  const std::vector<std::string> expected = ExpectedWordCount(ExecutionMode::kBatch);
  for (const Config& c : AllConfigs()) {
    EXPECT_THAT(RunWordCount(c, ExecutionMode::kBatch), UnorderedElementsAreArray(expected))
        << c.ToString();
  }
}

// Union of three differently shaped streams, rebalanced, filtered and summed per key.
std::vector<std::tuple<int64_t, int64_t>> RunUnionRebalance(const Config& c) {
  StreamEnvironment env(OptionsFor(c, ExecutionMode::kBatch));
  CollectSink<std::tuple<int64_t, int64_t>> sink;
  CollectSink<int64_t> raw;
  auto a = env.FromSequence(1, 500);
  auto b = env.FromSource(GeneratorSource([](int64_t i) { return 1000 + i * 3; }, {.count = 300}))
               .Map([](int64_t x) { return x - 1; });
  std::vector<int64_t> fixed;
  for (int64_t i = 0; i < 77; ++i) fixed.push_back(-i);
  auto d = env.FromCollection(fixed);
  auto all = a.Union(b, d).Rebalance().Filter([](int64_t x) { return x % 4 != 1; });
  all.SinkTo(raw);
  all.Map([](int64_t x) { return std::tuple<int64_t, int64_t>(((x % 5) + 5) % 5, x); })
      .KeyBy([](const std::tuple<int64_t, int64_t>& t) { return std::get<0>(t); })
      .Reduce([](const auto& acc, const auto& v) {
        return std::tuple<int64_t, int64_t>(std::get<0>(acc), std::get<1>(acc) + std::get<1>(v));
      })
      .SinkTo(sink);
  absl::Status status = env.Execute("union-rebalance");
  EXPECT_TRUE(status.ok()) << c.ToString() << ": " << status;
  std::vector<int64_t> got = raw.values();
  std::sort(got.begin(), got.end());
  std::vector<int64_t> want;
  for (int64_t x = 1; x <= 500; ++x) want.push_back(x);
  for (int64_t i = 0; i < 300; ++i) want.push_back(1000 + i * 3 - 1);
  for (int64_t x : fixed) want.push_back(x);
  want.erase(std::remove_if(want.begin(), want.end(), [](int64_t x) { return x % 4 == 1; }),
             want.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want) << c.ToString();
  return sink.values();
}

TEST(PropertyTest, UnionRebalanceIsTheSameEverywhere) {
  const std::vector<std::tuple<int64_t, int64_t>> reference = RunUnionRebalance({1, 1024, 16});
  ASSERT_EQ(reference.size(), 5u);
  for (const Config& c : AllConfigs()) {
    EXPECT_THAT(RunUnionRebalance(c), UnorderedElementsAreArray(reference)) << c.ToString();
  }
}

// Shuffle and broadcast: counts per value do not depend on the configuration either.
std::vector<int64_t> RunBroadcastShuffle(const Config& c) {
  StreamEnvironment env(OptionsFor(c, ExecutionMode::kStreaming));
  CollectSink<int64_t> sink;
  env.FromSequence(1, 200)
      .Shuffle()
      .Map([](int64_t x) { return x * 2; })
      .Broadcast()
      .Filter([](int64_t x) { return x % 3 != 0; })
      .SetParallelism(2)
      .SinkTo(sink);
  absl::Status status = env.Execute("broadcast-shuffle");
  EXPECT_TRUE(status.ok()) << c.ToString() << ": " << status;
  return sink.values();
}

TEST(PropertyTest, BroadcastShuffleIsTheSameEverywhere) {
  std::vector<int64_t> expected;
  for (int64_t x = 1; x <= 200; ++x) {
    if ((2 * x) % 3 != 0) {
      expected.push_back(2 * x);
      expected.push_back(2 * x);
    }
  }
  for (const Config& c : AllConfigs()) {
    EXPECT_THAT(RunBroadcastShuffle(c), UnorderedElementsAreArray(expected)) << c.ToString();
  }
}

}  // namespace
}  // namespace sluice
