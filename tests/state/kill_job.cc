// The job of kill_test: a generated sequence of events → keyed 1-second event-time windows
// counting per key (timers) plus a running total per key in ValueState → an exactly-once file
// sink. Checkpoints every 50 ms; resumes from the checkpoint directory when it holds one.
//
//   kill_job <work dir> <hashmap|rocksdb> <events> <events per second> [throw]
//
// With `throw`, the sink's user code throws during the second checkpoint of the process (once per
// process, leaving a marker file `threw-<pid>` in the work directory); the restart strategy
// restarts the job in-process from the latest complete checkpoint.
#include <sluice/sluice.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "checkpoint/checkpoint_storage.h"

namespace {

struct Event {
  int64_t key;
  int64_t value;
  sluice::Timestamp time;
};

class Total final : public sluice::KeyedProcessFunction<int64_t, Event, std::string> {
 public:
  void Open(const sluice::RuntimeContext& ctx) override {
    total_ = ctx.GetState(sluice::ValueStateDescriptor<int64_t>("total"));
    per_second_ = ctx.GetMapState(sluice::MapStateDescriptor<int64_t, int64_t>("per-second"));
  }
  void ProcessElement(const Event& e, Context& ctx, sluice::Collector<std::string>& out) override {
    const int64_t t = total_.Value().value_or(0) + e.value;
    total_.Update(t);
    const int64_t second = e.time / 1000;
    per_second_.Put(second, per_second_.Get(second).value_or(0) + e.value);
    // An event-time timer per key and second: fires once when the watermark passes it.
    ctx.RegisterEventTimeTimer(second * 1000 + 999);
    if (e.value % 97 == 0) out.Collect("total " + std::to_string(e.key) + " " + std::to_string(t));
  }
  void OnTimer(sluice::Timestamp time, Context& ctx, sluice::Collector<std::string>& out) override {
    const int64_t second = time / 1000;
    out.Collect("second " + std::to_string(ctx.CurrentKey()) + " " + std::to_string(second) + " " +
                std::to_string(per_second_.Get(second).value_or(-1)));
    per_second_.Remove(second);
  }

 private:
  sluice::ValueState<int64_t> total_;
  sluice::MapState<int64_t, int64_t> per_second_;
};

// Delegates to the exactly-once file sink; its SnapshotState (user code, run during a checkpoint)
// throws once per process, at the process's second checkpoint.
std::atomic<int> g_snapshots{0};

class ThrowingSink final : public sluice::Sink<std::string> {
 public:
  ThrowingSink(sluice::ExactlyOnceFileSink<std::string> inner, std::string dir)
      : inner_(std::move(inner)), dir_(std::move(dir)) {}
  absl::StatusOr<std::unique_ptr<sluice::SinkWriter<std::string>>> CreateWriter(
      const sluice::RuntimeContext& ctx) override {
    auto inner = inner_.CreateWriter(ctx);
    if (!inner.ok()) return inner.status();
    return std::unique_ptr<sluice::SinkWriter<std::string>>(new Writer(std::move(*inner), dir_));
  }
  int MaxParallelism() const override { return inner_.MaxParallelism(); }
  std::string Describe() const override { return "throwing " + inner_.Describe(); }

 private:
  class Writer final : public sluice::SinkWriter<std::string> {
   public:
    Writer(std::unique_ptr<sluice::SinkWriter<std::string>> inner, std::string dir)
        : inner_(std::move(inner)), dir_(std::move(dir)) {}
    absl::Status Write(std::vector<std::string>& records) override {
      return inner_->Write(records);
    }
    absl::Status Finish() override { return inner_->Finish(); }
    void Close() override { inner_->Close(); }
    absl::StatusOr<std::string> SnapshotState(int64_t id) override {
      if (g_snapshots.fetch_add(1) == 1) {
        std::ofstream(dir_ + "/threw-" + std::to_string(getpid())) << id << "\n";
        throw std::runtime_error("user failure during checkpoint " + std::to_string(id));
      }
      return inner_->SnapshotState(id);
    }
    absl::Status NotifyCheckpointComplete(int64_t id) override {
      return inner_->NotifyCheckpointComplete(id);
    }
    absl::Status RestoreState(const std::vector<std::string>& states) override {
      return inner_->RestoreState(states);
    }

