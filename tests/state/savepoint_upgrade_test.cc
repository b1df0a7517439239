// Changing a job between a savepoint and its restore (docs/checkpointing.md "Changing a job"), on
// both backends: operator ids (Uid, UidHash, ids derived from the graph), state that matches no
// operator (refused, or dropped with allow_non_restored_state), and serializer identities (a
// state, key or operator state read with a serializer that does not read what was saved is
// refused; one that declares it reads the old format restores).
#include <sluice/sluice.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "checkpoint/metadata_file.h"
#include "state/gated_source.h"

namespace sluice {
namespace {

using state_test::Feed;
using state_test::GatedSource;
using state_test::WaitFor;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

using Rec = std::pair<std::string, int64_t>;      // key, value
using Counted = std::pair<std::string, int64_t>;  // key, running count

constexpr int kFirst = 50;     // records before the savepoint
constexpr int kRecords = 100;  // in all
constexpr int kKeys = 5;

std::vector<Rec> Records() {
  std::vector<Rec> v;
  for (int i = 0; i < kRecords; ++i) v.emplace_back("k" + std::to_string(i % kKeys), i);
  return v;
}

// Numbers the records of each key in ValueState<C> "count".
template <typename C>
class CountPerKey {
 public:
  void Open(const RuntimeContext& ctx) { count_ = ctx.GetState(ValueStateDescriptor<C>("count")); }
  Counted operator()(const Rec& r) const {
    const C n = count_.Value().value_or(C{}) + 1;
    count_.Update(n);
    return {r.first, static_cast<int64_t>(n)};
  }

