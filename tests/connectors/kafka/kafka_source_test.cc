// KafkaSource against librdkafka's mock cluster (kafka_mock_cluster, a child process): explicit
// partition assignment, checkpointed offsets restored exactly, starting offsets, consumer-group
// assignment and rebalance, per-partition splits and Kafka timestamps, errors, and a job.
#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include <sluice/connectors/kafka.h>
#include <sluice/sluice.h>

#include "connectors/kafka/kafka_test_util.h"
#include "connectors/test_util.h"
#include "connectors/window_count.h"

namespace sluice::kafka_test {
namespace {

using ::testing::HasSubstr;

struct Captured {
  std::string value;
  std::string split;
  Timestamp ts = 0;
};

template <typename T>
class SplitConsumer : public internal::BatchConsumer<T> {
 public:
  SplitConsumer(std::vector<Captured>* out, std::string split) : out_(out), split_(split) {}
  void Consume(std::vector<T>& records, std::vector<Timestamp>& ts) override {
    for (size_t i = 0; i < records.size(); ++i) out_->push_back({records[i], split_, ts[i]});
  }
  void OnEndOfInput() override {}
  void OnWatermark(Timestamp) override {}

 private:
  std::vector<Captured>* out_;
  std::string split_;
};

// Captures records with their split and timestamp.
class Capture : public internal::SplitRouter<std::string> {
 public:
  Capture() : main_consumer_(&records, "") {
    main_.AddConsumer(&main_consumer_);
    main_.SetSplitRouter(this);
  }
  Collector<std::string>& out() { return main_; }
  Collector<std::string>& ForSplit(std::string_view id) override {
    auto& slot = splits_[std::string(id)];
    if (slot.second == nullptr) {
      slot.first = std::make_unique<SplitConsumer<std::string>>(&records, std::string(id));
      slot.second = std::make_unique<Collector<std::string>>(1);
      slot.second->AddConsumer(slot.first.get());
    }
    return *slot.second;
  }
  void ReleaseSplit(std::string_view id) override {
    released.insert(std::string(id));
    splits_.erase(std::string(id));
  }
  std::vector<Captured> records;
  std::set<std::string> released;

 private:
  Collector<std::string> main_{1};
  SplitConsumer<std::string> main_consumer_;
  std::map<std::string, std::pair<std::unique_ptr<SplitConsumer<std::string>>,
                                  std::unique_ptr<Collector<std::string>>>>
      splits_;
};

SourceContext ContextFor(int subtask, int parallelism) {
  RuntimeContext runtime;
  runtime.operator_name = "Source: kafka";
  runtime.subtask_index = subtask;
  runtime.parallelism = parallelism;
  return SourceContext(runtime, nullptr);
}

// Polls until the reader ends, `until` holds, or `timeout` passes. Returns true at the end.
bool PollReader(SourceReader<std::string>& reader, Capture& capture,
                const std::function<bool()>& until, int max_records = 100,
                absl::Duration timeout = absl::Seconds(15)) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (until && until()) return false;
    absl::StatusOr<PollResult> r = reader.PollNext(capture.out(), max_records);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return false;
    if (r->kind == PollResult::Kind::kEndOfInput) return true;
    if (r->kind == PollResult::Kind::kNothingAvailable) absl::SleepFor(absl::Milliseconds(5));
  }
  ADD_FAILURE() << "reader did not finish in time";
  return false;
}

std::unique_ptr<SourceReader<std::string>> MakeReader(KafkaSource<std::string>& source,
                                                      int subtask = 0, int parallelism = 1) {
  auto reader = source.CreateReader(ContextFor(subtask, parallelism));
  EXPECT_TRUE(reader.ok()) << reader.status();
  return reader.ok() ? *std::move(reader) : nullptr;
}

