// Operator (non-keyed) state: list state with even-split redistribution and union list state,
// restored from savepoints at the same and at other parallelisms; misuse.
#include <sluice/sluice.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
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
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

// What the subtasks of a Buffer saw when they opened: the restored list per subtask.
struct Observed {
  std::mutex mu;
  std::map<int, std::vector<int64_t>> restored;  // by subtask, only when restored
  int opened = 0;
  int restored_flags = 0;
};

// A Map (identity) with operator list state that the function fills from its members at each
// checkpoint (the SnapshotState hook): a fresh subtask i holds (i+1)*100 + [0, i+3).
class Buffer {
 public:
  Buffer(std::shared_ptr<Observed> observed, bool union_state)
      : observed_(std::move(observed)), union_(union_state) {}

  void Open(const RuntimeContext& ctx) {
    const ListStateDescriptor<int64_t> desc("buffer");
    state_ = union_ ? ctx.GetUnionListState(desc) : ctx.GetOperatorListState(desc);
    std::lock_guard<std::mutex> lock(observed_->mu);
    ++observed_->opened;
    if (ctx.IsRestored()) {
      ++observed_->restored_flags;
      elements_ = state_.Get();
      observed_->restored[ctx.subtask_index] = elements_;
    } else {
      for (int k = 0; k < ctx.subtask_index + 3; ++k) {
        elements_.push_back((ctx.subtask_index + 1) * 100 + k);
      }
    }
  }
  int64_t operator()(int64_t v) const { return v; }
  void SnapshotState(int64_t) { state_.Update(elements_); }

 private:
  std::shared_ptr<Observed> observed_;
  bool union_;
  ListState<int64_t> state_;
  std::vector<int64_t> elements_;
};

class OperatorStateTest : public state_test::TempDirTest {
 protected:
  RuntimeOptions Options(int parallelism) const {
    RuntimeOptions o;
    o.parallelism = parallelism;
    o.execution_mode = ExecutionMode::kStreaming;
    o.checkpointing.interval = absl::ZeroDuration();  // savepoints only
    o.checkpointing.directory = dir_ + "/checkpoints";
    return o;
  }

  // Runs source -> Map(Buffer) at `parallelism` and stops it with a savepoint.
  void RunAndSavepoint(int parallelism, bool union_state) {
    auto feed = std::make_shared<Feed<int64_t>>(std::vector<int64_t>{1, 2, 3, 4, 5});
    auto observed = std::make_shared<Observed>();
    StreamEnvironment env(Options(parallelism));
    CollectSink<int64_t> sink;
    env.FromSource(GatedSource<int64_t>(feed))
        .Rebalance()
        .Map(Buffer(observed, union_state))
        .SinkTo(sink);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("first");
    ASSERT_TRUE(job.ok()) << job.status();
    feed->open = 5;
    WaitFor([&] { return sink.size() == 5; });
    absl::StatusOr<std::string> path = job->StopWithSavepoint(savepoint());
    ASSERT_TRUE(path.ok()) << path.status();
    job->Wait().IgnoreError();
    std::lock_guard<std::mutex> lock(observed->mu);
    EXPECT_EQ(observed->restored_flags, 0);
  }

  // Restores the same job at `parallelism` and returns what each subtask restored.
  std::map<int, std::vector<int64_t>> Restore(int parallelism, bool union_state) {
    auto feed = std::make_shared<Feed<int64_t>>(std::vector<int64_t>{1, 2, 3, 4, 5});
    auto observed = std::make_shared<Observed>();
    RuntimeOptions o = Options(parallelism);
    o.restore_from = savepoint();
    StreamEnvironment env(o);
    CollectSink<int64_t> sink;
    env.FromSource(GatedSource<int64_t>(feed))
        .Rebalance()
        .Map(Buffer(observed, union_state))
        .SinkTo(sink);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("resumed");
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return {};
    WaitFor([&] {
      std::lock_guard<std::mutex> lock(observed->mu);
      return observed->opened == parallelism;
    });
    job->Cancel();
    job->Wait().IgnoreError();
    std::lock_guard<std::mutex> lock(observed->mu);
    EXPECT_EQ(observed->restored_flags, parallelism);
    return observed->restored;
  }

  std::string savepoint() const { return dir_ + "/savepoint"; }
};

