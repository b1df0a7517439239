// Connect: one operator over two streams of different types (CoMap, CoFlatMap).
#include <sluice/sluice.h>

#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

class ConnectTest : public ::testing::TestWithParam<int> {};

TEST_P(ConnectTest, CoMapMergesBothInputsIntoOneStream) {
  StreamEnvironment env({.parallelism = GetParam()});
  CollectSink<std::string> sink;
  auto numbers = env.FromSequence(1, 50);
  auto words = env.FromCollection(std::vector<std::string>{"a", "bb", "ccc"});
  numbers.Connect(words)
      .Map([](int64_t n) { return "n" + std::to_string(n); },
           [](const std::string& w) { return "w" + w; })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("co-map").ok());
  std::vector<std::string> expected;
  for (int n = 1; n <= 50; ++n) expected.push_back("n" + std::to_string(n));
  for (std::string w : {"a", "bb", "ccc"}) expected.push_back("w" + w);
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

TEST_P(ConnectTest, CoFlatMapKeyedInputsAndEmptySecondInput) {
  StreamEnvironment env({.parallelism = GetParam()});
  CollectSink<int64_t> sink;
  auto a = env.FromSequence(1, 20).KeyBy([](int64_t x) { return x % 3; });
  auto b = env.FromCollection(std::vector<int>{});
  a.Connect(b)
      .FlatMap(
          [](int64_t x, Collector<int64_t>& out) {
            if (x % 2 == 0) {
              out.Collect(x);
              out.Collect(-x);
            }
          },
          [](int, Collector<int64_t>& out) { out.Collect(0); })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("co-flat-map").ok());
  std::vector<int64_t> expected;
  for (int64_t x = 2; x <= 20; x += 2) {
    expected.push_back(x);
    expected.push_back(-x);
  }
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

TEST_P(ConnectTest, ExceptionInSecondFunctionFailsTheJobNamingTheOperator) {
  StreamEnvironment env({.parallelism = GetParam()});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 10)
      .Connect(env.FromSequence(1, 10))
      .Map([](int64_t x) { return x; },
           [](int64_t x) -> int64_t {
             if (x == 7) throw std::runtime_error("second input broke");
             return x;
           })
      .Name("joiner")
      .SinkTo(sink);
  absl::Status status = env.Execute("co-map-failure");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(status.message(), HasSubstr("joiner"));
  EXPECT_THAT(status.message(), HasSubstr("second input broke"));
}

INSTANTIATE_TEST_SUITE_P(Parallelism, ConnectTest, ::testing::Values(1, 2, 4));

}  // namespace
}  // namespace sluice
