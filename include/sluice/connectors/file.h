// File connectors: TextFileSource, CsvFileSource<T>, DirectorySource (sources) and FileSink<T>,
// CsvFileSink<T> (sinks).
//
//   auto lines = env.FromSource(sluice::TextFileSource("book.txt"));
//   auto clicks = env.FromSource(sluice::CsvFileSource<Click>("clicks.csv", ParseClick,
//                                                             {.skip_header = true}));
//   auto inbox = env.FromSource(sluice::DirectorySource(
//       "/data/inbox", {.mode = sluice::DirectorySourceOptions::kProcessContinuously}));
//   clicks.SinkTo(sluice::FileSink<Click>("out", {.write_mode = sluice::WriteMode::kOverwrite}));
//
// Sources read a file in chunks of 64 KiB per poll, never the whole file at once. Lines end at
// '\n'; a '\r' right before it is dropped ("\r\n" files read as "\n" files, as in Flink's
// TextInputFormat); a last line without '\n' is still a line.
//
// Checkpoints: a file reader's position is the byte offset of the first line it has not emitted and
// that line's number less one (so parse errors after a resume name the right line); a directory
// reader's is its finished files, its queued files and the position in the file it is reading.
// Positions are encoded with sluice::Serializer after a format version byte (1). A resumed reader
// whose file is now shorter than the checkpointed offset fails with DataLoss naming the file.
//
// Thread-safety: sources and sinks are configured from one thread; each subtask's reader or writer
// is used by one thread at a time (the runtime's contract). Nothing here is shared between
// subtasks except the immutable configuration.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include <sluice/connectors/sink.h>
#include <sluice/connectors/source.h>
#include <sluice/core/format.h>
#include <sluice/core/runtime_context.h>
#include <sluice/core/status.h>

namespace sluice {

// --- Options -------------------------------------------------------------------------------------

// What a file sink does when its output file already exists (Flink's FileSystem.WriteMode).
enum class WriteMode {
  // Fail the job with AlreadyExists naming the file (Flink's default, NO_OVERWRITE).
  kNoOverwrite,
  // Truncate and rewrite the file. A regular file where a parallel sink needs its directory is
  // replaced by the directory. Directories are never deleted; stale `part-<i>` files of an
  // earlier run with a higher parallelism are left alone.
  kOverwrite,
};

struct CsvOptions {
  // Separates fields. Must differ from `quote`, '\n' and '\r'. Default ','.
  char delimiter = ',';
  // The first line of the file is a header and is not parsed (Flink's ignoreFirstLine). Default
  // false.
  bool skip_header = false;
  // Encloses fields that contain the delimiter; inside a quoted field a doubled quote stands for
  // one quote (RFC 4180). Records are single lines: a quoted field cannot contain a line break.
  // Default '"'.
  char quote = '"';

  // InvalidArgument naming the bad field.
  absl::Status Validate() const;
};

struct DirectorySourceOptions {
  enum Mode {
    // Read the files present when the job starts, then end (bounded). Flink's PROCESS_ONCE.
    kProcessOnce,
    // Keep watching: rescan the directory every `interval` and read files that appeared since
    // (unbounded). A file is identified by its name and read once; write files under a hidden
    // name ('.' or '_' prefix) and rename them when complete. Flink's PROCESS_CONTINUOUSLY.
    kProcessContinuously,
  };
  // Default kProcessOnce.
  Mode mode = kProcessOnce;
  // Time between two scans of the directory in kProcessContinuously mode; must be > 0.
  // Default 1 second.
  absl::Duration interval = absl::Seconds(1);

  absl::Status Validate() const;
};

struct FileSinkOptions {
  // See WriteMode. Default kNoOverwrite, as Flink.
  WriteMode write_mode = WriteMode::kNoOverwrite;
  // Bytes buffered before they are written to the file; 0 writes every batch at once.
  // Default 64 KiB.
  size_t buffer_bytes = 64 << 10;
};

struct CsvSinkOptions {
  // Separates fields. Must differ from `quote`, '\n' and '\r'. Default ','.
  char delimiter = ',';
  // Encloses fields that contain the delimiter, the quote, '\r' or '\n' (RFC 4180; quotes in a
  // field are doubled). Default '"'.
  char quote = '"';
  // Written as the first line of every output file when not empty. Default none.
  std::vector<std::string> header;
  // See WriteMode. Default kNoOverwrite, as Flink.
  WriteMode write_mode = WriteMode::kNoOverwrite;

