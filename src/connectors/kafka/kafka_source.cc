// KafkaSource's reader core: a librdkafka consumer polled with a zero timeout on the task's
// thread (librdkafka fetches on its own threads), partitions assigned explicitly or through a
// consumer group, positions (next offset per partition) checkpointed by Sluice and committed to
// the group when a checkpoint completes (monitoring only).
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

#include <sluice/connectors/kafka.h>

#include "connectors/kafka/kafka_common.h"

namespace sluice {

absl::Status KafkaSourceOptions::Validate() const {
  if (bootstrap_servers.empty()) {
    return absl::InvalidArgumentError("KafkaSourceOptions.bootstrap_servers: required");
  }
  if (topics.empty()) return absl::InvalidArgumentError("KafkaSourceOptions.topics: required");
  for (const std::string& t : topics) {
    if (t.empty() || t.find_first_of("\t\n") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("KafkaSourceOptions.topics: invalid topic name '", t, "'"));
    }
  }
  if (max_records_per_poll <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KafkaSourceOptions.max_records_per_poll: must be > 0, got ", max_records_per_poll));
  }
  if (poll_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("KafkaSourceOptions.poll_interval: must be > 0");
  }
  if (request_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("KafkaSourceOptions.request_timeout: must be > 0");
  }
  return absl::OkStatus();
}

namespace internal {

using TopicPartition = std::pair<std::string, int32_t>;

class KafkaSourceShared {
 public:
  // The lowest position known for `tp` (restored from any subtask's state, or handed over by a
  // reader that lost the partition in a rebalance), if any; consumes a hand-over.
  std::optional<int64_t> Take(const TopicPartition& tp) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = positions_.find(tp);
    if (it == positions_.end()) return std::nullopt;
    int64_t v = it->second;
    positions_.erase(it);
    return v;
  }
  // Keeps the minimum: a partition that moved between two subtasks' barriers appears in both
  // snapshots, and the lower position replays rather than loses (at-least-once).
  void Put(const TopicPartition& tp, int64_t next) {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, inserted] = positions_.emplace(tp, next);
    if (!inserted && next < it->second) it->second = next;
  }
  void Replace(const TopicPartition& tp, int64_t next) {
    std::lock_guard<std::mutex> lock(mu_);
    positions_[tp] = next;
  }

 private:
  std::mutex mu_;
  std::map<TopicPartition, int64_t> positions_;
};

std::shared_ptr<KafkaSourceShared> MakeKafkaSourceShared() {
  return std::make_shared<KafkaSourceShared>();
}

namespace {

using kafka::KafkaError;
using kafka::PartitionListPtr;

class ReaderCoreImpl final : public KafkaReaderCore {
 public:
  ReaderCoreImpl(KafkaSourceOptions options, const SourceContext& ctx, rd_kafka_t* rk,
                 std::shared_ptr<KafkaSourceShared> shared)
      : options_(std::move(options)),
        shared_(std::move(shared)),
        subtask_(ctx.subtask_index()),
        parallelism_(ctx.parallelism()),
        rk_(rk),
        timeout_ms_(static_cast<int>(absl::ToInt64Milliseconds(options_.request_timeout))) {
    what_ = absl::StrCat("Kafka source (topics ", absl::StrJoin(options_.topics, ","), ", subtask ",
                         subtask_, ")");
  }
  ~ReaderCoreImpl() override { Close(); }
  void SetHandle(rd_kafka_t* rk) { rk_ = rk; }

  static void RebalanceCb(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t* parts, void* opaque) {
    static_cast<ReaderCoreImpl*>(opaque)->OnRebalance(rk, err, parts);
  }

