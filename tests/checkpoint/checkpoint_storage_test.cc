// Checkpoint storage: CRC-32C, the write / commit / restore cycle, corruption detection with
// fallback to older checkpoints, retention of checkpoints and shared files, savepoints,
// resume-from-path, concurrent writers and abort.
#include "checkpoint/checkpoint_storage.h"

#include <sluice/core/key.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint.pb.h"
#include "checkpoint/crc32c.h"

namespace sluice::internal {
namespace {

namespace fs = std::filesystem;
using checkpoint::CheckpointMetadata;
using checkpoint::FileRef;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// --- Helpers -----------------------------------------------------------------------------------

void WriteLocalFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string ReadLocalFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

ino_t Inode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

// 20 bytes, distinct per `seed`.
std::string StateBytes(int seed) {
  std::string bytes;
  for (int i = 0; i < 20; ++i) bytes.push_back(static_cast<char>('a' + (seed * 7 + i) % 26));
  return bytes;
}

std::string StatusText(const absl::Status& status) { return std::string(status.ToString()); }

// One operator with one subtask referencing `keyed` and `op`, plus `rocksdb` files.
CheckpointMetadata MakeMetadata(const FileRef& keyed, const FileRef& op,
                                const std::vector<FileRef>& rocksdb = {}) {
  CheckpointMetadata metadata;
  metadata.set_timestamp_ms(1700000000000);
  metadata.set_job_name("clicks-per-user");
  checkpoint::OperatorState* state = metadata.add_operators();
  state->set_operator_id("0123456789abcdef0123456789abcdef");
  state->set_operator_name("Window(Tumbling 1 min)");
  state->set_parallelism(1);
  state->set_max_parallelism(128);
  checkpoint::SubtaskState* subtask = state->add_subtasks();
  subtask->set_subtask_index(0);
  subtask->mutable_key_groups()->set_start(0);
  subtask->mutable_key_groups()->set_end(127);
  *subtask->mutable_keyed_state() = keyed;
  for (int kg = 0; kg < 128; ++kg) subtask->add_key_group_offsets(0);  // one per key group
  *subtask->mutable_operator_state() = op;
  subtask->set_backend(rocksdb.empty() ? "hashmap" : "rocksdb");
  for (const FileRef& ref : rocksdb) *subtask->add_rocksdb_files() = ref;
  return metadata;
}

class CheckpointStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string temp = ::testing::TempDir();
    while (temp.size() > 1 && temp.back() == '/') temp.pop_back();
    base_ = absl::StrCat(temp, "/sluice_ckpt_", info->test_suite_name(), "_", info->name(), "_",
                         ::getpid());
    fs::remove_all(base_);
    fs::create_directories(base_);
    root_ = base_ + "/storage";
  }
  void TearDown() override { fs::remove_all(base_); }

  std::unique_ptr<CheckpointStorage> OpenStorage(int retained) {
    absl::StatusOr<std::unique_ptr<CheckpointStorage>> storage =
        CheckpointStorage::Open({.dir = root_, .retained = retained});
    EXPECT_TRUE(storage.ok()) << storage.status();
    return storage.ok() ? *std::move(storage) : nullptr;
  }

  std::string ChkDir(int64_t id) const { return absl::StrCat(root_, "/chk-", id); }

  // Commits checkpoint `id` with a keyed-state file and an operator-state file of 20 bytes each.
  void CommitSimple(CheckpointStorage& storage, int64_t id) {
    absl::StatusOr<std::unique_ptr<PendingCheckpoint>> pending = storage.Begin(id);
    ASSERT_TRUE(pending.ok()) << pending.status();
    absl::StatusOr<FileRef> keyed = (*pending)->WriteFile("window-1-0.keyed", StateBytes(id));
    ASSERT_TRUE(keyed.ok()) << keyed.status();
    absl::StatusOr<FileRef> op = (*pending)->WriteFile("window-1-0.operator", StateBytes(id + 1));
    ASSERT_TRUE(op.ok()) << op.status();
    ASSERT_TRUE((*pending)->Commit(MakeMetadata(*keyed, *op)).ok());
  }

  std::string base_;
  std::string root_;
};

// --- CRC-32C -----------------------------------------------------------------------------------

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  // RFC 3720 (iSCSI) B.4.
  EXPECT_EQ(Crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
}

// The crc32-instruction path (where the CPU has it) and the table path agree on every length and
// alignment, also when extending.
TEST(Crc32cTest, HardwareMatchesPortable) {
  std::string data;
  for (int i = 0; i < 300; ++i) data.push_back(static_cast<char>((i * 197 + 11) % 256));
  const std::string_view view(data);
  for (size_t start = 0; start < 9; ++start) {
    for (size_t len = 0; start + len <= view.size(); len += 7) {
      const std::string_view part = view.substr(start, len);
      EXPECT_EQ(Crc32c(part), Crc32cExtendPortable(0, part)) << start << " " << len;
      EXPECT_EQ(Crc32cExtend(0x12345678u, part), Crc32cExtendPortable(0x12345678u, part))
          << start << " " << len;
    }
  }
  EXPECT_EQ(Crc32cExtendPortable(0, "123456789"), 0xE3069283u);
}

TEST(Crc32cTest, ExtendMatchesWhole) {
  EXPECT_EQ(Crc32c("ab"), Crc32cExtend(Crc32c("a"), "b"));
  EXPECT_EQ(Crc32cExtend(0, "123456789"), 0xE3069283u);
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>((i * 131 + 7) % 256));
  const uint32_t whole = Crc32c(data);
  for (size_t split = 0; split <= data.size(); split += 37) {
    const std::string_view view(data);
    EXPECT_EQ(Crc32cExtend(Crc32c(view.substr(0, split)), view.substr(split)), whole) << split;
  }
}

// --- Options -----------------------------------------------------------------------------------

