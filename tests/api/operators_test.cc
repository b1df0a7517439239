#include <sluice/sluice.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

TEST(OperatorsTest, MapFilterChain) {
  StreamEnvironment env({.parallelism = 2});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 10)
      .Map([](int64_t x) { return x * 10; })
      .Filter([](int64_t x) { return x % 20 == 0; })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("map-filter").ok());
  EXPECT_THAT(sink.values(), UnorderedElementsAre(20, 40, 60, 80, 100));
}

TEST(OperatorsTest, KeyedReduceStreaming) {
  StreamEnvironment env({.parallelism = 2, .execution_mode = ExecutionMode::kStreaming});
  CollectSink<std::pair<std::string, int>> sink;
  env.FromCollection(std::vector<std::pair<std::string, int>>{{"a", 1}, {"b", 2}, {"a", 3}})
      .KeyBy([](const std::pair<std::string, int>& p) { return p.first; })
      .Reduce([](const auto& acc, const auto& v) { return std::pair(acc.first, acc.second + v.second); })
      .SinkTo(sink);
  absl::Status status = env.Execute("reduce");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(), UnorderedElementsAre(std::pair<std::string, int>("a", 1),
                                                  std::pair<std::string, int>("b", 2),
                                                  std::pair<std::string, int>("a", 4)));
}

}  // namespace
}  // namespace sluice
