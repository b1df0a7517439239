// The non-template part of FirehoseSink: one subtask's batch buffer, deliveries (transformation,
// compression, hidden pending files) and the commit of delivered files.
#include <sluice/connectors/firehose_sink.h>

#include "connectors/fs_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <random>
#include <system_error>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using internal::ErrnoError;
using internal::FilesystemError;
using internal::FsyncPath;
using internal::RandomHexToken;

constexpr char kWhere[] = "FirehoseSinkOptions";
constexpr char kPendingTag[] = ".pending";
constexpr char kInProgressTag[] = ".inprogress";
constexpr int64_t kMaxInterval = 900;  // seconds
constexpr int kZstdLevel = 3;

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Creates `dir` (inside `root`, which exists) and its missing parents, fsyncing the parent of each
// directory it creates so that the new entries survive a machine crash.
absl::Status EnsureDirectory(const fs::path& root, const fs::path& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return absl::OkStatus();
  fs::path parent = dir.parent_path();
  if (parent != root && !parent.empty()) SLUICE_RETURN_IF_ERROR(EnsureDirectory(root, parent));
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoError(errno, dir.string(), "cannot create directory");
  }
  return FsyncPath(parent.empty() ? root.string() : parent.string(), true);
}

absl::Status ValidatePrefix(const char* field, const std::string& prefix) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(kWhere, ".", field, ": \"", prefix, "\" ", why));
  };
  if (prefix.size() > 1024) return bad("is longer than 1024 characters");
  if (prefix.find('\0') != std::string::npos) return bad("contains a NUL character");
  if (!prefix.empty() && prefix.front() == '/') return bad("must be relative (starts with '/')");
  size_t start = 0;
  while (start < prefix.size()) {
    size_t end = prefix.find('/', start);
    const bool last = end == std::string::npos;
    if (last) end = prefix.size();
    absl::string_view part(prefix.data() + start, end - start);
    if (part.empty()) return bad("has an empty path component (\"//\")");
    if (part.front() == '.') {
      return bad("has a path component starting with '.' (hidden, \".\" or \"..\")");
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

bool ValidStreamChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

const char* Extension(FirehoseCompression c) {
  switch (c) {
    case FirehoseCompression::kGzip:
      return ".gz";
    case FirehoseCompression::kZstd:
      return ".zst";
    case FirehoseCompression::kNone:
      break;
  }
  return "";
}

void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          char buf[7];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

absl::Status Compress(FirehoseCompression c, std::string_view in, std::string* out,
                      const std::string& what) {
  out->clear();
  if (c == FirehoseCompression::kGzip) {
    z_stream zs{};
    // windowBits 15 + 16: a gzip header and trailer instead of zlib's.
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
      return absl::InternalError(absl::StrCat(what, ": gzip: deflateInit2 failed"));
    }
    out->resize(deflateBound(&zs, static_cast<uLong>(in.size())) + 32);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    zs.next_out = reinterpret_cast<Bytef*>(out->data());
    zs.avail_out = static_cast<uInt>(out->size());
    int rc = deflate(&zs, Z_FINISH);
    size_t produced = out->size() - zs.avail_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) {
      return absl::InternalError(absl::StrCat(what, ": gzip: deflate failed (", rc, ")"));
    }
    out->resize(produced);
    return absl::OkStatus();
  }
  if (c == FirehoseCompression::kZstd) {
    out->resize(ZSTD_compressBound(in.size()));
    size_t n = ZSTD_compress(out->data(), out->size(), in.data(), in.size(), kZstdLevel);
    if (ZSTD_isError(n)) {
      return absl::InternalError(
          absl::StrCat(what, ": zstd: compression failed: ", ZSTD_getErrorName(n)));
    }
    out->resize(n);
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

// Writes `data` to a new file at `path`, fsyncs and closes it.
absl::Status WriteNewFile(const std::string& path, std::string_view data) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoError(errno, path, "cannot create file");
  absl::Status status;
  size_t written = 0;
  while (written < data.size()) {
    ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      status = ErrnoError(errno, path, "write failed");
      break;
    }
    written += static_cast<size_t>(n);
  }
  if (status.ok() && ::fdatasync(fd) != 0) status = ErrnoError(errno, path, "fsync failed");
  if (::close(fd) != 0 && status.ok()) status = ErrnoError(errno, path, "close failed");
  if (!status.ok()) ::unlink(path.c_str());
  return status;
}

