// KafkaSink's writer core: a librdkafka producer. At-least-once: flush at every checkpoint and at
// the end. Exactly-once: a transactional producer, one transaction per checkpoint interval; the
// transaction carries the checkpoint id as an offset commit of a per-subtask consumer group, which
// is how a restored writer learns whether the transaction of its restored checkpoint committed
// (librdkafka cannot resume another producer's transaction; init_transactions aborts it). The
// argument is in docs/connectors.md ("Kafka: exactly-once sink").
#include <librdkafka/rdkafka.h>

#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include <sluice/connectors/kafka.h>

#include "connectors/kafka/kafka_common.h"

namespace sluice {

absl::Status KafkaSinkOptions::Validate() const {
  if (bootstrap_servers.empty()) {
    return absl::InvalidArgumentError("KafkaSinkOptions.bootstrap_servers: required");
  }
  if (topic.empty()) return absl::InvalidArgumentError("KafkaSinkOptions.topic: required");
  if (delivery == KafkaDeliveryGuarantee::kExactlyOnce && transactional_id_prefix.empty()) {
    return absl::InvalidArgumentError(
        "KafkaSinkOptions.transactional_id_prefix: required with kExactlyOnce");
  }
  if (transaction_timeout <= absl::ZeroDuration() || flush_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "KafkaSinkOptions.transaction_timeout/flush_timeout: must be > 0");
  }
  // librdkafka refuses to produce when records may wait longer in the queue than they may live:
  // say so when the sink is built, not at the first record.
  auto millis = [&](std::initializer_list<const char*> names, int64_t fallback,
                    std::string* which) -> absl::StatusOr<int64_t> {
    for (const char* name : names) {
      auto it = properties.find(name);
      if (it == properties.end()) continue;
      int64_t v = 0;
      if (!absl::SimpleAtoi(it->second, &v)) {
        return absl::InvalidArgumentError(absl::StrCat("KafkaSinkOptions.properties[\"", name,
                                                       "\"]: not a number: '", it->second, "'"));
      }
      *which = name;
      return v;
    }
    *which = *names.begin();
    return fallback;
  };
  std::string linger_name, timeout_name;
  SLUICE_ASSIGN_OR_RETURN(int64_t linger,
                          millis({"linger.ms", "queue.buffering.max.ms"}, 5, &linger_name));
  SLUICE_ASSIGN_OR_RETURN(int64_t timeout, millis({"message.timeout.ms", "delivery.timeout.ms"},
                                                  300000, &timeout_name));
  if (timeout != 0 && linger >= timeout) {
    return absl::InvalidArgumentError(absl::StrCat("KafkaSinkOptions.properties: \"", linger_name,
                                                   "\" (", linger, ") must be less than \"",
                                                   timeout_name, "\" (", timeout, ")"));
  }
  return absl::OkStatus();
}

