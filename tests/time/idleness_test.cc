// Watermark idleness across channels and gates, and per-split watermarks in sources.
#include <sluice/sluice.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include <sluice/connectors/file.h>
#include <sluice/internal/local_aggregate.h>
#include <sluice/internal/operators.h>
#include <sluice/internal/watermark_combiner.h>

namespace sluice {
namespace {

using internal::CombinedOutput;
using internal::WatermarkCombiner;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

// --- WatermarkCombiner ---------------------------------------------------------------------------

TEST(WatermarkCombinerTest, MinimumOverActiveInputsAndIdleWhenAllAreIdle) {
  WatermarkCombiner c(WatermarkCombiner::Mode::kChannels);
  int a = c.AddInput(), b = c.AddInput(), d = c.AddInput();
  c.UpdateWatermark(a, 100);
  c.UpdateWatermark(b, 50);
  EXPECT_EQ(c.watermark(), kMinWatermark);  // d holds it back
  c.UpdateWatermark(d, 70);
  EXPECT_EQ(c.watermark(), 50);
  c.SetIdle(b, true);  // left out: min(a, d)
  EXPECT_EQ(c.watermark(), 70);
  EXPECT_FALSE(c.idle());
  c.UpdateWatermark(b, 60);  // an idle input's watermark does not count
  EXPECT_EQ(c.watermark(), 70);
  c.SetIdle(d, true);
  EXPECT_EQ(c.watermark(), 100);
  c.SetIdle(a, true);
  EXPECT_TRUE(c.idle());
  EXPECT_EQ(c.watermark(), 100);  // all idle: stays, no jump to +inf or to a maximum
  c.UpdateWatermark(a, 300);      // while idle: remembered only
  EXPECT_EQ(c.watermark(), 100);
  c.SetIdle(a, false);
  EXPECT_FALSE(c.idle());
  EXPECT_EQ(c.watermark(), 300);
}

TEST(WatermarkCombinerTest, ChannelsAnInputBehindWhenActiveAgainNeitherLowersNorHoldsBack) {
  WatermarkCombiner c(WatermarkCombiner::Mode::kChannels);
  int a = c.AddInput(), b = c.AddInput();
  c.UpdateWatermark(a, 100);
  c.UpdateWatermark(b, 10);
  c.SetIdle(b, true);
  EXPECT_EQ(c.watermark(), 100);
  c.SetIdle(b, false);  // behind (10 < 100): left out until it catches up
  EXPECT_EQ(c.watermark(), 100);
  c.UpdateWatermark(a, 200);
  EXPECT_EQ(c.watermark(), 200);
  c.UpdateWatermark(b, 150);  // still behind
  EXPECT_EQ(c.watermark(), 200);
  c.UpdateWatermark(b, 250);  // caught up: takes part again
  c.UpdateWatermark(a, 400);
  EXPECT_EQ(c.watermark(), 250);
}

TEST(WatermarkCombinerTest, SplitsAnInputBehindHoldsBackWithoutLowering) {
  WatermarkCombiner c(WatermarkCombiner::Mode::kSplits);
  int a = c.AddInput(), b = c.AddInput();
  c.UpdateWatermark(a, 100);
  c.UpdateWatermark(b, 10);
  c.SetIdle(b, true);
  EXPECT_EQ(c.watermark(), 100);
  c.SetIdle(b, false);
  c.UpdateWatermark(a, 200);
  EXPECT_EQ(c.watermark(), 100);  // b (10) is active and behind: waits, never decreases
  c.UpdateWatermark(b, 150);
  EXPECT_EQ(c.watermark(), 150);
  int n = c.AddInput();  // a new split starts at the minimum and holds the watermark
  c.UpdateWatermark(b, 300);
  EXPECT_EQ(c.watermark(), 150);
  c.UpdateWatermark(n, 500);
  EXPECT_EQ(c.watermark(), 200);
}

TEST(WatermarkCombinerTest, ReleasedInputsNoLongerHoldBackAndSlotsAreReused) {
  WatermarkCombiner c(WatermarkCombiner::Mode::kSplits);
  int a = c.AddInput(), b = c.AddInput();
  c.UpdateWatermark(a, 100);
  c.UpdateWatermark(b, 500);
  EXPECT_EQ(c.watermark(), 100);
  c.Release(a);
  EXPECT_EQ(c.watermark(), 500);
  EXPECT_EQ(c.AddInput(), a);  // the released slot
  c.SetIdle(a, true);
  c.Release(b);  // only an idle input left: idle
  EXPECT_TRUE(c.idle());
  c.Release(a);  // nothing left: status and watermark stay
  EXPECT_TRUE(c.idle());
  EXPECT_EQ(c.watermark(), 500);
}

TEST(WatermarkCombinerTest, SyncSendsActiveBeforeAndIdleAfterTheWatermark) {
  WatermarkCombiner c(WatermarkCombiner::Mode::kChannels);
  int a = c.AddInput(), b = c.AddInput();
  CombinedOutput told;
  std::vector<std::string> sent;
  auto sync = [&] {
    told.Sync(
        c, [&](bool idle) { sent.push_back(idle ? "idle" : "active"); },
        [&](Timestamp w) { sent.push_back(absl::StrCat(w)); });
  };
  c.UpdateWatermark(a, 10);
  c.UpdateWatermark(b, 20);
  sync();
  c.SetIdle(a, true);
  sync();
  c.SetIdle(b, true);
  sync();
  sync();  // nothing new
  c.SetIdle(a, false);
  c.UpdateWatermark(a, 30);
  sync();
  EXPECT_THAT(sent, ElementsAre("10", "20", "idle", "active", "30"));
}

// --- Operators, driven directly ------------------------------------------------------------------

// Records what an operator sends downstream.
template <typename T>
class Recorder : public internal::BatchConsumer<T> {
 public:
  void Consume(std::vector<T>& records, std::vector<Timestamp>& timestamps) override {
    for (size_t i = 0; i < records.size(); ++i) {
      events.push_back(absl::StrCat("r", records[i], "@", timestamps[i]));
    }
  }
  void OnWatermark(Timestamp w) override {
    events.push_back(w == kMaxWatermark ? "wm:max" : absl::StrCat("wm:", w));
  }
  void OnWatermarkStatus(bool idle) override { events.push_back(idle ? "idle" : "active"); }
  void OnEndOfInput() override { events.push_back("end"); }
  std::vector<std::string> events;
};

internal::OperatorSetup SetupInto(internal::BatchConsumerBase* out, const Clock* clock) {
  internal::OperatorSetup s;
  s.runtime.operator_name = "op";
  s.batch_size = 16;
  s.clock = clock;
  s.auto_watermark_interval_ms = 100;
  internal::OutputSetup o;
  o.consumers.push_back(out);
  s.outputs.push_back(std::move(o));
  return s;
}

WatermarkStrategy<int> IntStrategy(absl::Duration idleness) {
  return WatermarkStrategy<int>::ForMonotonousTimestamps()
      .WithTimestampAssigner([](const int& v) { return static_cast<Timestamp>(v); })
      .WithIdleness(idleness);
}

void Feed(internal::BatchConsumer<int>* in, std::vector<int> values) {
  std::vector<Timestamp> ts(values.size(), kNoTimestamp);
  in->Consume(values, ts);
}

// Runs the operator's periodic emission at `now` if it is due.
void AdvanceTo(ManualClock& clock, internal::OperatorBase& op, Timestamp now) {
  clock.Set(now);
  if (op.NextProcessingDeadline() <= now) op.OnProcessingTime(now);
}

TEST(TimestampsAndWatermarksOperatorTest, IdleAfterTheTimeoutAndActiveBeforeTheNextRecord) {
  ManualClock clock(0);
  Recorder<int> rec;
  internal::TimestampsAndWatermarksOperator<int> op(SetupInto(&rec, &clock),
                                                    IntStrategy(absl::Seconds(1)));
  op.Open();
  Feed(&op, {1000});
  AdvanceTo(clock, op, 100);
  AdvanceTo(clock, op, 999);   // next emit at 1099
  AdvanceTo(clock, op, 1100);  // 1.1 s without records
  AdvanceTo(clock, op, 1300);  // stays idle, sends nothing
  Feed(&op, {2000});
  AdvanceTo(clock, op, 1400);
  op.OnEndOfInput();
  EXPECT_THAT(rec.events, ElementsAre("r1000@1000", "wm:999", "idle", "active", "r2000@2000",
                                      "wm:1999", "wm:max", "end"));
}

// The local phase of a two-phase window aggregate (WindowedStream::TwoPhase) around idleness:
// partials go on before "idle" (the global phase's watermark may then pass them); once the input
// was idle, records go on one by one with the record itself, as the global watermark may be ahead
// of this input's; a record whose slice already went on goes alone at any time.
class SumInts final : public AggregateFunction<int, int64_t, int64_t> {
 public:
  int64_t CreateAccumulator() override { return 0; }
  void Add(const int& v, int64_t& acc) override { acc += v; }
  int64_t GetResult(const int64_t& acc) override { return acc; }
  void Merge(const int64_t& from, int64_t& into) override { into += from; }
};
struct ByHundreds {
  int64_t operator()(const int& v) const { return v / 100; }
};
using Partial = internal::LocalPartial<int64_t, int64_t, int>;
class PartialRecorder : public internal::BatchConsumer<Partial> {
 public:
  void Consume(std::vector<Partial>& records, std::vector<Timestamp>& timestamps) override {
    for (size_t i = 0; i < records.size(); ++i) {
      const Partial& p = records[i];
      events.push_back(absl::StrCat("k", p.key, "=", p.state,
                                    p.record ? absl::StrCat("+r", *p.record) : "", "@",
                                    timestamps[i]));
    }
  }
  void OnWatermark(Timestamp w) override { events.push_back(absl::StrCat("wm:", w)); }
  void OnWatermarkStatus(bool idle) override { events.push_back(idle ? "idle" : "active"); }
  void OnEndOfInput() override { events.push_back("end"); }
  std::vector<std::string> events;
};

TEST(LocalWindowAggregateOperatorTest, PartialsGoOnBeforeIdleAndRecordsOneByOneAfter) {
  ManualClock clock(0);
  PartialRecorder rec;
  internal::LocalWindowAggregateOperator<int64_t, int, ByHundreds,
                                         internal::AggregateContents<int, SumInts>>
      op(SetupInto(&rec, &clock), ByHundreds{}, 10, 10, 0, {SumInts()});
  op.Open();
  auto feed = [&](std::vector<int> values) {
    std::vector<Timestamp> ts;
    for (int v : values) ts.push_back(v % 100);
    op.Consume(values, ts);
  };
  feed({1, 2, 15, 104});  // keys 0, 0, 0, 1 at times 1, 2, 15, 4
  EXPECT_THAT(rec.events, ElementsAre());
  op.ProcessWatermark(0, 9);  // slice [0, 10): key 0 has 1 + 2, key 1 has 104
  feed({3});                  // slice [0, 10) went on: alone, with the record
  op.ProcessWatermarkStatus(0, true);
  op.ProcessWatermarkStatus(0, false);
  feed({21, 23});
  op.ProcessWatermark(0, 30);
  op.OnEndOfInput();
  ASSERT_EQ(rec.events.size(), 11u);
  EXPECT_THAT(std::vector<std::string>(rec.events.begin(), rec.events.begin() + 2),
              ::testing::UnorderedElementsAre("k0=3@9", "k1=104@9"));
  EXPECT_THAT(std::vector<std::string>(rec.events.begin() + 2, rec.events.end()),
              ElementsAre("wm:9", "k0=3+r3@3", "k0=15@19", "idle", "active", "k0=21+r21@21",
                          "k0=23+r23@23", "wm:30", "end"));
  op.Close();
}

TEST(TimestampsAndWatermarksOperatorTest, PerSplitMinimumIdleSplitsLeftOutReleasedSplitsGone) {
  ManualClock clock(0);
  Recorder<int> rec;
  internal::TimestampsAndWatermarksOperator<int> op(SetupInto(&rec, &clock),
                                                    IntStrategy(absl::Seconds(1)));
  op.Open();
  internal::SplitConsumers<int>* splits = op.splits();
  ASSERT_NE(splits, nullptr);
  internal::BatchConsumer<int>* s1 = splits->AddSplit("s1");
  internal::BatchConsumer<int>* s2 = splits->AddSplit("s2");
  Feed(s1, {1000});
  Feed(s2, {5000});
  AdvanceTo(clock, op, 500);  // min(999, 4999)
  Feed(s2, {6000});
  AdvanceTo(clock, op, 1000);  // s1 idle (no record for 1 s): left out
  Feed(s1, {1500});            // active again, behind: holds back (never lowers)
  Feed(s2, {7000});
  AdvanceTo(clock, op, 1100);                                 // s1: 1499, s2: 6999
  splits->ReleaseSplit(s1);                                   // gone: s2 alone
  AdvanceTo(clock, op, 2000);                                 // s2 idle too: the subtask is idle
  internal::BatchConsumer<int>* s3 = splits->AddSplit("s3");  // a new split is active
  Feed(s3, {9000});
  AdvanceTo(clock, op, 2100);  // s2 is idle, s3 decides
  EXPECT_THAT(rec.events, ElementsAre("r1000@1000", "r5000@5000", "wm:999", "r6000@6000", "wm:5999",
                                      "r1500@1500", "r7000@7000", "wm:6999", "idle", "active",
                                      "r9000@9000", "wm:8999"));
}

TEST(TimestampsAndWatermarksOperatorTest, NoSplitLeftKeepsTheWatermarkThenIdlesAfterTheTimeout) {
  ManualClock clock(0);
  Recorder<int> rec;
  internal::TimestampsAndWatermarksOperator<int> op(SetupInto(&rec, &clock),
                                                    IntStrategy(absl::Seconds(1)));
  op.Open();
  internal::SplitConsumers<int>* splits = op.splits();
  internal::BatchConsumer<int>* s1 = splits->AddSplit("s1");
  Feed(s1, {1000});
  AdvanceTo(clock, op, 100);
  splits->ReleaseSplit(s1);    // no split left at 100: the watermark stays
  AdvanceTo(clock, op, 1000);  // 900 ms without a split
  AdvanceTo(clock, op, 1100);  // 1 s: idle
  internal::BatchConsumer<int>* s2 = splits->AddSplit("s2");
  Feed(s2, {3000});
  AdvanceTo(clock, op, 1200);
  EXPECT_THAT(rec.events,
              ElementsAre("r1000@1000", "wm:999", "idle", "active", "r3000@3000", "wm:2999"));
}

TEST(TimestampsAndWatermarksOperatorTest, WithoutSplitsTheMainOutputDecidesAsBefore) {
  ManualClock clock(0);
  Recorder<int> rec;
  internal::TimestampsAndWatermarksOperator<int> op(SetupInto(&rec, &clock),
                                                    IntStrategy(absl::ZeroDuration()));
  op.Open();
  Feed(&op, {300, 100});
  AdvanceTo(clock, op, 100);
  AdvanceTo(clock, op, 5000);  // no idleness configured
  EXPECT_THAT(rec.events, ElementsAre("r300@300", "r100@100", "wm:299"));
}

TEST(CoOperatorTest, AnIdleGateIsLeftOutAndBothIdleMakeTheOutputIdle) {
  ManualClock clock(0);
  Recorder<int> rec;
  auto id = [](int v) { return v; };
  internal::CoOperator<int, int, int, decltype(id), decltype(id), false> op(SetupInto(&rec, &clock),
                                                                            id, id);
  op.ProcessWatermark(0, 100);
  op.ProcessWatermark(1, 50);
  op.ProcessWatermarkStatus(1, true);
  op.ProcessWatermark(0, 200);
  op.ProcessWatermarkStatus(0, true);
  op.ProcessWatermarkStatus(1, false);  // behind (50): does not lower the output
  op.ProcessWatermark(1, 150);
  op.ProcessWatermark(1, 300);
  op.EndOfInput(1);  // gate 0 is idle: the output is idle again
  op.ProcessWatermarkStatus(0, false);
  op.ProcessWatermark(0, kMaxWatermark);
  EXPECT_THAT(rec.events, ElementsAre("wm:50", "wm:100", "wm:200", "idle", "active", "wm:300",
                                      "idle", "active", "wm:max"));
}

// --- Jobs -----------------------------------------------------------------------------------------

struct Event {
  std::string key;
  Timestamp time;
};

// What a reader does next, fed by the test thread.
struct Command {
  enum Kind { kRecord, kOpenSplit, kReleaseSplit, kEnd };
  Kind kind = kRecord;
  std::string split;  // "" = the reader's main output
  Event event;
};

// A queue of commands shared by the test and one reader, which it wakes.
class CommandFeed {
 public:
  void Push(Command c) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(c));
    if (ctx_) ctx_->Wake();
  }
  void Record(Event e, std::string split = "") {
    Push({Command::kRecord, std::move(split), std::move(e)});
  }
  void Open(std::string split) { Push({Command::kOpenSplit, std::move(split), {}}); }
  void Release(std::string split) { Push({Command::kReleaseSplit, std::move(split), {}}); }
  void End() { Push({Command::kEnd, "", {}}); }

