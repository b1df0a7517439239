// KafkaSink against librdkafka's mock cluster: at-least-once delivery read back with a consumer,
// delivery errors, and the transactional protocol (begin/pre-commit/commit per checkpoint, the
// restore path, fencing). The mock of librdkafka 2.0.2 writes no commit/abort markers and
// discards transactional offset commits, so the end-to-end exactly-once check runs against a
// real broker only: KafkaSinkRealBrokerTest, when SLUICE_KAFKA_BOOTSTRAP=host:port is set.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include <sluice/connectors/collection_source.h>
#include <sluice/connectors/kafka.h>
#include <sluice/sluice.h>

#include "connectors/kafka/kafka_test_util.h"
#include "connectors/test_util.h"

namespace sluice::kafka_test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int kApiEndTxn = 26;
constexpr int kApiProduce = 0;

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

RuntimeContext WriterContext(int subtask = 0, int parallelism = 1) {
  RuntimeContext ctx;
  ctx.operator_name = "Sink: kafka";
  ctx.subtask_index = subtask;
  ctx.parallelism = parallelism;
  return ctx;
}

std::unique_ptr<SinkWriter<std::string>> MakeWriter(KafkaSink<std::string>& sink, int subtask = 0) {
  auto w = sink.CreateWriter(WriterContext(subtask));
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? *std::move(w) : nullptr;
}

absl::Status WriteAll(SinkWriter<std::string>& w, std::vector<std::string> records) {
  return w.Write(records);
}

class KafkaSinkTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new MockCluster({"alo:3", "sinkerr:1", "txn:1", "txn-restore:1", "txn-fence:1",
                                "txn-job:2", "alo-linger:1", "alo-ckpt:2"});
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(cluster_->ok()) << "mock cluster did not start"; }

  KafkaSinkOptions TxnOptions(const std::string& topic, std::vector<std::string>* events) {
    KafkaSinkOptions o{.bootstrap_servers = cluster_->bootstrap(), .topic = topic};
    o.delivery = KafkaDeliveryGuarantee::kExactlyOnce;
    o.transactional_id_prefix = absl::StrCat("sluice-test-", topic);
    o.transaction_timeout = absl::Seconds(20);
    o.flush_timeout = absl::Seconds(10);
    o.on_transaction_event = [events](std::string_view e) { events->emplace_back(e); };
    return o;
  }

  static MockCluster* cluster_;
};
MockCluster* KafkaSinkTest::cluster_ = nullptr;

// A job writes 3000 keyed records at parallelism 2; a consumer reads back exactly those.
TEST_F(KafkaSinkTest, AtLeastOnceJobDeliversEveryRecord) {
  std::vector<std::string> values;
  for (int i = 0; i < 3000; ++i) values.push_back(absl::StrCat("v", i));
  RuntimeOptions options;
  options.parallelism = 2;
  StreamEnvironment env(options);
  env.FromSource(CollectionSource<std::string>(values))
      .Rebalance()
      .SinkTo(MakeKafkaSink<std::string>(
          {.bootstrap_servers = cluster_->bootstrap(), .topic = "alo"},
          [](const std::string& s) { return s; },
          [](const std::string& s) { return absl::StrCat("key-", s); }));
  absl::Status status = env.Execute("kafka-sink");
  ASSERT_TRUE(status.ok()) << status;
  std::vector<Consumed> read = ReadTopic(cluster_->bootstrap(), "alo", values.size());
  EXPECT_EQ(Sorted(Values(read)), Sorted(values));
  for (const Consumed& c : read) ASSERT_EQ(c.key, "key-" + c.value);
}

