// Keyed connected streams: KeyedCoProcessFunction with per-key timers (Flink's semantics).
#include <sluice/sluice.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/container/flat_hash_map.h"
#include "absl/time/clock.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

struct Order {
  int64_t id;
  Timestamp time;
  std::string item;
};

struct Payment {
  int64_t order_id;
  Timestamp time;
  int64_t amount;
};

// (what, order id, detail)
using Outcome = std::tuple<std::string, int64_t, std::string>;
// An output record with the timestamp it carried.
using Stamped = std::pair<Outcome, Timestamp>;

// "Wait for the other side": an order is paid by a payment of the same id made within 10 ms after
// it. Whichever side comes first waits; an order nobody paid in time is reported when event time
// passes its deadline, a payment that no order explains when event time passes it. Every decision
// depends on event time only, so the outcome does not depend on how the two inputs interleave.
class MatchPayments : public KeyedCoProcessFunction<int64_t, Order, Payment, Outcome> {
 public:
  void ProcessElement1(const Order& o, Context& ctx, Collector<Outcome>& out) override {
    EXPECT_EQ(ctx.CurrentKey(), o.id);
    EXPECT_EQ(ctx.timestamp(), o.time);
    auto p = payments_.find(o.id);
    if (p != payments_.end() && Matches(o, p->second)) {
      Paid(o, p->second, ctx, out);
      ctx.DeleteEventTimeTimer(p->second.time);
      payments_.erase(p);
      return;
    }
    orders_[o.id] = o;
    ctx.RegisterEventTimeTimer(o.time + 10);
  }
  void ProcessElement2(const Payment& p, Context& ctx, Collector<Outcome>& out) override {
    EXPECT_EQ(ctx.CurrentKey(), p.order_id);
    auto o = orders_.find(p.order_id);
    if (o != orders_.end() && Matches(o->second, p)) {
      Paid(o->second, p, ctx, out);
      ctx.DeleteEventTimeTimer(o->second.time + 10);
      orders_.erase(o);
      return;
    }
    payments_[p.order_id] = p;
    // Once event time reaches p.time, every order that could match it has arrived.
    ctx.RegisterEventTimeTimer(p.time);
  }
  void OnTimer(Timestamp time, Context& ctx, Collector<Outcome>& out) override {
    EXPECT_EQ(ctx.time_domain(), TimeDomain::kEventTime);
    EXPECT_EQ(ctx.timestamp(), time);
    EXPECT_GE(ctx.CurrentWatermark(), time);
    int64_t id = ctx.CurrentKey();
    if (auto o = orders_.find(id); o != orders_.end() && o->second.time + 10 == time) {
      out.Collect(Outcome("unpaid", id, o->second.item));
      orders_.erase(o);
    }
    if (auto p = payments_.find(id); p != payments_.end() && p->second.time == time) {
      out.Collect(Outcome("unexplained payment", id, std::to_string(p->second.amount)));
      payments_.erase(p);
    }
  }

 private:
  static bool Matches(const Order& o, const Payment& p) {
    return o.time <= p.time && p.time <= o.time + 10;
  }
  static void Paid(const Order& o, const Payment& p, Context&, Collector<Outcome>& out) {
    // The later of the two records completes the match, whichever input it came from.
    out.CollectWithTimestamp(Outcome("paid", o.id, o.item + " " + std::to_string(p.amount)),
                             std::max(o.time, p.time));
  }

  absl::flat_hash_map<int64_t, Order> orders_;
  absl::flat_hash_map<int64_t, Payment> payments_;
};

std::vector<Order> Orders() {
  return {{1, 100, "apple"}, {2, 110, "pear"}, {3, 120, "plum"},
          {4, 130, "fig"},   {5, 140, "kiwi"}, {6, 150, "lime"}};
}
std::vector<Payment> Payments() {
  return {{1, 105, 10}, {3, 121, 30}, {2, 125, 20}, {4, 130, 40}, {5, 150, 50}, {7, 160, 70}};
}

