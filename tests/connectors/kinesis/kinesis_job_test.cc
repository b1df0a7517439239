// KinesisSource and KinesisSink in Sluice jobs against kinesalite: read → transform → write,
// shard split and merge in the middle of a run, restored positions, throttling and HTTP 500 via a
// fault-injecting proxy, and the errors a job reports.
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

#include <sluice/connectors/kinesis.h>
#include <sluice/sluice.h>

#include "connectors/kinesis/fault_proxy.h"
#include "connectors/kinesis/kinesalite.h"
#include "connectors/kinesis/kinesis_test_util.h"
#include "connectors/test_util.h"
#include "connectors/window_count.h"

namespace sluice::kinesis_test {
namespace {

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

class KinesisJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Kinesalite::Shared().ok()) << Kinesalite::Shared().error();
    client_ = NewClient();
    ASSERT_NE(client_, nullptr);
  }

  KinesisSourceOptions SourceOptions(const std::string& stream) const {
    KinesisSourceOptions o;
    o.connection = Kinesalite::Shared().Connection();
    o.stream_name = stream;
    o.initial_position = KinesisStartingPosition::kTrimHorizon;
    o.poll_interval = absl::Milliseconds(20);
    o.shard_discovery_interval = absl::Milliseconds(200);
    o.is_end_of_stream = [](std::string_view data) { return data == "END"; };
    return o;
  }

  // `n` records "r-<i>" with 17 partition keys.
  static void MakeRecords(int from, int n, std::vector<std::string>& values,
                          std::vector<std::string>& keys) {
    for (int i = from; i < from + n; ++i) {
      values.push_back(absl::StrCat("r-", i));
      keys.push_back(absl::StrCat("k", i % 17));
    }
  }

  std::unique_ptr<KinesisClient> client_;
  connectors_test::TempDir dir_;
};

// 2000 records in a 3-shard stream → parallelism 2: upper-case → a second stream; read back.
TEST_F(KinesisJobTest, ReadsTransformsAndWritesToASecondStream) {
  const std::string in = UniqueStream("in");
  const std::string out = UniqueStream("out");
  CreateStream(*client_, in, 3);
  CreateStream(*client_, out, 2);
  std::vector<std::string> values, keys;
  MakeRecords(0, 2000, values, keys);
  Put(*client_, in, values, keys);
  PutEndMarkers(*client_, in);

  RuntimeOptions options;
  options.parallelism = 2;
  options.checkpointing.interval = absl::Milliseconds(100);
  options.checkpointing.directory = dir_.Path("checkpoints");
  StreamEnvironment env(options);
  KinesisSinkOptions sink_options{.connection = Kinesalite::Shared().Connection(),
                                  .stream_name = out,
                                  .max_batch_records = 100};
  env.FromSource(KinesisSource(SourceOptions(in)))
      .Map([](const std::string& s) { return absl::AsciiStrToUpper(s); })
      .SinkTo(KinesisSink(sink_options, [](const std::string& s) { return s; }));
  absl::Status status = env.Execute("kinesis-copy");
  ASSERT_TRUE(status.ok()) << status;

  std::vector<std::string> expected;
  for (const std::string& v : values) expected.push_back(absl::AsciiStrToUpper(v));
  EXPECT_EQ(Sorted(ReadAll(*client_, out)), Sorted(expected));
}

// A typed source (the deserializer parses the bytes) with per-shard watermarks, and a typed sink.
struct Reading {
  int id = 0;
  std::string text;
};

