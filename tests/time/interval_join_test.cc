// Interval join (Flink's KeyedStream.intervalJoin and IntervalJoinOperator semantics).
#include <sluice/sluice.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace sluice {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAreArray;

WatermarkStrategy<int64_t> TimestampIsValue() {
  return WatermarkStrategy<int64_t>::ForMonotonousTimestamps().WithTimestampAssigner(
      [](int64_t v) { return v; });
}

// Pairs each record with the timestamp it carries.
template <typename T>
auto WithTimestamps(const DataStream<T>& stream) {
  return stream.Process(
      [](const T& v, ProcessContext& ctx, Collector<std::pair<T, Timestamp>>& out) {
        out.Collect({v, ctx.timestamp()});
      });
}

class JoinAsText : public ProcessJoinFunction<int64_t, int64_t, std::string> {
 public:
  void ProcessElement(const int64_t& left, const int64_t& right, Context& ctx,
                      Collector<std::string>& out) override {
    EXPECT_EQ(ctx.LeftTimestamp(), left);
    EXPECT_EQ(ctx.RightTimestamp(), right);
    EXPECT_EQ(ctx.timestamp(), std::max(left, right));
    out.Collect(absl::StrCat(left, ",", right));
  }
};

class IntervalJoinTest : public ::testing::TestWithParam<int> {
 protected:
  StreamEnvironment env_{{.parallelism = GetParam(), .execution_mode = ExecutionMode::kStreaming}};
};

// The example of Flink's documentation ("Joining" → "Interval Join"): orange elements at
// 0, 2, 3, 4, 5, 7 and green ones at 0, 1, 6, 7, Between(-2 ms, +1 ms).
TEST_P(IntervalJoinTest, FlinkDocumentationExample) {
  CollectSink<std::pair<std::string, Timestamp>> sink;
  auto orange = env_.FromSource(CollectionSource<int64_t>({0, 2, 3, 4, 5, 7}), TimestampIsValue());
  auto green = env_.FromSource(CollectionSource<int64_t>({0, 1, 6, 7}), TimestampIsValue());
  auto joined = orange.KeyBy([](int64_t) { return 0; })
                    .IntervalJoin(green.KeyBy([](int64_t) { return 0; }))
                    .Between(absl::Milliseconds(-2), absl::Milliseconds(1))
                    .Process(JoinAsText());
  WithTimestamps(joined).SinkTo(sink);
  absl::Status status = env_.Execute("orange-green");
  ASSERT_TRUE(status.ok()) << status;
  std::vector<std::pair<std::string, Timestamp>> expected = {{"0,0", 0}, {"0,1", 1}, {"2,0", 2},
                                                             {"2,1", 2}, {"3,1", 3}, {"5,6", 6},
                                                             {"7,6", 7}, {"7,7", 7}};
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

TEST_P(IntervalJoinTest, JoinsOnlyEqualKeys) {
  CollectSink<std::string> sink;
  auto left = env_.FromSource(CollectionSource<int64_t>({10, 11, 12, 13}), TimestampIsValue());
  auto right = env_.FromSource(CollectionSource<int64_t>({10, 11, 12, 13}), TimestampIsValue());
  left.KeyBy([](int64_t v) { return v % 2; })
      .IntervalJoin(right.KeyBy([](int64_t v) { return v % 2; }))
      .Between(absl::Milliseconds(-2), absl::Milliseconds(2))
      .Process([](int64_t l, int64_t r, Collector<std::string>& out) {
        out.Collect(absl::StrCat(l, ",", r));
      })
      .SinkTo(sink);
  absl::Status status = env_.Execute("parity");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray({"10,10", "10,12", "12,10", "12,12", "11,11",
                                                        "11,13", "13,11", "13,13"}));
}

