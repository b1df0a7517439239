// The source interface: a Source<T> is a serializable-in-spirit factory that the runtime asks for
// one SourceReader<T> per parallel subtask. Readers are polled cooperatively by worker threads:
// they never block for long, and say when they have nothing to give.
//
//   class Countdown : public sluice::Source<int> {
//     bool IsBounded() const override { return true; }
//     absl::StatusOr<std::unique_ptr<sluice::SourceReader<int>>> CreateReader(
//         const sluice::SourceContext& ctx) override { ... }
//   };
//   env.FromSource(Countdown(), "countdown");
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include <sluice/core/collector.h>
#include <sluice/core/runtime_context.h>

namespace sluice {
namespace internal {
class TaskServices;  // runtime services for readers implemented inside Sluice (src/)
}  // namespace internal

// Handed to Source::CreateReader. Thread-safe: Wake() may be called from any thread.
class SourceContext {
 public:
  SourceContext(RuntimeContext runtime, internal::TaskServices* services)
      : runtime_(std::move(runtime)), services_(services) {}

  const RuntimeContext& runtime() const { return runtime_; }
  int subtask_index() const { return runtime_.subtask_index; }
  int parallelism() const { return runtime_.parallelism; }

  // Asks the runtime to poll the reader again soon. For readers fed by another thread or by I/O
  // completions after they answered kNothingAvailable.
  void Wake() const;

  internal::TaskServices* services() const { return services_; }

 private:
  RuntimeContext runtime_;
  internal::TaskServices* services_;
};

struct PollResult {
  enum class Kind {
    kMoreAvailable,     // poll again right away
    kNothingAvailable,  // poll again after `retry_after`, or earlier when the reader calls Wake()
    kEndOfInput,        // this reader is exhausted; it is not polled again
  };
  Kind kind = Kind::kMoreAvailable;
  absl::Duration retry_after = absl::InfiniteDuration();

  static PollResult More() { return {Kind::kMoreAvailable, absl::ZeroDuration()}; }
  static PollResult NothingUntil(absl::Duration retry_after) {
    return {Kind::kNothingAvailable, retry_after};
  }
  static PollResult WaitForWake() { return {Kind::kNothingAvailable, absl::InfiniteDuration()}; }
  static PollResult End() { return {Kind::kEndOfInput, absl::ZeroDuration()}; }
};

// One parallel instance of a source. Used by a single thread at a time.
//
// Splits: a reader that reads several splits (partitions, shards, files) emits the records of
// each through its own output and releases a split when it is finished:
//
//   Collector<T>& part = out.ForSplit("clicks-3");    // once per run of records of the split
//   part.Collect(record);                              // or CollectWithTimestamp(record, ts)
//   out.ReleaseSplit("clicks-3");                      // read to its end, or handed away
//
// With FromSource(source, strategy) the strategy then runs per split: one watermark generator
// (with its own idleness) per split, and the subtask's watermark is the minimum over its active
// splits; a released split no longer holds it back; when all splits are idle the subtask is idle.
// Without a strategy, or for readers that never call ForSplit, everything goes through `out`.
template <typename T>
class SourceReader {
 public:
  virtual ~SourceReader() = default;
  // Emits at most about `max_records` records into `out` and says what to do next. An error
  // fails the job with that status.
  virtual absl::StatusOr<PollResult> PollNext(Collector<T>& out, int max_records) = 0;
  // Called once when the reader will not be polled again (end of input, failure or cancellation).
  // Must release blocking resources promptly.
  virtual void Close() {}

  // --- Checkpoints (docs/checkpointing.md) ---------------------------------------------------------
  // The reader's position after everything it emitted so far (file offset, index, sequence
  // numbers), taken between two PollNext calls when checkpoint `id` starts. A source that cannot
  // resume keeps the default, and checkpointing a job that reads it fails with this message.
  virtual absl::StatusOr<std::string> SnapshotState(int64_t /*id*/) {
    return absl::UnimplementedError("this source does not support checkpoints");
  }
  // Called once, before the first PollNext, when the job resumes from a checkpoint: the bytes
  // SnapshotState returned for this subtask. The reader continues right after that position.
  virtual absl::Status RestoreState(std::string_view /*state*/) {
    return absl::UnimplementedError("this source cannot resume from a checkpoint");
  }
  // Called instead of RestoreState when the job resumes at another parallelism than the one it
  // was checkpointed with: the states of every old subtask (in old subtask order). A reader whose
  // positions are per partition or shard takes those it owns at the new parallelism (as Flink's
  // Kafka and Kinesis sources). The default cannot, and the job fails to start, saying so.
  virtual absl::Status RestoreRescaled(const std::vector<std::string>& /*old_states*/) {
    return absl::UnimplementedError("this source cannot resume at another parallelism");
  }
  // Checkpoint `id` is complete (for example: commit consumed offsets back for monitoring).
  virtual void NotifyCheckpointComplete(int64_t /*id*/) {}
};

template <typename T>
class Source {
 public:
  using value_type = T;
  virtual ~Source() = default;
  // A bounded source ends by itself; a job whose sources are all bounded can run in batch mode.
  virtual bool IsBounded() const = 0;
  // The largest parallelism this source supports (1 for non-parallel sources).
  virtual int MaxParallelism() const { return 1 << 15; }
  // Creates the reader of subtask `ctx.subtask_index()`. Called on the thread that calls
  // Execute()/ExecuteAsync(), while the job is wired and before any record flows; an error (a
  // missing file, a bad option) is returned by Execute(). Must not call ctx.Wake(): do blocking
  // or asynchronous work (connecting a socket) on the first PollNext instead.
  virtual absl::StatusOr<std::unique_ptr<SourceReader<T>>> CreateReader(
      const SourceContext& ctx) = 0;
  // A short description used in the default operator name ("Source: <description>").
  virtual std::string Describe() const { return "custom"; }
};

}  // namespace sluice