TEST_F(KinesisJobTest, TypedSourceAndSinkWithPerShardWatermarks) {
  const std::string in = UniqueStream("typed-in");
  const std::string out = UniqueStream("typed-out");
  CreateStream(*client_, in, 2);
  CreateStream(*client_, out, 1);
  std::vector<std::string> values, keys;
  for (int i = 0; i < 300; ++i) {
    values.push_back(absl::StrCat(i, ":v", i));
    keys.push_back(absl::StrCat("k", i % 5));
  }
  Put(*client_, in, values, keys);
  PutEndMarkers(*client_, in, "0:END");

  KinesisSourceOptions so = SourceOptions(in);
  so.is_end_of_stream = [](std::string_view data) { return data == "0:END"; };
  auto parse = [](std::string_view data) {
    std::pair<std::string, std::string> parts =
        absl::StrSplit(absl::string_view(data.data(), data.size()), absl::MaxSplits(':', 1));
    Reading r;
    EXPECT_TRUE(absl::SimpleAtoi(parts.first, &r.id));
    r.text = parts.second;
    return r;
  };
  RuntimeOptions options;
  options.parallelism = 2;
  StreamEnvironment env(options);
  env.FromSource(KinesisSource(so, parse),
                 WatermarkStrategy<Reading>::ForBoundedOutOfOrderness(absl::Seconds(1))
                     .WithIdleness(absl::Seconds(5)))
      .SinkTo(MakeKinesisSink<Reading>(
          {.connection = Kinesalite::Shared().Connection(), .stream_name = out},
          [](const Reading& r) { return absl::StrCat("key", r.id % 7); },
          [](const Reading& r) { return absl::StrCat(r.text, "#", r.id * 2); }));
  absl::Status status = env.Execute("kinesis-typed");
  ASSERT_TRUE(status.ok()) << status;
  std::vector<std::string> expected;
  for (int i = 0; i < 300; ++i) expected.push_back(absl::StrCat("v", i, "#", i * 2));
  EXPECT_EQ(Sorted(ReadAll(*client_, out)), Sorted(expected));
}

// Records are put, shard 0 is split, more are put, two neighbours are merged, more are put —
// while the job runs. Every record arrives once, and per partition key in put order (parents are
// read to SHARD_END before their children).
void SplitAndMerge(KinesisJobTest* test, KinesisClient& client, const KinesisSourceOptions& so,
                   int parallelism, bool check_order) {
  const std::string& stream = so.stream_name;
  RuntimeOptions options;
  options.parallelism = parallelism;
  StreamEnvironment env(options);
  CollectSink<std::string> collected;
  env.FromSource(KinesisSource(so),
                 WatermarkStrategy<std::string>::ForMonotonousTimestamps().WithIdleness(
                     absl::Milliseconds(500)))
      .SinkTo(collected);
  auto job = env.ExecuteAsync("kinesis-split-merge");
  ASSERT_TRUE(job.ok()) << job.status();

  std::vector<std::string> all;
  auto put = [&](int from) {
    std::vector<std::string> values, keys;
    for (int i = from; i < from + 400; ++i) {
      values.push_back(absl::StrCat("k", i % 23, "-", i));
      keys.push_back(absl::StrCat("k", i % 23));
    }
    Put(client, stream, values, keys);
    all.insert(all.end(), values.begin(), values.end());
  };
  put(0);
  // Split shard 0 in the middle of its hash range.
  std::vector<ShardInfo> shards = Shards(client, stream);
  ASSERT_EQ(shards.size(), 2u);
  // Shard 0 covers [0, 2^127): its middle is 2^126.
  absl::Status s =
      client.SplitShard(stream, shards[0].shard_id, "85070591730234615865843651857942052864");
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(client.WaitForActive(stream, absl::Seconds(20)).ok());
  put(400);
  // Merge the upper child of shard 0 with shard 1 (adjacent hash ranges).
  std::string upper_child, shard1 = shards[1].shard_id;
  for (const ShardInfo& info : Shards(client, stream)) {
    if (info.parent_shard_id == shards[0].shard_id &&
        info.starting_hash_key == "85070591730234615865843651857942052864") {
      upper_child = info.shard_id;
    }
  }
  ASSERT_FALSE(upper_child.empty());
  s = client.MergeShards(stream, upper_child, shard1);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(client.WaitForActive(stream, absl::Seconds(20)).ok());
  put(800);
  PutEndMarkers(client, stream);
  EXPECT_EQ(Shards(client, stream).size(), 5u);  // 2 + 2 children + 1 merged

  ASSERT_TRUE(job->WaitFor(absl::Seconds(40))) << "the job did not end";
  absl::Status status = job->Wait();
  ASSERT_TRUE(status.ok()) << status;
  std::vector<std::string> got = collected.values();
  EXPECT_EQ(Sorted(got), Sorted(all));
  if (check_order) {
    std::map<std::string, int> last;  // per key: the last index seen
    for (const std::string& v : got) {
      std::pair<std::string, std::string> kv = absl::StrSplit(v, '-');
      int i = 0;
      ASSERT_TRUE(absl::SimpleAtoi(kv.second, &i));
      auto it = last.find(kv.first);
      if (it != last.end()) {
        EXPECT_LT(it->second, i) << "out of order for key " << kv.first;
      }
      last[kv.first] = i;
    }
  }
  (void)test;
}

