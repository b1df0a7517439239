// Checkpoint storage on a POSIX file system. Durability rests on one pattern: write <name>.tmp,
// fsync it, rename it over <name>, fsync the directory. `_metadata` is written last that way, so a
// crash leaves either a complete checkpoint or a directory without `_metadata`, which every reader
// treats as absent.
#include "checkpoint/checkpoint_storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <sluice/core/key.h>
#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "checkpoint/checkpoint.pb.h"
#include "checkpoint/crc32c.h"

#include <sluice/core/status.h>

namespace sluice::internal {
namespace checkpoint_storage_internal {

// What a CheckpointStorage shares with its pending checkpoints, which may outlive it.
struct StorageState {
  std::string dir;
  int retained = 1;

  // Lock order: a PendingCheckpoint's mu_, then retention_mu, then mu.
  std::mutex retention_mu;  // serializes retention passes

  std::mutex mu;
  std::condition_variable shared_copied;  // signalled when a name leaves shared_copying
  std::set<int64_t> live_ids;             // checkpoints begun and not yet committed or aborted
  // Shared file name -> number of pending checkpoints that added it: retention keeps these.
  std::map<std::string, int, std::less<>> shared_in_use;
  std::set<std::string, std::less<>> shared_copying;  // an AddFile is checking / copying these
  absl::Status last_retention;
};

}  // namespace checkpoint_storage_internal

namespace {

namespace fs = std::filesystem;
using checkpoint::CheckpointMetadata;
using checkpoint::FileRef;
using checkpoint_storage_internal::StorageState;

// Abseil here is built with its own string_view type (ABSL_OPTION_USE_STD_STRING_VIEW 0): the
// std::string_view of this API converts at the StrCat boundary.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

constexpr char kMetadataName[] = "_metadata";
constexpr char kSharedDirName[] = "shared";
constexpr char kTmpSuffix[] = ".tmp";
constexpr char kCheckpointDirPrefix[] = "chk-";
constexpr size_t kIoChunk = size_t{1} << 20;

// --- Paths ------------------------------------------------------------------------------------

std::string JoinPath(std::string_view a, std::string_view b) {
  std::string path(a);
  if (!path.empty() && path.back() != '/') path += '/';
  path += b;
  return path;
}

std::string StripTrailingSlashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

std::string ParentDir(std::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

std::string_view BaseName(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// The id of a directory named chk-<decimal id> as CheckpointDirName writes it (no sign, no
// leading zeros), if `name` is one.
std::optional<int64_t> ParseCheckpointDirName(std::string_view name) {
  if (!name.starts_with(kCheckpointDirPrefix)) return std::nullopt;
  const std::string_view digits = name.substr(std::string_view(kCheckpointDirPrefix).size());
  // At most 18 digits: no overflow.
  if (digits.empty() || digits.size() > 18) return std::nullopt;
  if (digits.size() > 1 && digits.front() == '0') return std::nullopt;
  int64_t id = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    id = id * 10 + (c - '0');
  }
  return id;
}

std::string CheckpointDirName(int64_t id) { return absl::StrCat(kCheckpointDirPrefix, id); }

// True if `path` is relative and stays below its base: no empty, "." or ".." component.
bool IsContainedRelativePath(std::string_view path) {
  if (path.empty() || path.front() == '/') return false;
  for (;;) {
    const size_t slash = path.find('/');
    const std::string_view part = path.substr(0, slash);
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string_view::npos) return true;
    path.remove_prefix(slash + 1);
  }
}

absl::Status ValidateFileName(std::string_view name, const std::string& where) {
  if (!IsContainedRelativePath(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": invalid file name \"", Av(name),
                     "\" (a relative path without empty, \".\" or \"..\" components)"));
  }
  if (name.ends_with(kTmpSuffix) || name == kMetadataName) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": file name \"", Av(name), "\" is reserved (_metadata, *.tmp)"));
  }
  return absl::OkStatus();
}

// --- POSIX I/O, every error a Status naming the path -------------------------------------------

absl::Status FsError(int error_number, absl::string_view what, absl::string_view path) {
  return absl::ErrnoToStatus(error_number,
                             absl::StrCat("checkpoint storage: cannot ", what, " ", path));
}

// A file descriptor closed on destruction (error paths); Close() reports the close error.
class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(ScopedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~ScopedFd() { Reset(); }

  int get() const { return fd_; }

  absl::Status Close(const std::string& path) {
    const int fd = std::exchange(fd_, -1);
    // On Linux the descriptor is released even when close fails with EINTR: never retry.
    if (fd >= 0 && ::close(fd) != 0 && errno != EINTR) return FsError(errno, "close", path);
    return absl::OkStatus();
  }

 private:
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

absl::StatusOr<ScopedFd> OpenFd(const std::string& path, int flags, mode_t mode = 0644) {
  for (;;) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd >= 0) return ScopedFd(fd);
    if (errno != EINTR) return FsError(errno, "open", path);
  }
}

absl::Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return FsError(errno, "write", path);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Reads up to `buffer.size()` bytes; 0 at end of file.
absl::StatusOr<size_t> ReadSome(int fd, std::string& buffer, const std::string& path) {
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return FsError(errno, "read", path);
  }
}

