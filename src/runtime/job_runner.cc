#include "runtime/job_runner.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include <sluice/core/log.h>

#include "checkpoint/checkpoint_storage.h"

namespace sluice::internal {

JobRunner::JobRunner(StreamGraph graph, RuntimeOptions options, std::string name)
    : graph_(std::move(graph)), options_(std::move(options)), name_(std::move(name)) {
  next_exponential_ = options_.restart_strategy.delay;
}

absl::StatusOr<std::shared_ptr<JobRunner>> JobRunner::Start(StreamGraph graph,
                                                            RuntimeOptions options,
                                                            std::string name) {
  std::shared_ptr<JobRunner> runner(new JobRunner(std::move(graph), std::move(options), name));
  const std::string holder = absl::StrCat("job '", name, "'");
  if (const std::string& dir = runner->options_.checkpointing.directory; !dir.empty()) {
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<DirectoryLock> lock,
                            DirectoryLock::Acquire(dir, "checkpoint directory", holder));
    runner->directory_locks_.push_back(std::move(lock));
  }
  std::set<std::string> locked;  // two sinks on one path: Job::Build refuses them, naming both
  for (const StreamNode& n : runner->graph_.nodes) {
    if (!n.is_sink || n.output_path.empty()) continue;
    const std::string path = NormalizedPath(n.output_path);
    if (!locked.insert(path).second) continue;
    absl::StatusOr<std::unique_ptr<DirectoryLock>> lock =
        DirectoryLock::AcquireBeside(path, absl::StrCat("output of sink '", n.name, "'"), holder);
    if (!lock.ok()) return lock.status();
    runner->directory_locks_.push_back(*std::move(lock));
  }
  SLUICE_ASSIGN_OR_RETURN(runner->job_, Job::Build(runner->graph_, runner->options_, name));
  runner->job_->Start();
  if (runner->options_.restart_strategy.kind != RestartStrategy::Kind::kNone) {
    runner->supervisor_ = std::thread([r = runner.get()] { r->Supervise(); });
  }
  return runner;
}

JobRunner::~JobRunner() {
  Cancel();
  if (supervisor_.joinable()) supervisor_.join();
  if (std::shared_ptr<Job> job = Current()) (void)job->Wait();
}

std::shared_ptr<Job> JobRunner::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return job_;
}

absl::StatusOr<absl::Duration> JobRunner::NextDelay(const absl::Status& failure) {
  const RestartStrategy& rs = options_.restart_strategy;
  const absl::Time now = absl::Now();
  switch (rs.kind) {
    case RestartStrategy::Kind::kNone:
      return failure;
    case RestartStrategy::Kind::kFixedDelay:
      if (attempts_ - 1 >= rs.attempts) break;
      return rs.delay;
    case RestartStrategy::Kind::kExponentialDelay: {
      absl::Duration d = next_exponential_;
      next_exponential_ = std::min(rs.max_delay, next_exponential_ * rs.backoff_multiplier);
      return d;
    }
    case RestartStrategy::Kind::kFailureRate:
      failures_.push_back(now);
      failures_.erase(
          std::remove_if(failures_.begin(), failures_.end(),
                         [&](absl::Time t) { return now - t > rs.failure_rate_interval; }),
          failures_.end());
      if (static_cast<int>(failures_.size()) > rs.attempts) break;
      return rs.delay;
  }
  return absl::Status(failure.code(), absl::StrCat(failure.message(),
                                                   " (the restart strategy allows no more "
                                                   "restarts after ",
                                                   attempts_, " attempts)"));
}

