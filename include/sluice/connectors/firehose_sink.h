// FirehoseSink<T>: an Amazon Data Firehose-style delivery sink into a local directory tree. Records
// are buffered and delivered as one file per batch when a size or an interval hint is reached,
// under a UTC time prefix, optionally transformed (Firehose's Lambda contract) and compressed;
// exactly once through the two-phase-commit sink.
//
//   sluice::StreamEnvironment env(
//       {.checkpointing = {.interval = absl::Seconds(10), .directory = "/tmp/ckpt"}});
//   lines.SinkTo(sluice::FirehoseSink<std::string>(
//       {.directory = "/data/bucket", .stream_name = "clicks", .prefix = "clicks/",
//        .compression = sluice::FirehoseCompression::kGzip, .newline_delimiter = true}));
//   // /data/bucket/clicks/2026/11/24/13/clicks-0-2026-11-24-13-05-09-00000000-1f2e3d4c.gz ...
//
// Layout (all paths inside `directory`; times are UTC and, as Firehose's timestamp prefixes, the
// arrival time of the oldest record of the object — the options' clock when the Write that carried
// it began — so a batch that started at 22:59 and was delivered at 23:00 lands under .../22/):
//   <prefix>YYYY/MM/DD/HH/<stream>-<subtask>-YYYY-MM-DD-HH-MM-SS-<n>-<token><ext>
//       a delivered batch, visible once the checkpoint after its delivery completes
//   <error_prefix>YYYY/MM/DD/HH/<same file name>
//       the records the transformation failed, one JSON line each (see FirehoseTransformation)
//   .sluice-firehose/<stream>/<file name>.inprogress  being written (hidden)
//   .sluice-firehose/<stream>/<file name>.pending     fsynced, waits for its checkpoint (hidden)
// <n> is the subtask's delivery number (8 digits, continued across restores), <token> 8 hex digits
// chosen per writer instance (so two attempts never produce the same name), <ext> "", ".gz" or
// ".zst". Prefixes are prepended as Firehose does: "logs/" gives logs/2026/..., "logs" gives
// logs2026/....
//
// Delivery. Each record is turned into bytes by the sink's encoder and appended to the subtask's
// batch buffer. A batch is delivered (transformed, compressed, written to a hidden pending file):
//   * size: right after the record that makes the buffered bytes (record bytes, plus one byte per
//     record with `newline_delimiter`) reach `buffer_size_mib` MiB — that record included;
//   * interval: at the first Write, checkpoint barrier (SnapshotState) or Finish() at which the
//     oldest buffered record arrived `buffer_interval` ago or more (arrival = the clock when the
//     Write that carried it began). Sinks get no timers from the runtime, so a quiet stream
//     delivers at its next Write or checkpoint, not exactly when the interval ends: with
//     checkpointing on, a due batch waits at most until the next barrier reaches the sink;
//     without, until the next Write or the end of the input. A Write first delivers
//     a due batch, then appends its records; with `buffer_interval` 0 every Write's records are
//     delivered at the end of that Write;
//   * Finish() (end of a bounded input) delivers what is left.
// A checkpoint does not cut a batch: the records buffered at a barrier are kept in the checkpoint's
// state (at most the size hint plus one record per subtask) and restored with it (after a
// rescale, a subtask appends the buffers of the old subtasks it restores).
//
// Cost. Per record: the encoder's append to the batch buffer and one 16-byte entry (end offset,
// arrival time) appended to a vector; both keep their capacity across batches, so the steady state
// allocates nothing per record. Per delivery: the transformation's input and results, the
// delimited or transformed copy and the compressed copy (scratch buffers reused across
// deliveries): up to about three times the size hint of memory per subtask.
//
// Exactly once. A delivered file belongs to the two-phase-commit transaction open when it was
// delivered; at the next barrier the transaction is pre-committed (its pending files are already
// fsynced; the staging directory is fsynced) and when that checkpoint completes its files are
// renamed to their final paths (directories created and fsynced). Commits are idempotent (a file
// whose final path exists and pending file does not was committed before). On restore the
// pending files listed in the state are committed, and the in-progress and pending files of this
// subtask (and of the old subtasks whose state it restored) that the state does not list are
// deleted: they hold records the source replays or the restored buffer holds. A crash never
// leaves a partial or duplicate file at a final path. Without checkpointing, files become visible
// at Finish(); an unbounded job without checkpoints never makes anything visible. A bounded job
// with checkpoints ends with a final checkpoint, whose completion commits the last files.
//
// Two sinks (in one job or in jobs running at the same time) must not share `directory` and
// `stream_name`: each deletes the staging leftovers of its subtask indices when it starts.
//
// Thread-safety: the sink is configured from one thread; each writer is used by one thread at a
// time (the runtime's contract); writers of different subtasks touch disjoint file names. The
// sink starts no thread.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
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
#include <sluice/connectors/two_phase_commit.h>
#include <sluice/core/runtime_context.h>
#include <sluice/core/status.h>
#include <sluice/state/serializer.h>
#include <sluice/time/clock.h>

