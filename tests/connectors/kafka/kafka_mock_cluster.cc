// A librdkafka mock cluster in its own process, for the Kafka connector tests.
//
//   kafka_mock_cluster [topic:partitions ...]
//
// Starts a 1-broker mock cluster on 127.0.0.1 (owned by a dummy producer handle), creates the
// topics, prints the bootstrap servers on one line of stdout and then serves commands read from
// stdin, one per line, answering "ok" or "error: ..." on stdout:
//   topic <name> <partitions>                 create a topic
//   error <api key> <error code> [<count>]    the next <count> (1) requests of that API fail
//   clear <api key>                           drop the errors still queued for that API
//   topic_error <name> <error code>           metadata answers this error for the topic
// It exits when stdin closes (the test process went away) or on SIGTERM/SIGKILL.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
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
    std::string arg = argv[i];
    size_t colon = arg.rfind(':');
    int partitions = colon == std::string::npos ? 1 : std::atoi(arg.c_str() + colon + 1);
    std::string name = arg.substr(0, colon);
    if (rd_kafka_mock_topic_create(mc, name.c_str(), partitions, 1)) {
      std::fprintf(stderr, "kafka_mock_cluster: cannot create topic %s\n", name.c_str());
      return 1;
    }
  }
  std::cout << rd_kafka_mock_cluster_bootstraps(mc) << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    if (cmd == "topic") {
      std::string name;
      int partitions = 1;
      in >> name >> partitions;
      rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, name.c_str(), partitions, 1);
      std::cout << (e ? std::string("error: ") + rd_kafka_err2str(e) : "ok") << std::endl;
    } else if (cmd == "error") {
      int api = 0, code = 0, count = 1;
      in >> api >> code;
      if (!(in >> count)) count = 1;
      for (int i = 0; i < count; ++i) {
        rd_kafka_mock_push_request_errors(mc, static_cast<int16_t>(api), 1,
                                          static_cast<rd_kafka_resp_err_t>(code));
      }
      std::cout << "ok" << std::endl;
    } else if (cmd == "clear") {
      int api = 0;
      in >> api;
      rd_kafka_mock_clear_request_errors(mc, static_cast<int16_t>(api));
      std::cout << "ok" << std::endl;
    } else if (cmd == "topic_error") {
      std::string name;
      int code = 0;
      in >> name >> code;
      rd_kafka_mock_topic_set_error(mc, name.c_str(), static_cast<rd_kafka_resp_err_t>(code));
      std::cout << "ok" << std::endl;
    } else if (cmd == "quit") {
      break;
    } else if (!cmd.empty()) {
      std::cout << "error: unknown command " << cmd << std::endl;
    }
  }
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}