TEST_F(OperatorStateTest, ListStateRestoresPerSubtaskAtTheSameParallelism) {
  RunAndSavepoint(2, false);
  std::map<int, std::vector<int64_t>> restored = Restore(2, false);
  EXPECT_EQ(restored,
            (std::map<int, std::vector<int64_t>>{{0, {100, 101, 102}}, {1, {200, 201, 202, 203}}}));
}

// Flink's even split: all elements of all old subtasks, concatenated by old subtask index, cut
// into contiguous chunks; the first (total % parallelism) chunks get one more element.
TEST_F(OperatorStateTest, ListStateSplitsEvenlyWhenScalingOutTwoToThree) {
  RunAndSavepoint(2, false);  // 7 elements: {100, 101, 102}, {200, 201, 202, 203}
  std::map<int, std::vector<int64_t>> restored = Restore(3, false);
  EXPECT_EQ(restored, (std::map<int, std::vector<int64_t>>{
                          {0, {100, 101, 102}}, {1, {200, 201}}, {2, {202, 203}}}));
}

TEST_F(OperatorStateTest, ListStateSplitsEvenlyWhenScalingInThreeToTwo) {
  RunAndSavepoint(3, false);  // 12 elements: 3 + 4 + 5
  std::map<int, std::vector<int64_t>> restored = Restore(2, false);
  EXPECT_EQ(restored, (std::map<int, std::vector<int64_t>>{{0, {100, 101, 102, 200, 201, 202}},
                                                           {1, {203, 300, 301, 302, 303, 304}}}));
}

TEST_F(OperatorStateTest, UnionListStateGivesEverySubtaskEveryElement) {
  RunAndSavepoint(2, true);
  const std::vector<int64_t> all = {100, 101, 102, 200, 201, 202, 203};
  std::map<int, std::vector<int64_t>> restored = Restore(3, true);
  EXPECT_EQ(restored, (std::map<int, std::vector<int64_t>>{{0, all}, {1, all}, {2, all}}));
}

// A Process function that adds every record to its list state (no hook): after scaling 2 -> 3
// every record is in exactly one new subtask's list.
class Remember final : public ProcessFunction<int64_t, int64_t> {
 public:
  explicit Remember(std::shared_ptr<Observed> observed) : observed_(std::move(observed)) {}
  void Open(const RuntimeContext& ctx) override {
    seen_ = ctx.GetOperatorListState(ListStateDescriptor<int64_t>("seen"));
    std::lock_guard<std::mutex> lock(observed_->mu);
    ++observed_->opened;
    if (ctx.IsRestored()) observed_->restored[ctx.subtask_index] = seen_.Get();
  }
  void ProcessElement(const int64_t& v, Context&, Collector<int64_t>& out) override {
    seen_.Add(v);
    out.Collect(v);
  }

 private:
  std::shared_ptr<Observed> observed_;
  ListState<int64_t> seen_;
};

TEST_F(OperatorStateTest, RecordsAddedPerRecordAreRedistributedWithoutLoss) {
  std::vector<int64_t> values;
  for (int64_t v = 0; v < 100; ++v) values.push_back(v);
  auto feed = std::make_shared<Feed<int64_t>>(values);
  {
    StreamEnvironment env(Options(2));
    CollectSink<int64_t> sink;
    env.FromSource(GatedSource<int64_t>(feed))
        .Rebalance()
        .Process(Remember(std::make_shared<Observed>()))
        .SinkTo(sink);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("first");
    ASSERT_TRUE(job.ok()) << job.status();
    feed->open = 60;
    WaitFor([&] { return sink.size() == 60; });
    ASSERT_TRUE(job->StopWithSavepoint(savepoint()).ok());
    job->Wait().IgnoreError();
  }
  auto observed = std::make_shared<Observed>();
  RuntimeOptions o = Options(3);
  o.restore_from = savepoint();
  StreamEnvironment env(o);
  CollectSink<int64_t> sink;
  env.FromSource(GatedSource<int64_t>(feed)).Rebalance().Process(Remember(observed)).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("resumed");
  ASSERT_TRUE(job.ok()) << job.status();
  feed->open = 100;
  WaitFor([&] { return sink.size() == 40; });  // the source resumed after record 60
  job->Cancel();
  job->Wait().IgnoreError();
  std::lock_guard<std::mutex> lock(observed->mu);
  ASSERT_EQ(observed->restored.size(), 3u);
  std::vector<int64_t> all;
  for (const auto& [subtask, list] : observed->restored) {
    EXPECT_EQ(list.size(), 20u) << "subtask " << subtask;  // 60 elements over 3 subtasks
    all.insert(all.end(), list.begin(), list.end());
  }
  std::vector<int64_t> expected(values.begin(), values.begin() + 60);
  EXPECT_THAT(all, UnorderedElementsAreArray(expected));
  EXPECT_THAT(sink.values(),
              UnorderedElementsAreArray(std::vector<int64_t>(values.begin() + 60, values.end())));
}

