#include "runtime/checkpoint_coordinator.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include <sluice/core/log.h>

#include <sluice/core/key.h>

#include "runtime/job.h"
#include "runtime/task.h"

namespace sluice::internal {

CheckpointCoordinator::CheckpointCoordinator(Job* job, std::string job_name,
                                             CheckpointOptions options,
                                             std::unique_ptr<CheckpointStorage> storage,
                                             int max_parallelism,
                                             std::vector<OperatorInfo> operators,
                                             std::vector<Task*> tasks, int64_t first_id)
    : job_(job),
      job_name_(std::move(job_name)),
      options_(std::move(options)),
      storage_(std::move(storage)),
      max_parallelism_(max_parallelism),
      operators_(std::move(operators)),
      tasks_(std::move(tasks)),
      next_id_(first_id) {}

CheckpointCoordinator::~CheckpointCoordinator() { Stop(); }

void CheckpointCoordinator::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stop_) return;
  // Every task may have ended already (TaskEnded moved next_trigger_ earlier): keep the earlier.
  if (options_.interval > absl::ZeroDuration()) {
    next_trigger_ = std::min(next_trigger_, absl::Now() + options_.interval);
  }
  thread_ = std::thread([this] { Run(); });
}

void CheckpointCoordinator::Stop() {
  // Concurrent callers (two Wait()s) return only after the thread is joined and the pending
  // checkpoint aborted.
  std::lock_guard<std::mutex> stopping(stop_mu_);
  std::thread t;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    t = std::move(thread_);
  }
  cv_.notify_all();
  if (t.joinable()) t.join();
  std::unique_lock<std::mutex> lock(mu_);
  if (pending_) Finish(lock, absl::AbortedError("the job ended before the checkpoint completed"));
  for (auto& r : savepoints_) {
    if (!r->done) {
      r->done = true;
      r->result = absl::AbortedError("the job ended before the savepoint was taken");
    }
  }
  cv_.notify_all();
}

bool CheckpointCoordinator::AnyTaskFinished() const {
  for (Task* t : tasks_) {
    if (t->finished()) return true;
  }
  return false;
}

int64_t CheckpointCoordinator::completed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return completed_;
}

bool CheckpointCoordinator::IsSavepoint(int64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_ != nullptr && pending_->id == id && pending_->savepoint;
}

void CheckpointCoordinator::Acknowledge(int64_t id, std::vector<SubtaskSnapshot> snapshots,
                                        bool ended) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!pending_ || pending_->id != id) return;  // a checkpoint that was aborted meanwhile
    if (!ended) pending_->all_ended = false;
    acks_.push_back(std::move(snapshots));
  }
  cv_.notify_all();
}

void CheckpointCoordinator::TaskEnded() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (++ended_tasks_ == tasks_.size() && !pending_) {
      next_trigger_ =
          std::min(next_trigger_, std::max(absl::Now(), last_end_ + options_.min_pause));
    }
  }
  cv_.notify_all();
}

void CheckpointCoordinator::Decline(int64_t id, absl::Status why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!pending_ || pending_->id != id || !pending_->failure.ok()) return;
    pending_->failure = std::move(why);
    pending_->declined = true;  // a task ended: not a checkpoint failure
  }
  cv_.notify_all();
}

absl::StatusOr<std::string> CheckpointCoordinator::TriggerSavepoint(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("savepoint directory is empty");
  auto request = std::make_shared<SavepointRequest>();
  request->dir = dir;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return absl::FailedPreconditionError("the job has ended: no savepoint can be taken");
    savepoints_.push_back(request);
    if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
  }
  cv_.notify_all();
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return request->done; });
  return request->result;
}