namespace internal {
namespace {

using kafka::KafkaError;
using kafka::PartitionListPtr;

struct Rec {
  std::optional<std::string> key;
  std::string value;
};

// State of one pre-committed transaction: "SKK1", transactional id, checkpoint id, records.
void PutU64(std::string& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 8);
}
bool GetU64(std::string_view& in, uint64_t& v) {
  if (in.size() < 8) return false;
  v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
  in.remove_prefix(8);
  return true;
}
void PutStr(std::string& out, std::string_view s) {
  PutU64(out, s.size());
  out.append(s);
}
bool GetStr(std::string_view& in, std::string& s) {
  uint64_t n = 0;
  if (!GetU64(in, n) || in.size() < n) return false;
  s.assign(in.substr(0, n));
  in.remove_prefix(n);
  return true;
}

struct TxnState {
  std::string transactional_id;
  int64_t checkpoint_id = 0;
  std::vector<Rec> records;
};

std::string EncodeState(const std::string& txid, int64_t id, const std::vector<Rec>& records) {
  std::string out = "SKK1";
  PutStr(out, txid);
  PutU64(out, static_cast<uint64_t>(id));
  PutU64(out, records.size());
  for (const Rec& r : records) {
    out.push_back(r.key.has_value() ? 1 : 0);
    if (r.key.has_value()) PutStr(out, *r.key);
    PutStr(out, r.value);
  }
  return out;
}

absl::StatusOr<TxnState> DecodeState(std::string_view in, const std::string& what) {
  TxnState st;
  auto bad = [&] { return absl::DataLossError(what + ": restore: malformed checkpoint state"); };
  if (in.substr(0, 4) != "SKK1") return bad();
  in.remove_prefix(4);
  uint64_t id = 0, n = 0;
  if (!GetStr(in, st.transactional_id) || !GetU64(in, id) || !GetU64(in, n)) return bad();
  st.checkpoint_id = static_cast<int64_t>(id);
  for (uint64_t i = 0; i < n; ++i) {
    if (in.empty()) return bad();
    Rec r;
    bool has_key = in[0] != 0;
    in.remove_prefix(1);
    if (has_key) {
      r.key.emplace();
      if (!GetStr(in, *r.key)) return bad();
    }
    if (!GetStr(in, r.value)) return bad();
    st.records.push_back(std::move(r));
  }
  return st;
}

// One librdkafka producer and its delivery errors.
class Producer {
 public:
  static absl::StatusOr<std::unique_ptr<Producer>> Create(const KafkaSinkOptions& o,
                                                          const std::string& txid,
                                                          const std::string& what) {
    std::map<std::string, std::string> fixed;
    if (!txid.empty()) {
      fixed["transactional.id"] = txid;
      fixed["transaction.timeout.ms"] =
          absl::StrCat(absl::ToInt64Milliseconds(o.transaction_timeout));
    }
    SLUICE_ASSIGN_OR_RETURN(kafka::ConfPtr conf,
                            kafka::MakeConf(o.bootstrap_servers, fixed, o.properties, what));
    auto p = std::unique_ptr<Producer>(new Producer(o, what));
    rd_kafka_conf_set_dr_msg_cb(conf.get(), &Producer::DeliveryCb);
    rd_kafka_conf_set_opaque(conf.get(), p.get());
    char err[512];
    p->rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof(err));
    if (p->rk_ == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": creating the producer: ", err));
    }
    conf.release();
    return p;
  }
  ~Producer() {
    if (rk_ != nullptr) rd_kafka_destroy(rk_);
  }

  rd_kafka_t* rk() const { return rk_; }
  int timeout_ms() const { return static_cast<int>(absl::ToInt64Milliseconds(o_.flush_timeout)); }

  absl::Status Produce(const Rec& r) {
    for (;;) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          rk_, RD_KAFKA_V_TOPIC(o_.topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
          RD_KAFKA_V_KEY((r.key.has_value() ? r.key->data() : nullptr),
                         (r.key.has_value() ? r.key->size() : 0)),
          RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk_, 50);  // backpressure: serve delivery reports until there is room
        SLUICE_RETURN_IF_ERROR(DeliveryStatus());
        continue;
      }
      if (err) return Fail(absl::StrCat(what_, ": produce to topic '", o_.topic, "'"), err);
      break;
    }
    rd_kafka_poll(rk_, 0);
    return DeliveryStatus();
  }

  absl::Status Flush() {
    rd_kafka_resp_err_t err = rd_kafka_flush(rk_, timeout_ms());
    SLUICE_RETURN_IF_ERROR(DeliveryStatus());
    if (err) {
      return Fail(absl::StrCat(what_, ": flush to topic '", o_.topic, "' (", rd_kafka_outq_len(rk_),
                               " records not acknowledged)"),
                  err);
    }
    return absl::OkStatus();
  }

  absl::Status DeliveryStatus() const { return delivery_error_; }

  // A librdkafka error; for __FATAL the underlying fatal error, fencing said plainly.
  absl::Status Fail(const std::string& where, rd_kafka_resp_err_t err) {
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      char buf[512];
      err = rd_kafka_fatal_error(rk_, buf, sizeof(buf));
      return Fenced(KafkaError(where, err, buf), err);
    }
    return Fenced(KafkaError(where, err), err);
  }
  absl::Status Fail(const std::string& where, rd_kafka_error_t* error) {
    if (error == nullptr) return absl::OkStatus();
    rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    if (code == RD_KAFKA_RESP_ERR__FATAL || rd_kafka_error_is_fatal(error)) {
      char buf[512];
      rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(rk_, buf, sizeof(buf));
      if (fatal) code = fatal;
    }
    return Fenced(KafkaError(where, error), code);
  }

 private:
  Producer(const KafkaSinkOptions& o, std::string what) : o_(o), what_(std::move(what)) {}

  static absl::Status Fenced(absl::Status s, rd_kafka_resp_err_t code) {
    if (code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
        code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH) {
      return absl::FailedPreconditionError(absl::StrCat(
          s.message(),
          " — the producer was fenced: another producer with the same transactional.id started "
          "(two jobs or sinks share transactional_id_prefix?)"));
    }
    return s;
  }

  static void DeliveryCb(rd_kafka_t* rk, const rd_kafka_message_t* msg, void* opaque) {
    auto* self = static_cast<Producer*>(opaque);
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR || !self->delivery_error_.ok()) return;
    std::string where = absl::StrCat(self->what_, ": delivery to topic '", self->o_.topic,
                                     "' partition ", msg->partition);
    rd_kafka_resp_err_t err = msg->err;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      char buf[512];
      err = rd_kafka_fatal_error(rk, buf, sizeof(buf));
      self->delivery_error_ = Fenced(KafkaError(where, err, buf), err);
      return;
    }
    self->delivery_error_ = Fenced(KafkaError(where, err), err);
  }

  KafkaSinkOptions o_;
  std::string what_;
  rd_kafka_t* rk_ = nullptr;
  absl::Status delivery_error_;
};