TEST_P(IntervalJoinTest, RecordsWithoutTimestampsFailTheJob) {
  CollectSink<std::string> sink;
  env_.FromCollection(std::vector<int64_t>{1, 2})
      .KeyBy([](int64_t) { return 0; })
      .IntervalJoin(
          env_.FromSource(CollectionSource<int64_t>({1}), TimestampIsValue()).KeyBy([](int64_t) {
            return 0;
          }))
      .Between(absl::ZeroDuration(), absl::ZeroDuration())
      .Process(JoinAsText())
      .Name("joiner")
      .SinkTo(sink);
  absl::Status status = env_.Execute("no-timestamps");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("joiner"));
  EXPECT_THAT(status.message(), HasSubstr("has no timestamp"));
}

TEST_P(IntervalJoinTest, ExceptionInTheJoinFunctionFailsTheJob) {
  CollectSink<int64_t> sink;
  env_.FromSource(CollectionSource<int64_t>({1, 2, 3}), TimestampIsValue())
      .KeyBy([](int64_t) { return 0; })
      .IntervalJoin(env_.FromSource(CollectionSource<int64_t>({1, 2, 3}), TimestampIsValue())
                        .KeyBy([](int64_t) { return 0; }))
      .Between(absl::ZeroDuration(), absl::ZeroDuration())
      .Process([](int64_t l, int64_t, Collector<int64_t>& out) {
        if (l == 2) throw std::runtime_error("cannot join 2");
        out.Collect(l);
      })
      .SinkTo(sink);
  absl::Status status = env_.Execute("join-throws");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(status.message(), HasSubstr("Interval Join"));
  EXPECT_THAT(status.message(), HasSubstr("cannot join 2"));
}

INSTANTIATE_TEST_SUITE_P(Parallelism, IntervalJoinTest, ::testing::Values(1, 2, 4));

// --- Inclusive and exclusive bounds --------------------------------------------------------------

struct BoundsCase {
  int64_t lower;
  bool lower_inclusive;
  int64_t upper;
  bool upper_inclusive;
  std::vector<std::pair<int64_t, int64_t>> expected;  // (left, right) for elements 1..4 each
};

class IntervalJoinBoundsTest : public ::testing::TestWithParam<std::tuple<BoundsCase, int>> {};

TEST_P(IntervalJoinBoundsTest, JoinsExactlyThePairsWithinTheBounds) {
  const auto& [c, parallelism] = GetParam();
  StreamEnvironment env({.parallelism = parallelism, .execution_mode = ExecutionMode::kStreaming});
  CollectSink<std::pair<int64_t, int64_t>> sink;
  auto left = env.FromSource(CollectionSource<int64_t>({1, 2, 3, 4}), TimestampIsValue());
  auto right = env.FromSource(CollectionSource<int64_t>({1, 2, 3, 4}), TimestampIsValue());
  auto joined = left.KeyBy([](int64_t) { return std::string("k"); })
                    .IntervalJoin(right.KeyBy([](int64_t) { return std::string("k"); }))
                    .Between(absl::Milliseconds(c.lower), absl::Milliseconds(c.upper));
  if (!c.lower_inclusive) joined = joined.LowerBoundExclusive();
  if (!c.upper_inclusive) joined = joined.UpperBoundExclusive();
  joined
      .Process([](int64_t l, int64_t r, Collector<std::pair<int64_t, int64_t>>& out) {
        out.Collect({l, r});
      })
      .SinkTo(sink);
  absl::Status status = env.Execute("bounds");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(c.expected));
}

INSTANTIATE_TEST_SUITE_P(
    Bounds, IntervalJoinBoundsTest,
    ::testing::Combine(
        ::testing::Values(
            BoundsCase{1, true, 3, false, {{1, 2}, {1, 3}, {2, 3}, {2, 4}, {3, 4}}},
            BoundsCase{-3, false, -1, true, {{2, 1}, {3, 1}, {3, 2}, {4, 2}, {4, 3}}},
            BoundsCase{-2, true, -1, true, {{2, 1}, {3, 1}, {3, 2}, {4, 2}, {4, 3}}},
            BoundsCase{
                -1,
                true,
                1,
                true,
                {{1, 1}, {1, 2}, {2, 1}, {2, 2}, {2, 3}, {3, 2}, {3, 3}, {3, 4}, {4, 3}, {4, 4}}},
            BoundsCase{1, true, 2, true, {{1, 2}, {1, 3}, {2, 3}, {2, 4}, {3, 4}}},
            BoundsCase{-3, false, -1, false, {{3, 1}, {4, 2}}},
            BoundsCase{-1, false, 1, false, {{1, 1}, {2, 2}, {3, 3}, {4, 4}}},
            BoundsCase{1, false, 3, false, {{1, 3}, {2, 4}}},
            BoundsCase{0, false, 0, false, {}}),  // an empty interval joins nothing (as Flink)
        ::testing::Values(1, 2, 4)));