namespace sluice {
namespace internal {
// The staging directories of FirehoseSinks: <directory>/.sluice-firehose/<stream_name>.
inline constexpr char kFirehoseStagingRoot[] = ".sluice-firehose";
}  // namespace internal

enum class FirehoseCompression {
  kNone,  // files as delivered, no extension
  kGzip,  // one gzip member per file (zlib, default level), ".gz"
  kZstd,  // one zstd frame per file (libzstd, level 3), ".zst"
};

// --- Transformation (Firehose's Lambda data-transformation contract) -----------------------------

// The result of transforming one record, as Firehose's `result` field.
enum class FirehoseResult {
  kOk,                // delivered with the new data
  kDropped,           // intentionally dropped: delivered nowhere, not an error
  kProcessingFailed,  // written to the error prefix with the original data
};

// One record of a batch handed to the transformation. `data` points into the sink's buffer and is
// valid during the call only.
struct FirehoseRecord {
  // The record's position in the batch: 0, 1, ..., n-1. Every id must come back exactly once.
  uint64_t record_id = 0;
  std::string_view data;
  // Processing time (clock millis) at which the record reached the sink.
  int64_t arrival_millis = 0;
};

struct FirehoseTransformResult {
  uint64_t record_id = 0;
  FirehoseResult result = FirehoseResult::kOk;
  // The new data (kOk): delivered as is, followed by '\n' with `newline_delimiter`.
  std::string data;
  // Optional, kProcessingFailed only: the errorMessage of the error line (default
  // "ProcessingFailed status set for record").
  std::string error_message;
};

// Receives each batch before delivery and returns one result per record id (any order). A record
// without a result fails with errorCode "Lambda.MissingRecordId"; a record with several results
// fails with "Lambda.DuplicatedRecordId" (none of them is used); a kProcessingFailed result fails
// with "Lambda.ProcessingFailedStatus"; a result whose id is not in the batch is written to the
// error prefix with "Lambda.UnknownRecordId" and the data it returned (there is no original).
// Failed records go to `error_prefix`, one line each:
//   {"attemptsMade":1,"arrivalTimestamp":<ms>,"errorCode":"<code>","errorMessage":"<message>",
//    "attemptEndingTimestamp":<ms>,"rawData":"<original data, base64>","recordId":<id>}
// (JSON, one line, '\n' terminated; Firehose's error-output fields without lambdaArn, plus
// recordId; lines of unknown ids first, then the batch's failed records in id order; an unknown
// id's arrivalTimestamp is the delivery time). An exception thrown by the transformation fails
// the job with its message ("FirehoseSink <stream>: transformation threw: <what>"). Called on the
// writer's thread; each subtask calls its own copy; it must not keep references to the records'
// data.
using FirehoseTransformation =
    std::function<std::vector<FirehoseTransformResult>(std::span<const FirehoseRecord>)>;

// --- Options -------------------------------------------------------------------------------------

struct FirehoseSinkOptions {
  // Root of the tree (the "bucket"); created if missing. Required.
  std::string directory;
  // Start of every file name and name of the staging directory; 1 to 64 characters of
  // [A-Za-z0-9_.-], not "." nor "..". Default "sluice".
  std::string stream_name = "sluice";
  // Prepended to "YYYY/MM/DD/HH/" (see the top of this file). Relative: no leading '/', no empty,
  // "." or ".." path component, no component starting with '.'; at most 1024 characters.
  // Default "" (the time prefix only).
  std::string prefix;
  // Prefix of the files of failed records; same rules as `prefix`, must not be empty nor equal to
  // `prefix`. Default "processing-failed/" (as Firehose).
  std::string error_prefix = "processing-failed/";
  // Size hint in MiB (1..128, Firehose's range). Default 5 (Firehose's default).
  int buffer_size_mib = 5;
  // Interval hint (0..900 s, Firehose's range; any duration in it, sub-second too). Default 300 s
  // (Firehose's default).
  absl::Duration buffer_interval = absl::Seconds(300);
  // Compression of delivered files, error files included. Default none.
  FirehoseCompression compression = FirehoseCompression::kNone;
  // Appends '\n' after every delivered record. Default off: Firehose concatenates records as they
  // are, with no delimiter.
  bool newline_delimiter = false;
  // Optional transformation of every batch (see FirehoseTransformation). Default none.
  FirehoseTransformation transformation;
  // Processing time: arrival times, the interval hint and the time prefix (UTC). Default (null):
  // the system clock.
  std::shared_ptr<Clock> clock;

