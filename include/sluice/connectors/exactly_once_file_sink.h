// ExactlyOnceFileSink<T>: lines of text into a directory of part files that become visible only when
// the checkpoint that covers them completes, as Flink's FileSink (row format).
//
//   sluice::StreamEnvironment env(
//       {.checkpointing = {.interval = absl::Seconds(10), .directory = "/tmp/ckpt"}});
//   env.FromSource(source).SinkTo(sluice::ExactlyOnceFileSink<Click>(
//       {.directory = "/data/clicks", .suffix = ".txt", .max_part_bytes = 64 << 20},
//       [](const Click& c) { return absl::StrCat(c.user, ",", c.page, ",", c.time_ms); }));
//   // /data/clicks/part-<subtask>-<n>.txt appear at each completed checkpoint
//
// (The same example is in docs/api.md, where `ctest -L docs` compiles it.) Options and their
// limits: docs/api.md, "Exactly-once part files".
//
// Part-file lifecycle, per subtask (all names inside `directory`):
//   in-progress  .<prefix>-<subtask>-<n><suffix>.inprogress.<random>   being written
//   pending      .<prefix>-<subtask>-<n><suffix>.pending               closed, fsynced; waits for its
//                                                                      checkpoint to complete
//   committed    <prefix>-<subtask>-<n><suffix>                         visible, final
// A part rolls (in-progress -> pending) at every checkpoint barrier, when the next line would take
// it over `max_part_bytes`, and when it is `rollover_interval` old at a Write. Completing a
// checkpoint renames its pending parts to their final names and fsyncs the directory. Hidden names
// start with '.', so DirectorySource and Flink-style readers ignore them.
//
// Recovery: the state of a checkpoint lists its pending parts and the subtask's next part number.
// Restoring it commits the listed parts (idempotently: a part already renamed is done), deletes
// the in-progress parts of the failed attempt and the pending parts the state does not list, and
// continues numbering after the restored counter and after every part of the subtask found in the
// directory, so no part name is ever reused. A writer that starts
// without a restore deletes the in-progress and pending parts of its own subtask only. Without
// checkpoints (a bounded job) Finish() commits everything at the end of the input; with them, the
// job's final checkpoint commits the last parts.
//
// Thread-safety: the sink is configured from one thread; each writer is used by one thread at a
// time (the runtime's contract). Writers of different subtasks touch disjoint file names.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include <sluice/connectors/sink.h>
#include <sluice/connectors/two_phase_commit.h>
#include <sluice/core/format.h>
#include <sluice/core/runtime_context.h>
#include <sluice/core/status.h>
#include <sluice/state/serializer.h>
#include <sluice/time/clock.h>

namespace sluice {

// Options of ExactlyOnceFileSink. (FileSinkOptions is the plain FileSink's, in file.h.)
struct ExactlyOnceFileSinkOptions {
  // The directory of the part files; created if missing. Required.
  std::string directory;
  // Start of every part file name: "<prefix>-<subtask>-<n><suffix>". Not empty, no '/', must not
  // start with '.'. Default "part".
  std::string prefix = "part";
  // End of every part file name (e.g. ".txt"). No '/'. Default none.
  std::string suffix;
  // A part rolls before a line would take it over this many bytes (a longer line gets a part of
  // its own). Must be > 0. Default 128 MiB.
  int64_t max_part_bytes = int64_t{128} << 20;
  // A part rolls at the first Write after it has been open this long (measured with `clock`).
  // Must be > 0; absl::InfiniteDuration() disables it. Default 60 seconds.
  absl::Duration rollover_interval = absl::Seconds(60);
  // Processing time for `rollover_interval`. Default (null): the system clock.
  std::shared_ptr<Clock> clock;

  // InvalidArgument naming the bad field.
  absl::Status Validate() const;
};

namespace internal {

// The transaction of ExactlyOnceFileSink: the parts rolled while it was open, by final name (the
// pending name is derived from it). An open transaction may also own the bucket's in-progress part.
struct PartFileTransaction {
  std::vector<std::string> parts;
};

// The files of one subtask of ExactlyOnceFileSink (non-template, src/connectors/). Not thread-safe.
class PartFileBucket {
 public:
  // Validates `options` and creates the directory.
  static absl::StatusOr<std::unique_ptr<PartFileBucket>> Open(ExactlyOnceFileSinkOptions options,
                                                              int subtask_index,
                                                              int parallelism = 1);
  ~PartFileBucket();  // closes the in-progress part, leaving it on disk (as a crash would)
  PartFileBucket(const PartFileBucket&) = delete;
  PartFileBucket& operator=(const PartFileBucket&) = delete;

  // Rolls the in-progress part into `txn` if it is `rollover_interval` old.
  absl::Status RollIfDue(PartFileTransaction* txn);
  // Appends `line` and '\n' to the in-progress part (opened on demand), rolling it into `txn`
  // first if the line would take it over `max_part_bytes`.
  absl::Status AppendLine(std::string_view line, PartFileTransaction* txn);
  // Closes the in-progress part (if any) and moves it to pending; fsyncs the directory when
  // `txn` holds any part.
  absl::Status PreCommit(PartFileTransaction* txn);
  // Renames the pending parts of `txn` to their final names; a part whose final file exists and
  // pending file does not was committed before. Fsyncs the directory.
  absl::Status Commit(const PartFileTransaction& txn);
  // Deletes the in-progress part and the pending parts of `txn`. Best effort.
  void Abort(const PartFileTransaction& txn);
  // Deletes the in-progress and pending parts of this subtask, of `other_subtasks` (old
  // subtasks whose state this one restored) and of subtasks that do not exist at this
  // parallelism whose index is this one's modulo the parallelism (left by an attempt at a higher
  // parallelism that was killed, or never committed), and moves the part counter past every part
  // of this subtask found in the directory, deleted ones included.
  absl::Status DeleteLeftovers(const std::vector<int>& other_subtasks);

