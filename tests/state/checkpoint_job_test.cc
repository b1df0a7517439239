// Checkpoints of running jobs: barriers, alignment, the coordinator and storage, resuming from a
// checkpoint or a savepoint — at another parallelism and into the other state backend.
#include <sluice/sluice.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "checkpoint/checkpoint_storage.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;

// The numbers [0, end), released by the test in steps through `gate`; checkpointable.
struct Gate {
  std::atomic<int64_t> open{0};
  int64_t end = 0;
};

class GatedSource final : public Source<int64_t> {
 public:
  explicit GatedSource(std::shared_ptr<Gate> gate) : gate_(std::move(gate)) {}
  bool IsBounded() const override { return false; }
  int MaxParallelism() const override { return 1; }
  std::string Describe() const override { return "gated"; }
  absl::StatusOr<std::unique_ptr<SourceReader<int64_t>>> CreateReader(
      const SourceContext&) override {
    return std::unique_ptr<SourceReader<int64_t>>(new Reader(gate_));
  }

 private:
  class Reader final : public SourceReader<int64_t> {
   public:
    explicit Reader(std::shared_ptr<Gate> gate) : gate_(std::move(gate)) {}
    absl::StatusOr<PollResult> PollNext(Collector<int64_t>& out, int max_records) override {
      if (next_ >= gate_->end) return PollResult::End();
      const int64_t limit = std::min<int64_t>(gate_->open.load(), next_ + max_records);
      if (next_ >= limit) return PollResult::NothingUntil(absl::Milliseconds(2));
      while (next_ < limit) out.Collect(next_++);
      return PollResult::More();
    }
    absl::StatusOr<std::string> SnapshotState(int64_t) override { return SerializeToString(next_); }
    absl::Status RestoreState(std::string_view state) override {
      if (!DeserializeFromString(state, &next_)) return absl::DataLossError("bad position");
      return absl::OkStatus();
    }

   private:
    std::shared_ptr<Gate> gate_;
    int64_t next_ = 0;
  };
  std::shared_ptr<Gate> gate_;
};

// Running sum per key in ValueState; emits (key, sum) for every record.
class RunningSum final
    : public KeyedProcessFunction<int64_t, int64_t, std::pair<int64_t, int64_t>> {
 public:
  void Open(const RuntimeContext& ctx) override {
    sum_ = ctx.GetState(ValueStateDescriptor<int64_t>("sum"));
  }
  void ProcessElement(const int64_t& v, Context& ctx,
                      Collector<std::pair<int64_t, int64_t>>& out) override {
    const int64_t s = sum_.Value().value_or(0) + v;
    sum_.Update(s);
    out.Collect({ctx.CurrentKey(), s});
  }

 private:
  ValueState<int64_t> sum_;
};

// Keeps the latest sum per key and counts records.
struct Latest {
  std::mutex mu;  // std::mutex: TSan sees it (the system Abseil is not instrumented)
  std::map<int64_t, int64_t> sums;
  int64_t count = 0;
};
class LatestSink final : public Sink<std::pair<int64_t, int64_t>> {
 public:
  explicit LatestSink(std::shared_ptr<Latest> latest) : latest_(std::move(latest)) {}
  absl::StatusOr<std::unique_ptr<SinkWriter<std::pair<int64_t, int64_t>>>> CreateWriter(
      const RuntimeContext&) override {
    return std::unique_ptr<SinkWriter<std::pair<int64_t, int64_t>>>(new Writer(latest_));
  }

 private:
  class Writer final : public SinkWriter<std::pair<int64_t, int64_t>> {
   public:
    explicit Writer(std::shared_ptr<Latest> l) : l_(std::move(l)) {}
    absl::Status Write(std::vector<std::pair<int64_t, int64_t>>& records) override {
      std::lock_guard<std::mutex> lock(l_->mu);
      for (auto& [k, s] : records) l_->sums[k] = s;
      l_->count += static_cast<int64_t>(records.size());
      return absl::OkStatus();
    }

   private:
    std::shared_ptr<Latest> l_;
  };
  std::shared_ptr<Latest> latest_;
};

constexpr int kKeys = 7;

std::map<int64_t, int64_t> ExpectedSums(int64_t end) {
  std::map<int64_t, int64_t> m;
  for (int64_t v = 0; v < end; ++v) m[v % kKeys] += v;
  return m;
}

struct Param {
  StateBackendKind backend;
  CheckpointingMode mode;
};

class CheckpointJobTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/checkpoint_job_test_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& c : dir_) {
      if (c == '/' && &c > dir_.data() + ::testing::TempDir().size()) c = '_';
    }
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  RuntimeOptions Options(int parallelism, StateBackendKind backend) const {
    RuntimeOptions o;
    o.parallelism = parallelism;
    o.execution_mode = ExecutionMode::kStreaming;
    o.state_backend = backend;
    o.rocksdb.local_dir = dir_ + "/rocksdb";
    o.checkpointing.interval = absl::Milliseconds(20);
    o.checkpointing.directory = dir_ + "/checkpoints";
    o.checkpointing.mode = GetParam().mode;
    o.checkpointing.retained = 2;
    return o;
  }
  static void Build(StreamEnvironment& env, std::shared_ptr<Gate> gate,
                    std::shared_ptr<Latest> latest) {
    env.FromSource(GatedSource(gate))
        .Rebalance()
        .Map([](int64_t v) { return v; })
        .KeyBy([](int64_t v) { return v % kKeys; })
        .Process(RunningSum())
        .Name("sum")
        .SinkTo(LatestSink(latest));
  }
  // A checkpoint taken after record 1000 of 2000 (in `restore_from`), restored at each
  // (parallelism, backend): the job counts every record exactly once.
  void ExpectResumes(const std::string& restore_from, const std::shared_ptr<Gate>& gate,
                     const std::vector<std::pair<int, StateBackendKind>>& configs) {
    for (auto [parallelism, backend] : configs) {
      SCOPED_TRACE(absl::StrCat("parallelism ", parallelism, ", ", StateBackendName(backend)));
      RuntimeOptions o = Options(parallelism, backend);
      o.checkpointing.interval = absl::ZeroDuration();
      o.restore_from = restore_from;
      StreamEnvironment env(o);
      auto resumed = std::make_shared<Latest>();
      gate->open = 2000;
      Build(env, gate, resumed);
      absl::StatusOr<JobHandle> job = env.ExecuteAsync("resumed");
      ASSERT_TRUE(job.ok()) << job.status();
      WaitFor([&] {
        std::lock_guard<std::mutex> l(resumed->mu);
        return resumed->count == 1000;
      });
      job->Cancel();
      job->Wait().IgnoreError();
      std::lock_guard<std::mutex> l(resumed->mu);
      EXPECT_EQ(resumed->sums, ExpectedSums(2000));
    }
  }
  static void WaitFor(const std::function<bool()>& cond) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (!cond()) {
      ASSERT_LT(absl::Now(), deadline) << "timed out";
      absl::SleepFor(absl::Milliseconds(2));
    }
  }

  std::string dir_;
};

// A job checkpoints, processes more, and dies; a new job resumes from the latest checkpoint: the
// records after the checkpoint are replayed, and the state counts every record exactly once.
TEST_P(CheckpointJobTest, ResumesFromTheLatestCheckpointWithExactState) {
  auto gate = std::make_shared<Gate>();
  gate->end = 3000;
  auto latest = std::make_shared<Latest>();
  {
    StreamEnvironment env(Options(2, GetParam().backend));
    Build(env, gate, latest);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("first");
    ASSERT_TRUE(job.ok()) << job.status();
    gate->open = 1000;
    WaitFor([&] {
      std::lock_guard<std::mutex> l(latest->mu);
      return latest->count == 1000;
    });
    const int64_t before = job->LastCompletedCheckpoint();
    WaitFor([&] { return job->LastCompletedCheckpoint() >= before + 2; });  // covers all 1000
    gate->open = 1500;  // processed, but in no checkpoint: replayed after the restore
    WaitFor([&] {
      std::lock_guard<std::mutex> l(latest->mu);
      return latest->count == 1500;
    });
    job->Cancel();
    EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
    // The pause of the snapshots on the task threads is counted per operator.
    const std::map<std::string, int64_t> counters = job->Counters();
    ASSERT_TRUE(counters.contains("sum.checkpointSyncMicros"));
    EXPECT_GE(counters.at("sum.checkpointSyncMicros"), 0);
  }
  RuntimeOptions o = Options(2, GetParam().backend);
  o.restore_from = dir_ + "/checkpoints";
  StreamEnvironment env(o);
  auto resumed = std::make_shared<Latest>();
  Build(env, gate, resumed);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("second");
  ASSERT_TRUE(job.ok()) << job.status();
  gate->open = 3000;
  WaitFor([&] {
    std::lock_guard<std::mutex> l(resumed->mu);
    return resumed->sums == ExpectedSums(3000);
  });
  job->Cancel();
  job->Wait().IgnoreError();
  std::lock_guard<std::mutex> l(resumed->mu);
  EXPECT_EQ(resumed->sums, ExpectedSums(3000));
  // The records after the restored checkpoint were processed again: it was taken after record
  // 1000 (or, if one more completed before the cancel, after record 1500).
  EXPECT_TRUE(resumed->count == 2000 || resumed->count == 1500) << resumed->count;
}