 private:
  ValueState<C> count_;
};

// The counts a run that resumes at record kFirst emits: continued, or from scratch.
std::vector<Counted> Continued() {
  std::vector<Counted> v;
  for (int i = kFirst; i < kRecords; ++i)
    v.emplace_back("k" + std::to_string(i % kKeys), i / kKeys + 1);
  return v;
}
std::vector<Counted> FromScratch() {
  std::vector<Counted> v;
  for (int i = kFirst; i < kRecords; ++i) {
    v.emplace_back("k" + std::to_string(i % kKeys), (i - kFirst) / kKeys + 1);
  }
  return v;
}

struct Param {
  StateBackendKind backend;
};

class SavepointUpgradeTest : public state_test::TempDirTest,
                             public ::testing::WithParamInterface<Param> {
 protected:
  RuntimeOptions Options() const {
    RuntimeOptions o;
    o.parallelism = 2;
    o.state_backend = GetParam().backend;
    o.rocksdb.local_dir = dir_ + "/rocksdb";
    return o;
  }

  // Runs `build` over the first kFirst records and stops it with a savepoint; returns its path.
  template <typename Build>
  std::string Savepoint(Build build) {
    feed_ = std::make_shared<Feed<Rec>>(Records());
    StreamEnvironment env(Options());
    CollectSink<Counted> sink;
    build(env, env.FromSource(GatedSource<Rec>(feed_)), sink);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("v1");
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return "";
    feed_->open = kFirst;
    WaitFor([&] { return sink.size() == static_cast<size_t>(kFirst); });
    absl::StatusOr<std::string> path = job->StopWithSavepoint(dir_ + "/savepoint");
    EXPECT_TRUE(path.ok()) << path.status();
    job->Wait().IgnoreError();
    return path.ok() ? *path : "";
  }

  // Restores `savepoint` into `build`, feeds the remaining records and returns how the job ended
  // (the sink's contents in *out).
  template <typename Build>
  absl::Status Resume(const std::string& savepoint, Build build, std::vector<Counted>* out,
                      RuntimeOptions options) {
    options.restore_from = savepoint;
    auto feed = std::make_shared<Feed<Rec>>(Records(), /*finish_at_end=*/true);
    feed->open = kRecords;
    StreamEnvironment env(options);
    CollectSink<Counted> sink;
    build(env, env.FromSource(GatedSource<Rec>(feed)), sink);
    absl::Status status = env.Execute("v2");
    *out = sink.values();
    return status;
  }
  template <typename Build>
  absl::Status Resume(const std::string& savepoint, Build build, std::vector<Counted>* out) {
    return Resume(savepoint, build, out, Options());
  }

  std::shared_ptr<Feed<Rec>> feed_;
};

auto ByKey = [](const Rec& r) { return r.first; };

// v1: source → KeyBy → counting Map → sink, the Map with `uid` unless empty.
auto Version1(std::string uid = "") {
  return [uid](StreamEnvironment&, DataStream<Rec> in, CollectSink<Counted>& sink) {
    DataStream<Counted> counted = in.KeyBy(ByKey).Map(CountPerKey<int64_t>());
    if (!uid.empty()) counted = counted.Uid(uid);
    counted.SinkTo(sink);
  };
}

// v2: a stateless Map inserted after the source, with the same default name as the counter.
template <typename C = int64_t>
auto Version2(std::string uid = "", std::string uid_hash = "") {
  return [uid, uid_hash](StreamEnvironment&, DataStream<Rec> in, CollectSink<Counted>& sink) {
    DataStream<Counted> counted =
        in.Map([](const Rec& r) { return r; }).KeyBy(ByKey).Map(CountPerKey<C>());
    if (!uid.empty()) counted = counted.Uid(uid);
    if (!uid_hash.empty()) counted = counted.UidHash(uid_hash);
    counted.SinkTo(sink);
  };
}

// The issue's report: the inserted Map took the counter's state (same position, same name) and
// the counts restarted, silently. Now the counter's derived id changed: refused, naming it.
TEST_P(SavepointUpgradeTest, AnOperatorInsertedBeforeAStatefulOneWithoutUidIsRefused) {
  const std::string sp = Savepoint(Version1());
  std::vector<Counted> out;
  absl::Status st = Resume(sp, Version2(), &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), HasSubstr("holds state of operator 'Map' (id "));
  EXPECT_THAT(st.message(), HasSubstr("derived from its place in the graph: it had no Uid()"));
  EXPECT_THAT(st.message(), HasSubstr("allow_non_restored_state"));
  EXPECT_TRUE(out.empty());
  // The same job restores (the ids are stable across runs).
  EXPECT_TRUE(Resume(sp, Version1(), &out).ok());
  EXPECT_THAT(out, UnorderedElementsAreArray(Continued()));
}

TEST_P(SavepointUpgradeTest, WithAUidTheStateFindsItsOperatorInAChangedJob) {
  const std::string sp = Savepoint(Version1("counter"));
  std::vector<Counted> out;
  absl::Status st = Resume(sp, Version2("counter"), &out);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_THAT(out, UnorderedElementsAreArray(Continued()));
}

TEST_P(SavepointUpgradeTest, AllowNonRestoredStateDropsStateThatMatchesNoOperator) {
  const std::string sp = Savepoint(Version1("counter"));
  std::vector<Counted> out;
  absl::Status st = Resume(sp, Version2("renamed"), &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), HasSubstr("holds state of operator 'Map' (uid \"counter\") that "
                                      "matches no operator of this job"));
  RuntimeOptions o = Options();
  o.allow_non_restored_state = true;
  std::vector<std::string> warnings;  // the drop is logged (through the log sink)
  SetLogSink([&](const LogRecord& r) { warnings.emplace_back(r.message); });
  st = Resume(sp, Version2("renamed"), &out, o);
  SetLogSink(nullptr);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("dropping the state of operator 'Map' (uid \"counter\") from "
                                     "savepoint "));
  EXPECT_THAT(warnings[0],
              HasSubstr(": it matches no operator of this job (allow_non_restored_state)"));
  EXPECT_THAT(out, UnorderedElementsAreArray(FromScratch()));  // the source resumed at kFirst
}

// State saved under a derived id is adopted with UidHash (the id the refusal names).
TEST_P(SavepointUpgradeTest, UidHashAdoptsStateSavedWithoutUid) {
  const std::string sp = Savepoint(Version1());
  std::vector<Counted> out;
  absl::Status st = Resume(sp, Version2(), &out);
  std::smatch m;
  const std::string message(st.message());
  ASSERT_TRUE(std::regex_search(message, m, std::regex("UidHash\\(\"([0-9a-f]{32})\"\\)")))
      << message;
  st = Resume(sp, Version2("", m[1].str()), &out);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_THAT(out, UnorderedElementsAreArray(Continued()));
}