uint64_t Fnv(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// `per_partition` records "<topic>/p<p>/<i>" with timestamp 1000*p + i into each partition,
// then an END marker per partition.
std::vector<std::string> Fill(const std::string& bootstrap, const std::string& topic,
                              int partitions, int per_partition, bool end_markers = true) {
  std::vector<Record> records;
  std::vector<std::string> values;
  for (int i = 0; i < per_partition; ++i) {
    for (int p = 0; p < partitions; ++p) {
      std::string v = absl::StrCat(topic, "/p", p, "/", i);
      records.push_back({.key = absl::StrCat("k", i),
                         .value = v,
                         .partition = p,
                         .timestamp_ms = 1'000'000 + 1000 * p + i});
      values.push_back(v);
    }
  }
  if (end_markers) {
    for (int p = 0; p < partitions; ++p) records.push_back({.value = "END", .partition = p});
  }
  Produce(bootstrap, topic, records);
  return values;
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}
std::vector<std::string> ValuesOf(const std::vector<Captured>& c) {
  std::vector<std::string> v;
  for (const Captured& x : c) v.push_back(x.value);
  return v;
}

using connectors_test::Count;
using connectors_test::CountPerSecond;

class KafkaSourceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new MockCluster({"explicit:4", "restore:3", "latest:2", "committed:2", "group:4",
                                "job:3", "typed:1", "timestamp:3", "idle:3", "group-restart:3",
                                "holds:3", "rescale:4"});
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(cluster_->ok()) << "mock cluster did not start"; }

  KafkaSourceOptions Options(const std::string& topic) const {
    KafkaSourceOptions o{.bootstrap_servers = cluster_->bootstrap(), .topics = {topic}};
    o.is_end_of_stream = [](std::string_view v) { return v == "END"; };
    o.poll_interval = absl::Milliseconds(5);
    return o;
  }

  static MockCluster* cluster_;
};
MockCluster* KafkaSourceTest::cluster_ = nullptr;

// Partition p of topic t belongs to subtask (FNV-1a(t) + p) % parallelism; each partition is a
// split (released at its end-of-stream record), records keep their Kafka timestamps and order.
TEST_F(KafkaSourceTest, ExplicitAssignmentSplitsPartitionsDeterministically) {
  std::vector<std::string> all = Fill(cluster_->bootstrap(), "explicit", 4, 50);
  KafkaSource<std::string> source(Options("explicit"));
  std::vector<std::string> read;
  for (int subtask = 0; subtask < 3; ++subtask) {
    auto reader = MakeReader(source, subtask, 3);
    ASSERT_NE(reader, nullptr);
    Capture capture;
    ASSERT_TRUE(PollReader(*reader, capture, nullptr, 7));
    std::set<std::string> expected_splits;
    for (int p = 0; p < 4; ++p) {
      if ((Fnv("explicit") + p) % 3 == static_cast<uint64_t>(subtask)) {
        expected_splits.insert(absl::StrCat("explicit-", p));
      }
    }
    EXPECT_EQ(capture.released, expected_splits) << "subtask " << subtask;
    std::map<std::string, int> next_index;
    for (const Captured& c : capture.records) {
      // "explicit/p<p>/<i>" came through split "explicit-<p>", in order, with timestamp.
      int p = c.value[10] - '0';
      EXPECT_EQ(c.split, absl::StrCat("explicit-", p)) << c.value;
      int i = std::stoi(c.value.substr(12));
      EXPECT_EQ(i, next_index[c.split]++) << c.value;
      EXPECT_EQ(c.ts, 1'000'000 + 1000 * p + i) << c.value;
      read.push_back(c.value);
    }
  }
  EXPECT_EQ(Sorted(read), Sorted(all));
}

// Read part, snapshot, read more (lost in the "crash"), restore a new reader from the snapshot:
// before + after is the whole topic, nothing lost or repeated.
TEST_F(KafkaSourceTest, RestoresOffsetsExactly) {
  std::vector<std::string> all = Fill(cluster_->bootstrap(), "restore", 3, 200);
  KafkaSource<std::string> source(Options("restore"));
  std::string state;
  std::vector<std::string> before;
  {
    auto reader = MakeReader(source);
    ASSERT_NE(reader, nullptr);
    Capture capture;
    PollReader(
        *reader, capture, [&] { return capture.records.size() >= 250; }, 13);
    ASSERT_GE(capture.records.size(), 250u);
    absl::StatusOr<std::string> snap = reader->SnapshotState(1);
    ASSERT_TRUE(snap.ok()) << snap.status();
    state = *snap;
    before = ValuesOf(capture.records);
    size_t at_snapshot = capture.records.size();
    PollReader(
        *reader, capture, [&] { return capture.records.size() >= at_snapshot + 100; }, 13);
    EXPECT_GT(capture.records.size(), at_snapshot);  // read past the snapshot, then "crash"
    reader->Close();
  }
  auto reader = MakeReader(source);
  ASSERT_NE(reader, nullptr);
  ASSERT_TRUE(reader->RestoreState(state).ok());
  Capture capture;
  ASSERT_TRUE(PollReader(*reader, capture, nullptr, 17));
  std::vector<std::string> got = before;
  for (const std::string& v : ValuesOf(capture.records)) got.push_back(v);
  EXPECT_EQ(got.size(), all.size());
  EXPECT_EQ(Sorted(got), Sorted(all));
}