// A savepoint of a job at parallelism 2 restores at parallelism 3 and 1, into either backend.
TEST_P(CheckpointJobTest, SavepointRestoresAtAnotherParallelismAndIntoTheOtherBackend) {
  auto gate = std::make_shared<Gate>();
  gate->end = 2000;
  auto latest = std::make_shared<Latest>();
  const std::string savepoint = dir_ + "/savepoint-1";
  {
    RuntimeOptions o = Options(2, GetParam().backend);
    o.checkpointing.interval = absl::ZeroDuration();  // savepoints only
    StreamEnvironment env(o);
    Build(env, gate, latest);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("first");
    ASSERT_TRUE(job.ok()) << job.status();
    gate->open = 1200;
    WaitFor([&] {
      std::lock_guard<std::mutex> l(latest->mu);
      return latest->count == 1200;
    });
    absl::StatusOr<std::string> path = job->StopWithSavepoint(savepoint);
    ASSERT_TRUE(path.ok()) << path.status();
    EXPECT_EQ(*path, savepoint);
    EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  }
  const StateBackendKind other = GetParam().backend == StateBackendKind::kHashMap
                                     ? StateBackendKind::kRocksDb
                                     : StateBackendKind::kHashMap;
  for (auto [parallelism, backend] :
       std::vector<std::pair<int, StateBackendKind>>{{3, GetParam().backend}, {1, other}}) {
    SCOPED_TRACE(absl::StrCat("parallelism ", parallelism, ", ", StateBackendName(backend)));
    RuntimeOptions o = Options(parallelism, backend);
    o.checkpointing.interval = absl::ZeroDuration();
    o.restore_from = savepoint;
    StreamEnvironment env(o);
    auto resumed = std::make_shared<Latest>();
    Build(env, gate, resumed);
    gate->open = 2000;
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("resumed");
    ASSERT_TRUE(job.ok()) << job.status();
    WaitFor([&] {
      std::lock_guard<std::mutex> l(resumed->mu);
      return resumed->count == 800;
    });
    job->Cancel();
    job->Wait().IgnoreError();
    std::lock_guard<std::mutex> l(resumed->mu);
    EXPECT_EQ(resumed->sums, ExpectedSums(2000));
  }
}

// RocksDB checkpoints are incremental: each uploads the instance's new SST files into shared/
// and references the unchanged ones an earlier checkpoint uploaded. Such a checkpoint restores
// at the same parallelism (the files become the instance), at another one (key groups read from
// the old instances) and into the HashMap backend.
TEST_P(CheckpointJobTest, IncrementalRocksDbCheckpointsShareFilesAndRestoreAnywhere) {
  if (GetParam().backend != StateBackendKind::kRocksDb) GTEST_SKIP() << "RocksDB only";
  auto gate = std::make_shared<Gate>();
  gate->end = 2000;
  auto latest = std::make_shared<Latest>();
  {
    RuntimeOptions o = Options(2, StateBackendKind::kRocksDb);
    o.checkpointing.retained = 50;  // keep them all: the test compares consecutive ones
    StreamEnvironment env(o);
    Build(env, gate, latest);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("incremental");
    ASSERT_TRUE(job.ok()) << job.status();
    for (int64_t open = 250; open <= 1000; open += 250) {
      gate->open = open;
      WaitFor([&] {
        std::lock_guard<std::mutex> l(latest->mu);
        return latest->count == open;
      });
      const int64_t before = job->LastCompletedCheckpoint();
      WaitFor([&] { return job->LastCompletedCheckpoint() >= before + 2; });
    }
    job->Cancel();
    EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  }
  // Every checkpoint: native RocksDB state; consecutive ones share SST files (until a compaction
  // replaces them), which are uploaded once.
  absl::StatusOr<std::unique_ptr<internal::CheckpointStorage>> storage =
      internal::CheckpointStorage::Open({dir_ + "/checkpoints", 50});
  ASSERT_TRUE(storage.ok()) << storage.status();
  std::vector<int64_t> ids = (*storage)->CompletedIds();
  ASSERT_GE(ids.size(), 8u);
  std::vector<std::set<std::string>> ssts;
  std::string newest_manifest;
  for (int64_t id : ids) {
    absl::StatusOr<internal::RestoredCheckpoint> c =
        internal::CheckpointStorage::LoadFromPath(absl::StrCat(dir_, "/checkpoints/chk-", id));
    ASSERT_TRUE(c.ok()) << c.status();
    std::set<std::string> files;
    int native = 0;
    for (const auto& op : c->metadata.operators()) {
      for (const auto& st : op.subtasks()) {
        if (st.backend() != "rocksdb-native") continue;
        ++native;
        bool manifest = false;
        for (const auto& f : st.rocksdb_files()) {
          if (absl::EndsWith(f.path(), ".sst")) {
            EXPECT_TRUE(absl::StartsWith(f.path(), "shared/rocksdb/")) << f.path();
            files.insert(f.path());
          }
          if (absl::StrContains(f.path(), "/MANIFEST-")) {
            manifest = true;
            if (id == ids[0]) newest_manifest = f.path();
          }
        }
        EXPECT_TRUE(manifest);
      }
    }
    EXPECT_EQ(native, 2) << "checkpoint " << id;    // the two subtasks of the keyed operator
    if (id == ids[0]) EXPECT_FALSE(files.empty());  // early ones may precede any record
    ssts.push_back(std::move(files));
  }
  int sharing = 0;
  for (size_t i = 0; i + 1 < ssts.size(); ++i) {
    std::vector<std::string> common;
    std::set_intersection(ssts[i].begin(), ssts[i].end(), ssts[i + 1].begin(), ssts[i + 1].end(),
                          std::back_inserter(common));
    sharing += common.empty() ? 0 : 1;
  }
  EXPECT_GE(sharing, static_cast<int>(ssts.size()) / 2)
      << "consecutive checkpoints rarely share SST files";

  ExpectResumes(absl::StrCat(dir_, "/checkpoints/chk-", ids[0]), gate,
                {{2, StateBackendKind::kRocksDb},
                 {3, StateBackendKind::kRocksDb},
                 {1, StateBackendKind::kHashMap}});

  // A flipped bit in a native file of the newest checkpoint (its MANIFEST; the SST files of the
  // two are the same here, since nothing changed between them): restoring that checkpoint fails
  // with DataLoss naming the file; resuming from the storage root falls back to the older one when the host allows it.
  ASSERT_FALSE(newest_manifest.empty());
  {
    const std::string path = absl::StrCat(dir_, "/checkpoints/", newest_manifest);
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(10);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x20);
    f.seekp(10);
    f.write(&c, 1);
  }
  {
    RuntimeOptions o = Options(2, StateBackendKind::kRocksDb);
    o.restore_from = absl::StrCat(dir_, "/checkpoints/chk-", ids[0]);
    StreamEnvironment env(o);
    Build(env, gate, std::make_shared<Latest>());
    absl::Status status = env.Execute("corrupt");
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(newest_manifest));
  }
  {
    RuntimeOptions o = Options(2, StateBackendKind::kRocksDb);
    o.checkpointing.interval = absl::ZeroDuration();
    o.checkpointing.fall_back_to_older_checkpoint = true;  // refused by default
    o.restore_from = dir_ + "/checkpoints";
    StreamEnvironment env(o);
    auto resumed = std::make_shared<Latest>();
    Build(env, gate, resumed);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("fallback");
    ASSERT_TRUE(job.ok()) << job.status();
    // The older checkpoint covers record 1000 or, if it was in flight when the last step ended,
    // record 750; the source then ends at 2000 and the job finishes.
    EXPECT_TRUE(job->Wait().ok());
    std::lock_guard<std::mutex> l(resumed->mu);
    EXPECT_EQ(resumed->sums, ExpectedSums(2000));
    EXPECT_TRUE(resumed->count == 1000 || resumed->count == 1250) << resumed->count;
  }
}