TEST_P(SavepointUpgradeTest, AValueStateRestoredAsAnotherTypeIsRefused) {
  const std::string sp = Savepoint(Version1("counter"));
  std::vector<Counted> out;
  absl::Status st = Resume(sp, Version2<double>("counter"), &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(),
              HasSubstr("operator 'Map': state 'count' was saved in the format int64 but is "
                        "registered as float64, whose serializer does not read that format"));
  EXPECT_TRUE(out.empty());
}

// A keyed function with keyed state of its own (none registered).
struct Touch {
  void Open(const RuntimeContext&) {}
  Counted operator()(const Rec& r) const { return {r.first, 0}; }
};

TEST_P(SavepointUpgradeTest, AnotherKeyTypeIsRefused) {
  const std::string sp = Savepoint(Version1("counter"));
  std::vector<Counted> out;
  absl::Status st = Resume(
      sp,
      [](StreamEnvironment&, DataStream<Rec> in, CollectSink<Counted>& sink) {
        in.KeyBy([](const Rec& r) { return static_cast<int64_t>(r.first[1] - '0'); })
            .Map(Touch())
            .Uid("counter")
            .SinkTo(sink);
      },
      &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), HasSubstr("operator 'Map': its keys were saved in the format string "
                                      "but the job's key type is int64"));
}

// --- A user type whose serializer changes ---------------------------------------------------------

// The same count in three program versions: version 2 of the format reads version 1 (it says so),
// version 3 does not.
struct TallyV1 {
  int64_t n = 0;
};
struct TallyV2 {
  int64_t n = 0;
};
struct TallyV3 {
  int64_t n = 0;
};

}  // namespace

template <>
struct Serializer<TallyV1> {
  static constexpr std::string_view kName = "Tally";
  static constexpr uint32_t kVersion = 1;
  static void Write(const TallyV1& t, std::string* out) { Serializer<int64_t>::Write(t.n, out); }
  static bool Read(ByteReader& in, TallyV1* t) { return Serializer<int64_t>::Read(in, &t->n); }
};
template <>
struct Serializer<TallyV2> {
  static constexpr std::string_view kName = "Tally";
  static constexpr uint32_t kVersion = 2;
  static bool ReadsFormat(std::string_view name, uint32_t version) {
    return name == "Tally" && (version == 1 || version == 2);
  }
  static void Write(const TallyV2& t, std::string* out) { Serializer<int64_t>::Write(t.n, out); }
  static bool Read(ByteReader& in, TallyV2* t) { return Serializer<int64_t>::Read(in, &t->n); }
};
template <>
struct Serializer<TallyV3> {
  static constexpr std::string_view kName = "Tally";
  static constexpr uint32_t kVersion = 3;
  static void Write(const TallyV3& t, std::string* out) { Serializer<int64_t>::Write(t.n, out); }
  static bool Read(ByteReader& in, TallyV3* t) { return Serializer<int64_t>::Read(in, &t->n); }
};

namespace {

template <typename T>
class TallyPerKey {
 public:
  void Open(const RuntimeContext& ctx) {
    tallies_ = ctx.GetListState(ListStateDescriptor<T>("tallies"));
  }
  Counted operator()(const Rec& r) const {
    std::vector<T> t = tallies_.Get();
    if (t.empty()) t.push_back(T{});
    ++t[0].n;
    tallies_.Update(t);
    return {r.first, t[0].n};
  }

 private:
  ListState<T> tallies_;
};

template <typename T>
auto TallyJob() {
  return [](StreamEnvironment&, DataStream<Rec> in, CollectSink<Counted>& sink) {
    in.KeyBy(ByKey).Map(TallyPerKey<T>()).Uid("tally").SinkTo(sink);
  };
}

TEST_P(SavepointUpgradeTest, ASerializerThatDeclaresTheOldFormatReadsIt) {
  const std::string sp = Savepoint(TallyJob<TallyV1>());
  std::vector<Counted> out;
  absl::Status st = Resume(sp, TallyJob<TallyV2>(), &out);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_THAT(out, UnorderedElementsAreArray(Continued()));

  st = Resume(sp, TallyJob<TallyV3>(), &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), HasSubstr("operator 'Map': state 'tallies' was saved in the format "
                                      "Tally@1 but is registered as Tally@3"));
}

