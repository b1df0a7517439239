// Apache Kafka connectors (librdkafka): KafkaSource<T> reads the partitions of one or more topics
// with their offsets in Sluice's checkpoints (exactly-once with an exactly-once sink downstream);
// KafkaSink<T> writes a topic at-least-once (flush on every checkpoint) or exactly-once (one Kafka
// transaction per checkpoint interval, committed when the checkpoint completes). The
// implementation is in src/connectors/kafka, library target `sluice_kafka` (CMake: sluice::kafka).
//
//   sluice::KafkaSourceOptions in{.bootstrap_servers = "127.0.0.1:9092", .topics = {"clicks"}};
//   in.starting_offsets = sluice::KafkaStartingOffsets::kEarliest;
//   auto clicks = env.FromSource(sluice::KafkaSource(in, ParseClick),  // Click(string_view)
//                                sluice::WatermarkStrategy<Click>::ForBoundedOutOfOrderness(
//                                    absl::Seconds(5)).WithIdleness(absl::Minutes(1)));
//   clicks.SinkTo(sluice::MakeKafkaSink<Click>({.bootstrap_servers = "127.0.0.1:9092",
//                                               .topic = "enriched"}, ToJson));
//
// No librdkafka type appears here. Thread-safety: sources and sinks are configured on one thread;
// each reader and writer is used by one thread at a time (the runtime's contract).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

#include <sluice/connectors/sink.h>
#include <sluice/connectors/source.h>
#include <sluice/core/collector.h>
#include <sluice/core/runtime_context.h>
#include <sluice/core/status.h>

namespace sluice {

// Where a partition is read from when the job does not resume from a checkpoint.
enum class KafkaStartingOffsets {
  kEarliest,   // the oldest retained record
  kLatest,     // records produced after the reader started (resolved to concrete offsets at once)
  kTimestamp,  // the first record with a timestamp >= `start_timestamp`
  kCommitted,  // the consumer group's committed offset; `kEarliest` where there is none
};

// How partitions are spread over the parallel readers.
enum class KafkaAssignment {
  // Partition p of topic t goes to subtask (FNV-1a-64(t) + p) % parallelism: deterministic,
  // balanced per topic, no group coordination. Exactly-once with checkpoints.
  kExplicit,
  // rd_kafka_subscribe with `group_id`: the group coordinator assigns partitions and moves them
  // on rebalance. See docs/connectors.md for the guarantee (at-least-once across rebalances).
  kConsumerGroup,
};

struct KafkaSourceOptions {
  // "host:port[,host:port...]". Required.
  std::string bootstrap_servers;
  // The topics to read. At least one.
  std::vector<std::string> topics;
  // Consumer group: offsets are committed to it when a checkpoint completes (monitoring only:
  // positions are restored from checkpoints), and kConsumerGroup coordinates through it.
  // Default "sluice-" + the first topic.
  std::string group_id;
  KafkaAssignment assignment = KafkaAssignment::kExplicit;
  KafkaStartingOffsets starting_offsets = KafkaStartingOffsets::kEarliest;
  absl::Time start_timestamp = absl::UnixEpoch();  // kTimestamp
  // At most this many records per PollNext (the runtime may ask for fewer): bounds the time a
  // poll holds the worker thread and how far apart checkpoints land in a busy stream. Must be
  // > 0. Default 500.
  int max_records_per_poll = 500;
  // How long PollNext waits before polling again when librdkafka had nothing. Default 10 ms.
  absl::Duration poll_interval = absl::Milliseconds(10);
  // Metadata, offset look-ups and the like at the start of a reader. Default 10 s.
  absl::Duration request_timeout = absl::Seconds(10);
  // Optional: a record whose value satisfies this ends its partition (it is not emitted); a reader
  // whose partitions have all ended ends (explicit assignment only; a reader with no partition
  // then ends at once). For backfills and tests. Default none: the source never ends.
  std::function<bool(std::string_view value)> is_end_of_stream;
  // Extra librdkafka configuration properties ("security.protocol", "fetch.max.bytes", ...).
  // Sluice sets enable.auto.commit=false, enable.auto.offset.store=false.
  std::map<std::string, std::string> properties;