  // InvalidArgument naming the bad field ("FirehoseSinkOptions.<field>: ...").
  absl::Status Validate() const;
};

namespace internal {

// The transaction of FirehoseSink: the files delivered while it was open, by final path relative
// to the directory (the pending name is derived from it).
struct FirehoseTransaction {
  std::vector<std::string> files;
};

// One subtask's buffer and files (non-template, src/connectors/firehose/). Not thread-safe.
class FirehoseDelivery {
 public:
  // Validates `options` and creates the directory and the staging directory.
  static absl::StatusOr<std::unique_ptr<FirehoseDelivery>> Open(FirehoseSinkOptions options,
                                                                int subtask_index);
  ~FirehoseDelivery();
  FirehoseDelivery(const FirehoseDelivery&) = delete;
  FirehoseDelivery& operator=(const FirehoseDelivery&) = delete;

  // The batch buffer: an encoder appends one record's bytes, then EndRecord() marks its end.
  std::string& buffer() { return buffer_; }
  // Closes the record that ends at buffer().size(), arrived at `arrival_millis`; delivers the
  // batch when it reached the size hint.
  absl::Status EndRecord(int64_t arrival_millis) {
    if (entries_.empty()) batch_start_millis_ = arrival_millis;
    entries_.push_back(Entry{buffer_.size(), arrival_millis});
    if (BatchBytes() >= size_limit_) return Deliver();
    return absl::OkStatus();
  }
  // Drops the bytes an encoder appended after the last EndRecord (a throwing encoder).
  void DiscardPartialRecord() { buffer_.resize(entries_.empty() ? 0 : entries_.back().end); }
  // The clock's time.
  int64_t NowMillis() const { return clock_->NowMillis(); }
  // Delivers the batch if it reached the size hint or its oldest record the interval hint.
  absl::Status DeliverIfDue();
  // Delivers the batch, if any record is buffered.
  absl::Status Deliver();

  // Moves the files delivered since the previous call into `txn` and fsyncs the staging directory.
  absl::Status PreCommit(FirehoseTransaction* txn);
  // Renames the pending files of `txn` to their final paths (idempotent); fsyncs directories.
  absl::Status Commit(const FirehoseTransaction& txn);
  // Deletes the pending files of `txn` and of the deliveries not yet in a transaction. Best effort.
  void Abort(const FirehoseTransaction& txn);
  // Deletes the in-progress and pending files of this subtask and of `other_subtasks` from the
  // staging directory.
  absl::Status DeleteLeftovers(const std::vector<int>& other_subtasks);