// --- Operator state -------------------------------------------------------------------------------

// Counts all records of its subtask in operator list state "seen" of T.
template <typename T>
class SeenSoFar {
 public:
  void Open(const RuntimeContext& ctx) {
    seen_ = ctx.GetOperatorListState(ListStateDescriptor<T>("seen"));
  }
  Counted operator()(const Rec& r) const {
    seen_.Add(T{});
    return {r.first, 0};
  }

 private:
  ListState<T> seen_;
};

template <typename T>
auto SeenJob() {
  return [](StreamEnvironment&, DataStream<Rec> in, CollectSink<Counted>& sink) {
    in.Map(SeenSoFar<T>()).Uid("seen").SinkTo(sink);
  };
}

TEST_P(SavepointUpgradeTest, OperatorStateRestoredAsAnotherTypeIsRefused) {
  const std::string sp = Savepoint(SeenJob<int64_t>());
  std::vector<Counted> out;
  ASSERT_TRUE(Resume(sp, SeenJob<int64_t>(), &out).ok());
  absl::Status st = Resume(sp, SeenJob<std::string>(), &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), HasSubstr("'seen' was saved in the format int64 but is registered as "
                                      "string, whose serializer does not read that format"));
}

// --- Window contents ------------------------------------------------------------------------------

// Sums per key in 1 s event-time windows (shared slices); V is the sum's type.
template <typename V>
auto WindowJob() {
  return [](StreamEnvironment&, DataStream<Rec> in, CollectSink<Counted>& sink) {
    in.Map(
          [](const Rec& r) { return std::pair<std::string, V>(r.first, static_cast<V>(r.second)); })
        .AssignTimestampsAndWatermarks(
            WatermarkStrategy<std::pair<std::string, V>>::ForMonotonousTimestamps()
                .WithTimestampAssigner(
                    [](const std::pair<std::string, V>&) { return Timestamp{0}; }))
        .KeyBy([](const std::pair<std::string, V>& p) { return p.first; })
        .Window(TumblingEventTimeWindows::Of(absl::Seconds(1)))
        .Reduce([](const std::pair<std::string, V>& a, const std::pair<std::string, V>& b) {
          return std::pair<std::string, V>(a.first, a.second + b.second);
        })
        .Uid("sums")
        .Map([](const std::pair<std::string, V>& p) {
          return Counted{p.first, static_cast<int64_t>(p.second)};
        })
        .SinkTo(sink);
  };
}

// The open window's sums were saved as (string, int64) pairs: a job summing doubles is refused.
TEST_P(SavepointUpgradeTest, WindowContentsOfAnotherTypeAreRefused) {
  feed_ = std::make_shared<Feed<Rec>>(Records());
  std::string sp;
  {
    StreamEnvironment env(Options());
    CollectSink<Counted> sink;
    WindowJob<int64_t>()(env, env.FromSource(GatedSource<Rec>(feed_)), sink);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("v1");
    ASSERT_TRUE(job.ok()) << job.status();
    feed_->open = kFirst;
    absl::SleepFor(absl::Milliseconds(50));
    absl::StatusOr<std::string> path = job->StopWithSavepoint(dir_ + "/savepoint");
    ASSERT_TRUE(path.ok()) << path.status();
    job->Wait().IgnoreError();
    EXPECT_EQ(sink.size(), 0u);  // the window at 0 is still open
    sp = *path;
  }
  std::vector<Counted> out;
  absl::Status st = Resume(sp, WindowJob<int64_t>(), &out);
  ASSERT_TRUE(st.ok()) << st;
  std::vector<Counted> sums;  // every record is at time 0: one window per key, all records in it
  for (int k = 0; k < kKeys; ++k) {
    int64_t sum = 0;
    for (int i = k; i < kRecords; i += kKeys) sum += i;
    sums.emplace_back("k" + std::to_string(k), sum);
  }
  EXPECT_THAT(out, UnorderedElementsAreArray(sums));
  st = Resume(sp, WindowJob<double>(), &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), HasSubstr("operator 'Window': its state '"));
  EXPECT_THAT(st.message(), HasSubstr("was saved in the format pair<string,int64> but the operator "
                                      "now keeps pair<string,float64>"));
}