TEST_F(KinesisJobTest, SplitAndMergeWhileRunningKeepOrderPerKey) {
  const std::string stream = UniqueStream("split");
  CreateStream(*client_, stream, 2);
  KinesisSourceOptions so = SourceOptions(stream);
  so.records_per_request = 50;  // parents take many calls: children wait through all of them
  SplitAndMerge(this, *client_, so, 1, /*check_order=*/true);
}

TEST_F(KinesisJobTest, SplitAndMergeAtParallelismThreeLoseAndRepeatNothing) {
  const std::string stream = UniqueStream("split3");
  CreateStream(*client_, stream, 2);
  KinesisSourceOptions so = SourceOptions(stream);
  so.records_per_request = 50;
  SplitAndMerge(this, *client_, so, 3, /*check_order=*/false);
}

// The reader core's checkpointed positions: a reader restored from a snapshot continues right
// after the records the first one handed out, shard by shard, including records put meanwhile.
TEST_F(KinesisJobTest, RestoredReaderContinuesAfterTheCheckpointedSequenceNumbers) {
  const std::string stream = UniqueStream("restore");
  CreateStream(*client_, stream, 3);
  std::vector<std::string> values, keys;
  MakeRecords(0, 600, values, keys);
  Put(*client_, stream, values, keys);

  KinesisSourceOptions so = SourceOptions(stream);
  so.is_end_of_stream = nullptr;
  so.records_per_request = 50;
  so.queue_capacity = 100;
  RuntimeContext rc;
  rc.parallelism = 1;
  SourceContext ctx(rc, nullptr);
  auto shared = internal::MakeKinesisSourceShared();
  std::vector<std::string> first;
  std::string state;
  {
    auto core = internal::KinesisReaderCore::Create(so, ctx, shared);
    ASSERT_TRUE(core.ok()) << core.status();
    std::vector<internal::KinesisShardBatch> batches;
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (first.size() < 250 && absl::Now() < deadline) {
      auto r = (*core)->Poll(batches, 40);
      ASSERT_TRUE(r.ok()) << r.status();
      for (auto& b : batches) {
        for (auto& rec : b.records) first.push_back(rec.data);
      }
      if (batches.empty()) absl::SleepFor(absl::Milliseconds(5));
    }
    state = (*core)->Snapshot();
    (*core)->Close();
  }
  ASSERT_GE(first.size(), 250u);
  EXPECT_THAT(state, ::testing::HasSubstr("\tA"));
  // More records while "down".
  std::vector<std::string> more_values, more_keys;
  MakeRecords(600, 200, more_values, more_keys);
  Put(*client_, stream, more_values, more_keys);

  std::vector<std::string> second;
  {
    auto core = internal::KinesisReaderCore::Create(so, ctx, internal::MakeKinesisSourceShared());
    ASSERT_TRUE(core.ok());
    ASSERT_TRUE((*core)->Restore(state).ok());
    std::vector<internal::KinesisShardBatch> batches;
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (first.size() + second.size() < 800 && absl::Now() < deadline) {
      auto r = (*core)->Poll(batches, 100);
      ASSERT_TRUE(r.ok()) << r.status();
      for (auto& b : batches) {
        for (auto& rec : b.records) second.push_back(rec.data);
      }
      if (batches.empty()) absl::SleepFor(absl::Milliseconds(5));
    }
    // Nothing beyond: give the reader a moment to (wrongly) deliver more.
    absl::SleepFor(absl::Milliseconds(200));
    auto r = (*core)->Poll(batches, 1000);
    ASSERT_TRUE(r.ok());
    for (auto& b : batches) {
      for (auto& rec : b.records) second.push_back(rec.data);
    }
    (*core)->Close();
  }
  std::vector<std::string> all = values;
  all.insert(all.end(), more_values.begin(), more_values.end());
  std::vector<std::string> both = first;
  both.insert(both.end(), second.begin(), second.end());
  EXPECT_EQ(Sorted(both), Sorted(all));  // no loss, no duplicate
  EXPECT_EQ(first.size() + second.size(), 800u);
  EXPECT_THAT((*internal::KinesisReaderCore::Create(so, ctx, nullptr))->Restore("garbage"),
              ::testing::Property(&absl::Status::message,
                                  ::testing::HasSubstr("unreadable checkpointed position")));
}