// --- Randomized: the join equals a nested loop ---------------------------------------------------

struct Rec {
  int64_t id;
  int key;
  Timestamp time;
};

// (left id, right id, ctx.timestamp(), the output record's timestamp)
using Joined = std::tuple<int64_t, int64_t, Timestamp, Timestamp>;

constexpr int64_t kDisorder = 40;

// Timestamps that grow by 0..3 ms per record plus a jitter of 0..kDisorder: never more than
// kDisorder behind the largest seen so far, so a bounded-out-of-orderness watermark of kDisorder
// makes none late.
std::vector<Rec> RandomRecords(uint32_t seed, int n, int keys) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> step(0, 3), jitter(0, kDisorder), key(0, keys - 1);
  std::vector<Rec> v;
  Timestamp base = 1000;
  for (int i = 0; i < n; ++i) {
    base += step(rng);
    v.push_back({i, key(rng), base + jitter(rng)});
  }
  return v;
}

// Emits a bounded-out-of-orderness watermark after every record (many watermarks while the
// job runs, so cleanup happens during the join, not only at the end).
class EveryRecordBounded : public WatermarkGenerator<Rec> {
 public:
  void OnEvent(const Rec&, Timestamp t, WatermarkOutput& out) override {
    max_ = std::max(max_, t);
    out.EmitWatermark(max_ - kDisorder - 1);
  }
  void OnPeriodicEmit(WatermarkOutput&) override {}

 private:
  Timestamp max_ = 0;
};

