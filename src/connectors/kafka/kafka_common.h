// Helpers shared by the Kafka source and sink: librdkafka configuration and error → Status.
#pragma once

#include <librdkafka/rdkafka.h>

#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace sluice::internal::kafka {

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

struct TopicPartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using PartitionListPtr =
    std::unique_ptr<rd_kafka_topic_partition_list_t, TopicPartitionListDeleter>;

inline absl::Status SetConf(rd_kafka_conf_t* conf, const std::string& name,
                            const std::string& value, const std::string& what) {
  char err[512];
  if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": librdkafka property '", name, "'='", value, "': ", err));
  }
  return absl::OkStatus();
}

inline absl::StatusOr<ConfPtr> MakeConf(const std::string& bootstrap,
                                        const std::map<std::string, std::string>& fixed,
                                        const std::map<std::string, std::string>& user,
                                        const std::string& what) {
  ConfPtr conf(rd_kafka_conf_new());
  absl::Status s = SetConf(conf.get(), "bootstrap.servers", bootstrap, what);
  if (!s.ok()) return s;
  for (const auto& [k, v] : user) {
    s = SetConf(conf.get(), k, v, what);
    if (!s.ok()) return s;
  }
  for (const auto& [k, v] : fixed) {
    s = SetConf(conf.get(), k, v, what);
    if (!s.ok()) return s;
  }
  return conf;
}

inline absl::StatusCode CodeFor(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
      return absl::StatusCode::kNotFound;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
      return absl::StatusCode::kDeadlineExceeded;
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
      return absl::StatusCode::kFailedPrecondition;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
      return absl::StatusCode::kPermissionDenied;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return absl::StatusCode::kInvalidArgument;
    default:
      return absl::StatusCode::kUnavailable;
  }
}

// "<where>: <ERR_NAME>: <description>" with a code matching the error.
inline absl::Status KafkaError(const std::string& where, rd_kafka_resp_err_t err,
                               const std::string& detail = "") {
  return absl::Status(CodeFor(err), absl::StrCat(where, ": ", rd_kafka_err2name(err), ": ",
                                                 detail.empty() ? rd_kafka_err2str(err) : detail));
}

// Takes ownership of `error` (may be null → OK).
inline absl::Status KafkaError(const std::string& where, rd_kafka_error_t* error) {
  if (error == nullptr) return absl::OkStatus();
  rd_kafka_resp_err_t code = rd_kafka_error_code(error);
  std::string detail = rd_kafka_error_string(error);
  bool fatal = rd_kafka_error_is_fatal(error);
  rd_kafka_error_destroy(error);
  absl::Status s = KafkaError(where, code, detail);
  if (fatal) {
    return absl::Status(s.code(), absl::StrCat(s.message(), " (fatal)"));
  }
  return s;
}

inline uint64_t Fnv1a64(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

inline std::string SplitId(const std::string& topic, int32_t partition) {
  return absl::StrCat(topic, "-", partition);
}

}  // namespace sluice::internal::kafka
