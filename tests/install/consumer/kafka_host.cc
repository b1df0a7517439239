// A host program linking only the installed sluice::kafka (built by install_test.sh against the
// installed prefix): one job writes 100 records and an end marker to a topic with KafkaSink, a
// second job reads them back with KafkaSource (the end marker ends the partition, hence the job)
// and the program compares them. The broker is librdkafka's mock cluster (kafka_mock_cluster).
//
//   kafka_host <bootstrap servers> <topic with one partition>
//
// Prints one line per job and exits 0, or names what is wrong and exits 1.
#include <sluice/connectors/kafka.h>
#include <sluice/sluice.h>

#include <iostream>
#include <string>
#include <string_view>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: kafka_host <bootstrap servers> <topic>\n";
    return 2;
  }
  const std::string bootstrap = argv[1];
  const std::string topic = argv[2];
  std::vector<std::string> records;
  for (int i = 0; i < 100; ++i) records.push_back("record-" + std::to_string(i));

  {
    std::vector<std::string> with_end = records;
    with_end.push_back("END");
    sluice::StreamEnvironment env({.parallelism = 1});
    env.FromCollection(with_end).SinkTo(
        sluice::KafkaSink<std::string>({.bootstrap_servers = bootstrap, .topic = topic}));
    absl::Status status = env.Execute("kafka-sink-host");
    if (!status.ok()) {
      std::cerr << "kafka_host: sink job failed: " << status << "\n";
      return 1;
    }
    std::cout << "kafka: sink wrote " << with_end.size() << " records"
              << "\n";
  }
  {
    sluice::KafkaSourceOptions options{.bootstrap_servers = bootstrap, .topics = {topic}};
    options.starting_offsets = sluice::KafkaStartingOffsets::kEarliest;
    options.is_end_of_stream = [](std::string_view value) { return value == "END"; };
    sluice::StreamEnvironment env({.parallelism = 1});
    sluice::CollectSink<std::string> out;
    env.FromSource(sluice::KafkaSource(options)).SinkTo(out);
    absl::Status status = env.Execute("kafka-source-host");
    if (!status.ok()) {
      std::cerr << "kafka_host: source job failed: " << status << "\n";
      return 1;
    }
    if (out.values() != records) {
      std::cerr << "kafka_host: source read " << out.size() << " records, not the 100 written\n";
      return 1;
    }
    std::cout << "kafka: source read " << out.size() << " records back in order"
              << "\n";
  }
  return 0;
}