// kLatest skips what was there before the reader started (and a checkpoint taken before any
// record keeps that position); kCommitted starts at the offsets committed for a completed
// checkpoint.
TEST_F(KafkaSourceTest, StartingOffsetsLatestAndCommitted) {
  Fill(cluster_->bootstrap(), "latest", 2, 10, /*end_markers=*/false);
  KafkaSourceOptions o = Options("latest");
  o.starting_offsets = KafkaStartingOffsets::kLatest;
  KafkaSource<std::string> source(o);
  auto reader = MakeReader(source);
  ASSERT_NE(reader, nullptr);
  Capture capture;
  PollReader(*reader, capture, [] { return true; });      // does not poll at all
  ASSERT_TRUE(reader->PollNext(capture.out(), 10).ok());  // starts: resolves latest offsets
  absl::StatusOr<std::string> early = reader->SnapshotState(1);
  ASSERT_TRUE(early.ok());
  std::vector<Record> later;
  for (int p = 0; p < 2; ++p) {
    later.push_back({.value = absl::StrCat("late-", p), .partition = p});
    later.push_back({.value = "END", .partition = p});
  }
  Produce(cluster_->bootstrap(), "latest", later);
  ASSERT_TRUE(PollReader(*reader, capture, nullptr));
  EXPECT_EQ(Sorted(ValuesOf(capture.records)), Sorted({"late-0", "late-1"}));
  // Restored from the snapshot taken before any record: the records produced after the start.
  auto restored = MakeReader(source);
  ASSERT_TRUE(restored->RestoreState(*early).ok());
  Capture capture2;
  ASSERT_TRUE(PollReader(*restored, capture2, nullptr));
  EXPECT_EQ(Sorted(ValuesOf(capture2.records)), Sorted({"late-0", "late-1"}));

  // Committed offsets: a reader commits checkpoint 7's positions; a new one starts there.
  Fill(cluster_->bootstrap(), "committed", 2, 20, /*end_markers=*/false);
  KafkaSourceOptions co = Options("committed");
  co.group_id = "committed-group";
  KafkaSource<std::string> committed_source(co);
  auto first = MakeReader(committed_source);
  Capture c1;
  PollReader(
      *first, c1, [&] { return c1.records.size() >= 25; }, 5);
  ASSERT_TRUE(first->SnapshotState(7).ok());
  size_t at_checkpoint = c1.records.size();
  first->NotifyCheckpointComplete(7);
  // The asynchronous commit is served by later polls: poll until the group's offsets are
  // committed (not for a fixed time: on a loaded machine the commit may take longer).
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  int64_t committed = 0;
  while (absl::Now() < deadline) {
    const absl::Time until = absl::Now() + absl::Milliseconds(50);
    PollReader(
        *first, c1, [&] { return absl::Now() > until; }, 1);
    committed = 0;
    for (int64_t o : CommittedOffsets(cluster_->bootstrap(), "committed-group", "committed", 2)) {
      committed += std::max<int64_t>(o, 0);
    }
    if (committed == static_cast<int64_t>(at_checkpoint)) break;
  }
  ASSERT_EQ(committed, static_cast<int64_t>(at_checkpoint)) << "checkpoint 7's offsets committed";
  first->Close();
  std::vector<Record> ends = {{.value = "END", .partition = 0}, {.value = "END", .partition = 1}};
  Produce(cluster_->bootstrap(), "committed", ends);
  co.starting_offsets = KafkaStartingOffsets::kCommitted;
  KafkaSource<std::string> second_source(co);
  auto second = MakeReader(second_source);
  Capture c2;
  ASSERT_TRUE(PollReader(*second, c2, nullptr));
  EXPECT_EQ(c2.records.size(), 40 - at_checkpoint);
  std::vector<std::string> got = ValuesOf(c1.records);
  got.resize(at_checkpoint);
  for (const std::string& v : ValuesOf(c2.records)) got.push_back(v);
  std::set<std::string> unique(got.begin(), got.end());
  EXPECT_EQ(unique.size(), 40u);
}