std::vector<Joined> NestedLoop(const std::vector<Rec>& left, const std::vector<Rec>& right,
                               int64_t lower, bool lower_inclusive, int64_t upper,
                               bool upper_inclusive) {
  std::vector<Joined> out;
  for (const Rec& a : left) {
    for (const Rec& b : right) {
      if (a.key != b.key) continue;
      bool above = lower_inclusive ? b.time >= a.time + lower : b.time > a.time + lower;
      bool below = upper_inclusive ? b.time <= a.time + upper : b.time < a.time + upper;
      if (above && below) {
        Timestamp t = std::max(a.time, b.time);
        out.emplace_back(a.id, b.id, t, t);
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

class IntervalJoinRandomTest : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(IntervalJoinRandomTest, EqualsANestedLoop) {
  const auto [parallelism, punctuated] = GetParam();
  const std::vector<Rec> left = RandomRecords(7 + parallelism, 2500, 13);
  const std::vector<Rec> right = RandomRecords(101 + parallelism, 2500, 13);
  struct Case {
    int64_t lower;
    bool lower_inclusive;
    int64_t upper;
    bool upper_inclusive;
  };
  for (Case c : {Case{-30, true, 20, true}, Case{0, true, 45, false}, Case{-25, false, -5, true},
                 Case{5, true, 5, true}, Case{-60, false, 60, false}}) {
    SCOPED_TRACE(absl::StrCat("bounds ", c.lower, c.lower_inclusive ? " incl" : " excl", ", ",
                              c.upper, c.upper_inclusive ? " incl" : " excl"));
    StreamEnvironment env({.parallelism = parallelism,
                           .batch_size = 7,
                           .execution_mode = ExecutionMode::kStreaming,
                           .auto_watermark_interval = absl::Milliseconds(1)});
    auto strategy =
        punctuated
            ? WatermarkStrategy<Rec>::ForGenerator(
                  [] { return std::unique_ptr<WatermarkGenerator<Rec>>(new EveryRecordBounded()); })
            : WatermarkStrategy<Rec>::ForBoundedOutOfOrderness(absl::Milliseconds(kDisorder));
    strategy = strategy.WithTimestampAssigner([](const Rec& r) { return r.time; });
    CollectSink<std::pair<Joined, Timestamp>> sink;
    auto joined = env.FromSource(CollectionSource<Rec>(left), strategy)
                      .KeyBy([](const Rec& r) { return r.key; })
                      .IntervalJoin(env.FromSource(CollectionSource<Rec>(right), strategy)
                                        .KeyBy([](const Rec& r) { return r.key; }))
                      .Between(absl::Milliseconds(c.lower), absl::Milliseconds(c.upper));
    if (!c.lower_inclusive) joined = joined.LowerBoundExclusive();
    if (!c.upper_inclusive) joined = joined.UpperBoundExclusive();
    WithTimestamps(joined.Process([](const Rec& a, const Rec& b, ProcessJoinContext& ctx,
                                     Collector<Joined>& out) {
      out.Collect(Joined(a.id, b.id, ctx.timestamp(), 0));
    })).SinkTo(sink);
    absl::Status status = env.Execute("random-join");
    ASSERT_TRUE(status.ok()) << status;
    std::vector<Joined> actual;
    for (auto& [j, ts] : sink.values()) {
      actual.emplace_back(std::get<0>(j), std::get<1>(j), std::get<2>(j), ts);
    }
    std::sort(actual.begin(), actual.end());
    std::vector<Joined> expected =
        NestedLoop(left, right, c.lower, c.lower_inclusive, c.upper, c.upper_inclusive);
    EXPECT_GT(expected.size(), 100u);
    EXPECT_EQ(actual, expected);
  }
}

INSTANTIATE_TEST_SUITE_P(ParallelismAndWatermarks, IntervalJoinRandomTest,
                         ::testing::Combine(::testing::Values(1, 2, 4), ::testing::Bool()));

// --- Misuse --------------------------------------------------------------------------------------

TEST(IntervalJoinMisuseTest, LowerBoundAboveUpperBoundIsRejectedAtExecute) {
  StreamEnvironment env;
  CollectSink<std::string> sink;
  auto a = env.FromSource(CollectionSource<int64_t>({1}), TimestampIsValue());
  auto b = env.FromSource(CollectionSource<int64_t>({1}), TimestampIsValue());
  a.KeyBy([](int64_t) { return 0; })
      .IntervalJoin(b.KeyBy([](int64_t) { return 0; }))
      .Between(absl::Milliseconds(2), absl::Milliseconds(1))
      .Process(JoinAsText())
      .SinkTo(sink);
  absl::Status status = env.Execute("bad-bounds");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("lower bound must not be greater than the upper bound"));
  EXPECT_TRUE(sink.values().empty());
}

TEST(IntervalJoinMisuseTest, BoundsAreWholeMilliseconds) {
  StreamEnvironment env;
  CollectSink<std::string> sink;
  auto a = env.FromSource(CollectionSource<int64_t>({1}), TimestampIsValue());
  auto b = env.FromSource(CollectionSource<int64_t>({1}), TimestampIsValue());
  a.KeyBy([](int64_t) { return 0; })
      .IntervalJoin(b.KeyBy([](int64_t) { return 0; }))
      .Between(absl::Microseconds(-1500), absl::Milliseconds(1))
      .Process(JoinAsText())
      .SinkTo(sink);
  absl::Status status = env.Execute("sub-millisecond");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("not a whole number of milliseconds"));
}

// --- The operator alone: cleanup and late data, fed by hand --------------------------------------

struct Elem {
  std::string key;
  Timestamp time;
};
using TsPair = std::pair<Timestamp, Timestamp>;  // (left timestamp, right timestamp)

template <typename T>
class Capture final : public internal::BatchConsumer<T> {
 public:
  void Consume(std::vector<T>& records, std::vector<Timestamp>& timestamps) override {
    for (size_t i = 0; i < records.size(); ++i) records_.emplace_back(records[i], timestamps[i]);
  }
  void OnEndOfInput() override { ended_ = true; }
  void OnWatermark(Timestamp w) override { watermarks_.push_back(w); }
  void OnWatermarkStatus(bool idle) override { statuses_.push_back(idle); }
  std::vector<std::pair<T, Timestamp>> records_;
  std::vector<Timestamp> watermarks_;
  std::vector<bool> statuses_;
  bool ended_ = false;
};

struct KeyOfElem {
  std::string operator()(const Elem& e) const { return e.key; }
};
struct EmitTimestamps {
  void operator()(const Elem& l, const Elem& r, Collector<TsPair>& out) const {
    out.Collect({l.time, r.time});
  }
};

// One IntervalJoinOperator instance with its outputs captured (Flink's operator test harness).
class JoinHarness {
 public:
  using Op = internal::IntervalJoinOperator<std::string, Elem, Elem, TsPair, KeyOfElem, KeyOfElem,
                                            EmitTimestamps>;

  // Inclusive bounds (the API moves exclusive ones by 1 ms before the operator sees them).
  JoinHarness(int64_t lower, int64_t upper, bool late_outputs = false) {
    // The captures are wired by address: a harness is never copied or moved.
    internal::OperatorSetup setup;
    setup.runtime.operator_name = "Interval Join";
    setup.outputs.push_back({"", nullptr, {&main_}});
    internal::IntervalJoinSpec<Elem, Elem> spec;
    spec.bounds = {lower, upper};
    if (late_outputs) {
      auto make = [](size_t n) {
        return std::unique_ptr<internal::CollectorBase>(new Collector<Elem>(n));
      };
      setup.outputs.push_back({"left-late", make, {&left_late_}});
      setup.outputs.push_back({"right-late", make, {&right_late_}});
      spec.left_late = OutputTag<Elem>("left-late");
      spec.right_late = OutputTag<Elem>("right-late");
    }
    op_ = std::make_unique<Op>(setup, KeyOfElem{}, KeyOfElem{}, spec, EmitTimestamps{});
    op_->Open();
  }
  ~JoinHarness() { op_->Close(); }

  JoinHarness& Left(Timestamp t, const std::string& key = "k") { return Feed(0, key, t); }
  JoinHarness& Right(Timestamp t, const std::string& key = "k") { return Feed(1, key, t); }
  JoinHarness& Watermark(Timestamp t) {
    op_->ProcessWatermark(0, t);
    op_->ProcessWatermark(1, t);
    return *this;
  }
  std::vector<Timestamp> LeftBuffer(const std::string& key = "k") const {
    return op_->buffers().Timestamps(key, internal::JoinSide::kLeft);
  }
  std::vector<Timestamp> RightBuffer(const std::string& key = "k") const {
    return op_->buffers().Timestamps(key, internal::JoinSide::kRight);
  }
  std::vector<TsPair> Output() const {
    std::vector<TsPair> v;
    for (const auto& [p, ts] : main_.records_) {
      EXPECT_EQ(ts, std::max(p.first, p.second));
      v.push_back(p);
    }
    return v;
  }
  const Op& op() const { return *op_; }
  Op& mutable_op() { return *op_; }
  Capture<TsPair> main_;
  Capture<Elem> left_late_;
  Capture<Elem> right_late_;

 private:
  JoinHarness& Feed(int gate, const std::string& key, Timestamp t) {
    internal::Batch<Elem> batch;
    batch.records.push_back({key, t});
    batch.timestamps.push_back(t);
    op_->ProcessBatch(gate, batch);
    return *this;
  }
  std::unique_ptr<Op> op_;
};

// A left element at t is dropped once the watermark reaches t + upper (t when upper <= 0); a right
// element at t once it reaches t - lower (t when lower >= 0).
TEST(IntervalJoinOperatorTest, StateCleanupWithNonPositiveUpperBound) {
  JoinHarness h(-1, 0);  // also (-2 exclusive, 1 exclusive)
  for (Timestamp t = 1; t <= 5; ++t) h.Left(t);
  for (Timestamp t = 1; t <= 5; ++t) h.Right(t);
  h.Watermark(1);
  EXPECT_THAT(h.LeftBuffer(), ElementsAre(2, 3, 4, 5));
  EXPECT_THAT(h.RightBuffer(), ElementsAre(1, 2, 3, 4, 5));
  h.Watermark(4);
  EXPECT_THAT(h.LeftBuffer(), ElementsAre(5));
  EXPECT_THAT(h.RightBuffer(), ElementsAre(4, 5));
  h.Watermark(6);
  EXPECT_THAT(h.LeftBuffer(), IsEmpty());
  EXPECT_THAT(h.RightBuffer(), IsEmpty());
  EXPECT_EQ(h.op().buffers().num_keys(), 0u);
  EXPECT_EQ(h.op().num_cleanup_timers(), 0u);
}

TEST(IntervalJoinOperatorTest, StateCleanupWithNonNegativeLowerBound) {
  JoinHarness h(0, 1);  // also (-1 exclusive, 2 exclusive)
  for (Timestamp t = 1; t <= 5; ++t) h.Left(t);
  for (Timestamp t = 1; t <= 5; ++t) h.Right(t);
  h.Watermark(1);
  EXPECT_THAT(h.LeftBuffer(), ElementsAre(1, 2, 3, 4, 5));
  EXPECT_THAT(h.RightBuffer(), ElementsAre(2, 3, 4, 5));
  h.Watermark(4);
  EXPECT_THAT(h.LeftBuffer(), ElementsAre(4, 5));
  EXPECT_THAT(h.RightBuffer(), ElementsAre(5));
  h.Watermark(6);
  EXPECT_THAT(h.LeftBuffer(), IsEmpty());
  EXPECT_THAT(h.RightBuffer(), IsEmpty());
  EXPECT_EQ(h.op().buffers().left_elements() + h.op().buffers().right_elements(), 0u);
}

TEST(IntervalJoinOperatorTest, StateStaysBoundedOnALongStream) {
  JoinHarness h(-5, 5);
  size_t max_buffered = 0;
  for (Timestamp t = 0; t < 20'000; ++t) {
    h.Left(t, absl::StrCat("k", t % 7)).Right(t, absl::StrCat("k", t % 7)).Watermark(t - 1);
    const auto& b = h.op().buffers();
    max_buffered = std::max(max_buffered, b.left_elements() + b.right_elements());
  }
  EXPECT_LE(max_buffered, 16u);  // elements of the last ~6 ms on each side
  // Equal keys are 7 ms apart, so each element joins exactly its twin on the other side.
  EXPECT_EQ(h.main_.records_.size(), 20'000u);
  h.Watermark(kMaxWatermark);
  EXPECT_EQ(h.op().buffers().num_keys(), 0u);
  EXPECT_EQ(h.op().num_cleanup_timers(), 0u);
  EXPECT_THAT(h.main_.watermarks_.back(), kMaxWatermark);
}

TEST(IntervalJoinOperatorTest, LateElementsAreDropped) {
  JoinHarness h(-1, 1);
  h.Left(1).Right(1).Left(2).Right(2).Left(3).Right(3).Watermark(3);
  h.Left(1);  // late: not buffered, not joined
  h.Left(4).Right(4).Left(5).Right(5);
  std::vector<TsPair> expected = {{1, 1}, {1, 2}, {2, 1}, {2, 2}, {2, 3}, {3, 2}, {3, 3},
                                  {3, 4}, {4, 3}, {4, 4}, {4, 5}, {5, 4}, {5, 5}};
  EXPECT_THAT(h.Output(), UnorderedElementsAreArray(expected));
}

TEST(IntervalJoinOperatorTest, LateElementsGoToTheirSideOutputs) {
  JoinHarness h(-1, 1, /*late_outputs=*/true);
  h.Left(3).Right(3).Watermark(3).Left(4).Right(4);
  h.Left(1);   // late
  h.Right(2);  // late
  h.Left(5).Right(5);
  std::vector<TsPair> expected = {{3, 3}, {3, 4}, {4, 3}, {4, 4}, {4, 5}, {5, 4}, {5, 5}};
  EXPECT_THAT(h.Output(), UnorderedElementsAreArray(expected));
  ASSERT_EQ(h.left_late_.records_.size(), 1u);
  EXPECT_EQ(h.left_late_.records_[0].first.time, 1);
  EXPECT_EQ(h.left_late_.records_[0].second, 1);
  ASSERT_EQ(h.right_late_.records_.size(), 1u);
  EXPECT_EQ(h.right_late_.records_[0].first.time, 2);
  EXPECT_EQ(h.right_late_.records_[0].second, 2);
}

TEST(IntervalJoinOperatorTest, WatermarkIsTheMinimumOfBothInputsAndIsForwarded) {
  JoinHarness h(0, 0);
  h.Left(5);
  // Only the left input advanced: event time stays at the right input's watermark.
  h.mutable_op().ProcessWatermark(0, 10);
  EXPECT_THAT(h.main_.watermarks_, IsEmpty());
  EXPECT_THAT(h.LeftBuffer(), ElementsAre(5));
  h.mutable_op().ProcessWatermark(1, 7);
  EXPECT_THAT(h.main_.watermarks_, ElementsAre(7));
  EXPECT_THAT(h.LeftBuffer(), IsEmpty());
}

TEST(IntervalJoinOperatorTest, AnIdleInputIsLeftOutOfTheWatermark) {
  JoinHarness h(0, 0);
  h.Left(5).Right(5);
  h.mutable_op().ProcessWatermark(0, 10);
  EXPECT_THAT(h.main_.watermarks_, IsEmpty());
  h.mutable_op().ProcessWatermarkStatus(1, /*idle=*/true);  // the right input goes idle
  EXPECT_THAT(h.main_.watermarks_, ElementsAre(10));
  EXPECT_THAT(h.main_.statuses_, IsEmpty());  // the left input is still active
  EXPECT_THAT(h.LeftBuffer(), IsEmpty());
  EXPECT_THAT(h.RightBuffer(), IsEmpty());
  h.Right(7);  // behind the watermark: late
  EXPECT_THAT(h.RightBuffer(), IsEmpty());
  h.mutable_op().ProcessWatermarkStatus(0, /*idle=*/true);
  EXPECT_THAT(h.main_.statuses_, ElementsAre(true));  // both idle: the output is idle
  h.mutable_op().ProcessWatermarkStatus(0, /*idle=*/false);
  EXPECT_THAT(h.main_.statuses_, ElementsAre(true, false));
}

TEST(IntervalJoinOperatorTest, AnEndedInputNoLongerHoldsTheOtherBack) {
  JoinHarness h(0, 0);
  h.Left(5);
  h.mutable_op().ProcessWatermark(0, 6);
  h.mutable_op().EndOfInput(1);
  EXPECT_THAT(h.main_.watermarks_, ElementsAre(6));
  EXPECT_THAT(h.LeftBuffer(), IsEmpty());
  EXPECT_FALSE(h.main_.ended_);
  h.mutable_op().EndOfInput(0);
  EXPECT_TRUE(h.main_.ended_);
}

TEST(IntervalJoinOperatorTest, ElementWithoutTimestampThrowsJobFailure) {
  JoinHarness h(0, 0);
  internal::Batch<Elem> batch;
  batch.records.push_back({"k", 1});
  batch.timestamps.push_back(kNoTimestamp);
  try {
    h.mutable_op().ProcessBatch(1, batch);
    FAIL() << "expected a JobFailure";
  } catch (const internal::JobFailure& f) {
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(f.status().message(), HasSubstr("second (right) input has no timestamp"));
  }
}

}  // namespace
}  // namespace sluice