void CheckpointCoordinator::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const absl::Time now = absl::Now();
    if (!pending_) {
      auto waiting = std::find_if(savepoints_.begin(), savepoints_.end(),
                                  [](const auto& r) { return !r->started; });
      if (waiting != savepoints_.end()) {
        current_savepoint_ = *waiting;
        current_savepoint_->started = true;
        absl::Status st = TriggerLocked(lock, true, current_savepoint_->dir);
        if (!st.ok()) {
          current_savepoint_->done = true;
          current_savepoint_->result = st;
          current_savepoint_.reset();
          cv_.notify_all();
        }
        continue;
      }
      if (now >= next_trigger_ && !final_done_) {
        absl::Status st = TriggerLocked(lock, false, "");
        if (absl::IsFailedPrecondition(st) && AnyTaskFinished()) {
          // As Flink: no checkpoint while not every task runs (a bounded input ended); this is
          // not a checkpoint failure.
          next_trigger_ = now + options_.interval;
        } else if (!st.ok()) {
          ++consecutive_failures_;
          if (consecutive_failures_ > options_.tolerable_failures) {
            job_->Fail(absl::Status(st.code(),
                                    absl::StrCat("checkpoint could not start: ", st.message())));
          }
          next_trigger_ = now + options_.interval;
        }
        continue;
      }
    }
    if (pending_) {
      // Write what the tasks sent (the asynchronous part), without the lock.
      while (pending_ && !acks_.empty() && pending_->failure.ok()) {
        std::vector<SubtaskSnapshot> snaps = std::move(acks_.front());
        acks_.erase(acks_.begin());
        Pending* p = pending_.get();
        lock.unlock();
        absl::Status st = Write(*p, snaps);
        lock.lock();
        if (!st.ok() && p->failure.ok()) p->failure = st;
        ++p->acks;
      }
      if (!pending_->failure.ok()) {
        Finish(lock, pending_->failure);
        continue;
      }
      if (pending_->acks == tasks_.size()) {
        Finish(lock, absl::OkStatus());
        continue;
      }
      if (now - pending_->started >= options_.timeout) {
        Finish(lock, absl::DeadlineExceededError(absl::StrCat(
                         "not complete after ", absl::FormatDuration(options_.timeout))));
        continue;
      }
    }
    // Stop() may have been called while Write ran without the lock (its notification is gone;
    // acknowledgements and declines that came meanwhile were seen above).
    if (stop_) break;
    // While a checkpoint is pending the next one waits for it (acknowledgements wake this
    // thread): only its timeout counts, even once the next trigger time has passed.
    absl::Time wake = final_done_ || pending_ ? absl::InfiniteFuture() : next_trigger_;
    if (pending_) wake = std::min(wake, pending_->started + options_.timeout);
    if (wake == absl::InfiniteFuture()) {
      cv_.wait(lock);
    } else {
      cv_.wait_for(lock, absl::ToChronoNanoseconds(std::max(absl::ZeroDuration(), wake - now)));
    }
  }
}

absl::Status CheckpointCoordinator::TriggerLocked(std::unique_lock<std::mutex>&, bool savepoint,
                                                  const std::string& dir) {
  for (Task* t : tasks_) {
    if (t->finished()) {
      return absl::FailedPreconditionError(
          absl::StrCat("task '", t->name(), "' has finished; checkpoints need every task running"));
    }
  }
  auto p = std::make_unique<Pending>();
  p->id = next_id_++;
  p->savepoint = savepoint;
  p->savepoint_dir = dir;
  p->started = absl::Now();
  absl::StatusOr<std::unique_ptr<PendingCheckpoint>> writer =
      savepoint ? CheckpointStorage::BeginSavepoint(dir, p->id)
                : (storage_ ? storage_->Begin(p->id)
                            : absl::StatusOr<std::unique_ptr<PendingCheckpoint>>(
                                  absl::FailedPreconditionError("no checkpoint directory")));
  if (!writer.ok()) return writer.status();
  p->writer = std::move(*writer);
  checkpoint::CheckpointMetadata& md = p->metadata;
  md.set_timestamp_ms(absl::ToUnixMillis(absl::Now()));
  md.set_savepoint(savepoint);
  md.set_job_name(job_name_);
  for (const OperatorInfo& op : operators_) {
    checkpoint::OperatorState* os = md.add_operators();
    os->set_operator_id(op.operator_id);
    os->set_uid(op.uid);
    os->set_operator_name(op.name);
    os->set_parallelism(op.parallelism);
    os->set_max_parallelism(max_parallelism_);
    for (int s = 0; s < op.parallelism; ++s) {
      checkpoint::SubtaskState* st = os->add_subtasks();
      st->set_subtask_index(s);
      KeyGroupRange r = KeyGroupRange::ForSubtask(max_parallelism_, op.parallelism, s);
      st->mutable_key_groups()->set_start(r.start);
      st->mutable_key_groups()->set_end(r.end);
    }
  }
  for (size_t i = 0; i < operators_.size(); ++i) {
    for (checkpoint::SubtaskState& st :
         *md.mutable_operators(static_cast<int>(i))->mutable_subtasks()) {
      p->subtasks[{operators_[i].node_id, st.subtask_index()}] = &st;
    }
  }
  acks_.clear();
  pending_ = std::move(p);
  const int64_t id = pending_->id;
  // Published before the tasks are asked: a task that ends from now on sees it (Task::OnEnded),
  // one that ended before is asked here; a task that does both takes the checkpoint once.
  pending_id_.store(id, std::memory_order_seq_cst);
  for (Task* t : tasks_) {
    if (t->is_source() || t->ended()) t->TriggerCheckpoint(id);
  }
  return absl::OkStatus();
}