template <typename T>
WatermarkStrategy<T> ByTime() {
  return WatermarkStrategy<T>::ForMonotonousTimestamps().WithTimestampAssigner(
      [](const T& v) { return v.time; });
}

// Pairs each record with the timestamp it carries.
template <typename T>
auto WithTimestamps(const DataStream<T>& stream) {
  return stream.Process(
      [](const T& v, ProcessContext& ctx, Collector<std::pair<T, Timestamp>>& out) {
        out.Collect({v, ctx.timestamp()});
      });
}

std::vector<Stamped> ExpectedMatches() {
  return {{{"paid", 1, "apple 10"}, 105},
          {{"paid", 3, "plum 30"}, 121},
          {{"unpaid", 2, "pear"}, 120},  // the payment at 125 came after the deadline 120
          {{"unexplained payment", 2, "20"}, 125},
          {{"paid", 4, "fig 40"}, 130},
          {{"paid", 5, "kiwi 50"}, 150},  // the bound is inclusive
          {{"unpaid", 6, "lime"}, 160},
          {{"unexplained payment", 7, "70"}, 160}};
}

class CoProcessTest : public ::testing::TestWithParam<int> {
 protected:
  StreamEnvironment env_{{.parallelism = GetParam(), .execution_mode = ExecutionMode::kStreaming}};
};

TEST_P(CoProcessTest, WaitForTheOtherSideWithEventTimeTimeouts) {
  CollectSink<Stamped> sink;
  auto orders = env_.FromSource(CollectionSource<Order>(Orders()), ByTime<Order>());
  auto payments = env_.FromSource(CollectionSource<Payment>(Payments()), ByTime<Payment>());
  auto outcomes =
      orders.Connect(payments)
          .KeyBy([](const Order& o) { return o.id; }, [](const Payment& p) { return p.order_id; })
          .Process(MatchPayments());
  WithTimestamps(outcomes).SinkTo(sink);
  absl::Status status = env_.Execute("match-payments");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(ExpectedMatches()));
}

TEST_P(CoProcessTest, ConnectingTwoKeyedStreamsIsTheSame) {
  CollectSink<Stamped> sink;
  auto orders =
      env_.FromSource(CollectionSource<Order>(Orders()), ByTime<Order>()).KeyBy([](const Order& o) {
        return o.id;
      });
  auto payments = env_.FromSource(CollectionSource<Payment>(Payments()), ByTime<Payment>())
                      .KeyBy([](const Payment& p) { return p.order_id; });
  WithTimestamps(orders.Connect(payments).Process(MatchPayments()).Name("matcher")).SinkTo(sink);
  absl::Status status = env_.Execute("match-payments-keyed");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(ExpectedMatches()));
}

struct Event {
  std::string key;
  Timestamp time;
};
// (input or "timer", key, time, record timestamp)
using Fired = std::tuple<std::string, std::string, Timestamp, Timestamp>;

// Both inputs register a timer 1000 ms after each event; the same (key, time) from either input
// is one timer. An event at 5000 on input 1 deletes its key's timer at 5000.
class TimersOfBothInputs : public KeyedCoProcessFunction<std::string, Event, Event, Fired> {
 public:
  void ProcessElement1(const Event& e, Context& ctx, Collector<Fired>& out) override {
    ctx.RegisterEventTimeTimer(e.time + 1000);
    if (e.time == 5000) ctx.DeleteEventTimeTimer(5000);
    out.Collect(Fired("in1", ctx.CurrentKey(), e.time, ctx.timestamp()));
  }
  void ProcessElement2(const Event& e, Context& ctx, Collector<Fired>& out) override {
    ctx.RegisterEventTimeTimer(e.time + 1000);
    out.Collect(Fired("in2", ctx.CurrentKey(), e.time, ctx.timestamp()));
  }
  void OnTimer(Timestamp time, Context& ctx, Collector<Fired>& out) override {
    EXPECT_EQ(ctx.time_domain(), TimeDomain::kEventTime);
    out.Collect(Fired("timer", ctx.CurrentKey(), time, ctx.timestamp()));
  }
};

