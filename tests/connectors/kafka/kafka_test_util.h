// Test helpers for the Kafka connector: a librdkafka mock cluster in a child process
// (kafka_mock_cluster), and a plain producer / consumer to put and read records.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sluice::kafka_test {

// The mock cluster process. Commands go to its stdin; it exits when stdin closes.
class MockCluster {
 public:
  // topics: "name:partitions".
  explicit MockCluster(const std::vector<std::string>& topics) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      std::vector<std::string> args = {KAFKA_MOCK_CLUSTER};
      args.insert(args.end(), topics.begin(), topics.end());
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = fdopen(in[1], "w");
    from_ = fdopen(out[0], "r");
    bootstrap_ = ReadLine();
  }
  ~MockCluster() {
    if (to_ != nullptr) fclose(to_);
    if (from_ != nullptr) fclose(from_);
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  bool ok() const { return !bootstrap_.empty(); }
  const std::string& bootstrap() const { return bootstrap_; }

  // "ok" or "error: ...".
  std::string Command(const std::string& line) {
    fprintf(to_, "%s\n", line.c_str());
    fflush(to_);
    return ReadLine();
  }
  // The next `count` requests of `api_key` fail with `error`.
  void InjectErrors(int api_key, rd_kafka_resp_err_t error, int count = 1) {
    ASSERT_EQ(Command(absl::StrCat("error ", api_key, " ", static_cast<int>(error), " ", count)),
              "ok");
  }

 private:
  std::string ReadLine() {
    if (from_ == nullptr) return "";
    char buf[4096];
    if (fgets(buf, sizeof(buf), from_) == nullptr) return "";
    std::string s(buf);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }

  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
  std::string bootstrap_;
};

inline rd_kafka_t* NewClient(rd_kafka_type_t type, const std::string& bootstrap,
                             const std::map<std::string, std::string>& props = {}) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      ADD_FAILURE() << k << ": " << err;
    }
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof(err));
  if (rk == nullptr) ADD_FAILURE() << "rd_kafka_new: " << err;
  return rk;
}

struct Record {
  std::optional<std::string> key;
  std::string value;
  int32_t partition = RD_KAFKA_PARTITION_UA;
  int64_t timestamp_ms = 0;  // 0: now
};

