// Exclusive locks on what one job writes: its checkpoint directory, its sinks' output paths and
// its RocksDB working directory. A second job — in this process or another — that asks for the
// same one gets FailedPrecondition at once, naming the path and the holder, instead of the two
// overwriting each other's files.
//
//   SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<DirectoryLock> lock,
//                           DirectoryLock::Acquire("/data/ckpt", "checkpoint directory", "job 'x'"));
//
// A lock is flock(2) on a lock file, created when locked and unlinked when released (the
// DirectoryLock destroyed). A process that dies (kill -9 included) leaves the file but not the
// lock, so a crashed job never leaves a path locked. The file holds the holder's description for
// the error message.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice::internal {

inline constexpr char kDirectoryLockName[] = ".sluice-lock";

class DirectoryLock {
 public:
  // Locks the directory `dir` (created with its parents if missing) through `<dir>/.sluice-lock`.
  // `what` names its role in messages ("checkpoint directory"); `holder` describes this holder to
  // a job refused later ("job 'x'").
  static absl::StatusOr<std::unique_ptr<DirectoryLock>> Acquire(const std::string& dir,
                                                                absl::string_view what,
                                                                absl::string_view holder);
  // Locks `path` — a file or a directory, which need not exist — through a lock file beside it,
  // `<parent>/.<name>.sluice-lock` (the parent is created if missing).
  static absl::StatusOr<std::unique_ptr<DirectoryLock>> AcquireBeside(const std::string& path,
                                                                      absl::string_view what,
                                                                      absl::string_view holder);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  DirectoryLock(std::string path, std::string lock_file, int fd)
      : path_(std::move(path)), lock_file_(std::move(lock_file)), fd_(fd) {}
  static absl::StatusOr<std::unique_ptr<DirectoryLock>> Lock(const std::string& path,
                                                             const std::string& lock_file,
                                                             absl::string_view what,
                                                             absl::string_view holder);
  std::string path_;
  std::string lock_file_;
  int fd_;
};

// `path` absolute and normalized ("a/./b/" → "<cwd>/a/b"), to compare the paths jobs write.
std::string NormalizedPath(const std::string& path);

// Removes the directories `<base>/<prefix>*` that a job locked with DirectoryLock::Acquire and
// that no process holds any more (their job died, e.g. with kill -9). Directories without a lock
// file, or whose lock file was never written by a holder, are left alone. Best effort: returns the
// number of directories removed.
int RemoveAbandonedDirectories(const std::string& base, absl::string_view prefix);

}  // namespace sluice::internal
