#include "connectors/fs_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <random>

#include "absl/strings/str_cat.h"

namespace sluice::internal {

absl::Status ErrnoError(int err, const std::string& path, absl::string_view what) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(path, ": ", what, ": ", std::generic_category().message(err)));
}

absl::Status FilesystemError(const std::error_code& ec, const std::string& path,
                             absl::string_view what) {
  if (ec.category() == std::generic_category() || ec.category() == std::system_category()) {
    return ErrnoError(ec.value(), path, what);
  }
  return absl::InternalError(absl::StrCat(path, ": ", what, ": ", ec.message()));
}

absl::Status FsyncPath(const std::string& path, bool directory) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoError(errno, path, "cannot open for fsync");
  absl::Status status;
  if (::fsync(fd) != 0) status = ErrnoError(errno, path, "fsync failed");
  ::close(fd);
  return status;
}

std::string RandomHexToken(int digits) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string token(static_cast<size_t>(digits), '0');
  uint64_t v = rng();
  for (int i = digits - 1; i >= 0; --i) {
    token[static_cast<size_t>(i)] = "0123456789abcdef"[v & 0xf];
    v >>= 4;
  }
  return token;
}

}  // namespace sluice::internal