  absl::Status Validate() const;
};

// --- Internal building blocks (non-template parts live in src/connectors/file.cc) ----------------
namespace internal {

// Reads the lines of one file, a chunk at a time. Not thread-safe.
class LineFileReader {
 public:
  static constexpr size_t kDefaultChunkBytes = 64 << 10;

  // Opens `path` for reading. NotFound when it does not exist, InvalidArgument when it is a
  // directory, another errno-derived code when it cannot be opened; every message names `path`.
  static absl::StatusOr<std::unique_ptr<LineFileReader>> Open(
      std::string path, size_t chunk_bytes = kDefaultChunkBytes);
  ~LineFileReader();
  LineFileReader(const LineFileReader&) = delete;
  LineFileReader& operator=(const LineFileReader&) = delete;

  // Sets `*line` to the next complete line in the buffer (valid until the next Fill()) and returns
  // true; false when the buffer holds no complete line: call Fill(), or stop at_end().
  bool NextLine(std::string_view* line);
  // Reads one more chunk (at most `chunk_bytes`). A read error names the path.
  absl::Status Fill();
  // True when the file has been read to its end and every line handed out.
  bool at_end() const { return eof_ && pos_ >= buffer_.size(); }
  // 1-based number of the line last returned by NextLine (0 before the first).
  int64_t line_number() const { return line_number_; }
  const std::string& path() const { return path_; }

  // Byte offset in the file of the first line not handed out yet: where a resumed reader goes on.
  uint64_t position() const { return buffer_offset_ + pos_; }
  // Continues at byte `offset` of the file, the next line being number `line_number + 1`.
  // Requires that the file was not read to its end yet (call it before the first Fill()).
  // DataLoss naming the path when the file is now shorter than `offset` (it changed since the
  // checkpoint); an errno-derived error naming the path when it cannot seek.
  absl::Status SeekTo(uint64_t offset, int64_t line_number);

 private:
  LineFileReader(std::string path, int fd, size_t chunk_bytes);

  std::string path_;
  int fd_;
  size_t chunk_bytes_;
  std::string buffer_;
  size_t pos_ = 0;      // start of the first line not handed out
  size_t scanned_ = 0;  // buffer_[pos_, scanned_) holds no '\n'
  uint64_t buffer_offset_ = 0;  // offset in the file of buffer_[0]
  bool eof_ = false;
  int64_t line_number_ = 0;
};

// The checkpointed position of `reader` (see the top of this file).
std::string EncodeFilePosition(const LineFileReader& reader);
// Moves a freshly opened `reader` to the position in `state`. DataLoss("<description>:
// checkpointed position does not decode") for malformed bytes; see LineFileReader::SeekTo.
absl::Status RestoreFilePosition(std::string_view state, const std::string& description,
                                 LineFileReader& reader);

// Emits up to `max_records` lines of `reader` through
// `absl::Status emit(std::string_view line, int64_t line_number)`, reading at most one chunk when
// it runs out of complete lines (so one call never reads a big file at once). Returns the number of
// lines emitted; `*ended` is set when the file is exhausted. An error from `emit` stops the loop
// and is returned.
template <typename Emit>
absl::StatusOr<int> ReadLines(LineFileReader& reader, int max_records, bool* ended, Emit&& emit) {
  int emitted = 0;
  bool filled = false;
  *ended = false;
  std::string_view line;
  while (emitted < max_records) {
    if (reader.NextLine(&line)) {
      SLUICE_RETURN_IF_ERROR(emit(line, reader.line_number()));
      ++emitted;
      continue;
    }
    if (reader.at_end()) {
      *ended = true;
      break;
    }
    if (filled) break;
    SLUICE_RETURN_IF_ERROR(reader.Fill());
    filled = true;
  }
  return emitted;
}

// Splits one CSV record (a line without its terminator) into `*fields`. InvalidArgument on an
// unterminated quoted field or text after a closing quote; the message does not name the place.
absl::Status ParseCsvLine(std::string_view line, char delimiter, char quote,
                          std::vector<std::string>* fields);
// Appends `fields` as one CSV record with its '\n' to `*out`, quoting fields that need it.
void AppendCsvLine(const std::vector<std::string>& fields, char delimiter, char quote,
                   std::string* out);

// Writes one output file of a sink: buffered, reporting every error with the file's name.
// Not thread-safe.
class TextFileWriter {
 public:
  // Opens the file of subtask `ctx.subtask_index`: `path` itself at parallelism 1, otherwise
  // `path/part-<subtask_index>` (the directory is created).
  static absl::StatusOr<std::unique_ptr<TextFileWriter>> Open(const std::string& path,
                                                              const RuntimeContext& ctx,
                                                              WriteMode mode, size_t buffer_bytes);
  // Opens `file` (created if missing, its directory too) to append after its first `length`
  // bytes, truncating what follows. DataLoss naming the file when it is shorter than `length`.
  static absl::StatusOr<std::unique_ptr<TextFileWriter>> Resume(const std::string& file,
                                                                int64_t length,
                                                                size_t buffer_bytes);
  ~TextFileWriter();  // as Close()
  TextFileWriter(const TextFileWriter&) = delete;
  TextFileWriter& operator=(const TextFileWriter&) = delete;

