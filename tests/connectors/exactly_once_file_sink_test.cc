// Tests of TwoPhaseCommitSinkWriter and ExactlyOnceFileSink, driving the writers directly as the
// runtime would (Write / SnapshotState / NotifyCheckpointComplete / RestoreState / Finish / Close).
#include <sluice/connectors/exactly_once_file_sink.h>
#include <sluice/connectors/two_phase_commit.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

#include <sluice/time/clock.h>
#include "connectors/test_util.h"

namespace sluice {
namespace {

using connectors_test::ReadFile;
using connectors_test::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// --- TwoPhaseCommitSinkWriter with an in-memory transaction ---------------------------------------

struct MemTxn {
  int64_t id = 0;
  std::vector<std::string> records;
};

}  // namespace

template <>
struct Serializer<MemTxn> {
  static void Write(const MemTxn& t, std::string* out) {
    Serializer<int64_t>::Write(t.id, out);
    Serializer<std::vector<std::string>>::Write(t.records, out);
  }
  static bool Read(ByteReader& in, MemTxn* t) {
    return Serializer<int64_t>::Read(in, &t->id) &&
           Serializer<std::vector<std::string>>::Read(in, &t->records);
  }
};

namespace {

// Logs every call; "committed" holds what a reader of the target would see.
struct MemStore {
  std::vector<std::string> log;
  std::vector<std::string> committed;
  std::vector<int64_t> committed_ids;
  int64_t next_id = 1;
  bool fail_commit = false;
};

class MemWriter : public TwoPhaseCommitSinkWriter<std::string, MemTxn> {
 public:
  explicit MemWriter(MemStore* store) : store_(store) {}

 protected:
  absl::StatusOr<MemTxn> BeginTransaction() override {
    MemTxn t;
    t.id = store_->next_id++;
    store_->log.push_back(absl::StrCat("begin ", t.id));
    return t;
  }
  absl::Status Invoke(MemTxn& t, std::vector<std::string>& records) override {
    store_->log.push_back(absl::StrCat("invoke ", t.id, " ", absl::StrJoin(records, ",")));
    for (auto& r : records) t.records.push_back(std::move(r));
    return absl::OkStatus();
  }
  absl::Status PreCommit(MemTxn& t) override {
    store_->log.push_back(absl::StrCat("precommit ", t.id));
    return absl::OkStatus();
  }
  absl::Status Commit(const MemTxn& t) override {
    store_->log.push_back(absl::StrCat("commit ", t.id));
    if (store_->fail_commit) return absl::UnavailableError("commit failed");
    if (std::find(store_->committed_ids.begin(), store_->committed_ids.end(), t.id) !=
        store_->committed_ids.end()) {
      return absl::OkStatus();  // idempotent
    }
    store_->committed_ids.push_back(t.id);
    for (const auto& r : t.records) store_->committed.push_back(r);
    return absl::OkStatus();
  }
  void Abort(const MemTxn& t) override { store_->log.push_back(absl::StrCat("abort ", t.id)); }
  absl::Status RecoverAndAbortLeftovers() override {
    store_->log.push_back("recover");
    return absl::OkStatus();
  }

