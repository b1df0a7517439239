// An exclusive lock on a directory that one job writes (its checkpoint directory): a second job —
// in this process or another — that asks for the same directory gets FailedPrecondition at once,
// naming the directory and the holder, instead of the two overwriting each other's checkpoints.
//
//   SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<DirectoryLock> lock,
//                           DirectoryLock::Acquire("/data/ckpt", "checkpoint directory", "job 'x'"));
//
// The lock is flock(2) on `<dir>/.sluice-lock` (created if missing, left in place): released when
// the DirectoryLock is destroyed or its process dies (kill -9 included), so a crashed job never
// leaves the directory locked. The file holds the holder's description for the error message.
#pragma once

#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace sluice::internal {

inline constexpr char kDirectoryLockName[] = ".sluice-lock";

class DirectoryLock {
 public:
  // Creates `dir` (and its parents) if missing. `what` names the directory's role in messages
  // ("checkpoint directory"); `holder` describes this holder to a job refused later ("job 'x'").
  static absl::StatusOr<std::unique_ptr<DirectoryLock>> Acquire(const std::string& dir,
                                                                absl::string_view what,
                                                                absl::string_view holder);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

  const std::string& dir() const { return dir_; }

 private:
  DirectoryLock(std::string dir, int fd) : dir_(std::move(dir)), fd_(fd) {}
  std::string dir_;
  int fd_;
};

}  // namespace sluice::internal
