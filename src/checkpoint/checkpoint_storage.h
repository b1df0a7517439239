// Checkpoint storage: the on-disk layer of checkpoints and savepoints (directories, `_metadata`,
// checksums, retention, restore validation).
//
//   SLUICE_ASSIGN_OR_RETURN(auto storage, CheckpointStorage::Open({.dir = "/tmp/ckpt"}));
//   SLUICE_ASSIGN_OR_RETURN(auto pending, storage->Begin(7));
//   SLUICE_ASSIGN_OR_RETURN(checkpoint::FileRef ref, pending->WriteFile("op-1-0.keyed", bytes));
//   ... put `ref` into a CheckpointMetadata ...
//   SLUICE_RETURN_IF_ERROR(pending->Commit(std::move(metadata)));
//   SLUICE_ASSIGN_OR_RETURN(RestoredCheckpoint restored, storage->LoadLatestValid());
//
// Layout under the storage root:
//   chk-<id>/<name>       files written by checkpoint <id> (WriteFile)
//   chk-<id>/_metadata    written last; a checkpoint is complete exactly when it is durable
//   shared/<name>         files shared between checkpoints (AddFile), e.g. RocksDB SST files
// A savepoint directory is self-contained: its files and its `_metadata` (savepoint = true).
// FileRef paths are relative to the root (the savepoint directory for a savepoint).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "checkpoint/checkpoint.pb.h"
#include "checkpoint/metadata_file.h"

namespace sluice::internal {

// kCheckpointFormatVersion, EncodeMetadataFile, DecodeMetadataFile: checkpoint/metadata_file.h.

struct CheckpointStorageOptions {
  // The storage root; created (with its parents) if missing. Required.
  std::string dir;
  // How many complete checkpoints to keep (the newest by id), >= 1. Default 1.
  int retained = 1;
};

// What a restore from a storage root does when its newest complete checkpoint does not validate.
// Exactly-once holds only against the newest completed checkpoint: exactly-once sinks may have
// committed output after an older one, which a resume from it produces again. So the default
// refuses (DataLoss naming the damaged checkpoint and the older ones); kFallBack takes the newest
// older checkpoint that validates and says what it skipped (RestoredCheckpoint::skipped).
enum class OlderCheckpoints { kRefuse, kFallBack };

// What a restore reads: a validated complete checkpoint or savepoint.
struct RestoredCheckpoint {
  checkpoint::CheckpointMetadata metadata;
  std::string root;  // FileRef paths are relative to this
  std::string dir;   // the checkpoint's own directory (chk-<id> or the savepoint dir)
  // With OlderCheckpoints::kFallBack: why each newer complete checkpoint was skipped (empty when
  // the newest one was restored).
  std::vector<absl::Status> skipped;

  // Reads a referenced file, verifying its size and CRC again: DataLoss naming `dir` and the file
  // on a mismatch, InvalidArgument for a path that leaves the root.
  absl::StatusOr<std::string> ReadFile(const checkpoint::FileRef& ref) const;
};

namespace checkpoint_storage_internal {
struct StorageState;  // shared by a CheckpointStorage and its PendingCheckpoints
}  // namespace checkpoint_storage_internal

// An in-progress checkpoint or savepoint. Thread-safe: subtasks on different threads write files
// concurrently. It may outlive its CheckpointStorage. Destroying it without Commit aborts it.
//
// File names (`name` below) are relative paths inside the checkpoint: '/'-separated components,
// none empty, "." or ".."; they may not end in ".tmp" (temporary files) nor be "_metadata".
class PendingCheckpoint {
 public:
  ~PendingCheckpoint();
  PendingCheckpoint(const PendingCheckpoint&) = delete;
  PendingCheckpoint& operator=(const PendingCheckpoint&) = delete;

  int64_t id() const { return id_; }
  bool is_savepoint() const { return savepoint_; }
  // The checkpoint's directory (chk-<id> or the savepoint directory).
  const std::string& dir() const { return dir_; }

  // Writes <dir>/<name> durably (<name>.tmp, write, fsync, rename, fsync of the directory) and
  // returns its FileRef (path relative to the root, size, crc32c). AlreadyExists if `name` was
  // written (or added, for a savepoint) before; FailedPrecondition after Commit or Abort.
  absl::StatusOr<checkpoint::FileRef> WriteFile(std::string_view name, std::string_view bytes);

  // Checkpoints: makes the local file `source_path` available as <root>/shared/<name> (copy to
  // shared/<name>.tmp, fsync, rename) and returns its FileRef. If shared/<name> already exists
  // with the size of the source it was uploaded by an earlier checkpoint and is reused, not
  // copied (names are unique per content by the caller's contract); its CRC is then read back
  // from the shared file. Adding the same name twice to one checkpoint returns the same FileRef.
  // A shared file added by a pending checkpoint is protected from retention until that
  // checkpoint commits or aborts.
  // Savepoints (self-contained): copies the file to <dir>/<name> instead; AlreadyExists as for
  // WriteFile.
  absl::StatusOr<checkpoint::FileRef> AddFile(std::string_view name,
                                              const std::string& source_path);

  // Checkpoints only: writes <root>/shared/<name> durably from `bytes` (a file later checkpoints
  // may reference, e.g. incremental keyed state) and returns its FileRef. AlreadyExists if the
  // file exists (names are unique by the caller's contract); protected from retention like AddFile.
  absl::StatusOr<checkpoint::FileRef> WriteSharedFile(std::string_view name,
                                                      std::string_view bytes);