absl::Status Fsync(int fd, const std::string& path) {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) return FsError(errno, "fsync", path);
  }
  return absl::OkStatus();
}

// Makes the entries of directory `dir` (creations, renames) durable.
absl::Status SyncDir(const std::string& dir) {
  SLUICE_ASSIGN_OR_RETURN(ScopedFd fd, OpenFd(dir, O_RDONLY | O_DIRECTORY));
  while (::fsync(fd.get()) != 0) {
    if (errno == EINTR) continue;
    // Some file systems cannot fsync a directory; their renames are durable without it.
    if (errno == EINVAL || errno == ENOTSUP) break;
    return FsError(errno, "fsync directory", dir);
  }
  return fd.Close(dir);
}

absl::Status Rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return FsError(errno, absl::StrCat("rename ", from, " to"), to);
  }
  return absl::OkStatus();
}

// stat(2): nullopt if `path` does not exist.
absl::StatusOr<std::optional<struct stat>> Stat(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) return std::optional<struct stat>(st);
  if (errno == ENOENT) return std::optional<struct stat>();
  return FsError(errno, "stat", path);
}

absl::StatusOr<bool> Exists(const std::string& path) {
  SLUICE_ASSIGN_OR_RETURN(std::optional<struct stat> st, Stat(path));
  return st.has_value();
}

// mkdir(2) of one directory, fsyncing its parent when it is new. OK if it exists.
absl::Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) == 0) return SyncDir(ParentDir(path));
  const int error = errno;
  if (error == EEXIST) {
    SLUICE_ASSIGN_OR_RETURN(std::optional<struct stat> st, Stat(path));
    if (st.has_value() && S_ISDIR(st->st_mode)) return absl::OkStatus();
    return FsError(ENOTDIR, "create directory", path);
  }
  return FsError(error, "create", path);
}

// mkdir -p of `path`.
absl::Status MakeDirs(const std::string& path) {
  SLUICE_ASSIGN_OR_RETURN(std::optional<struct stat> st, Stat(path));
  if (st.has_value()) {
    if (S_ISDIR(st->st_mode)) return absl::OkStatus();
    return FsError(ENOTDIR, "create directory", path);
  }
  const std::string parent = ParentDir(path);
  if (parent != path && parent != "." && parent != "/") SLUICE_RETURN_IF_ERROR(MakeDirs(parent));
  return MakeDir(path);
}

// Creates the directories of relative path `rel_dir` under the existing directory `base` (never
// `base` itself: an aborted checkpoint's directory must not come back).
absl::Status MakeDirsUnder(const std::string& base, std::string_view rel_dir) {
  std::string path = base;
  for (;;) {
    const size_t slash = rel_dir.find('/');
    path = JoinPath(path, rel_dir.substr(0, slash));
    SLUICE_RETURN_IF_ERROR(MakeDir(path));
    if (slash == std::string_view::npos) break;
    rel_dir.remove_prefix(slash + 1);
  }
  return absl::OkStatus();
}

// Creates the parent directories of `base`/`rel_file`.
absl::Status MakeParentDirsUnder(const std::string& base, std::string_view rel_file) {
  const size_t slash = rel_file.rfind('/');
  if (slash == std::string_view::npos) return absl::OkStatus();
  return MakeDirsUnder(base, rel_file.substr(0, slash));
}

absl::Status RemoveAll(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return FsError(ec.value(), "remove", path);
  return absl::OkStatus();
}

absl::Status Unlink(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return FsError(errno, "remove", path);
  return absl::OkStatus();
}

// Writes `path` durably: `fill` writes the contents into <path>.tmp, which is fsynced, closed and
// renamed to `path`, and then the directory is fsynced. The temporary file is removed on error.
absl::Status WriteAtomically(const std::string& path,
                             absl::FunctionRef<absl::Status(int fd, const std::string& tmp)> fill) {
  const std::string tmp = absl::StrCat(path, kTmpSuffix);
  bool renamed = false;
  absl::Cleanup remove_tmp = [&] {
    if (!renamed) ::unlink(tmp.c_str());
  };
  {
    SLUICE_ASSIGN_OR_RETURN(ScopedFd fd, OpenFd(tmp, O_WRONLY | O_CREAT | O_TRUNC));
    SLUICE_RETURN_IF_ERROR(fill(fd.get(), tmp));
    SLUICE_RETURN_IF_ERROR(Fsync(fd.get(), tmp));
    SLUICE_RETURN_IF_ERROR(fd.Close(tmp));
  }
  SLUICE_RETURN_IF_ERROR(Rename(tmp, path));
  renamed = true;
  return SyncDir(ParentDir(path));
}

struct FileSummary {
  uint64_t size = 0;
  uint32_t crc32c = 0;
};

// Reads `fd` to its end, checksumming; appends the bytes to `contents` if not null.
absl::StatusOr<FileSummary> ReadChecksummed(int fd, const std::string& path,
                                            std::string* contents) {
  FileSummary summary;
  std::string buffer(kIoChunk, '\0');
  for (;;) {
    SLUICE_ASSIGN_OR_RETURN(size_t n, ReadSome(fd, buffer, path));
    if (n == 0) return summary;
    const std::string_view chunk(buffer.data(), n);
    summary.crc32c = Crc32cExtend(summary.crc32c, chunk);
    summary.size += n;
    if (contents != nullptr) contents->append(chunk);
  }
}

