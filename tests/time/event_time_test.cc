// Event timestamps and watermarks flowing through jobs.
#include <sluice/sluice.h>

#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice {
namespace {

using ::testing::ElementsAreArray;
using ::testing::UnorderedElementsAreArray;

struct Event {
  std::string key;
  Timestamp time;
};

using Seen = std::pair<std::string, Timestamp>;

// Emits a watermark equal to each event's timestamp, right after the event (punctuated).
class EveryEventWatermarks : public WatermarkGenerator<Event> {
 public:
  void OnEvent(const Event&, Timestamp ts, WatermarkOutput& out) override { out.EmitWatermark(ts); }
  void OnPeriodicEmit(WatermarkOutput&) override {}
};

std::vector<Event> Events() {
  return {{"a", 1000}, {"b", 3000}, {"a", 2000}, {"c", 7000}, {"b", 5000}, {"a", 9000}};
}

class EventTimeTest : public ::testing::TestWithParam<int> {};

TEST_P(EventTimeTest, TimestampsFromTheStrategyTravelWithRecordsThroughExchanges) {
  StreamEnvironment env({.parallelism = GetParam()});
  CollectSink<Seen> sink;
  env.FromSource(CollectionSource<Event>(Events()),
                 WatermarkStrategy<Event>::ForBoundedOutOfOrderness(absl::Seconds(2))
                     .WithTimestampAssigner([](const Event& e) { return e.time; }))
      .Map([](const Event& e) {
        return Event{e.key + "!", e.time};
      })
      .Filter([](const Event& e) { return e.key != "c!"; })
      .KeyBy([](const Event& e) { return e.key; })
      .Process([](const Event& e, KeyedProcessContext<std::string>& ctx, Collector<Seen>& out) {
        out.Collect(Seen(e.key, ctx.timestamp()));
      })
      .Rebalance()
      .Process([](const Seen& s, ProcessContext& ctx, Collector<Seen>& out) {
        // The timestamp a record carries is the one of the record it came from.
        out.Collect(Seen(s.first, s.second == ctx.timestamp() ? ctx.timestamp() : -1));
      })
      .SinkTo(sink);
  absl::Status status = env.Execute("timestamps");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(),
              UnorderedElementsAreArray(std::vector<Seen>{
                  {"a!", 1000}, {"b!", 3000}, {"a!", 2000}, {"b!", 5000}, {"a!", 9000}}));
}

TEST_P(EventTimeTest, RecordsWithoutAStrategyHaveNoTimestamp) {
  StreamEnvironment env({.parallelism = GetParam()});
  CollectSink<Timestamp> sink;
  env.FromSequence(1, 3)
      .Process([](int64_t, ProcessContext& ctx, Collector<Timestamp>& out) {
        out.Collect(ctx.timestamp());
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("no-timestamps").ok());
  EXPECT_THAT(sink.values(),
              ElementsAreArray(std::vector<Timestamp>{kNoTimestamp, kNoTimestamp, kNoTimestamp}));
}

INSTANTIATE_TEST_SUITE_P(Parallelism, EventTimeTest, ::testing::Values(1, 2, 4));

// A punctuated watermark follows the record that caused it, in-band through a channel: each
// record downstream sees the watermark of the record before it.
TEST(WatermarkTest, PunctuatedWatermarksFlowInBandAfterTheirRecord) {
  StreamEnvironment env({.parallelism = 1, .execution_mode = ExecutionMode::kStreaming});
  CollectSink<Seen> sink;
  env.FromSource(CollectionSource<Event>(Events()),
                 WatermarkStrategy<Event>::ForGenerator([] {
                   return std::make_unique<EveryEventWatermarks>();
                 }).WithTimestampAssigner([](const Event& e) { return e.time; }))
      .Rebalance()
      .Process([](const Event& e, ProcessContext& ctx, Collector<Seen>& out) {
        out.Collect(Seen(e.key, ctx.CurrentWatermark()));
      })
      .SetParallelism(1)
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("punctuated").ok());
  // Watermarks only advance: 2000 after 3000 does not move it back.
  EXPECT_THAT(
      sink.values(),
      ElementsAreArray(std::vector<Seen>{
          {"a", kMinWatermark}, {"b", 1000}, {"a", 3000}, {"c", 3000}, {"b", 7000}, {"a", 7000}}));
}

// A generator that says it never emits on events gets each batch whole (OnEvents): were it to
// emit there anyway, the watermark goes out after the batch, so no record of it is made late.
class BatchWatermarks : public WatermarkGenerator<Event> {
 public:
  bool EmitsOnEvent() const override { return false; }
  void OnEvent(const Event&, Timestamp ts, WatermarkOutput& out) override { out.EmitWatermark(ts); }
  void OnPeriodicEmit(WatermarkOutput&) override {}
};

TEST(WatermarkTest, AGeneratorThatDoesNotEmitOnEventsSeesWholeBatches) {
  StreamEnvironment env({.parallelism = 1, .execution_mode = ExecutionMode::kStreaming});
  CollectSink<Seen> sink;
  CollectSink<Seen> second;
  DataStream<Event> events =
      env.FromSource(CollectionSource<Event>(Events()),
                     WatermarkStrategy<Event>::ForGenerator([] {
                       return std::make_unique<BatchWatermarks>();
                     }).WithTimestampAssigner([](const Event& e) { return e.time; }));
  // Two consumers of the same output: each gets the whole batch with its timestamps.
  events.Rebalance()
      .Process([](const Event& e, ProcessContext& ctx, Collector<Seen>& out) {
        out.Collect(Seen(e.key, ctx.CurrentWatermark()));
      })
      .SetParallelism(1)
      .SinkTo(sink);
  events.Map([](const Event& e) { return e; })
      .Process([](const Event& e, ProcessContext& ctx, Collector<Seen>& out) {
        out.Collect(Seen(e.key, ctx.timestamp()));
      })
      .SinkTo(second);
  ASSERT_TRUE(env.Execute("batch-watermarks").ok());
  std::vector<Seen> expected;
  for (const Event& e : Events()) expected.push_back({e.key, kMinWatermark});
  EXPECT_THAT(sink.values(), ElementsAreArray(expected));
  std::vector<Seen> stamped;
  for (const Event& e : Events()) stamped.push_back({e.key, e.time});
  EXPECT_THAT(second.values(), ElementsAreArray(stamped));
}

TEST(WatermarkTest, BatchModeEmitsOnlyTheFinalWatermark) {
  StreamEnvironment env({.parallelism = 1, .execution_mode = ExecutionMode::kBatch});
  CollectSink<Seen> sink;
  env.FromSource(CollectionSource<Event>(Events()),
                 WatermarkStrategy<Event>::ForGenerator([] {
                   return std::make_unique<EveryEventWatermarks>();
                 }).WithTimestampAssigner([](const Event& e) { return e.time; }))
      .Rebalance()
      .Process([](const Event& e, ProcessContext& ctx, Collector<Seen>& out) {
        out.Collect(Seen(e.key, ctx.CurrentWatermark()));
      })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute("batch").ok());
  std::vector<Seen> expected;
  for (const Event& e : Events()) expected.push_back({e.key, kMinWatermark});
  EXPECT_THAT(sink.values(), ElementsAreArray(expected));
}

TEST(WatermarkTest, InvalidWatermarkIntervalIsReported) {
  StreamEnvironment env({.auto_watermark_interval = absl::ZeroDuration()});
  CollectSink<int64_t> sink;
  env.FromSequence(1, 2).SinkTo(sink);
  absl::Status status = env.Execute();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("auto_watermark_interval"));
}

}  // namespace
}  // namespace sluice
