// The job of firehose_kill_test: a rate-limited generator of "r<i>" → FirehoseSink (parallelism
// 2, gzip, newline-delimited, 100 ms interval hint) with a transformation that drops every record
// with i % 50 == 0 and fails every other record with i % 97 == 0. Checkpoints every 50 ms;
// resumes from the checkpoint directory when it holds a complete checkpoint.
//
//   firehose_kill_job <work dir> <events> <events per second>
#include <sluice/connectors/firehose_sink.h>
#include <sluice/sluice.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "checkpoint/checkpoint_storage.h"

namespace {

std::vector<sluice::FirehoseTransformResult> Transform(
    std::span<const sluice::FirehoseRecord> batch) {
  std::vector<sluice::FirehoseTransformResult> out;
  out.reserve(batch.size());
  for (const sluice::FirehoseRecord& r : batch) {
    int64_t i = 0;
    std::from_chars(r.data.data() + 1, r.data.data() + r.data.size(), i);
    sluice::FirehoseTransformResult res{.record_id = r.record_id};
    if (i % 50 == 0) {
      res.result = sluice::FirehoseResult::kDropped;
    } else if (i % 97 == 0) {
      res.result = sluice::FirehoseResult::kProcessingFailed;
      res.error_message = "multiple of 97";
    } else {
      res.data = std::string(r.data);
    }
    out.push_back(std::move(res));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: firehose_kill_job <dir> <events> <events/s>\n");
    return 2;
  }
  const std::string dir = argv[1];
  const int64_t events = std::atoll(argv[2]);
  const double rate = std::atof(argv[3]);

  sluice::RuntimeOptions options;
  options.parallelism = 2;
  options.execution_mode = sluice::ExecutionMode::kStreaming;
  options.checkpointing.interval = absl::Milliseconds(50);
  options.checkpointing.directory = dir + "/checkpoints";
  options.checkpointing.retained = 2;
  auto storage = sluice::internal::CheckpointStorage::Open({dir + "/checkpoints", 2});
  if (storage.ok() && !(*storage)->CompletedIds().empty()) {
    options.restore_from = dir + "/checkpoints";
  }
  sluice::StreamEnvironment env(options);
  sluice::GeneratorOptions gen{.count = events, .records_per_second = rate};
  env.FromSource(sluice::GeneratorSource([](int64_t i) { return "r" + std::to_string(i); }, gen))
      .SetParallelism(1)
      .SinkTo(sluice::FirehoseSink<std::string>({.directory = dir + "/out",
                                                 .stream_name = "kill",
                                                 .prefix = "data/",
                                                 .buffer_size_mib = 1,
                                                 .buffer_interval = absl::Milliseconds(100),
                                                 .compression = sluice::FirehoseCompression::kGzip,
                                                 .newline_delimiter = true,
                                                 .transformation = Transform}));
  absl::Status status = env.Execute("firehose-kill-job");
  if (!status.ok()) {
    std::fprintf(stderr, "firehose_kill_job: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