// Copies `source` durably to `dest` (through <dest>.tmp), checksumming what it copies.
absl::StatusOr<FileSummary> CopyFileDurably(const std::string& source, const std::string& dest) {
  SLUICE_ASSIGN_OR_RETURN(ScopedFd in, OpenFd(source, O_RDONLY));
  FileSummary summary;
  SLUICE_RETURN_IF_ERROR(
      WriteAtomically(dest, [&](int out, const std::string& tmp) -> absl::Status {
        std::string buffer(kIoChunk, '\0');
        for (;;) {
          SLUICE_ASSIGN_OR_RETURN(size_t n, ReadSome(in.get(), buffer, source));
          if (n == 0) return absl::OkStatus();
          const std::string_view chunk(buffer.data(), n);
          SLUICE_RETURN_IF_ERROR(WriteAll(out, chunk, tmp));
          summary.crc32c = Crc32cExtend(summary.crc32c, chunk);
          summary.size += n;
        }
      }));
  SLUICE_RETURN_IF_ERROR(in.Close(source));
  return summary;
}

// --- Validation --------------------------------------------------------------------------------

// Checks `ref` (relative to `root`) against the file on disk: DataLoss naming the checkpoint
// directory `dir` and the file. Appends the bytes to `contents` if not null.
absl::Status VerifyFile(const std::string& root, const std::string& dir, const FileRef& ref,
                        std::string* contents) {
  const auto data_loss = [&](absl::string_view problem) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": file ", ref.path(), problem));
  };
  if (!IsContainedRelativePath(ref.path())) return data_loss(" has an invalid path");
  const std::string path = JoinPath(root, ref.path());
  int fd = -1;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == ENOENT) return data_loss(" is missing");
    return data_loss(absl::StrCat(" cannot be opened: ", std::strerror(errno)));
  }
  ScopedFd closer(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return data_loss(absl::StrCat(" cannot be examined: ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) return data_loss(" is not a regular file");
  const auto size_problem = [&](uint64_t actual) {
    return data_loss(absl::StrCat(actual < ref.size() ? " is truncated: " : " is too long: ",
                                  actual, " bytes, expected ", ref.size()));
  };
  if (static_cast<uint64_t>(st.st_size) != ref.size()) {
    return size_problem(static_cast<uint64_t>(st.st_size));
  }
  if (contents != nullptr) contents->reserve(contents->size() + ref.size());
  absl::StatusOr<FileSummary> summary = ReadChecksummed(fd, path, contents);
  if (!summary.ok()) {
    return data_loss(absl::StrCat(" cannot be read: ", summary.status().message()));
  }
  if (summary->size != ref.size()) return size_problem(summary->size);
  if (summary->crc32c != ref.crc32c()) {
    return data_loss(absl::StrFormat(": checksum mismatch (crc32c 0x%08x, expected 0x%08x)",
                                     summary->crc32c, ref.crc32c()));
  }
  return absl::OkStatus();
}

std::string NotCompleteMessage(const std::string& dir) {
  return absl::StrCat("checkpoint ", dir, ": no ", kMetadataName,
                      " (the checkpoint is not complete)");
}

// Reads and parses <dir>/_metadata and checks its format version. NotFound if it is missing,
// DataLoss if it is unreadable, unparsable or from an unknown format version.
absl::StatusOr<CheckpointMetadata> ReadMetadata(const std::string& dir) {
  const std::string path = JoinPath(dir, kMetadataName);
  std::string bytes;
  absl::Status read = [&]() -> absl::Status {
    SLUICE_ASSIGN_OR_RETURN(ScopedFd fd, OpenFd(path, O_RDONLY));
    SLUICE_RETURN_IF_ERROR(ReadChecksummed(fd.get(), path, &bytes).status());
    return fd.Close(path);
  }();
  if (absl::IsNotFound(read)) return absl::NotFoundError(NotCompleteMessage(dir));
  if (!read.ok()) {
    return absl::DataLossError(
        absl::StrCat("checkpoint ", dir, ": _metadata is corrupt (", read.message(), ")"));
  }
  return DecodeMetadataFile(bytes, dir);
}

// Calls `fn` with every FileRef of `metadata` that has a path.
void ForEachFileRef(const CheckpointMetadata& metadata,
                    absl::FunctionRef<void(const FileRef&)> fn) {
  const auto visit = [&](const FileRef& ref) {
    if (!ref.path().empty()) fn(ref);
  };
  for (const checkpoint::OperatorState& op : metadata.operators()) {
    for (const checkpoint::SubtaskState& subtask : op.subtasks()) {
      if (subtask.has_keyed_state()) visit(subtask.keyed_state());
      for (const checkpoint::KeyedStateChanges& changes : subtask.keyed_changes()) {
        visit(changes.file());
      }
      if (subtask.has_operator_state()) visit(subtask.operator_state());
      for (const FileRef& ref : subtask.rocksdb_files()) visit(ref);
    }
  }
  for (const FileRef& ref : metadata.extra_files()) visit(ref);
}

// Validates a parsed checkpoint: its id (if `expected_id`) and every file it references.
absl::StatusOr<RestoredCheckpoint> ValidateCheckpoint(std::string root, std::string dir,
                                                      CheckpointMetadata metadata,
                                                      std::optional<int64_t> expected_id) {
  if (expected_id.has_value() && metadata.checkpoint_id() != *expected_id) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": _metadata has checkpoint id ",
                                            metadata.checkpoint_id(), ", expected ", *expected_id,
                                            " (the directory name)"));
  }
  // A shared file may be referenced by several subtasks: read it once.
  absl::flat_hash_map<std::string, std::pair<uint64_t, uint32_t>> verified;
  absl::Status status;
  ForEachFileRef(metadata, [&](const FileRef& ref) {
    if (!status.ok()) return;
    auto [it, inserted] = verified.try_emplace(ref.path(), ref.size(), ref.crc32c());
    if (!inserted && it->second == std::make_pair(ref.size(), ref.crc32c())) return;
    status = VerifyFile(root, dir, ref, nullptr);
  });
  SLUICE_RETURN_IF_ERROR(status);
  RestoredCheckpoint restored;
  restored.metadata = std::move(metadata);
  restored.root = std::move(root);
  restored.dir = std::move(dir);
  return restored;
}