  absl::Status Validate() const;
};

enum class KafkaDeliveryGuarantee {
  kAtLeastOnce,  // flush at every checkpoint and at the end
  kExactlyOnce,  // one transaction per checkpoint interval (requires checkpointing)
};

struct KafkaSinkOptions {
  std::string bootstrap_servers;  // required
  std::string topic;              // required
  KafkaDeliveryGuarantee delivery = KafkaDeliveryGuarantee::kAtLeastOnce;
  // kExactlyOnce: subtask i uses transactional.id "<prefix>-<i>" and records the checkpoint ids
  // its transactions carry in consumer group "<prefix>-<i>-ckpt". Must be unique per sink and
  // stable across restarts of the job. Required with kExactlyOnce.
  std::string transactional_id_prefix;
  // transaction.timeout.ms; must exceed the checkpoint interval plus the time a checkpoint takes.
  // Default 60 s.
  absl::Duration transaction_timeout = absl::Seconds(60);
  // A flush (checkpoint, end of input) that does not finish in time fails the job. Default 60 s.
  absl::Duration flush_timeout = absl::Seconds(60);
  // Extra librdkafka configuration properties ("acks", "linger.ms", "compression.type", ...).
  std::map<std::string, std::string> properties;
  // Optional, for tests and monitoring: called on the writer's thread with each step of the
  // transactional protocol ("init", "begin", "precommit <id>", "commit <id>", "abort",
  // "recover <id> committed", "recover <id> resent <n>").
  std::function<void(std::string_view event)> on_transaction_event;

  absl::Status Validate() const;
};

namespace internal {

// One record as consumed (non-template part of KafkaSource).
struct KafkaRawRecord {
  std::string key;
  std::string value;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;  // the record's Kafka timestamp (create or log-append time)
};

// A run of records of one partition; `split` is "<topic>-<partition>". `released`: the partition
// ended (end-of-stream record) or was revoked after these records. An empty run that is not
// released announces a newly assigned partition (its split holds the watermark from then on).
struct KafkaPartitionBatch {
  std::string split;
  std::vector<KafkaRawRecord> records;
  bool released = false;
};

// What the readers of one KafkaSource share (consumer-group mode: positions handed over in a
// rebalance, restored positions). Thread-safe.
class KafkaSourceShared;
std::shared_ptr<KafkaSourceShared> MakeKafkaSourceShared();

// The consuming machinery of one KafkaSource subtask (src/connectors/kafka/kafka_source.cc).
class KafkaReaderCore {
 public:
  static absl::StatusOr<std::unique_ptr<KafkaReaderCore>> Create(
      const KafkaSourceOptions& options, const SourceContext& ctx,
      std::shared_ptr<KafkaSourceShared> shared);
  virtual ~KafkaReaderCore() = default;
  // Moves up to about `max_records` records into `out` (cleared first). Never blocks long.
  virtual absl::StatusOr<PollResult> Poll(std::vector<KafkaPartitionBatch>& out,
                                          int max_records) = 0;
  // Positions (next offset per owned partition) after everything Poll handed out.
  virtual std::string Snapshot(int64_t checkpoint_id) = 0;
  virtual absl::Status Restore(std::string_view state) = 0;
  // Commits checkpoint `id`'s positions to the group (asynchronously; monitoring only).
  virtual void NotifyCheckpointComplete(int64_t checkpoint_id) = 0;
  virtual void Close() = 0;
};

// The producing machinery of one KafkaSink subtask (src/connectors/kafka/kafka_sink.cc).
class KafkaWriterCore {
 public:
  static absl::StatusOr<std::unique_ptr<KafkaWriterCore>> Create(const KafkaSinkOptions& options,
                                                                 const RuntimeContext& ctx);
  virtual ~KafkaWriterCore() = default;
  // Hands one record to the producer (waits while librdkafka's queue is full).
  virtual absl::Status Add(std::string_view value, const std::optional<std::string>& key) = 0;
  virtual absl::StatusOr<std::string> Snapshot(int64_t checkpoint_id) = 0;
  virtual absl::Status NotifyCheckpointComplete(int64_t checkpoint_id) = 0;
  virtual absl::Status Restore(const std::vector<std::string>& states) = 0;
  virtual absl::Status Finish() = 0;
  virtual void Close() = 0;
};

struct KafkaStringValue {
  std::string operator()(std::string_view value) const { return std::string(value); }
};
struct KafkaStringBytes {
  const std::string& operator()(const std::string& s) const { return s; }
};
struct KafkaNoKey {};

}  // namespace internal

// Reads the partitions of `options.topics`. The deserializer turns a record into a T: either
// `T(std::string_view value)` or `T(std::string_view key, std::string_view value)` (default: the
// value as a std::string); an exception it throws fails the job. Each record carries its Kafka
// timestamp as its timestamp (the default event time), and each partition is a split with its own
// watermark generator (out.ForSplit("<topic>-<partition>")).
template <typename T = std::string, typename Deserializer = internal::KafkaStringValue>
  requires(std::is_invocable_r_v<T, Deserializer&, std::string_view> ||
           std::is_invocable_r_v<T, Deserializer&, std::string_view, std::string_view>)
class KafkaSource : public Source<T> {
 public:
  explicit KafkaSource(KafkaSourceOptions options, Deserializer deserializer = Deserializer())
      : options_(std::move(options)),
        deserializer_(std::move(deserializer)),
        shared_(internal::MakeKafkaSourceShared()) {}
  // A copy is another source (another node of a job): it does not share the readers' hand-over.
  KafkaSource(const KafkaSource& other)
      : options_(other.options_),
        deserializer_(other.deserializer_),
        shared_(internal::MakeKafkaSourceShared()) {}
  KafkaSource(KafkaSource&&) = default;
  KafkaSource& operator=(const KafkaSource& other) {
    if (this != &other) {
      options_ = other.options_;
      deserializer_ = other.deserializer_;
      shared_ = internal::MakeKafkaSourceShared();
    }
    return *this;
  }
  KafkaSource& operator=(KafkaSource&&) = default;

