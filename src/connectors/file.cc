// File connectors: the non-template parts of <sluice/connectors/file.h>.
#include <sluice/connectors/file.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include <sluice/state/serializer.h>

namespace sluice {
namespace {

namespace fs = std::filesystem;

// "<path>: <what>: <strerror>" with the status code that matches `err`.
absl::Status ErrnoError(int err, const std::string& path, const char* what) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(path, ": ", what, ": ", std::generic_category().message(err)));
}

absl::Status FilesystemError(const std::error_code& ec, const std::string& path, const char* what) {
  if (ec.category() == std::generic_category() || ec.category() == std::system_category()) {
    return ErrnoError(ec.value(), path, what);
  }
  return absl::InternalError(absl::StrCat(path, ": ", what, ": ", ec.message()));
}

absl::Status ValidateCsvChars(const char* what, char delimiter, char quote) {
  if (delimiter == '\n' || delimiter == '\r') {
    return absl::InvalidArgumentError(absl::StrCat(what, ".delimiter must not be a line break"));
  }
  if (quote == '\n' || quote == '\r') {
    return absl::InvalidArgumentError(absl::StrCat(what, ".quote must not be a line break"));
  }
  if (delimiter == quote) {
    return absl::InvalidArgumentError(absl::StrCat(what, ".delimiter and ", what,
                                                   ".quote must differ, both are '",
                                                   std::string(1, delimiter), "'"));
  }
  return absl::OkStatus();
}

bool IsHidden(std::string_view name) {
  return name.empty() || name.front() == '.' || name.front() == '_';
}

// Format version of every file source position (see the top of file.h).
constexpr uint8_t kFilePositionVersion = 1;

absl::Status UndecodablePosition(const std::string& description) {
  return absl::DataLossError(absl::StrCat(description, ": checkpointed position does not decode"));
}

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// --- TextFileSource ---------------------------------------------------------------------------

class TextFileReader : public SourceReader<std::string> {
 public:
  TextFileReader(std::unique_ptr<internal::LineFileReader> file, std::string description)
      : file_(std::move(file)), description_(std::move(description)) {}

  absl::StatusOr<PollResult> PollNext(Collector<std::string>& out, int max_records) override {
    bool ended = false;
    SLUICE_ASSIGN_OR_RETURN(
        int emitted,
        internal::ReadLines(*file_, max_records, &ended, [&out](std::string_view line, int64_t) {
          out.Emplace(line);
          return absl::OkStatus();
        }));
    (void)emitted;
    return ended ? PollResult::End() : PollResult::More();
  }
  void Close() override { file_.reset(); }

  absl::StatusOr<std::string> SnapshotState(int64_t) override {
    if (file_ == nullptr) return ClosedError();
    return internal::EncodeFilePosition(*file_);
  }
  absl::Status RestoreState(std::string_view state) override {
    if (file_ == nullptr) return ClosedError();
    return internal::RestoreFilePosition(state, description_, *file_);
  }

 private:
  absl::Status ClosedError() const {
    return absl::FailedPreconditionError(absl::StrCat(description_, ": reader is closed"));
  }

  std::unique_ptr<internal::LineFileReader> file_;
  const std::string description_;
};

// --- DirectorySource --------------------------------------------------------------------------

class DirectoryReader : public SourceReader<std::string> {
 public:
  // Files opened at most per poll, so a directory of many empty files cannot hog a worker.
  static constexpr int kMaxFilesPerPoll = 8;

  DirectoryReader(std::string dir, DirectorySourceOptions options, int subtask, int parallelism,
                  std::string description)
      : dir_(std::move(dir)),
        options_(options),
        subtask_(subtask),
        parallelism_(parallelism),
        description_(std::move(description)) {}