absl::StatusOr<RestoredCheckpoint> LoadCheckpointDir(const std::string& root, int64_t id) {
  std::string dir = JoinPath(root, CheckpointDirName(id));
  SLUICE_ASSIGN_OR_RETURN(CheckpointMetadata metadata, ReadMetadata(dir));
  return ValidateCheckpoint(root, std::move(dir), std::move(metadata), id);
}

struct CheckpointDirEntry {
  int64_t id = 0;
  bool complete = false;
};

// The chk-<id> directories under `root`, in no particular order.
absl::StatusOr<std::vector<CheckpointDirEntry>> ListCheckpointDirs(const std::string& root) {
  std::vector<CheckpointDirEntry> entries;
  std::error_code ec;
  for (fs::directory_iterator it(root, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::optional<int64_t> id = ParseCheckpointDirName(it->path().filename().native());
    std::error_code type_ec;
    if (!id.has_value() || !it->is_directory(type_ec)) continue;
    const std::string metadata = JoinPath(it->path().native(), kMetadataName);
    struct stat st {};
    entries.push_back({*id, ::stat(metadata.c_str(), &st) == 0});
  }
  if (ec) return FsError(ec.value(), "list", root);
  return entries;
}

std::vector<int64_t> CompleteIdsNewestFirst(const std::vector<CheckpointDirEntry>& entries) {
  std::vector<int64_t> ids;
  for (const CheckpointDirEntry& entry : entries) {
    if (entry.complete) ids.push_back(entry.id);
  }
  std::sort(ids.begin(), ids.end(), std::greater<>());
  return ids;
}

absl::StatusOr<RestoredCheckpoint> LoadLatestValidIn(const std::string& root,
                                                     std::vector<absl::Status>* skipped,
                                                     OlderCheckpoints older) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<CheckpointDirEntry> entries, ListCheckpointDirs(root));
  const std::vector<int64_t> ids = CompleteIdsNewestFirst(entries);
  std::vector<std::string> reasons;
  std::vector<absl::Status> skipped_here;
  for (size_t i = 0; i < ids.size(); ++i) {
    absl::StatusOr<RestoredCheckpoint> restored = LoadCheckpointDir(root, ids[i]);
    if (restored.ok()) {
      restored->skipped = std::move(skipped_here);
      return restored;
    }
    // NotFound: _metadata vanished since the listing (retention): not complete after all.
    if (absl::IsNotFound(restored.status())) continue;
    if (older == OlderCheckpoints::kRefuse && i + 1 < ids.size()) {
      std::vector<std::string> older_names;
      for (size_t j = i + 1; j < ids.size(); ++j) {
        older_names.push_back(absl::StrCat(kCheckpointDirPrefix, ids[j]));
      }
      return absl::DataLossError(absl::StrCat(
          restored.status().message(), " — this is the newest complete checkpoint of ", root,
          "; refusing to resume from an older one (", absl::StrJoin(older_names, ", "),
          "): exactly-once sinks may have committed output after it, which a resume from it "
          "would produce again. Repair or remove ",
          JoinPath(root, absl::StrCat(kCheckpointDirPrefix, ids[i])),
          ", resume from an older checkpoint by its path, or set "
          "CheckpointOptions::fall_back_to_older_checkpoint"));
    }
    reasons.emplace_back(restored.status().message());
    skipped_here.push_back(restored.status());
    if (skipped != nullptr) skipped->push_back(restored.status());
  }
  if (reasons.empty()) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint storage ", root, ": no complete checkpoint"));
  }
  return absl::DataLossError(
      absl::StrCat("checkpoint storage ", root, ": none of the ", reasons.size(),
                   " complete checkpoints is valid: ", absl::StrJoin(reasons, "; ")));
}

// --- Retention ---------------------------------------------------------------------------------

// Deletes a complete checkpoint: _metadata first, so a crash midway leaves an incomplete
// directory rather than a complete-looking corrupt one.
absl::Status RemoveCompleteCheckpoint(const std::string& dir) {
  SLUICE_RETURN_IF_ERROR(Unlink(JoinPath(dir, kMetadataName)));
  SLUICE_RETURN_IF_ERROR(SyncDir(dir));
  return RemoveAll(dir);
}