  absl::Status Append(std::string_view data);
  // Writes the buffer and syncs the file's data.
  absl::Status Sync();
  // Flushes and closes; reports write and close errors. Idempotent.
  absl::Status Finish();
  // Writes what is buffered and closes, without reporting errors (failure or cancellation).
  void Close();
  const std::string& path() const { return path_; }

 private:
  TextFileWriter(std::string path, int fd, size_t buffer_bytes);
  absl::Status FlushBuffer();

  std::string path_;
  int fd_;
  size_t buffer_bytes_;
  std::string buffer_;
};

// The output file of one subtask of FileSink or CsvFileSink, exactly once across failures: opened
// on first use; at each checkpoint barrier its buffer is written and synced and its length
// recorded (the writer's state); a resume truncates the file to the length of the checkpoint it
// restores, so the records after it — replayed by the sources — are written once. A resume keeps
// the parallelism. Not thread-safe.
class CheckpointedTextFile {
 public:
  // `header` starts the file whenever it starts empty (CsvSinkOptions::header).
  CheckpointedTextFile(std::string path, const RuntimeContext& ctx, WriteMode mode,
                       size_t buffer_bytes, std::string header);
  ~CheckpointedTextFile();
  CheckpointedTextFile(const CheckpointedTextFile&) = delete;
  CheckpointedTextFile& operator=(const CheckpointedTextFile&) = delete;

  absl::Status Append(std::string_view data);
  // Writes the buffer, syncs the file and returns its state: format version 1, then the file
  // name relative to the sink's path ("" at parallelism 1, "part-<i>" otherwise), its length and
  // the parallelism.
  absl::StatusOr<std::string> Snapshot();
  // The state of this subtask at the checkpoint (SinkWriter::RestoreState): the file is truncated
  // to its recorded length. FailedPrecondition when the parallelism changed (each subtask resumes
  // its own file); DataLoss naming the file when it is shorter than recorded or the state does
  // not decode.
  absl::Status Restore(const std::vector<std::string>& states);
  // Opens the file if nothing was written yet (an empty output still has its file), flushes and
  // closes it; reports write and close errors. Idempotent.
  absl::Status Finish();
  // Writes what is buffered and closes, without reporting errors (failure or cancellation).
  void Close();

 private:
  absl::Status EnsureOpen();
  // The file named `name` ("" for `path` itself, or "part-<i>").
  std::string FileFor(std::string_view name) const;