 private:
  MemStore* store_;
};

absl::Status WriteStrings(SinkWriter<std::string>& w, std::vector<std::string> records) {
  return w.Write(records);
}

TEST(TwoPhaseCommitSinkWriterTest, CallSequenceAcrossCheckpoints) {
  MemStore store;
  MemWriter w(&store);
  ASSERT_TRUE(WriteStrings(w, {"a", "b"}).ok());
  absl::StatusOr<std::string> s1 = w.SnapshotState(1);
  ASSERT_TRUE(s1.ok()) << s1.status();
  ASSERT_TRUE(WriteStrings(w, {"c"}).ok());
  absl::StatusOr<std::string> s2 = w.SnapshotState(2);
  ASSERT_TRUE(s2.ok()) << s2.status();
  EXPECT_THAT(store.committed, IsEmpty());
  ASSERT_TRUE(w.NotifyCheckpointComplete(1).ok());
  EXPECT_THAT(store.committed, ElementsAre("a", "b"));
  ASSERT_TRUE(WriteStrings(w, {"d"}).ok());
  ASSERT_TRUE(w.NotifyCheckpointComplete(2).ok());
  EXPECT_THAT(store.committed, ElementsAre("a", "b", "c"));
  w.Close();
  EXPECT_THAT(store.log, ElementsAre("recover", "begin 1", "invoke 1 a,b", "precommit 1", "begin 2",
                                     "invoke 2 c", "precommit 2", "begin 3", "commit 1",
                                     "invoke 3 d", "commit 2", "abort 3"));
}

TEST(TwoPhaseCommitSinkWriterTest, NotificationCommitsEveryEarlierCheckpointInOrder) {
  MemStore store;
  MemWriter w(&store);
  ASSERT_TRUE(WriteStrings(w, {"a"}).ok());
  ASSERT_TRUE(w.SnapshotState(1).ok());
  ASSERT_TRUE(WriteStrings(w, {"b"}).ok());
  ASSERT_TRUE(w.SnapshotState(2).ok());
  ASSERT_TRUE(w.NotifyCheckpointComplete(2).ok());
  EXPECT_THAT(store.committed, ElementsAre("a", "b"));
  EXPECT_THAT(store.committed_ids, ElementsAre(1, 2));
  // A late notification of an older checkpoint commits nothing more.
  ASSERT_TRUE(w.NotifyCheckpointComplete(1).ok());
  EXPECT_THAT(store.committed_ids, ElementsAre(1, 2));
}

TEST(TwoPhaseCommitSinkWriterTest, FinishCommitsPendingThenOpenTransaction) {
  MemStore store;
  MemWriter w(&store);
  ASSERT_TRUE(WriteStrings(w, {"a"}).ok());
  ASSERT_TRUE(w.SnapshotState(7).ok());
  ASSERT_TRUE(WriteStrings(w, {"b"}).ok());
  ASSERT_TRUE(w.Finish().ok());
  w.Close();
  EXPECT_THAT(store.committed, ElementsAre("a", "b"));
  EXPECT_THAT(store.log, ElementsAre("recover", "begin 1", "invoke 1 a", "precommit 1", "begin 2",
                                     "invoke 2 b", "precommit 2", "commit 1", "commit 2"));
  std::vector<std::string> more = {"x"};
  EXPECT_EQ(w.Write(more).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(TwoPhaseCommitSinkWriterTest, RestoreCommitsPendingOfEveryStateThenRecovers) {
  MemStore store;
  std::string s0;
  std::string s1;
  {
    MemWriter a(&store);
    ASSERT_TRUE(WriteStrings(a, {"a1"}).ok());
    ASSERT_TRUE(a.SnapshotState(3).ok());
    ASSERT_TRUE(WriteStrings(a, {"a2"}).ok());
    s0 = *a.SnapshotState(4);
    ASSERT_TRUE(WriteStrings(a, {"lost"}).ok());
    // crash: neither Close nor Finish
  }
  {
    MemWriter b(&store);
    ASSERT_TRUE(WriteStrings(b, {"b1"}).ok());
    s1 = *b.SnapshotState(4);
  }
  store.log.clear();
  MemWriter w(&store);
  ASSERT_TRUE(w.RestoreState({s0, s1}).ok());
  // Checkpoint order across states: a's txn of checkpoint 3 first, then the two of checkpoint 4.
  EXPECT_THAT(store.log, ElementsAre("commit 1", "commit 2", "commit 4", "recover", "begin 6"));
  EXPECT_THAT(store.committed, ElementsAre("a1", "a2", "b1"));
  // Restoring the same states again (a crash during recovery) changes nothing.
  MemWriter again(&store);
  ASSERT_TRUE(again.RestoreState({s0, s1}).ok());
  EXPECT_THAT(store.committed, ElementsAre("a1", "a2", "b1"));
  // Restored transactions were committed: they are not in the next state.
  ASSERT_TRUE(WriteStrings(w, {"c"}).ok());
  store.log.clear();
  ASSERT_TRUE(w.Finish().ok());
  EXPECT_THAT(store.log, ElementsAre("precommit 6", "commit 6"));
  EXPECT_THAT(store.committed, ElementsAre("a1", "a2", "b1", "c"));
}

TEST(TwoPhaseCommitSinkWriterTest, FailedCommitFailsAndStaysInState) {
  MemStore store;
  MemWriter w(&store);
  ASSERT_TRUE(WriteStrings(w, {"a"}).ok());
  ASSERT_TRUE(w.SnapshotState(1).ok());
  store.fail_commit = true;
  absl::Status st = w.NotifyCheckpointComplete(1);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  // The next checkpoint still lists it; a restore re-tries the commit.
  absl::StatusOr<std::string> s2 = w.SnapshotState(2);
  ASSERT_TRUE(s2.ok());
  store.fail_commit = false;
  MemWriter restored(&store);
  ASSERT_TRUE(restored.RestoreState({*s2}).ok());
  EXPECT_THAT(store.committed, ElementsAre("a"));
}

TEST(TwoPhaseCommitSinkWriterTest, MalformedStateAndLateRestoreAreErrors) {
  MemStore store;
  MemWriter w(&store);
  absl::Status st = w.RestoreState({"\x01garbage"});
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("restored state 0"));
  std::vector<std::string> more = {"x"};
  EXPECT_EQ(w.Write(more).code(), absl::StatusCode::kFailedPrecondition);  // no fresh start
  EXPECT_THAT(store.log, IsEmpty());
  MemWriter started(&store);
  ASSERT_TRUE(WriteStrings(started, {"a"}).ok());
  EXPECT_EQ(started.RestoreState({}).code(), absl::StatusCode::kFailedPrecondition);
}

// --- ExactlyOnceFileSink --------------------------------------------------------------------------

std::vector<std::string> ListDir(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> Visible(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const std::string& n : ListDir(dir)) {
    if (n[0] != '.') names.push_back(n);
  }
  return names;
}

std::vector<std::string> WithTag(const std::filesystem::path& dir, const std::string& tag) {
  std::vector<std::string> names;
  for (const std::string& n : ListDir(dir)) {
    if (n.find(tag) != std::string::npos) names.push_back(n);
  }
  return names;
}

// Every line of every visible file.
std::vector<std::string> VisibleLines(const std::filesystem::path& dir) {
  std::vector<std::string> lines;
  for (const std::string& n : Visible(dir)) {
    std::string text = ReadFile((dir / n).string());
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      lines.push_back(text.substr(start, end - start));
      start = end + 1;
    }
  }
  return lines;
}

class ExactlyOnceFileSinkTest : public ::testing::Test {
 protected:
  ExactlyOnceFileSinkOptions Options() { return {.directory = dir_.Path("out"), .clock = clock_}; }