TEST_F(CheckpointStorageTest, OptionsAreValidated) {
  absl::StatusOr<std::unique_ptr<CheckpointStorage>> zero =
      CheckpointStorage::Open({.dir = root_, .retained = 0});
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(zero.status().message(), "CheckpointStorageOptions.retained must be >= 1, got 0");

  absl::StatusOr<std::unique_ptr<CheckpointStorage>> no_dir =
      CheckpointStorage::Open({.dir = "", .retained = 1});
  EXPECT_EQ(no_dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(StatusText(no_dir.status()), HasSubstr("CheckpointStorageOptions.dir"));

  EXPECT_FALSE(fs::exists(root_));
  ASSERT_NE(OpenStorage(1), nullptr);
  EXPECT_TRUE(fs::is_directory(root_));
}

TEST_F(CheckpointStorageTest, FileSystemErrorsNameThePath) {
  WriteLocalFile(base_ + "/plain", "not a directory");
  absl::StatusOr<std::unique_ptr<CheckpointStorage>> storage =
      CheckpointStorage::Open({.dir = base_ + "/plain/storage"});
  ASSERT_FALSE(storage.ok());
  EXPECT_THAT(StatusText(storage.status()), HasSubstr("checkpoint storage: cannot stat " + base_ +
                                                      "/plain/storage: Not a "
                                                      "directory"));
}

// --- Write, commit, restore ----------------------------------------------------------------------

TEST_F(CheckpointStorageTest, CommittedCheckpointRestoresExactly) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(1);
  ASSERT_NE(storage, nullptr);
  EXPECT_EQ(storage->dir(), root_);

  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> pending = storage->Begin(1);
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_EQ((*pending)->id(), 1);
  const std::string keyed_bytes("keyed\0state\xff", 12);
  const std::string op_bytes = "operator state";
  absl::StatusOr<FileRef> keyed = (*pending)->WriteFile("window-1-0.keyed", keyed_bytes);
  ASSERT_TRUE(keyed.ok()) << keyed.status();
  absl::StatusOr<FileRef> op = (*pending)->WriteFile("state/window-1/0.operator", op_bytes);
  ASSERT_TRUE(op.ok()) << op.status();
  EXPECT_EQ(keyed->path(), "chk-1/window-1-0.keyed");
  EXPECT_EQ(keyed->size(), 12u);
  EXPECT_EQ(keyed->crc32c(), Crc32c(keyed_bytes));
  EXPECT_EQ(op->path(), "chk-1/state/window-1/0.operator");
  EXPECT_EQ(ReadLocalFile(ChkDir(1) + "/window-1-0.keyed"), keyed_bytes);

  // Misuse while pending.
  EXPECT_EQ((*pending)->WriteFile("window-1-0.keyed", "again").status().code(),
            absl::StatusCode::kAlreadyExists);
  for (const char* bad : {"", "/abs", "../escape", "a//b", "x.tmp", "_metadata", "a/./b"}) {
    EXPECT_EQ((*pending)->WriteFile(bad, "x").status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_THAT(storage->CompletedIds(), IsEmpty());

  CheckpointMetadata written = MakeMetadata(*keyed, *op);
  ASSERT_TRUE((*pending)->Commit(written).ok());
  EXPECT_EQ((*pending)->Commit(written).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*pending)->WriteFile("late", "x").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(fs::exists(ChkDir(1) + "/_metadata.tmp"));
  EXPECT_THAT(storage->CompletedIds(), ElementsAre(1));

  std::vector<absl::Status> skipped;
  absl::StatusOr<RestoredCheckpoint> restored = storage->LoadLatestValid(&skipped);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_THAT(skipped, IsEmpty());
  EXPECT_EQ(restored->root, root_);
  EXPECT_EQ(restored->dir, ChkDir(1));
  const CheckpointMetadata& m = restored->metadata;
  EXPECT_EQ(m.format_version(), 4u);  // the _metadata envelope with its checksum
  EXPECT_EQ(m.checkpoint_id(), 1);
  EXPECT_FALSE(m.savepoint());
  EXPECT_EQ(m.job_name(), "clicks-per-user");
  ASSERT_EQ(m.operators_size(), 1);
  EXPECT_EQ(m.operators(0).operator_id(), "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(m.operators(0).max_parallelism(), 128);
  ASSERT_EQ(m.operators(0).subtasks_size(), 1);
  EXPECT_EQ(m.operators(0).subtasks(0).key_groups().end(), 127);
  written.set_format_version(4);
  written.set_checkpoint_id(1);
  EXPECT_EQ(m.SerializeAsString(), written.SerializeAsString());

  absl::StatusOr<std::string> keyed_read =
      restored->ReadFile(m.operators(0).subtasks(0).keyed_state());
  ASSERT_TRUE(keyed_read.ok()) << keyed_read.status();
  EXPECT_EQ(*keyed_read, keyed_bytes);
  absl::StatusOr<std::string> op_read =
      restored->ReadFile(m.operators(0).subtasks(0).operator_state());
  ASSERT_TRUE(op_read.ok()) << op_read.status();
  EXPECT_EQ(*op_read, op_bytes);

  // Ids are not reused.
  EXPECT_EQ(storage->Begin(1).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CheckpointStorageTest, UncommittedCheckpointIsInvisible) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(3);
  ASSERT_NE(storage, nullptr);
  CommitSimple(*storage, 1);

  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> pending = storage->Begin(2);
  ASSERT_TRUE(pending.ok()) << pending.status();
  ASSERT_TRUE((*pending)->WriteFile("window-1-0.keyed", StateBytes(9)).ok());
  EXPECT_TRUE(fs::is_directory(ChkDir(2)));
  EXPECT_THAT(storage->CompletedIds(), ElementsAre(1));
  absl::StatusOr<RestoredCheckpoint> restored = storage->LoadLatestValid();
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->metadata.checkpoint_id(), 1);
  // The same id cannot be begun twice at once.
  EXPECT_EQ(storage->Begin(2).status().code(), absl::StatusCode::kFailedPrecondition);

  // Dropping an uncommitted checkpoint discards it.
  pending->reset();
  EXPECT_FALSE(fs::exists(ChkDir(2)));

  // A crashed attempt's leftovers are removed when the id is begun again.
  fs::create_directories(ChkDir(3));
  WriteLocalFile(ChkDir(3) + "/window-1-0.keyed", "half-written");
  EXPECT_THAT(storage->CompletedIds(), ElementsAre(1));
  pending = storage->Begin(3);
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_FALSE(fs::exists(ChkDir(3) + "/window-1-0.keyed"));
  EXPECT_TRUE((*pending)->WriteFile("window-1-0.keyed", StateBytes(3)).ok());
}

// --- Corruption --------------------------------------------------------------------------------

class CorruptionTest : public CheckpointStorageTest {
 protected:
  // Commits checkpoints 1 and 2, damages chk-2 with `corrupt`, and expects LoadLatestValid to
  // refuse chk-2 by default with a DataLoss containing every `expected` and naming chk-1, and
  // with OlderCheckpoints::kFallBack to fall back to checkpoint 1, saying why it skipped chk-2.
  // With no `expected`, chk-2 is not complete and checkpoint 1 is simply the latest.
  void ExpectFallback(const std::function<void()>& corrupt,
                      const std::vector<std::string>& expected) {
    std::unique_ptr<CheckpointStorage> storage = OpenStorage(5);
    ASSERT_NE(storage, nullptr);
    CommitSimple(*storage, 1);
    CommitSimple(*storage, 2);
    corrupt();

    absl::StatusOr<RestoredCheckpoint> refused = storage->LoadLatestValid();
    if (!expected.empty()) {
      EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss) << refused.status();
      EXPECT_THAT(StatusText(refused.status()), HasSubstr("checkpoint " + ChkDir(2) + ":"));
      for (const std::string& text : expected) {
        EXPECT_THAT(StatusText(refused.status()), HasSubstr(text));
      }
      EXPECT_THAT(StatusText(refused.status()),
                  HasSubstr("this is the newest complete checkpoint of " + root_ +
                            "; refusing to resume from an older one (chk-1): exactly-once sinks "
                            "may have committed output after it"));
      EXPECT_THAT(StatusText(refused.status()),
                  HasSubstr("Repair or remove " + ChkDir(2) +
                            ", resume from an older checkpoint by its path, or set "
                            "CheckpointOptions::fall_back_to_older_checkpoint"));
      EXPECT_EQ(CheckpointStorage::LoadFromPath(root_).status(), refused.status());
    }

    std::vector<absl::Status> skipped;
    absl::StatusOr<RestoredCheckpoint> restored =
        storage->LoadLatestValid(&skipped, OlderCheckpoints::kFallBack);
    ASSERT_TRUE(restored.ok()) << restored.status();
    EXPECT_EQ(restored->metadata.checkpoint_id(), 1);
    EXPECT_EQ(restored->dir, ChkDir(1));
    EXPECT_EQ(restored->skipped, skipped);
    if (expected.empty()) {
      ASSERT_TRUE(refused.ok()) << refused.status();
      EXPECT_EQ(refused->metadata.checkpoint_id(), 1);
      EXPECT_THAT(skipped, IsEmpty());
      return;
    }
    ASSERT_EQ(skipped.size(), 1u);
    EXPECT_EQ(skipped[0].code(), absl::StatusCode::kDataLoss) << skipped[0];
    EXPECT_THAT(StatusText(skipped[0]), HasSubstr("checkpoint " + ChkDir(2) + ":"));
    for (const std::string& text : expected) EXPECT_THAT(StatusText(skipped[0]), HasSubstr(text));

    // Resuming from that directory explicitly reports the same problem.
    absl::StatusOr<RestoredCheckpoint> direct = CheckpointStorage::LoadFromPath(ChkDir(2));
    EXPECT_EQ(direct.status(), skipped[0]);
  }

  std::string KeyedFile() const { return ChkDir(2) + "/window-1-0.keyed"; }
};

TEST_F(CorruptionTest, TruncatedStateFile) {
  ExpectFallback([&] { fs::resize_file(KeyedFile(), 10); },
                 {"file chk-2/window-1-0.keyed is truncated: 10 bytes, expected 20"});
}

TEST_F(CorruptionTest, FlippedBitInStateFile) {
  ExpectFallback(
      [&] {
        std::string bytes = ReadLocalFile(KeyedFile());
        bytes[7] = static_cast<char>(bytes[7] ^ 0x10);
        WriteLocalFile(KeyedFile(), bytes);
      },
      {"file chk-2/window-1-0.keyed: checksum mismatch"});
}

TEST_F(CorruptionTest, DeletedStateFile) {
  ExpectFallback([&] { fs::remove(ChkDir(2) + "/window-1-0.operator"); },
                 {"file chk-2/window-1-0.operator is missing"});
}

TEST_F(CorruptionTest, DeletedMetadataMeansIncomplete) {
  ExpectFallback([&] { fs::remove(ChkDir(2) + "/_metadata"); }, {});
  absl::StatusOr<RestoredCheckpoint> direct = CheckpointStorage::LoadFromPath(ChkDir(2));
  EXPECT_EQ(direct.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(StatusText(direct.status()), HasSubstr(ChkDir(2)));
}

TEST_F(CorruptionTest, GarbageMetadata) {
  ExpectFallback([&] { WriteLocalFile(ChkDir(2) + "/_metadata", "this is not a protobuf"); },
                 {"_metadata is corrupt ("});
}

TEST_F(CorruptionTest, NewerFormatVersion) {
  ExpectFallback(
      [&] {
        absl::StatusOr<CheckpointMetadata> metadata =
            DecodeMetadataFile(ReadLocalFile(ChkDir(2) + "/_metadata"), ChkDir(2));
        ASSERT_TRUE(metadata.ok()) << metadata.status();
        metadata->set_format_version(5);
        WriteLocalFile(ChkDir(2) + "/_metadata", EncodeMetadataFile(*metadata));
      },
      {"_metadata has format version 5, this Sluice reads versions 1..4"});
}

TEST_F(CorruptionTest, CheckpointIdDisagreesWithDirectory) {
  ExpectFallback(
      [&] {
        absl::StatusOr<CheckpointMetadata> metadata =
            DecodeMetadataFile(ReadLocalFile(ChkDir(2) + "/_metadata"), ChkDir(2));
        ASSERT_TRUE(metadata.ok()) << metadata.status();
        metadata->set_checkpoint_id(7);
        WriteLocalFile(ChkDir(2) + "/_metadata", EncodeMetadataFile(*metadata));
      },
      {"_metadata has checkpoint id 7, expected 2"});
}

// The _metadata envelope: one flipped bit anywhere, or a cut at any length, is DataLoss naming the
// checkpoint (it used to load silently with state skipped or offsets shifted); a version 1-2
// file without the envelope still reads, a version 3 one without it does not.
TEST_F(CorruptionTest, EveryFlippedBitAndEveryTruncationOfTheMetadataIsDataLoss) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(5);
  ASSERT_NE(storage, nullptr);
  CommitSimple(*storage, 1);
  const std::string path = ChkDir(1) + "/_metadata";
  const std::string valid = ReadLocalFile(path);
  ASSERT_TRUE(CheckpointStorage::LoadFromPath(ChkDir(1)).ok());
  for (size_t i = 0; i < valid.size(); ++i) {
    for (int bit : {0, 7}) {
      std::string bytes = valid;
      bytes[i] = static_cast<char>(bytes[i] ^ (1 << bit));
      WriteLocalFile(path, bytes);
      absl::Status s = CheckpointStorage::LoadFromPath(ChkDir(1)).status();
      ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss)
          << "bit " << bit << " of byte " << i << ": " << s;
      ASSERT_THAT(StatusText(s), HasSubstr("checkpoint " + ChkDir(1) + ": _metadata"));
    }
  }
  for (size_t n = 0; n < valid.size(); ++n) {
    WriteLocalFile(path, valid.substr(0, n));
    absl::Status s = CheckpointStorage::LoadFromPath(ChkDir(1)).status();
    ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << "cut at " << n << ": " << s;
  }
  absl::StatusOr<CheckpointMetadata> metadata = DecodeMetadataFile(valid, ChkDir(1));
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  metadata->set_format_version(2);  // an older Sluice's file: no envelope
  WriteLocalFile(path, metadata->SerializeAsString());
  EXPECT_TRUE(CheckpointStorage::LoadFromPath(ChkDir(1)).ok());
  metadata->set_format_version(3);
  WriteLocalFile(path, metadata->SerializeAsString());
  EXPECT_THAT(StatusText(CheckpointStorage::LoadFromPath(ChkDir(1)).status()),
              HasSubstr("_metadata is corrupt (format version 3 without its checksum)"));
}