// Consumer-group mode: one reader gets every partition; a second joins, the group rebalances and
// the partitions are split between them; the revoked partitions are handed over at the positions
// emitted so far (no record lost or repeated).
TEST_F(KafkaSourceTest, ConsumerGroupAssignmentAndRebalance) {
  std::vector<std::string> first_half = Fill(cluster_->bootstrap(), "group", 4, 50, false);
  KafkaSourceOptions o = Options("group");
  o.assignment = KafkaAssignment::kConsumerGroup;
  o.group_id = "group-test";
  o.is_end_of_stream = nullptr;
  o.properties = {{"session.timeout.ms", "6000"}, {"heartbeat.interval.ms", "200"}};
  KafkaSource<std::string> source(o);
  auto a = MakeReader(source, 0, 2);
  Capture ca;
  PollReader(
      *a, ca, [&] { return ca.records.size() >= 200; }, 10, absl::Seconds(20));
  ASSERT_EQ(ca.records.size(), 200u);
  {
    std::set<std::string> splits;
    for (const Captured& c : ca.records) splits.insert(c.split);
    EXPECT_EQ(splits.size(), 4u);  // a alone owns every partition
  }
  auto b = MakeReader(source, 1, 2);
  Capture cb;
  std::vector<std::string> second_half;
  bool produced = false;
  absl::Time deadline = absl::Now() + absl::Seconds(25);
  while (absl::Now() < deadline && ca.records.size() + cb.records.size() < 400) {
    ASSERT_TRUE(a->PollNext(ca.out(), 10).ok());
    ASSERT_TRUE(b->PollNext(cb.out(), 10).ok());
    if (!produced && !ca.released.empty()) {
      // After the rebalance: more records for everybody.
      std::vector<Record> more;
      for (int i = 50; i < 100; ++i) {
        for (int p = 0; p < 4; ++p) {
          more.push_back({.value = absl::StrCat("group/p", p, "/", i), .partition = p});
          second_half.push_back(more.back().value);
        }
      }
      Produce(cluster_->bootstrap(), "group", more);
      produced = true;
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  ASSERT_TRUE(produced) << "no rebalance seen";
  std::set<std::string> splits_a, splits_b;
  for (const Captured& c : cb.records) splits_b.insert(c.split);
  for (const Captured& c : ca.records) {
    if (c.value.substr(c.value.rfind('/') + 1).size() >= 2 &&
        std::stoi(c.value.substr(c.value.rfind('/') + 1)) >= 50) {
      splits_a.insert(c.split);
    }
  }
  EXPECT_FALSE(ca.released.empty());  // a gave partitions away
  EXPECT_FALSE(splits_b.empty());     // b read some after the rebalance
  EXPECT_FALSE(splits_a.empty());     // and so did a
  for (const std::string& s : splits_a) EXPECT_FALSE(splits_b.contains(s)) << s;
  std::vector<std::string> got = ValuesOf(ca.records);
  for (const std::string& v : ValuesOf(cb.records)) got.push_back(v);
  std::vector<std::string> all = first_half;
  all.insert(all.end(), second_half.begin(), second_half.end());
  EXPECT_EQ(Sorted(got), Sorted(all));
  a->Close();
  b->Close();
}

// A whole job: 3 partitions → parallelism 2 → collect; exactly the records, and Kafka timestamps.
TEST_F(KafkaSourceTest, JobReadsEveryPartition) {
  std::vector<std::string> all = Fill(cluster_->bootstrap(), "job", 3, 300);
  RuntimeOptions options;
  options.parallelism = 2;
  StreamEnvironment env(options);
  CollectSink<std::string> sink;
  env.FromSource(KafkaSource(Options("job")),
                 WatermarkStrategy<std::string>::ForBoundedOutOfOrderness(absl::Seconds(1)))
      .SinkTo(sink);
  absl::Status status = env.Execute("kafka-job");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(Sorted(sink.values()), Sorted(all));
}

// A key-and-value deserializer makes typed records.
TEST_F(KafkaSourceTest, KeyValueDeserializer) {
  Fill(cluster_->bootstrap(), "typed", 1, 5);
  KafkaSourceOptions o = Options("typed");
  auto source = KafkaSource(o, [](std::string_view key, std::string_view value) {
    return absl::StrCat(std::string(key), "=", std::string(value));
  });
  StreamEnvironment env;
  CollectSink<std::string> sink;
  env.FromSource(source).SinkTo(sink);
  ASSERT_TRUE(env.Execute("typed").ok());
  EXPECT_EQ(Sorted(sink.values()), Sorted({"k0=typed/p0/0", "k1=typed/p0/1", "k2=typed/p0/2",
                                           "k3=typed/p0/3", "k4=typed/p0/4"}));
}

TEST_F(KafkaSourceTest, MissingTopicAndBadOptionsGiveClearErrors) {
  // The 2.0.2 mock creates unknown topics on a metadata request: make it answer "unknown".
  ASSERT_EQ(cluster_->Command(absl::StrCat("topic_error no-such-topic ",
                                           int{RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART})),
            "ok");
  KafkaSourceOptions o = Options("no-such-topic");
  o.request_timeout = absl::Seconds(3);
  StreamEnvironment env;
  CollectSink<std::string> sink;
  env.FromSource(KafkaSource(o)).SinkTo(sink);
  absl::Status status = env.Execute("missing");
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("topic 'no-such-topic'"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("UNKNOWN_TOPIC_OR_PART"));

  KafkaSourceOptions bad = Options("x");
  bad.properties["no.such.property"] = "1";
  StreamEnvironment env2;
  env2.FromSource(KafkaSource(bad)).SinkTo(sink);
  status = env2.Execute("bad");
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("no.such.property"));

  KafkaSourceOptions none;
  EXPECT_THAT(std::string(none.Validate().message()), HasSubstr("bootstrap_servers"));
}

// kTimestamp. The mock cluster of librdkafka 2.0.2 does not look offsets up by timestamp: its
// ListOffsets handler answers offset -1 ("no such record") with NO_ERROR for every timestamp >= 0
// ("FIXME: by timestamp" in rdkafka_mock_handlers.c), so "start at the first record with
// timestamp >= T" cannot be checked against it (the source would start at the end of every
// partition whatever T is). What is checked here holds on the mock and on a real broker alike:
// with T later than every record, each partition starts at its end, resolved to a concrete offset
// when the reader starts (a snapshot taken before the first record keeps it), and the records
// produced afterwards are read exactly.
TEST_F(KafkaSourceTest, StartingOffsetsTimestampLaterThanEveryRecordStartsAtTheEnd) {
  std::vector<Record> old;
  for (int p = 0; p < 3; ++p) {
    for (int i = 0; i < 5; ++i) {
      old.push_back({.value = absl::StrCat("old-", p, "-", i),
                     .partition = p,
                     .timestamp_ms = 1'000'000 + 10'000 * p + 1000 * i});
    }
  }
  Produce(cluster_->bootstrap(), "timestamp", old);
  // The mock's answer for a timestamp inside the data (a real broker: offset 2 of partition 1).
  // Should this fail, the mock has learned timestamps: check "reads exactly the records with
  // timestamp >= T per partition" here.
  std::pair<int64_t, rd_kafka_resp_err_t> lookup =
      OffsetForTime(cluster_->bootstrap(), "timestamp", 1, 1'012'000);
  EXPECT_EQ(lookup.second, RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(lookup.first, -1) << "the mock now answers ListOffsets by timestamp";

  KafkaSourceOptions o = Options("timestamp");
  o.starting_offsets = KafkaStartingOffsets::kTimestamp;
  o.start_timestamp = absl::FromUnixMillis(5'000'000);  // after every "old" record
  KafkaSource<std::string> source(o);
  auto reader = MakeReader(source);
  ASSERT_NE(reader, nullptr);
  Capture capture;
  ASSERT_TRUE(reader->PollNext(capture.out(), 10).ok());  // starts: resolves the offsets
  absl::StatusOr<std::string> early = reader->SnapshotState(1);
  ASSERT_TRUE(early.ok()) << early.status();
  // Concrete positions: the end of each partition (5 records each), nothing logical.
  EXPECT_EQ(*early, "timestamp\t0\t5\ntimestamp\t1\t5\ntimestamp\t2\t5\n");
  std::vector<Record> later;
  for (int p = 0; p < 3; ++p) {
    later.push_back({.value = absl::StrCat("new-", p), .partition = p});  // timestamp: now
    later.push_back({.value = "END", .partition = p});
  }
  Produce(cluster_->bootstrap(), "timestamp", later);
  ASSERT_TRUE(PollReader(*reader, capture, nullptr));
  EXPECT_EQ(Sorted(ValuesOf(capture.records)), Sorted({"new-0", "new-1", "new-2"}));
  auto restored = MakeReader(source);
  ASSERT_NE(restored, nullptr);
  ASSERT_TRUE(restored->RestoreState(*early).ok());
  Capture capture2;
  ASSERT_TRUE(PollReader(*restored, capture2, nullptr));
  EXPECT_EQ(Sorted(ValuesOf(capture2.records)), Sorted({"new-0", "new-1", "new-2"}));
}

// Per-partition watermarks with idleness in a job. Topic "idle" has 3 partitions, read at
// parallelism 2: partitions 0 and 2 go to one subtask ((h + 0) % 2 == (h + 2) % 2), partition 1
// to the other. Partition 1 gets no record: its subtask's watermark stays at the minimum until
// idleness marks it idle. Partition 2 stops early (event times 1000..1900): its split holds the
// watermark of its subtask at 1799 until it is idle. Partition 0 goes on (1000..5900, then
// records at 5950 to keep it active), watermark 5900 - 100 - 1 = 5799 (5849 with the keep-alive
// records): the 1 s windows up to [4000, 5000) fire while the job runs, [5000, 6000) does not.
// Without WithIdleness no window would fire (the source never ends).
TEST_F(KafkaSourceTest, IdlePartitionsDoNotHoldBackEventTimeWindows) {
  TestProducer producer(cluster_->bootstrap());
  // Partition 2's records first, read before partition 0 has any (partition 2 stops early and
  // goes idle; partition 1 never has a record and is idle from the start).
  std::vector<Record> early;
  for (int64_t t = 1000; t < 2000; t += 100) {
    early.push_back({.value = absl::StrCat("2@", t), .partition = 2, .timestamp_ms = t});
  }
  producer.Send("idle", early);

  KafkaSourceOptions o = Options("idle");
  o.is_end_of_stream = nullptr;  // runs until cancelled
  RuntimeOptions options;
  options.parallelism = 2;
  options.execution_mode = ExecutionMode::kStreaming;
  options.auto_watermark_interval = absl::Milliseconds(50);
  StreamEnvironment env(options);
  CollectSink<std::string> raw;
  CollectSink<Count> windows;
  auto stream = env.FromSource(
      KafkaSource(o),
      WatermarkStrategy<std::string>::ForBoundedOutOfOrderness(absl::Milliseconds(100))
          .WithIdleness(absl::Milliseconds(300)));
  stream.SinkTo(raw);
  CountPerSecond(stream, windows);
  auto job = env.ExecuteAsync("kafka-idle");
  ASSERT_TRUE(job.ok()) << job.status();
  absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (raw.size() < early.size() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(raw.size(), early.size());
  std::vector<Record> main;
  for (int64_t t = 1000; t < 6000; t += 100) {
    main.push_back({.value = absl::StrCat("0@", t), .partition = 0, .timestamp_ms = t});
  }
  producer.Send("idle", main);
  // Keep partition 0 active (were every split idle, the watermark would stay where it was), with
  // event times in the window that must stay open.
  int keep_alive = 0;
  absl::Time settle = absl::InfiniteFuture();
  deadline = absl::Now() + absl::Seconds(15);
  while (absl::Now() < std::min(deadline, settle)) {
    producer.Send("idle", {{.value = "0@5950", .partition = 0, .timestamp_ms = 5950}});
    ++keep_alive;
    if (windows.size() >= 4 && settle == absl::InfiniteFuture()) {
      settle = absl::Now() + absl::Milliseconds(500);  // time for a wrong extra window to show
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_FALSE(job->IsDone());
  std::vector<Count> got = windows.values();
  job->Cancel();
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<Count>{{1000, 20}, {2000, 10}, {3000, 10}, {4000, 10}}));
  // Every record of partitions 0 and 2 went through the source (and the keep-alive records).
  std::vector<std::string> expected_raw;
  for (const Record& r : early) expected_raw.push_back(r.value);
  for (const Record& r : main) expected_raw.push_back(r.value);
  std::vector<std::string> seen = raw.values();
  std::vector<std::string> seen_data;
  for (const std::string& v : seen) {
    if (v != "0@5950") seen_data.push_back(v);
  }
  EXPECT_EQ(Sorted(seen_data), Sorted(expected_raw));
  EXPECT_LE(seen.size() - seen_data.size(), static_cast<size_t>(keep_alive));
}

// An assigned partition holds the watermark back from the start, before its first record (as in
// Flink): with partitions 1 and 2 still empty and no idleness, partition 0's records fire no
// window, and the records that arrive later in partitions 1 and 2 are in their windows, not late.
TEST_F(KafkaSourceTest, AnEmptyPartitionHoldsTheWatermarkUntilItsFirstRecord) {
  TestProducer producer(cluster_->bootstrap());
  std::vector<Record> first;
  for (int64_t t = 1000; t < 5000; t += 100) {
    first.push_back({.value = absl::StrCat("0@", t), .partition = 0, .timestamp_ms = t});
  }
  producer.Send("holds", first);

  KafkaSourceOptions o = Options("holds");
  o.is_end_of_stream = nullptr;  // runs until cancelled
  RuntimeOptions options;
  options.parallelism = 1;
  options.execution_mode = ExecutionMode::kStreaming;
  options.auto_watermark_interval = absl::Milliseconds(20);
  StreamEnvironment env(options);
  CollectSink<std::string> raw;
  CollectSink<Count> windows;
  auto stream = env.FromSource(
      KafkaSource(o),
      WatermarkStrategy<std::string>::ForBoundedOutOfOrderness(absl::Milliseconds(100)));
  stream.SinkTo(raw);
  CountPerSecond(stream, windows);
  auto job = env.ExecuteAsync("kafka-holds");
  ASSERT_TRUE(job.ok()) << job.status();
  absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (raw.size() < first.size() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(raw.size(), first.size());
  absl::SleepFor(absl::Milliseconds(300));  // many watermark intervals
  EXPECT_EQ(windows.size(), 0u) << "a window fired while partitions 1 and 2 had no record";
  // Late-comers in partitions 1 and 2 (in window 1000), then records that move both to 5000.
  producer.Send("holds", {{.value = "1@1500", .partition = 1, .timestamp_ms = 1500},
                          {.value = "2@1600", .partition = 2, .timestamp_ms = 1600}});
  producer.Send("holds", {{.value = "1@5000", .partition = 1, .timestamp_ms = 5000},
                          {.value = "2@5000", .partition = 2, .timestamp_ms = 5000}});
  // The watermark is now min(4900, 5000, 5000) - 100 - 1: windows 1000, 2000 and 3000 fire.
  deadline = absl::Now() + absl::Seconds(15);
  while (windows.size() < 3 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  absl::SleepFor(absl::Milliseconds(300));  // time for a wrong extra window to show
  std::vector<Count> got = windows.values();
  job->Cancel();
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<Count>{{1000, 12}, {2000, 10}, {3000, 10}}));
}

// A job at parallelism 2 taken down with a savepoint resumes at parallelism 3, then 1: every
// partition continues exactly at the savepoint's offset, whichever subtask owns it now.
TEST_F(KafkaSourceTest, ResumesAtAnotherParallelismFromASavepoint) {
  const std::string topic = "rescale";
  auto phase = [&](const std::string& tag, bool end) {
    std::vector<Record> records;
    std::vector<std::string> values;
    for (int i = 0; i < 30; ++i) {
      for (int p = 0; p < 4; ++p) {
        values.push_back(absl::StrCat(tag, "/p", p, "/", i));
        records.push_back({.value = values.back(), .partition = p});
      }
    }
    if (end) {
      for (int p = 0; p < 4; ++p) records.push_back({.value = "END", .partition = p});
    }
    Produce(cluster_->bootstrap(), topic, records);
    return Sorted(values);
  };
  connectors_test::TempDir dir;
  // Runs at `parallelism` (restored from `restore` unless empty) until `expected` records
  // arrived, then takes a savepoint into `savepoint` and cancels; with no savepoint, runs to the
  // end (END markers). Returns what the job read (sorted) and the savepoint's path.
  auto run = [&](int parallelism, const std::string& restore, size_t expected,
                 const std::string& savepoint) {
    RuntimeOptions options;
    options.parallelism = parallelism;
    options.execution_mode = ExecutionMode::kStreaming;
    options.restore_from = restore;
    StreamEnvironment env(options);
    CollectSink<std::string> sink;
    env.FromSource(KafkaSource(Options(topic))).SinkTo(sink);
    auto job = env.ExecuteAsync(absl::StrCat("kafka-rescale-", parallelism));
    EXPECT_TRUE(job.ok()) << job.status();
    std::string path;
    if (!job.ok()) return std::make_pair(std::vector<std::string>(), path);
    if (savepoint.empty()) {
      EXPECT_TRUE(job->Wait().ok());
    } else {
      const absl::Time deadline = absl::Now() + absl::Seconds(15);
      while (sink.size() < expected && absl::Now() < deadline)
        absl::SleepFor(absl::Milliseconds(5));
      absl::SleepFor(absl::Milliseconds(200));  // nothing more may come
      absl::StatusOr<std::string> sp = job->TriggerSavepoint(savepoint);
      EXPECT_TRUE(sp.ok()) << sp.status();
      if (sp.ok()) path = *sp;
      job->Cancel();
      (void)job->Wait();
    }
    return std::make_pair(Sorted(sink.values()), path);
  };
  std::vector<std::string> first = phase("a", false);
  auto [got1, sp1] = run(2, "", first.size(), dir.Path("sp1"));
  EXPECT_EQ(got1, first);
  ASSERT_FALSE(sp1.empty());
  std::vector<std::string> second = phase("b", false);
  auto [got2, sp2] = run(3, sp1, second.size(), dir.Path("sp2"));
  EXPECT_EQ(got2, second);
  ASSERT_FALSE(sp2.empty());
  std::vector<std::string> third = phase("c", true);
  auto [got3, unused] = run(1, sp2, third.size(), "");
  EXPECT_EQ(got3, third);
}

// Consumer-group mode across a restart without a checkpoint to restore: a job started again with
// the same group resumes at the offsets committed to Kafka when its checkpoints completed. Run 1
// reads batch 1, commits it (checkpoints), reads some of batch 2 and is cancelled; batch 3 is
// produced while no job runs. Run 2 must read exactly the records at or after the committed
// offsets C_p (after batch 1 at least): nothing is lost, and the only records read twice are
// those run 1 emitted after the last checkpoint whose commit went through (offsets >= C_p that
// run 1 had read) — at-least-once.
TEST_F(KafkaSourceTest, ConsumerGroupJobRestartResumesFromCommittedOffsets) {
  const std::string topic = "group-restart";
  const std::string group = "group-restart-test";
  constexpr int kPartitions = 3;
  constexpr int kBatch = 40;
  auto value = [](int p, int i) { return absl::StrCat("p", p, "/", i); };
  auto batch = [&](int from) {
    std::vector<Record> records;
    for (int i = from; i < from + kBatch; ++i) {
      for (int p = 0; p < kPartitions; ++p)
        records.push_back({.value = value(p, i), .partition = p});
    }
    return records;
  };
  TestProducer producer(cluster_->bootstrap());
  producer.Send(topic, batch(0));

  KafkaSourceOptions o = Options(topic);
  o.assignment = KafkaAssignment::kConsumerGroup;
  o.group_id = group;
  o.is_end_of_stream = nullptr;
  // The mock delays a rejoin by session.timeout.ms - 1 s: keep it short.
  o.properties = {{"session.timeout.ms", "3000"}, {"heartbeat.interval.ms", "200"}};
  connectors_test::TempDir dir;
  auto run = [&](const std::string& name, CollectSink<std::string>& sink) {
    RuntimeOptions options;
    options.parallelism = 1;
    options.execution_mode = ExecutionMode::kStreaming;
    options.checkpointing.interval = absl::Milliseconds(100);
    options.checkpointing.directory = dir.Path(name);  // never restored from
    StreamEnvironment env(options);
    env.FromSource(KafkaSource(o)).SinkTo(sink);
    return env.ExecuteAsync(name);
  };

  CollectSink<std::string> sink1;
  std::vector<int64_t> committed;
  {
    auto job = run("run1", sink1);
    ASSERT_TRUE(job.ok()) << job.status();
    // Batch 1 read and its offsets committed by a completed checkpoint.
    absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      committed = CommittedOffsets(cluster_->bootstrap(), group, topic, kPartitions);
      if (committed == std::vector<int64_t>(kPartitions, kBatch)) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_EQ(committed, std::vector<int64_t>(kPartitions, kBatch));
    producer.Send(topic, batch(kBatch));
    deadline = absl::Now() + absl::Seconds(10);
    while (sink1.size() < size_t{kPartitions * kBatch + 10} && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    job->Cancel();
    EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  }
  committed = CommittedOffsets(cluster_->bootstrap(), group, topic, kPartitions);
  producer.Send(topic, batch(2 * kBatch));  // while no job runs

  std::vector<std::string> all, from_committed, before_committed;
  for (int p = 0; p < kPartitions; ++p) {
    const int64_t c = committed[static_cast<size_t>(p)];
    EXPECT_GE(c, kBatch) << "partition " << p;
    EXPECT_LE(c, 2 * kBatch) << "partition " << p;
    for (int i = 0; i < 3 * kBatch; ++i) {
      all.push_back(value(p, i));
      (i >= c ? from_committed : before_committed).push_back(value(p, i));
    }
  }
  // Run 1 read every record before the committed offsets, each once.
  std::vector<std::string> got1 = sink1.values();
  std::set<std::string> unique1(got1.begin(), got1.end());
  EXPECT_EQ(unique1.size(), got1.size()) << "run 1 repeated records";
  for (const std::string& v : before_committed) EXPECT_TRUE(unique1.contains(v)) << v;

  CollectSink<std::string> sink2;
  {
    auto job = run("run2", sink2);
    ASSERT_TRUE(job.ok()) << job.status();
    absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (sink2.size() < from_committed.size() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    absl::SleepFor(absl::Milliseconds(300));  // a record before C_p or a repeat would show here
    job->Cancel();
    EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  }
  // Run 2: exactly the records from the committed offsets on, each once.
  std::vector<std::string> got2 = sink2.values();
  EXPECT_EQ(Sorted(got2), Sorted(from_committed));
  // Together: every record, nothing lost. The repeats are exactly the records of run 1 at offsets
  // >= C_p (emitted after the last checkpoint whose commit reached Kafka).
  std::set<std::string> distinct = unique1;
  distinct.insert(got2.begin(), got2.end());
  EXPECT_EQ(std::vector<std::string>(distinct.begin(), distinct.end()), Sorted(all));
  EXPECT_EQ(got1.size() + got2.size() - distinct.size(), got1.size() - before_committed.size());
}

}  // namespace
}  // namespace sluice::kafka_test
