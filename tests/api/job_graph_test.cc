// JobHandle::Graph(): the vertices (chains with their parallelism and operators' ids) and the
// edges between them with their ship strategy, exactly.
#include <sluice/sluice.h>

#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "runtime/operator_ids.h"

namespace sluice {
namespace {

TEST(JobGraphTest, VerticesAreChainsAndEdgesShowHowRecordsAreShipped) {
  RuntimeOptions options;
  options.parallelism = 2;
  StreamEnvironment env(options);
  CollectSink<int64_t> sums, small;
  DataStream<int64_t> doubled = env.FromSequence(0, 99).Map([](int64_t x) { return x * 2; });
  doubled.Name("double");
  doubled.KeyBy([](int64_t x) { return x % 10; })
      .Reduce([](int64_t a, int64_t b) { return a + b; })
      .Uid("sums")
      .SinkTo(sums);
  doubled.Filter([](int64_t x) { return x < 10; })
      .SetParallelism(1)
      .SinkTo(small)
      .SetParallelism(1);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("plan");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(job->Wait().ok());
  const JobGraph g = job->Graph();

  ASSERT_EQ(g.vertices.size(), 3u);
  const JobGraph::Vertex& first = g.vertices[0];
  EXPECT_EQ(first.name, "Source: Sequence 0..99 -> double");
  EXPECT_EQ(first.parallelism, 2);
  ASSERT_EQ(first.operators.size(), 2u);
  EXPECT_EQ(first.operators[0].node, 0);
  EXPECT_EQ(first.operators[0].kind, "Source");
  EXPECT_EQ(first.operators[1].name, "double");
  EXPECT_EQ(first.operators[1].kind, "Map");
  EXPECT_EQ(first.operators[1].uid, "");
  EXPECT_EQ(first.id, first.operators[0].id);

  const JobGraph::Vertex& reduce = g.vertices[1];
  EXPECT_EQ(reduce.parallelism, 2);
  ASSERT_EQ(reduce.operators.size(), 2u);
  EXPECT_EQ(reduce.operators[0].name, "Keyed Reduce");
  EXPECT_EQ(reduce.operators[0].uid, "sums");
  EXPECT_EQ(reduce.operators[0].id, absl::BytesToHexString(internal::Murmur3_128("sums")));
  EXPECT_EQ(reduce.operators[1].kind, "Sink");
  EXPECT_EQ(reduce.name, "Keyed Reduce -> " + reduce.operators[1].name);

  const JobGraph::Vertex& filter = g.vertices[2];
  EXPECT_EQ(filter.parallelism, 1);
  ASSERT_EQ(filter.operators.size(), 2u);
  EXPECT_EQ(filter.operators[0].kind, "Filter");
  EXPECT_EQ(filter.operators[1].kind, "Sink");

  ASSERT_EQ(g.edges.size(), 2u);
  EXPECT_EQ(g.edges[0].from, 0);
  EXPECT_EQ(g.edges[0].to, 1);
  EXPECT_EQ(g.edges[0].ship_strategy, "HASH");
  EXPECT_EQ(g.edges[1].from, 0);
  EXPECT_EQ(g.edges[1].to, 2);
  EXPECT_EQ(g.edges[1].ship_strategy, "REBALANCE");
  EXPECT_EQ(g.edges[1].side_output, "");

  // Every operator id is distinct and 32 hex digits.
  std::vector<std::string> ids;
  for (const auto& v : g.vertices) {
    for (const auto& op : v.operators) ids.push_back(op.id);
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(std::unique(ids.begin(), ids.end()), ids.end());
  for (const std::string& id : ids) EXPECT_EQ(id.size(), 32u);

  JobHandle moved = std::move(*job);
  EXPECT_EQ(moved.Graph().vertices.size(), 3u);
  EXPECT_TRUE(job->Graph().vertices.empty());  // NOLINT(bugprone-use-after-move): moved-from
}

}  // namespace
}  // namespace sluice