  void Attach(const SourceContext& ctx) {
    std::lock_guard<std::mutex> lock(mu_);
    ctx_.emplace(ctx);
  }
  bool Pop(Command* c) {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.empty()) return false;
    *c = std::move(queue_.front());
    queue_.pop_front();
    return true;
  }

 private:
  std::mutex mu_;
  std::deque<Command> queue_;
  std::optional<SourceContext> ctx_;
};

// Runs one command per poll, so every command's effect reaches downstream on its own.
class CommandSource : public Source<Event> {
 public:
  explicit CommandSource(std::shared_ptr<CommandFeed> feed) : feed_(std::move(feed)) {}
  bool IsBounded() const override { return false; }
  int MaxParallelism() const override { return 1; }
  absl::StatusOr<std::unique_ptr<SourceReader<Event>>> CreateReader(
      const SourceContext& ctx) override {
    feed_->Attach(ctx);
    return std::unique_ptr<SourceReader<Event>>(new Reader(feed_));
  }

 private:
  class Reader : public SourceReader<Event> {
   public:
    explicit Reader(std::shared_ptr<CommandFeed> feed) : feed_(std::move(feed)) {}
    absl::StatusOr<PollResult> PollNext(Collector<Event>& out, int) override {
      Command c;
      if (!feed_->Pop(&c)) return PollResult::WaitForWake();
      switch (c.kind) {
        case Command::kRecord:
          (c.split.empty() ? out : out.ForSplit(c.split)).Collect(c.event);
          break;
        case Command::kOpenSplit:
          out.ForSplit(c.split);
          break;
        case Command::kReleaseSplit:
          out.ReleaseSplit(c.split);
          break;
        case Command::kEnd:
          return PollResult::End();
      }
      return PollResult::More();
    }