// HashMap checkpoints are incremental too: a full file of each subtask's keyed state in shared/,
// then files of the changes since the checkpoint before, which later checkpoints reference (at
// most 16 after a full file). Such a checkpoint restores at the same parallelism, at others and
// into RocksDB; a corrupt file of changes fails a restore naming it, and resuming from the root
// falls back (when allowed) to the checkpoint before, which does not reference it. Off, every checkpoint is whole.
TEST_P(CheckpointJobTest, IncrementalHashMapCheckpointsWriteChangesAndRestoreAnywhere) {
  if (GetParam().backend != StateBackendKind::kHashMap) GTEST_SKIP() << "HashMap only";
  auto gate = std::make_shared<Gate>();
  gate->end = 2000;
  auto latest = std::make_shared<Latest>();
  auto run = [&](const RuntimeOptions& o) {
    StreamEnvironment env(o);
    Build(env, gate, latest);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("incremental");
    ASSERT_TRUE(job.ok()) << job.status();
    for (int64_t open = gate->open + 250; open <= 1000; open += 250) {
      gate->open = open;
      WaitFor([&] {
        std::lock_guard<std::mutex> l(latest->mu);
        return latest->count == open;
      });
      const int64_t before = job->LastCompletedCheckpoint();
      WaitFor([&] { return job->LastCompletedCheckpoint() >= before + 3; });
    }
    job->Cancel();
    EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  };
  {
    RuntimeOptions o = Options(2, StateBackendKind::kHashMap);
    o.checkpointing.retained = 100;  // keep them all: the test compares consecutive ones
    run(o);
  }
  absl::StatusOr<std::unique_ptr<internal::CheckpointStorage>> storage =
      internal::CheckpointStorage::Open({dir_ + "/checkpoints", 100});
  ASSERT_TRUE(storage.ok()) << storage.status();
  std::vector<int64_t> ids = (*storage)->CompletedIds();  // newest first
  ASSERT_GE(ids.size(), 12u);
  // Per checkpoint, oldest first: the files of each subtask of the keyed operator.
  std::vector<std::vector<std::vector<std::string>>> chains;
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    absl::StatusOr<internal::RestoredCheckpoint> c =
        internal::CheckpointStorage::LoadFromPath(absl::StrCat(dir_, "/checkpoints/chk-", *it));
    ASSERT_TRUE(c.ok()) << c.status();
    std::vector<std::vector<std::string>> subtasks;
    bool changes = false;
    for (const auto& op : c->metadata.operators()) {
      if (op.operator_name() != "sum") continue;
      for (const auto& st : op.subtasks()) {
        std::vector<std::string> files = {st.keyed_state().path()};
        for (const auto& f : st.keyed_changes()) files.push_back(f.file().path());
        for (const std::string& f : files) {
          EXPECT_TRUE(absl::StartsWith(f, "shared/keyed/") && absl::EndsWith(f, ".slkc")) << f;
        }
        changes = changes || files.size() > 1;
        EXPECT_LE(files.size(), 17u);
        subtasks.push_back(std::move(files));
      }
    }
    ASSERT_EQ(subtasks.size(), 2u) << "checkpoint " << *it;
    EXPECT_EQ(c->metadata.format_version(), 4u);
    chains.push_back(std::move(subtasks));
  }
  // Each checkpoint's chain is the one before plus one file of changes, or a new full file.
  int extended = 0;
  for (size_t i = 1; i < chains.size(); ++i) {
    for (size_t s = 0; s < 2; ++s) {
      const std::vector<std::string>& before = chains[i - 1][s];
      const std::vector<std::string>& now = chains[i][s];
      if (now.size() == 1) {
        EXPECT_NE(now[0], before[0]) << "a new full file";
        continue;
      }
      ASSERT_EQ(now.size(), before.size() + 1) << "checkpoint " << i << " subtask " << s;
      EXPECT_TRUE(std::equal(before.begin(), before.end(), now.begin()));
      ++extended;
    }
  }
  EXPECT_GE(extended, static_cast<int>(chains.size()));  // most of the 2 * (n - 1) steps

  ExpectResumes(absl::StrCat(dir_, "/checkpoints/chk-", ids[0]), gate,
                {{2, StateBackendKind::kHashMap},
                 {3, StateBackendKind::kHashMap},
                 {1, StateBackendKind::kRocksDb}});

  // The newest checkpoint whose last file of changes is its own: flip a bit in that file.
  size_t corrupt = 0;
  while (corrupt < chains.size() &&
         (chains[chains.size() - 1 - corrupt][0].size() < 2 ||
          (corrupt + 1 < chains.size() && chains[chains.size() - 2 - corrupt][0].back() ==
                                              chains[chains.size() - 1 - corrupt][0].back()))) {
    ++corrupt;
  }
  ASSERT_LT(corrupt + 1, chains.size());
  const std::string bad_file = chains[chains.size() - 1 - corrupt][0].back();
  {
    const std::string path = absl::StrCat(dir_, "/checkpoints/", bad_file);
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(5);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x20);
    f.seekp(5);
    f.write(&c, 1);
  }
  {
    RuntimeOptions o = Options(2, StateBackendKind::kHashMap);
    o.restore_from = absl::StrCat(dir_, "/checkpoints/chk-", ids[corrupt]);
    StreamEnvironment env(o);
    Build(env, gate, std::make_shared<Latest>());
    absl::Status status = env.Execute("corrupt");
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(bad_file));
  }
  // Resuming from the root restores the newest checkpoint that does not reference the file.
  size_t valid = 0;
  while (valid < ids.size()) {
    const auto& subtasks = chains[chains.size() - 1 - valid];
    if (std::none_of(subtasks.begin(), subtasks.end(), [&](const std::vector<std::string>& c) {
          return std::find(c.begin(), c.end(), bad_file) != c.end();
        })) {
      break;
    }
    ++valid;
  }
  ASSERT_LT(valid, ids.size());
  std::vector<absl::Status> skipped;
  absl::StatusOr<internal::RestoredCheckpoint> fallback =
      (*storage)->LoadLatestValid(&skipped, internal::OlderCheckpoints::kFallBack);
  ASSERT_TRUE(fallback.ok()) << fallback.status();
  EXPECT_EQ(fallback->metadata.checkpoint_id(), ids[valid]);
  EXPECT_EQ(skipped.size(), valid);

  // Off: every checkpoint writes the whole state into its own directory.
  std::filesystem::remove_all(dir_ + "/checkpoints");
  gate->open = 0;
  latest = std::make_shared<Latest>();
  {
    RuntimeOptions o = Options(2, StateBackendKind::kHashMap);
    o.checkpointing.incremental = false;
    run(o);
  }
  absl::StatusOr<internal::RestoredCheckpoint> whole =
      internal::CheckpointStorage::LoadFromPath(dir_ + "/checkpoints");
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->metadata.format_version(), 4u);
  for (const auto& op : whole->metadata.operators()) {
    for (const auto& st : op.subtasks()) {
      EXPECT_EQ(st.keyed_changes_size(), 0);
      if (st.has_keyed_state()) {
        EXPECT_TRUE(absl::StartsWith(st.keyed_state().path(), "chk-")) << st.keyed_state().path();
      }
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/checkpoints/shared/keyed"));
}

// Throws once, at the first attempt that sees `poison`.
class FailOnce final : public KeyedProcessFunction<int64_t, int64_t, std::pair<int64_t, int64_t>> {
 public:
  FailOnce(std::shared_ptr<std::atomic<int>> failures, int64_t poison)
      : failures_(std::move(failures)), poison_(poison) {}
  void Open(const RuntimeContext& ctx) override {
    sum_ = ctx.GetState(ValueStateDescriptor<int64_t>("sum"));
  }
  void ProcessElement(const int64_t& v, Context& ctx,
                      Collector<std::pair<int64_t, int64_t>>& out) override {
    if (v == poison_ && failures_->fetch_add(1) == 0) throw std::runtime_error("poisoned record");
    const int64_t s = sum_.Value().value_or(0) + v;
    sum_.Update(s);
    out.Collect({ctx.CurrentKey(), s});
  }

 private:
  std::shared_ptr<std::atomic<int>> failures_;
  int64_t poison_;
  ValueState<int64_t> sum_;
};

// A user function throws after a checkpoint: the restart strategy restarts the job in-process from
// the latest complete checkpoint, and the state is exact.
TEST_P(CheckpointJobTest, RestartsFromTheLatestCheckpointAfterAFailure) {
  auto gate = std::make_shared<Gate>();
  gate->end = 2000;
  auto latest = std::make_shared<Latest>();
  auto failures = std::make_shared<std::atomic<int>>(0);
  RuntimeOptions o = Options(2, GetParam().backend);
  o.restart_strategy = RestartStrategy::FixedDelay(2, absl::Milliseconds(10));
  StreamEnvironment env(o);
  env.FromSource(GatedSource(gate))
      .KeyBy([](int64_t v) { return v % kKeys; })
      .Process(FailOnce(failures, 1500))
      .SinkTo(LatestSink(latest));
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("restarts");
  ASSERT_TRUE(job.ok()) << job.status();
  gate->open = 1000;
  WaitFor([&] {
    std::lock_guard<std::mutex> l(latest->mu);
    return latest->count >= 1000;
  });
  const int64_t before = job->LastCompletedCheckpoint();
  WaitFor([&] { return job->LastCompletedCheckpoint() >= before + 2; });
  gate->open = 2000;  // 1500 fails the first attempt
  WaitFor([&] {
    std::lock_guard<std::mutex> l(latest->mu);
    return latest->sums == ExpectedSums(2000);
  });
  EXPECT_EQ(failures->load(), 2);  // the failed attempt and the restarted one saw 1500
  // The source ends after 2000 records: the restarted attempt finishes by itself.
  EXPECT_TRUE(job->Wait().ok());
}

class SumInts final : public AggregateFunction<int64_t, int64_t, int64_t> {
 public:
  int64_t CreateAccumulator() override { return 0; }
  void Add(const int64_t& v, int64_t& acc) override { acc += v; }
  int64_t GetResult(const int64_t& acc) override { return acc; }
  void Merge(const int64_t& from, int64_t& into) override { into += from; }
};

// Every (key, window start, sum) a window emitted, repeats included.
struct Emitted {
  std::mutex mu;
  std::vector<std::tuple<int64_t, int64_t, int64_t>> all;
};

// A two-phase window aggregate keeps its partials in the local phase until the watermark passes
// them; a checkpoint barrier sends them on first, so the checkpoint holds them in the windows'
// state. After a failure the job restarts from that checkpoint without the records before it, and
// every window — those still open at the checkpoint too — has its exact sum (a window fired both
// before the failure and after the restart has the same sum both times).
TEST_P(CheckpointJobTest, TwoPhaseWindowPartialsAreInTheCheckpointBeforeTheBarrier) {
  if (GetParam().mode != CheckpointingMode::kExactlyOnce) GTEST_SKIP() << "exactly-once state";
  auto gate = std::make_shared<Gate>();
  gate->end = 2000;
  auto emitted = std::make_shared<Emitted>();
  auto failures = std::make_shared<std::atomic<int>>(0);
  RuntimeOptions o = Options(2, GetParam().backend);
  o.restart_strategy = RestartStrategy::FixedDelay(2, absl::Milliseconds(10));
  StreamEnvironment env(o);
  auto windows =
      env.FromSource(GatedSource(gate),
                     WatermarkStrategy<int64_t>::ForMonotonousTimestamps().WithTimestampAssigner(
                         [](const int64_t& v) { return v; }))
          .Rebalance()
          .Map([failures](int64_t v) {
            if (v == 1500 && failures->fetch_add(1) == 0) throw std::runtime_error("poisoned");
            return v;
          })
          .KeyBy([](int64_t v) { return v % kKeys; })
          .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(100)))
          .TwoPhase()
          .Aggregate(SumInts(), [](const int64_t& key, WindowContext<TimeWindow>& ctx,
                                   std::span<const int64_t> sum,
                                   Collector<std::tuple<int64_t, int64_t, int64_t>>& out) {
            out.Collect({key, ctx.window().start, sum[0]});
          });
  windows.SinkTo(CallbackSink<std::tuple<int64_t, int64_t, int64_t>>(
      [emitted](const std::tuple<int64_t, int64_t, int64_t>& r) {
        std::lock_guard<std::mutex> l(emitted->mu);
        emitted->all.push_back(r);
      }));
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("two-phase");
  ASSERT_TRUE(job.ok()) << job.status();
  gate->open = 1000;
  absl::SleepFor(absl::Milliseconds(100));
  const int64_t before = job->LastCompletedCheckpoint();
  // Taken after the source stopped at 1000: the windows from 900 on (at least) are still open,
  // their records in the local phase.
  WaitFor([&] { return job->LastCompletedCheckpoint() >= before + 2; });
  gate->open = 2000;  // 1500 fails the first attempt
  ASSERT_TRUE(job->Wait().ok());
  EXPECT_EQ(failures->load(), 2);
  std::map<std::pair<int64_t, int64_t>, int64_t> want;
  for (int64_t v = 0; v < 2000; ++v) want[{v % kKeys, v / 100 * 100}] += v;
  std::map<std::pair<int64_t, int64_t>, int64_t> got;
  std::lock_guard<std::mutex> l(emitted->mu);
  for (const auto& [key, start, sum] : emitted->all) {
    auto [it, fresh] = got.try_emplace({key, start}, sum);
    EXPECT_EQ(it->second, sum) << "window " << start << " of key " << key << " fired twice";
  }
  EXPECT_EQ(got, want);
}

