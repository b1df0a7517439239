// TwoPhaseCommitSinkWriter: the base of exactly-once sinks, as Flink's TwoPhaseCommitSinkFunction.
// A concrete sink says how to begin, fill, pre-commit, commit and abort one transaction; the base
// ties transactions to checkpoints.
//
//   class KvWriter : public sluice::TwoPhaseCommitSinkWriter<Row, KvTxn> {
//     absl::StatusOr<KvTxn> BeginTransaction() override { return store_->Begin(); }
//     absl::Status Invoke(KvTxn& t, std::vector<Row>& rows) override { return t.Put(rows); }
//     absl::Status PreCommit(KvTxn& t) override { return t.Flush(); }
//     absl::Status Commit(const KvTxn& t) override { return store_->Commit(t.id); }  // idempotent
//     void Abort(const KvTxn& t) override { store_->Abort(t.id); }
//   };
//
// Lifecycle. A transaction is open from the start (or from the previous barrier) and receives every
// Write. At checkpoint `id`'s barrier (SnapshotState) the open transaction is pre-committed, kept as
// pending for `id`, and a new one begins; the returned state lists every pending transaction. When
// checkpoint `id` completes (NotifyCheckpointComplete) every pending transaction of a checkpoint
// <= id is committed, oldest first. After a failure the runtime restores the last complete
// checkpoint: RestoreState commits the pending transactions listed there (their checkpoint is
// complete, the notification may have been lost), so Commit must be idempotent. The transaction
// open at the barrier is not in the state (it began after the barrier); data a failed attempt left
// behind is the concrete sink's to clean in RecoverAndAbortLeftovers(). Finish() (the end of a
// bounded job: after its final checkpoint completed, or at the end of input without checkpoints)
// commits everything; Close() without Finish() aborts the open transaction only.
//
// Txn is any type with a sluice::Serializer (<sluice/state/serializer.h>) that is default
// constructible and movable. Not thread-safe: used by one thread at a time (the runtime's contract).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#include <sluice/connectors/sink.h>
#include <sluice/core/status.h>
#include <sluice/state/serializer.h>

namespace sluice {

template <typename T, typename Txn>
  requires Serializable<Txn> && std::default_initializable<Txn> && std::movable<Txn>
class TwoPhaseCommitSinkWriter : public SinkWriter<T> {
 public:
  // A pre-committed transaction waiting for its checkpoint to complete.
  struct Pending {
    int64_t checkpoint_id = 0;
    Txn transaction;
  };

  absl::Status Write(std::vector<T>& records) override {
    SLUICE_RETURN_IF_ERROR(EnsureOpen());
    return Invoke(*current_, records);
  }

  absl::StatusOr<std::string> SnapshotState(int64_t checkpoint_id) override {
    SLUICE_RETURN_IF_ERROR(EnsureOpen());
    SLUICE_RETURN_IF_ERROR(PreCommit(*current_));
    pending_.push_back(Pending{checkpoint_id, std::move(*current_)});
    current_.reset();
    SLUICE_ASSIGN_OR_RETURN(Txn next, BeginTransaction());
    current_.emplace(std::move(next));
    std::string state;
    PutVarint(kStateVersion, &state);
    PutVarint(pending_.size(), &state);
    for (const Pending& p : pending_) {
      Serializer<int64_t>::Write(p.checkpoint_id, &state);
      Serializer<Txn>::Write(p.transaction, &state);
    }
    Serializer<std::string>::Write(SnapshotExtraState(checkpoint_id), &state);
    return state;
  }

  absl::Status NotifyCheckpointComplete(int64_t checkpoint_id) override {
    return CommitPendingUpTo(checkpoint_id);
  }

  // Commits the pending transactions of every state, by checkpoint id (stable across states),
  // then calls RecoverAndAbortLeftovers(). Must come before the first Write.
  absl::Status RestoreState(const std::vector<std::string>& states) override {
    if (initialized_) {
      return absl::FailedPreconditionError(
          "two-phase-commit sink: RestoreState called after the writer started");
    }
    // Whatever happens below, this writer never starts as a fresh one: its leftover cleanup
    // would delete what the state still needs.
    initialized_ = true;
    restore_failed_ = true;
    std::vector<Pending> restored;
    std::vector<std::string> extras;
    for (size_t i = 0; i < states.size(); ++i) {
      if (states[i].empty()) continue;  // a subtask that kept no state
      SLUICE_RETURN_IF_ERROR(Decode(states[i], i, &restored, &extras));
    }
    SLUICE_RETURN_IF_ERROR(RestoreExtraState(extras));
    std::stable_sort(restored.begin(), restored.end(), [](const Pending& a, const Pending& b) {
      return a.checkpoint_id < b.checkpoint_id;
    });
    for (const Pending& p : restored) SLUICE_RETURN_IF_ERROR(Commit(p.transaction));
    SLUICE_RETURN_IF_ERROR(RecoverAndAbortLeftovers());
    SLUICE_ASSIGN_OR_RETURN(Txn next, BeginTransaction());
    current_.emplace(std::move(next));
    restore_failed_ = false;
    return absl::OkStatus();
  }

