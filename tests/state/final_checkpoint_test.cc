// The end of a bounded job with checkpoints (CheckpointOptions::final_checkpoint, Flink's
// checkpoints after tasks finish): a task whose input ended keeps taking part in checkpoints, the
// job ends with a final checkpoint, and a two-phase-commit sink commits its last transaction when
// that checkpoint completes — so a failure at any moment repeats nothing.
#include <sluice/sluice.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "gated_source.h"

namespace sluice {
namespace {

using state_test::Feed;
using state_test::GatedSource;
using state_test::TempDirTest;
using state_test::WaitFor;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// What a LoggingSink's writers did, in order, and what is committed (by transaction id).
struct Log {
  std::mutex mu;
  std::vector<std::string> events;
  std::map<int64_t, std::vector<int64_t>> committed;
  int64_t written = 0;  // records handed to Write
  bool fail_first_commit = false;
  int64_t next_txn = 1;  // transaction ids, unique over the jobs sharing the log
};

// A two-phase-commit sink whose transactions are (id, records); commits land in Log::committed.
class LoggingSink final : public Sink<int64_t> {
 public:
  explicit LoggingSink(std::shared_ptr<Log> log) : log_(std::move(log)) {}
  int MaxParallelism() const override { return 1; }
  absl::StatusOr<std::unique_ptr<SinkWriter<int64_t>>> CreateWriter(
      const RuntimeContext&) override {
    return std::unique_ptr<SinkWriter<int64_t>>(new Writer(log_));
  }

 private:
  using Txn = std::pair<int64_t, std::vector<int64_t>>;
  class Writer final : public TwoPhaseCommitSinkWriter<int64_t, Txn> {
   public:
    explicit Writer(std::shared_ptr<Log> log) : log_(std::move(log)) {}
    absl::Status NotifyCheckpointComplete(int64_t id) override {
      Event(absl::StrCat("complete ", id));
      return TwoPhaseCommitSinkWriter::NotifyCheckpointComplete(id);
    }
    absl::Status Finish() override {
      Event("finish");
      return TwoPhaseCommitSinkWriter::Finish();
    }

   protected:
    absl::StatusOr<Txn> BeginTransaction() override {
      std::lock_guard<std::mutex> lock(log_->mu);
      return Txn{log_->next_txn++, {}};
    }
    absl::Status Invoke(Txn& t, std::vector<int64_t>& records) override {
      std::lock_guard<std::mutex> lock(log_->mu);
      t.second.insert(t.second.end(), records.begin(), records.end());
      log_->written += static_cast<int64_t>(records.size());
      return absl::OkStatus();
    }
    absl::Status PreCommit(Txn& t) override {
      Event(absl::StrCat("pre-commit t", t.first, " (", t.second.size(), ")"));
      return absl::OkStatus();
    }
    absl::Status Commit(const Txn& t) override {
      std::lock_guard<std::mutex> lock(log_->mu);
      if (log_->fail_first_commit && !t.second.empty()) {
        log_->fail_first_commit = false;
        return absl::UnavailableError(absl::StrCat("commit of t", t.first, " failed"));
      }
      log_->events.push_back(absl::StrCat("commit t", t.first, " (", t.second.size(), ")"));
      log_->committed[t.first] = t.second;  // idempotent
      return absl::OkStatus();
    }
    void Abort(const Txn& t) override { Event(absl::StrCat("abort t", t.first)); }