  // Lists the directory and queues the files of this subtask not seen before, in name order.
  absl::Status Scan() {
    std::error_code ec;
    fs::directory_iterator it(dir_, ec);
    if (ec) return FilesystemError(ec, dir_, "cannot list directory");
    std::vector<std::string> found;
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (IsHidden(name)) continue;
      std::error_code type_ec;
      if (!it->is_regular_file(type_ec)) continue;  // subdirectories, sockets, dangling links
      if (DirectorySource::SubtaskOf(name, parallelism_) != subtask_) continue;
      if (seen_.count(name) > 0) continue;
      found.push_back(std::move(name));
    }
    if (ec) return FilesystemError(ec, dir_, "cannot list directory");
    std::sort(found.begin(), found.end());
    for (std::string& name : found) {
      seen_.insert(name);
      pending_.push_back(std::move(name));
    }
    next_scan_ = absl::Now() + options_.interval;
    return absl::OkStatus();
  }

  absl::StatusOr<PollResult> PollNext(Collector<std::string>& out, int max_records) override {
    int emitted = 0;
    int opened = 0;
    while (emitted < max_records) {
      if (current_ == nullptr) {
        if (pending_.empty() || opened == kMaxFilesPerPoll) break;
        std::string path = (fs::path(dir_) / pending_.front()).string();
        current_name_ = std::move(pending_.front());
        pending_.pop_front();
        ++opened;
        SLUICE_ASSIGN_OR_RETURN(current_, internal::LineFileReader::Open(std::move(path)));
      }
      // Each file is a split: with a watermark strategy it gets its own generator, and it stops
      // holding the watermark back once it is read.
      Collector<std::string>& split = out.ForSplit(current_name_);
      bool ended = false;
      SLUICE_ASSIGN_OR_RETURN(int n, internal::ReadLines(*current_, max_records - emitted, &ended,
                                                         [&split](std::string_view line, int64_t) {
                                                           split.Emplace(line);
                                                           return absl::OkStatus();
                                                         }));
      emitted += n;
      if (!ended) return PollResult::More();  // read a chunk already: yield
      current_.reset();
      out.ReleaseSplit(current_name_);
    }
    if (current_ != nullptr || !pending_.empty()) return PollResult::More();
    if (options_.mode == DirectorySourceOptions::kProcessOnce) return PollResult::End();

    absl::Time now = absl::Now();
    if (now < next_scan_) return PollResult::NothingUntil(next_scan_ - now);
    SLUICE_RETURN_IF_ERROR(Scan());
    if (!pending_.empty()) return PollResult::More();
    return PollResult::NothingUntil(options_.interval);
  }

  void Close() override {
    current_.reset();
    pending_.clear();
  }

  // Version 1: the finished files (sorted), the queued files (in reading order), then 1 and the
  // current file's name, offset and line number, or 0 when no file is open.
  absl::StatusOr<std::string> SnapshotState(int64_t) override {
    std::set<std::string_view> unfinished(pending_.begin(), pending_.end());
    if (current_ != nullptr) unfinished.insert(current_name_);
    std::vector<std::string> finished;
    for (const std::string& name : seen_) {
      if (unfinished.count(name) == 0) finished.push_back(name);
    }
    std::string out;
    Serializer<uint8_t>::Write(kFilePositionVersion, &out);
    Serializer<std::vector<std::string>>::Write(finished, &out);
    Serializer<std::vector<std::string>>::Write(
        std::vector<std::string>(pending_.begin(), pending_.end()), &out);
    Serializer<uint8_t>::Write(current_ != nullptr ? 1 : 0, &out);
    if (current_ != nullptr) {
      Serializer<std::string>::Write(current_name_, &out);
      Serializer<uint64_t>::Write(current_->position(), &out);
      Serializer<int64_t>::Write(current_->line_number(), &out);
    }
    return out;
  }

  // Replaces the listing taken by CreateReader: finished files are not read again, the file that
  // was being read continues at its offset, then the queued files follow. In kProcessOnce mode
  // files that appeared since the job first started are ignored (the set of files is the first
  // listing's); in kProcessContinuously mode the next scan happens as soon as the queue is empty.
  absl::Status RestoreState(std::string_view state) override {
    ByteReader in(state);
    uint8_t version = 0;
    std::vector<std::string> finished;
    std::vector<std::string> pending;
    uint8_t has_current = 0;
    std::string current_name;
    uint64_t offset = 0;
    int64_t line_number = 0;
    bool ok = Serializer<uint8_t>::Read(in, &version) && version == kFilePositionVersion &&
              Serializer<std::vector<std::string>>::Read(in, &finished) &&
              Serializer<std::vector<std::string>>::Read(in, &pending) &&
              Serializer<uint8_t>::Read(in, &has_current) && has_current <= 1;
    if (ok && has_current == 1) {
      ok = Serializer<std::string>::Read(in, &current_name) &&
           Serializer<uint64_t>::Read(in, &offset) && Serializer<int64_t>::Read(in, &line_number) &&
           line_number >= 0 && !IsHidden(current_name);
    }
    if (!ok || !in.empty()) return UndecodablePosition(description_);

    current_.reset();
    seen_.clear();
    seen_.insert(finished.begin(), finished.end());
    seen_.insert(pending.begin(), pending.end());
    pending_.assign(std::make_move_iterator(pending.begin()),
                    std::make_move_iterator(pending.end()));
    if (has_current == 1) {
      seen_.insert(current_name);
      std::string path = (fs::path(dir_) / current_name).string();
      SLUICE_ASSIGN_OR_RETURN(current_, internal::LineFileReader::Open(std::move(path)));
      SLUICE_RETURN_IF_ERROR(current_->SeekTo(offset, line_number));
      current_name_ = std::move(current_name);
    }
    if (options_.mode == DirectorySourceOptions::kProcessContinuously) {
      next_scan_ = absl::InfinitePast();
    }
    return absl::OkStatus();
  }

 private:
  const std::string dir_;
  const DirectorySourceOptions options_;
  const int subtask_;
  const int parallelism_;
  const std::string description_;
  std::set<std::string> seen_;
  std::deque<std::string> pending_;
  std::unique_ptr<internal::LineFileReader> current_;
  std::string current_name_;  // the split id of current_
  absl::Time next_scan_;
};

}  // namespace