   private:
    std::unique_ptr<sluice::SinkWriter<std::string>> inner_;
    std::string dir_;
  };
  sluice::ExactlyOnceFileSink<std::string> inner_;
  std::string dir_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 && !(argc == 6 && std::string(argv[5]) == "throw")) {
    std::fprintf(stderr, "usage: kill_job <dir> <hashmap|rocksdb> <events> <events/s> [throw]\n");
    return 2;
  }
  const bool throw_in_checkpoint = argc == 6;
  const std::string dir = argv[1];
  const std::string backend = argv[2];
  const int64_t events = std::atoll(argv[3]);
  const double rate = std::atof(argv[4]);

  sluice::RuntimeOptions options;
  options.parallelism = 2;
  options.execution_mode = sluice::ExecutionMode::kStreaming;
  options.state_backend = backend == "rocksdb" ? sluice::StateBackendKind::kRocksDb
                                               : sluice::StateBackendKind::kHashMap;
  options.rocksdb.local_dir = dir + "/rocksdb";
  options.checkpointing.interval = absl::Milliseconds(50);
  options.checkpointing.directory = dir + "/checkpoints";
  options.checkpointing.retained = 2;
  if (throw_in_checkpoint) {
    options.restart_strategy = sluice::RestartStrategy::FixedDelay(3, absl::Milliseconds(10));
  }
  auto storage = sluice::internal::CheckpointStorage::Open({dir + "/checkpoints", 2});
  if (storage.ok() && !(*storage)->CompletedIds().empty()) {
    options.restore_from = dir + "/checkpoints";
  }
  sluice::StreamEnvironment env(options);
  sluice::GeneratorOptions gen{.count = events, .records_per_second = rate};
  auto windows =
      env.FromSource(
             sluice::GeneratorSource(
                 [](int64_t i) {
                   return Event{i % 13, i, i * 7};
                 },
                 gen),
             sluice::WatermarkStrategy<Event>::ForBoundedOutOfOrderness(absl::Milliseconds(100))
                 .WithTimestampAssigner([](const Event& e) { return e.time; }))
          .SetParallelism(1);  // one source subtask: every key sees its events in one order
  auto keyed = windows.KeyBy([](const Event& e) { return e.key; });
  // Per key and second: the number of events (a window with allowed lateness, timers, state).
  auto counts =
      windows.Map([](const Event& e) { return std::pair<int64_t, int64_t>(e.key, 1); })
          .KeyBy([](const std::pair<int64_t, int64_t>& p) { return p.first; })
          .Window(sluice::TumblingEventTimeWindows::Of(absl::Seconds(1)))
          .AllowedLateness(absl::Milliseconds(200))
          .Reduce([](std::pair<int64_t, int64_t> a, const std::pair<int64_t, int64_t>& b) {
            a.second += b.second;
            return a;
          })
          .Map([](const std::pair<int64_t, int64_t>& p) {
            return "count " + std::to_string(p.first) + " " + std::to_string(p.second);
          });
  sluice::ExactlyOnceFileSink<std::string> sink(
      {.directory = dir + "/out", .max_part_bytes = 4096});
  auto all = keyed.Process(Total()).Union(counts);
  if (throw_in_checkpoint) {
    std::filesystem::create_directories(dir);
    all.SinkTo(ThrowingSink(std::move(sink), dir));
  } else {
    all.SinkTo(std::move(sink));
  }
  absl::Status status = env.Execute("kill-job");
  if (!status.ok()) {
    std::fprintf(stderr, "kill_job: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