TEST_P(CheckpointJobTest, WithoutARestartStrategyAFailureEndsTheJob) {
  auto gate = std::make_shared<Gate>();
  gate->end = 100;
  gate->open = 100;
  auto latest = std::make_shared<Latest>();
  auto failures = std::make_shared<std::atomic<int>>(0);
  StreamEnvironment env(Options(1, GetParam().backend));
  env.FromSource(GatedSource(gate))
      .KeyBy([](int64_t v) { return v % kKeys; })
      .Process(FailOnce(failures, 50))
      .Name("sum")
      .SinkTo(LatestSink(latest));
  absl::Status status = env.Execute("fails");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(std::string(status.message()), HasSubstr("operator 'sum' threw: poisoned record"));
}

TEST_P(CheckpointJobTest, ASourceWithoutCheckpointSupportFailsTheJobClearly) {
  RuntimeOptions o = Options(1, GetParam().backend);
  StreamEnvironment env(o);
  CollectSink<int64_t> sink;
  class Plain final : public Source<int64_t> {
   public:
    bool IsBounded() const override { return false; }
    std::string Describe() const override { return "plain"; }
    absl::StatusOr<std::unique_ptr<SourceReader<int64_t>>> CreateReader(
        const SourceContext&) override {
      class R final : public SourceReader<int64_t> {
        absl::StatusOr<PollResult> PollNext(Collector<int64_t>&, int) override {
          return PollResult::NothingUntil(absl::Milliseconds(1));
        }
      };
      return std::unique_ptr<SourceReader<int64_t>>(new R());
    }
  };
  env.FromSource(Plain()).SinkTo(sink);
  absl::Status status = env.Execute("plain");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("Source: plain: this source does not support checkpoints"));
}