// Reads "<digits>" at the front of `*s`; false when there are none.
bool ConsumeNumber(absl::string_view* s, int64_t* out) {
  const char* end = s->data() + s->size();
  auto [ptr, ec] = std::from_chars(s->data(), end, *out);
  if (ec != std::errc() || ptr == s->data() || *out < 0) return false;
  s->remove_prefix(static_cast<size_t>(ptr - s->data()));
  return true;
}

constexpr uint64_t kStateVersion = 1;

}  // namespace

absl::Status FirehoseSinkOptions::Validate() const {
  if (directory.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(kWhere, ".directory: empty"));
  }
  if (stream_name.empty() || stream_name.size() > 64 ||
      !std::all_of(stream_name.begin(), stream_name.end(), ValidStreamChar) || stream_name == "." ||
      stream_name == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat(kWhere, ".stream_name: \"", stream_name,
                     "\" must be 1 to 64 characters of [A-Za-z0-9_.-], not \".\" nor \"..\""));
  }
  SLUICE_RETURN_IF_ERROR(ValidatePrefix("prefix", prefix));
  if (error_prefix.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(kWhere, ".error_prefix: empty"));
  }
  SLUICE_RETURN_IF_ERROR(ValidatePrefix("error_prefix", error_prefix));
  if (error_prefix == prefix) {
    return absl::InvalidArgumentError(
        absl::StrCat(kWhere, ".error_prefix: \"", error_prefix, "\" must differ from prefix"));
  }
  if (buffer_size_mib < 1 || buffer_size_mib > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat(kWhere, ".buffer_size_mib: must be in [1, 128], got ", buffer_size_mib));
  }
  if (buffer_interval < absl::ZeroDuration() || buffer_interval > absl::Seconds(kMaxInterval)) {
    return absl::InvalidArgumentError(absl::StrCat(kWhere,
                                                   ".buffer_interval: must be in [0s, 900s], got ",
                                                   absl::FormatDuration(buffer_interval)));
  }
  switch (compression) {
    case FirehoseCompression::kNone:
    case FirehoseCompression::kGzip:
    case FirehoseCompression::kZstd:
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(kWhere, ".compression: unknown value ", static_cast<int>(compression)));
  }
  return absl::OkStatus();
}

