// The non-template part of ExactlyOnceFileSink: one subtask's part files.
#include <sluice/connectors/exactly_once_file_sink.h>

#include "connectors/fs_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <random>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using internal::ErrnoError;
using internal::FilesystemError;
using internal::FsyncPath;
using internal::RandomHexToken;

constexpr char kPendingTag[] = ".pending";
constexpr char kInProgressTag[] = ".inprogress.";

std::string PendingName(const std::string& final_name) {
  return absl::StrCat(".", final_name, kPendingTag);
}

// Reads "<digits>" at the front of `*s`; false when there are none.
bool ConsumeNumber(absl::string_view* s, int64_t* out) {
  const char* end = s->data() + s->size();
  auto [ptr, ec] = std::from_chars(s->data(), end, *out);
  if (ec != std::errc() || ptr == s->data() || *out < 0) return false;
  s->remove_prefix(static_cast<size_t>(ptr - s->data()));
  return true;
}

// A file of the sink's naming scheme.
struct PartName {
  enum Kind { kCommitted, kPending, kInProgress } kind;
  int64_t subtask;
  int64_t part;
};

// Parses `name` against prefix and suffix; false for files of other naming schemes.
bool ParsePartName(absl::string_view name, const std::string& prefix, const std::string& suffix,
                   PartName* out) {
  bool hidden = absl::ConsumePrefix(&name, ".");
  if (!absl::ConsumePrefix(&name, prefix) || !absl::ConsumePrefix(&name, "-") ||
      !ConsumeNumber(&name, &out->subtask) || !absl::ConsumePrefix(&name, "-") ||
      !ConsumeNumber(&name, &out->part) || !absl::ConsumePrefix(&name, suffix)) {
    return false;
  }
  if (!hidden) {
    out->kind = PartName::kCommitted;
    return name.empty();
  }
  if (name == kPendingTag) {
    out->kind = PartName::kPending;
    return true;
  }
  out->kind = PartName::kInProgress;
  return absl::StartsWith(name, kInProgressTag);
}

}  // namespace

absl::Status ExactlyOnceFileSinkOptions::Validate() const {
  const char* where = "ExactlyOnceFileSinkOptions";
  if (directory.empty())
    return absl::InvalidArgumentError(absl::StrCat(where, ".directory: empty"));
  if (prefix.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ".prefix: empty"));
  if (prefix.find('/') != std::string::npos || prefix.front() == '.') {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".prefix: \"", prefix, "\" must not contain '/' nor start with '.'"));
  }
  if (suffix.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".suffix: \"", suffix, "\" must not contain '/'"));
  }
  if (max_part_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".max_part_bytes: must be > 0, got ", max_part_bytes));
  }
  if (rollover_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".rollover_interval: must be > 0, got ",
                                                   absl::FormatDuration(rollover_interval)));
  }
  return absl::OkStatus();
}