// A source of "r<i>" whose records the test releases in steps; never ends. Remembers how many
// records it had emitted at each checkpoint barrier (its SnapshotState).
class ReleasedSource final : public Source<std::string> {
 public:
  struct Shared {
    std::atomic<int64_t> released{0};
    std::atomic<int64_t> emitted{0};
    std::mutex mu;
    std::map<int64_t, int64_t> emitted_at_barrier;  // checkpoint id → records before its barrier
  };
  explicit ReleasedSource(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
  bool IsBounded() const override { return false; }
  int MaxParallelism() const override { return 1; }
  std::string Describe() const override { return "released"; }
  absl::StatusOr<std::unique_ptr<SourceReader<std::string>>> CreateReader(
      const SourceContext&) override {
    return std::unique_ptr<SourceReader<std::string>>(new Reader(shared_));
  }

 private:
  class Reader final : public SourceReader<std::string> {
   public:
    explicit Reader(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
    absl::StatusOr<PollResult> PollNext(Collector<std::string>& out, int max_records) override {
      const int64_t limit = std::min(shared_->released.load(), next_ + max_records);
      if (next_ >= limit) return PollResult::NothingUntil(absl::Milliseconds(2));
      while (next_ < limit) out.Collect(absl::StrCat("r", next_++));
      shared_->emitted.store(next_);
      return PollResult::More();
    }
    absl::StatusOr<std::string> SnapshotState(int64_t id) override {
      std::lock_guard<std::mutex> lock(shared_->mu);
      shared_->emitted_at_barrier[id] = next_;
      return absl::StrCat(next_);
    }
    absl::Status RestoreState(std::string_view state) override {
      if (!absl::SimpleAtoi(absl::string_view(state.data(), state.size()), &next_))
        return absl::DataLossError("bad position");
      return absl::OkStatus();
    }

   private:
    std::shared_ptr<Shared> shared_;
    int64_t next_ = 0;
  };
  std::shared_ptr<Shared> shared_;
};

std::vector<std::string> Released(int64_t n) {
  std::vector<std::string> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(absl::StrCat("r", i));
  return v;
}

// At-least-once with a linger far longer than the test: librdkafka sends nothing on its own, only
// the flush at the checkpoint barrier makes records visible. First shown on a writer (nothing
// readable before SnapshotState, everything after it), then in a running job with periodic
// checkpoints: once a checkpoint completed, every record the source emitted before that
// checkpoint's barrier is in the topic (exactly those records, each once: nothing else was
// released), while the job still runs.
TEST_F(KafkaSinkTest, AtLeastOnceSinkFlushesAtTheCheckpointBarrier) {
  const std::map<std::string, std::string> linger = {{"linger.ms", "60000"},
                                                     {"batch.num.messages", "100000"}};
  {
    KafkaSink<std::string> sink(
        {.bootstrap_servers = cluster_->bootstrap(), .topic = "alo-linger", .properties = linger});
    auto w = MakeWriter(sink);
    ASSERT_NE(w, nullptr);
    ASSERT_TRUE(WriteAll(*w, {"l1", "l2", "l3"}).ok());
    EXPECT_TRUE(ReadTopic(cluster_->bootstrap(), "alo-linger", 3, absl::Seconds(1)).empty())
        << "records visible before the flush: linger.ms is not in effect";
    ASSERT_TRUE(w->SnapshotState(1).ok());
    EXPECT_EQ(Sorted(Values(ReadTopic(cluster_->bootstrap(), "alo-linger", 3))),
              Sorted({"l1", "l2", "l3"}));
    w->Close();
  }

  auto shared = std::make_shared<ReleasedSource::Shared>();
  connectors_test::TempDir dir;
  RuntimeOptions options;
  options.parallelism = 1;
  options.execution_mode = ExecutionMode::kStreaming;
  options.checkpointing.interval = absl::Milliseconds(100);
  options.checkpointing.directory = dir.Path("checkpoints");
  StreamEnvironment env(options);
  env.FromSource(ReleasedSource(shared))
      .SinkTo(KafkaSink(
          {.bootstrap_servers = cluster_->bootstrap(), .topic = "alo-ckpt", .properties = linger}));
  auto job = env.ExecuteAsync("kafka-alo-checkpoint");
  ASSERT_TRUE(job.ok()) << job.status();
  // Waits for the first checkpoint whose barrier came after `n` records, and its completion.
  auto checkpoint_after = [&](int64_t n) -> int64_t {
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (absl::Now() < deadline) {
      int64_t id = 0;
      {
        std::lock_guard<std::mutex> lock(shared->mu);
        for (const auto& [c, emitted] : shared->emitted_at_barrier) {
          if (emitted >= n) {
            id = c;
            break;
          }
        }
      }
      if (id > 0 && job->LastCompletedCheckpoint() >= id) return id;
      absl::SleepFor(absl::Milliseconds(5));
    }
    ADD_FAILURE() << "no checkpoint after " << n << " records completed";
    return 0;
  };
  for (int64_t n : {100, 250}) {
    shared->released.store(n);
    const int64_t id = checkpoint_after(n);
    ASSERT_GT(id, 0);
    {
      std::lock_guard<std::mutex> lock(shared->mu);
      ASSERT_EQ(shared->emitted_at_barrier[id], n);  // nothing else was released
    }
    EXPECT_EQ(Sorted(Values(ReadTopic(cluster_->bootstrap(), "alo-ckpt", n))), Sorted(Released(n)))
        << "after checkpoint " << id;
    EXPECT_FALSE(job->IsDone());
  }
  job->Cancel();
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
}

// A record the broker rejects for good fails the job with the topic and the error.
TEST_F(KafkaSinkTest, DeliveryErrorFailsTheJobWithAClearStatus) {
  cluster_->InjectErrors(kApiProduce, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, 5);
  StreamEnvironment env;
  env.FromSource(CollectionSource<std::string>({"a", "b", "c"}))
      .SinkTo(KafkaSink({.bootstrap_servers = cluster_->bootstrap(), .topic = "sinkerr"}));
  absl::Status status = env.Execute("kafka-sink-error");
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("topic 'sinkerr'"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("TOPIC_AUTHORIZATION_FAILED"));
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  // Drain what is left of the injected errors so later tests do not see them.
  EXPECT_EQ(cluster_->Command(absl::StrCat("clear ", kApiProduce)), "ok");
}

// One transaction per checkpoint interval: init/begin at the start, pre-commit at the barrier
// (records after it wait), commit and begin when the checkpoint completes, an aborted checkpoint
// extends the open transaction, commit at the end.
TEST_F(KafkaSinkTest, TransactionalProtocolPerCheckpoint) {
  std::vector<std::string> events;
  KafkaSink<std::string> sink(TxnOptions("txn", &events));
  auto w = MakeWriter(sink);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(WriteAll(*w, {"a1", "a2"}).ok());
  ASSERT_TRUE(w->SnapshotState(1).ok());
  ASSERT_TRUE(WriteAll(*w, {"b1"}).ok());  // after the barrier: waits for transaction 2
  ASSERT_TRUE(w->NotifyCheckpointComplete(1).ok());
  ASSERT_TRUE(WriteAll(*w, {"b2"}).ok());
  absl::StatusOr<std::string> s2 = w->SnapshotState(2);  // checkpoint 2 never completes
  ASSERT_TRUE(s2.ok()) << s2.status();
  ASSERT_TRUE(WriteAll(*w, {"c1"}).ok());
  ASSERT_TRUE(w->SnapshotState(3).ok());  // extends the open transaction
  ASSERT_TRUE(w->NotifyCheckpointComplete(3).ok());
  ASSERT_TRUE(WriteAll(*w, {"d1"}).ok());
  ASSERT_TRUE(w->Finish().ok());
  w->Close();
  EXPECT_THAT(events, ElementsAre("init", "begin", "precommit 1", "commit 1", "begin",
                                  "precommit 2", "precommit 3", "commit 3", "begin", "commit end"));
  EXPECT_EQ(Sorted(Values(ReadTopic(cluster_->bootstrap(), "txn", 6))),
            Sorted({"a1", "a2", "b1", "b2", "c1", "d1"}));
}

// Killed between a checkpoint's completion and the Kafka commit: the restored writer's
// init_transactions aborts the pending transaction, the marker group does not hold the checkpoint
// id, so the records kept in the checkpoint state are sent again in a new transaction.
TEST_F(KafkaSinkTest, TransactionalRestoreResendsTheUncommittedTransaction) {
  std::vector<std::string> events;
  KafkaSink<std::string> sink(TxnOptions("txn-restore", &events));
  std::string state;
  {
    auto w = MakeWriter(sink);
    ASSERT_TRUE(WriteAll(*w, {"r1", "r2", "r3"}).ok());
    absl::StatusOr<std::string> s = w->SnapshotState(5);
    ASSERT_TRUE(s.ok()) << s.status();
    state = *s;
    ASSERT_TRUE(WriteAll(*w, {"after"}).ok());  // belongs to no checkpoint: must not come back
    w->Close();                                 // "killed": the commit never happened
  }
  events.clear();
  auto w = MakeWriter(sink);
  ASSERT_TRUE(w->RestoreState({state}).ok());
  ASSERT_TRUE(WriteAll(*w, {"n1"}).ok());
  ASSERT_TRUE(w->Finish().ok());
  w->Close();
  EXPECT_THAT(events, ElementsAre("init", "begin", "recover 5 resent 3", "begin", "commit end"));
  // The mock shows aborted records too (no markers): r1..r3 of the aborted transaction, then the
  // re-sent r1..r3 and n1: 7 records. A real broker's read_committed consumer sees r1..r3, n1 once.
  // "after" was never sent: records after a pre-commit wait for the next transaction.
  std::vector<std::string> read = Values(ReadTopic(cluster_->bootstrap(), "txn-restore", 7));
  EXPECT_EQ(read.size(), 7u);
  EXPECT_EQ(std::count(read.begin(), read.end(), "after"), 0);
  EXPECT_EQ(std::count(read.begin(), read.end(), "r1"), 2);
  EXPECT_EQ(std::count(read.begin(), read.end(), "n1"), 1);
  // A corrupted state is DataLoss, not a crash.
  auto w2 = MakeWriter(sink);
  absl::Status bad = w2->RestoreState({"garbage"});
  EXPECT_EQ(bad.code(), absl::StatusCode::kDataLoss) << bad;
}

// A checkpointing job with the transactional sink: every checkpoint that completes commits its
// transaction, and the records arrive once (no failure here, so nothing is aborted).
TEST_F(KafkaSinkTest, TransactionalSinkInACheckpointingJob) {
  std::mutex mu;
  std::vector<std::string> events;
  KafkaSinkOptions o{.bootstrap_servers = cluster_->bootstrap(), .topic = "txn-job"};
  o.delivery = KafkaDeliveryGuarantee::kExactlyOnce;
  o.transactional_id_prefix = "sluice-test-txn-job";
  o.flush_timeout = absl::Seconds(10);
  o.on_transaction_event = [&mu, &events](std::string_view e) {
    std::lock_guard<std::mutex> lock(mu);
    events.emplace_back(e);
  };
  connectors_test::TempDir dir;
  RuntimeOptions options;
  options.parallelism = 2;
  options.execution_mode = ExecutionMode::kStreaming;
  options.checkpointing.interval = absl::Milliseconds(50);
  options.checkpointing.directory = dir.Path("checkpoints");
  StreamEnvironment env(options);
  env.FromSource(GeneratorSource([](int64_t i) { return absl::StrCat("g", i); },
                                 GeneratorOptions{.count = 4000, .records_per_second = 2000}))
      .SinkTo(KafkaSink(o));
  absl::Status status = env.Execute("kafka-txn-job");
  ASSERT_TRUE(status.ok()) << status;
  std::vector<std::string> expected;
  for (int i = 0; i < 4000; ++i) expected.push_back(absl::StrCat("g", i));
  EXPECT_EQ(Sorted(Values(ReadTopic(cluster_->bootstrap(), "txn-job", expected.size()))),
            Sorted(expected));
  std::lock_guard<std::mutex> lock(mu);
  int commits = 0, precommits = 0, ends = 0;
  for (const std::string& e : events) {
    if (e.rfind("precommit ", 0) == 0) ++precommits;
    if (e.rfind("commit ", 0) == 0 && e != "commit end") ++commits;
    if (e == "commit end") ++ends;
  }
  EXPECT_GE(commits, 1) << ::testing::PrintToString(events);  // 2 s, 50 ms intervals
  EXPECT_GE(precommits, commits);
  EXPECT_EQ(ends, 2);
}

// A fenced producer (another one took its transactional.id) fails with a clear status.
TEST_F(KafkaSinkTest, FencedProducerFailsWithAClearStatus) {
  std::vector<std::string> events;
  KafkaSink<std::string> sink(TxnOptions("txn-fence", &events));
  auto w = MakeWriter(sink);
  ASSERT_TRUE(WriteAll(*w, {"x"}).ok());
  ASSERT_TRUE(w->SnapshotState(1).ok());
  cluster_->InjectErrors(kApiEndTxn, RD_KAFKA_RESP_ERR_PRODUCER_FENCED, 1);
  absl::Status status = w->NotifyCheckpointComplete(1);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("fenced"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("sluice-test-txn-fence-0"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("topic 'txn-fence'"));
  w->Close();
}

TEST_F(KafkaSinkTest, OptionsAreValidated) {
  KafkaSinkOptions o{.bootstrap_servers = "127.0.0.1:1", .topic = "t"};
  o.delivery = KafkaDeliveryGuarantee::kExactlyOnce;
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("transactional_id_prefix"));
  StreamEnvironment env;
  env.FromSource(CollectionSource<std::string>({"a"})).SinkTo(KafkaSink(o));
  absl::Status status = env.Execute("bad");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;

  // Records that could wait in the queue longer than they may live: refused up front.
  KafkaSinkOptions l{.bootstrap_servers = "127.0.0.1:1", .topic = "t"};
  l.properties = {{"linger.ms", "60000"}, {"message.timeout.ms", "30000"}};
  EXPECT_EQ(l.Validate().message(),
            "KafkaSinkOptions.properties: \"linger.ms\" (60000) must be less than "
            "\"message.timeout.ms\" (30000)");
  l.properties = {{"linger.ms", "400000"}};
  EXPECT_EQ(l.Validate().message(),
            "KafkaSinkOptions.properties: \"linger.ms\" (400000) must be less than "
            "\"message.timeout.ms\" (300000)");
  l.properties = {{"linger.ms", "soon"}};
  EXPECT_EQ(l.Validate().message(),
            "KafkaSinkOptions.properties[\"linger.ms\"]: not a number: 'soon'");
  l.properties = {{"linger.ms", "60000"}};
  EXPECT_TRUE(l.Validate().ok());
}

// End-to-end exactly-once against a real broker (read_committed). Skipped unless
// SLUICE_KAFKA_BOOTSTRAP points at one (e.g. 127.0.0.1:9092; a broker with transactions, a
// transaction state log replication factor it can satisfy, and topic auto-creation or the
// permission to create topics).
TEST(KafkaSinkRealBrokerTest, ExactlyOnceAcrossKillsAndRestores) {
  const char* bootstrap = std::getenv("SLUICE_KAFKA_BOOTSTRAP");
  if (bootstrap == nullptr || *bootstrap == '\0') {
    GTEST_SKIP() << "needs a real Kafka broker: set SLUICE_KAFKA_BOOTSTRAP=host:port (the 2.0.2 "
                    "mock cluster writes no transaction markers)";
  }
  const std::string topic = absl::StrCat("sluice-eos-", absl::ToUnixMillis(absl::Now()));
  {
    rd_kafka_t* admin = NewClient(RD_KAFKA_PRODUCER, bootstrap);
    ASSERT_NE(admin, nullptr);
    char err[256];
    rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), 1, 1, err, sizeof(err));
    rd_kafka_queue_t* q = rd_kafka_queue_new(admin);
    rd_kafka_CreateTopics(admin, &nt, 1, nullptr, q);
    rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 20000);
    ASSERT_NE(ev, nullptr) << "CreateTopics timed out";
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_destroy(admin);
  }
  std::vector<std::string> events;
  KafkaSinkOptions o{.bootstrap_servers = bootstrap, .topic = topic};
  o.delivery = KafkaDeliveryGuarantee::kExactlyOnce;
  o.transactional_id_prefix = topic;
  o.on_transaction_event = [&events](std::string_view e) { events.emplace_back(e); };
  KafkaSink<std::string> sink(o);
  std::string state1, state2;
  {
    auto w = MakeWriter(sink);
    ASSERT_TRUE(WriteAll(*w, {"a1", "a2"}).ok());
    state1 = *w->SnapshotState(1);
    ASSERT_TRUE(w->NotifyCheckpointComplete(1).ok());  // committed
    ASSERT_TRUE(WriteAll(*w, {"b1", "b2"}).ok());
    state2 = *w->SnapshotState(2);
    ASSERT_TRUE(WriteAll(*w, {"lost"}).ok());  // after checkpoint 2: the source replays it
    // Killed after checkpoint 2 completed, before its Kafka commit (Close aborts, as
    // init_transactions of the next writer would).
    w->Close();
  }
  {
    // Restored from checkpoint 1 (as if 2 had not completed): transaction 1 committed already.
    events.clear();
    auto w = MakeWriter(sink);
    ASSERT_TRUE(w->RestoreState({state1}).ok());
    w->Close();
    EXPECT_THAT(events, ::testing::Contains("recover 1 committed"));
  }
  {
    events.clear();
    auto w = MakeWriter(sink);
    ASSERT_TRUE(w->RestoreState({state2}).ok());  // resends b1, b2
    ASSERT_TRUE(w->RestoreState({state2}).ok());  // a second restore finds it committed
    ASSERT_TRUE(WriteAll(*w, {"c1"}).ok());
    ASSERT_TRUE(w->Finish().ok());
    w->Close();
    EXPECT_THAT(events, ::testing::Contains("recover 2 resent 2"));
    EXPECT_THAT(events, ::testing::Contains("recover 2 committed"));
  }
  std::vector<Consumed> read =
      ReadTopic(bootstrap, topic, 5, absl::Seconds(20), /*read_committed=*/true, absl::Seconds(2));
  EXPECT_EQ(Sorted(Values(read)), Sorted({"a1", "a2", "b1", "b2", "c1"}));
}

}  // namespace
}  // namespace sluice::kafka_test