  bool IsBounded() const override { return false; }
  std::string Describe() const override {
    return absl::StrCat("Kafka ", absl::StrJoin(options_.topics, ","));
  }

  absl::StatusOr<std::unique_ptr<SourceReader<T>>> CreateReader(const SourceContext& ctx) override {
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<internal::KafkaReaderCore> core,
                            internal::KafkaReaderCore::Create(options_, ctx, shared_));
    return std::unique_ptr<SourceReader<T>>(new Reader(std::move(core), deserializer_));
  }

 private:
  class Reader final : public SourceReader<T> {
   public:
    Reader(std::unique_ptr<internal::KafkaReaderCore> core, Deserializer deserializer)
        : core_(std::move(core)), deserializer_(std::move(deserializer)) {}
    ~Reader() override { core_->Close(); }

    absl::StatusOr<PollResult> PollNext(Collector<T>& out, int max_records) override {
      SLUICE_ASSIGN_OR_RETURN(PollResult result, core_->Poll(batches_, max_records));
      for (internal::KafkaPartitionBatch& batch : batches_) {
        // An empty run that is not a release announces a newly assigned partition: ForSplit
        // registers its watermark generator.
        if (!batch.records.empty() || !batch.released) {
          Collector<T>& split = out.ForSplit(batch.split);
          for (internal::KafkaRawRecord& r : batch.records) {
            if constexpr (std::is_invocable_r_v<T, Deserializer&, std::string_view,
                                                std::string_view>) {
              split.CollectWithTimestamp(
                  deserializer_(std::string_view(r.key), std::string_view(r.value)),
                  r.timestamp_ms);
            } else {
              split.CollectWithTimestamp(deserializer_(std::string_view(r.value)), r.timestamp_ms);
            }
          }
        }
        if (batch.released) out.ReleaseSplit(batch.split);
      }
      return result;
    }
    void Close() override { core_->Close(); }
    absl::StatusOr<std::string> SnapshotState(int64_t id) override { return core_->Snapshot(id); }
    absl::Status RestoreState(std::string_view state) override { return core_->Restore(state); }
    // Another parallelism: every old subtask's offsets are restored; a reader starts only the
    // partitions it owns now (explicit assignment) or hands them to the group's assignment.
    absl::Status RestoreRescaled(const std::vector<std::string>& states) override {
      for (const std::string& s : states) SLUICE_RETURN_IF_ERROR(core_->Restore(s));
      return absl::OkStatus();
    }
    void NotifyCheckpointComplete(int64_t id) override { core_->NotifyCheckpointComplete(id); }