namespace internal {

absl::StatusOr<std::unique_ptr<PartFileBucket>> PartFileBucket::Open(
    ExactlyOnceFileSinkOptions options, int subtask_index, int parallelism) {
  SLUICE_RETURN_IF_ERROR(options.Validate());
  std::error_code ec;
  fs::create_directories(options.directory, ec);
  if (ec) return FilesystemError(ec, options.directory, "cannot create directory");
  if (!fs::is_directory(options.directory, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(options.directory, ": not a directory"));
  }
  if (::access(options.directory.c_str(), W_OK | X_OK) != 0) {
    return ErrnoError(errno, options.directory, "directory is not writable");
  }
  if (options.clock == nullptr) options.clock = std::make_shared<SystemClock>();
  return std::unique_ptr<PartFileBucket>(
      new PartFileBucket(std::move(options), subtask_index, std::max(parallelism, 1)));
}

PartFileBucket::PartFileBucket(ExactlyOnceFileSinkOptions options, int subtask_index,
                               int parallelism)
    : options_(std::move(options)), subtask_index_(subtask_index), parallelism_(parallelism) {}

PartFileBucket::~PartFileBucket() {
  if (fd_ >= 0) ::close(fd_);
}

std::string PartFileBucket::PathOf(std::string_view name) const {
  return (fs::path(options_.directory) / std::string(name)).string();
}

absl::Status PartFileBucket::OpenPart() {
  part_name_ = absl::StrCat(options_.prefix, "-", subtask_index_, "-", next_part_, options_.suffix);
  in_progress_name_ = absl::StrCat(".", part_name_, kInProgressTag, RandomHexToken(16));
  std::string path = PathOf(in_progress_name_);
  int fd;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoError(errno, path, "cannot create part file");
  fd_ = fd;
  ++next_part_;
  part_bytes_ = 0;
  part_opened_millis_ = options_.clock->NowMillis();
  return absl::OkStatus();
}

absl::Status PartFileBucket::FlushBuffer() {
  size_t written = 0;
  while (written < buffer_.size()) {
    ssize_t n = ::write(fd_, buffer_.data() + written, buffer_.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      buffer_.clear();
      return ErrnoError(err, PathOf(in_progress_name_), "write failed");
    }
    written += static_cast<size_t>(n);
  }
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status PartFileBucket::RollPart(PartFileTransaction* txn) {
  if (fd_ < 0) return absl::OkStatus();
  std::string path = PathOf(in_progress_name_);
  absl::Status status = FlushBuffer();
  // The data must be on disk before the part can be listed in a checkpoint.
  if (status.ok() && ::fdatasync(fd_) != 0) status = ErrnoError(errno, path, "fsync failed");
  if (::close(fd_) != 0 && status.ok()) status = ErrnoError(errno, path, "close failed");
  fd_ = -1;
  SLUICE_RETURN_IF_ERROR(status);
  std::string pending = PathOf(PendingName(part_name_));
  if (::rename(path.c_str(), pending.c_str()) != 0) {
    return ErrnoError(errno, path, absl::StrCat("cannot rename to ", pending).c_str());
  }
  txn->parts.push_back(std::move(part_name_));
  part_name_.clear();
  in_progress_name_.clear();
  return absl::OkStatus();
}

absl::Status PartFileBucket::SyncDirectory() { return FsyncPath(options_.directory, true); }

absl::Status PartFileBucket::RollIfDue(PartFileTransaction* txn) {
  if (fd_ < 0 || options_.rollover_interval == absl::InfiniteDuration()) return absl::OkStatus();
  int64_t age = options_.clock->NowMillis() - part_opened_millis_;
  if (absl::Milliseconds(age) < options_.rollover_interval) return absl::OkStatus();
  return RollPart(txn);
}

absl::Status PartFileBucket::AppendLine(std::string_view line, PartFileTransaction* txn) {
  const int64_t size = static_cast<int64_t>(line.size()) + 1;
  if (fd_ >= 0 && part_bytes_ > 0 && part_bytes_ + size > options_.max_part_bytes) {
    SLUICE_RETURN_IF_ERROR(RollPart(txn));
  }
  if (fd_ < 0) SLUICE_RETURN_IF_ERROR(OpenPart());
  buffer_.append(line);
  buffer_.push_back('\n');
  part_bytes_ += size;
  if (buffer_.size() >= (64u << 10)) return FlushBuffer();
  return absl::OkStatus();
}

absl::Status PartFileBucket::PreCommit(PartFileTransaction* txn) {
  SLUICE_RETURN_IF_ERROR(RollPart(txn));
  // The renames to pending must survive a machine crash once the checkpoint lists them.
  if (!txn->parts.empty()) return SyncDirectory();
  return absl::OkStatus();
}

absl::Status PartFileBucket::Commit(const PartFileTransaction& txn) {
  bool renamed = false;
  for (const std::string& name : txn.parts) {
    std::string pending = PathOf(PendingName(name));
    std::string final_path = PathOf(name);
    if (::rename(pending.c_str(), final_path.c_str()) == 0) {
      renamed = true;
      continue;
    }
    int err = errno;
    struct stat st;
    if (err == ENOENT && ::stat(final_path.c_str(), &st) == 0) continue;  // committed before
    if (err == ENOENT) {
      return absl::DataLossError(absl::StrCat("cannot commit ", pending, ": neither it nor ",
                                              final_path,
                                              " exists: ", std::generic_category().message(err)));
    }
    return ErrnoError(err, pending, absl::StrCat("cannot rename to ", final_path).c_str());
  }
  if (renamed) return SyncDirectory();
  return absl::OkStatus();
}

void PartFileBucket::Abort(const PartFileTransaction& txn) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    buffer_.clear();
    ::unlink(PathOf(in_progress_name_).c_str());
    part_name_.clear();
    in_progress_name_.clear();
  }
  for (const std::string& name : txn.parts) ::unlink(PathOf(PendingName(name)).c_str());
}

absl::Status PartFileBucket::DeleteLeftovers(const std::vector<int>& other_subtasks) {
  std::error_code ec;
  fs::directory_iterator it(options_.directory, ec);
  if (ec) return FilesystemError(ec, options_.directory, "cannot list directory");
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    PartName part;
    if (!ParsePartName(name, options_.prefix, options_.suffix, &part)) continue;
    bool mine = part.subtask == subtask_index_;
    // Numbers of deleted parts are not reused either: a name never means two different files.
    if (mine) next_part_ = std::max(next_part_, part.part + 1);
    if (part.kind == PartName::kCommitted) continue;
    // A subtask that does not exist now: its leftovers are this one's to delete (their pending
    // parts that a restored checkpoint lists were committed before this runs).
    const bool orphan =
        part.subtask >= parallelism_ && part.subtask % parallelism_ == subtask_index_;
    if (!mine && !orphan &&
        std::find(other_subtasks.begin(), other_subtasks.end(), part.subtask) ==
            other_subtasks.end()) {
      continue;
    }
    std::string path = it->path().string();
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError(errno, path, "cannot delete leftover part file");
    }
  }
  if (ec) return FilesystemError(ec, options_.directory, "cannot list directory");
  return absl::OkStatus();
}

std::string PartFileBucket::SnapshotCounter() const {
  std::string out;
  Serializer<int64_t>::Write(subtask_index_, &out);
  Serializer<int64_t>::Write(next_part_, &out);
  return out;
}

absl::Status PartFileBucket::RestoreCounters(const std::vector<std::string>& counters,
                                             std::vector<int>* other_subtasks) {
  for (const std::string& bytes : counters) {
    ByteReader in(bytes);
    int64_t subtask = 0;
    int64_t next = 0;
    if (!Serializer<int64_t>::Read(in, &subtask) || !Serializer<int64_t>::Read(in, &next) ||
        !in.empty() || subtask < 0 || next < 0) {
      return absl::DataLossError(absl::StrCat("exactly-once file sink ", options_.directory,
                                              ": malformed part counter in the restored state"));
    }
    if (subtask == subtask_index_) {
      next_part_ = std::max(next_part_, next);
    } else {
      other_subtasks->push_back(static_cast<int>(subtask));
    }
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace sluice