void JobRunner::Supervise() {
  while (true) {
    std::shared_ptr<Job> job = Current();
    absl::Status status = job->Wait();
    std::unique_lock<std::mutex> lock(mu_);
    last_checkpoint_ = std::max(last_checkpoint_, job->CompletedCheckpoints());
    if (status.ok() || cancelled_ || absl::IsCancelled(status)) {
      done_ = true;
      status_ = status;
      cv_.notify_all();
      return;
    }
    absl::StatusOr<absl::Duration> delay = NextDelay(status);
    // Logged before the end is published (Wait() returns after the message), without the lock
    // (a sink may be slow).
    if (!delay.ok()) {
      if (options_.restart_strategy.kind != RestartStrategy::Kind::kNone) {
        lock.unlock();
        Log(LogSeverity::kError, name_, absl::StrCat("failed: ", delay.status().message()));
        lock.lock();
      }
      done_ = true;
      status_ = delay.status();
      cv_.notify_all();
      return;
    }
    const std::string restarting =
        absl::StrCat("failed: ", status.message(), "; restarting in ", absl::FormatDuration(*delay),
                     " (restart ", attempts_, ")");
    lock.unlock();
    Log(LogSeverity::kWarning, name_, restarting);
    lock.lock();
    cv_.wait_for(lock, absl::ToChronoNanoseconds(*delay), [this] { return cancelled_; });
    if (cancelled_) {
      done_ = true;
      status_ = absl::CancelledError(absl::StrCat("job '", name_, "' was cancelled"));
      cv_.notify_all();
      return;
    }
    RuntimeOptions options = options_;
    lock.unlock();
    const absl::Status resume = SetRestoreFromLatest(options);
    absl::StatusOr<std::shared_ptr<Job>> next =
        resume.ok() ? Job::Build(graph_, options, name_) : resume;
    if (!next.ok()) {
      const absl::Status failed(next.status().code(),
                                absl::StrCat("restart failed: ", next.status().message()));
      Log(LogSeverity::kError, name_, failed.message());
      lock.lock();
      done_ = true;
      status_ = failed;
      cv_.notify_all();
      return;
    }
    lock.lock();
    job_ = std::move(*next);
    ++attempts_;
    job_->Start();
  }
}

// Resume from the latest complete checkpoint, if there is one (from the start if there is none).
// A damaged newest checkpoint fails the restart unless the host allowed a fall-back: starting
// over, or from an older checkpoint, would repeat committed output.
absl::Status JobRunner::SetRestoreFromLatest(RuntimeOptions& options) const {
  if (options.checkpointing.directory.empty()) return absl::OkStatus();
  SLUICE_ASSIGN_OR_RETURN(
      std::unique_ptr<CheckpointStorage> storage,
      CheckpointStorage::Open({options.checkpointing.directory, options.checkpointing.retained}));
  const absl::Status latest =
      storage
          ->LoadLatestValid(nullptr, options.checkpointing.fall_back_to_older_checkpoint
                                         ? OlderCheckpoints::kFallBack
                                         : OlderCheckpoints::kRefuse)
          .status();
  if (absl::IsNotFound(latest)) return absl::OkStatus();
  SLUICE_RETURN_IF_ERROR(latest);
  options.restore_from = options.checkpointing.directory;
  return absl::OkStatus();
}

absl::Status JobRunner::Wait() {
  if (!supervisor_.joinable()) {
    absl::Status status = Current()->Wait();
    ReleaseDirectory();
    return status;
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return done_; });
  directory_locks_.clear();
  return status_;
}

bool JobRunner::WaitFor(absl::Duration timeout) {
  if (!supervisor_.joinable()) {
    const bool done = Current()->WaitFor(timeout);
    if (done) ReleaseDirectory();
    return done;
  }
  std::unique_lock<std::mutex> lock(mu_);
  bool done;
  if (timeout >= absl::Hours(24 * 365 * 100)) {
    cv_.wait(lock, [this] { return done_; });
    done = true;
  } else {
    done = cv_.wait_for(lock, absl::ToChronoNanoseconds(std::max(timeout, absl::ZeroDuration())),
                        [this] { return done_; });
  }
  if (done) directory_locks_.clear();
  return done;
}

void JobRunner::ReleaseDirectory() {
  std::lock_guard<std::mutex> lock(mu_);
  directory_locks_.clear();
}

void JobRunner::Cancel() {
  std::shared_ptr<Job> job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    job = job_;
  }
  cv_.notify_all();
  if (job) job->Cancel();
}

bool JobRunner::IsDone() const {
  if (!supervisor_.joinable()) return Current()->IsDone();
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

std::map<std::string, int64_t> JobRunner::Counters() const {
  return Current()->counters().Snapshot();
}

JobGraph JobRunner::Graph() const { return Current()->plan(); }

absl::StatusOr<std::string> JobRunner::TriggerSavepoint(const std::string& dir) {
  return Current()->TriggerSavepoint(dir);
}

int64_t JobRunner::CompletedCheckpoints() const {
  std::shared_ptr<Job> job = Current();
  std::lock_guard<std::mutex> lock(mu_);
  return std::max(last_checkpoint_, job->CompletedCheckpoints());
}

int JobRunner::attempts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return attempts_;
}

}  // namespace sluice::internal