// One retention pass after checkpoint `committed` became complete. Requires s.retention_mu.
// Keeps the newest `retained` complete checkpoints and `committed`, then deletes the shared
// files no remaining checkpoint references. Never touches a pending checkpoint's directory or a
// shared file a pending checkpoint added.
absl::Status ApplyRetention(StorageState& s, int64_t committed) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<CheckpointDirEntry> entries, ListCheckpointDirs(s.dir));
  const std::vector<int64_t> complete = CompleteIdsNewestFirst(entries);
  std::set<int64_t> keep(complete.begin(),
                         complete.begin() + std::min<size_t>(complete.size(), s.retained));
  keep.insert(committed);

  absl::Status first_error;
  const auto note = [&](absl::Status status) {
    if (first_error.ok()) first_error = std::move(status);
  };
  for (const CheckpointDirEntry& entry : entries) {
    const bool obsolete = entry.complete ? !keep.contains(entry.id) : entry.id < committed;
    if (!obsolete) continue;
    const std::string dir = JoinPath(s.dir, CheckpointDirName(entry.id));
    // Under mu so that a Begin of the same id cannot interleave.
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.live_ids.contains(entry.id)) continue;
    note(entry.complete ? RemoveCompleteCheckpoint(dir) : RemoveAll(dir));
  }

  // The shared files the remaining complete checkpoints reference. If one cannot be read, delete
  // nothing: that checkpoint may still reference any shared file.
  SLUICE_ASSIGN_OR_RETURN(entries, ListCheckpointDirs(s.dir));
  std::set<std::string, std::less<>> referenced;
  for (const CheckpointDirEntry& entry : entries) {
    if (!entry.complete) continue;
    const std::string dir = JoinPath(s.dir, CheckpointDirName(entry.id));
    absl::StatusOr<CheckpointMetadata> metadata = ReadMetadata(dir);
    if (absl::IsNotFound(metadata.status())) continue;  // deleted meanwhile
    if (!metadata.ok()) {
      note(absl::Status(metadata.status().code(), absl::StrCat("retention kept every shared file: ",
                                                               metadata.status().message())));
      return first_error;
    }
    ForEachFileRef(*metadata, [&](const FileRef& ref) { referenced.insert(ref.path()); });
  }

  const std::string shared_dir = JoinPath(s.dir, kSharedDirName);
  std::error_code ec;
  if (!fs::exists(shared_dir, ec)) return first_error;
  const std::string prefix = absl::StrCat(shared_dir, "/");
  for (fs::recursive_directory_iterator it(shared_dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    if (!it->is_regular_file(type_ec)) continue;
    const std::string& path = it->path().native();
    if (!path.starts_with(prefix)) continue;
    const std::string_view name = std::string_view(path).substr(prefix.size());
    if (referenced.contains(absl::StrCat(kSharedDirName, "/", Av(name)))) continue;
    std::string_view base = name;
    if (base.ends_with(kTmpSuffix)) base.remove_suffix(std::string_view(kTmpSuffix).size());
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.shared_in_use.contains(base) || s.shared_copying.contains(base)) continue;
    note(Unlink(path));
  }
  if (ec) note(FsError(ec.value(), "list", shared_dir));
  return first_error;
}

}  // namespace

// --- RestoredCheckpoint ------------------------------------------------------------------------

absl::StatusOr<std::string> RestoredCheckpoint::ReadFile(const FileRef& ref) const {
  if (!IsContainedRelativePath(ref.path())) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint ", dir, ": file path \"", ref.path(),
                                                   "\" is not a relative path inside ", root));
  }
  std::string contents;
  SLUICE_RETURN_IF_ERROR(VerifyFile(root, dir, ref, &contents));
  return contents;
}

// --- PendingCheckpoint -------------------------------------------------------------------------

PendingCheckpoint::PendingCheckpoint(std::shared_ptr<StorageState> storage, int64_t id,
                                     std::string root, std::string dir, bool savepoint,
                                     bool created_dir)
    : storage_(std::move(storage)),
      id_(id),
      root_(std::move(root)),
      dir_(std::move(dir)),
      savepoint_(savepoint),
      created_dir_(created_dir),
      registered_(storage_ != nullptr) {}

PendingCheckpoint::~PendingCheckpoint() { Abort(); }

std::string PendingCheckpoint::RelativePrefix() const {
  return savepoint_ ? std::string() : absl::StrCat(CheckpointDirName(id_), "/");
}

absl::Status PendingCheckpoint::ReserveName(std::string_view name) {
  SLUICE_RETURN_IF_ERROR(ValidateFileName(name, absl::StrCat("checkpoint ", dir_)));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ != Phase::kOpen) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", dir_, ": cannot write ", Av(name), ", the checkpoint is ",
                       phase_ == Phase::kCommitted ? "already committed" : "aborted"));
    }
    if (!names_.emplace(name).second) {
      return absl::AlreadyExistsError(
          absl::StrCat("checkpoint ", dir_, ": file ", Av(name), " was already written"));
    }
  }
  // A savepoint directory may hold files of its own: never overwrite them.
  absl::StatusOr<bool> exists = Exists(JoinPath(dir_, name));
  if (!exists.ok() || *exists) {
    ReleaseName(std::string(name));
    if (!exists.ok()) return exists.status();
    return absl::AlreadyExistsError(
        absl::StrCat("checkpoint ", dir_, ": file ", Av(name), " already exists"));
  }
  return absl::OkStatus();
}