// Every other GetRecords is throttled once, every third GetShardIterator/ListShards answers HTTP
// 500 once, and every PutRecords first answers HTTP 500, then rejects every other record (sent
// again, shrinking): the output is exact.
TEST_F(KinesisJobTest, ThrottlingAndServerErrorsAreRetriedWithExactOutput) {
  const std::string in = UniqueStream("faulty-in");
  const std::string out = UniqueStream("faulty-out");
  CreateStream(*client_, in, 2);
  CreateStream(*client_, out, 1);
  std::vector<std::string> values, keys;
  MakeRecords(0, 1500, values, keys);
  Put(*client_, in, values, keys);
  PutEndMarkers(*client_, in);

  FaultProxy proxy(Kinesalite::Shared().port(), [](const std::string& action, int n, int seen) {
    if (action == "GetRecords" && seen == 0 && n % 2 == 0) return FaultProxy::kThrottle;
    if ((action == "GetShardIterator" || action == "ListShards") && seen == 0 && n % 3 == 0) {
      return FaultProxy::kServerError;
    }
    if (action == "PutRecords" && seen == 0) return FaultProxy::kServerError;
    if (action == "PutRecords" && seen == 1) return FaultProxy::kFailEveryOtherRecord;
    return FaultProxy::kForward;
  });
  KinesisConnectionOptions via_proxy = Kinesalite::Shared().Connection();
  via_proxy.endpoint = proxy.Endpoint();
  KinesisSourceOptions so = SourceOptions(in);
  so.connection = via_proxy;
  so.records_per_request = 200;
  KinesisSinkOptions sink{.connection = via_proxy, .stream_name = out, .max_batch_records = 250};

  RuntimeOptions options;
  options.parallelism = 2;
  StreamEnvironment env(options);
  env.FromSource(KinesisSource(so))
      .Map([](const std::string& s) { return s + "!"; })
      .SinkTo(KinesisSink(sink, [](const std::string& s) { return s; }));
  absl::Status status = env.Execute("kinesis-faults");
  ASSERT_TRUE(status.ok()) << status;
  std::vector<std::string> expected;
  for (const std::string& v : values) expected.push_back(v + "!");
  EXPECT_EQ(Sorted(ReadAll(*client_, out)), Sorted(expected));
  EXPECT_GT(proxy.Faults("GetRecords"), 0);
  EXPECT_GT(proxy.Faults("GetShardIterator"), 0);
  EXPECT_GT(proxy.Faults("PutRecords"), 0);
}