// --- Options ------------------------------------------------------------------------------------

absl::Status CsvOptions::Validate() const {
  return ValidateCsvChars("CsvOptions", delimiter, quote);
}

absl::Status CsvSinkOptions::Validate() const {
  return ValidateCsvChars("CsvSinkOptions", delimiter, quote);
}

absl::Status DirectorySourceOptions::Validate() const {
  if (mode != kProcessOnce && mode != kProcessContinuously) {
    return absl::InvalidArgumentError(
        absl::StrCat("DirectorySourceOptions.mode has an unknown value ", static_cast<int>(mode)));
  }
  if (interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DirectorySourceOptions.interval must be > 0, got ", absl::FormatDuration(interval)));
  }
  return absl::OkStatus();
}

// --- Sources ------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<SourceReader<std::string>>> TextFileSource::CreateReader(
    const SourceContext&) {
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<internal::LineFileReader> file,
                          internal::LineFileReader::Open(path_));
  return std::unique_ptr<SourceReader<std::string>>(
      new TextFileReader(std::move(file), Describe()));
}

int DirectorySource::SubtaskOf(std::string_view file_name, int parallelism) {
  if (parallelism <= 1) return 0;
  return static_cast<int>(Fnv1a64(file_name) % static_cast<uint64_t>(parallelism));
}

absl::StatusOr<std::unique_ptr<SourceReader<std::string>>> DirectorySource::CreateReader(
    const SourceContext& ctx) {
  SLUICE_RETURN_IF_ERROR(options_.Validate());
  std::error_code ec;
  fs::file_status status = fs::status(dir_, ec);
  if (ec || !fs::exists(status)) {
    return absl::NotFoundError(absl::StrCat(dir_, ": no such directory"));
  }
  if (!fs::is_directory(status)) {
    return absl::InvalidArgumentError(absl::StrCat(dir_, ": not a directory"));
  }
  auto reader = std::make_unique<DirectoryReader>(dir_, options_, ctx.subtask_index(),
                                                  ctx.parallelism(), Describe());
  // The first listing is taken when the job starts: in kProcessOnce mode it is the set of files.
  SLUICE_RETURN_IF_ERROR(reader->Scan());
  return std::unique_ptr<SourceReader<std::string>>(std::move(reader));
}