// Fields a restore uses are checked even when the checksum matches (a file written by a buggy or
// foreign writer): each mutation is DataLoss naming the field.
TEST_F(CorruptionTest, MetadataFieldsAreValidatedBeforeUse) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(5);
  ASSERT_NE(storage, nullptr);
  CommitSimple(*storage, 1);
  const std::string path = ChkDir(1) + "/_metadata";
  const std::string valid = ReadLocalFile(path);
  const std::vector<std::pair<std::function<void(CheckpointMetadata&)>, std::string>> cases = {
      {[](CheckpointMetadata& m) { m.mutable_operators(0)->set_operator_id(""); },
       "an operator without id"},
      {[](CheckpointMetadata& m) { *m.add_operators() = m.operators(0); }, "twice"},
      {[](CheckpointMetadata& m) { m.mutable_operators(0)->set_operator_id("node-0"); },
       "operator id node-0 is not 32 hex digits"},
      {[](CheckpointMetadata& m) { m.mutable_operators(0)->set_parallelism(2); },
       "parallelism 2 with 1 subtask states"},
      {[](CheckpointMetadata& m) { m.mutable_operators(0)->set_max_parallelism(0); },
       "max parallelism 0"},
      {[](CheckpointMetadata& m) {
         m.mutable_operators(0)->mutable_subtasks(0)->set_subtask_index(1);
       },
       "subtask index 1"},
      {[](CheckpointMetadata& m) {
         m.mutable_operators(0)->mutable_subtasks(0)->mutable_key_groups()->set_end(300);
       },
       "key groups 0..300"},
      {[](CheckpointMetadata& m) {
         m.mutable_operators(0)->mutable_subtasks(0)->mutable_key_group_offsets()->RemoveLast();
       },
       "key-group offsets"},
      {[](CheckpointMetadata& m) {
         m.mutable_operators(0)->mutable_subtasks(0)->set_key_group_offsets(5, 1 << 30);
       },
       "key-group offsets"},
      {[](CheckpointMetadata& m) { m.mutable_operators(0)->mutable_subtasks(0)->set_backend("x"); },
       "backend 'x'"},
  };
  for (const auto& [mutate, expected] : cases) {
    absl::StatusOr<CheckpointMetadata> metadata = DecodeMetadataFile(valid, ChkDir(1));
    ASSERT_TRUE(metadata.ok()) << metadata.status();
    mutate(*metadata);
    WriteLocalFile(path, EncodeMetadataFile(*metadata));
    absl::Status s = CheckpointStorage::LoadFromPath(ChkDir(1)).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << expected << ": " << s;
    EXPECT_THAT(StatusText(s), HasSubstr(expected));
  }
}