  // End of a bounded input: pre-commits and commits the open transaction after every pending one.
  absl::Status Finish() override {
    SLUICE_RETURN_IF_ERROR(EnsureOpen());
    SLUICE_RETURN_IF_ERROR(PreCommit(*current_));
    SLUICE_RETURN_IF_ERROR(CommitPendingUpTo(std::numeric_limits<int64_t>::max()));
    SLUICE_RETURN_IF_ERROR(Commit(*current_));
    current_.reset();
    finished_ = true;
    return absl::OkStatus();
  }

  // Aborts the open transaction (unless Finish() committed it). Pending transactions are left
  // alone: a recovery may still commit them.
  void Close() override {
    if (current_.has_value()) Abort(*current_);
    current_.reset();
  }

 protected:
  // Starts a new transaction. Called when the writer starts (or is restored) and after each
  // barrier.
  virtual absl::StatusOr<Txn> BeginTransaction() = 0;
  // Adds `records` to `txn` (may move from them).
  virtual absl::Status Invoke(Txn& txn, std::vector<T>& records) = 0;
  // Makes `txn` durable so that a later Commit cannot fail for lack of data; nothing may be added
  // to it afterwards.
  virtual absl::Status PreCommit(Txn& txn) = 0;
  // Makes a pre-committed `txn` visible. Must be idempotent: after a failure it is called again for
  // transactions that may already be committed.
  virtual absl::Status Commit(const Txn& txn) = 0;
  // Discards an open (not pre-committed) `txn`. Best effort: errors cannot be reported.
  virtual void Abort(const Txn& txn) = 0;
  // Cleans up what earlier attempts left behind (data of transactions that were never
  // pre-committed, pre-committed ones whose checkpoint never completed). Called once, before the
  // first transaction begins: in RestoreState after the restored commits, or at the first
  // Write/SnapshotState/Finish of a writer that was not restored. Default: nothing.
  virtual absl::Status RecoverAndAbortLeftovers() { return absl::OkStatus(); }
  // Extra bytes to keep in the state of checkpoint `checkpoint_id` (e.g. counters); handed back to
  // RestoreExtraState, one entry per restored state, in RestoreState before anything is committed.
  virtual std::string SnapshotExtraState(int64_t /*checkpoint_id*/) { return std::string(); }
  virtual absl::Status RestoreExtraState(const std::vector<std::string>& /*extras*/) {
    return absl::OkStatus();
  }

  // The open transaction (null before the writer starts, after Finish() and Close()).
  const Txn* current_transaction() const { return current_ ? &*current_ : nullptr; }
  // Pre-committed transactions not committed yet, oldest first.
  const std::vector<Pending>& pending_transactions() const { return pending_; }

 private:
  static constexpr uint64_t kStateVersion = 1;

  // Commits in order; a failure leaves the failed transaction and the later ones pending (the job
  // fails and the restored state still lists them, so they are committed on recovery).
  absl::Status CommitPendingUpTo(int64_t checkpoint_id) {
    auto it = pending_.begin();
    absl::Status status;
    for (; it != pending_.end() && it->checkpoint_id <= checkpoint_id; ++it) {
      status = Commit(it->transaction);
      if (!status.ok()) break;
    }
    pending_.erase(pending_.begin(), it);
    return status;
  }

  absl::Status EnsureOpen() {
    if (finished_) {
      return absl::FailedPreconditionError("two-phase-commit sink: used after Finish()");
    }
    if (restore_failed_) {
      return absl::FailedPreconditionError("two-phase-commit sink: used after RestoreState failed");
    }
    if (!initialized_) {
      initialized_ = true;
      SLUICE_RETURN_IF_ERROR(RecoverAndAbortLeftovers());
    }
    if (!current_.has_value()) {
      SLUICE_ASSIGN_OR_RETURN(Txn txn, BeginTransaction());
      current_.emplace(std::move(txn));
    }
    return absl::OkStatus();
  }

  static absl::Status Decode(const std::string& bytes, size_t index, std::vector<Pending>* out,
                             std::vector<std::string>* extras) {
    ByteReader in(bytes);
    uint64_t version = 0;
    uint64_t n = 0;
    bool ok = in.ReadVarint(&version) && version == kStateVersion && in.ReadVarint(&n) &&
              n <= in.remaining();
    for (uint64_t i = 0; ok && i < n; ++i) {
      Pending p;
      ok = Serializer<int64_t>::Read(in, &p.checkpoint_id) &&
           Serializer<Txn>::Read(in, &p.transaction);
      if (ok) out->push_back(std::move(p));
    }
    std::string extra;
    ok = ok && Serializer<std::string>::Read(in, &extra) && in.empty();
    if (!ok) {
      return absl::DataLossError(absl::StrCat("two-phase-commit sink: restored state ", index, " (",
                                              bytes.size(), " bytes) is malformed"));
    }
    extras->push_back(std::move(extra));
    return absl::OkStatus();
  }

  std::optional<Txn> current_;
  std::vector<Pending> pending_;
  bool initialized_ = false;
  bool finished_ = false;
  bool restore_failed_ = false;
};

}  // namespace sluice