// A source whose reader keeps one position per subtask cannot resume at another parallelism: the
// restore fails before running, naming the source and both parallelisms.
TEST_P(CheckpointJobTest, ASourceThatCannotRescaleFailsARestoreAtAnotherParallelismClearly) {
  class Positioned final : public Source<int64_t> {
   public:
    bool IsBounded() const override { return false; }
    std::string Describe() const override { return "positioned"; }
    absl::StatusOr<std::unique_ptr<SourceReader<int64_t>>> CreateReader(
        const SourceContext&) override {
      class R final : public SourceReader<int64_t> {
        absl::StatusOr<PollResult> PollNext(Collector<int64_t>&, int) override {
          return PollResult::NothingUntil(absl::Milliseconds(1));
        }
        absl::StatusOr<std::string> SnapshotState(int64_t) override { return std::string("p"); }
        absl::Status RestoreState(std::string_view) override { return absl::OkStatus(); }
      };
      return std::unique_ptr<SourceReader<int64_t>>(new R());
    }
  };
  std::string savepoint;
  {
    StreamEnvironment env(Options(2, GetParam().backend));
    env.FromSource(Positioned()).SinkTo(CollectSink<int64_t>());
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("positioned");
    ASSERT_TRUE(job.ok()) << job.status();
    absl::StatusOr<std::string> sp = job->StopWithSavepoint(dir_ + "/savepoint");
    ASSERT_TRUE(sp.ok()) << sp.status();
    savepoint = *sp;
    (void)job->Wait();
  }
  RuntimeOptions o = Options(3, GetParam().backend);
  o.restore_from = savepoint;
  StreamEnvironment env(o);
  env.FromSource(Positioned()).SinkTo(CollectSink<int64_t>());
  absl::Status status = env.Execute("positioned-3");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(
      std::string(status.message()),
      HasSubstr("source 'Source: positioned' was checkpointed with parallelism 2 and cannot "
                "resume with parallelism 3: this source cannot resume at another "
                "parallelism"));
}