void PendingCheckpoint::ReleaseName(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  names_.erase(name);
}

absl::StatusOr<FileRef> PendingCheckpoint::WriteFile(std::string_view name,
                                                     std::string_view bytes) {
  SLUICE_RETURN_IF_ERROR(ReserveName(name));
  const std::string name_str(name);
  absl::Status written = [&]() -> absl::Status {
    SLUICE_RETURN_IF_ERROR(MakeParentDirsUnder(dir_, name));
    return WriteAtomically(JoinPath(dir_, name), [&](int fd, const std::string& tmp) {
      return WriteAll(fd, bytes, tmp);
    });
  }();
  if (!written.ok()) {
    ReleaseName(name_str);
    return written;
  }
  FileRef ref;
  ref.set_path(RelativePrefix() + name_str);
  ref.set_size(bytes.size());
  ref.set_crc32c(Crc32c(bytes));
  return ref;
}

absl::StatusOr<FileRef> PendingCheckpoint::AddFile(std::string_view name,
                                                   const std::string& source_path) {
  if (!savepoint_) return AddSharedFile(name, source_path);
  SLUICE_RETURN_IF_ERROR(ReserveName(name));
  const std::string name_str(name);
  absl::StatusOr<FileSummary> copied = [&]() -> absl::StatusOr<FileSummary> {
    SLUICE_RETURN_IF_ERROR(MakeParentDirsUnder(dir_, name));
    return CopyFileDurably(source_path, JoinPath(dir_, name));
  }();
  if (!copied.ok()) {
    ReleaseName(name_str);
    return copied.status();
  }
  FileRef ref;
  ref.set_path(name_str);
  ref.set_size(copied->size);
  ref.set_crc32c(copied->crc32c);
  return ref;
}

absl::StatusOr<FileRef> PendingCheckpoint::AddSharedFile(std::string_view name,
                                                         const std::string& source_path) {
  // Protect the name from retention before looking at the file, for as long as this checkpoint
  // is pending.
  SLUICE_RETURN_IF_ERROR(ProtectSharedName(name, "add", /*must_be_new=*/false));
  const std::string name_str(name);
  StorageState& s = *storage_;
  {
    // One AddFile per shared name at a time: concurrent ones would share <name>.tmp.
    std::unique_lock<std::mutex> lock(s.mu);
    s.shared_copied.wait(lock, [&] { return !s.shared_copying.contains(name_str); });
    s.shared_copying.insert(name_str);
  }
  absl::Cleanup done_copying = [&] {
    {
      std::lock_guard<std::mutex> lock(s.mu);
      s.shared_copying.erase(name_str);
    }
    s.shared_copied.notify_all();
  };

  const std::string shared_dir = JoinPath(root_, kSharedDirName);
  const std::string dest = JoinPath(shared_dir, name);
  SLUICE_ASSIGN_OR_RETURN(std::optional<struct stat> source, Stat(source_path));
  if (!source.has_value()) return FsError(ENOENT, "read", source_path);
  SLUICE_ASSIGN_OR_RETURN(std::optional<struct stat> existing, Stat(dest));
  FileSummary summary;
  if (existing.has_value() && S_ISREG(existing->st_mode) && existing->st_size == source->st_size) {
    // Uploaded by an earlier checkpoint: reuse it, checksumming what restores will read.
    SLUICE_ASSIGN_OR_RETURN(ScopedFd fd, OpenFd(dest, O_RDONLY));
    SLUICE_ASSIGN_OR_RETURN(summary, ReadChecksummed(fd.get(), dest, nullptr));
    SLUICE_RETURN_IF_ERROR(fd.Close(dest));
  } else {
    SLUICE_RETURN_IF_ERROR(MakeDir(shared_dir));
    SLUICE_RETURN_IF_ERROR(MakeParentDirsUnder(shared_dir, name));
    SLUICE_ASSIGN_OR_RETURN(summary, CopyFileDurably(source_path, dest));
  }
  FileRef ref;
  ref.set_path(absl::StrCat(kSharedDirName, "/", Av(name)));
  ref.set_size(summary.size);
  ref.set_crc32c(summary.crc32c);
  return ref;
}

absl::Status PendingCheckpoint::ProtectSharedName(std::string_view name, std::string_view verb,
                                                  bool must_be_new) {
  SLUICE_RETURN_IF_ERROR(ValidateFileName(name, absl::StrCat("checkpoint ", dir_)));
  std::lock_guard<std::mutex> lock(mu_);
  if (phase_ != Phase::kOpen || !registered_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", dir_, ": cannot ", Av(verb), " ", Av(name), ", the checkpoint is ",
        phase_ == Phase::kCommitted ? "already committed" : "aborted"));
  }
  const std::string name_str(name);
  if (!shared_names_.insert(name_str).second) {
    if (!must_be_new) return absl::OkStatus();
    return absl::AlreadyExistsError(
        absl::StrCat("checkpoint ", dir_, ": shared file ", Av(name), " was written already"));
  }
  std::lock_guard<std::mutex> storage_lock(storage_->mu);
  ++storage_->shared_in_use[name_str];
  return absl::OkStatus();
}

