// The broadcast state pattern: rules broadcast to a keyed stream, ApplyToKeyedState, read-only
// violations, and broadcast state restored from a savepoint at another parallelism; both backends.
#include <sluice/sluice.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "state/gated_source.h"

namespace sluice {
namespace {

using state_test::Feed;
using state_test::GatedSource;
using state_test::WaitFor;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

using Rule = std::pair<std::string, int64_t>;                            // color, factor
using Event = std::tuple<std::string, std::string, int64_t, Timestamp>;  // user, color, value, ts
using Scored = std::tuple<std::string, Timestamp, int64_t>;              // user, ts, value*factor

const MapStateDescriptor<std::string, int64_t> kRules("rules");

// Buffers each event in keyed state until event time passes it (so every rule has arrived: the
// rules input's watermark advances only when it ends), then scores it with the matching rule;
// events without a rule go to a side output.
class ScoreByRule final : public KeyedBroadcastProcessFunction<std::string, Event, Rule, Scored> {
 public:
  explicit ScoreByRule(OutputTag<Event> unmatched) : unmatched_(std::move(unmatched)) {}
  void Open(const RuntimeContext& ctx) override {
    buffer_ = ctx.GetListState(ListStateDescriptor<Event>("buffer"));
  }
  void ProcessElement(const Event& e, ReadOnlyContext& ctx, Collector<Scored>&) override {
    buffer_.Add(e);
    ctx.RegisterEventTimeTimer(std::get<3>(e));
  }
  void OnTimer(Timestamp t, ReadOnlyContext& ctx, Collector<Scored>& out) override {
    std::vector<Event> keep;
    for (const Event& e : buffer_.Get()) {
      if (std::get<3>(e) != t) {
        keep.push_back(e);
        continue;
      }
      std::optional<int64_t> factor = ctx.GetBroadcastState(kRules).Get(std::get<1>(e));
      if (factor) {
        out.Collect({ctx.CurrentKey(), t, std::get<2>(e) * *factor});
      } else {
        ctx.Output(unmatched_, e);
      }
    }
    buffer_.Update(std::move(keep));
  }
  void ProcessBroadcastElement(const Rule& r, Context& ctx, Collector<Scored>&) override {
    ctx.GetBroadcastState(kRules).Put(r.first, r.second);
  }

 private:
  OutputTag<Event> unmatched_;
  ListState<Event> buffer_;
};

struct Param {
  StateBackendKind backend;
};

class BroadcastStateTest : public state_test::TempDirTest,
                           public ::testing::WithParamInterface<Param> {
 protected:
  RuntimeOptions Options(int parallelism) const {
    RuntimeOptions o;
    o.parallelism = parallelism;
    o.execution_mode = ExecutionMode::kStreaming;
    o.state_backend = GetParam().backend;
    o.rocksdb.local_dir = dir_ + "/rocksdb";
    o.checkpointing.interval = absl::ZeroDuration();  // savepoints only
    o.checkpointing.directory = dir_ + "/checkpoints";
    return o;
  }
};

TEST_P(BroadcastStateTest, RulesBroadcastToAKeyedStreamScoreEveryEventExactly) {
  std::vector<Event> events;
  std::vector<Scored> expected;
  std::vector<Event> expected_unmatched;
  const std::map<std::string, int64_t> rules = {{"red", 10}, {"blue", 100}};
  const std::vector<std::string> colors = {"red", "blue", "green"};
  for (int i = 0; i < 60; ++i) {
    Event e{"u" + std::to_string(i % 7), colors[static_cast<size_t>(i % 3)], i, 1000 + i};
    events.push_back(e);
    auto it = rules.find(std::get<1>(e));
    if (it == rules.end()) {
      expected_unmatched.push_back(e);
    } else {
      expected.emplace_back(std::get<0>(e), std::get<3>(e), std::get<2>(e) * it->second);
    }
  }
  StreamEnvironment env(Options(2));
  OutputTag<Event> unmatched("unmatched");
  CollectSink<Scored> sink;
  CollectSink<Event> unmatched_sink;
  auto rule_stream = env.FromCollection<Rule>({{"red", 10}, {"blue", 100}});
  auto scored =
      env.FromSource(CollectionSource<Event>(events),
                     WatermarkStrategy<Event>::ForMonotonousTimestamps().WithTimestampAssigner(
                         [](const Event& e) { return std::get<3>(e); }))
          .KeyBy([](const Event& e) { return std::get<0>(e); })
          .Connect(rule_stream.Broadcast(kRules))
          .Process(ScoreByRule(unmatched));
  scored.SinkTo(sink);
  scored.GetSideOutput(unmatched).SinkTo(unmatched_sink);
  absl::Status status = env.Execute("score");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
  EXPECT_THAT(unmatched_sink.values(), UnorderedElementsAreArray(expected_unmatched));
}

// Counts events per key; a "dump" command on the broadcast side emits and clears every key's
// count through ApplyToKeyedState.
using Out = std::tuple<std::string, std::string, int64_t>;  // what, user, count
const ValueStateDescriptor<int64_t> kCount("count");

class CountAndDump final : public KeyedBroadcastProcessFunction<std::string, Event, Rule, Out> {
 public:
  void Open(const RuntimeContext& ctx) override { count_ = ctx.GetState(kCount); }
  void ProcessElement(const Event&, ReadOnlyContext& ctx, Collector<Out>& out) override {
    const int64_t n = count_.Value().value_or(0) + 1;
    count_.Update(n);
    out.Collect({"count", ctx.CurrentKey(), n});
  }
  void ProcessBroadcastElement(const Rule& command, Context& ctx, Collector<Out>& out) override {
    if (command.first != "dump") return;
    ctx.ApplyToKeyedState(kCount, [&](const std::string& user, ValueState<int64_t> count) {
      out.Collect({"dump", user, count.Value().value_or(-1)});
      count.Clear();
    });
  }