namespace internal {

// --- LineFileReader ------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<LineFileReader>> LineFileReader::Open(std::string path,
                                                                     size_t chunk_bytes) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return ErrnoError(err, path, "cannot open");
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError(err, path, "cannot stat");
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a file"));
  }
  return std::unique_ptr<LineFileReader>(
      new LineFileReader(std::move(path), fd, std::max<size_t>(chunk_bytes, 1)));
}

LineFileReader::LineFileReader(std::string path, int fd, size_t chunk_bytes)
    : path_(std::move(path)), fd_(fd), chunk_bytes_(chunk_bytes) {}

LineFileReader::~LineFileReader() {
  if (fd_ >= 0) ::close(fd_);
}

bool LineFileReader::NextLine(std::string_view* line) {
  size_t end = buffer_.find('\n', std::max(pos_, scanned_));
  if (end == std::string::npos) {
    scanned_ = buffer_.size();
    if (!eof_ || pos_ >= buffer_.size()) return false;
    end = buffer_.size();  // the last line has no '\n'
  }
  std::string_view text(buffer_.data() + pos_, end - pos_);
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  *line = text;
  pos_ = std::min(end + 1, buffer_.size());
  ++line_number_;
  return true;
}

absl::Status LineFileReader::Fill() {
  if (eof_) return absl::OkStatus();
  if (pos_ > 0) {
    buffer_.erase(0, pos_);
    buffer_offset_ += pos_;
    scanned_ = scanned_ > pos_ ? scanned_ - pos_ : 0;
    pos_ = 0;
  }
  size_t old_size = buffer_.size();
  buffer_.resize(old_size + chunk_bytes_);
  ssize_t n;
  do {
    n = ::read(fd_, buffer_.data() + old_size, chunk_bytes_);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int err = errno;
    buffer_.resize(old_size);
    return ErrnoError(err, path_, "read failed");
  }
  buffer_.resize(old_size + static_cast<size_t>(n));
  if (n == 0) {
    eof_ = true;
    ::close(fd_);
    fd_ = -1;
  }
  return absl::OkStatus();
}

absl::Status LineFileReader::SeekTo(uint64_t offset, int64_t line_number) {
  if (fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": cannot seek: the file was already read to its end"));
  }
  struct stat st;
  if (::fstat(fd_, &st) != 0) return ErrnoError(errno, path_, "cannot stat");
  if (offset > static_cast<uint64_t>(st.st_size)) {
    return absl::DataLossError(absl::StrCat(path_, ": the checkpointed offset ", offset,
                                            " is beyond the end of the file (", st.st_size,
                                            " bytes): the file changed since the checkpoint"));
  }
  if (::lseek(fd_, static_cast<off_t>(offset), SEEK_SET) < 0) {
    return ErrnoError(errno, path_, "cannot seek");
  }
  buffer_.clear();
  pos_ = 0;
  scanned_ = 0;
  buffer_offset_ = offset;
  line_number_ = line_number;
  return absl::OkStatus();
}

// --- Checkpointed positions ---------------------------------------------------------------------

std::string EncodeFilePosition(const LineFileReader& reader) {
  std::string out;
  Serializer<uint8_t>::Write(kFilePositionVersion, &out);
  Serializer<uint64_t>::Write(reader.position(), &out);
  Serializer<int64_t>::Write(reader.line_number(), &out);
  return out;
}

absl::Status RestoreFilePosition(std::string_view state, const std::string& description,
                                 LineFileReader& reader) {
  ByteReader in(state);
  uint8_t version = 0;
  uint64_t offset = 0;
  int64_t line_number = 0;
  if (!Serializer<uint8_t>::Read(in, &version) || version != kFilePositionVersion ||
      !Serializer<uint64_t>::Read(in, &offset) || !Serializer<int64_t>::Read(in, &line_number) ||
      line_number < 0 || !in.empty()) {
    return UndecodablePosition(description);
  }
  return reader.SeekTo(offset, line_number);
}