TEST_F(CheckpointStorageTest, RandomMetadataNeverCrashes) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(1);
  ASSERT_NE(storage, nullptr);
  CommitSimple(*storage, 1);
  const std::string metadata_path = ChkDir(1) + "/_metadata";
  const std::string valid = ReadLocalFile(metadata_path);
  std::mt19937 rng(42);
  for (int round = 0; round < 300; ++round) {
    std::string bytes;
    if (round % 2 == 0) {
      bytes.resize(rng() % 64);
      for (char& c : bytes) c = static_cast<char>(rng());
    } else {  // a valid _metadata with a few bytes changed or cut short
      bytes = valid;
      for (int i = 0; i < 3; ++i) bytes[rng() % bytes.size()] = static_cast<char>(rng());
      bytes.resize(rng() % (bytes.size() + 1));
    }
    WriteLocalFile(metadata_path, bytes);
    absl::StatusOr<RestoredCheckpoint> restored = CheckpointStorage::LoadFromPath(ChkDir(1));
    if (!restored.ok()) {
      EXPECT_EQ(restored.status().code(), absl::StatusCode::kDataLoss) << restored.status();
      EXPECT_THAT(StatusText(restored.status()), HasSubstr("checkpoint " + ChkDir(1) + ":"));
    }
  }
}