   private:
    void Event(std::string e) {
      std::lock_guard<std::mutex> lock(log_->mu);
      log_->events.push_back(std::move(e));
    }
    std::shared_ptr<Log> log_;
  };
  std::shared_ptr<Log> log_;
};

std::vector<int64_t> Range(int64_t from, int64_t to) {
  std::vector<int64_t> v;
  for (int64_t i = from; i < to; ++i) v.push_back(i);
  return v;
}

// Every committed record, sorted (duplicates kept).
std::vector<int64_t> Committed(Log& log) {
  std::lock_guard<std::mutex> lock(log.mu);
  std::vector<int64_t> all;
  for (const auto& [id, records] : log.committed)
    all.insert(all.end(), records.begin(), records.end());
  std::sort(all.begin(), all.end());
  return all;
}

class FinalCheckpointTest : public TempDirTest {
 protected:
  // Periodic checkpoints an hour apart: only the final checkpoint is ever taken.
  RuntimeOptions Options() const {
    RuntimeOptions o;
    o.parallelism = 1;
    o.execution_mode = ExecutionMode::kStreaming;
    o.checkpointing.interval = absl::Hours(1);
    o.checkpointing.directory = dir_ + "/checkpoints";
    return o;
  }
  static void Build(StreamEnvironment& env, std::shared_ptr<Feed<int64_t>> feed,
                    std::shared_ptr<Log> log) {
    env.FromSource(GatedSource<int64_t>(feed))
        .Rebalance()
        .Map([](int64_t v) { return v; })
        .SinkTo(LoggingSink(log));
  }
  // Resumes the job from its latest checkpoint with a fresh event log and write count, and runs
  // it to the end; `checkpoints`: the last one it completed.
  void ResumeToTheEnd(std::shared_ptr<Feed<int64_t>> feed, std::shared_ptr<Log> log,
                      int64_t* checkpoints) {
    RuntimeOptions o = Options();
    o.restore_from = dir_ + "/checkpoints";
    StreamEnvironment again(o);
    log->events.clear();
    log->written = 0;
    Build(again, feed, log);
    absl::StatusOr<JobHandle> resumed = again.ExecuteAsync("resumed");
    ASSERT_TRUE(resumed.ok()) << resumed.status();
    ASSERT_TRUE(resumed->Wait().ok());
    *checkpoints = resumed->LastCompletedCheckpoint();
  }
};

TEST_F(FinalCheckpointTest, ABoundedJobEndsWithAFinalCheckpointThatCommitsItsLastTransaction) {
  auto feed = std::make_shared<Feed<int64_t>>(Range(0, 1000), /*finish_at_end=*/true);
  feed->open = 1000;
  auto log = std::make_shared<Log>();
  StreamEnvironment env(Options());
  Build(env, feed, log);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("final");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(job->Wait().ok());
  EXPECT_EQ(job->LastCompletedCheckpoint(), 1);
  // Every record was in the transaction pre-committed at the final checkpoint's barrier and
  // committed when it completed; Finish commits only the empty transaction begun after it.
  EXPECT_THAT(log->events, ElementsAre("pre-commit t1 (1000)", "complete 1", "commit t1 (1000)",
                                       "finish", "pre-commit t2 (0)", "commit t2 (0)"));
  EXPECT_EQ(Committed(*log), Range(0, 1000));

  // A process killed right after that checkpoint resumes from it: the source is at its end, the
  // sink re-commits t1 (idempotent) and nothing is written again.
  int64_t checkpoints = 0;
  ASSERT_NO_FATAL_FAILURE(ResumeToTheEnd(feed, log, &checkpoints));
  EXPECT_EQ(log->written, 0);
  EXPECT_EQ(Committed(*log), Range(0, 1000));
  EXPECT_EQ(checkpoints, 2);  // its own final checkpoint
  EXPECT_EQ(log->events.front(), "commit t1 (1000)");
}

// The job fails after its final checkpoint completed but before the sink committed: the restored
// job commits the pre-committed transaction and repeats nothing.
TEST_F(FinalCheckpointTest, AFailureBetweenTheFinalCheckpointAndTheCommitRepeatsNothing) {
  auto feed = std::make_shared<Feed<int64_t>>(Range(0, 500), /*finish_at_end=*/true);
  feed->open = 500;
  auto log = std::make_shared<Log>();
  log->fail_first_commit = true;
  {
    StreamEnvironment env(Options());
    Build(env, feed, log);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("fails");
    ASSERT_TRUE(job.ok()) << job.status();
    absl::Status status = job->Wait();
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
    EXPECT_THAT(status.message(), HasSubstr("commit of t1 failed"));
    EXPECT_EQ(job->LastCompletedCheckpoint(), 1);
  }
  EXPECT_TRUE(Committed(*log).empty());
  int64_t checkpoints = 0;
  ASSERT_NO_FATAL_FAILURE(ResumeToTheEnd(feed, log, &checkpoints));
  EXPECT_EQ(log->written, 0);
  EXPECT_EQ(Committed(*log), Range(0, 500));
}

// Without final checkpoints the sink commits at the end of input and no checkpoint is taken.
TEST_F(FinalCheckpointTest, WithoutFinalCheckpointsTheSinkCommitsAtTheEndOfInput) {
  auto feed = std::make_shared<Feed<int64_t>>(Range(0, 300), /*finish_at_end=*/true);
  feed->open = 300;
  auto log = std::make_shared<Log>();
  RuntimeOptions o = Options();
  o.checkpointing.final_checkpoint = false;
  StreamEnvironment env(o);
  Build(env, feed, log);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("no-final");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(job->Wait().ok());
  EXPECT_EQ(job->LastCompletedCheckpoint(), 0);
  EXPECT_THAT(log->events, ElementsAre("finish", "pre-commit t1 (300)", "commit t1 (300)"));
  EXPECT_EQ(Committed(*log), Range(0, 300));
}

// Running sum per key; emits (key, sum).
class RunningSum final : public KeyedProcessFunction<int64_t, int64_t, int64_t> {
 public:
  void Open(const RuntimeContext& ctx) override {
    sum_ = ctx.GetState(ValueStateDescriptor<int64_t>("sum"));
  }
  void ProcessElement(const int64_t& v, Context&, Collector<int64_t>& out) override {
    const int64_t s = sum_.Value().value_or(0) + v;
    sum_.Update(s);
    out.Collect(v);
  }