  // The subtask index and next part number, for the checkpoint state.
  std::string SnapshotCounter() const;
  // Restores from the states of old subtasks: the counter of the old subtask with this index,
  // and the indices of the others in `*other_subtasks`.
  absl::Status RestoreCounters(const std::vector<std::string>& counters,
                               std::vector<int>* other_subtasks);

  int64_t next_part() const { return next_part_; }

 private:
  PartFileBucket(ExactlyOnceFileSinkOptions options, int subtask_index, int parallelism);
  absl::Status OpenPart();
  absl::Status FlushBuffer();
  absl::Status RollPart(PartFileTransaction* txn);
  absl::Status SyncDirectory();
  std::string PathOf(std::string_view name) const;

  ExactlyOnceFileSinkOptions options_;
  int subtask_index_;
  int parallelism_;
  int64_t next_part_ = 0;
  // The in-progress part: fd < 0 when none.
  int fd_ = -1;
  std::string part_name_;         // final name of the in-progress part
  std::string in_progress_name_;  // its current (hidden) name
  int64_t part_bytes_ = 0;        // bytes written to it, buffered included
  int64_t part_opened_millis_ = 0;
  std::string buffer_;
};

}  // namespace internal

template <>
struct Serializer<internal::PartFileTransaction> {
  static void Write(const internal::PartFileTransaction& t, std::string* out) {
    Serializer<std::vector<std::string>>::Write(t.parts, out);
  }
  static bool Read(ByteReader& in, internal::PartFileTransaction* t) {
    return Serializer<std::vector<std::string>>::Read(in, &t->parts);
  }
};

// Writes each record as one line, exactly once (see the top of this file). Lines are rendered with
// FormatValue (<sluice/core/format.h>) or, when given, by `format` (`std::string(const T&)`,
// without the '\n').
template <typename T>
class ExactlyOnceFileSink : public Sink<T> {
 public:
  using Format = std::function<std::string(const T&)>;

  explicit ExactlyOnceFileSink(ExactlyOnceFileSinkOptions options)
    requires TextFormattable<T>
      : options_(std::move(options)) {}
  ExactlyOnceFileSink(ExactlyOnceFileSinkOptions options, Format format)
      : options_(std::move(options)), format_(std::move(format)) {}

  std::string Describe() const override {
    return absl::StrCat("Exactly-once File ", options_.directory);
  }
  std::string OutputPath() const override { return options_.directory; }

  // InvalidArgument naming a bad option; an errno-derived error naming the directory when it
  // cannot be created.
  absl::StatusOr<std::unique_ptr<SinkWriter<T>>> CreateWriter(const RuntimeContext& ctx) override {
    if (!format_) {
      if constexpr (!TextFormattable<T>) {
        return absl::InvalidArgumentError(
            "ExactlyOnceFileSink: format is empty and the record type has no operator<<");
      }
    }
    SLUICE_ASSIGN_OR_RETURN(
        std::unique_ptr<internal::PartFileBucket> bucket,
        internal::PartFileBucket::Open(options_, ctx.subtask_index, ctx.parallelism));
    return std::unique_ptr<SinkWriter<T>>(new Writer(std::move(bucket), format_));
  }

 private:
  class Writer : public TwoPhaseCommitSinkWriter<T, internal::PartFileTransaction> {
   public:
    using Txn = internal::PartFileTransaction;

    Writer(std::unique_ptr<internal::PartFileBucket> bucket, Format format)
        : bucket_(std::move(bucket)), format_(std::move(format)) {}

   protected:
    absl::StatusOr<Txn> BeginTransaction() override { return Txn{}; }

    absl::Status Invoke(Txn& txn, std::vector<T>& records) override {
      SLUICE_RETURN_IF_ERROR(bucket_->RollIfDue(&txn));
      for (const T& r : records) {
        if (format_) {
          SLUICE_RETURN_IF_ERROR(bucket_->AppendLine(format_(r), &txn));
        } else if constexpr (TextFormattable<T>) {
          line_.str(std::string());
          FormatValue(line_, r);
          SLUICE_RETURN_IF_ERROR(bucket_->AppendLine(line_.view(), &txn));
        }
      }
      return absl::OkStatus();
    }
    absl::Status PreCommit(Txn& txn) override { return bucket_->PreCommit(&txn); }
    absl::Status Commit(const Txn& txn) override { return bucket_->Commit(txn); }
    void Abort(const Txn& txn) override { bucket_->Abort(txn); }
    absl::Status RecoverAndAbortLeftovers() override {
      return bucket_->DeleteLeftovers(restored_subtasks_);
    }
    std::string SnapshotExtraState(int64_t) override { return bucket_->SnapshotCounter(); }
    absl::Status RestoreExtraState(const std::vector<std::string>& extras) override {
      return bucket_->RestoreCounters(extras, &restored_subtasks_);
    }

   private:
    std::unique_ptr<internal::PartFileBucket> bucket_;
    Format format_;
    std::ostringstream line_;
    std::vector<int> restored_subtasks_;
  };

  ExactlyOnceFileSinkOptions options_;
  Format format_;
};

}  // namespace sluice