   private:
    std::shared_ptr<CommandFeed> feed_;
  };
  std::shared_ptr<CommandFeed> feed_;
};

// (what, key, time, the operator's watermark when it happened)
using Seen = std::tuple<std::string, std::string, Timestamp, Timestamp>;

// Reports every event with the watermark it meets, and registers an event-time timer at
// time + offset (for keys starting with `timer_keys`) when that is still ahead of the watermark.
class Probe : public KeyedProcessFunction<std::string, Event, Seen> {
 public:
  Probe(Timestamp offset, std::string timer_keys)
      : offset_(offset), timer_keys_(std::move(timer_keys)) {}
  void ProcessElement(const Event& e, Context& ctx, Collector<Seen>& out) override {
    out.Collect(Seen("event", e.key, e.time, ctx.CurrentWatermark()));
    Timestamp t = e.time + offset_;
    if (e.key.rfind(timer_keys_, 0) == 0 && t > ctx.CurrentWatermark()) {
      ctx.RegisterEventTimeTimer(t);
    }
  }
  void OnTimer(Timestamp time, Context& ctx, Collector<Seen>& out) override {
    out.Collect(Seen("timer", ctx.CurrentKey(), time, ctx.CurrentWatermark()));
  }

 private:
  Timestamp offset_;
  std::string timer_keys_;
};