  absl::StatusOr<PollResult> Poll(std::vector<KafkaPartitionBatch>& out, int max_records) override {
    out.clear();
    if (rk_ == nullptr) return absl::FailedPreconditionError(what_ + ": polled after Close");
    if (!started_) {
      absl::Status s = Start();
      if (!s.ok()) return s;
      started_ = true;
    }
    if (!rebalance_error_.ok()) return rebalance_error_;
    // Partitions revoked in a rebalance since the last poll.
    for (const std::string& split : pending_releases_) {
      out.push_back(KafkaPartitionBatch{.split = split, .records = {}, .released = true});
    }
    pending_releases_.clear();
    // Partitions assigned since the last poll: announced (as empty runs) so that each holds the
    // watermark back from the start, before its first record (or until it is idle), as in Flink.
    for (const std::string& split : pending_assigns_) {
      out.push_back(KafkaPartitionBatch{.split = split, .records = {}, .released = false});
    }
    pending_assigns_.clear();
    int n = 0;
    max_records = std::min(max_records, options_.max_records_per_poll);
    while (n < max_records) {
      rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk_, 0);
      if (msg == nullptr) break;
      absl::Status s = Handle(msg, out, n);
      rd_kafka_message_destroy(msg);
      if (!s.ok()) return s;
      if (!rebalance_error_.ok()) return rebalance_error_;
    }
    if (options_.assignment == KafkaAssignment::kExplicit && options_.is_end_of_stream &&
        ended_.size() == owned_.size()) {
      return PollResult::End();
    }
    if (n > 0) return PollResult::More();
    return PollResult::NothingUntil(options_.poll_interval);
  }

  std::string Snapshot(int64_t checkpoint_id) override {
    std::string state;
    std::map<TopicPartition, int64_t> commit;
    for (const auto& [tp, next] : owned_) {
      absl::StrAppend(&state, tp.first, "\t", tp.second, "\t", ended_.contains(tp) ? "E" : "", next,
                      "\n");
      if (next >= 0) commit[tp] = next;
    }
    pending_commits_[checkpoint_id] = std::move(commit);
    return state;
  }

