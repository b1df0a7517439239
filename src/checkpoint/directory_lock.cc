#include "checkpoint/directory_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace sluice::internal {
namespace {

absl::Status ErrnoStatus(int err, absl::string_view what, const std::string& path) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

// The holder's description a previous Acquire wrote (at most 512 bytes, printable only).
std::string ReadHolder(int fd) {
  char buf[512];
  const ssize_t n = ::pread(fd, buf, sizeof buf, 0);
  std::string holder;
  for (ssize_t i = 0; i < n; ++i) {
    const char c = buf[i];
    if (c == '\n') break;
    holder.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  }
  return holder.empty() ? "another job" : holder;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DirectoryLock>> DirectoryLock::Acquire(const std::string& dir,
                                                                      absl::string_view what,
                                                                      absl::string_view holder) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::Status(absl::ErrnoToStatusCode(ec.value()),
                        absl::StrCat("cannot create the ", what, " ", dir, ": ", ec.message()));
  }
  const std::string path = absl::StrCat(dir, "/", kDirectoryLockName);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot open the lock file of the ", what), path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) {
      ::close(fd);
      return ErrnoStatus(err, absl::StrCat("cannot lock the ", what), dir);
    }
    std::string other = ReadHolder(fd);
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat(
        "the ", what, " ", dir, " is in use by ", other,
        " (it holds the lock ", path,
        "): two jobs writing one directory would overwrite each other's files; give each job "
        "its own directory, or wait for the other job to end"));
  }
  const std::string line = absl::StrFormat("%s, process %d, since %s\n", holder, ::getpid(),
                                           absl::FormatTime(absl::Now(), absl::UTCTimeZone()));
  // The description is best effort: the lock itself is what protects the directory.
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, line.data(), line.size(), 0);
  return std::unique_ptr<DirectoryLock>(new DirectoryLock(dir, fd));
}

DirectoryLock::~DirectoryLock() { ::close(fd_); }

}  // namespace sluice::internal