absl::StatusOr<FileRef> PendingCheckpoint::WriteSharedFile(std::string_view name,
                                                           std::string_view bytes) {
  if (savepoint_) {
    return absl::FailedPreconditionError(
        absl::StrCat("savepoint ", dir_, ": is self-contained, it has no shared files"));
  }
  SLUICE_RETURN_IF_ERROR(ProtectSharedName(name, "write", /*must_be_new=*/true));
  const std::string shared_dir = JoinPath(root_, kSharedDirName);
  const std::string dest = JoinPath(shared_dir, name);
  SLUICE_ASSIGN_OR_RETURN(std::optional<struct stat> existing, Stat(dest));
  if (existing.has_value()) {
    return absl::AlreadyExistsError(
        absl::StrCat("checkpoint storage ", root_, ": shared file ", Av(name), " exists already"));
  }
  SLUICE_RETURN_IF_ERROR(MakeDir(shared_dir));
  SLUICE_RETURN_IF_ERROR(MakeParentDirsUnder(shared_dir, name));
  SLUICE_RETURN_IF_ERROR(WriteAtomically(
      dest, [&](int fd, const std::string& tmp) { return WriteAll(fd, bytes, tmp); }));
  FileRef ref;
  ref.set_path(absl::StrCat(kSharedDirName, "/", Av(name)));
  ref.set_size(bytes.size());
  ref.set_crc32c(Crc32c(bytes));
  return ref;
}

void PendingCheckpoint::Unregister() {
  if (!registered_) return;
  registered_ = false;
  std::lock_guard<std::mutex> lock(storage_->mu);
  for (const std::string& name : shared_names_) {
    auto it = storage_->shared_in_use.find(name);
    if (it != storage_->shared_in_use.end() && --it->second <= 0) {
      storage_->shared_in_use.erase(it);
    }
  }
  shared_names_.clear();
  storage_->live_ids.erase(id_);
}

absl::Status PendingCheckpoint::Commit(CheckpointMetadata metadata) {
  std::lock_guard<std::mutex> lock(mu_);
  if (phase_ != Phase::kOpen) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint ", dir_, ": cannot commit, the checkpoint is ",
                     phase_ == Phase::kCommitted ? "already committed" : "aborted"));
  }
  metadata.set_format_version(kCheckpointFormatVersion);
  metadata.set_checkpoint_id(id_);
  metadata.set_savepoint(savepoint_);
  const std::string bytes = EncodeMetadataFile(metadata);
  SLUICE_RETURN_IF_ERROR(
      WriteAtomically(JoinPath(dir_, kMetadataName),
                      [&](int fd, const std::string& tmp) { return WriteAll(fd, bytes, tmp); }));
  phase_ = Phase::kCommitted;
  if (savepoint_) return absl::OkStatus();

  StorageState& s = *storage_;
  {
    // The shared files this checkpoint added stay protected until its _metadata is visible to
    // this pass (passes are serialized), and its directory until the pass is over.
    std::lock_guard<std::mutex> retention_lock(s.retention_mu);
    {
      std::lock_guard<std::mutex> storage_lock(s.mu);
      for (const std::string& name : shared_names_) {
        auto it = s.shared_in_use.find(name);
        if (it != s.shared_in_use.end() && --it->second <= 0) s.shared_in_use.erase(it);
      }
      shared_names_.clear();
    }
    absl::Status retention = ApplyRetention(s, id_);
    std::lock_guard<std::mutex> storage_lock(s.mu);
    s.last_retention = std::move(retention);
  }
  Unregister();
  return absl::OkStatus();
}

void PendingCheckpoint::Abort() {
  std::lock_guard<std::mutex> lock(mu_);
  if (phase_ != Phase::kOpen) return;
  phase_ = Phase::kAborted;
  if (savepoint_ && !created_dir_) {
    // The directory was the user's before: remove only what this savepoint wrote.
    for (const std::string& name : names_) {
      const std::string path = JoinPath(dir_, name);
      ::unlink(path.c_str());
      ::unlink(absl::StrCat(path, kTmpSuffix).c_str());
    }
    ::unlink(JoinPath(dir_, absl::StrCat(kMetadataName, kTmpSuffix)).c_str());
  } else {
    (void)RemoveAll(dir_);  // best effort: a leftover is removed by retention or a new Begin
  }
  Unregister();
}

// --- CheckpointStorage -------------------------------------------------------------------------

CheckpointStorage::CheckpointStorage(std::shared_ptr<StorageState> state)
    : state_(std::move(state)) {}

CheckpointStorage::~CheckpointStorage() = default;

absl::StatusOr<std::unique_ptr<CheckpointStorage>> CheckpointStorage::Open(
    CheckpointStorageOptions options) {
  if (options.dir.empty()) {
    return absl::InvalidArgumentError("CheckpointStorageOptions.dir must not be empty");
  }
  if (options.retained < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("CheckpointStorageOptions.retained must be >= 1, got ", options.retained));
  }
  auto state = std::make_shared<StorageState>();
  state->dir = StripTrailingSlashes(std::move(options.dir));
  state->retained = options.retained;
  SLUICE_RETURN_IF_ERROR(MakeDirs(state->dir));
  return std::unique_ptr<CheckpointStorage>(new CheckpointStorage(std::move(state)));
}