TEST_F(CheckpointStorageTest, ReadFileRechecksTheFile) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(1);
  ASSERT_NE(storage, nullptr);
  CommitSimple(*storage, 1);
  absl::StatusOr<RestoredCheckpoint> restored = storage->LoadLatestValid();
  ASSERT_TRUE(restored.ok()) << restored.status();
  fs::resize_file(ChkDir(1) + "/window-1-0.keyed", 5);
  absl::StatusOr<std::string> bytes =
      restored->ReadFile(restored->metadata.operators(0).subtasks(0).keyed_state());
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(StatusText(bytes.status()),
              HasSubstr("checkpoint " + ChkDir(1) +
                        ": file chk-1/window-1-0.keyed is truncated: 5 bytes, expected 20"));
  FileRef escaping;
  escaping.set_path("../outside");
  EXPECT_EQ(restored->ReadFile(escaping).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CheckpointStorageTest, AllCheckpointsCorruptIsDataLoss) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(5);
  ASSERT_NE(storage, nullptr);
  CommitSimple(*storage, 1);
  CommitSimple(*storage, 2);
  fs::resize_file(ChkDir(1) + "/window-1-0.keyed", 3);
  WriteLocalFile(ChkDir(2) + "/_metadata", "garbage");

  std::vector<absl::Status> skipped;
  absl::StatusOr<RestoredCheckpoint> restored =
      storage->LoadLatestValid(&skipped, OlderCheckpoints::kFallBack);
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(StatusText(restored.status()), HasSubstr("none of the 2 complete checkpoints"));
  EXPECT_THAT(StatusText(restored.status()), HasSubstr("checkpoint " + ChkDir(2) + ": _metadata"));
  EXPECT_THAT(StatusText(restored.status()),
              HasSubstr("checkpoint " + ChkDir(1) + ": file chk-1/window-1-0.keyed is truncated"));
  EXPECT_EQ(skipped.size(), 2u);
  EXPECT_EQ(CheckpointStorage::LoadFromPath(root_, OlderCheckpoints::kFallBack).status(),
            restored.status());
  // By default the damaged newest one is refused, naming the older one.
  absl::Status refused = CheckpointStorage::LoadFromPath(root_).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(StatusText(refused), HasSubstr("checkpoint " + ChkDir(2) + ": _metadata"));
  EXPECT_THAT(StatusText(refused), HasSubstr("refusing to resume from an older one (chk-1)"));
}

TEST_F(CheckpointStorageTest, EmptyStorageIsNotFound) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(1);
  ASSERT_NE(storage, nullptr);
  EXPECT_THAT(storage->CompletedIds(), IsEmpty());
  EXPECT_EQ(storage->LoadLatestValid().status().code(), absl::StatusCode::kNotFound);
  // Only an incomplete checkpoint: still nothing to restore.
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> pending = storage->Begin(1);
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(storage->LoadLatestValid().status().code(), absl::StatusCode::kNotFound);
}

// --- Retention and shared files ------------------------------------------------------------------

TEST_F(CheckpointStorageTest, RetentionKeepsNewestAndReferencedSharedFiles) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(2);
  ASSERT_NE(storage, nullptr);
  const std::string local = base_ + "/local";
  fs::create_directories(local);
  WriteLocalFile(local + "/a.sst", "sst file a");
  WriteLocalFile(local + "/b.sst", "sst file b, first copy");
  const std::string shared_a = root_ + "/shared/a.sst";
  const std::string shared_b = root_ + "/shared/b.sst";
  // An incomplete leftover with a lower id: removed by the first commit.
  fs::create_directories(ChkDir(0));

  FileRef b_ref;
  ino_t b_inode = 0;
  for (int64_t id = 1; id <= 4; ++id) {
    absl::StatusOr<std::unique_ptr<PendingCheckpoint>> pending = storage->Begin(id);
    ASSERT_TRUE(pending.ok()) << pending.status();
    std::vector<FileRef> rocksdb;
    if (id == 1) {
      absl::StatusOr<FileRef> a = (*pending)->AddFile("a.sst", local + "/a.sst");
      ASSERT_TRUE(a.ok()) << a.status();
      EXPECT_EQ(a->path(), "shared/a.sst");
      EXPECT_EQ(a->crc32c(), Crc32c("sst file a"));
      rocksdb.push_back(*a);
    }
    absl::StatusOr<FileRef> b = (*pending)->AddFile("b.sst", local + "/b.sst");
    ASSERT_TRUE(b.ok()) << b.status();
    if (id == 1) {
      b_ref = *b;
      b_inode = Inode(shared_b);
      // The local file may go away (compaction); a later checkpoint's new local file of the same
      // name and size is not uploaded again.
      fs::remove(local + "/b.sst");
      WriteLocalFile(local + "/b.sst", "SST FILE B, OTHER COPY");
    }
    EXPECT_EQ(b->SerializeAsString(), b_ref.SerializeAsString()) << id;
    EXPECT_EQ(Inode(shared_b), b_inode);
    rocksdb.push_back(*b);
    absl::StatusOr<FileRef> keyed = (*pending)->WriteFile("window-1-0.keyed", StateBytes(id));
    ASSERT_TRUE(keyed.ok());
    ASSERT_TRUE((*pending)->Commit(MakeMetadata(*keyed, FileRef(), rocksdb)).ok());
    EXPECT_TRUE(storage->LastRetentionStatus().ok()) << storage->LastRetentionStatus();

    if (id == 1) {
      EXPECT_FALSE(fs::exists(ChkDir(0)));
    }
    // shared/a is referenced by chk-1 only: it goes when chk-1 does (at the third commit).
    EXPECT_EQ(fs::exists(shared_a), id <= 2) << id;
    EXPECT_TRUE(fs::exists(shared_b)) << id;
  }
  EXPECT_THAT(storage->CompletedIds(), ElementsAre(4, 3));
  EXPECT_FALSE(fs::exists(ChkDir(1)));
  EXPECT_FALSE(fs::exists(ChkDir(2)));
  EXPECT_EQ(ReadLocalFile(shared_b), "sst file b, first copy");

  absl::StatusOr<RestoredCheckpoint> restored = storage->LoadLatestValid();
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->metadata.checkpoint_id(), 4);
  absl::StatusOr<std::string> b_bytes =
      restored->ReadFile(restored->metadata.operators(0).subtasks(0).rocksdb_files(0));
  ASSERT_TRUE(b_bytes.ok()) << b_bytes.status();
  EXPECT_EQ(*b_bytes, "sst file b, first copy");
}

