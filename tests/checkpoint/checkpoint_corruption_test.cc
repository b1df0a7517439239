// Damaged checkpoints of real jobs: every bit flipped at every byte, and every truncation, of the
// `_metadata` and of every file a checkpoint references — keyed state (full files and files of
// changes), operator state (source positions, sink transactions) and a RocksDB native snapshot
// (SST files, MANIFEST, OPTIONS) — is DataLoss naming the checkpoint and the file, never an
// accepted restore or a crash. Then the decoders behind the checksums: each state file with one
// byte changed and its checksum fixed up (what a buggy writer or a foreign tool could leave)
// restores to some state or fails with a status — the process never aborts.
//
// SLUICE_LONG_CORRUPTION=1 changes every byte in the decoder part (CI: every 13th).
#include <sluice/sluice.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "checkpoint/checkpoint_storage.h"
#include "checkpoint/crc32c.h"

namespace sluice::internal {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

struct Count {
  int64_t key = 0;
  int64_t n = 0;
};

// A job with keyed state (rolling counts), window contents and timers, a source position and an
// exactly-once sink's transactions; cancelled once `checkpoints` checkpoints completed.
void Build(StreamEnvironment& env, const std::string& out) {
  env.FromSource(
         GeneratorSource([](int64_t i) { return i; }, {.count = -1, .records_per_second = 20000}),
         WatermarkStrategy<int64_t>::ForMonotonousTimestamps().WithTimestampAssigner(
             [](const int64_t& i) { return i; }))
      .Map([](int64_t i) {
        return Count{i % 5, 1};
      })
      .KeyBy([](const Count& c) { return c.key; })
      .Reduce([](const Count& a, const Count& b) {
        return Count{a.key, a.n + b.n};
      })
      .KeyBy([](const Count& c) { return c.key; })
      .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(1000)))
      .Process([](const int64_t& key, WindowContext<TimeWindow>&, std::span<const Count> in,
                  Collector<std::string>& o) { o.Collect(absl::StrCat(key, " ", in.size())); })
      .SinkTo(ExactlyOnceFileSink<std::string>({.directory = out}))
      .Name("sink");
}