  const std::string path_;
  const std::string name_;  // this subtask's ("" or "part-<i>")
  const RuntimeContext ctx_;
  const WriteMode mode_;
  const size_t buffer_bytes_;
  const std::string header_;
  std::unique_ptr<TextFileWriter> file_;
  int64_t length_ = 0;  // bytes handed to the file (written or buffered)
  bool failed_ = false;
};

// The status of an exception thrown by user code while handling line `line` of `path`.
absl::Status CurrentExceptionAt(const std::string& path, int64_t line);

template <typename F, typename T>
concept CsvParser = std::invocable<F&, const std::vector<std::string>&> &&
                    std::convertible_to<std::invoke_result_t<F&, const std::vector<std::string>&>,
                                        absl::StatusOr<T>>;

template <typename R>
struct CsvParsedType {
  using type = R;
};
template <typename R>
struct CsvParsedType<absl::StatusOr<R>> {
  using type = R;
};

}  // namespace internal

// --- Sources -------------------------------------------------------------------------------------

// The lines of a text file, without their terminator. Bounded, non-parallel (one subtask reads
// the whole file). A missing file fails the job with NotFound naming the path when it starts.
class TextFileSource : public Source<std::string> {
 public:
  explicit TextFileSource(std::string path) : path_(std::move(path)) {}

  bool IsBounded() const override { return true; }
  int MaxParallelism() const override { return 1; }
  std::string Describe() const override { return absl::StrCat("Text File ", path_); }
  absl::StatusOr<std::unique_ptr<SourceReader<std::string>>> CreateReader(
      const SourceContext& ctx) override;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The records of a CSV file, one per non-blank line, made by `parse` from the line's fields.
// Bounded, non-parallel.
//
// `parse` is any callable `R(const std::vector<std::string>& fields)` where R converts to
// absl::StatusOr<T> (so returning a plain T is fine). Fields are unquoted: `"a,""b"""` is `a,"b"`.
// A parse error — a non-OK status, a thrown exception, or a malformed CSV line — fails the job
// with InvalidArgument("<path>:<line>: <message>"), <line> being the 1-based line of the file.
// Blank lines are skipped. Each subtask gets its own copy of `parse`.
//
// Spelled `CsvFileSource<T>(...)` the parser is held in a std::function; `CsvFileSource(path,
// parse)` deduces T from the parser's StatusOr<T> result and keeps the parser's own type.
template <typename T,
          typename F = std::function<absl::StatusOr<T>(const std::vector<std::string>&)>>
class CsvFileSource : public Source<T> {
 public:
  template <typename G>
    requires internal::CsvParser<G, T>
  CsvFileSource(std::string path, G parse, CsvOptions options = {})
      : path_(std::move(path)), parse_(std::move(parse)), options_(options) {}

  bool IsBounded() const override { return true; }
  int MaxParallelism() const override { return 1; }
  std::string Describe() const override { return absl::StrCat("CSV File ", path_); }

  absl::StatusOr<std::unique_ptr<SourceReader<T>>> CreateReader(const SourceContext&) override {
    SLUICE_RETURN_IF_ERROR(options_.Validate());
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<internal::LineFileReader> file,
                            internal::LineFileReader::Open(path_));
    return std::unique_ptr<SourceReader<T>>(
        new Reader(std::move(file), parse_, options_, Describe()));
  }

 private:
  class Reader : public SourceReader<T> {
   public:
    Reader(std::unique_ptr<internal::LineFileReader> file, F parse, CsvOptions options,
           std::string description)
        : file_(std::move(file)),
          parse_(std::move(parse)),
          options_(options),
          description_(std::move(description)) {}

    absl::StatusOr<PollResult> PollNext(Collector<T>& out, int max_records) override {
      bool ended = false;
      SLUICE_ASSIGN_OR_RETURN(int emitted,
                              internal::ReadLines(*file_, max_records, &ended,
                                                  [&](std::string_view line, int64_t number) {
                                                    return ParseLine(line, number, out);
                                                  }));
      (void)emitted;
      return ended ? PollResult::End() : PollResult::More();
    }
    void Close() override { file_.reset(); }

    // The offset and number of the next line: a resumed reader skips the header only if it had
    // not been read, and names the same line numbers in its errors.
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

    absl::Status ParseLine(std::string_view line, int64_t number, Collector<T>& out) {
      if (line.empty() || (number == 1 && options_.skip_header)) return absl::OkStatus();
      absl::Status status =
          internal::ParseCsvLine(line, options_.delimiter, options_.quote, &fields_);
      if (!status.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(file_->path(), ":", number, ": ", status.message()));
      }
      absl::StatusOr<T> record;
      try {
        record = parse_(std::as_const(fields_));
      } catch (...) {
        return internal::CurrentExceptionAt(file_->path(), number);
      }
      if (!record.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(file_->path(), ":", number, ": ", record.status().message()));
      }
      // Outside the try: a failure of a chained downstream operator must not become a parse error.
      out.Collect(*std::move(record));
      return absl::OkStatus();
    }