class WriterCoreImpl final : public KafkaWriterCore {
 public:
  WriterCoreImpl(KafkaSinkOptions o, const RuntimeContext& ctx)
      : o_(std::move(o)),
        subtask_(ctx.subtask_index),
        exactly_once_(o_.delivery == KafkaDeliveryGuarantee::kExactlyOnce) {
    what_ = absl::StrCat("Kafka sink (topic '", o_.topic, "', subtask ", subtask_, ")");
    if (exactly_once_) txid_ = absl::StrCat(o_.transactional_id_prefix, "-", subtask_);
  }
  ~WriterCoreImpl() override { Close(); }

  absl::Status Init() {
    SLUICE_ASSIGN_OR_RETURN(producer_, Producer::Create(o_, txid_, what_));
    return absl::OkStatus();
  }

  absl::Status Add(std::string_view value, const std::optional<std::string>& key) override {
    SLUICE_RETURN_IF_ERROR(EnsureStarted());
    Rec r{key, std::string(value)};
    if (!exactly_once_) return producer_->Produce(r);
    if (precommitted_ >= 0) {
      // The open transaction is pre-committed for a checkpoint not complete yet: records wait
      // for the next transaction (one producer has one transaction at a time).
      waiting_.push_back(std::move(r));
      return absl::OkStatus();
    }
    SLUICE_RETURN_IF_ERROR(producer_->Produce(r));
    txn_records_.push_back(std::move(r));
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Snapshot(int64_t checkpoint_id) override {
    SLUICE_RETURN_IF_ERROR(EnsureStarted());
    if (!exactly_once_) {
      SLUICE_RETURN_IF_ERROR(producer_->Flush());
      return std::string();
    }
    // A checkpoint aborted before completing leaves its transaction open: this one extends it.
    for (Rec& r : waiting_) {
      SLUICE_RETURN_IF_ERROR(producer_->Produce(r));
      txn_records_.push_back(std::move(r));
    }
    waiting_.clear();
    SLUICE_RETURN_IF_ERROR(producer_->Flush());
    SLUICE_RETURN_IF_ERROR(SendCheckpointId(*producer_, txid_, checkpoint_id));
    precommitted_ = checkpoint_id;
    Event(absl::StrCat("precommit ", checkpoint_id));
    return EncodeState(txid_, checkpoint_id, txn_records_);
  }

  absl::Status NotifyCheckpointComplete(int64_t checkpoint_id) override {
    if (!exactly_once_ || precommitted_ < 0 || checkpoint_id < precommitted_) {
      return absl::OkStatus();
    }
    SLUICE_RETURN_IF_ERROR(
        producer_->Fail(absl::StrCat(what_, ": commit transaction of checkpoint ", precommitted_,
                                     " (transactional.id '", txid_, "')"),
                        rd_kafka_commit_transaction(producer_->rk(), producer_->timeout_ms())));
    Event(absl::StrCat("commit ", precommitted_));
    precommitted_ = -1;
    txn_records_.clear();
    SLUICE_RETURN_IF_ERROR(Begin());
    for (Rec& r : waiting_) {
      SLUICE_RETURN_IF_ERROR(producer_->Produce(r));
      txn_records_.push_back(std::move(r));
    }
    waiting_.clear();
    return absl::OkStatus();
  }

  absl::Status Restore(const std::vector<std::string>& states) override {
    if (!exactly_once_) return absl::OkStatus();
    SLUICE_RETURN_IF_ERROR(EnsureStarted());  // init_transactions: aborts our open transaction
    for (const std::string& raw : states) {
      if (raw.empty()) continue;
      SLUICE_ASSIGN_OR_RETURN(TxnState st, DecodeState(raw, what_));
      if (st.transactional_id == txid_) {
        SLUICE_RETURN_IF_ERROR(Recover(*producer_, st, /*own=*/true));
      } else {
        // Another (old) subtask's transactional id: fence and recover it with a producer of
        // that id.
        SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<Producer> other,
                                Producer::Create(o_, st.transactional_id, what_));
        SLUICE_RETURN_IF_ERROR(
            other->Fail(absl::StrCat(what_, ": init transactions of '", st.transactional_id, "'"),
                        rd_kafka_init_transactions(other->rk(), other->timeout_ms())));
        SLUICE_RETURN_IF_ERROR(Recover(*other, st, /*own=*/false));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    SLUICE_RETURN_IF_ERROR(EnsureStarted());
    if (!exactly_once_) return producer_->Flush();
    for (Rec& r : waiting_) {
      SLUICE_RETURN_IF_ERROR(producer_->Produce(r));
      txn_records_.push_back(std::move(r));
    }
    waiting_.clear();
    SLUICE_RETURN_IF_ERROR(producer_->Flush());
    SLUICE_RETURN_IF_ERROR(producer_->Fail(
        absl::StrCat(what_, ": commit transaction at end of input (transactional.id '", txid_,
                     "')"),
        rd_kafka_commit_transaction(producer_->rk(), producer_->timeout_ms())));
    Event("commit end");
    txn_records_.clear();
    precommitted_ = -1;
    in_txn_ = false;
    return absl::OkStatus();
  }

  void Close() override {
    if (producer_ == nullptr) return;
    if (exactly_once_ && in_txn_) {
      // Failure or cancellation: the open transaction's records are replayed (by the source, or
      // from the checkpoint state if it was pre-committed) after a restore.
      rd_kafka_error_t* e = rd_kafka_abort_transaction(producer_->rk(), 5000);
      if (e != nullptr) rd_kafka_error_destroy(e);
      Event("abort");
      in_txn_ = false;
    } else if (!exactly_once_) {
      rd_kafka_flush(producer_->rk(), 1000);
    }
    producer_.reset();
  }

 private:
  void Event(const std::string& e) {
    if (o_.on_transaction_event) o_.on_transaction_event(e);
  }

  absl::Status EnsureStarted() {
    if (started_) return absl::OkStatus();
    if (producer_ == nullptr) return absl::FailedPreconditionError(what_ + ": used after Close");
    started_ = true;
    if (!exactly_once_) return absl::OkStatus();
    SLUICE_RETURN_IF_ERROR(
        producer_->Fail(absl::StrCat(what_, ": init transactions (transactional.id '", txid_, "')"),
                        rd_kafka_init_transactions(producer_->rk(), producer_->timeout_ms())));
    Event("init");
    return Begin();
  }

  absl::Status Begin() {
    SLUICE_RETURN_IF_ERROR(
        producer_->Fail(absl::StrCat(what_, ": begin transaction (transactional.id '", txid_, "')"),
                        rd_kafka_begin_transaction(producer_->rk())));
    in_txn_ = true;
    Event("begin");
    return absl::OkStatus();
  }

  std::string MarkerGroup(const std::string& txid) const { return txid + "-ckpt"; }

  // Adds "checkpoint `id`" to the open transaction of `p`: an offset commit of group
  // "<txid>-ckpt" for partition 0 of the sink's topic.
  absl::Status SendCheckpointId(Producer& p, const std::string& txid, int64_t id) {
    PartitionListPtr list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), o_.topic.c_str(), 0)->offset = id;
    rd_kafka_consumer_group_metadata_t* md =
        rd_kafka_consumer_group_metadata_new(MarkerGroup(txid).c_str());
    rd_kafka_error_t* e =
        rd_kafka_send_offsets_to_transaction(p.rk(), list.get(), md, p.timeout_ms());
    rd_kafka_consumer_group_metadata_destroy(md);
    return p.Fail(absl::StrCat(what_, ": send checkpoint ", id,
                               " to transaction (transactional.id '", txid, "')"),
                  e);
  }