// The most files of changes after a full keyed-state file (incremental checkpoints).
constexpr size_t kMaxKeyedChanges = 16;
constexpr uint64_t kSmallKeyedState = uint64_t{1} << 20;

absl::Status CheckpointCoordinator::Write(Pending& p, std::vector<SubtaskSnapshot>& snapshots) {
  for (SubtaskSnapshot& s : snapshots) {
    auto it = p.subtasks.find({s.node_id, s.subtask});
    if (it == p.subtasks.end()) {
      return absl::InternalError(absl::StrCat("snapshot of unknown operator node-", s.node_id));
    }
    checkpoint::SubtaskState* st = it->second;
    if (s.state.watermark != kMinWatermark) st->set_watermark(s.state.watermark);
    if (s.state.keyed) {
      KeyedSnapshot& keyed = *s.state.keyed;
      const SubtaskId id{s.node_id, s.subtask};
      std::optional<KeyedChain> chain;  // the latest complete checkpoint's
      if (!p.savepoint && options_.incremental) {
        keyed.change_log = true;
        std::lock_guard<std::mutex> lock(mu_);
        if (auto it = chains_.find(id); it != chains_.end()) chain = it->second;
      }
      // Changes only while they add up to less than the full file (or 1 MiB: a small state has
      // key-group overhead of its own), and a restore reads a bounded number of files.
      if (chain.has_value() &&
          chain->changes_bytes < std::max<uint64_t>(chain->full.size(), kSmallKeyedState) &&
          chain->changes.size() < kMaxKeyedChanges) {
        keyed.changes_since = chain->position;
      }
      // The asynchronous part of the snapshot: serialize off the task thread.
      if (absl::Status st = MaterializeKeyedSnapshot(keyed); !st.ok()) {
        return absl::Status(st.code(), absl::StrCat("operator node-", s.node_id, " subtask ",
                                                    s.subtask, ": ", st.message()));
      }
      if (keyed.format == KeyedSnapshot::Format::kCanonical) {
        absl::StatusOr<checkpoint::FileRef> ref = p.writer->WriteFile(
            absl::StrCat("op", s.node_id, "-", s.subtask, ".keyed"), keyed.bytes);
        if (!ref.ok()) return ref.status();
        *st->mutable_keyed_state() = *ref;
        for (uint64_t off : keyed.key_group_offsets) st->add_key_group_offsets(off);
        p.chains[id] = std::nullopt;
      } else {
        // In shared/, under a name unique to the backend instance and snapshot.
        absl::StatusOr<checkpoint::FileRef> ref = p.writer->WriteSharedFile(
            absl::StrCat("keyed/", absl::Hex(keyed.position.token, absl::kZeroPad16), "-",
                         keyed.position.generation, ".slkc"),
            keyed.bytes);
        if (!ref.ok()) return ref.status();
        KeyedChain next;
        if (keyed.format == KeyedSnapshot::Format::kChangeLogChanges) {
          if (!chain.has_value()) {
            return absl::InternalError(absl::StrCat("operator node-", s.node_id, " subtask ",
                                                    s.subtask, ": changes without a change log"));
          }
          next = std::move(*chain);
          checkpoint::KeyedStateChanges& changes = next.changes.emplace_back();
          *changes.mutable_file() = *ref;
          for (uint64_t off : keyed.key_group_offsets) changes.add_key_group_offsets(off);
          next.changes_bytes += ref->size();
        } else {
          next.full = *ref;
          next.full_offsets = keyed.key_group_offsets;
        }
        next.position = keyed.position;
        *st->mutable_keyed_state() = next.full;
        for (uint64_t off : next.full_offsets) st->add_key_group_offsets(off);
        for (const checkpoint::KeyedStateChanges& c : next.changes) *st->add_keyed_changes() = c;
        p.chains[id] = std::move(next);
      }
      if (!keyed.native_dir.empty()) {
        SLUICE_RETURN_IF_ERROR(WriteNativeFiles(p, s, *st));
      }
    }
    if (!s.state.operator_state.empty()) {
      absl::StatusOr<checkpoint::FileRef> ref = p.writer->WriteFile(
          absl::StrCat("op", s.node_id, "-", s.subtask, ".state"), s.state.operator_state);
      if (!ref.ok()) return ref.status();
      *st->mutable_operator_state() = *ref;
    }
  }
  return absl::OkStatus();
}