    std::unique_ptr<internal::LineFileReader> file_;
    F parse_;
    CsvOptions options_;
    std::string description_;
    std::vector<std::string> fields_;
  };

  std::string path_;
  F parse_;
  CsvOptions options_;
};

namespace internal {
template <typename F>
using CsvParsedTypeOf = typename CsvParsedType<
    std::remove_cvref_t<std::invoke_result_t<F&, const std::vector<std::string>&>>>::type;
}  // namespace internal

template <typename F>
CsvFileSource(std::string, F) -> CsvFileSource<internal::CsvParsedTypeOf<F>, F>;
template <typename F>
CsvFileSource(std::string, F, CsvOptions) -> CsvFileSource<internal::CsvParsedTypeOf<F>, F>;

// The lines of every regular file in directory `dir`, file after file in name order. Files whose
// name starts with '.' or '_' are ignored (hidden or in progress, as Flink ignores them), and so
// are subdirectories. Bounded in kProcessOnce mode, unbounded in kProcessContinuously mode.
//
// Parallel: subtask i of n reads the files whose name hashes to i, with the 64-bit FNV-1a hash of
// the file name (its bytes, without the directory) modulo n — deterministic across runs and
// machines, so a given file is always read by the same subtask at the same parallelism.
// A missing directory fails the job with NotFound naming it when the job starts; a listed file
// that cannot be read (removed before its turn, unreadable) fails the job naming the file.
//
// Each file is a split (its id is the file name): with FromSource(source, strategy) every file
// gets its own watermark generator, and a file that was read to its end no longer holds the
// subtask's watermark back (see Collector::ForSplit).
class DirectorySource : public Source<std::string> {
 public:
  explicit DirectorySource(std::string dir, DirectorySourceOptions options = {})
      : dir_(std::move(dir)), options_(options) {}

  bool IsBounded() const override { return options_.mode == DirectorySourceOptions::kProcessOnce; }
  std::string Describe() const override { return absl::StrCat("Directory ", dir_); }
  absl::StatusOr<std::unique_ptr<SourceReader<std::string>>> CreateReader(
      const SourceContext& ctx) override;

  // The subtask (of `parallelism`) that reads the file named `file_name`.
  static int SubtaskOf(std::string_view file_name, int parallelism);

 private:
  std::string dir_;
  DirectorySourceOptions options_;
};

// --- Sinks ---------------------------------------------------------------------------------------

// Writes each record as one line of text. With parallelism 1 the sink writes the file `path`; with
// parallelism n > 1 `path` is a directory (created if missing) holding one file per subtask,
// `path/part-0` ... `path/part-<n-1>` (0-based subtask index).
//
// Lines are rendered with FormatValue (see <sluice/core/format.h>) or, when given, by `format`
// (`std::string(const T&)`, without the '\n'). Finish() flushes and closes the file and reports
// write or close errors naming the file. A failed or cancelled job still writes the records the
// sink received (flushed when the writer closes), as Flink's streaming writeAsText does.
//
// With checkpoints the files are exactly once across failures (internal::CheckpointedTextFile):
// each checkpoint records every file's length, and a resume truncates the files to it before the
// replayed records are appended. (While the job runs, a reader may see lines a failure later takes
// back; ExactlyOnceFileSink shows only committed files.) A resume keeps the parallelism (each
// subtask resumes its own file): at another, the job fails with FailedPrecondition naming the
// path.
template <typename T>
class FileSink : public Sink<T> {
 public:
  using Format = std::function<std::string(const T&)>;

  explicit FileSink(std::string path, FileSinkOptions options = {})
    requires TextFormattable<T>
      : path_(std::move(path)), options_(options) {}
  FileSink(std::string path, Format format, FileSinkOptions options = {})
      : path_(std::move(path)), format_(std::move(format)), options_(options) {}

  std::string Describe() const override { return absl::StrCat("File ", path_); }
  std::string OutputPath() const override { return path_; }

