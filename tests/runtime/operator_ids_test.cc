// Operator ids (src/runtime/operator_ids.h): MurmurHash3 against its reference values, ids of a
// Uid, and ids derived from the graph — stable under names, parallelism and chaining, changed by
// an operator inserted upstream.
#include "runtime/operator_ids.h"

#include <sluice/sluice.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"

namespace sluice::internal {
namespace {

std::string Hex(absl::string_view bytes) { return absl::BytesToHexString(bytes); }

// Guava's Hashing.murmur3_128() (seed 0), which Flink's hasher uses.
TEST(Murmur3Test, MatchesTheReferenceValues) {
  EXPECT_EQ(Hex(Murmur3_128("")), "00000000000000000000000000000000");
  EXPECT_EQ(Hex(Murmur3_128("hello")), "029bbd41b3a7d8cb191dae486a901e5b");
  EXPECT_EQ(Hex(Murmur3_128("The quick brown fox jumps over the lazy dog")),
            "6c1b07bc7bbc4be347939ac4a93c437a");
}

// The ids of the job `build` describes, by node.
std::vector<std::string> Ids(const std::function<void(StreamEnvironment&)>& build) {
  StreamEnvironment env;
  build(env);
  absl::StatusOr<std::vector<std::string>> ids = AssignOperatorIds(env.graph());
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<std::string>{};
}

TEST(OperatorIdsTest, NamesParallelismAndPartitioningDoNotChangeDerivedIds) {
  CollectSink<int64_t> sink;
  auto plain = Ids([&](StreamEnvironment& env) {
    env.FromSequence(1, 9).Map([](int64_t x) { return x; }).SinkTo(sink);
  });
  auto renamed = Ids([&](StreamEnvironment& env) {
    env.FromSequence(1, 9)
        .Rebalance()
        .Map([](int64_t x) { return x * 2; })
        .Name("double")
        .SetParallelism(3)
        .SinkTo(sink);
  });
  ASSERT_EQ(plain.size(), 3u);
  EXPECT_EQ(plain, renamed);
  for (const std::string& id : plain) EXPECT_EQ(id.size(), 32u);
  EXPECT_NE(plain[0], plain[1]);
  EXPECT_NE(plain[1], plain[2]);
}

TEST(OperatorIdsTest, AnOperatorInsertedUpstreamChangesTheIdsAfterIt) {
  CollectSink<int64_t> sink;
  auto before = Ids([&](StreamEnvironment& env) {
    env.FromSequence(1, 9).Map([](int64_t x) { return x; }).SinkTo(sink);
  });
  auto after = Ids([&](StreamEnvironment& env) {
    env.FromSequence(1, 9)
        .Filter([](int64_t) { return true; })
        .Map([](int64_t x) { return x; })
        .SinkTo(sink);
  });
  ASSERT_EQ(after.size(), 4u);
  EXPECT_EQ(before[0], after[0]);  // the source is where it was
  EXPECT_NE(before[1], after[2]);  // the Map moved
  EXPECT_NE(before[1], after[1]);
  EXPECT_NE(before[2], after[3]);
}

TEST(OperatorIdsTest, AUidIsTheMurmurHashOfItAndSurvivesAnInsertion) {
  CollectSink<int64_t> sink;
  auto before = Ids([&](StreamEnvironment& env) {
    env.FromSequence(1, 9).Map([](int64_t x) { return x; }).Uid("mapper").SinkTo(sink);
  });
  auto after = Ids([&](StreamEnvironment& env) {
    env.FromSequence(1, 9)
        .Filter([](int64_t) { return true; })
        .Map([](int64_t x) { return x; })
        .Uid("mapper")
        .SinkTo(sink);
  });
  EXPECT_EQ(before[1], Hex(Murmur3_128("mapper")));
  EXPECT_EQ(after[2], before[1]);
}

TEST(OperatorIdsTest, TheWatermarkOperatorOfASourceWithUidDerivesItsIdFromIt) {
  CollectSink<int64_t> sink;
  auto strategy = WatermarkStrategy<int64_t>::ForMonotonousTimestamps().WithTimestampAssigner(
      [](const int64_t& x) { return x; });
  auto one = Ids([&](StreamEnvironment& env) {
    env.FromSource(GeneratorSource([](int64_t i) { return i; }, {.count = 9}), strategy)
        .Uid("events")
        .SinkTo(sink);
  });
  StreamEnvironment env;
  env.FromSource(GeneratorSource([](int64_t i) { return i; }, {.count = 9}), strategy).SinkTo(sink);
  const std::string& watermark_node_name = env.graph().nodes[1].name;
  ASSERT_EQ(one.size(), 3u);
  EXPECT_EQ(one[0], Hex(Murmur3_128("events")));
  EXPECT_EQ(one[1], Hex(Murmur3_128("events\n" + watermark_node_name)));
}

// Two two-phase windows on one input with a uid: each local phase follows that input; they derive
// their ids from their positions (not both from the uid, which would clash).
TEST(OperatorIdsTest, TwoLocalPhasesOnOneInputWithUidGetDistinctIds) {
  CollectSink<int64_t> sink;
  auto ids = Ids([&](StreamEnvironment& env) {
    DataStream<int64_t> in =
        env.FromSequence(1, 9)
            .AssignTimestampsAndWatermarks(
                WatermarkStrategy<int64_t>::ForMonotonousTimestamps().WithTimestampAssigner(
                    [](const int64_t& x) { return x; }))
            .Uid("parse");
    for (int i = 0; i < 2; ++i) {
      in.KeyBy([](int64_t x) { return x % 3; })
          .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(5)))
          .TwoPhase()
          .Reduce([](int64_t a, int64_t b) { return a + b; })
          .SinkTo(sink);
    }
  });
  std::vector<std::string> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end());
  EXPECT_EQ(ids.size(), 8u);  // source, watermarks, 2 x (local, global, sink)
}

TEST(OperatorIdsTest, UnionInputsAndUidHash) {
  CollectSink<int64_t> sink;
  auto ids = Ids([&](StreamEnvironment& env) {
    DataStream<int64_t> a = env.FromSequence(1, 3);
    DataStream<int64_t> b = env.FromSequence(4, 6);
    a.Union(b)
        .Map([](int64_t x) { return x; })
        .UidHash("00112233445566778899AABBCCDDEEFF")
        .SinkTo(sink);
  });
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_NE(ids[0], ids[1]);  // two sources at two positions
  EXPECT_EQ(ids[2], "00112233445566778899aabbccddeeff");
}

}  // namespace
}  // namespace sluice::internal
