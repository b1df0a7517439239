#include <sluice/api/stream_environment.h>

#include <cstdio>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"

#include <sluice/api/data_stream.h>
#include <sluice/connectors/sinks.h>

#include "runtime/job.h"
#include "runtime/job_runner.h"
#include "runtime/task_services.h"

namespace sluice {

const char* ExecutionModeName(ExecutionMode mode) {
  switch (mode) {
    case ExecutionMode::kStreaming:
      return "STREAMING";
    case ExecutionMode::kBatch:
      return "BATCH";
    case ExecutionMode::kAutomatic:
      return "AUTOMATIC";
  }
  return "?";
}

absl::Status RuntimeOptions::Validate() const {
  if (parallelism < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RuntimeOptions.parallelism must be >= 0 (0 = hardware threads), got ", parallelism));
  }
  if (max_parallelism < 1 || max_parallelism > 32768) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RuntimeOptions.max_parallelism must be in [1, 32768], got ", max_parallelism));
  }
  if (batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("RuntimeOptions.batch_size must be >= 1, got ", batch_size));
  }
  if (channel_capacity < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("RuntimeOptions.channel_capacity must be >= 1, got ", channel_capacity));
  }
  if (auto_watermark_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("RuntimeOptions.auto_watermark_interval must be > 0, got ",
                     absl::FormatDuration(auto_watermark_interval)));
  }
  if (worker_threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RuntimeOptions.worker_threads must be >= 0 (0 = hardware threads), got ", worker_threads));
  }
  const CheckpointOptions& cp = checkpointing;
  if (cp.interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("RuntimeOptions.checkpointing.interval must be >= 0, got ",
                     absl::FormatDuration(cp.interval)));
  }
  if (cp.interval > absl::ZeroDuration() && cp.directory.empty()) {
    return absl::InvalidArgumentError(
        "RuntimeOptions.checkpointing.directory is required when checkpointing.interval is set");
  }
  if (cp.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("RuntimeOptions.checkpointing.timeout must be > 0, got ",
                     absl::FormatDuration(cp.timeout)));
  }
  if (cp.min_pause < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("RuntimeOptions.checkpointing.min_pause must be >= 0, got ",
                     absl::FormatDuration(cp.min_pause)));
  }
  if (cp.tolerable_failures < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("RuntimeOptions.checkpointing.tolerable_failures must be >= 0, got ",
                     cp.tolerable_failures));
  }
  if (cp.retained < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("RuntimeOptions.checkpointing.retained must be >= 1, got ", cp.retained));
  }
  const RestartStrategy& rs = restart_strategy;
  if (rs.kind != RestartStrategy::Kind::kNone) {
    if (rs.attempts < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("RuntimeOptions.restart_strategy.attempts must be >= 1, got ", rs.attempts));
    }
    if (rs.delay < absl::ZeroDuration()) {
      return absl::InvalidArgumentError("RuntimeOptions.restart_strategy.delay must be >= 0");
    }
    if (rs.kind == RestartStrategy::Kind::kExponentialDelay &&
        (rs.backoff_multiplier < 1.0 || rs.max_delay < rs.delay)) {
      return absl::InvalidArgumentError(
          "RuntimeOptions.restart_strategy: backoff_multiplier must be >= 1 and max_delay >= "
          "delay");
    }
    if (rs.kind == RestartStrategy::Kind::kFailureRate &&
        rs.failure_rate_interval <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          "RuntimeOptions.restart_strategy.failure_rate_interval must be > 0");
    }
  }
  if (state_backend == StateBackendKind::kRocksDb) {
    if (absl::Status st = rocksdb.Validate(); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("RuntimeOptions.rocksdb: ", st.message()));
    }
  } else if (state_backend != StateBackendKind::kHashMap) {
    return absl::InvalidArgumentError("RuntimeOptions.state_backend is not a StateBackendKind");
  }
  return absl::OkStatus();
}

void SourceContext::Wake() const {
  if (services_ != nullptr) services_->Wake();
}