   private:
    std::unique_ptr<internal::KafkaReaderCore> core_;
    Deserializer deserializer_;
    std::vector<internal::KafkaPartitionBatch> batches_;
  };

  KafkaSourceOptions options_;
  Deserializer deserializer_;
  std::shared_ptr<internal::KafkaSourceShared> shared_;
};

template <typename Deserializer>
KafkaSource(KafkaSourceOptions, Deserializer) -> KafkaSource<
    std::decay_t<decltype(std::declval<Deserializer&>()(std::declval<std::string_view>()))>,
    Deserializer>;

// Writes records to `options.topic`. `serializer(const T&)` gives a record's value bytes
// (default for std::string: the string); the optional `key_fn(const T&)` its key (default: no key,
// librdkafka's partitioner spreads records). Delivery errors fail the job with a Status naming
// the topic, partition and librdkafka error.
template <typename T, typename Serializer = internal::KafkaStringBytes,
          typename KeyFn = internal::KafkaNoKey>
  requires std::is_invocable_v<Serializer&, const T&>
class KafkaSink : public Sink<T> {
 public:
  explicit KafkaSink(KafkaSinkOptions options, Serializer serializer = Serializer(),
                     KeyFn key_fn = KeyFn())
      : options_(std::move(options)),
        serializer_(std::move(serializer)),
        key_fn_(std::move(key_fn)) {}

  std::string Describe() const override { return absl::StrCat("Kafka ", options_.topic); }

  absl::StatusOr<std::unique_ptr<SinkWriter<T>>> CreateWriter(const RuntimeContext& ctx) override {
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<internal::KafkaWriterCore> core,
                            internal::KafkaWriterCore::Create(options_, ctx));
    return std::unique_ptr<SinkWriter<T>>(new Writer(std::move(core), serializer_, key_fn_));
  }

 private:
  class Writer final : public SinkWriter<T> {
   public:
    Writer(std::unique_ptr<internal::KafkaWriterCore> core, Serializer serializer, KeyFn key_fn)
        : core_(std::move(core)), serializer_(std::move(serializer)), key_fn_(std::move(key_fn)) {}
    ~Writer() override { core_->Close(); }
    absl::Status Write(std::vector<T>& records) override {
      for (const T& r : records) {
        if constexpr (std::is_same_v<KeyFn, internal::KafkaNoKey>) {
          SLUICE_RETURN_IF_ERROR(core_->Add(std::string_view(serializer_(r)), std::nullopt));
        } else {
          SLUICE_RETURN_IF_ERROR(
              core_->Add(std::string_view(serializer_(r)), std::string(key_fn_(r))));
        }
      }
      return absl::OkStatus();
    }
    absl::Status Finish() override { return core_->Finish(); }
    void Close() override { core_->Close(); }
    absl::StatusOr<std::string> SnapshotState(int64_t id) override { return core_->Snapshot(id); }
    absl::Status NotifyCheckpointComplete(int64_t id) override {
      return core_->NotifyCheckpointComplete(id);
    }
    absl::Status RestoreState(const std::vector<std::string>& states) override {
      return core_->Restore(states);
    }

   private:
    std::unique_ptr<internal::KafkaWriterCore> core_;
    Serializer serializer_;
    KeyFn key_fn_;
  };

  KafkaSinkOptions options_;
  Serializer serializer_;
  KeyFn key_fn_;
};

KafkaSink(KafkaSinkOptions) -> KafkaSink<std::string>;

// KafkaSink<T> with the function types deduced: MakeKafkaSink<Click>(options, ToJson[, key_fn]).
template <typename T, typename Serializer>
KafkaSink<T, Serializer> MakeKafkaSink(KafkaSinkOptions options, Serializer serializer) {
  return KafkaSink<T, Serializer>(std::move(options), std::move(serializer));
}
template <typename T, typename Serializer, typename KeyFn>
KafkaSink<T, Serializer, KeyFn> MakeKafkaSink(KafkaSinkOptions options, Serializer serializer,
                                              KeyFn key_fn) {
  return KafkaSink<T, Serializer, KeyFn>(std::move(options), std::move(serializer),
                                         std::move(key_fn));
}

}  // namespace sluice