  absl::StatusOr<std::unique_ptr<SinkWriter<T>>> CreateWriter(const RuntimeContext& ctx) override {
    return std::unique_ptr<SinkWriter<T>>(
        new Writer(std::make_unique<internal::CheckpointedTextFile>(
                       path_, ctx, options_.write_mode, options_.buffer_bytes, std::string()),
                   format_));
  }

 private:
  class Writer : public SinkWriter<T> {
   public:
    Writer(std::unique_ptr<internal::CheckpointedTextFile> file, Format format)
        : file_(std::move(file)), format_(std::move(format)) {}

    absl::Status Write(std::vector<T>& records) override {
      if (format_) {
        text_.clear();
        for (const T& r : records) {
          text_ += format_(r);
          text_ += '\n';
        }
        return file_->Append(text_);
      }
      if constexpr (TextFormattable<T>) {
        out_.str(std::string());
        for (const T& r : records) {
          FormatValue(out_, r);
          out_ << '\n';
        }
        return file_->Append(out_.view());
      }
      return absl::OkStatus();
    }
    absl::StatusOr<std::string> SnapshotState(int64_t) override { return file_->Snapshot(); }
    absl::Status RestoreState(const std::vector<std::string>& states) override {
      return file_->Restore(states);
    }
    absl::Status Finish() override { return file_->Finish(); }
    void Close() override { file_->Close(); }

   private:
    std::unique_ptr<internal::CheckpointedTextFile> file_;
    Format format_;
    std::string text_;
    std::ostringstream out_;
  };

  std::string path_;
  Format format_;
  FileSinkOptions options_;
};

// Writes each record as one CSV line made of the fields `format(record)` returns
// (`std::vector<std::string>(const T&)`), quoting the fields that need it, so that CsvFileSource
// with the same delimiter and quote reads them back. Files as FileSink: `path` at parallelism 1,
// `path/part-<subtask index>` otherwise; a non-empty `header` starts every file. Exactly once
// across failures with checkpoints, as FileSink.
template <typename T>
class CsvFileSink : public Sink<T> {
 public:
  using Format = std::function<std::vector<std::string>(const T&)>;

  CsvFileSink(std::string path, Format format, CsvSinkOptions options = {})
      : path_(std::move(path)), format_(std::move(format)), options_(std::move(options)) {}

  std::string Describe() const override { return absl::StrCat("CSV File ", path_); }
  std::string OutputPath() const override { return path_; }

  absl::StatusOr<std::unique_ptr<SinkWriter<T>>> CreateWriter(const RuntimeContext& ctx) override {
    SLUICE_RETURN_IF_ERROR(options_.Validate());
    std::string header;
    if (!options_.header.empty()) {
      internal::AppendCsvLine(options_.header, options_.delimiter, options_.quote, &header);
    }
    return std::unique_ptr<SinkWriter<T>>(new Writer(
        std::make_unique<internal::CheckpointedTextFile>(
            path_, ctx, options_.write_mode, FileSinkOptions{}.buffer_bytes, std::move(header)),
        format_, options_));
  }

 private:
  class Writer : public SinkWriter<T> {
   public:
    Writer(std::unique_ptr<internal::CheckpointedTextFile> file, Format format,
           const CsvSinkOptions& options)
        : file_(std::move(file)),
          format_(std::move(format)),
          delimiter_(options.delimiter),
          quote_(options.quote) {}

    absl::Status Write(std::vector<T>& records) override {
      text_.clear();
      for (const T& r : records) internal::AppendCsvLine(format_(r), delimiter_, quote_, &text_);
      return file_->Append(text_);
    }
    absl::StatusOr<std::string> SnapshotState(int64_t) override { return file_->Snapshot(); }
    absl::Status RestoreState(const std::vector<std::string>& states) override {
      return file_->Restore(states);
    }
    absl::Status Finish() override { return file_->Finish(); }
    void Close() override { file_->Close(); }

   private:
    std::unique_ptr<internal::CheckpointedTextFile> file_;
    Format format_;
    char delimiter_;
    char quote_;
    std::string text_;
  };

  std::string path_;
  Format format_;
  CsvSinkOptions options_;
};

}  // namespace sluice