// Exactly-once holds only against the newest completed checkpoint: a resume from the storage root
// whose newest checkpoint is damaged fails, naming it and the older one, unless the host allows a
// fall-back — then it resumes from the older checkpoint, exactly, and says so on stderr.
TEST_P(CheckpointJobTest, ADamagedNewestCheckpointIsRefusedUnlessTheHostAllowsAFallBack) {
  if (GetParam().backend != StateBackendKind::kHashMap) GTEST_SKIP() << "one backend suffices";
  auto gate = std::make_shared<Gate>();
  gate->end = 2000;
  auto options = [&] {
    RuntimeOptions o = Options(2, StateBackendKind::kHashMap);
    o.checkpointing.incremental = false;  // every file of a checkpoint in its own directory
    return o;
  };
  {
    StreamEnvironment env(options());
    auto latest = std::make_shared<Latest>();
    Build(env, gate, latest);
    absl::StatusOr<JobHandle> job = env.ExecuteAsync("first");
    ASSERT_TRUE(job.ok()) << job.status();
    gate->open = 1000;
    WaitFor([&] {
      std::lock_guard<std::mutex> l(latest->mu);
      return latest->count == 1000;
    });
    const int64_t before = job->LastCompletedCheckpoint();
    WaitFor([&] { return job->LastCompletedCheckpoint() >= before + 2; });
    job->Cancel();
    job->Wait().IgnoreError();
  }
  const std::string root = dir_ + "/checkpoints";
  std::vector<int64_t> ids;
  {
    absl::StatusOr<std::unique_ptr<internal::CheckpointStorage>> storage =
        internal::CheckpointStorage::Open({root, 2});
    ASSERT_TRUE(storage.ok()) << storage.status();
    ids = (*storage)->CompletedIds();
  }
  ASSERT_EQ(ids.size(), 2u);
  const std::string newest = absl::StrCat(root, "/chk-", ids[0]);
  std::string damaged;
  for (const auto& e : std::filesystem::directory_iterator(newest)) {
    if (e.path().filename() != "_metadata" && e.file_size() > 8) damaged = e.path().string();
  }
  ASSERT_FALSE(damaged.empty());
  {
    std::fstream f(damaged, std::ios::in | std::ios::out | std::ios::binary);
    char c = 0;
    f.seekg(5);
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x20);
    f.seekp(5);
    f.write(&c, 1);
  }
  gate->open = 2000;
  {
    RuntimeOptions o = options();
    o.restore_from = root;
    StreamEnvironment env(o);
    auto resumed = std::make_shared<Latest>();
    Build(env, gate, resumed);
    absl::Status status = env.Execute("refused");
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    EXPECT_THAT(std::string(status.message()),
                HasSubstr(std::filesystem::path(damaged).filename().string()));
    EXPECT_THAT(
        std::string(status.message()),
        HasSubstr(absl::StrCat("this is the newest complete checkpoint of ", root,
                               "; refusing to resume from an older one (chk-", ids[1], ")")));
    std::lock_guard<std::mutex> l(resumed->mu);
    EXPECT_EQ(resumed->count, 0);
  }
  {
    RuntimeOptions o = options();
    o.restore_from = root;
    o.checkpointing.fall_back_to_older_checkpoint = true;
    StreamEnvironment env(o);
    auto resumed = std::make_shared<Latest>();
    Build(env, gate, resumed);
    ::testing::internal::CaptureStderr();
    absl::Status status = env.Execute("fell back");
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_THAT(err,
                HasSubstr(absl::StrCat(
                    "sluice: [WARNING] job 'fell back': resuming from the older checkpoint ", root,
                    "/chk-", ids[1], " because newer complete checkpoints are damaged")));
    EXPECT_THAT(err, HasSubstr(absl::StrCat("output that exactly-once sinks committed after "
                                            "checkpoint ",
                                            ids[1], " will be produced again")));
    std::lock_guard<std::mutex> l(resumed->mu);
    EXPECT_EQ(resumed->sums, ExpectedSums(2000));
  }
}