namespace internal {

const char* PartitioningName(Partitioning p) {
  switch (p) {
    case Partitioning::kDefault:
      return "DEFAULT";
    case Partitioning::kForward:
      return "FORWARD";
    case Partitioning::kRebalance:
      return "REBALANCE";
    case Partitioning::kShuffle:
      return "SHUFFLE";
    case Partitioning::kBroadcast:
      return "BROADCAST";
    case Partitioning::kHash:
      return "HASH";
  }
  return "?";
}

const std::type_info* StreamNode::SideOutputType(const std::string& tag) const {
  for (const auto& [id, factory] : side_outputs) {
    if (id == tag) return &factory(1)->record_type();
  }
  return nullptr;
}

void WriteToStandardStream(std::string_view text, bool to_stderr) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::FILE* f = to_stderr ? stderr : stdout;
  std::fwrite(text.data(), 1, text.size(), f);
  std::fflush(f);
}

}  // namespace internal

StreamEnvironment::StreamEnvironment(RuntimeOptions options)
    : options_(options), graph_(std::make_unique<internal::StreamGraph>()) {}

StreamEnvironment::~StreamEnvironment() = default;

DataStream<int64_t> StreamEnvironment::FromSequence(int64_t from, int64_t to) {
  return FromSource(SequenceSource(from, to));
}

absl::StatusOr<JobHandle> StreamEnvironment::ExecuteAsync(std::string job_name) {
  internal::StreamGraph graph = std::move(*graph_);
  *graph_ = internal::StreamGraph();
  graph_->generation = graph.generation + 1;
  SLUICE_ASSIGN_OR_RETURN(
      std::shared_ptr<internal::JobRunner> job,
      internal::JobRunner::Start(std::move(graph), options_, std::move(job_name)));
  return JobHandle(std::move(job));
}

absl::Status StreamEnvironment::Execute(std::string job_name) {
  SLUICE_ASSIGN_OR_RETURN(JobHandle job, ExecuteAsync(std::move(job_name)));
  return job.Wait();
}

JobHandle::JobHandle(std::shared_ptr<internal::JobRunner> job) : job_(std::move(job)) {}
JobHandle::JobHandle(JobHandle&&) noexcept = default;
JobHandle& JobHandle::operator=(JobHandle&& other) noexcept {
  if (this != &other) {
    if (job_) {
      job_->Cancel();
      (void)job_->Wait();
    }
    job_ = std::move(other.job_);
  }
  return *this;
}
JobHandle::~JobHandle() {
  if (job_) {
    job_->Cancel();
    (void)job_->Wait();
  }
}

// A moved-from handle has no job: it behaves like the handle of a job that ended long ago.
absl::Status JobHandle::Wait() {
  if (!job_) return absl::FailedPreconditionError("JobHandle: the handle was moved from");
  return job_->Wait();
}
absl::StatusOr<std::string> JobHandle::TriggerSavepoint(const std::string& dir) {
  if (!job_) return absl::FailedPreconditionError("the job handle has no job (moved from)");
  return job_->TriggerSavepoint(dir);
}
absl::StatusOr<std::string> JobHandle::StopWithSavepoint(const std::string& dir) {
  SLUICE_ASSIGN_OR_RETURN(std::string path, TriggerSavepoint(dir));
  job_->Cancel();
  return path;
}
int64_t JobHandle::LastCompletedCheckpoint() const {
  return job_ ? job_->CompletedCheckpoints() : 0;
}

bool JobHandle::WaitFor(absl::Duration timeout) { return job_ ? job_->WaitFor(timeout) : true; }
void JobHandle::Cancel() {
  if (job_) job_->Cancel();
}
std::map<std::string, int64_t> JobHandle::Counters() const {
  return job_ ? job_->Counters() : std::map<std::string, int64_t>{};
}
JobGraph JobHandle::Graph() const { return job_ ? job_->Graph() : JobGraph{}; }
bool JobHandle::IsDone() const { return job_ ? job_->IsDone() : true; }
const std::string& JobHandle::name() const {
  static const std::string* const kNone = new std::string();
  return job_ ? job_->name() : *kNone;
}

}  // namespace sluice
