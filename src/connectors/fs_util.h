// Filesystem helpers of the sinks that write files (ExactlyOnceFileSink, FirehoseSink): errors
// that name the path and the operation, fsync of a file or directory, random name tokens.
#pragma once

#include <string>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sluice::internal {

// "<path>: <what>: <strerror>" with the status code that matches `err`.
absl::Status ErrnoError(int err, const std::string& path, absl::string_view what);
// The same for a std::filesystem error code (Internal for codes of other categories).
absl::Status FilesystemError(const std::error_code& ec, const std::string& path,
                             absl::string_view what);
// Opens `path` (a directory when `directory`) and fsyncs it.
absl::Status FsyncPath(const std::string& path, bool directory);
// `digits` random lowercase hex digits (1..16): keeps the file names of different attempts apart.
std::string RandomHexToken(int digits);

}  // namespace sluice::internal