// --- CSV ----------------------------------------------------------------------------------------

absl::Status ParseCsvLine(std::string_view line, char delimiter, char quote,
                          std::vector<std::string>* fields) {
  fields->clear();
  size_t i = 0;
  const size_t n = line.size();
  while (true) {
    std::string& field = fields->emplace_back();
    if (i < n && line[i] == quote) {
      const size_t opening = i;
      ++i;
      while (true) {
        if (i >= n) {
          return absl::InvalidArgumentError(absl::StrCat("field ", fields->size(),
                                                         ": quoted field opened at column ",
                                                         opening + 1, " is not closed"));
        }
        if (line[i] == quote) {
          if (i + 1 < n && line[i + 1] == quote) {
            field += quote;
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        field += line[i++];
      }
      if (i < n && line[i] != delimiter) {
        return absl::InvalidArgumentError(
            absl::StrCat("field ", fields->size(), ": unexpected character '",
                         std::string(1, line[i]), "' after closing quote at column ", i + 1));
      }
    } else {
      size_t end = line.find(delimiter, i);
      if (end == std::string_view::npos) end = n;
      field.assign(line.substr(i, end - i));
      i = end;
    }
    if (i >= n) break;
    ++i;  // the delimiter
  }
  return absl::OkStatus();
}

void AppendCsvLine(const std::vector<std::string>& fields, char delimiter, char quote,
                   std::string* out) {
  for (size_t f = 0; f < fields.size(); ++f) {
    if (f > 0) *out += delimiter;
    const std::string& field = fields[f];
    bool needs_quotes =
        field.find_first_of(std::string{delimiter, quote, '\n', '\r'}) != std::string::npos;
    // A record of one empty field would be a blank line, which readers skip.
    if (fields.size() == 1 && field.empty()) needs_quotes = true;
    if (!needs_quotes) {
      *out += field;
      continue;
    }
    *out += quote;
    for (char c : field) {
      if (c == quote) *out += quote;
      *out += c;
    }
    *out += quote;
  }
  *out += '\n';
}

absl::Status CurrentExceptionAt(const std::string& path, int64_t line) {
  try {
    throw;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ":", line, ": ", e.what()));
  } catch (...) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", line, ": the parse function threw an exception"));
  }
}

// --- TextFileWriter ------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<TextFileWriter>> TextFileWriter::Open(const std::string& path,
                                                                     const RuntimeContext& ctx,
                                                                     WriteMode mode,
                                                                     size_t buffer_bytes) {
  std::error_code ec;
  std::string file = path;
  if (ctx.parallelism > 1) {
    fs::file_status status = fs::status(path, ec);
    if (fs::exists(status) && !fs::is_directory(status)) {
      if (mode == WriteMode::kNoOverwrite) {
        return absl::AlreadyExistsError(absl::StrCat(
            path, ": exists and is not a directory; at parallelism ", ctx.parallelism,
            " the sink writes a directory of part files (WriteMode::kOverwrite replaces it)"));
      }
      if (!fs::remove(path, ec) || ec) return FilesystemError(ec, path, "cannot remove");
    }
    fs::create_directories(path, ec);
    if (ec) return FilesystemError(ec, path, "cannot create directory");
    file = (fs::path(path) / absl::StrCat("part-", ctx.subtask_index)).string();
  } else {
    fs::path parent = fs::path(path).parent_path();
    if (!parent.empty()) {
      fs::create_directories(parent, ec);
      if (ec) return FilesystemError(ec, parent.string(), "cannot create directory");
    }
  }
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC;
  flags |= mode == WriteMode::kOverwrite ? O_TRUNC : O_EXCL;
  int fd;
  do {
    fd = ::open(file.c_str(), flags, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    int err = errno;
    if (err == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat(file, ": already exists (use WriteMode::kOverwrite to replace it)"));
    }
    if (err == EISDIR) return absl::InvalidArgumentError(absl::StrCat(file, ": is a directory"));
    return ErrnoError(err, file, "cannot open for writing");
  }
  return std::unique_ptr<TextFileWriter>(
      new TextFileWriter(std::move(file), fd, std::max<size_t>(buffer_bytes, 1)));
}