// Throttled beyond max_attempts: the job fails naming the call, the stream, the shard and error.
TEST_F(KinesisJobTest, PersistentThrottlingFailsTheJobWithTheAwsError) {
  const std::string in = UniqueStream("throttled");
  CreateStream(*client_, in, 1);
  FaultProxy proxy(Kinesalite::Shared().port(), [](const std::string& action, int, int) {
    return action == "GetRecords" ? FaultProxy::kThrottle : FaultProxy::kForward;
  });
  KinesisSourceOptions so = SourceOptions(in);
  so.connection.endpoint = proxy.Endpoint();
  so.connection.max_attempts = 3;
  StreamEnvironment env(RuntimeOptions{.parallelism = 1});
  env.FromSource(KinesisSource(so)).SinkTo(CollectSink<std::string>());
  absl::Status status = env.Execute("kinesis-throttled");
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(status.message()),
              ::testing::HasSubstr(absl::StrCat(
                  "Kinesis GetRecords on stream '", in,
                  "' shard 'shardId-000000000000': ProvisionedThroughputExceededException: Rate "
                  "exceeded for shard (injected) (after 3 attempts)")));
}

// PutRecords batches: at most max_batch_records records and max_batch_bytes bytes per call, sent
// when full and at the end of input (counted by a forwarding proxy).
TEST_F(KinesisJobTest, SinkBatchesByRecordsAndBytes) {
  const std::string out = UniqueStream("batches");
  CreateStream(*client_, out, 1);
  FaultProxy proxy(Kinesalite::Shared().port(),
                   [](const std::string&, int, int) { return FaultProxy::kForward; });
  KinesisConnectionOptions via_proxy = Kinesalite::Shared().Connection();
  via_proxy.endpoint = proxy.Endpoint();
  std::vector<std::string> small;
  for (int i = 0; i < 1200; ++i) small.push_back(absl::StrCat("s", i));
  {
    StreamEnvironment env(RuntimeOptions{.parallelism = 1});
    env.FromCollection(small).SinkTo(
        KinesisSink({.connection = via_proxy, .stream_name = out},  // 500 per call by default
                    [](const std::string& s) { return s; }));
    absl::Status status = env.Execute("kinesis-small");
    ASSERT_TRUE(status.ok()) << status;
  }
  EXPECT_EQ(proxy.Requests("PutRecords"), 3);  // 500 + 500 + 200
  // 900 KiB records: five fit under 5 MiB (data plus keys), six do not.
  std::vector<std::string> big;
  for (int i = 0; i < 12; ++i) big.push_back(absl::StrCat(i, ":", std::string(900 << 10, 'b')));
  {
    StreamEnvironment env(RuntimeOptions{.parallelism = 1});
    env.FromCollection(big).SinkTo(
        KinesisSink({.connection = via_proxy, .stream_name = out},
                    [](const std::string& s) { return s.substr(0, s.find(':')); }));
    absl::Status status = env.Execute("kinesis-big");
    ASSERT_TRUE(status.ok()) << status;
  }
  EXPECT_EQ(proxy.Requests("PutRecords"), 3 + 3);  // 5 + 5 + 2
  std::vector<std::string> expected = small;
  expected.insert(expected.end(), big.begin(), big.end());
  EXPECT_EQ(Sorted(ReadAll(*client_, out)), Sorted(expected));
}

