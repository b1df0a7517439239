// The job of kinesis_kill_test: a Kinesis stream (parallelism 2, checkpointed sequence numbers)
// → an exactly-once file sink, with checkpoints every 50 ms; it resumes from its checkpoint
// directory when that holds one, and ends when every shard has reached its "END" record.
//
//   kinesis_kill_job <endpoint> <stream> <work dir>
#include <sluice/connectors/kinesis.h>
#include <sluice/sluice.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "checkpoint/checkpoint_storage.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: kinesis_kill_job <endpoint> <stream> <dir>\n");
    return 2;
  }
  const std::string endpoint = argv[1];
  const std::string stream = argv[2];
  const std::string dir = argv[3];

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
  sluice::KinesisSourceOptions source;
  source.connection.endpoint = endpoint;
  source.connection.region = "us-east-1";
  source.connection.access_key_id = "AKIDEXAMPLE";
  source.connection.secret_access_key = "secret";
  source.stream_name = stream;
  source.initial_position = sluice::KinesisStartingPosition::kTrimHorizon;
  source.records_per_request = 25;  // many small reads and polls: kills land between them
  source.queue_capacity = 50;
  source.poll_interval = absl::Milliseconds(20);
  source.shard_discovery_interval = absl::Milliseconds(500);
  source.is_end_of_stream = [](std::string_view data) { return data == "END"; };
  env.FromSource(sluice::KinesisSource(source))
      .Map([](const std::string& s) {
        // About a second per uninterrupted run, so that kills land mid-stream.
        std::this_thread::sleep_for(std::chrono::microseconds(400));
        return "got " + s;
      })
      .SinkTo(sluice::ExactlyOnceFileSink<std::string>(
          {.directory = dir + "/out", .max_part_bytes = 4096}))
      // One sink subtask: it ends (and commits at end of input) only when both readers have
      // ended. A sink subtask that ended while the other still ran would have committed without a
      // checkpoint (none is taken once a task finished, as in Flink before 1.14), and a kill then
      // would replay its records from the last checkpoint: a runtime limit, not the source's.
      .SetParallelism(1);
  absl::Status status = env.Execute("kinesis-kill-job");
  if (!status.ok()) {
    std::fprintf(stderr, "kinesis_kill_job: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