absl::StatusOr<std::unique_ptr<TextFileWriter>> TextFileWriter::Resume(const std::string& file,
                                                                       int64_t length,
                                                                       size_t buffer_bytes) {
  std::error_code ec;
  const fs::path parent = fs::path(file).parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    if (ec) return FilesystemError(ec, parent.string(), "cannot create directory");
  }
  int fd;
  do {
    fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == EISDIR) return absl::InvalidArgumentError(absl::StrCat(file, ": is a directory"));
    return ErrnoError(errno, file, "cannot open for writing");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoError(err, file, "cannot stat");
  }
  if (st.st_size < length) {
    ::close(fd);
    return absl::DataLossError(absl::StrCat(
        file, ": the checkpoint being restored recorded ", length,
        " bytes written, but the file "
        "has ",
        st.st_size, ": it was truncated or replaced since, and the output it held is lost"));
  }
  if (::ftruncate(fd, length) != 0 || ::lseek(fd, length, SEEK_SET) != length) {
    const int err = errno;
    ::close(fd);
    return ErrnoError(err, file, "cannot truncate to the checkpoint's length");
  }
  return std::unique_ptr<TextFileWriter>(
      new TextFileWriter(file, fd, std::max<size_t>(buffer_bytes, 1)));
}

TextFileWriter::TextFileWriter(std::string path, int fd, size_t buffer_bytes)
    : path_(std::move(path)), fd_(fd), buffer_bytes_(buffer_bytes) {
  buffer_.reserve(buffer_bytes_);
}

TextFileWriter::~TextFileWriter() { Close(); }

absl::Status TextFileWriter::Append(std::string_view data) {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": file already closed"));
  buffer_.append(data);
  if (buffer_.size() >= buffer_bytes_) return FlushBuffer();
  return absl::OkStatus();
}

absl::Status TextFileWriter::FlushBuffer() {
  size_t written = 0;
  while (written < buffer_.size()) {
    ssize_t n = ::write(fd_, buffer_.data() + written, buffer_.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      buffer_.clear();
      return ErrnoError(err, path_, "write failed");
    }
    written += static_cast<size_t>(n);
  }
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status TextFileWriter::Sync() {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": file already closed"));
  SLUICE_RETURN_IF_ERROR(FlushBuffer());
  if (::fdatasync(fd_) != 0) return ErrnoError(errno, path_, "fdatasync failed");
  return absl::OkStatus();
}

absl::Status TextFileWriter::Finish() {
  if (fd_ < 0) return absl::OkStatus();
  absl::Status status = FlushBuffer();
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0 && status.ok()) status = ErrnoError(errno, path_, "close failed");
  return status;
}

void TextFileWriter::Close() {
  if (fd_ >= 0) {
    (void)FlushBuffer();
    ::close(fd_);
    fd_ = -1;
  }
  buffer_.clear();
}

// --- CheckpointedTextFile ------------------------------------------------------------------------

namespace {
constexpr uint8_t kTextFileStateVersion = 1;
}  // namespace

CheckpointedTextFile::CheckpointedTextFile(std::string path, const RuntimeContext& ctx,
                                           WriteMode mode, size_t buffer_bytes, std::string header)
    : path_(std::move(path)),
      name_(ctx.parallelism > 1 ? absl::StrCat("part-", ctx.subtask_index) : std::string()),
      ctx_(ctx),
      mode_(mode),
      buffer_bytes_(buffer_bytes),
      header_(std::move(header)) {}

CheckpointedTextFile::~CheckpointedTextFile() = default;

std::string CheckpointedTextFile::FileFor(std::string_view name) const {
  return name.empty() ? path_ : (fs::path(path_) / std::string(name)).string();
}