// Incremental HashMap checkpoints: full and change files written into shared/ by one checkpoint
// and listed (keyed_state, keyed_changes) by the later ones. A file stays while a retained
// checkpoint lists it; a checkpoint with change files is format version 2; a name is written once.
TEST_F(CheckpointStorageTest, SharedKeyedFilesLiveAsLongAsACheckpointListsThem) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(1);
  ASSERT_NE(storage, nullptr);
  FileRef full;
  std::vector<FileRef> changes;
  for (int64_t id = 1; id <= 3; ++id) {
    absl::StatusOr<std::unique_ptr<PendingCheckpoint>> pending = storage->Begin(id);
    ASSERT_TRUE(pending.ok()) << pending.status();
    const std::string name = absl::StrCat("keyed/t-", id, ".slkc");
    absl::StatusOr<FileRef> ref = (*pending)->WriteSharedFile(name, StateBytes(id));
    ASSERT_TRUE(ref.ok()) << ref.status();
    EXPECT_EQ(ref->path(), "shared/" + name);
    EXPECT_EQ(ref->size(), StateBytes(id).size());
    EXPECT_EQ(ref->crc32c(), Crc32c(StateBytes(id)));
    absl::StatusOr<FileRef> again = (*pending)->WriteSharedFile(name, "other");
    EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
    if (id == 1) {
      full = *ref;
    } else {
      changes.push_back(*ref);
    }
    CheckpointMetadata metadata = MakeMetadata(full, FileRef());
    for (const FileRef& c : changes) {
      checkpoint::KeyedStateChanges* added =
          metadata.mutable_operators(0)->mutable_subtasks(0)->add_keyed_changes();
      *added->mutable_file() = c;
      for (int kg = 0; kg < 128; ++kg) added->add_key_group_offsets(0);  // one per key group
    }
    ASSERT_TRUE((*pending)->Commit(metadata).ok());
    EXPECT_FALSE(fs::exists(ChkDir(id - 1)));  // retained = 1
    // Every file of the chain is still there: the newest checkpoint lists them all.
    for (int64_t i = 1; i <= id; ++i) {
      EXPECT_EQ(ReadLocalFile(absl::StrCat(root_, "/shared/keyed/t-", i, ".slkc")), StateBytes(i));
    }
    absl::StatusOr<RestoredCheckpoint> restored = storage->LoadLatestValid();
    ASSERT_TRUE(restored.ok()) << restored.status();
    EXPECT_EQ(restored->metadata.format_version(), 4u);
  }
  // A corrupt change file fails validation naming it.
  WriteLocalFile(root_ + "/shared/keyed/t-2.slkc", "corrupt");
  absl::StatusOr<RestoredCheckpoint> corrupt = storage->LoadLatestValid();
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(corrupt.status().message()), HasSubstr("shared/keyed/t-2.slkc"));
  // A new full file: the old chain goes once a checkpoint without it commits.
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> pending = storage->Begin(4);
  ASSERT_TRUE(pending.ok());
  absl::StatusOr<FileRef> ref = (*pending)->WriteSharedFile("keyed/u-1.slkc", StateBytes(4));
  ASSERT_TRUE(ref.ok()) << ref.status();
  ASSERT_TRUE((*pending)->Commit(MakeMetadata(*ref, FileRef())).ok());
  EXPECT_FALSE(fs::exists(root_ + "/shared/keyed/t-1.slkc"));
  EXPECT_FALSE(fs::exists(root_ + "/shared/keyed/t-3.slkc"));
  EXPECT_TRUE(fs::exists(root_ + "/shared/keyed/u-1.slkc"));
  // After Commit, and in a savepoint, no shared file can be written.
  EXPECT_EQ((*pending)->WriteSharedFile("keyed/u-2.slkc", "x").status().code(),
            absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> savepoint =
      CheckpointStorage::BeginSavepoint(base_ + "/savepoint", 5);
  ASSERT_TRUE(savepoint.ok());
  EXPECT_EQ((*savepoint)->WriteSharedFile("keyed/v.slkc", "x").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(CheckpointStorageTest, RetentionSparesPendingCheckpointsAndUnreadableMetadata) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(1);
  ASSERT_NE(storage, nullptr);
  const std::string local = base_ + "/c.sst";
  WriteLocalFile(local, "sst file c");

  // Checkpoint 5 is pending (it uploaded shared/c.sst) while 6 commits.
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> five = storage->Begin(5);
  ASSERT_TRUE(five.ok());
  absl::StatusOr<FileRef> c = (*five)->AddFile("c.sst", local);
  ASSERT_TRUE(c.ok()) << c.status();
  CommitSimple(*storage, 6);
  EXPECT_TRUE(fs::exists(root_ + "/shared/c.sst"));
  EXPECT_TRUE(fs::is_directory(ChkDir(5)));

  // Checkpoint 5 commits late (subsumed): it is complete and its own retention pass keeps it.
  CheckpointMetadata metadata;
  *metadata.add_extra_files() = *c;
  ASSERT_TRUE((*five)->Commit(metadata).ok());
  EXPECT_THAT(storage->CompletedIds(), ElementsAre(6, 5));
  EXPECT_TRUE(fs::exists(root_ + "/shared/c.sst"));
  // The next commit applies retention=1 to it, and to the shared file only it referenced.
  CommitSimple(*storage, 7);
  EXPECT_THAT(storage->CompletedIds(), ElementsAre(7));
  EXPECT_FALSE(fs::exists(root_ + "/shared/c.sst"));

  // A retained checkpoint whose _metadata cannot be read: no shared file is deleted.
  WriteLocalFile(root_ + "/shared/orphan.sst", "orphan");
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> eight = storage->Begin(8);
  ASSERT_TRUE(eight.ok());
  ASSERT_TRUE((*eight)->Commit(CheckpointMetadata()).ok());
  EXPECT_FALSE(fs::exists(root_ + "/shared/orphan.sst"));  // all readable: orphan deleted

  // Checkpoints 9 and 10 run concurrently; 10 completes first and then its _metadata rots. When
  // 9 commits, retention keeps 10 (the newest) and 9 (just committed) but cannot read 10.
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> nine = storage->Begin(9);
  ASSERT_TRUE(nine.ok());
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> ten = storage->Begin(10);
  ASSERT_TRUE(ten.ok());
  ASSERT_TRUE((*ten)->Commit(CheckpointMetadata()).ok());
  WriteLocalFile(ChkDir(10) + "/_metadata", "garbage");
  WriteLocalFile(root_ + "/shared/orphan.sst", "orphan");
  ASSERT_TRUE((*nine)->Commit(CheckpointMetadata()).ok());
  EXPECT_THAT(storage->CompletedIds(), ElementsAre(10, 9));
  EXPECT_TRUE(fs::exists(root_ + "/shared/orphan.sst"));
  EXPECT_EQ(storage->LastRetentionStatus().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(StatusText(storage->LastRetentionStatus()), HasSubstr(ChkDir(10)));
}

TEST_F(CheckpointStorageTest, ConcurrentAddFileOfOneSharedName) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(1);
  ASSERT_NE(storage, nullptr);
  const std::string local = base_ + "/d.sst";
  WriteLocalFile(local, std::string(100000, 'd'));
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> pending = storage->Begin(1);
  ASSERT_TRUE(pending.ok());
  std::vector<absl::StatusOr<FileRef>> refs(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] { refs[t] = (*pending)->AddFile("d.sst", local); });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::StatusOr<FileRef>& ref : refs) {
    ASSERT_TRUE(ref.ok()) << ref.status();
    EXPECT_EQ(ref->path(), "shared/d.sst");
    EXPECT_EQ(ref->size(), 100000u);
    EXPECT_EQ(ref->crc32c(), Crc32c(std::string(100000, 'd')));
  }
  EXPECT_FALSE(fs::exists(root_ + "/shared/d.sst.tmp"));
}