// Operator state in a function of a keyed operator fails the job, naming operator and state.
class KeyedWithOperatorState final : public KeyedProcessFunction<int64_t, int64_t, int64_t> {
 public:
  void Open(const RuntimeContext& ctx) override {
    ctx.GetOperatorListState(ListStateDescriptor<int64_t>("offsets"));
  }
  void ProcessElement(const int64_t& v, Context&, Collector<int64_t>& out) override {
    out.Collect(v);
  }
};

TEST_F(OperatorStateTest, OperatorStateOnAKeyedStreamFailsTheJob) {
  StreamEnvironment env(Options(1));
  CollectSink<int64_t> sink;
  env.FromCollection<int64_t>({1, 2, 3})
      .KeyBy([](int64_t v) { return v; })
      .Process(KeyedWithOperatorState())
      .Name("per-key")
      .SinkTo(sink);
  absl::Status status = env.Execute("misuse");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("operator 'per-key'"));
  EXPECT_THAT(status.message(), HasSubstr("state 'offsets'"));
  EXPECT_THAT(status.message(), HasSubstr("non-keyed"));
}

// One name is one state: asking for it as list and as union list state fails the job.
struct TwoModes {
  void Open(const RuntimeContext& ctx) {
    ctx.GetOperatorListState(ListStateDescriptor<int64_t>("s"));
    ctx.GetUnionListState(ListStateDescriptor<int64_t>("s"));
  }
  int64_t operator()(int64_t v) const { return v; }
};

TEST_F(OperatorStateTest, OneNameRegisteredInTwoModesFailsTheJob) {
  StreamEnvironment env(Options(1));
  CollectSink<int64_t> sink;
  env.FromCollection<int64_t>({1}).Map(TwoModes()).Name("twice").SinkTo(sink);
  absl::Status status = env.Execute("misuse");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("operator 'twice': state 's' is already registered"));
}

// Without checkpoints the state is plain per-subtask memory: a FlatMap keeps a running list.
struct Accumulate {
  void Open(const RuntimeContext& ctx) {
    all_ = ctx.GetOperatorListState(ListStateDescriptor<std::string>("words"));
  }
  void operator()(const std::string& w, Collector<std::string>& out) {
    all_.Add(w);
    std::string joined;
    for (const std::string& s : all_.Get()) joined += s;
    out.Collect(joined);
  }
  ListState<std::string> all_;
};

TEST_F(OperatorStateTest, ListStateHoldsWhatWasAdded) {
  StreamEnvironment env(Options(1));
  CollectSink<std::string> sink;
  env.FromCollection<std::string>({"a", "b", "c"}).FlatMap(Accumulate()).SinkTo(sink);
  ASSERT_TRUE(env.Execute("words").ok());
  EXPECT_THAT(sink.values(), ElementsAre("a", "ab", "abc"));
}

// --- OperatorStateStore, directly ----------------------------------------------------------------

// The operator state of one old subtask holding list state "s" (mode `mode`) with `values`.
std::string OldSubtask(const std::vector<int64_t>& values,
                       internal::OperatorStateMode mode = internal::OperatorStateMode::kSplit) {
  internal::OperatorStateStore store;
  ListState<int64_t> s = store.GetListState(ListStateDescriptor<int64_t>("s"), mode, "op");
  s.Update(values);
  return store.Snapshot("op");
}

std::vector<std::vector<int64_t>> RestoreAll(
    const std::vector<std::string>& old, int parallelism,
    internal::OperatorStateMode mode = internal::OperatorStateMode::kSplit) {
  std::vector<std::vector<int64_t>> result;
  for (int i = 0; i < parallelism; ++i) {
    internal::OperatorStateStore store;
    absl::Status st = store.Restore(old, i, parallelism, "op");
    EXPECT_TRUE(st.ok()) << st;
    result.push_back(store.GetListState(ListStateDescriptor<int64_t>("s"), mode, "op").Get());
  }
  return result;
}