  absl::Status Restore(std::string_view state) override {
    for (absl::string_view line :
         absl::StrSplit(absl::string_view(state.data(), state.size()), '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> f = absl::StrSplit(line, '\t');
      int32_t partition = 0;
      int64_t offset = 0;
      bool ended = false;
      absl::string_view off = f.size() == 3 ? f[2] : absl::string_view();
      if (!off.empty() && off[0] == 'E') {
        ended = true;
        off.remove_prefix(1);
      }
      if (f.size() != 3 || !absl::SimpleAtoi(f[1], &partition) || !absl::SimpleAtoi(off, &offset)) {
        return absl::DataLossError(
            absl::StrCat(what_, ": restore: malformed checkpoint state line '", line, "'"));
      }
      TopicPartition tp{std::string(f[0]), partition};
      restored_[tp] = offset;
      if (options_.assignment == KafkaAssignment::kConsumerGroup && offset >= 0) {
        shared_->Put(tp, offset);
      }
      if (ended) restored_ended_.insert(tp);
    }
    return absl::OkStatus();
  }

  void NotifyCheckpointComplete(int64_t checkpoint_id) override {
    auto it = pending_commits_.find(checkpoint_id);
    if (it == pending_commits_.end() || rk_ == nullptr) return;
    if (!it->second.empty()) {
      PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(it->second.size())));
      for (const auto& [tp, next] : it->second) {
        rd_kafka_topic_partition_list_add(list.get(), tp.first.c_str(), tp.second)->offset = next;
      }
      // Asynchronous: monitoring only, a failed commit does not matter for correctness.
      rd_kafka_commit(rk_, list.get(), 1);
    }
    pending_commits_.erase(pending_commits_.begin(), std::next(it));
  }

  void Close() override {
    if (rk_ == nullptr) return;
    closing_ = true;
    if (options_.assignment == KafkaAssignment::kConsumerGroup && started_) {
      rd_kafka_consumer_close(rk_);
      rd_kafka_destroy(rk_);
    } else {
      rd_kafka_destroy_flags(rk_, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
    rk_ = nullptr;
  }

 private:
  absl::Status Start() {
    if (options_.assignment == KafkaAssignment::kConsumerGroup) {
      PartitionListPtr topics(
          rd_kafka_topic_partition_list_new(static_cast<int>(options_.topics.size())));
      for (const std::string& t : options_.topics) {
        rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
      }
      rd_kafka_resp_err_t err = rd_kafka_subscribe(rk_, topics.get());
      if (err) return KafkaError(what_ + ": subscribe", err);
      return absl::OkStatus();
    }
    PartitionListPtr assign(rd_kafka_topic_partition_list_new(8));
    for (const std::string& topic : options_.topics) {
      SLUICE_ASSIGN_OR_RETURN(int partitions, PartitionCount(topic));
      for (int32_t p = 0; p < partitions; ++p) {
        if ((kafka::Fnv1a64(topic) + static_cast<uint64_t>(p)) %
                static_cast<uint64_t>(parallelism_) !=
            static_cast<uint64_t>(subtask_)) {
          continue;
        }
        TopicPartition tp{topic, p};
        SLUICE_ASSIGN_OR_RETURN(int64_t offset, StartOffset(tp));
        owned_[tp] = offset;
        if (restored_ended_.contains(tp)) {
          ended_.insert(tp);
          continue;
        }
        pending_assigns_.push_back(kafka::SplitId(tp.first, tp.second));
        rd_kafka_topic_partition_list_add(assign.get(), topic.c_str(), p)->offset = offset;
      }
    }
    rd_kafka_error_t* error = rd_kafka_incremental_assign(rk_, assign.get());
    return KafkaError(what_ + ": assign", error);
  }

  absl::StatusOr<int> PartitionCount(const std::string& topic) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk_, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk_, 0, rkt, &md, timeout_ms_);
    rd_kafka_topic_destroy(rkt);
    if (err) return KafkaError(absl::StrCat(what_, ": metadata of topic '", topic, "'"), err);
    int count = 0;
    rd_kafka_resp_err_t topic_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; i < md->topic_cnt; ++i) {
      if (topic == md->topics[i].topic) {
        count = md->topics[i].partition_cnt;
        topic_err = md->topics[i].err;
      }
    }
    rd_kafka_metadata_destroy(md);
    if (topic_err) {
      return KafkaError(absl::StrCat(what_, ": metadata of topic '", topic, "'"), topic_err);
    }
    if (count == 0) {
      return absl::NotFoundError(
          absl::StrCat(what_, ": metadata of topic '", topic, "': no partitions"));
    }
    return count;
  }

  // Where partition `tp` starts: its restored position, else the configured starting offsets,
  // resolved to a concrete offset where a logical one would move on restore (latest, timestamp).
  absl::StatusOr<int64_t> StartOffset(const TopicPartition& tp) {
    auto it = restored_.find(tp);
    if (it != restored_.end()) return it->second;
    const std::string where =
        absl::StrCat(what_, ": start offset of topic '", tp.first, "' partition ", tp.second);
    switch (options_.starting_offsets) {
      case KafkaStartingOffsets::kEarliest:
        return int64_t{RD_KAFKA_OFFSET_BEGINNING};
      case KafkaStartingOffsets::kLatest: {
        int64_t low = 0, high = 0;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk_, tp.first.c_str(), tp.second,
                                                                   &low, &high, timeout_ms_);
        if (err) return KafkaError(where + ": query watermark offsets", err);
        return high;
      }
      case KafkaStartingOffsets::kTimestamp: {
        PartitionListPtr list(rd_kafka_topic_partition_list_new(1));
        rd_kafka_topic_partition_list_add(list.get(), tp.first.c_str(), tp.second)->offset =
            absl::ToUnixMillis(options_.start_timestamp);
        rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk_, list.get(), timeout_ms_);
        if (err) return KafkaError(where + ": offsets for times", err);
        if (list->elems[0].err)
          return KafkaError(where + ": offsets for times", list->elems[0].err);
        int64_t off = list->elems[0].offset;
        if (off < 0) {  // no record at or after the timestamp: the end
          int64_t low = 0, high = 0;
          err = rd_kafka_query_watermark_offsets(rk_, tp.first.c_str(), tp.second, &low, &high,
                                                 timeout_ms_);
          if (err) return KafkaError(where + ": query watermark offsets", err);
          off = high;
        }
        return off;
      }
      case KafkaStartingOffsets::kCommitted: {
        PartitionListPtr list(rd_kafka_topic_partition_list_new(1));
        rd_kafka_topic_partition_list_add(list.get(), tp.first.c_str(), tp.second);
        rd_kafka_resp_err_t err = rd_kafka_committed(rk_, list.get(), timeout_ms_);
        if (err) return KafkaError(where + ": committed offsets", err);
        int64_t off = list->elems[0].offset;
        return off >= 0 ? off : int64_t{RD_KAFKA_OFFSET_BEGINNING};
      }
    }
    return int64_t{RD_KAFKA_OFFSET_BEGINNING};
  }

  absl::Status Handle(rd_kafka_message_t* msg, std::vector<KafkaPartitionBatch>& out, int& n) {
    const char* topic_name = msg->rkt != nullptr ? rd_kafka_topic_name(msg->rkt) : "";
    if (msg->err) {
      if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return absl::OkStatus();
      const std::string where =
          absl::StrCat(what_, ": consume from topic '", topic_name, "' partition ", msg->partition);
      char buf[512];
      if (msg->err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(rk_, buf, sizeof(buf));
        return KafkaError(where, fatal, buf);
      }
      switch (msg->err) {
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
        case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
          return KafkaError(where, msg->err, rd_kafka_message_errstr(msg));
        default:
          return absl::OkStatus();  // transient: librdkafka retries by itself
      }
    }
    TopicPartition tp{topic_name, msg->partition};
    auto owned = owned_.find(tp);
    if (owned == owned_.end() || ended_.contains(tp)) return absl::OkStatus();  // stale
    std::string_view value(static_cast<const char*>(msg->payload), msg->payload ? msg->len : 0);
    const std::string split = kafka::SplitId(tp.first, tp.second);
    owned->second = msg->offset + 1;
    if (options_.is_end_of_stream && options_.is_end_of_stream(value)) {
      ended_.insert(tp);
      PartitionListPtr list(rd_kafka_topic_partition_list_new(1));
      rd_kafka_topic_partition_list_add(list.get(), tp.first.c_str(), tp.second);
      rd_kafka_pause_partitions(rk_, list.get());
      out.push_back(KafkaPartitionBatch{.split = split, .records = {}, .released = true});
      return absl::OkStatus();
    }
    if (out.empty() || out.back().split != split || out.back().released) {
      out.push_back(KafkaPartitionBatch{.split = split, .records = {}, .released = false});
    }
    KafkaRawRecord& r = out.back().records.emplace_back();
    r.value.assign(value);
    if (msg->key != nullptr) r.key.assign(static_cast<const char*>(msg->key), msg->key_len);
    r.offset = msg->offset;
    rd_kafka_timestamp_type_t type;
    int64_t ts = rd_kafka_message_timestamp(msg, &type);
    r.timestamp_ms = ts >= 0 ? ts : 0;
    ++n;
    return absl::OkStatus();
  }

  // Runs inside rd_kafka_consumer_poll, on the task's thread.
  void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                   rd_kafka_topic_partition_list_t* parts) {
    const bool cooperative = std::string(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      for (int i = 0; i < parts->cnt; ++i) {
        TopicPartition tp{parts->elems[i].topic, parts->elems[i].partition};
        // The position handed over by the reader of this job that had the partition, or
        // restored from the checkpoint; else the group's committed offset (the last completed
        // checkpoint's, or another process's hand-over); else the configured start.
        std::optional<int64_t> known = shared_->Take(tp);
        int64_t off = known.has_value() ? *known : RD_KAFKA_OFFSET_STORED;
        parts->elems[i].offset = off;
        owned_[tp] = off;
        ended_.erase(tp);
        pending_assigns_.push_back(kafka::SplitId(tp.first, tp.second));
      }
      rd_kafka_error_t* e = cooperative ? rd_kafka_incremental_assign(rk, parts) : nullptr;
      if (!cooperative) {
        rd_kafka_resp_err_t r = rd_kafka_assign(rk, parts);
        if (r) rebalance_error_ = KafkaError(what_ + ": assign after rebalance", r);
      } else if (e != nullptr) {
        rebalance_error_ = KafkaError(what_ + ": incremental assign after rebalance", e);
      }
      return;
    }
    // Revoked (or lost): hand the partitions over to the reader of this job that gets them
    // next, at the positions emitted so far. Nothing is committed here: the group's committed
    // offsets stay those of completed checkpoints, a safe (at-least-once) fallback.
    for (int i = 0; i < parts->cnt; ++i) {
      TopicPartition tp{parts->elems[i].topic, parts->elems[i].partition};
      auto it = owned_.find(tp);
      if (it == owned_.end()) continue;
      if (it->second >= 0) shared_->Replace(tp, it->second);
      pending_releases_.push_back(kafka::SplitId(tp.first, tp.second));
      owned_.erase(it);
    }
    if (cooperative) {
      rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk, parts);
      if (e != nullptr) rd_kafka_error_destroy(e);
    } else {
      rd_kafka_assign(rk, nullptr);
    }
  }

  KafkaSourceOptions options_;
  std::shared_ptr<KafkaSourceShared> shared_;
  int subtask_;
  int parallelism_;
  rd_kafka_t* rk_;
  int timeout_ms_;
  std::string what_;
  bool started_ = false;
  bool closing_ = false;
  absl::Status rebalance_error_;
  std::map<TopicPartition, int64_t> owned_;  // next offset (or a logical librdkafka offset)
  std::set<TopicPartition> ended_;
  std::map<TopicPartition, int64_t> restored_;
  std::set<TopicPartition> restored_ended_;
  std::vector<std::string> pending_releases_;
  std::vector<std::string> pending_assigns_;
  std::map<int64_t, std::map<TopicPartition, int64_t>> pending_commits_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<KafkaReaderCore>> KafkaReaderCore::Create(
    const KafkaSourceOptions& options, const SourceContext& ctx,
    std::shared_ptr<KafkaSourceShared> shared) {
  SLUICE_RETURN_IF_ERROR(options.Validate());
  KafkaSourceOptions o = options;
  if (o.group_id.empty()) o.group_id = absl::StrCat("sluice-", o.topics.front());
  const std::string what = absl::StrCat("Kafka source (topics ", absl::StrJoin(o.topics, ","),
                                        ", subtask ", ctx.subtask_index(), ")");
  SLUICE_ASSIGN_OR_RETURN(kafka::ConfPtr conf,
                          kafka::MakeConf(o.bootstrap_servers,
                                          {{"group.id", o.group_id},
                                           {"enable.auto.commit", "false"},
                                           {"enable.auto.offset.store", "false"},
                                           {"auto.offset.reset", "earliest"},
                                           {"enable.partition.eof", "false"}},
                                          o.properties, what));
  // The core is created before the handle so the rebalance callback has its opaque; the handle
  // is attached right after.
  auto core = std::make_unique<ReaderCoreImpl>(o, ctx, nullptr, std::move(shared));
  if (o.assignment == KafkaAssignment::kConsumerGroup) {
    rd_kafka_conf_set_rebalance_cb(conf.get(), &ReaderCoreImpl::RebalanceCb);
    rd_kafka_conf_set_opaque(conf.get(), core.get());
  }
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof(err));
  if (rk == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": creating the consumer: ", err));
  }
  conf.release();  // owned by rk now
  rd_kafka_poll_set_consumer(rk);
  core->SetHandle(rk);
  return std::unique_ptr<KafkaReaderCore>(std::move(core));
}

}  // namespace internal
}  // namespace sluice
