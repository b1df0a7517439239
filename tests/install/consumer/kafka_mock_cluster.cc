// Test harness for kafka_host, not a Sluice program: a one-broker librdkafka mock cluster on
// 127.0.0.1 with the topics given as "name:partitions". Prints the bootstrap servers on one line
// of stdout and runs until its stdin closes.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (rk == nullptr) {
    std::fprintf(stderr, "kafka_mock_cluster: rd_kafka_new: %s\n", err);
    return 1;
  }
  rd_kafka_mock_cluster_t* mc = rd_kafka_mock_cluster_new(rk, 1);
  if (mc == nullptr) {
    std::fprintf(stderr, "kafka_mock_cluster: rd_kafka_mock_cluster_new failed\n");
    return 1;
  }
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t colon = arg.rfind(':');
    const int partitions = colon == std::string::npos ? 1 : std::atoi(arg.c_str() + colon + 1);
    if (rd_kafka_mock_topic_create(mc, arg.substr(0, colon).c_str(), partitions, 1)) {
      std::fprintf(stderr, "kafka_mock_cluster: cannot create topic %s\n", arg.c_str());
      return 1;
    }
  }
  std::cout << rd_kafka_mock_cluster_bootstraps(mc) << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}