absl::Status CheckpointCoordinator::WriteNativeFiles(Pending& p, SubtaskSnapshot& s,
                                                     checkpoint::SubtaskState& st) {
  const KeyedSnapshot& keyed = *s.state.keyed;
  absl::Status status;
  for (const KeyedSnapshot::NativeFile& f : keyed.native_files) {
    const std::string local = absl::StrCat(keyed.native_dir, "/", f.name);
    absl::StatusOr<checkpoint::FileRef> ref;
    if (!f.shared_name.empty()) {
      ref = p.writer->AddFile(absl::StrCat("rocksdb/", f.shared_name), local);
    } else {
      std::ifstream in(local, std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (!in.good() && !in.eof()) {
        ref = absl::InternalError(absl::StrCat("cannot read ", local));
      } else {
        ref = p.writer->WriteFile(
            absl::StrCat("op", s.node_id, "-", s.subtask, ".rocksdb/", f.name), bytes);
      }
    }
    if (!ref.ok()) {
      status = ref.status();
      break;
    }
    *st.add_rocksdb_files() = *ref;
  }
  st.set_backend(kNativeRocksDbBackend);
  std::error_code ec;
  std::filesystem::remove_all(keyed.native_dir, ec);
  return status;
}

void CheckpointCoordinator::Finish(std::unique_lock<std::mutex>&, absl::Status status) {
  std::unique_ptr<Pending> p = std::move(pending_);
  pending_id_.store(0, std::memory_order_seq_cst);
  acks_.clear();
  if (status.ok()) status = p->writer->Commit(p->metadata);
  const std::string what = p->savepoint
                               ? absl::StrCat("savepoint ", p->id, " into ", p->savepoint_dir)
                               : absl::StrCat("checkpoint ", p->id);
  if (status.ok() && !p->savepoint) {
    for (auto& [id, chain] : p->chains) {
      if (chain.has_value()) {
        chains_[id] = std::move(*chain);
      } else {
        chains_.erase(id);
      }
    }
  }
  if (status.ok()) {
    completed_ = p->id;
    if (!p->savepoint) consecutive_failures_ = 0;
    if (!p->savepoint && p->all_ended && job_->final_checkpoints()) {
      // Every task took it after its end: the job's final checkpoint. The tasks end once told.
      final_done_ = true;
      job_->SetFinalCheckpoint(p->id);
    }
    for (Task* t : tasks_) t->NotifyCheckpointComplete(p->id);
  } else {
    p->writer->Abort();
    for (Task* t : tasks_) t->NotifyCheckpointAborted(p->id);
    if (!p->savepoint && !stop_ && !p->declined) {
      ++consecutive_failures_;
      Log(LogSeverity::kWarning, job_name_,
          absl::StrCat(what, " failed: ", status.message(), " (", consecutive_failures_,
                       " in a row, tolerable: ", options_.tolerable_failures, ")"));
      if (consecutive_failures_ > options_.tolerable_failures) {
        job_->Fail(absl::Status(
            status.code(),
            absl::StrCat(what, " failed: ", status.message(), " (", consecutive_failures_,
                         " failed checkpoints in a row, tolerable: ", options_.tolerable_failures,
                         ")")));
      }
    }
  }
  if (p->savepoint && current_savepoint_) {
    current_savepoint_->done = true;
    current_savepoint_->result =
        status.ok() ? absl::StatusOr<std::string>(p->savepoint_dir)
                    : absl::StatusOr<std::string>(absl::Status(
                          status.code(), absl::StrCat(what, " failed: ", status.message())));
    current_savepoint_.reset();
    savepoints_.erase(std::remove_if(savepoints_.begin(), savepoints_.end(),
                                     [](const auto& r) { return r->done; }),
                      savepoints_.end());
  }
  const absl::Time now = absl::Now();
  last_end_ = now;
  if (options_.interval > absl::ZeroDuration()) {
    next_trigger_ = std::max(p->started + options_.interval, now + options_.min_pause);
    // Every task has ended: the final checkpoint need not wait for the interval.
    if (ended_tasks_ == tasks_.size()) next_trigger_ = now + options_.min_pause;
  }
  cv_.notify_all();
}

}  // namespace sluice::internal