// Produces `records` and waits until every one is acknowledged.
inline void Produce(const std::string& bootstrap, const std::string& topic,
                    const std::vector<Record>& records) {
  rd_kafka_t* rk = NewClient(RD_KAFKA_PRODUCER, bootstrap, {{"linger.ms", "5"}});
  ASSERT_NE(rk, nullptr);
  for (const Record& r : records) {
    rd_kafka_resp_err_t err;
    do {
      err = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(r.partition),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
          RD_KAFKA_V_KEY((r.key ? r.key->data() : nullptr), (r.key ? r.key->size() : 0)),
          RD_KAFKA_V_TIMESTAMP(r.timestamp_ms), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) rd_kafka_poll(rk, 10);
    } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
    ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
  }
  ASSERT_EQ(rd_kafka_flush(rk, 20000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(rk);
}

struct Consumed {
  std::string key;
  std::string value;
  int32_t partition = 0;
  int64_t offset = 0;
};

// Reads every partition of `topic` from the beginning until `expected` records arrived (or
// until `quiet` passed without a record once `expected` is reached / `timeout` overall).
inline std::vector<Consumed> ReadTopic(const std::string& bootstrap, const std::string& topic,
                                       size_t expected, absl::Duration timeout = absl::Seconds(15),
                                       bool read_committed = false,
                                       absl::Duration quiet = absl::Milliseconds(300)) {
  rd_kafka_t* rk =
      NewClient(RD_KAFKA_CONSUMER, bootstrap,
                {{"group.id", absl::StrCat("reader-", topic, "-", absl::ToUnixNanos(absl::Now()))},
                 {"enable.auto.commit", "false"},
                 {"isolation.level", read_committed ? "read_committed" : "read_uncommitted"}});
  std::vector<Consumed> out;
  if (rk == nullptr) return out;
  rd_kafka_poll_set_consumer(rk);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  int partitions = 0;
  if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    partitions = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
  }
  rd_kafka_topic_destroy(rkt);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  absl::Time deadline = absl::Now() + timeout;
  absl::Time last = absl::Now();
  while (absl::Now() < deadline) {
    if (out.size() >= expected && absl::Now() - last > quiet) break;
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 50);
    if (m == nullptr) continue;
    if (!m->err) {
      Consumed c;
      if (m->key) c.key.assign(static_cast<const char*>(m->key), m->key_len);
      if (m->payload) c.value.assign(static_cast<const char*>(m->payload), m->len);
      c.partition = m->partition;
      c.offset = m->offset;
      out.push_back(std::move(c));
      last = absl::Now();
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  return out;
}

inline std::vector<std::string> Values(const std::vector<Consumed>& records) {
  std::vector<std::string> v;
  for (const Consumed& c : records) v.push_back(c.value);
  return v;
}

// A producer kept open, for tests that produce while a job runs (Produce() makes a new client per
// call). Send() waits until the records are acknowledged.
class TestProducer {
 public:
  explicit TestProducer(const std::string& bootstrap)
      : rk_(NewClient(RD_KAFKA_PRODUCER, bootstrap, {{"linger.ms", "1"}})) {}
  ~TestProducer() {
    if (rk_ != nullptr) rd_kafka_destroy(rk_);
  }
  TestProducer(const TestProducer&) = delete;
  TestProducer& operator=(const TestProducer&) = delete;

  void Send(const std::string& topic, const std::vector<Record>& records) {
    ASSERT_NE(rk_, nullptr);
    for (const Record& r : records) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(r.partition),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
          RD_KAFKA_V_KEY((r.key ? r.key->data() : nullptr), (r.key ? r.key->size() : 0)),
          RD_KAFKA_V_TIMESTAMP(r.timestamp_ms), RD_KAFKA_V_END);
      ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
    }
    ASSERT_EQ(rd_kafka_flush(rk_, 20000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

 private:
  rd_kafka_t* rk_;
};

// The offsets committed to `group` for partitions 0 .. partitions-1 of `topic` (-1001, librdkafka's
// RD_KAFKA_OFFSET_INVALID, where there is none). Does not join the group.
inline std::vector<int64_t> CommittedOffsets(const std::string& bootstrap, const std::string& group,
                                             const std::string& topic, int partitions) {
  std::vector<int64_t> out(static_cast<size_t>(partitions), RD_KAFKA_OFFSET_INVALID);
  rd_kafka_t* rk = NewClient(RD_KAFKA_CONSUMER, bootstrap,
                             {{"group.id", group}, {"enable.auto.commit", "false"}});
  if (rk == nullptr) return out;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  rd_kafka_resp_err_t err = rd_kafka_committed(rk, list, 10000);
  EXPECT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
  for (int i = 0; i < list->cnt; ++i) {
    out[static_cast<size_t>(list->elems[i].partition)] = list->elems[i].offset;
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  return out;
}

// What rd_kafka_offsets_for_times answers for `timestamp_ms` on partition `partition` of `topic`:
// the offset (-1: none), or the error.
inline std::pair<int64_t, rd_kafka_resp_err_t> OffsetForTime(const std::string& bootstrap,
                                                             const std::string& topic,
                                                             int32_t partition,
                                                             int64_t timestamp_ms) {
  rd_kafka_t* rk = NewClient(RD_KAFKA_CONSUMER, bootstrap, {{"group.id", "offset-for-time"}});
  if (rk == nullptr) return {-1, RD_KAFKA_RESP_ERR__FAIL};
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = timestamp_ms;
  rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, list, 10000);
  std::pair<int64_t, rd_kafka_resp_err_t> result = {list->elems[0].offset,
                                                    err ? err : list->elems[0].err};
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  return result;
}

}  // namespace sluice::kafka_test