// The sink sends its partial batch at every checkpoint: 150 records (under one batch) reach the
// output stream while the job still runs.
TEST_F(KinesisJobTest, SinkFlushesOnCheckpoints) {
  const std::string in = UniqueStream("ckpt-in");
  const std::string out = UniqueStream("ckpt-out");
  CreateStream(*client_, in, 1);
  CreateStream(*client_, out, 1);
  std::vector<std::string> values, keys;
  MakeRecords(0, 150, values, keys);
  Put(*client_, in, values, keys);

  KinesisSourceOptions so = SourceOptions(in);
  so.is_end_of_stream = nullptr;  // runs until cancelled
  RuntimeOptions options;
  options.parallelism = 1;
  options.checkpointing.interval = absl::Milliseconds(100);
  options.checkpointing.directory = dir_.Path("checkpoints");
  StreamEnvironment env(options);
  env.FromSource(KinesisSource(so))
      .SinkTo(KinesisSink({.connection = Kinesalite::Shared().Connection(), .stream_name = out},
                          [](const std::string& s) { return s; }));
  auto job = env.ExecuteAsync("kinesis-checkpoint-flush");
  ASSERT_TRUE(job.ok()) << job.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (ReadAll(*client_, out).size() < values.size() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(ReadAll(*client_, out).size(), values.size());
  EXPECT_FALSE(job->IsDone());
  EXPECT_GT(job->LastCompletedCheckpoint(), 0);
  job->Cancel();
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(Sorted(ReadAll(*client_, out)), Sorted(values));
}

using connectors_test::Count;
using connectors_test::CountPerSecond;

// Records "<event time ms>": monotonous event time read from the data.
WatermarkStrategy<std::string> EventTimeFromData() {
  return WatermarkStrategy<std::string>::ForMonotonousTimestamps().WithTimestampAssigner(
      [](const std::string& s) {
        int64_t t = 0;
        EXPECT_TRUE(absl::SimpleAtoi(s, &t));
        return t;
      });
}

// Per-shard watermarks with idleness: shard 1 has one early record, then stays quiet; shard 0 goes
// on. Event-time windows fire while the job runs only because shard 1 becomes idle and stops
// holding the watermark back (without WithIdleness they would wait for the end of input).
TEST_F(KinesisJobTest, AnIdleShardDoesNotHoldTheWatermarkBack) {
  const std::string stream = UniqueStream("idle");
  CreateStream(*client_, stream, 2);
  std::vector<ShardInfo> shards = Shards(*client_, stream);
  ASSERT_EQ(shards.size(), 2u);
  // "<event time ms>" records; explicit hash keys pick the shard.
  auto put = [&](const ShardInfo& shard, int64_t time) {
    auto r = client_->PutRecords(stream, {{absl::StrCat(time), "k", shard.starting_hash_key}});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ((*r)[0].shard_id, shard.shard_id);
  };
  put(shards[1], 500);
  for (int64_t t = 0; t < 10000; t += 100) put(shards[0], t);

  KinesisSourceOptions so = SourceOptions(stream);
  so.is_end_of_stream = nullptr;  // runs until cancelled
  StreamEnvironment env(RuntimeOptions{.parallelism = 1});
  CollectSink<Count> windows;
  CountPerSecond(
      env.FromSource(KinesisSource(so), EventTimeFromData().WithIdleness(absl::Milliseconds(300))),
      windows);
  auto job = env.ExecuteAsync("kinesis-idle");
  ASSERT_TRUE(job.ok()) << job.status();
  // Shard 0 stays active (a record every 50 ms, event times from 20 s on); shard 1 is quiet.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  for (int64_t t = 20000; windows.size() < 10 && absl::Now() < deadline; t += 10) {
    put(shards[0], t);
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(windows.size(), 10u) << "windows fired";
  job->Cancel();
  (void)job->Wait();
  std::vector<std::pair<int64_t, int64_t>> got = windows.values();
  std::sort(got.begin(), got.end());
  std::vector<std::pair<int64_t, int64_t>> expected;
  for (int64_t w = 0; w < 10000; w += 1000) expected.emplace_back(w, w == 0 ? 11 : 10);
  EXPECT_EQ(got, expected);  // the windows from 20 s on are still open
}

// An empty shard holds the watermark back from the start, before its first record (as in Flink):
// without idleness, shard 0's records fire no window while shard 1 has none; shard 1's later
// record lands in its window (not late), and once shard 1 moves on the windows fire exactly.
TEST_F(KinesisJobTest, AnEmptyShardHoldsTheWatermarkUntilItsFirstRecord) {
  const std::string stream = UniqueStream("holds");
  CreateStream(*client_, stream, 2);
  std::vector<ShardInfo> shards = Shards(*client_, stream);
  ASSERT_EQ(shards.size(), 2u);
  auto put = [&](const ShardInfo& shard, int64_t time) {
    auto r = client_->PutRecords(stream, {{absl::StrCat(time), "k", shard.starting_hash_key}});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ((*r)[0].shard_id, shard.shard_id);
  };
  for (int64_t t = 1000; t < 5000; t += 100) put(shards[0], t);

  KinesisSourceOptions so = SourceOptions(stream);
  so.is_end_of_stream = nullptr;  // runs until cancelled
  StreamEnvironment env(RuntimeOptions{.parallelism = 1});
  CollectSink<std::string> raw;
  CollectSink<Count> windows;
  auto stream_of = env.FromSource(KinesisSource(so), EventTimeFromData());
  stream_of.SinkTo(raw);
  CountPerSecond(stream_of, windows);
  auto job = env.ExecuteAsync("kinesis-holds");
  ASSERT_TRUE(job.ok()) << job.status();
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (raw.size() < 40 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(raw.size(), 40u);
  absl::SleepFor(absl::Milliseconds(500));  // many fetches of the empty shard
  EXPECT_EQ(windows.size(), 0u) << "a window fired while shard 1 had no record";
  put(shards[1], 1500);  // in window 1000: not late
  put(shards[1], 5000);  // the watermark becomes min(4900, 5000) - 1: windows 1000-3000 fire
  deadline = absl::Now() + absl::Seconds(30);
  while (windows.size() < 3 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  absl::SleepFor(absl::Milliseconds(300));  // time for a wrong extra window to show
  std::vector<std::pair<int64_t, int64_t>> got = windows.values();
  job->Cancel();
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::pair<int64_t, int64_t>>{{1000, 11}, {2000, 10}, {3000, 10}}));
}

// A job at parallelism 2 taken down with a savepoint resumes at parallelism 3, then 1: every
// shard continues exactly after the savepoint's sequence number, whichever subtask owns it now.
TEST_F(KinesisJobTest, ResumesAtAnotherParallelismFromASavepoint) {
  const std::string stream = UniqueStream("rescale");
  CreateStream(*client_, stream, 4);
  auto phase = [&](int from, int n) {
    std::vector<std::string> values, keys;
    MakeRecords(from, n, values, keys);
    Put(*client_, stream, values, keys);
    return values;
  };
  // Runs at `parallelism` (restored from `restore` unless empty) until `expected` arrived; then
  // takes a savepoint and cancels, or (bounded: END markers) runs to the end. Returns what the
  // job read (sorted) and the savepoint.
  auto run = [&](int parallelism, const std::string& restore, size_t expected,
                 const std::string& savepoint) {
    RuntimeOptions options{.parallelism = parallelism};
    options.restore_from = restore;
    StreamEnvironment env(options);
    CollectSink<std::string> sink;
    KinesisSourceOptions so = SourceOptions(stream);
    env.FromSource(KinesisSource(so)).SinkTo(sink);
    auto job = env.ExecuteAsync(absl::StrCat("kinesis-rescale-", parallelism));
    EXPECT_TRUE(job.ok()) << job.status();
    std::string path;
    if (!job.ok()) return std::make_pair(std::vector<std::string>(), path);
    if (savepoint.empty()) {
      EXPECT_TRUE(job->Wait().ok());
    } else {
      const absl::Time deadline = absl::Now() + absl::Seconds(30);
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
  std::vector<std::string> first = phase(0, 120);
  auto [got1, sp1] = run(2, "", first.size(), dir_.Path("sp1"));
  EXPECT_EQ(got1, Sorted(first));
  ASSERT_FALSE(sp1.empty());
  std::vector<std::string> second = phase(120, 120);
  auto [got2, sp2] = run(3, sp1, second.size(), dir_.Path("sp2"));
  EXPECT_EQ(got2, Sorted(second));
  ASSERT_FALSE(sp2.empty());
  std::vector<std::string> third = phase(240, 120);
  PutEndMarkers(*client_, stream);
  auto [got3, unused] = run(1, sp2, third.size(), "");
  EXPECT_EQ(got3, Sorted(third));
}

// A server that accepts and never answers: cancelling the job interrupts the reader's pending
// HTTP request at once (its timeout is a minute).
TEST_F(KinesisJobTest, CancelStopsAReaderBlockedInAnHttpRequestPromptly) {
  connectors_test::LocalServer silent;
  KinesisSourceOptions so = SourceOptions("s");
  so.connection.endpoint = absl::StrCat("http://127.0.0.1:", silent.port());
  so.connection.request_timeout = absl::Minutes(1);
  StreamEnvironment env(RuntimeOptions{.parallelism = 1});
  env.FromSource(KinesisSource(so)).SinkTo(CollectSink<std::string>());
  auto job = env.ExecuteAsync("kinesis-cancel");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(silent.Accept(absl::Seconds(20)));  // the reader's ListShards is in flight
  const absl::Time start = absl::Now();
  job->Cancel();
  ASSERT_TRUE(job->WaitFor(absl::Seconds(20)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
}

TEST_F(KinesisJobTest, UnknownStreamAndBadEndpointFailWithExactMessages) {
  {
    StreamEnvironment env(RuntimeOptions{.parallelism = 1});
    env.FromSource(KinesisSource(SourceOptions("no-such-stream")))
        .SinkTo(CollectSink<std::string>());
    absl::Status status = env.Execute("kinesis-unknown");
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(std::string(status.message()),
                ::testing::HasSubstr(
                    "Kinesis ListShards on stream 'no-such-stream': ResourceNotFoundException: "
                    "Stream no-such-stream under account 000000000000 not found."));
  }
  {
    const int port = connectors_test::UnusedPort();
    KinesisSourceOptions so = SourceOptions("s");
    so.connection.endpoint = absl::StrCat("http://127.0.0.1:", port);
    so.connection.max_attempts = 2;
    StreamEnvironment env(RuntimeOptions{.parallelism = 1});
    env.FromSource(KinesisSource(so)).SinkTo(CollectSink<std::string>());
    absl::Status status = env.Execute("kinesis-bad-endpoint");
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(status.message()),
                ::testing::HasSubstr(
                    absl::StrCat("Kinesis ListShards on stream 's': http://127.0.0.1:", port,
                                 ": connecting failed: Connection refused (after 2 attempts)")));
  }
  {
    // The sink: an unknown stream, and a record over 1 MiB.
    StreamEnvironment env(RuntimeOptions{.parallelism = 1});
    env.FromCollection(std::vector<std::string>{"a"})
        .SinkTo(KinesisSink(KinesisSinkOptions{.connection = Kinesalite::Shared().Connection(),
                                               .stream_name = "no-such-out"},
                            [](const std::string&) { return std::string("k"); }));
    absl::Status status = env.Execute("kinesis-unknown-out");
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(std::string(status.message()),
                ::testing::HasSubstr("Kinesis PutRecords on stream 'no-such-out': "
                                     "ResourceNotFoundException: "));
  }
  {
    StreamEnvironment env(RuntimeOptions{.parallelism = 1});
    env.FromCollection(std::vector<std::string>{std::string((1 << 20) + 1, 'x')})
        .SinkTo(KinesisSink(KinesisSinkOptions{.connection = Kinesalite::Shared().Connection(),
                                               .stream_name = "big"},
                            [](const std::string&) { return std::string("k"); }));
    absl::Status status = env.Execute("kinesis-too-big");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()),
                ::testing::HasSubstr("Kinesis sink of stream 'big': a record of 1048578 bytes "
                                     "(data plus partition key) exceeds the 1 MiB limit"));
  }
  {
    StreamEnvironment env(RuntimeOptions{.parallelism = 1});
    KinesisSourceOptions so = SourceOptions("");
    env.FromSource(KinesisSource(so)).SinkTo(CollectSink<std::string>());
    EXPECT_EQ(env.Execute("kinesis-no-stream").message(),
              "Source: Kinesis : KinesisSourceOptions.stream_name is required");
  }
}

}  // namespace
}  // namespace sluice::kinesis_test