  std::unique_ptr<SinkWriter<std::string>> MakeWriter(const ExactlyOnceFileSinkOptions& options,
                                                      int subtask = 0, int parallelism = 1) {
    ExactlyOnceFileSink<std::string> sink(options);
    RuntimeContext ctx;
    ctx.subtask_index = subtask;
    ctx.parallelism = parallelism;
    absl::StatusOr<std::unique_ptr<SinkWriter<std::string>>> w = sink.CreateWriter(ctx);
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? *std::move(w) : nullptr;
  }
  std::unique_ptr<SinkWriter<std::string>> MakeWriter() { return MakeWriter(Options()); }

  std::filesystem::path out() const { return dir_.path() / "out"; }

  TempDir dir_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>(1'000'000);
};

TEST_F(ExactlyOnceFileSinkTest, RecordsBecomeVisibleWhenTheirCheckpointCompletes) {
  auto w = MakeWriter();
  ASSERT_TRUE(WriteStrings(*w, {"a", "b"}).ok());
  ASSERT_TRUE(WriteStrings(*w, {"c"}).ok());
  EXPECT_THAT(Visible(out()), IsEmpty());
  EXPECT_EQ(WithTag(out(), ".inprogress.").size(), 1u);
  ASSERT_TRUE(w->SnapshotState(1).ok());
  ASSERT_TRUE(WriteStrings(*w, {"d"}).ok());
  EXPECT_THAT(Visible(out()), IsEmpty());
  EXPECT_THAT(WithTag(out(), ".pending"), ElementsAre(".part-0-0.pending"));
  ASSERT_TRUE(w->NotifyCheckpointComplete(1).ok());
  EXPECT_THAT(Visible(out()), ElementsAre("part-0-0"));
  EXPECT_EQ(ReadFile((out() / "part-0-0").string()), "a\nb\nc\n");
  // "d" is in the in-progress part of the next transaction.
  EXPECT_THAT(VisibleLines(out()), ElementsAre("a", "b", "c"));
  EXPECT_EQ(WithTag(out(), ".inprogress.").size(), 1u);
  w->Close();
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0"));  // Close aborted the open part
}

TEST_F(ExactlyOnceFileSinkTest, TwoBarriersThenOneNotificationCommitsBoth) {
  auto w = MakeWriter();
  ASSERT_TRUE(WriteStrings(*w, {"a"}).ok());
  ASSERT_TRUE(w->SnapshotState(1).ok());
  ASSERT_TRUE(WriteStrings(*w, {"b"}).ok());
  ASSERT_TRUE(w->SnapshotState(2).ok());
  EXPECT_THAT(WithTag(out(), ".pending"), ElementsAre(".part-0-0.pending", ".part-0-1.pending"));
  EXPECT_THAT(Visible(out()), IsEmpty());
  ASSERT_TRUE(w->NotifyCheckpointComplete(2).ok());
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0", "part-0-1"));
  EXPECT_EQ(ReadFile((out() / "part-0-0").string()), "a\n");
  EXPECT_EQ(ReadFile((out() / "part-0-1").string()), "b\n");
  // An empty transaction makes no file.
  ASSERT_TRUE(w->SnapshotState(3).ok());
  ASSERT_TRUE(w->NotifyCheckpointComplete(3).ok());
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0", "part-0-1"));
}

TEST_F(ExactlyOnceFileSinkTest, CrashAfterSnapshotCommitsPendingAndDropsInProgress) {
  std::string state;
  {
    auto w = MakeWriter();
    ASSERT_TRUE(WriteStrings(*w, {"a", "b"}).ok());
    absl::StatusOr<std::string> s = w->SnapshotState(1);
    ASSERT_TRUE(s.ok()) << s.status();
    state = *s;
    ASSERT_TRUE(WriteStrings(*w, {"c"}).ok());
    ASSERT_TRUE(w->SnapshotState(2).ok());  // checkpoint 2 never completes
    ASSERT_TRUE(WriteStrings(*w, {"d"}).ok());
    // Hard crash: the writer goes away without Close or Finish.
  }
  EXPECT_THAT(WithTag(out(), ".pending"), ElementsAre(".part-0-0.pending", ".part-0-1.pending"));
  EXPECT_EQ(WithTag(out(), ".inprogress.").size(), 1u);

  auto w = MakeWriter();
  ASSERT_TRUE(w->RestoreState({state}).ok());
  // Checkpoint 1's part is committed; checkpoint 2's pending part and the in-progress part are
  // gone (their records are replayed from the source).
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0"));
  EXPECT_EQ(ReadFile((out() / "part-0-0").string()), "a\nb\n");

  // Crash during recovery: restoring the same state again is harmless.
  {
    auto again = MakeWriter();
    ASSERT_TRUE(again->RestoreState({state}).ok());
    EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0"));
  }

  // Replayed and new records go to fresh part numbers.
  ASSERT_TRUE(WriteStrings(*w, {"c", "d", "e"}).ok());
  ASSERT_TRUE(w->SnapshotState(2).ok());
  ASSERT_TRUE(w->NotifyCheckpointComplete(2).ok());
  std::vector<std::string> visible = Visible(out());
  ASSERT_EQ(visible.size(), 2u);
  EXPECT_EQ(visible[0], "part-0-0");
  // Numbers of the dropped pending (1) and in-progress (2) parts are not reused.
  EXPECT_EQ(visible[1], "part-0-3");
  EXPECT_EQ(ReadFile((out() / visible[1]).string()), "c\nd\ne\n");
  EXPECT_THAT(VisibleLines(out()), ElementsAre("a", "b", "c", "d", "e"));
}

TEST_F(ExactlyOnceFileSinkTest, CloseWithoutFinishKeepsPendingForRecovery) {
  std::string state;
  {
    auto w = MakeWriter();
    ASSERT_TRUE(WriteStrings(*w, {"a"}).ok());
    state = *w->SnapshotState(1);
    ASSERT_TRUE(WriteStrings(*w, {"b"}).ok());
    w->Close();  // job failed: the open part is aborted, the pending one stays
  }
  EXPECT_THAT(ListDir(out()), ElementsAre(".part-0-0.pending"));
  auto w = MakeWriter();
  ASSERT_TRUE(w->RestoreState({state}).ok());
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0"));
  EXPECT_THAT(VisibleLines(out()), ElementsAre("a"));
}

TEST_F(ExactlyOnceFileSinkTest, CrashAfterCommitRetriesCommitWithoutDuplicates) {
  std::string state;
  {
    auto w = MakeWriter();
    ASSERT_TRUE(WriteStrings(*w, {"a", "b"}).ok());
    state = *w->SnapshotState(1);
    ASSERT_TRUE(w->NotifyCheckpointComplete(1).ok());
    ASSERT_TRUE(WriteStrings(*w, {"c"}).ok());
  }
  EXPECT_THAT(Visible(out()), ElementsAre("part-0-0"));
  auto w = MakeWriter();
  absl::Status st = w->RestoreState({state});
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0"));
  EXPECT_THAT(VisibleLines(out()), ElementsAre("a", "b"));
  ASSERT_TRUE(WriteStrings(*w, {"c"}).ok());
  ASSERT_TRUE(w->Finish().ok());
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0", "part-0-2"));  // 1 was the lost in-progress
  EXPECT_THAT(VisibleLines(out()), ElementsAre("a", "b", "c"));
}

TEST_F(ExactlyOnceFileSinkTest, RollsBySize) {
  ExactlyOnceFileSinkOptions options = Options();
  options.max_part_bytes = 10;  // two 5-byte lines per part
  auto w = MakeWriter(options);
  ASSERT_TRUE(WriteStrings(*w, {"aaaa", "bbbb", "cccc", "dddd", "eeee"}).ok());
  EXPECT_THAT(WithTag(out(), ".pending"), ElementsAre(".part-0-0.pending", ".part-0-1.pending"));
  ASSERT_TRUE(WriteStrings(*w, {"a-line-longer-than-ten"}).ok());
  ASSERT_TRUE(w->SnapshotState(1).ok());
  EXPECT_THAT(WithTag(out(), ".pending"), ElementsAre(".part-0-0.pending", ".part-0-1.pending",
                                                      ".part-0-2.pending", ".part-0-3.pending"));
  EXPECT_THAT(Visible(out()), IsEmpty());
  ASSERT_TRUE(w->NotifyCheckpointComplete(1).ok());
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0", "part-0-1", "part-0-2", "part-0-3"));
  EXPECT_EQ(ReadFile((out() / "part-0-0").string()), "aaaa\nbbbb\n");
  EXPECT_EQ(ReadFile((out() / "part-0-1").string()), "cccc\ndddd\n");
  EXPECT_EQ(ReadFile((out() / "part-0-2").string()), "eeee\n");
  EXPECT_EQ(ReadFile((out() / "part-0-3").string()), "a-line-longer-than-ten\n");
}

TEST_F(ExactlyOnceFileSinkTest, RollsByTime) {
  ExactlyOnceFileSinkOptions options = Options();
  options.rollover_interval = absl::Seconds(60);
  options.suffix = ".txt";
  auto w = MakeWriter(options);
  ASSERT_TRUE(WriteStrings(*w, {"a"}).ok());
  clock_->Advance(absl::Seconds(59));
  ASSERT_TRUE(WriteStrings(*w, {"b"}).ok());  // 59 s old: same part
  clock_->Advance(absl::Seconds(1));
  ASSERT_TRUE(WriteStrings(*w, {"c"}).ok());  // 60 s old: rolls first
  clock_->Advance(absl::Seconds(120));
  ASSERT_TRUE(WriteStrings(*w, {"d"}).ok());
  EXPECT_THAT(WithTag(out(), ".pending"),
              ElementsAre(".part-0-0.txt.pending", ".part-0-1.txt.pending"));
  ASSERT_TRUE(w->SnapshotState(1).ok());
  ASSERT_TRUE(w->NotifyCheckpointComplete(1).ok());
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0.txt", "part-0-1.txt", "part-0-2.txt"));
  EXPECT_EQ(ReadFile((out() / "part-0-0.txt").string()), "a\nb\n");
  EXPECT_EQ(ReadFile((out() / "part-0-1.txt").string()), "c\n");
  EXPECT_EQ(ReadFile((out() / "part-0-2.txt").string()), "d\n");
}

TEST_F(ExactlyOnceFileSinkTest, FinishCommitsEverythingWithoutCheckpoints) {
  ExactlyOnceFileSinkOptions options = Options();
  options.max_part_bytes = 4;
  auto w = MakeWriter(options);
  ASSERT_TRUE(WriteStrings(*w, {"a", "b", "c"}).ok());
  ASSERT_TRUE(w->Finish().ok());
  w->Close();
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0", "part-0-1"));
  EXPECT_THAT(VisibleLines(out()), ElementsAre("a", "b", "c"));
}

TEST_F(ExactlyOnceFileSinkTest, FinishCommitsPendingCheckpoints) {
  auto w = MakeWriter();
  ASSERT_TRUE(WriteStrings(*w, {"a"}).ok());
  ASSERT_TRUE(w->SnapshotState(1).ok());
  ASSERT_TRUE(WriteStrings(*w, {"b"}).ok());
  ASSERT_TRUE(w->Finish().ok());
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0", "part-0-1"));
}

TEST_F(ExactlyOnceFileSinkTest, RescaleRestoresTwoOldSubtasksIntoOne) {
  std::string s0;
  std::string s1;
  {
    auto w0 = MakeWriter(Options(), 0, 2);
    auto w1 = MakeWriter(Options(), 1, 2);
    ASSERT_TRUE(WriteStrings(*w0, {"x0"}).ok());
    ASSERT_TRUE(WriteStrings(*w1, {"y0", "y1"}).ok());
    s0 = *w0->SnapshotState(5);
    s1 = *w1->SnapshotState(5);
    ASSERT_TRUE(WriteStrings(*w0, {"x-lost"}).ok());
    ASSERT_TRUE(WriteStrings(*w1, {"y-lost"}).ok());
  }
  EXPECT_EQ(WithTag(out(), ".inprogress.").size(), 2u);
  auto w = MakeWriter(Options(), 0, 1);
  ASSERT_TRUE(w->RestoreState({s0, s1}).ok());
  // Both old subtasks' parts are committed; the leftovers of both are cleaned.
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0", "part-1-0"));
  EXPECT_THAT(VisibleLines(out()), ElementsAre("x0", "y0", "y1"));
  ASSERT_TRUE(WriteStrings(*w, {"z"}).ok());
  ASSERT_TRUE(w->Finish().ok());
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0", "part-0-2", "part-1-0"));
}

TEST_F(ExactlyOnceFileSinkTest, FreshStartCleansOnlyItsOwnSubtask) {
  {
    auto w0 = MakeWriter(Options(), 0, 2);
    auto w1 = MakeWriter(Options(), 1, 2);
    ASSERT_TRUE(WriteStrings(*w0, {"a"}).ok());
    ASSERT_TRUE(w0->Finish().ok());  // part-0-0 committed
    ASSERT_TRUE(WriteStrings(*w1, {"b"}).ok());
    ASSERT_TRUE(w1->SnapshotState(1).ok());      // .part-1-0.pending
    ASSERT_TRUE(WriteStrings(*w1, {"c"}).ok());  // .part-1-1.inprogress
  }
  {
    auto w0 = MakeWriter(Options(), 0, 2);
    ASSERT_TRUE(WriteStrings(*w0, {"d"}).ok());
    ASSERT_TRUE(w0->Finish().ok());
  }
  // Subtask 0 started after its committed part and left subtask 1's files alone.
  std::vector<std::string> names = ListDir(out());
  ASSERT_EQ(names.size(), 4u);
  EXPECT_EQ(names[0], ".part-1-0.pending");
  EXPECT_TRUE(names[1].starts_with(".part-1-1.inprogress.")) << names[1];
  EXPECT_EQ(names[2], "part-0-0");
  EXPECT_EQ(names[3], "part-0-1");
  // A fresh subtask 1 removes its own leftovers.
  auto w1 = MakeWriter(Options(), 1, 2);
  ASSERT_TRUE(w1->Finish().ok());
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0", "part-0-1"));
}

// A killed attempt at parallelism 3 left hidden parts of subtask 2, which does not exist after a
// restore at parallelism 2 from a checkpoint taken at 2: subtask 0 (2 % 2) deletes them; subtask
// 1 deletes those of subtask 3; committed parts stay.
TEST_F(ExactlyOnceFileSinkTest, RestoreAtLowerParallelismDeletesTheLeftoversOfSubtasksThatAreGone) {
  std::string s0, s1;
  {
    auto w0 = MakeWriter(Options(), 0, 2);
    auto w1 = MakeWriter(Options(), 1, 2);
    ASSERT_TRUE(WriteStrings(*w0, {"a"}).ok());
    ASSERT_TRUE(WriteStrings(*w1, {"b"}).ok());
    s0 = *w0->SnapshotState(1);
    s1 = *w1->SnapshotState(1);
  }
  {
    auto w2 = MakeWriter(Options(), 2, 4);
    auto w3 = MakeWriter(Options(), 3, 4);
    ASSERT_TRUE(WriteStrings(*w2, {"c"}).ok());
    ASSERT_TRUE(w2->SnapshotState(2).ok());      // .part-2-0.pending, never committed
    ASSERT_TRUE(WriteStrings(*w2, {"d"}).ok());  // .part-2-1.inprogress...
    ASSERT_TRUE(WriteStrings(*w3, {"e"}).ok());  // .part-3-0.inprogress...
  }
  connectors_test::WriteFile((out() / "part-2-7").string(), "committed earlier\n");
  EXPECT_EQ(WithTag(out(), ".part-2-").size(), 2u);
  auto w0 = MakeWriter(Options(), 0, 2);
  ASSERT_TRUE(w0->RestoreState({s0}).ok());
  EXPECT_TRUE(WithTag(out(), ".part-2-").empty());
  EXPECT_EQ(WithTag(out(), ".part-3-").size(), 1u);  // subtask 1's to delete
  auto w1 = MakeWriter(Options(), 1, 2);
  ASSERT_TRUE(w1->RestoreState({s1}).ok());
  EXPECT_THAT(ListDir(out()), ElementsAre("part-0-0", "part-1-0", "part-2-7"));
}

TEST_F(ExactlyOnceFileSinkTest, CustomFormatAndPrefix) {
  ExactlyOnceFileSinkOptions options = Options();
  options.prefix = "clicks";
  ExactlyOnceFileSink<std::pair<int, int>> sink(
      options, [](const std::pair<int, int>& p) { return absl::StrCat(p.first, "+", p.second); });
  auto w = sink.CreateWriter(RuntimeContext{});
  ASSERT_TRUE(w.ok()) << w.status();
  std::vector<std::pair<int, int>> records = {{1, 2}, {3, 4}};
  ASSERT_TRUE((*w)->Write(records).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  EXPECT_EQ(ReadFile((out() / "clicks-0-0").string()), "1+2\n3+4\n");

  // Without a format, FormatValue renders the record (tuples as "(a,b)").
  ExactlyOnceFileSinkOptions plain = Options();
  plain.prefix = "plain";
  ExactlyOnceFileSink<std::pair<int, int>> formatted(plain);
  auto w2 = formatted.CreateWriter(RuntimeContext{});
  ASSERT_TRUE(w2.ok()) << w2.status();
  ASSERT_TRUE((*w2)->Write(records).ok());
  ASSERT_TRUE((*w2)->Finish().ok());
  EXPECT_EQ(ReadFile((out() / "plain-0-0").string()), "(1,2)\n(3,4)\n");
}

TEST_F(ExactlyOnceFileSinkTest, BadOptionsNameTheField) {
  auto check = [&](ExactlyOnceFileSinkOptions o, const std::string& field) {
    EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(std::string(o.Validate().message()), HasSubstr(field));
    ExactlyOnceFileSink<std::string> sink(o);
    absl::StatusOr<std::unique_ptr<SinkWriter<std::string>>> w = sink.CreateWriter({});
    EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << field;
  };
  ExactlyOnceFileSinkOptions o = Options();
  EXPECT_TRUE(o.Validate().ok());
  o.directory.clear();
  check(o, "directory");
  o = Options();
  o.prefix = "";
  check(o, "prefix");
  o.prefix = ".hidden";
  check(o, "prefix");
  o.prefix = "a/b";
  check(o, "prefix");
  o = Options();
  o.suffix = "x/y";
  check(o, "suffix");
  o = Options();
  o.max_part_bytes = 0;
  check(o, "max_part_bytes");
  o = Options();
  o.rollover_interval = absl::ZeroDuration();
  check(o, "rollover_interval");
}

TEST_F(ExactlyOnceFileSinkTest, UnusableDirectoryNamesThePath) {
  connectors_test::WriteFile(dir_.Path("plain-file"), "x");
  ExactlyOnceFileSinkOptions o = Options();
  o.directory = dir_.Path("plain-file") + "/sub";
  ExactlyOnceFileSink<std::string> sink(o);
  absl::StatusOr<std::unique_ptr<SinkWriter<std::string>>> w = sink.CreateWriter({});
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(std::string(w.status().message()), HasSubstr(o.directory));
  EXPECT_THAT(std::string(w.status().message()), HasSubstr("Not a directory"));
}

TEST_F(ExactlyOnceFileSinkTest, MalformedStateIsDataLoss) {
  auto w = MakeWriter();
  absl::Status st = w->RestoreState({"nonsense"});
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
}

}  // namespace
}  // namespace sluice