namespace internal {

absl::StatusOr<std::unique_ptr<FirehoseDelivery>> FirehoseDelivery::Open(
    FirehoseSinkOptions options, int subtask_index) {
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
  std::string staging =
      (fs::path(options.directory) / kFirehoseStagingRoot / options.stream_name).string();
  fs::create_directories(staging, ec);
  if (ec) return FilesystemError(ec, staging, "cannot create staging directory");
  if (options.clock == nullptr) options.clock = std::make_shared<SystemClock>();
  auto d =
      std::unique_ptr<FirehoseDelivery>(new FirehoseDelivery(std::move(options), subtask_index));
  d->staging_dir_ = std::move(staging);
  return d;
}

FirehoseDelivery::FirehoseDelivery(FirehoseSinkOptions options, int subtask_index)
    : options_(std::move(options)),
      subtask_index_(subtask_index),
      size_limit_(int64_t{options_.buffer_size_mib} << 20),
      clock_(options_.clock),
      token_(RandomHexToken(8)) {}

FirehoseDelivery::~FirehoseDelivery() = default;

absl::Status FirehoseDelivery::DeliverIfDue() {
  if (entries_.empty()) return absl::OkStatus();
  if (BatchBytes() >= size_limit_ ||
      absl::Milliseconds(NowMillis() - batch_start_millis_) >= options_.buffer_interval) {
    return Deliver();
  }
  return absl::OkStatus();
}

void FirehoseDelivery::AppendErrorLine(uint64_t record_id, std::string_view raw,
                                       int64_t arrival_millis, std::string_view code,
                                       std::string_view message, int64_t now_millis) {
  std::string& out = error_out_;
  absl::StrAppend(&out, "{\"attemptsMade\":1,\"arrivalTimestamp\":", arrival_millis,
                  ",\"errorCode\":");
  AppendJsonString(code, &out);
  out.append(",\"errorMessage\":");
  AppendJsonString(message, &out);
  absl::StrAppend(&out, ",\"attemptEndingTimestamp\":", now_millis, ",\"rawData\":\"");
  std::string b64;
  absl::Base64Escape(AV(raw), &b64);
  absl::StrAppend(&out, b64, "\",\"recordId\":", record_id, "}\n");
}

absl::Status FirehoseDelivery::Transform(int64_t now_millis) {
  const size_t n = entries_.size();
  inputs_.clear();
  size_t start = 0;
  for (size_t i = 0; i < n; ++i) {
    inputs_.push_back(
        FirehoseRecord{i, std::string_view(buffer_.data() + start, entries_[i].end - start),
                       entries_[i].arrival_millis});
    start = entries_[i].end;
  }
  std::vector<FirehoseTransformResult> results;
  try {
    results = options_.transformation(std::span<const FirehoseRecord>(inputs_));
  } catch (const std::exception& e) {
    return absl::UnknownError(
        absl::StrCat("FirehoseSink ", options_.stream_name, ": transformation threw: ", e.what()));
  } catch (...) {
    return absl::UnknownError(absl::StrCat("FirehoseSink ", options_.stream_name,
                                           ": transformation threw a non-standard exception"));
  }
  // Index of each record's result; kNone / kDuplicate when there is no single one.
  constexpr size_t kNone = static_cast<size_t>(-1);
  constexpr size_t kDuplicate = static_cast<size_t>(-2);
  std::vector<size_t> result_of(n, kNone);
  std::vector<uint32_t> count(n, 0);
  for (size_t r = 0; r < results.size(); ++r) {
    const uint64_t id = results[r].record_id;
    if (id >= n) {
      AppendErrorLine(id, results[r].data, now_millis, "Lambda.UnknownRecordId",
                      absl::StrCat("the transformation returned record id ", id,
                                   ", which is not in the batch of ", n,
                                   " records; rawData is the data it returned"),
                      now_millis);
      continue;
    }
    ++count[id];
    result_of[id] = result_of[id] == kNone ? r : kDuplicate;
  }
  for (size_t i = 0; i < n; ++i) {
    const FirehoseRecord& in = inputs_[i];
    if (result_of[i] == kNone) {
      AppendErrorLine(i, in.data, in.arrival_millis, "Lambda.MissingRecordId",
                      absl::StrCat("the transformation returned no result for record id ", i),
                      now_millis);
      continue;
    }
    if (result_of[i] == kDuplicate) {
      AppendErrorLine(
          i, in.data, in.arrival_millis, "Lambda.DuplicatedRecordId",
          absl::StrCat("the transformation returned ", count[i], " results for record id ", i),
          now_millis);
      continue;
    }
    FirehoseTransformResult& res = results[result_of[i]];
    switch (res.result) {
      case FirehoseResult::kOk:
        main_out_.append(res.data);
        if (options_.newline_delimiter) main_out_.push_back('\n');
        break;
      case FirehoseResult::kDropped:
        break;
      case FirehoseResult::kProcessingFailed:
        AppendErrorLine(i, in.data, in.arrival_millis, "Lambda.ProcessingFailedStatus",
                        res.error_message.empty() ? "ProcessingFailed status set for record"
                                                  : res.error_message,
                        now_millis);
        break;
      default:
        AppendErrorLine(i, in.data, in.arrival_millis, "Lambda.InvalidResult",
                        absl::StrCat("the transformation returned an unknown result (",
                                     static_cast<int>(res.result), ") for record id ", i),
                        now_millis);
    }
  }
  return absl::OkStatus();
}

absl::Status FirehoseDelivery::Deliver() {
  if (entries_.empty()) return absl::OkStatus();
  const int64_t now = NowMillis();
  main_out_.clear();
  error_out_.clear();
  std::string_view main_data;
  if (options_.transformation) {
    SLUICE_RETURN_IF_ERROR(Transform(now));
    main_data = main_out_;
  } else if (options_.newline_delimiter) {
    size_t start = 0;
    main_out_.reserve(buffer_.size() + entries_.size());
    for (const Entry& e : entries_) {
      main_out_.append(buffer_, start, e.end - start);
      main_out_.push_back('\n');
      start = e.end;
    }
    main_data = main_out_;
  } else {
    main_data = buffer_;
  }
  // Firehose's time prefix and file name: the arrival time of the oldest record of the object.
  const int64_t oldest = batch_start_millis_;
  if (!main_data.empty()) SLUICE_RETURN_IF_ERROR(WriteFile(options_.prefix, main_data, oldest));
  if (!error_out_.empty()) {
    SLUICE_RETURN_IF_ERROR(WriteFile(options_.error_prefix, error_out_, oldest));
  }
  buffer_.clear();
  entries_.clear();
  return absl::OkStatus();
}

std::string FirehoseDelivery::StagingPath(std::string_view final_path, std::string_view tag) const {
  std::string_view name = final_path;
  size_t slash = name.rfind('/');
  if (slash != std::string_view::npos) name.remove_prefix(slash + 1);
  return absl::StrCat(staging_dir_, "/", AV(name), AV(tag));
}

absl::Status FirehoseDelivery::WriteFile(const std::string& prefix, std::string_view data,
                                         int64_t now_millis) {
  const absl::Time t = absl::FromUnixMillis(now_millis);
  const absl::TimeZone utc = absl::UTCTimeZone();
  char number[16];
  std::snprintf(number, sizeof(number), "%08lld", static_cast<long long>(next_delivery_));
  std::string final_path =
      absl::StrCat(prefix, absl::FormatTime("%Y/%m/%d/%H/", t, utc), options_.stream_name, "-",
                   subtask_index_, "-", absl::FormatTime("%Y-%m-%d-%H-%M-%S", t, utc), "-", number,
                   "-", token_, Extension(options_.compression));
  ++next_delivery_;
  std::string_view bytes = data;
  if (options_.compression != FirehoseCompression::kNone) {
    SLUICE_RETURN_IF_ERROR(Compress(options_.compression, data, &compressed_,
                                    StagingPath(final_path, kInProgressTag)));
    bytes = compressed_;
  }
  std::string in_progress = StagingPath(final_path, kInProgressTag);
  std::string pending = StagingPath(final_path, kPendingTag);
  SLUICE_RETURN_IF_ERROR(WriteNewFile(in_progress, bytes));
  if (::rename(in_progress.c_str(), pending.c_str()) != 0) {
    int err = errno;
    ::unlink(in_progress.c_str());
    return ErrnoError(err, in_progress, absl::StrCat("cannot rename to ", pending));
  }
  delivered_.push_back(std::move(final_path));
  return absl::OkStatus();
}

absl::Status FirehoseDelivery::PreCommit(FirehoseTransaction* txn) {
  if (delivered_.empty()) return absl::OkStatus();
  for (std::string& f : delivered_) txn->files.push_back(std::move(f));
  delivered_.clear();
  // The renames to pending must survive a machine crash once the checkpoint lists them.
  return FsyncPath(staging_dir_, true);
}

absl::Status FirehoseDelivery::Commit(const FirehoseTransaction& txn) {
  const fs::path root(options_.directory);
  std::vector<std::string> synced;  // directories to fsync, once each
  for (const std::string& file : txn.files) {
    std::string pending = StagingPath(file, kPendingTag);
    fs::path final_path = root / file;
    SLUICE_RETURN_IF_ERROR(EnsureDirectory(root, final_path.parent_path()));
    if (::rename(pending.c_str(), final_path.c_str()) == 0) {
      std::string dir = final_path.parent_path().string();
      if (std::find(synced.begin(), synced.end(), dir) == synced.end()) synced.push_back(dir);
      continue;
    }
    int err = errno;
    struct stat st;
    if (err == ENOENT && ::stat(final_path.c_str(), &st) == 0) continue;  // committed before
    if (err == ENOENT) {
      return absl::DataLossError(absl::StrCat("cannot commit ", pending, ": neither it nor ",
                                              final_path.string(), " exists"));
    }
    return ErrnoError(err, pending, absl::StrCat("cannot rename to ", final_path.string()));
  }
  for (const std::string& dir : synced) SLUICE_RETURN_IF_ERROR(FsyncPath(dir, true));
  if (!synced.empty()) SLUICE_RETURN_IF_ERROR(FsyncPath(staging_dir_, true));
  return absl::OkStatus();
}

void FirehoseDelivery::Abort(const FirehoseTransaction& txn) {
  for (const std::string& f : txn.files) ::unlink(StagingPath(f, kPendingTag).c_str());
  for (const std::string& f : delivered_) ::unlink(StagingPath(f, kPendingTag).c_str());
  delivered_.clear();
  buffer_.clear();
  entries_.clear();
}

absl::Status FirehoseDelivery::DeleteLeftovers(const std::vector<int>& other_subtasks) {
  std::error_code ec;
  fs::directory_iterator it(staging_dir_, ec);
  if (ec) return FilesystemError(ec, staging_dir_, "cannot list staging directory");
  const std::string head = absl::StrCat(options_.stream_name, "-");
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    absl::string_view rest(name);
    int64_t subtask = -1;
    if (!absl::ConsumePrefix(&rest, head) || !ConsumeNumber(&rest, &subtask) ||
        !absl::StartsWith(rest, "-")) {
      continue;
    }
    if (!absl::EndsWith(name, kPendingTag) && !absl::EndsWith(name, kInProgressTag)) continue;
    if (subtask != subtask_index_ &&
        std::find(other_subtasks.begin(), other_subtasks.end(), subtask) == other_subtasks.end()) {
      continue;
    }
    const std::string path = it->path().string();
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError(errno, path, "cannot delete leftover file");
    }
  }
  if (ec) return FilesystemError(ec, staging_dir_, "cannot list staging directory");
  return absl::OkStatus();
}