TEST_P(CoProcessTest, TimersAreOnePerKeyAndTimeAcrossBothInputsAndDeletable) {
  CollectSink<Fired> sink;
  auto in1 =
      env_.FromSource(CollectionSource<Event>({{"a", 1000}, {"b", 1000}, {"a", 4000}, {"a", 5000}}),
                      ByTime<Event>());
  auto in2 = env_.FromSource(CollectionSource<Event>({{"a", 1000}, {"b", 2500}}), ByTime<Event>());
  in1.Connect(in2)
      .KeyBy([](const Event& e) { return e.key; }, [](const Event& e) { return e.key; })
      .Process(TimersOfBothInputs())
      .SinkTo(sink);
  absl::Status status = env_.Execute("co-timers");
  ASSERT_TRUE(status.ok()) << status;
  std::vector<Fired> expected = {
      {"in1", "a", 1000, 1000},
      {"in1", "b", 1000, 1000},
      {"in1", "a", 4000, 4000},
      {"in1", "a", 5000, 5000},
      {"in2", "a", 1000, 1000},
      {"in2", "b", 2500, 2500},
      // a: 2000 once (registered by both inputs), 5000 deleted, 6000; b: 2000, 3500.
      {"timer", "a", 2000, 2000},
      {"timer", "a", 6000, 6000},
      {"timer", "b", 2000, 2000},
      {"timer", "b", 3500, 3500}};
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

TEST_P(CoProcessTest, SideOutputsAndKeyedCoMap) {
  OutputTag<std::string> refunds("refunds");
  CollectSink<std::string> main_sink;
  CollectSink<std::string> side_sink;
  CollectSink<int64_t> map_sink;
  auto orders = env_.FromCollection(Orders());
  auto payments = env_.FromCollection(Payments());

  class Route : public KeyedCoProcessFunction<int64_t, Order, Payment, std::string> {
   public:
    explicit Route(OutputTag<std::string> tag) : tag_(std::move(tag)) {}
    void ProcessElement1(const Order& o, Context&, Collector<std::string>& out) override {
      out.Collect(o.item);
    }
    void ProcessElement2(const Payment& p, Context& ctx, Collector<std::string>&) override {
      if (p.amount >= 40) ctx.Output(tag_, std::to_string(ctx.CurrentKey()));
    }

   private:
    OutputTag<std::string> tag_;
  };
  auto keyed = orders.Connect(payments).KeyBy([](const Order& o) { return o.id; },
                                              [](const Payment& p) { return p.order_id; });
  auto routed = keyed.Process(Route(refunds));
  routed.SinkTo(main_sink);
  routed.GetSideOutput(refunds).SinkTo(side_sink);
  keyed.Map([](const Order& o) { return o.id; }, [](const Payment& p) { return -p.order_id; })
      .SinkTo(map_sink);
  absl::Status status = env_.Execute("co-side-outputs");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(main_sink.values(),
              UnorderedElementsAreArray({"apple", "pear", "plum", "fig", "kiwi", "lime"}));
  EXPECT_THAT(side_sink.values(), UnorderedElementsAreArray({"4", "5", "7"}));
  EXPECT_THAT(map_sink.values(),
              UnorderedElementsAreArray({1, 2, 3, 4, 5, 6, -1, -3, -2, -4, -5, -7}));
}

class Throws : public KeyedCoProcessFunction<int64_t, Order, Payment, std::string> {
 public:
  void ProcessElement1(const Order&, Context&, Collector<std::string>&) override {}
  void ProcessElement2(const Payment& p, Context&, Collector<std::string>&) override {
    if (p.order_id == 4) throw std::runtime_error("bad payment");
  }
};

TEST_P(CoProcessTest, ExceptionFailsTheJobNamingTheOperator) {
  CollectSink<std::string> sink;
  env_.FromCollection(Orders())
      .Connect(env_.FromCollection(Payments()))
      .KeyBy([](const Order& o) { return o.id; }, [](const Payment& p) { return p.order_id; })
      .Process(Throws())
      .Name("payments")
      .SinkTo(sink);
  absl::Status status = env_.Execute("co-process-failure");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(status.message(), HasSubstr("payments"));
  EXPECT_THAT(status.message(), HasSubstr("bad payment"));
}

INSTANTIATE_TEST_SUITE_P(Parallelism, CoProcessTest, ::testing::Values(1, 2, 4));

// A source that emits its records and then stays open (unbounded) until cancelled.
class OpenEndedSource : public Source<Event> {
 public:
  explicit OpenEndedSource(std::vector<Event> events) : events_(std::move(events)) {}
  bool IsBounded() const override { return false; }
  int MaxParallelism() const override { return 1; }
  absl::StatusOr<std::unique_ptr<SourceReader<Event>>> CreateReader(const SourceContext&) override {
    return std::unique_ptr<SourceReader<Event>>(new Reader(events_));
  }

 private:
  class Reader : public SourceReader<Event> {
   public:
    explicit Reader(std::vector<Event> events) : events_(std::move(events)) {}
    absl::StatusOr<PollResult> PollNext(Collector<Event>& out, int) override {
      if (!done_) {
        for (const Event& e : events_) out.Collect(e);
        done_ = true;
      }
      return PollResult::WaitForWake();
    }

   private:
    std::vector<Event> events_;
    bool done_ = false;
  };
  std::vector<Event> events_;
};

// Both inputs arm a processing-time timer 5 s ahead per key (one timer per key and time).
class ProcessingTimeout : public KeyedCoProcessFunction<std::string, Event, Event, Fired> {
 public:
  void ProcessElement1(const Event& e, Context& ctx, Collector<Fired>& out) override {
    ctx.RegisterProcessingTimeTimer(ctx.CurrentProcessingTime() + 5000);
    out.Collect(Fired("arm", ctx.CurrentKey(), e.time, kNoTimestamp));
  }
  void ProcessElement2(const Event& e, Context& ctx, Collector<Fired>& out) override {
    ctx.RegisterProcessingTimeTimer(ctx.CurrentProcessingTime() + 5000);
    out.Collect(Fired("arm2", ctx.CurrentKey(), e.time, kNoTimestamp));
  }
  void OnTimer(Timestamp time, Context& ctx, Collector<Fired>& out) override {
    EXPECT_EQ(ctx.time_domain(), TimeDomain::kProcessingTime);
    out.Collect(Fired("timer", ctx.CurrentKey(), time, ctx.timestamp()));
  }
};

bool WaitForSize(const CollectSink<Fired>& sink, size_t n) {
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (sink.size() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  return sink.size() >= n;
}

TEST(CoProcessingTimeTest, TimersFireWhenTheManualClockReachesThem) {
  auto clock = std::make_shared<ManualClock>(10'000);
  StreamEnvironment env({.parallelism = 2, .clock = clock});
  CollectSink<Fired> sink;
  auto arm = env.FromSource(OpenEndedSource({{"x", 1}, {"y", 2}, {"z", 3}}));
  // Input 2 is bounded: the operator keeps running on input 1 after it ended.
  auto arm2 = env.FromCollection(std::vector<Event>{{"y", 4}});
  arm.Connect(arm2)
      .KeyBy([](const Event& e) { return e.key; }, [](const Event& e) { return e.key; })
      .Process(ProcessingTimeout())
      .SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("co-processing-timers");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(WaitForSize(sink, 4));
  clock->Advance(absl::Milliseconds(4999));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(sink.size(), 4u);  // not due yet
  clock->Advance(absl::Milliseconds(1));
  ASSERT_TRUE(WaitForSize(sink, 7));
  job->Cancel();
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  std::vector<Fired> expected = {
      {"arm", "x", 1, kNoTimestamp},        {"arm", "y", 2, kNoTimestamp},
      {"arm", "z", 3, kNoTimestamp},        {"arm2", "y", 4, kNoTimestamp},
      {"timer", "x", 15'000, kNoTimestamp}, {"timer", "y", 15'000, kNoTimestamp},
      {"timer", "z", 15'000, kNoTimestamp}};
  EXPECT_THAT(sink.values(), UnorderedElementsAreArray(expected));
}

}  // namespace
}  // namespace sluice
