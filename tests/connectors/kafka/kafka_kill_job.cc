// The job of kafka_kill_test: a Kafka topic (explicit assignment, parallelism 2, checkpointed
// offsets) → an exactly-once file sink, with checkpoints every 50 ms; it resumes from its
// checkpoint directory when that holds one, and ends when every partition has reached its "END"
// record.
//
//   kafka_kill_job <bootstrap servers> <topic> <work dir>
#include <sluice/connectors/kafka.h>
#include <sluice/sluice.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "checkpoint/checkpoint_storage.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: kafka_kill_job <bootstrap> <topic> <dir>\n");
    return 2;
  }
  const std::string bootstrap = argv[1];
  const std::string topic = argv[2];
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
  sluice::KafkaSourceOptions source{.bootstrap_servers = bootstrap, .topics = {topic}};
  source.poll_interval = absl::Milliseconds(5);
  source.max_records_per_poll = 20;
  source.is_end_of_stream = [](std::string_view value) { return value == "END"; };
  // Small fetches: many polls, so kills land between them.
  source.properties = {{"message.max.bytes", "4096"},
                       {"fetch.max.bytes", "4096"},
                       {"max.partition.fetch.bytes", "2048"}};
  env.FromSource(sluice::KafkaSource(source))
      .Map([](const std::string& s) {
        // About a second per uninterrupted run, so that kills land mid-stream.
        std::this_thread::sleep_for(std::chrono::microseconds(1000));
        return "got " + s;
      })
      .SinkTo(sluice::ExactlyOnceFileSink<std::string>(
          {.directory = dir + "/out", .max_part_bytes = 4096}))
      // One sink subtask, so that it ends only when both readers have ended (a sink subtask that
      // ended early commits without a checkpoint: the runtime's limit for bounded jobs).
      .SetParallelism(1);
  absl::Status status = env.Execute("kafka-kill-job");
  if (!status.ok()) {
    std::fprintf(stderr, "kafka_kill_job: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