  // Subtask index, next delivery number and the buffered batch, for the checkpoint state.
  std::string SnapshotState() const;
  // Restores the states of old subtasks: appends their buffered records, continues numbering
  // after the counter of the old subtask with this index, and puts the other indices in
  // `*other_subtasks`.
  absl::Status RestoreStates(const std::vector<std::string>& states,
                             std::vector<int>* other_subtasks);

  size_t buffered_records() const { return entries_.size(); }
  const FirehoseSinkOptions& options() const { return options_; }

 private:
  struct Entry {
    size_t end;  // end offset of the record in buffer_
    int64_t arrival_millis;
  };

  FirehoseDelivery(FirehoseSinkOptions options, int subtask_index);
  int64_t BatchBytes() const {
    return static_cast<int64_t>(buffer_.size()) +
           (options_.newline_delimiter ? static_cast<int64_t>(entries_.size()) : 0);
  }
  absl::Status Transform(int64_t now_millis);
  void AppendErrorLine(uint64_t record_id, std::string_view raw, int64_t arrival_millis,
                       std::string_view code, std::string_view message, int64_t now_millis);
  absl::Status WriteFile(const std::string& prefix, std::string_view data, int64_t now_millis);
  std::string StagingPath(std::string_view final_path, std::string_view tag) const;

  FirehoseSinkOptions options_;
  int subtask_index_;
  int64_t size_limit_;
  std::shared_ptr<Clock> clock_;
  std::string staging_dir_;
  std::string token_;
  int64_t next_delivery_ = 0;

  std::string buffer_;
  std::vector<Entry> entries_;
  int64_t batch_start_millis_ = 0;
  // Files delivered since the last PreCommit (they belong to the open transaction).
  std::vector<std::string> delivered_;
  // Scratch space reused across deliveries.
  std::string main_out_;
  std::string error_out_;
  std::string compressed_;
  std::vector<FirehoseRecord> inputs_;
};

}  // namespace internal

template <>
struct Serializer<internal::FirehoseTransaction> {
  static void Write(const internal::FirehoseTransaction& t, std::string* out) {
    Serializer<std::vector<std::string>>::Write(t.files, out);
  }
  static bool Read(ByteReader& in, internal::FirehoseTransaction* t) {
    return Serializer<std::vector<std::string>>::Read(in, &t->files);
  }
};

// How a record becomes bytes: either appends them to the buffer (`void(const T&, std::string&)`,
// no allocation) or returns something convertible to std::string_view (a returned std::string is
// one allocation per record).
template <typename E, typename T>
concept FirehoseEncoder =
    std::invocable<const E&, const T&, std::string&> ||
    requires(const E& e, const T& t) {
      { e(t) } -> std::convertible_to<std::string_view>;
    };

// The default encoder: the record itself, for types convertible to std::string_view
// (std::string, std::string_view, const char*).
struct FirehoseBytesEncoder {
  template <typename T>
    requires std::convertible_to<const T&, std::string_view>
  void operator()(const T& record, std::string& out) const {
    out.append(std::string_view(record));
  }
};

// Delivers records exactly once (see the top of this file). `Encoder` turns a record into its
// bytes (FirehoseEncoder); the default takes strings as they are. For another record type write
// `sluice::MakeFirehoseSink<Click>(options, [](const Click& c, std::string& out) {...})`.
template <typename T, typename Encoder = FirehoseBytesEncoder>
  requires FirehoseEncoder<Encoder, T>
class FirehoseSink : public Sink<T> {
 public:
  explicit FirehoseSink(FirehoseSinkOptions options, Encoder encoder = Encoder())
      : options_(std::move(options)), encoder_(std::move(encoder)) {}