  // Makes the checkpoint complete: sets format_version, checkpoint_id and savepoint, writes
  // _metadata (via _metadata.tmp, fsync, rename, fsync of the directory). Only after Commit
  // returns OK is the checkpoint complete. For checkpoints it then applies retention, best effort:
  // a retention failure does not fail Commit (see CheckpointStorage::LastRetentionStatus).
  // FailedPrecondition if already committed or aborted.
  absl::Status Commit(checkpoint::CheckpointMetadata metadata);

  // Discards the checkpoint (aborted, timed out, declined): removes its directory. For a savepoint
  // into a directory that existed before, removes only the files this savepoint wrote. Idempotent;
  // no effect after a successful Commit.
  void Abort();

 private:
  friend class CheckpointStorage;
  enum class Phase { kOpen, kCommitted, kAborted };

  PendingCheckpoint(std::shared_ptr<checkpoint_storage_internal::StorageState> storage, int64_t id,
                    std::string root, std::string dir, bool savepoint, bool created_dir);

  // The FileRef path prefix of files in dir_ ("chk-<id>/" or "" for a savepoint).
  std::string RelativePrefix() const;
  // Reserves `name` for a new file in dir_: InvalidArgument / AlreadyExists / FailedPrecondition.
  // ReleaseName undoes it after a failed write.
  absl::Status ReserveName(std::string_view name);
  void ReleaseName(const std::string& name);
  absl::StatusOr<checkpoint::FileRef> AddSharedFile(std::string_view name,
                                                    const std::string& source_path);
  // Validates shared file `name` and protects it from retention while this checkpoint is pending:
  // FailedPrecondition after Commit or Abort ("cannot <verb> ..."); with `must_be_new`,
  // AlreadyExists if this checkpoint protected it before.
  absl::Status ProtectSharedName(std::string_view name, std::string_view verb, bool must_be_new);
  // Drops this checkpoint's registrations in the storage (live id, protected shared files).
  // Requires mu_.
  void Unregister();

  const std::shared_ptr<checkpoint_storage_internal::StorageState> storage_;  // null: savepoint
  const int64_t id_;
  const std::string root_;
  const std::string dir_;
  const bool savepoint_;
  const bool created_dir_;

  mutable std::mutex mu_;
  Phase phase_ = Phase::kOpen;
  bool registered_ = true;
  std::set<std::string> names_;         // written into dir_ (or being written)
  std::set<std::string> shared_names_;  // shared files protected for this checkpoint
};

// The checkpoints of one job under one root directory. Thread-safe.
class CheckpointStorage {
 public:
  // InvalidArgument naming the field for bad options; creates options.dir (and its parents).
  static absl::StatusOr<std::unique_ptr<CheckpointStorage>> Open(CheckpointStorageOptions options);
  ~CheckpointStorage();
  CheckpointStorage(const CheckpointStorage&) = delete;
  CheckpointStorage& operator=(const CheckpointStorage&) = delete;

  // The root, as given in the options without trailing '/'.
  const std::string& dir() const;

  // Starts checkpoint `id` (>= 0) in <dir>/chk-<id>/. FailedPrecondition if chk-<id> is already
  // complete or is pending in this storage. A leftover incomplete chk-<id> (crash) is removed.
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> Begin(int64_t id);

  // Starts a savepoint into `target_dir` (created with its parents; FailedPrecondition if it
  // already holds a _metadata). Self-contained: FileRef paths are relative to target_dir. Not
  // subject to retention.
  static absl::StatusOr<std::unique_ptr<PendingCheckpoint>> BeginSavepoint(
      const std::string& target_dir, int64_t id);

  // Ids of the chk-<id> directories that have a _metadata file, newest first (no validation).
  std::vector<int64_t> CompletedIds() const;

  // The newest complete checkpoint, validated. When it does not validate: DataLoss naming it, the
  // reason and the older complete checkpoints (kRefuse), or the newest older one that validates
  // (kFallBack; the reason each newer one was skipped is in RestoredCheckpoint::skipped and
  // appended to `skipped` if not null). NotFound when there is no complete checkpoint; DataLoss
  // listing the reasons when none validates.
  absl::StatusOr<RestoredCheckpoint> LoadLatestValid(
      std::vector<absl::Status>* skipped = nullptr,
      OlderCheckpoints older = OlderCheckpoints::kRefuse) const;

  // Resume from a path: a checkpoint directory (chk-<id> with _metadata; root = its parent), a
  // savepoint directory (its _metadata says savepoint; root = path) or a storage root (holding
  // chk-* directories: the latest, as LoadLatestValid with `older`).
  static absl::StatusOr<RestoredCheckpoint> LoadFromPath(
      const std::string& path, OlderCheckpoints older = OlderCheckpoints::kRefuse);

  // The outcome of the last retention pass (OK before the first), for diagnostics: retention runs
  // inside Commit but never fails it.
  absl::Status LastRetentionStatus() const;

 private:
  explicit CheckpointStorage(std::shared_ptr<checkpoint_storage_internal::StorageState> state);

  std::shared_ptr<checkpoint_storage_internal::StorageState> state_;
};

}  // namespace sluice::internal
