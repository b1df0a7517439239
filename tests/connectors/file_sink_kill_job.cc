// The job of file_sink_kill_test: a rate-limited sequence → (rebalanced) FileSink or CsvFileSink at
// the given parallelism, checkpoints every 50 ms; resumes from its checkpoint directory when it
// holds a complete checkpoint.
//
//   file_sink_kill_job <work dir> <text|csv> <sink parallelism> <events> <events per second>
//
// Line i is "event <i>" (text) or `<i>,"a,<i>"` (CSV, after the header `id,label`).
#include <sluice/sluice.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "checkpoint/checkpoint_storage.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr,
                 "usage: file_sink_kill_job <dir> <text|csv> <parallelism> <events> <events/s>\n");
    return 2;
  }
  const std::string dir = argv[1];
  const std::string kind = argv[2];
  const int parallelism = std::atoi(argv[3]);
  const int64_t events = std::atoll(argv[4]);
  const double rate = std::atof(argv[5]);

  sluice::RuntimeOptions options;
  options.parallelism = parallelism;
  options.checkpointing.interval = absl::Milliseconds(50);
  options.checkpointing.directory = dir + "/checkpoints";
  options.checkpointing.retained = 2;
  auto storage = sluice::internal::CheckpointStorage::Open({dir + "/checkpoints", 2});
  if (storage.ok() && !(*storage)->CompletedIds().empty()) {
    options.restore_from = dir + "/checkpoints";
  }
  sluice::StreamEnvironment env(options);
  auto numbers =
      env.FromSource(sluice::GeneratorSource([](int64_t i) { return i; },
                                             {.count = events, .records_per_second = rate}))
          .SetParallelism(1)
          .Rebalance()
          .Map([](int64_t i) { return i; });
  // kOverwrite: a fresh run replaces the output; a resumed one keeps what its checkpoint recorded.
  if (kind == "csv") {
    numbers.SinkTo(sluice::CsvFileSink<int64_t>(
        dir + "/out",
        [](const int64_t& i) {
          return std::vector<std::string>{std::to_string(i), "a," + std::to_string(i)};
        },
        {.header = {"id", "label"}, .write_mode = sluice::WriteMode::kOverwrite}));
  } else {
    numbers.SinkTo(sluice::FileSink<int64_t>(
        dir + "/out", [](const int64_t& i) { return "event " + std::to_string(i); },
        {.write_mode = sluice::WriteMode::kOverwrite, .buffer_bytes = 4096}));
  }
  absl::Status status = env.Execute("file sink kill job");
  if (!status.ok()) {
    std::fprintf(stderr, "file_sink_kill_job: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