// --- Savepoints and resume-from-path ------------------------------------------------------------

TEST_F(CheckpointStorageTest, SavepointIsSelfContained) {
  const std::string savepoint_dir = base_ + "/savepoints/sp-1";
  const std::string local = base_ + "/e.sst";
  WriteLocalFile(local, "sst file e");
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> pending =
      CheckpointStorage::BeginSavepoint(savepoint_dir, 12);
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_TRUE((*pending)->is_savepoint());
  absl::StatusOr<FileRef> op = (*pending)->WriteFile("window-1-0.operator", "operator state");
  ASSERT_TRUE(op.ok()) << op.status();
  EXPECT_EQ(op->path(), "window-1-0.operator");
  absl::StatusOr<FileRef> sst = (*pending)->AddFile("e.sst", local);
  ASSERT_TRUE(sst.ok()) << sst.status();
  EXPECT_EQ(sst->path(), "e.sst");
  EXPECT_EQ(ReadLocalFile(savepoint_dir + "/e.sst"), "sst file e");
  EXPECT_EQ((*pending)->AddFile("e.sst", local).status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE((*pending)->Commit(MakeMetadata(FileRef(), *op, {*sst})).ok());

  // Moving the savepoint does not break it.
  const std::string moved = base_ + "/moved-savepoint";
  fs::rename(savepoint_dir, moved);
  absl::StatusOr<RestoredCheckpoint> restored = CheckpointStorage::LoadFromPath(moved + "/");
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(restored->metadata.savepoint());
  EXPECT_EQ(restored->metadata.checkpoint_id(), 12);
  EXPECT_EQ(restored->root, moved);
  EXPECT_EQ(restored->dir, moved);
  const checkpoint::SubtaskState& subtask = restored->metadata.operators(0).subtasks(0);
  EXPECT_EQ(*restored->ReadFile(subtask.operator_state()), "operator state");
  EXPECT_EQ(*restored->ReadFile(subtask.rocksdb_files(0)), "sst file e");

  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> again =
      CheckpointStorage::BeginSavepoint(moved, 13);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(StatusText(again.status()), HasSubstr(moved));
}

TEST_F(CheckpointStorageTest, LoadFromCheckpointDirectoryAndRoot) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(2);
  ASSERT_NE(storage, nullptr);
  CommitSimple(*storage, 1);
  CommitSimple(*storage, 2);
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> pending = storage->Begin(3);
  ASSERT_TRUE(pending.ok());

  absl::StatusOr<RestoredCheckpoint> from_chk = CheckpointStorage::LoadFromPath(ChkDir(1));
  ASSERT_TRUE(from_chk.ok()) << from_chk.status();
  EXPECT_EQ(from_chk->metadata.checkpoint_id(), 1);
  EXPECT_EQ(from_chk->root, root_);
  EXPECT_EQ(from_chk->dir, ChkDir(1));
  EXPECT_EQ(*from_chk->ReadFile(from_chk->metadata.operators(0).subtasks(0).keyed_state()),
            StateBytes(1));

  for (const std::string& path : {root_, root_ + "/"}) {
    absl::StatusOr<RestoredCheckpoint> from_root = CheckpointStorage::LoadFromPath(path);
    ASSERT_TRUE(from_root.ok()) << from_root.status();
    EXPECT_EQ(from_root->metadata.checkpoint_id(), 2);
    EXPECT_EQ(from_root->dir, ChkDir(2));
  }

  absl::StatusOr<RestoredCheckpoint> incomplete = CheckpointStorage::LoadFromPath(ChkDir(3));
  EXPECT_EQ(incomplete.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(StatusText(incomplete.status()), HasSubstr(ChkDir(3)));
  absl::StatusOr<RestoredCheckpoint> missing = CheckpointStorage::LoadFromPath(base_ + "/nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(StatusText(missing.status()), HasSubstr(base_ + "/nope"));
  absl::StatusOr<RestoredCheckpoint> unrelated = CheckpointStorage::LoadFromPath(base_);
  EXPECT_EQ(unrelated.status().code(), absl::StatusCode::kNotFound);
}

// --- Concurrency and abort ---------------------------------------------------------------------

TEST_F(CheckpointStorageTest, ConcurrentWritersIntoOneCheckpoint) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(1);
  ASSERT_NE(storage, nullptr);
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> pending = storage->Begin(1);
  ASSERT_TRUE(pending.ok());
  constexpr int kThreads = 4;
  constexpr int kFilesPerThread = 50;
  const auto contents = [](int t, int i) { return absl::StrCat("subtask ", t, " file ", i); };
  std::vector<std::vector<absl::StatusOr<FileRef>>> refs(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kFilesPerThread; ++i) {
        refs[t].push_back(
            (*pending)->WriteFile(absl::StrCat("op-", t, "/part-", i), contents(t, i)));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  CheckpointMetadata metadata;
  checkpoint::OperatorState* op = metadata.add_operators();
  op->set_operator_id("fedcba9876543210fedcba9876543210");
  op->set_parallelism(kThreads);
  op->set_max_parallelism(128);
  for (int t = 0; t < kThreads; ++t) {
    checkpoint::SubtaskState* subtask = op->add_subtasks();
    subtask->set_subtask_index(t);
    const KeyGroupRange range = KeyGroupRange::ForSubtask(128, kThreads, t);
    subtask->mutable_key_groups()->set_start(range.start);
    subtask->mutable_key_groups()->set_end(range.end);
    for (const absl::StatusOr<FileRef>& ref : refs[t]) {
      ASSERT_TRUE(ref.ok()) << ref.status();
      *subtask->add_rocksdb_files() = *ref;
    }
  }
  ASSERT_TRUE((*pending)->Commit(metadata).ok());

  absl::StatusOr<RestoredCheckpoint> restored = storage->LoadLatestValid();
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_EQ(restored->metadata.operators(0).subtasks_size(), kThreads);
  for (int t = 0; t < kThreads; ++t) {
    const checkpoint::SubtaskState& subtask = restored->metadata.operators(0).subtasks(t);
    ASSERT_EQ(subtask.rocksdb_files_size(), kFilesPerThread);
    for (int i = 0; i < kFilesPerThread; ++i) {
      absl::StatusOr<std::string> bytes = restored->ReadFile(subtask.rocksdb_files(i));
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      EXPECT_EQ(*bytes, contents(t, i));
    }
  }
}

TEST_F(CheckpointStorageTest, AbortRemovesTheDirectory) {
  std::unique_ptr<CheckpointStorage> storage = OpenStorage(1);
  ASSERT_NE(storage, nullptr);
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> pending = storage->Begin(3);
  ASSERT_TRUE(pending.ok());
  ASSERT_TRUE((*pending)->WriteFile("window-1-0.keyed", StateBytes(3)).ok());
  EXPECT_TRUE(fs::exists(ChkDir(3) + "/window-1-0.keyed"));
  (*pending)->Abort();
  EXPECT_FALSE(fs::exists(ChkDir(3)));
  (*pending)->Abort();  // idempotent
  EXPECT_EQ((*pending)->WriteFile("more", "x").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*pending)->Commit(CheckpointMetadata()).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(fs::exists(ChkDir(3)));
  EXPECT_THAT(storage->CompletedIds(), IsEmpty());
  // The id can be tried again.
  EXPECT_TRUE(storage->Begin(3).ok());

  // A savepoint into a directory that already held files removes only its own files.
  const std::string savepoint_dir = base_ + "/user-dir";
  fs::create_directories(savepoint_dir);
  WriteLocalFile(savepoint_dir + "/notes.txt", "mine");
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> savepoint =
      CheckpointStorage::BeginSavepoint(savepoint_dir, 4);
  ASSERT_TRUE(savepoint.ok());
  EXPECT_EQ((*savepoint)->WriteFile("notes.txt", "theirs").status().code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE((*savepoint)->WriteFile("window-1-0.operator", "state").ok());
  (*savepoint)->Abort();
  EXPECT_FALSE(fs::exists(savepoint_dir + "/window-1-0.operator"));
  EXPECT_EQ(ReadLocalFile(savepoint_dir + "/notes.txt"), "mine");
}

}  // namespace
}  // namespace sluice::internal