WatermarkStrategy<Event> EventStrategy(absl::Duration idleness) {
  auto s = WatermarkStrategy<Event>::ForMonotonousTimestamps().WithTimestampAssigner(
      [](const Event& e) { return e.time; });
  return idleness > absl::ZeroDuration() ? s.WithIdleness(idleness) : s;
}

// A watermark equal to each event's timestamp, right after it.
class EveryEvent : public WatermarkGenerator<Event> {
 public:
  void OnEvent(const Event&, Timestamp ts, WatermarkOutput& out) override { out.EmitWatermark(ts); }
  void OnPeriodicEmit(WatermarkOutput&) override {}
};

WatermarkStrategy<Event> PunctuatedStrategy() {
  return WatermarkStrategy<Event>::ForGenerator([] { return std::make_unique<EveryEvent>(); })
      .WithTimestampAssigner([](const Event& e) { return e.time; });
}

bool WaitForSize(const CollectSink<Seen>& sink, size_t n) {
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (sink.size() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  return sink.size() >= n;
}

// Nothing more arrives for a while (for "not yet" checks).
void ExpectStaysAt(const CollectSink<Seen>& sink, size_t n) {
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(sink.size(), n);
}

TEST(IdlenessJobTest, AnIdleInputOfAUnionStopsHoldingBackTimersAfterTheTimeoutOnly) {
  auto clock = std::make_shared<ManualClock>(0);
  StreamEnvironment env({.parallelism = 1, .clock = clock});
  auto feed_a = std::make_shared<CommandFeed>();
  auto feed_b = std::make_shared<CommandFeed>();
  CollectSink<Seen> sink;
  // a goes idle after 10 s without records, b after 5 s.
  auto a = env.FromSource(CommandSource(feed_a), EventStrategy(absl::Seconds(10)), "a");
  auto b = env.FromSource(CommandSource(feed_b), EventStrategy(absl::Seconds(5)), "b");
  a.Union(b).KeyBy([](const Event& e) { return e.key; }).Process(Probe(500, "a")).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("union-idleness");
  ASSERT_TRUE(job.ok()) << job.status();

  feed_b->Record({"b", 0});  // both sources run before the clock moves
  ASSERT_TRUE(WaitForSize(sink, 1));
  feed_a->Record({"a", 1000});
  feed_a->Record({"a", 2000});
  ASSERT_TRUE(WaitForSize(sink, 3));
  clock->Set(4999);  // a: 1999; b is not idle yet (no record for 4999 ms): holds at -1
  ExpectStaysAt(sink, 3);
  // The next periodic emission (every 200 ms) after 5 s without records: b is idle, and a's
  // 1999 alone fires the timer at 1500.
  clock->Set(5200);
  ASSERT_TRUE(WaitForSize(sink, 4));
  feed_b->Record({"b", 500});  // b active again, behind: the watermark does not go back
  ASSERT_TRUE(WaitForSize(sink, 5));
  clock->Set(5400);  // b: 499, still behind, left out
  feed_a->Record({"a", 3000});
  ASSERT_TRUE(WaitForSize(sink, 6));
  clock->Set(5600);  // a: 2999
  ASSERT_TRUE(WaitForSize(sink, 7));
  feed_b->Record({"b", 4000});
  ASSERT_TRUE(WaitForSize(sink, 8));
  clock->Set(5800);             // b: 3999, caught up: holds the watermark again
  feed_b->Record({"b", 3900});  // follows b's 3999 through the channel
  ASSERT_TRUE(WaitForSize(sink, 9));
  feed_a->Record({"a", 5000});
  ASSERT_TRUE(WaitForSize(sink, 10));
  clock->Set(6000);  // a: 4999, b: 3999
  ASSERT_TRUE(WaitForSize(sink, 11));
  feed_a->End();
  feed_b->End();
  ASSERT_TRUE(job->Wait().ok());

  std::vector<Seen> expected = {
      {"event", "b", 0, kMinWatermark},    {"event", "a", 1000, kMinWatermark},
      {"event", "a", 2000, kMinWatermark}, {"timer", "a", 1500, 1999},
      {"event", "b", 500, 1999},           {"event", "a", 3000, 1999},
      {"timer", "a", 2500, 2999},          {"event", "b", 4000, 2999},
      {"event", "b", 3900, 2999},          {"event", "a", 5000, 2999},
      {"timer", "a", 3500, 3999},          {"timer", "a", 5500, kMaxWatermark}};
  EXPECT_THAT(sink.values(), ElementsAreArray(expected));
}

TEST(IdlenessJobTest, AConnectedInputThatIsIdleIsLeftOutOfTheMinimum) {
  auto clock = std::make_shared<ManualClock>(0);
  StreamEnvironment env({.parallelism = 1, .clock = clock});
  auto feed_a = std::make_shared<CommandFeed>();
  auto feed_b = std::make_shared<CommandFeed>();
  CollectSink<Seen> sink;
  auto a = env.FromSource(CommandSource(feed_a), EventStrategy(absl::Seconds(10)), "a");
  auto b = env.FromSource(CommandSource(feed_b), EventStrategy(absl::Seconds(5)), "b");
  auto same = [](const Event& e) { return e; };
  a.Connect(b)
      .Map(same, same)
      .KeyBy([](const Event& e) { return e.key; })
      .Process(Probe(500, "a"))
      .SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("connect-idleness");
  ASSERT_TRUE(job.ok()) << job.status();
  feed_b->Record({"b", 0});
  ASSERT_TRUE(WaitForSize(sink, 1));
  feed_a->Record({"a", 1000});
  feed_a->Record({"a", 2000});
  ASSERT_TRUE(WaitForSize(sink, 3));
  clock->Set(4999);  // b holds at -1
  ExpectStaysAt(sink, 3);
  clock->Set(5200);  // b idle, a is not: a's 1999 fires 1500
  ASSERT_TRUE(WaitForSize(sink, 4));
  feed_a->End();
  feed_b->End();
  ASSERT_TRUE(job->Wait().ok());
  std::vector<Seen> expected = {{"event", "b", 0, kMinWatermark},
                                {"event", "a", 1000, kMinWatermark},
                                {"event", "a", 2000, kMinWatermark},
                                {"timer", "a", 1500, 1999},
                                {"timer", "a", 2500, kMaxWatermark}};
  EXPECT_THAT(sink.values(), ElementsAreArray(expected));
}

TEST(IdlenessJobTest, AllInputsIdleMakeTheGateIdleWithoutAdvancing) {
  auto clock = std::make_shared<ManualClock>(0);
  StreamEnvironment env({.parallelism = 1, .clock = clock});
  auto feed_a = std::make_shared<CommandFeed>();
  auto feed_b = std::make_shared<CommandFeed>();
  CollectSink<Seen> sink;
  // a (ahead) goes idle after 1 s, b (behind) after 2 s.
  auto a = env.FromSource(CommandSource(feed_a), EventStrategy(absl::Seconds(1)), "a");
  auto b = env.FromSource(CommandSource(feed_b), EventStrategy(absl::Seconds(2)), "b");
  a.Union(b).KeyBy([](const Event& e) { return e.key; }).Process(Probe(0, "a")).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("all-idle");
  ASSERT_TRUE(job.ok()) << job.status();
  feed_b->Record({"b", 100});
  ASSERT_TRUE(WaitForSize(sink, 1));
  feed_a->Record({"a", 5001});
  ASSERT_TRUE(WaitForSize(sink, 2));
  clock->Set(500);  // a: 5000, b: 99
  // Time for each source task to act on the clock, so a goes idle before b (not observable in
  // the output; generous for sanitizer builds).
  absl::SleepFor(absl::Milliseconds(300));
  clock->Set(1000);  // a idle: b's 99 alone
  absl::SleepFor(absl::Milliseconds(300));
  clock->Set(2000);  // b idle too: the gate stays at 99 (no jump to +inf or to a's 5000)
  ExpectStaysAt(sink, 2);
  feed_b->Record({"b", 6000});  // b active again
  ASSERT_TRUE(WaitForSize(sink, 3));
  clock->Set(2200);  // b: 5999 alone (a is idle) fires a's timer at 5001
  ASSERT_TRUE(WaitForSize(sink, 4));
  feed_a->End();
  feed_b->End();
  ASSERT_TRUE(job->Wait().ok());
  std::vector<Seen> expected = {{"event", "b", 100, kMinWatermark},
                                {"event", "a", 5001, kMinWatermark},
                                {"event", "b", 6000, 99},
                                {"timer", "a", 5001, 5999}};
  EXPECT_THAT(sink.values(), ElementsAreArray(expected));
}

TEST(SplitWatermarksJobTest, TheSubtaskWatermarkIsTheMinimumOverItsSplits) {
  StreamEnvironment env({.parallelism = 1});
  auto feed = std::make_shared<CommandFeed>();
  CollectSink<Seen> sink;
  env.FromSource(CommandSource(feed), PunctuatedStrategy())
      .KeyBy([](const Event& e) { return e.key; })
      .Process(Probe(0, "s"))
      .SinkTo(sink);
  feed->Open("s1");
  feed->Open("s2");  // opened, no records yet: holds the watermark at the minimum
  feed->Record({"s1", 1000}, "s1");
  feed->Record({"s2", 3000}, "s2");
  feed->Record({"s1", 2000}, "s1");
  feed->Record({"s1", 5000}, "s1");
  feed->Release("s2");  // finished: no longer holds it back
  feed->Record({"s1", 6000}, "s1");
  feed->End();
  absl::Status status = env.Execute("splits");
  ASSERT_TRUE(status.ok()) << status;
  std::vector<Seen> expected = {
      {"event", "s1", 1000, kMinWatermark}, {"event", "s2", 3000, kMinWatermark},
      {"timer", "s1", 1000, 1000},          {"event", "s1", 2000, 1000},
      {"timer", "s1", 2000, 2000},          {"event", "s1", 5000, 2000},
      {"timer", "s2", 3000, 3000},          {"timer", "s1", 5000, 5000},
      {"event", "s1", 6000, 5000},          {"timer", "s1", 6000, 6000}};
  EXPECT_THAT(sink.values(), ElementsAreArray(expected));
}

TEST(SplitWatermarksJobTest, WithoutAStrategySplitsAreJustRecords) {
  StreamEnvironment env({.parallelism = 1});
  auto feed = std::make_shared<CommandFeed>();
  CollectSink<std::string> sink;
  env.FromSource(CommandSource(feed))
      .Map([](const Event& e) { return absl::StrCat(e.key, e.time); })
      .SinkTo(sink);
  feed->Record({"x", 1}, "s1");
  feed->Record({"y", 2});
  feed->Release("s1");
  feed->Release("unknown");
  feed->Record({"z", 3}, "s2");
  feed->End();
  ASSERT_TRUE(env.Execute("plain-splits").ok());
  EXPECT_THAT(sink.values(), ElementsAre("x1", "y2", "z3"));
}

TEST(SplitWatermarksJobTest, AnIdleSplitIsLeftOutAndOneBehindHoldsBack) {
  auto clock = std::make_shared<ManualClock>(0);
  StreamEnvironment env({.parallelism = 1, .clock = clock});
  auto feed = std::make_shared<CommandFeed>();
  CollectSink<Seen> sink;
  env.FromSource(CommandSource(feed), EventStrategy(absl::Seconds(1)))
      .KeyBy([](const Event& e) { return e.key; })
      .Process(Probe(0, "s"))
      .SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("idle-split");
  ASSERT_TRUE(job.ok()) << job.status();
  feed->Record({"s1", 1000}, "s1");
  feed->Record({"s2", 5000}, "s2");
  ASSERT_TRUE(WaitForSize(sink, 2));
  clock->Set(500);  // s1: 999, s2: 4999
  feed->Record({"s2", 6000}, "s2");
  ASSERT_TRUE(WaitForSize(sink, 3));
  clock->Set(1000);  // s1 idle (no record for 1 s): s2's 5999 alone
  ASSERT_TRUE(WaitForSize(sink, 5));
  feed->Record({"s1", 1500}, "s1");  // active again, behind
  ASSERT_TRUE(WaitForSize(sink, 6));
  feed->Record({"s2", 7000}, "s2");
  ASSERT_TRUE(WaitForSize(sink, 7));
  clock->Set(1200);  // s1: 1499 holds back s2's 6999 (the watermark stays 5999)
  ExpectStaysAt(sink, 7);
  feed->Release("s1");  // s2 alone: 6999 fires the timer at 6000
  ASSERT_TRUE(WaitForSize(sink, 8));
  feed->End();
  ASSERT_TRUE(job->Wait().ok());
  std::vector<Seen> expected = {
      {"event", "s1", 1000, kMinWatermark}, {"event", "s2", 5000, kMinWatermark},
      {"event", "s2", 6000, 999},           {"timer", "s1", 1000, 5999},
      {"timer", "s2", 5000, 5999},          {"event", "s1", 1500, 5999},
      {"event", "s2", 7000, 5999},          {"timer", "s2", 6000, 6999},
      {"timer", "s2", 7000, kMaxWatermark}};
  EXPECT_THAT(sink.values(), ElementsAreArray(expected));
}

TEST(SplitWatermarksJobTest, DirectorySourceReadsEachFileAsASplit) {
  std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "sluice_idleness_directory_splits";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "a.txt") << "1000\n3000\n";
  std::ofstream(dir / "b.txt") << "2000\n5000\n";
  StreamEnvironment env({.parallelism = 1, .execution_mode = ExecutionMode::kStreaming});
  CollectSink<Seen> sink;
  env.FromSource(DirectorySource(dir.string()),
                 WatermarkStrategy<std::string>::ForGenerator([] {
                   struct Gen : WatermarkGenerator<std::string> {
                     void OnEvent(const std::string&, Timestamp ts, WatermarkOutput& out) override {
                       out.EmitWatermark(ts);
                     }
                     void OnPeriodicEmit(WatermarkOutput&) override {}
                   };
                   return std::make_unique<Gen>();
                 }).WithTimestampAssigner([](const std::string& line) {
                   return static_cast<Timestamp>(std::stoll(line));
                 }))
      .Process([](const std::string& line, ProcessContext& ctx, Collector<Seen>& out) {
        out.Collect(Seen("line", line, ctx.timestamp(), ctx.CurrentWatermark()));
      })
      .SinkTo(sink);
  absl::Status status = env.Execute("directory-splits");
  ASSERT_TRUE(status.ok()) << status;
  // b.txt starts a new split at the minimum: it does not lower the watermark (3000) and
  // advances it once it passes.
  std::vector<Seen> expected = {{"line", "1000", 1000, kMinWatermark},
                                {"line", "3000", 3000, 1000},
                                {"line", "2000", 2000, 3000},
                                {"line", "5000", 5000, 3000}};
  EXPECT_THAT(sink.values(), ElementsAreArray(expected));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sluice