// --- Savepoints of an older Sluice ----------------------------------------------------------------

// Before format 4, ids were "node-<graph position>" and a state went to the operator at that
// position if it had the same name: such a savepoint still restores into the same job, and is
// refused (not given to another operator) when the operator at that position is another one.
TEST_P(SavepointUpgradeTest, AFormat3SavepointMatchesByPositionAndName) {
  const std::string sp = Savepoint(Version1());
  const std::string meta_path = sp + "/_metadata";
  std::string bytes;
  {
    std::ifstream in(meta_path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    bytes = ss.str();
  }
  absl::StatusOr<checkpoint::CheckpointMetadata> md = internal::DecodeMetadataFile(bytes, sp);
  ASSERT_TRUE(md.ok()) << md.status();
  md->set_format_version(3);
  for (int i = 0; i < md->operators_size(); ++i) {
    md->mutable_operators(i)->set_operator_id("node-" + std::to_string(i));  // graph order
    md->mutable_operators(i)->clear_uid();
  }
  {
    std::ofstream out(meta_path, std::ios::binary | std::ios::trunc);
    out << internal::EncodeMetadataFile(*md);
  }
  std::vector<Counted> out;
  absl::Status st = Resume(sp, Version1(), &out);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_THAT(out, UnorderedElementsAreArray(Continued()));
  // An operator of another name at the counter's position: refused, naming the old id.
  st = Resume(
      sp,
      [](StreamEnvironment&, DataStream<Rec> in, CollectSink<Counted>& sink) {
        in.Map([](const Rec& r) { return r; })
            .Name("identity")
            .KeyBy(ByKey)
            .Map(CountPerKey<int64_t>())
            .SinkTo(sink);
      },
      &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), HasSubstr("holds state of operator 'Map' (node-1: a savepoint of an "
                                      "older Sluice, matched by graph position and name)"));
}

INSTANTIATE_TEST_SUITE_P(Backends, SavepointUpgradeTest,
                         ::testing::Values(Param{StateBackendKind::kHashMap},
                                           Param{StateBackendKind::kRocksDb}),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return std::string(StateBackendName(info.param.backend));
                         });

// Two operators with one uid: refused before anything runs.
TEST(OperatorUidTest, AUidNamesOneOperator) {
  StreamEnvironment env;
  CollectSink<int64_t> sink;
  env.FromSequence(1, 3)
      .Map([](int64_t x) { return x; })
      .Name("first")
      .Uid("same")
      .Map([](int64_t x) { return x; })
      .Name("second")
      .Uid("same")
      .SinkTo(sink);
  absl::Status st = env.Execute("dup");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(st.message(),
            "Uid(\"same\") is set on operator 'first' and on operator 'second': a uid names one "
            "operator (it keys the operator's state in savepoints)");
}

TEST(OperatorUidTest, AnEmptyUidOrABadUidHashIsRefused) {
  {
    StreamEnvironment env;
    CollectSink<int64_t> sink;
    env.FromSequence(1, 3).Map([](int64_t x) { return x; }).Uid("").SinkTo(sink);
    absl::Status st = env.Execute("empty");
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_EQ(st.message(), "operator 'Map': Uid(\"\"): a uid must not be empty");
  }
  {
    StreamEnvironment env;
    CollectSink<int64_t> sink;
    env.FromSequence(1, 3).Map([](int64_t x) { return x; }).UidHash("xyz").SinkTo(sink);
    absl::Status st = env.Execute("hash");
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_EQ(st.message(), "operator 'Map': UidHash(\"xyz\"): an operator id is 32 hex digits");
  }
}

}  // namespace
}  // namespace sluice