  // The checkpoint id committed by the last committed transaction of `txid` (-1: none).
  absl::StatusOr<int64_t> CommittedCheckpoint(const std::string& txid) {
    const std::string where = absl::StrCat(what_, ": read committed checkpoint of '", txid,
                                           "' from group '", MarkerGroup(txid), "'");
    SLUICE_ASSIGN_OR_RETURN(kafka::ConfPtr conf, kafka::MakeConf(o_.bootstrap_servers,
                                                                 {{"group.id", MarkerGroup(txid)},
                                                                  {"enable.auto.commit", "false"}},
                                                                 o_.properties, what_));
    char err[512];
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof(err));
    if (rk == nullptr) return absl::InvalidArgumentError(absl::StrCat(where, ": ", err));
    conf.release();
    PartitionListPtr list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), o_.topic.c_str(), 0);
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, list.get(), producer_->timeout_ms());
    int64_t off = list->elems[0].offset;
    rd_kafka_resp_err_t pe = list->elems[0].err;
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    if (e) return KafkaError(where, e);
    if (pe) return KafkaError(where, pe);
    return off >= 0 ? off : int64_t{-1};
  }

  // The transaction of checkpoint `st.checkpoint_id` (complete, since we restore from it) either
  // committed — its checkpoint id is in the marker group — or was aborted by init_transactions:
  // then its records are sent again, with the same checkpoint id, in a transaction committed now.
  absl::Status Recover(Producer& p, const TxnState& st, bool own) {
    SLUICE_ASSIGN_OR_RETURN(int64_t committed, CommittedCheckpoint(st.transactional_id));
    if (committed >= st.checkpoint_id) {
      Event(absl::StrCat("recover ", st.checkpoint_id, " committed"));
      return absl::OkStatus();
    }
    const std::string where = absl::StrCat(what_, ": recover checkpoint ", st.checkpoint_id,
                                           " (transactional.id '", st.transactional_id, "')");
    if (!own) {
      SLUICE_RETURN_IF_ERROR(p.Fail(where + ": begin", rd_kafka_begin_transaction(p.rk())));
    }
    // Our own producer is inside the transaction Begin() opened in EnsureStarted().
    for (const Rec& r : st.records) SLUICE_RETURN_IF_ERROR(p.Produce(r));
    SLUICE_RETURN_IF_ERROR(p.Flush());
    SLUICE_RETURN_IF_ERROR(SendCheckpointId(p, st.transactional_id, st.checkpoint_id));
    SLUICE_RETURN_IF_ERROR(
        p.Fail(where + ": commit", rd_kafka_commit_transaction(p.rk(), p.timeout_ms())));
    Event(absl::StrCat("recover ", st.checkpoint_id, " resent ", st.records.size()));
    if (own) {
      in_txn_ = false;
      SLUICE_RETURN_IF_ERROR(Begin());
    }
    return absl::OkStatus();
  }

  KafkaSinkOptions o_;
  int subtask_;
  bool exactly_once_;
  std::string what_;
  std::string txid_;
  std::unique_ptr<Producer> producer_;
  bool started_ = false;
  bool in_txn_ = false;
  int64_t precommitted_ = -1;
  std::vector<Rec> txn_records_;  // records of the open transaction (checkpoint state)
  std::vector<Rec> waiting_;      // records after a pre-commit, for the next transaction
};

}  // namespace

absl::StatusOr<std::unique_ptr<KafkaWriterCore>> KafkaWriterCore::Create(
    const KafkaSinkOptions& options, const RuntimeContext& ctx) {
  SLUICE_RETURN_IF_ERROR(options.Validate());
  auto core = std::make_unique<WriterCoreImpl>(options, ctx);
  SLUICE_RETURN_IF_ERROR(core->Init());
  return std::unique_ptr<KafkaWriterCore>(std::move(core));
}

}  // namespace internal
}  // namespace sluice