std::string FirehoseDelivery::SnapshotState() const {
  std::string out;
  PutVarint(kStateVersion, &out);
  Serializer<int64_t>::Write(subtask_index_, &out);
  Serializer<int64_t>::Write(next_delivery_, &out);
  PutVarint(entries_.size(), &out);
  for (const Entry& e : entries_) {
    PutVarint(e.end, &out);
    Serializer<int64_t>::Write(e.arrival_millis, &out);
  }
  Serializer<std::string>::Write(buffer_, &out);
  return out;
}

absl::Status FirehoseDelivery::RestoreStates(const std::vector<std::string>& states,
                                             std::vector<int>* other_subtasks) {
  for (size_t s = 0; s < states.size(); ++s) {
    ByteReader in(states[s]);
    uint64_t version = 0;
    int64_t subtask = 0;
    int64_t next = 0;
    uint64_t n = 0;
    bool ok = in.ReadVarint(&version) && version == kStateVersion &&
              Serializer<int64_t>::Read(in, &subtask) && Serializer<int64_t>::Read(in, &next) &&
              subtask >= 0 && next >= 0 && in.ReadVarint(&n) && n <= in.remaining();
    std::vector<Entry> entries;
    uint64_t previous_end = 0;
    for (uint64_t i = 0; ok && i < n; ++i) {
      uint64_t end = 0;
      Entry e{};
      ok = in.ReadVarint(&end) && end >= previous_end &&
           Serializer<int64_t>::Read(in, &e.arrival_millis);
      e.end = end;
      previous_end = end;
      entries.push_back(e);
    }
    std::string bytes;
    ok = ok && Serializer<std::string>::Read(in, &bytes) && in.empty() &&
         previous_end == bytes.size();
    if (!ok) {
      return absl::DataLossError(absl::StrCat("FirehoseSink ", options_.stream_name, " (",
                                              options_.directory, "): restored state ", s, " (",
                                              states[s].size(), " bytes) is malformed"));
    }
    if (subtask == subtask_index_) {
      next_delivery_ = std::max(next_delivery_, next);
    } else {
      other_subtasks->push_back(static_cast<int>(subtask));
    }
    const size_t base = buffer_.size();
    buffer_.append(bytes);
    for (const Entry& e : entries) {
      if (entries_.empty() || e.arrival_millis < batch_start_millis_) {
        batch_start_millis_ = e.arrival_millis;
      }
      entries_.push_back(Entry{base + e.end, e.arrival_millis});
    }
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace sluice