TEST(OperatorStateStoreTest, EvenSplitGivesTheFirstSubtasksTheRemainder) {
  const std::vector<std::string> old = {OldSubtask({1, 2, 3, 4}), OldSubtask({5})};
  EXPECT_EQ(RestoreAll(old, 3), (std::vector<std::vector<int64_t>>{{1, 2}, {3, 4}, {5}}));
  EXPECT_EQ(RestoreAll(old, 1), (std::vector<std::vector<int64_t>>{{1, 2, 3, 4, 5}}));
  // Fewer elements than subtasks: the last subtasks get none.
  EXPECT_EQ(RestoreAll({OldSubtask({7}), OldSubtask({8})}, 4),
            (std::vector<std::vector<int64_t>>{{7}, {8}, {}, {}}));
  // At the same parallelism nothing moves.
  EXPECT_EQ(RestoreAll(old, 2), (std::vector<std::vector<int64_t>>{{1, 2, 3, 4}, {5}}));
}

TEST(OperatorStateStoreTest, AnOldSubtaskWithoutStateContributesNothing) {
  EXPECT_EQ(RestoreAll({OldSubtask({1, 2}), std::string(), OldSubtask({3})}, 2),
            (std::vector<std::vector<int64_t>>{{1, 2}, {3}}));
}

TEST(OperatorStateStoreTest, UnregisteredRestoredStateIsKeptInTheNextSnapshot) {
  internal::OperatorStateStore store;
  ASSERT_TRUE(store.Restore({OldSubtask({4, 5})}, 0, 1, "op").ok());
  const std::string again = store.Snapshot("op");
  EXPECT_EQ(RestoreAll({again}, 1), (std::vector<std::vector<int64_t>>{{4, 5}}));
}

// Version 1 (an older Sluice) has no serializer identities: its states restore unchecked.
TEST(OperatorStateStoreTest, AVersion1StateWithoutFormatsStillRestores) {
  std::string v1;
  v1.push_back(1);              // version
  PutVarint(1, &v1);            // one state
  PutLengthPrefixed("s", &v1);  // its name
  v1.push_back(static_cast<char>(internal::OperatorStateMode::kSplit));
  PutVarint(2, &v1);  // two elements
  PutLengthPrefixed(SerializeToString(int64_t{6}), &v1);
  PutLengthPrefixed(SerializeToString(int64_t{9}), &v1);
  EXPECT_EQ(RestoreAll({v1}, 1), (std::vector<std::vector<int64_t>>{{6, 9}}));
}

TEST(OperatorStateStoreTest, ANewerFormatVersionIsDataLossNamingTheOperator) {
  std::string newer = OldSubtask({1});
  newer[0] = internal::kOperatorStateVersion + 1;
  internal::OperatorStateStore store;
  absl::Status st = store.Restore({newer}, 0, 1, "Map");
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(st.message(), HasSubstr("operator 'Map'"));
  EXPECT_THAT(st.message(), HasSubstr("format version 3"));
}

TEST(OperatorStateStoreTest, ACorruptStateIsDataLoss) {
  std::string cut = OldSubtask({1, 2, 3});
  cut.resize(cut.size() - 2);
  internal::OperatorStateStore store;
  EXPECT_EQ(store.Restore({cut}, 0, 1, "Map").code(), absl::StatusCode::kDataLoss);
}

TEST(OperatorStateStoreTest, RestoringInAnotherModeFailsWhenTheStateIsRegistered) {
  internal::OperatorStateStore store;
  ASSERT_TRUE(store.Restore({OldSubtask({1})}, 0, 1, "op").ok());
  try {
    store.GetListState(ListStateDescriptor<int64_t>("s"), internal::OperatorStateMode::kUnion,
                       "op");
    ADD_FAILURE() << "no failure";
  } catch (const internal::JobFailure& f) {
    EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(f.status().message(),
                HasSubstr("state 's' was checkpointed as operator list state but is requested as "
                          "union list state"));
  }
}

}  // namespace
}  // namespace sluice
