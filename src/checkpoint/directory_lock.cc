#include "checkpoint/directory_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace sluice::internal {
namespace {

namespace fs = std::filesystem;

absl::Status ErrnoStatus(int err, absl::string_view what, const std::string& path) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

absl::Status CreateDirectories(const std::string& dir, absl::string_view what) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::Status(absl::ErrnoToStatusCode(ec.value()),
                        absl::StrCat("cannot create the ", what, " ", dir, ": ", ec.message()));
  }
  return absl::OkStatus();
}

// The holder's description a previous lock wrote (at most 512 bytes, printable only).
std::string ReadHolder(int fd) {
  char buf[512];
  const ssize_t n = ::pread(fd, buf, sizeof buf, 0);
  std::string holder;
  for (ssize_t i = 0; i < n; ++i) {
    const char c = buf[i];
    if (c == '\n') break;
    holder.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  }
  return holder;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DirectoryLock>> DirectoryLock::Acquire(const std::string& dir,
                                                                      absl::string_view what,
                                                                      absl::string_view holder) {
  if (absl::Status s = CreateDirectories(dir, what); !s.ok()) return s;
  return Lock(dir, absl::StrCat(dir, "/", kDirectoryLockName), what, holder);
}

absl::StatusOr<std::unique_ptr<DirectoryLock>> DirectoryLock::AcquireBeside(
    const std::string& path, absl::string_view what, absl::string_view holder) {
  const fs::path p = fs::path(path).lexically_normal();
  const fs::path parent = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (absl::Status s = CreateDirectories(parent.string(), "parent directory of the"); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), " (", what, " ", path, ")"));
  }
  const std::string name = p.filename().string();
  return Lock(path, (parent / absl::StrCat(".", name, kDirectoryLockName)).string(), what, holder);
}

absl::StatusOr<std::unique_ptr<DirectoryLock>> DirectoryLock::Lock(const std::string& path,
                                                                   const std::string& lock_file,
                                                                   absl::string_view what,
                                                                   absl::string_view holder) {
  // A holder unlinks its lock file when it releases it (so a clean end leaves no file behind):
  // the file locked must still be the one at `lock_file`, or it was released meanwhile — retry.
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return ErrnoStatus(errno, absl::StrCat("cannot open the lock file of the ", what), lock_file);
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (err != EWOULDBLOCK) {
        ::close(fd);
        return ErrnoStatus(err, absl::StrCat("cannot lock the ", what), path);
      }
      std::string other = ReadHolder(fd);
      ::close(fd);
      return absl::FailedPreconditionError(absl::StrCat(
          "the ", what, " ", path, " is in use by ", other.empty() ? "another job" : other,
          " (it holds the lock ", lock_file,
          "): two jobs writing one place would overwrite each other's files; give each job "
          "its own, or wait for the other job to end"));
    }
    struct stat locked {
    }, current{};
    if (::fstat(fd, &locked) != 0 || ::stat(lock_file.c_str(), &current) != 0 ||
        locked.st_ino != current.st_ino || locked.st_dev != current.st_dev) {
      ::close(fd);
      fd = -1;
      if (attempt > 100) {
        return absl::UnavailableError(
            absl::StrCat("cannot lock the ", what, " ", path, ": its lock file keeps changing"));
      }
    }
  }
  const std::string line = absl::StrFormat("%s, process %d, since %s\n", holder, ::getpid(),
                                           absl::FormatTime(absl::Now(), absl::UTCTimeZone()));
  // The description is best effort: the lock itself is what protects the path.
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, line.data(), line.size(), 0);
  return std::unique_ptr<DirectoryLock>(new DirectoryLock(path, lock_file, fd));
}

DirectoryLock::~DirectoryLock() {
  ::unlink(lock_file_.c_str());  // while still held: see Lock
  ::close(fd_);
}

std::string NormalizedPath(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::absolute(fs::path(path), ec);
  if (ec) p = fs::path(path);
  std::string s = p.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

int RemoveAbandonedDirectories(const std::string& base, absl::string_view prefix) {
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(base, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (!absl::StartsWith(name, prefix) || !it->is_directory(type_ec)) continue;
    const std::string lock_file = (it->path() / kDirectoryLockName).string();
    const int fd = ::open(lock_file.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) continue;  // no lock file: not ours to judge
    // Held: its job runs. Free but never written: a job between creating and locking it.
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && !ReadHolder(fd).empty()) {
      std::error_code rm_ec;
      fs::remove_all(it->path(), rm_ec);
      if (!rm_ec) ++removed;
    }
    ::close(fd);
  }
  return removed;
}

}  // namespace sluice::internal