absl::Status CheckpointedTextFile::EnsureOpen() {
  if (file_ != nullptr) return absl::OkStatus();
  if (failed_) return absl::FailedPreconditionError(absl::StrCat(FileFor(name_), ": not open"));
  absl::StatusOr<std::unique_ptr<TextFileWriter>> file =
      TextFileWriter::Open(path_, ctx_, mode_, buffer_bytes_);
  if (!file.ok()) {
    failed_ = true;
    return file.status();
  }
  file_ = *std::move(file);
  length_ = 0;
  if (!header_.empty()) return Append(header_);
  return absl::OkStatus();
}

absl::Status CheckpointedTextFile::Append(std::string_view data) {
  SLUICE_RETURN_IF_ERROR(EnsureOpen());
  length_ += static_cast<int64_t>(data.size());
  return file_->Append(data);
}

absl::StatusOr<std::string> CheckpointedTextFile::Snapshot() {
  SLUICE_RETURN_IF_ERROR(EnsureOpen());
  SLUICE_RETURN_IF_ERROR(file_->Sync());
  std::string out;
  Serializer<uint8_t>::Write(kTextFileStateVersion, &out);
  Serializer<std::string>::Write(name_, &out);
  Serializer<int64_t>::Write(length_, &out);
  Serializer<int32_t>::Write(ctx_.parallelism, &out);
  return out;
}

absl::Status CheckpointedTextFile::Restore(const std::vector<std::string>& states) {
  if (file_ != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(FileFor(name_), ": restored after the file was opened"));
  }
  // Part files are per subtask: a subtask resumes its own file, so the parallelism must stay.
  // (Taking over the files of subtasks that no longer exist, and handing them back on a later
  // scale-up, would need names that never clash; refused loudly instead.)
  const auto rescaled = [&](absl::string_view old_parallelism) {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, ": the file sink's checkpoint was written at parallelism ", old_parallelism,
        " and cannot be resumed at parallelism ", ctx_.parallelism,
        ": each subtask resumes its own file; resume at the checkpoint's parallelism, or write to "
        "another path"));
  };
  if (states.empty()) return rescaled("below this subtask's index");  // a new subtask
  std::optional<int64_t> own;
  for (const std::string& state : states) {
    if (state.empty()) continue;  // a checkpoint of a Sluice that kept no file state
    ByteReader in(state);
    uint8_t version = 0;
    std::string name;
    int64_t length = -1;
    int32_t parallelism = 0;
    if (!Serializer<uint8_t>::Read(in, &version) || version != kTextFileStateVersion ||
        !Serializer<std::string>::Read(in, &name) || !Serializer<int64_t>::Read(in, &length) ||
        !Serializer<int32_t>::Read(in, &parallelism) || length < 0 || parallelism < 1 ||
        !in.empty()) {
      return absl::DataLossError(absl::StrCat(
          path_, ": the file sink's checkpointed state does not decode (format version ",
          static_cast<int>(version), ")"));
    }
    if (parallelism != ctx_.parallelism || states.size() != 1) {
      return rescaled(absl::StrCat(parallelism));
    }
    if (name != name_) {
      return absl::DataLossError(absl::StrCat(path_, ": subtask ", ctx_.subtask_index,
                                              " was handed the state of the file '", name,
                                              "' instead of its own"));
    }
    own = length;
  }
  if (!own.has_value()) return absl::OkStatus();  // no file state kept: opened on first use
  SLUICE_ASSIGN_OR_RETURN(file_, TextFileWriter::Resume(FileFor(name_), *own, buffer_bytes_));
  length_ = *own;
  if (length_ == 0 && !header_.empty()) return Append(header_);
  return absl::OkStatus();
}

absl::Status CheckpointedTextFile::Finish() {
  SLUICE_RETURN_IF_ERROR(EnsureOpen());
  return file_->Finish();
}

void CheckpointedTextFile::Close() {
  if (file_ != nullptr) file_->Close();
}

}  // namespace internal
}  // namespace sluice