 private:
  ValueState<int64_t> count_;
};

TEST_P(BroadcastStateTest, ApplyToKeyedStateVisitsEveryKeyOnce) {
  std::vector<Event> events;
  for (int i = 0; i < 36; ++i) events.push_back({"u" + std::to_string(i % 6), "red", i, 0});
  auto event_feed = std::make_shared<Feed<Event>>(events);
  auto command_feed = std::make_shared<Feed<Rule>>(std::vector<Rule>{{"dump", 0}});
  StreamEnvironment env(Options(2));
  CollectSink<Out> sink;
  env.FromSource(GatedSource<Event>(event_feed))
      .KeyBy([](const Event& e) { return std::get<0>(e); })
      .Connect(env.FromSource(GatedSource<Rule>(command_feed)).Broadcast(kRules))
      .Process(CountAndDump())
      .SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("dump");
  ASSERT_TRUE(job.ok()) << job.status();
  event_feed->open = 30;
  WaitFor([&] { return sink.size() == 30; });
  command_feed->open = 1;
  WaitFor([&] { return sink.size() == 36; });  // one dump per key, over both subtasks
  event_feed->open = 36;
  WaitFor([&] { return sink.size() == 42; });
  job->Cancel();
  job->Wait().IgnoreError();
  std::vector<Out> expected;
  for (int i = 0; i < 30; ++i)
    expected.emplace_back("count", "u" + std::to_string(i % 6), i / 6 + 1);
  for (int u = 0; u < 6; ++u) expected.emplace_back("dump", "u" + std::to_string(u), 5);
  for (int u = 0; u < 6; ++u)
    expected.emplace_back("count", "u" + std::to_string(u), 1);  // cleared
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

// Keeps the broadcast state handle of ProcessBroadcastElement and writes through it in
// ProcessElement: the job fails.
class WritesFromTheWrongSide final : public BroadcastProcessFunction<Event, Rule, Event> {
 public:
  explicit WritesFromTheWrongSide(std::shared_ptr<std::atomic<bool>> got_rule)
      : got_rule_(std::move(got_rule)) {}
  void ProcessElement(const Event& e, ReadOnlyContext&, Collector<Event>& out) override {
    if (rules_) rules_.Put(std::get<1>(e), 1);
    out.Collect(e);
  }
  void ProcessBroadcastElement(const Rule& r, Context& ctx, Collector<Event>&) override {
    rules_ = ctx.GetBroadcastState(kRules);
    rules_.Put(r.first, r.second);
    *got_rule_ = true;
  }

 private:
  std::shared_ptr<std::atomic<bool>> got_rule_;
  BroadcastState<std::string, int64_t> rules_;
};

TEST_P(BroadcastStateTest, WritingBroadcastStateOutsideTheBroadcastSideFailsTheJob) {
  auto got_rule = std::make_shared<std::atomic<bool>>(false);
  auto event_feed = std::make_shared<Feed<Event>>(std::vector<Event>{{"u", "red", 1, 0}});
  auto rule_feed = std::make_shared<Feed<Rule>>(std::vector<Rule>{{"red", 10}});
  StreamEnvironment env(Options(1));
  CollectSink<Event> sink;
  env.FromSource(GatedSource<Event>(event_feed))
      .Connect(env.FromSource(GatedSource<Rule>(rule_feed)).Broadcast(kRules))
      .Process(WritesFromTheWrongSide(got_rule))
      .Name("filter")
      .SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("wrong side");
  ASSERT_TRUE(job.ok()) << job.status();
  rule_feed->open = 1;
  WaitFor([&] { return got_rule->load(); });
  event_feed->open = 1;
  absl::Status status = job->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("operator 'filter': broadcast state 'rules' is read-only"));
  EXPECT_TRUE(sink.values().empty());
}

class ReadsUndeclared final : public BroadcastProcessFunction<int64_t, Rule, int64_t> {
 public:
  void ProcessElement(const int64_t& v, ReadOnlyContext& ctx, Collector<int64_t>& out) override {
    ctx.GetBroadcastState(MapStateDescriptor<std::string, int64_t>("thresholds")).Contains("x");
    out.Collect(v);
  }
  void ProcessBroadcastElement(const Rule&, Context&, Collector<int64_t>&) override {}
};

TEST_P(BroadcastStateTest, AnUndeclaredBroadcastStateFailsTheJob) {
  StreamEnvironment env(Options(1));
  CollectSink<int64_t> sink;
  env.FromCollection<int64_t>({1, 2})
      .Connect(env.FromCollection<Rule>({{"red", 1}}).Broadcast(kRules))
      .Process(ReadsUndeclared())
      .Name("reader")
      .SinkTo(sink);
  absl::Status status = env.Execute("undeclared");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("operator 'reader': broadcast state 'thresholds' was not declared"));
}

// Scores events with the rules and reports which old subtask's copy of the broadcast state this
// subtask holds (each subtask also records its own index there, deliberately different per
// subtask, to observe Flink's redistribution: new subtask i takes old subtask i % old_p's copy).
using Report = std::tuple<std::string, int64_t, int64_t, int64_t, int64_t>;
// user, count, value * factor, subtask recorded in the broadcast state, this subtask

class ScoreAndReport final
    : public KeyedBroadcastProcessFunction<std::string, Event, Rule, Report> {
 public:
  explicit ScoreAndReport(std::shared_ptr<std::atomic<int>> rules_seen)
      : rules_seen_(std::move(rules_seen)) {}
  void Open(const RuntimeContext& ctx) override {
    count_ = ctx.GetState(kCount);
    subtask_ = ctx.subtask_index;
  }
  void ProcessElement(const Event& e, ReadOnlyContext& ctx, Collector<Report>& out) override {
    const int64_t n = count_.Value().value_or(0) + 1;
    count_.Update(n);
    auto rules = ctx.GetBroadcastState(kRules);
    out.Collect({ctx.CurrentKey(), n, std::get<2>(e) * rules.Get(std::get<1>(e)).value_or(0),
                 rules.Get("subtask").value_or(-1), subtask_});
  }
  void ProcessBroadcastElement(const Rule& r, Context& ctx, Collector<Report>&) override {
    auto rules = ctx.GetBroadcastState(kRules);
    rules.Put(r.first, r.second);
    rules.Put("subtask", subtask_);
    ++*rules_seen_;
  }

 private:
  std::shared_ptr<std::atomic<int>> rules_seen_;
  ValueState<int64_t> count_;
  int64_t subtask_ = 0;
};

TEST_P(BroadcastStateTest, BroadcastStateRestoresFromASavepointAtParallelismThree) {
  const std::map<std::string, int64_t> factors = {{"red", 10}, {"blue", 100}};
  std::vector<Event> events;
  for (int i = 0; i < 120; ++i) {
    events.push_back({"u" + std::to_string(i % 12), i % 2 == 0 ? "red" : "blue", i, 0});
  }
  auto event_feed = std::make_shared<Feed<Event>>(events);
  auto rule_feed = std::make_shared<Feed<Rule>>(std::vector<Rule>{{"red", 10}, {"blue", 100}});
  const std::string savepoint = dir_ + "/savepoint";
  auto build = [&](StreamEnvironment& env, CollectSink<Report>& sink,
                   std::shared_ptr<std::atomic<int>> seen) {
    env.FromSource(GatedSource<Event>(event_feed))
        .KeyBy([](const Event& e) { return std::get<0>(e); })
        .Connect(env.FromSource(GatedSource<Rule>(rule_feed)).Broadcast(kRules))
        .Process(ScoreAndReport(std::move(seen)))
        .SinkTo(sink);
  };
  {
    StreamEnvironment env(Options(2));
    CollectSink<Report> sink;
    auto seen = std::make_shared<std::atomic<int>>(0);
    build(env, sink, seen);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("first");
    ASSERT_TRUE(job.ok()) << job.status();
    rule_feed->open = 2;
    WaitFor([&] { return seen->load() == 4; });  // both rules in both subtasks
    event_feed->open = 60;
    WaitFor([&] { return sink.size() == 60; });
    ASSERT_TRUE(job->StopWithSavepoint(savepoint).ok());
    job->Wait().IgnoreError();
  }
  RuntimeOptions o = Options(3);
  o.restore_from = savepoint;
  StreamEnvironment env(o);
  CollectSink<Report> sink;
  auto seen = std::make_shared<std::atomic<int>>(0);
  build(env, sink, seen);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("resumed");
  ASSERT_TRUE(job.ok()) << job.status();
  event_feed->open = 120;
  WaitFor([&] { return sink.size() == 60; });
  job->Cancel();
  job->Wait().IgnoreError();
  EXPECT_EQ(seen->load(), 0);  // no rule was replayed: the broadcast state alone holds them

  std::vector<std::tuple<std::string, int64_t, int64_t>> got, expected;
  std::set<int64_t> subtasks;
  for (const Report& r : sink.values()) {
    got.emplace_back(std::get<0>(r), std::get<1>(r), std::get<2>(r));
    EXPECT_EQ(std::get<3>(r), std::get<4>(r) % 2) << "subtask " << std::get<4>(r);
    subtasks.insert(std::get<4>(r));
  }
  for (int i = 60; i < 120; ++i) {
    const Event& e = events[static_cast<size_t>(i)];
    expected.emplace_back(std::get<0>(e), i / 12 + 1, std::get<2>(e) * factors.at(std::get<1>(e)));
  }
  EXPECT_THAT(got, UnorderedElementsAreArray(expected));
  EXPECT_EQ(subtasks, (std::set<int64_t>{0, 1, 2}));
}

// Non-keyed: multiplies each event's value by its color's factor.
class Multiply final : public BroadcastProcessFunction<Event, Rule, int64_t> {
 public:
  explicit Multiply(std::shared_ptr<std::atomic<int>> rules_seen)
      : rules_seen_(std::move(rules_seen)) {}
  void ProcessElement(const Event& e, ReadOnlyContext& ctx, Collector<int64_t>& out) override {
    if (const int64_t* f = ctx.GetBroadcastState(kRules).Find(std::get<1>(e))) {
      out.Collect(std::get<2>(e) * *f);
    }
  }
  void ProcessBroadcastElement(const Rule& r, Context& ctx, Collector<int64_t>&) override {
    ctx.GetBroadcastState(kRules).Put(r.first, r.second);
    ++*rules_seen_;
  }