std::string TakeCheckpoint(const std::string& dir, StateBackendKind backend) {
  fs::remove_all(dir);
  RuntimeOptions options;
  options.parallelism = 2;
  options.state_backend = backend;
  options.rocksdb.local_dir = dir + "/rocksdb";
  options.checkpointing.interval = absl::Milliseconds(30);
  options.checkpointing.directory = dir + "/checkpoints";
  StreamEnvironment env(options);
  Build(env, dir + "/out");
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("corruption");
  EXPECT_TRUE(job.ok()) << job.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (job->LastCompletedCheckpoint() < 3 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  job->Cancel();
  job->Wait().IgnoreError();
  EXPECT_GE(job->LastCompletedCheckpoint(), 3);
  absl::StatusOr<RestoredCheckpoint> latest = CheckpointStorage::LoadFromPath(dir + "/checkpoints");
  EXPECT_TRUE(latest.ok()) << latest.status();
  return latest.ok() ? latest->dir : "";
}

// Every file the checkpoint references (path relative to the root → role), and the root.
std::map<std::string, std::string> ReferencedFiles(const RestoredCheckpoint& c) {
  std::map<std::string, std::string> files;
  for (const auto& op : c.metadata.operators()) {
    for (const auto& st : op.subtasks()) {
      if (!st.keyed_state().path().empty()) files[st.keyed_state().path()] = "keyed";
      for (const auto& ch : st.keyed_changes()) files[ch.file().path()] = "keyed changes";
      if (!st.operator_state().path().empty()) files[st.operator_state().path()] = "operator";
      for (const auto& f : st.rocksdb_files()) files[f.path()] = "rocksdb";
    }
  }
  return files;
}

void ExpectEveryDamageIsDataLoss(const std::string& chk, const std::string& path,
                                 const std::string& name) {
  const std::string valid = ReadAll(path);
  ASSERT_FALSE(valid.empty()) << path;
  for (size_t i = 0; i < valid.size(); ++i) {
    std::string bytes = valid;
    bytes[i] = static_cast<char>(bytes[i] ^ (1 << (i % 8)));
    WriteAll(path, bytes);
    absl::Status s = CheckpointStorage::LoadFromPath(chk).status();
    ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << name << " byte " << i << ": " << s;
    ASSERT_THAT(std::string(s.message()), HasSubstr(name)) << s;
  }
  for (size_t n = 0; n < valid.size(); ++n) {
    WriteAll(path, valid.substr(0, n));
    absl::Status s = CheckpointStorage::LoadFromPath(chk).status();
    ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << name << " cut at " << n << ": " << s;
  }
  WriteAll(path, valid);
  ASSERT_TRUE(CheckpointStorage::LoadFromPath(chk).ok());
}

class CheckpointCorruptionTest : public ::testing::TestWithParam<StateBackendKind> {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/checkpoint_corruption_test_" + std::to_string(::getpid()) +
           "_" + StateBackendName(GetParam());
    chk_ = TakeCheckpoint(dir_, GetParam());
    ASSERT_FALSE(chk_.empty());
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_, chk_;
};

TEST_P(CheckpointCorruptionTest, EveryFlippedBitAndTruncationOfEveryFileIsDataLoss) {
  absl::StatusOr<RestoredCheckpoint> c = CheckpointStorage::LoadFromPath(chk_);
  ASSERT_TRUE(c.ok()) << c.status();
  const std::map<std::string, std::string> files = ReferencedFiles(*c);
  std::map<std::string, int> kinds;
  for (const auto& [rel, kind] : files) ++kinds[kind];
  if (GetParam() == StateBackendKind::kRocksDb) {
    EXPECT_GT(kinds["rocksdb"], 2) << "SST, MANIFEST, OPTIONS files";
  } else {
    EXPECT_GT(kinds["keyed"] + kinds["keyed changes"], 0);
  }
  EXPECT_GT(kinds["operator"], 0);  // source positions, sink transactions
  ExpectEveryDamageIsDataLoss(chk_, chk_ + "/_metadata", "_metadata");
  for (const auto& [rel, kind] : files) {
    SCOPED_TRACE(kind + " file " + rel);
    ExpectEveryDamageIsDataLoss(chk_, c->root + "/" + rel, rel);
  }
}

// Behind the checksums: a state file with one byte changed and its size and checksum fixed up in
// the _metadata restores into the job to some state or fails with a status; never a crash.
TEST_P(CheckpointCorruptionTest, DecodersOfStateFilesAreTotal) {
  absl::StatusOr<RestoredCheckpoint> c = CheckpointStorage::LoadFromPath(chk_);
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string metadata_path = chk_ + "/_metadata";
  const std::string valid_metadata = ReadAll(metadata_path);
  const size_t stride = std::getenv("SLUICE_LONG_CORRUPTION") != nullptr ? 1 : 13;
  int restores = 0, failed = 0;
  for (const auto& [rel, kind] : ReferencedFiles(*c)) {
    if (kind == "rocksdb") continue;  // RocksDB's own formats, checked by RocksDB's checksums
    const std::string path = c->root + "/" + rel;
    const std::string valid = ReadAll(path);
    for (size_t i = 0; i < valid.size(); i += stride) {
      std::string bytes = valid;
      bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
      WriteAll(path, bytes);
      checkpoint::CheckpointMetadata md = c->metadata;
      for (auto& op : *md.mutable_operators()) {
        for (auto& st : *op.mutable_subtasks()) {
          auto fix = [&](checkpoint::FileRef* ref) {
            if (ref->path() == rel) ref->set_crc32c(Crc32c(bytes));
          };
          fix(st.mutable_keyed_state());
          for (auto& ch : *st.mutable_keyed_changes()) fix(ch.mutable_file());
          fix(st.mutable_operator_state());
        }
      }
      WriteAll(metadata_path, EncodeMetadataFile(md));
      RuntimeOptions options;
      options.parallelism = 2;
      options.state_backend = GetParam();
      options.rocksdb.local_dir = dir_ + "/rocksdb";
      options.restore_from = chk_;
      StreamEnvironment env(options);
      Build(env, dir_ + "/out-restored");
      absl::StatusOr<JobHandle> job = env.ExecuteAsync("restored");
      ++restores;
      if (!job.ok()) {
        if (failed++ == 0) std::cout << "first refusal: " << job.status() << "\n";
        continue;
      }
      absl::SleepFor(absl::Milliseconds(2));
      job->Cancel();
      absl::Status s = job->Wait();
      if (!s.ok() && !absl::IsCancelled(s)) ++failed;
    }
    WriteAll(path, valid);
  }
  WriteAll(metadata_path, valid_metadata);
  EXPECT_GT(restores, 20);
  EXPECT_LT(failed, restores);  // most changes decode to some state: the decoders really ran
  std::cout << restores << " restores of changed state files, " << failed << " refused\n";
}

INSTANTIATE_TEST_SUITE_P(Backends, CheckpointCorruptionTest,
                         ::testing::Values(StateBackendKind::kHashMap, StateBackendKind::kRocksDb),
                         [](const auto& info) {
                           return std::string(StateBackendName(info.param));
                         });

}  // namespace
}  // namespace sluice::internal