const std::string& CheckpointStorage::dir() const { return state_->dir; }

absl::StatusOr<std::unique_ptr<PendingCheckpoint>> CheckpointStorage::Begin(int64_t id) {
  StorageState& s = *state_;
  if (id < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint storage ", s.dir, ": checkpoint id must be >= 0, got ", id));
  }
  const std::string dir = JoinPath(s.dir, CheckpointDirName(id));
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (!s.live_ids.insert(id).second) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", dir, ": checkpoint ", id, " is already in progress"));
    }
  }
  absl::Status started = [&]() -> absl::Status {
    SLUICE_ASSIGN_OR_RETURN(bool complete, Exists(JoinPath(dir, kMetadataName)));
    if (complete) {
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", dir, ": checkpoint ", id, " is already complete (ids are not reused)"));
    }
    SLUICE_RETURN_IF_ERROR(RemoveAll(dir));  // a crashed attempt's leftovers
    SLUICE_RETURN_IF_ERROR(MakeDirs(s.dir));
    return MakeDir(dir);
  }();
  if (!started.ok()) {
    std::lock_guard<std::mutex> lock(s.mu);
    s.live_ids.erase(id);
    return started;
  }
  return std::unique_ptr<PendingCheckpoint>(
      new PendingCheckpoint(state_, id, s.dir, dir, /*savepoint=*/false, /*created_dir=*/true));
}

absl::StatusOr<std::unique_ptr<PendingCheckpoint>> CheckpointStorage::BeginSavepoint(
    const std::string& target_dir, int64_t id) {
  if (target_dir.empty()) {
    return absl::InvalidArgumentError("CheckpointStorage::BeginSavepoint: target_dir is empty");
  }
  std::string dir = StripTrailingSlashes(target_dir);
  SLUICE_ASSIGN_OR_RETURN(bool existed, Exists(dir));
  SLUICE_RETURN_IF_ERROR(MakeDirs(dir));
  SLUICE_ASSIGN_OR_RETURN(bool complete, Exists(JoinPath(dir, kMetadataName)));
  if (complete) {
    return absl::FailedPreconditionError(
        absl::StrCat("savepoint ", dir, ": the directory already holds a savepoint (_metadata)"));
  }
  std::string root = dir;
  return std::unique_ptr<PendingCheckpoint>(new PendingCheckpoint(
      nullptr, id, std::move(root), std::move(dir), /*savepoint=*/true, !existed));
}

std::vector<int64_t> CheckpointStorage::CompletedIds() const {
  absl::StatusOr<std::vector<CheckpointDirEntry>> entries = ListCheckpointDirs(state_->dir);
  if (!entries.ok()) return {};
  return CompleteIdsNewestFirst(*entries);
}

absl::StatusOr<RestoredCheckpoint> CheckpointStorage::LoadLatestValid(
    std::vector<absl::Status>* skipped, OlderCheckpoints older) const {
  return LoadLatestValidIn(state_->dir, skipped, older);
}

absl::StatusOr<RestoredCheckpoint> CheckpointStorage::LoadFromPath(const std::string& path,
                                                                   OlderCheckpoints older) {
  if (path.empty()) {
    return absl::InvalidArgumentError("CheckpointStorage::LoadFromPath: path is empty");
  }
  std::string dir = StripTrailingSlashes(path);
  SLUICE_ASSIGN_OR_RETURN(std::optional<struct stat> st, Stat(dir));
  if (!st.has_value()) return FsError(ENOENT, "resume from", dir);
  if (!S_ISDIR(st->st_mode)) return FsError(ENOTDIR, "resume from", dir);
  const std::optional<int64_t> dir_id = ParseCheckpointDirName(BaseName(dir));
  absl::StatusOr<CheckpointMetadata> metadata = ReadMetadata(dir);
  if (metadata.ok()) {
    if (metadata->savepoint()) {
      std::string root = dir;
      return ValidateCheckpoint(std::move(root), std::move(dir), *std::move(metadata),
                                std::nullopt);
    }
    // A checkpoint directory: its FileRefs are relative to the storage root above it.
    std::string root = ParentDir(dir);
    return ValidateCheckpoint(std::move(root), std::move(dir), *std::move(metadata), dir_id);
  }
  if (!absl::IsNotFound(metadata.status())) return metadata.status();
  if (dir_id.has_value()) return metadata.status();  // a chk-<id> directory, not complete

  SLUICE_ASSIGN_OR_RETURN(std::vector<CheckpointDirEntry> entries, ListCheckpointDirs(dir));
  if (entries.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "checkpoint storage: cannot resume from ", dir,
        ": it is neither a checkpoint (chk-<id> with _metadata), a savepoint (_metadata) nor a "
        "checkpoint storage directory (chk-<id> directories)"));
  }
  return LoadLatestValidIn(dir, nullptr, older);
}

absl::Status CheckpointStorage::LastRetentionStatus() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->last_retention;
}

}  // namespace sluice::internal