  std::string Describe() const override {
    return absl::StrCat("Firehose ", options_.stream_name, " -> ", options_.directory);
  }
  // What it owns is its staging directory: sinks of other streams may share `directory`.
  std::string OutputPath() const override {
    return absl::StrCat(options_.directory, "/", internal::kFirehoseStagingRoot, "/",
                        options_.stream_name);
  }

  // InvalidArgument naming a bad option; an errno-derived error naming the directory when it
  // cannot be created.
  absl::StatusOr<std::unique_ptr<SinkWriter<T>>> CreateWriter(const RuntimeContext& ctx) override {
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<internal::FirehoseDelivery> delivery,
                            internal::FirehoseDelivery::Open(options_, ctx.subtask_index));
    return std::unique_ptr<SinkWriter<T>>(new Writer(std::move(delivery), encoder_));
  }

 private:
  class Writer : public TwoPhaseCommitSinkWriter<T, internal::FirehoseTransaction> {
   public:
    using Txn = internal::FirehoseTransaction;
    using Base = TwoPhaseCommitSinkWriter<T, Txn>;

    Writer(std::unique_ptr<internal::FirehoseDelivery> delivery, Encoder encoder)
        : delivery_(std::move(delivery)), encoder_(std::move(encoder)) {}

    // A batch whose interval passed is delivered before the barrier pre-commits the transaction.
    absl::StatusOr<std::string> SnapshotState(int64_t checkpoint_id) override {
      SLUICE_RETURN_IF_ERROR(delivery_->DeliverIfDue());
      return Base::SnapshotState(checkpoint_id);
    }
    // Delivers the rest of the buffer into the open transaction: the final checkpoint commits it.
    absl::Status EndOfInput() override { return delivery_->Deliver(); }
    // Delivers the rest of the buffer (nothing after EndOfInput), then commits everything.
    absl::Status Finish() override {
      SLUICE_RETURN_IF_ERROR(delivery_->Deliver());
      return Base::Finish();
    }

   protected:
    absl::StatusOr<Txn> BeginTransaction() override { return Txn{}; }

    absl::Status Invoke(Txn&, std::vector<T>& records) override {
      internal::FirehoseDelivery& d = *delivery_;
      SLUICE_RETURN_IF_ERROR(d.DeliverIfDue());
      const int64_t now = d.NowMillis();
      for (const T& r : records) {
        try {
          if constexpr (std::invocable<const Encoder&, const T&, std::string&>) {
            encoder_(r, d.buffer());
          } else {
            d.buffer().append(std::string_view(encoder_(r)));
          }
        } catch (...) {
          d.DiscardPartialRecord();  // the job fails; keep the buffer consistent for Close()
          throw;
        }
        SLUICE_RETURN_IF_ERROR(d.EndRecord(now));
      }
      return d.DeliverIfDue();
    }
    absl::Status PreCommit(Txn& txn) override { return delivery_->PreCommit(&txn); }
    absl::Status Commit(const Txn& txn) override { return delivery_->Commit(txn); }
    void Abort(const Txn& txn) override { delivery_->Abort(txn); }
    absl::Status RecoverAndAbortLeftovers() override {
      return delivery_->DeleteLeftovers(restored_subtasks_);
    }
    std::string SnapshotExtraState(int64_t) override { return delivery_->SnapshotState(); }
    absl::Status RestoreExtraState(const std::vector<std::string>& extras) override {
      return delivery_->RestoreStates(extras, &restored_subtasks_);
    }

   private:
    std::unique_ptr<internal::FirehoseDelivery> delivery_;
    Encoder encoder_;
    std::vector<int> restored_subtasks_;
  };

  FirehoseSinkOptions options_;
  Encoder encoder_;
};

// FirehoseSink<T> with the encoder's type deduced (lambdas).
template <typename T, typename Encoder>
  requires FirehoseEncoder<Encoder, T>
FirehoseSink<T, Encoder> MakeFirehoseSink(FirehoseSinkOptions options, Encoder encoder) {
  return FirehoseSink<T, Encoder>(std::move(options), std::move(encoder));
}

}  // namespace sluice