 private:
  std::shared_ptr<std::atomic<int>> rules_seen_;
};

TEST_P(BroadcastStateTest, NonKeyedBroadcastStateAppliesAndRestoresAtAnotherParallelism) {
  std::vector<Event> events;
  for (int i = 0; i < 40; ++i) events.push_back({"u", i % 2 == 0 ? "red" : "blue", i, 0});
  auto event_feed = std::make_shared<Feed<Event>>(events);
  auto rule_feed = std::make_shared<Feed<Rule>>(std::vector<Rule>{{"red", 10}, {"blue", 100}});
  const std::string savepoint = dir_ + "/savepoint";
  auto build = [&](StreamEnvironment& env, CollectSink<int64_t>& sink,
                   std::shared_ptr<std::atomic<int>> seen) {
    env.FromSource(GatedSource<Event>(event_feed))
        .Rebalance()
        .Connect(env.FromSource(GatedSource<Rule>(rule_feed)).Broadcast(kRules))
        .Process(Multiply(std::move(seen)))
        .SinkTo(sink);
  };
  auto expected = [&](int from, int to) {
    std::vector<int64_t> v;
    for (int i = from; i < to; ++i) v.push_back(i * (i % 2 == 0 ? 10 : 100));
    return v;
  };
  {
    StreamEnvironment env(Options(2));
    CollectSink<int64_t> sink;
    auto seen = std::make_shared<std::atomic<int>>(0);
    build(env, sink, seen);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("first");
    ASSERT_TRUE(job.ok()) << job.status();
    rule_feed->open = 2;
    WaitFor([&] { return seen->load() == 4; });
    event_feed->open = 20;
    WaitFor([&] { return sink.size() == 20; });
    ASSERT_TRUE(job->StopWithSavepoint(savepoint).ok());
    job->Wait().IgnoreError();
    EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected(0, 20)));
  }
  RuntimeOptions o = Options(3);
  o.restore_from = savepoint;
  StreamEnvironment env(o);
  CollectSink<int64_t> sink;
  auto seen = std::make_shared<std::atomic<int>>(0);
  build(env, sink, seen);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("resumed");
  ASSERT_TRUE(job.ok()) << job.status();
  event_feed->open = 40;
  WaitFor([&] { return sink.size() == 20; });
  job->Cancel();
  job->Wait().IgnoreError();
  EXPECT_EQ(seen->load(), 0);
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected(20, 40)));
}

INSTANTIATE_TEST_SUITE_P(Backends, BroadcastStateTest,
                         ::testing::Values(Param{StateBackendKind::kHashMap},
                                           Param{StateBackendKind::kRocksDb}),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return std::string(StateBackendName(info.param.backend));
                         });

}  // namespace
}  // namespace sluice