TEST(CheckpointOptionsTest, BadOptionsAreRejectedWithTheFieldNamed) {
  RuntimeOptions o;
  o.checkpointing.interval = absl::Seconds(1);
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("checkpointing.directory"));
  o.checkpointing.directory = "/tmp/x";
  o.checkpointing.retained = 0;
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("checkpointing.retained"));
  o.checkpointing.retained = 1;
  o.restart_strategy = RestartStrategy::FixedDelay(0, absl::Seconds(1));
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("restart_strategy.attempts"));
}

TEST(CheckpointRestoreTest, RestoringFromAMissingPathFailsBeforeRunning) {
  RuntimeOptions o;
  o.restore_from = "/nonexistent/sluice/checkpoint";
  StreamEnvironment env(o);
  CollectSink<int64_t> sink;
  env.FromSequence(0, 3).SinkTo(sink);
  absl::Status status = env.Execute("restore");
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("/nonexistent/sluice/checkpoint"));
}

INSTANTIATE_TEST_SUITE_P(
    Modes, CheckpointJobTest,
    ::testing::Values(Param{StateBackendKind::kHashMap, CheckpointingMode::kExactlyOnce},
                      Param{StateBackendKind::kRocksDb, CheckpointingMode::kExactlyOnce},
                      Param{StateBackendKind::kHashMap, CheckpointingMode::kAtLeastOnce}),
    [](const auto& info) {
      return std::string(StateBackendName(info.param.backend)) +
             (info.param.mode == CheckpointingMode::kExactlyOnce ? "_exactly_once"
                                                                 : "_at_least_once");
    });

}  // namespace
}  // namespace sluice