 private:
  ValueState<int64_t> sum_;
};

// Two sources; one ends long before the other. Checkpoints go on with the ended one taking part
// (before, none could be taken once a task had finished), and a job restored from one of them
// repeats none of the ended source's records.
TEST_F(FinalCheckpointTest, CheckpointsGoOnAfterOneSourceEndedAndRestoreExactly) {
  auto early = std::make_shared<Feed<int64_t>>(Range(-100, 0), /*finish_at_end=*/true);
  early->open = 100;
  auto late = std::make_shared<Feed<int64_t>>(Range(0, 1000), /*finish_at_end=*/true);
  auto log = std::make_shared<Log>();
  auto build = [&](StreamEnvironment& env) {
    env.FromSource(GatedSource<int64_t>(early))
        .Union(env.FromSource(GatedSource<int64_t>(late)))
        .KeyBy([](int64_t v) { return ((v % 7) + 7) % 7; })
        .Process(RunningSum())
        .SinkTo(LoggingSink(log));
  };
  RuntimeOptions o = Options();
  o.parallelism = 2;
  o.checkpointing.interval = absl::Milliseconds(20);
  o.checkpointing.retained = 2;
  auto written = [&] {
    std::lock_guard<std::mutex> lock(log->mu);
    return log->written;
  };
  {
    StreamEnvironment env(o);
    build(env);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("first");
    ASSERT_TRUE(job.ok()) << job.status();
    WaitFor([&] { return written() == 100; });
    const int64_t before = job->LastCompletedCheckpoint();
    WaitFor([&] { return job->LastCompletedCheckpoint() >= before + 3; });
    late->open = 500;
    WaitFor([&] { return written() == 600; });
    const int64_t covered = job->LastCompletedCheckpoint() + 2;  // begun after record 600
    WaitFor([&] { return job->LastCompletedCheckpoint() >= covered; });
    late->open = 700;  // processed, then replayed after the restore
    WaitFor([&] { return written() == 800; });
    job->Cancel();
    EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  }
  // What the first job committed (its last commit may not have run before the cancel): each
  // record at most once.
  std::vector<int64_t> first = Committed(*log);
  EXPECT_TRUE(std::adjacent_find(first.begin(), first.end()) == first.end());
  const std::vector<int64_t> all = Range(-100, 1000);
  EXPECT_TRUE(std::includes(all.begin(), all.end(), first.begin(), first.end()));

  o.restore_from = dir_ + "/checkpoints";
  StreamEnvironment again(o);
  {
    std::lock_guard<std::mutex> lock(log->mu);
    log->written = 0;
  }
  build(again);
  absl::StatusOr<JobHandle> resumed = again.ExecuteAsync("resumed");
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  late->open = 1000;
  ASSERT_TRUE(resumed->Wait().ok());
  // Only the late source's records after the restored checkpoint were written again.
  EXPECT_TRUE(written() == 500 || written() == 300) << written();
  EXPECT_EQ(Committed(*log), Range(-100, 1000));
}

}  // namespace
}  // namespace sluice
