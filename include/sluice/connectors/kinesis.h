// Amazon Kinesis Data Streams connectors: KinesisSource<T> (every shard of a stream, with
// checkpointed sequence numbers: exactly-once with Sluice's checkpoints) and KinesisSink<T>
// (PutRecords in batches: at-least-once). They speak the Kinesis JSON API over HTTP(S), signed
// with AWS Signature V4; the implementation (Boost.Beast, OpenSSL) is in src/connectors/kinesis
// and the library target `sluice_kinesis` (CMake: sluice::kinesis).
//
//   sluice::KinesisSourceOptions in{.stream_name = "clicks"};
//   in.initial_position = sluice::KinesisStartingPosition::kTrimHorizon;
//   auto clicks = env.FromSource(sluice::KinesisSource(in, ParseClick),  // Click(string_view)
//                                sluice::WatermarkStrategy<Click>::ForBoundedOutOfOrderness(
//                                    absl::Seconds(5)).WithIdleness(absl::Minutes(1)));
//   clicks.SinkTo(sluice::MakeKinesisSink<Click>({.stream_name = "enriched"},
//                                                [](const Click& c) { return c.user; }, ToJson));
//
// Region, endpoint and credentials come from KinesisConnectionOptions or, when left empty, from
// AWS_REGION / AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN.
//
// Thread-safety: sources and sinks are configured on one thread; each reader and writer is used by
// one thread at a time (the runtime's contract). A reader's HTTP calls run on a thread it owns.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include <sluice/connectors/sink.h>
#include <sluice/connectors/source.h>
#include <sluice/core/collector.h>
#include <sluice/core/runtime_context.h>
#include <sluice/core/status.h>

namespace sluice {

// Where and as whom to call Kinesis. Empty strings fall back to the AWS environment variables.
struct KinesisConnectionOptions {
  // AWS region ("eu-west-1"). Default: AWS_REGION, else AWS_DEFAULT_REGION; required unless
  // `endpoint` is set (then "us-east-1" signs the requests).
  std::string region;
  // "http://host:port" or "https://host[:port]" (kinesalite, LocalStack, VPC endpoints). Default:
  // https://kinesis.<region>.amazonaws.com.
  std::string endpoint;
  // Credentials. Default: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; a missing
  // key fails CreateReader/CreateWriter (hence Execute()) with FailedPrecondition.
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;
  // One HTTP request (connect, send, receive) taking longer fails that attempt. Default 10 s.
  absl::Duration request_timeout = absl::Seconds(10);
  // https: verify the server's certificate (system trust store). Default true.
  bool verify_tls = true;
  // Throttling (ProvisionedThroughputExceededException, LimitExceededException), HTTP 5xx and
  // network errors are retried with exponential backoff from `initial_backoff`, doubling up to
  // `max_backoff`, `max_attempts` times in all per call (0: without limit).
  // Defaults 100 ms, 5 s, 10.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  int max_attempts = 10;

  // InvalidArgument naming the bad field.
  absl::Status Validate() const;
};

// Where a shard is read from when the job does not resume from a checkpoint.
enum class KinesisStartingPosition {
  kLatest,            // records put after the reader started (Flink's default)
  kTrimHorizon,       // the oldest record still retained
  kAtTimestamp,       // the first record that arrived at or after `start_timestamp`
  kAtSequenceNumber,  // `start_sequence_numbers[shard id]` (TRIM_HORIZON for shards not listed)
};

struct KinesisSourceOptions {
  KinesisConnectionOptions connection;
  // The stream to read. Required.
  std::string stream_name;
  // For the shards listed when the job starts without a checkpoint. Default kLatest. Shards that
  // appear later (children of a split or merge) are read from their first record, after their
  // parents.
  KinesisStartingPosition initial_position = KinesisStartingPosition::kLatest;
  absl::Time start_timestamp = absl::UnixEpoch();             // kAtTimestamp
  std::map<std::string, std::string> start_sequence_numbers;  // kAtSequenceNumber: by shard id
  // GetRecords Limit, 1..10000. Default 1000.
  int records_per_request = 1000;
  // Wait before asking a shard again when it returned no record (Kinesis allows 5 GetRecords per
  // shard and second). Default 200 ms.
  absl::Duration poll_interval = absl::Milliseconds(200);
  // Time between two ListShards calls that discover new shards. Default 10 s.
  absl::Duration shard_discovery_interval = absl::Seconds(10);
  // Records fetched ahead of the job (per reader) at most; the fetching thread waits while the
  // queue holds this many. Must be > 0. Default 10000.
  size_t queue_capacity = 10000;
  // Optional: a record whose bytes satisfy this ends its shard (the record itself is not emitted),
  // as Kafka's isEndOfStream. A reader ends once every shard of the stream has ended (at such a
  // record or read to SHARD_END, by whichever reader owns it): a job can thus finish (tests,
  // backfills). Called on the reader's fetching thread. Default none: the source never ends.
  std::function<bool(std::string_view data)> is_end_of_stream;

  absl::Status Validate() const;
};

struct KinesisSinkOptions {
  KinesisConnectionOptions connection;
  // The stream to write. Required.
  std::string stream_name;
  // A PutRecords call carries at most this many records (1..500) and bytes (data plus partition
  // keys, up to 5 MiB). Defaults 500 and 5 MiB. Write() sends a batch as soon as one is full.
  int max_batch_records = 500;
  size_t max_batch_bytes = size_t{5} << 20;
  // Records that PutRecords rejected (a per-record ErrorCode) are sent again with backoff, at most
  // this many rounds; then the job fails with ResourceExhausted/Internal naming the stream and the
  // last error. 0: without limit. Default 20.
  int max_record_attempts = 20;

  absl::Status Validate() const;
};

namespace internal {

// One record as read from a shard (non-template part of KinesisSource).
struct KinesisRawRecord {
  std::string data;
  std::string partition_key;
  std::string sequence_number;
  int64_t arrival_ms = 0;  // ApproximateArrivalTimestamp, Unix milliseconds
};

// A run of records of one shard, in order; `finished` when the shard ended after them (read to
// SHARD_END, or an end-of-stream record).
struct KinesisShardBatch {
  std::string shard_id;
  std::vector<KinesisRawRecord> records;
  bool finished = false;
};

// The shard reading machinery of a KinesisSource subtask: a background thread lists the shards,
// picks those of this subtask (stable hash of the shard id modulo parallelism), reads them with
// GetShardIterator/GetRecords into a bounded queue, and wakes the task. Defined in
// src/connectors/kinesis/kinesis_source.cc. Poll/Snapshot/Restore/Close on the task's thread.
class KinesisSourceShared;  // what the readers of one KinesisSource share (finished shards)
std::shared_ptr<KinesisSourceShared> MakeKinesisSourceShared();

class KinesisReaderCore {
 public:
  static absl::StatusOr<std::unique_ptr<KinesisReaderCore>> Create(
      const KinesisSourceOptions& options, const SourceContext& ctx,
      std::shared_ptr<KinesisSourceShared> shared);
  virtual ~KinesisReaderCore() = default;
  // Moves up to about `max_records` records into `out` (cleared first). End(): every shard of this
  // reader is finished (only with is_end_of_stream). An error names the stream, shard and call.
  virtual absl::StatusOr<PollResult> Poll(std::vector<KinesisShardBatch>& out, int max_records) = 0;
  // Per-shard positions of everything Poll handed out so far.
  virtual std::string Snapshot() = 0;
  virtual absl::Status Restore(std::string_view state) = 0;
  // Another parallelism: the positions of the shards this reader owns now, and every finished
  // shard (a child waits for its parents, whoever owns them), from all old subtasks' states.
  virtual absl::Status RestoreRescaled(const std::vector<std::string>& states) = 0;
  virtual void Close() = 0;
};

// The batching PutRecords machinery of a KinesisSink subtask. Defined in
// src/connectors/kinesis/kinesis_sink.cc. Used by one thread at a time.
class KinesisWriterCore {
 public:
  static absl::StatusOr<std::unique_ptr<KinesisWriterCore>> Create(
      const KinesisSinkOptions& options, const RuntimeContext& ctx);
  virtual ~KinesisWriterCore() = default;
  // Buffers one record; sends the batch (blocking, with retries) when it is full.
  virtual absl::Status Add(std::string data, std::string partition_key) = 0;
  // Sends everything buffered; returns when Kinesis accepted every record.
  virtual absl::Status Flush() = 0;
  virtual void Close() = 0;
};

struct KinesisIdentity {
  std::string operator()(std::string_view data) const { return std::string(data); }
};
struct KinesisStringBytes {
  const std::string& operator()(const std::string& s) const { return s; }
};

}  // namespace internal

// Reads every shard of a Kinesis stream. `deserializer(std::string_view data)` turns a record's
// bytes into a T (default: the bytes as a std::string); an exception it throws fails the job.
// Each record carries its ApproximateArrivalTimestamp as its timestamp (the default event time).
//
// Shards are spread over the parallel readers by a stable hash of the shard id modulo the
// parallelism; each shard is a split with its own watermark (out.ForSplit(shard id)), released
// when read to its end. A child shard (after SplitShard or MergeShards) is read only after its
// parents were read to SHARD_END. Checkpoints hold the sequence number of the last record
// emitted per shard, and a restored reader continues AFTER_SEQUENCE_NUMBER: exactly-once.
// A job may resume at another parallelism: each reader takes the positions of the shards it owns
// at the new parallelism (and every finished shard, for the children's order).
template <typename T = std::string, typename Deserializer = internal::KinesisIdentity>
  requires std::is_invocable_r_v<T, Deserializer&, std::string_view>
class KinesisSource : public Source<T> {
 public:
  explicit KinesisSource(KinesisSourceOptions options, Deserializer deserializer = Deserializer())
      : options_(std::move(options)),
        deserializer_(std::move(deserializer)),
        shared_(internal::MakeKinesisSourceShared()) {}
  // A copy is another source (another node of a job): it does not share the readers' bookkeeping.
  KinesisSource(const KinesisSource& other)
      : options_(other.options_),
        deserializer_(other.deserializer_),
        shared_(internal::MakeKinesisSourceShared()) {}
  KinesisSource(KinesisSource&&) = default;
  KinesisSource& operator=(const KinesisSource& other) {
    if (this != &other) {
      options_ = other.options_;
      deserializer_ = other.deserializer_;
      shared_ = internal::MakeKinesisSourceShared();
    }
    return *this;
  }
  KinesisSource& operator=(KinesisSource&&) = default;

  bool IsBounded() const override { return false; }
  std::string Describe() const override { return absl::StrCat("Kinesis ", options_.stream_name); }

  absl::StatusOr<std::unique_ptr<SourceReader<T>>> CreateReader(const SourceContext& ctx) override {
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<internal::KinesisReaderCore> core,
                            internal::KinesisReaderCore::Create(options_, ctx, shared_));
    return std::unique_ptr<SourceReader<T>>(new Reader(std::move(core), deserializer_));
  }

 private:
  class Reader final : public SourceReader<T> {
   public:
    Reader(std::unique_ptr<internal::KinesisReaderCore> core, Deserializer deserializer)
        : core_(std::move(core)), deserializer_(std::move(deserializer)) {}
    ~Reader() override { core_->Close(); }

    absl::StatusOr<PollResult> PollNext(Collector<T>& out, int max_records) override {
      SLUICE_ASSIGN_OR_RETURN(PollResult result, core_->Poll(batches_, max_records));
      for (internal::KinesisShardBatch& batch : batches_) {
        // An empty batch of an unfinished shard announces it: ForSplit registers its split.
        if (!batch.records.empty() || !batch.finished) {
          Collector<T>& split = out.ForSplit(batch.shard_id);
          for (internal::KinesisRawRecord& r : batch.records) {
            split.CollectWithTimestamp(deserializer_(std::string_view(r.data)), r.arrival_ms);
          }
        }
        if (batch.finished) out.ReleaseSplit(batch.shard_id);
      }
      return result;
    }
    void Close() override { core_->Close(); }
    absl::StatusOr<std::string> SnapshotState(int64_t) override { return core_->Snapshot(); }
    absl::Status RestoreState(std::string_view state) override { return core_->Restore(state); }
    absl::Status RestoreRescaled(const std::vector<std::string>& states) override {
      return core_->RestoreRescaled(states);
    }

   private:
    std::unique_ptr<internal::KinesisReaderCore> core_;
    Deserializer deserializer_;
    std::vector<internal::KinesisShardBatch> batches_;
  };

  KinesisSourceOptions options_;
  Deserializer deserializer_;
  std::shared_ptr<internal::KinesisSourceShared> shared_;
};

template <typename Deserializer>
KinesisSource(KinesisSourceOptions, Deserializer)
    -> KinesisSource<std::decay_t<std::invoke_result_t<Deserializer&, std::string_view>>,
                     Deserializer>;

// Writes records to a Kinesis stream with PutRecords. `partition_key(const T&)` gives each
// record's partition key (1..256 characters); `serializer(const T&)` its bytes (default for
// std::string: the string itself). A record is at most 1 MiB (data plus key): a larger one fails
// the job with InvalidArgument naming the stream.
//
// At-least-once: Write buffers one batch and sends it when full (blocking while it is being sent:
// backpressure), SnapshotState (a checkpoint) and Finish send the rest and wait until Kinesis
// accepted every record. Records of a failed attempt may be written twice.
template <typename T, typename KeyFn, typename Serializer = internal::KinesisStringBytes>
  requires std::is_invocable_v<KeyFn&, const T&> && std::is_invocable_v<Serializer&, const T&>
class KinesisSink : public Sink<T> {
 public:
  KinesisSink(KinesisSinkOptions options, KeyFn partition_key, Serializer serializer = Serializer())
      : options_(std::move(options)),
        partition_key_(std::move(partition_key)),
        serializer_(std::move(serializer)) {}

  std::string Describe() const override { return absl::StrCat("Kinesis ", options_.stream_name); }

  absl::StatusOr<std::unique_ptr<SinkWriter<T>>> CreateWriter(const RuntimeContext& ctx) override {
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<internal::KinesisWriterCore> core,
                            internal::KinesisWriterCore::Create(options_, ctx));
    return std::unique_ptr<SinkWriter<T>>(new Writer(std::move(core), partition_key_, serializer_));
  }

 private:
  class Writer final : public SinkWriter<T> {
   public:
    Writer(std::unique_ptr<internal::KinesisWriterCore> core, KeyFn key, Serializer serializer)
        : core_(std::move(core)), key_(std::move(key)), serializer_(std::move(serializer)) {}
    ~Writer() override { core_->Close(); }
    absl::Status Write(std::vector<T>& records) override {
      for (const T& r : records) {
        SLUICE_RETURN_IF_ERROR(core_->Add(std::string(serializer_(r)), std::string(key_(r))));
      }
      return absl::OkStatus();
    }
    absl::Status Finish() override { return core_->Flush(); }
    void Close() override { core_->Close(); }
    absl::StatusOr<std::string> SnapshotState(int64_t) override {
      SLUICE_RETURN_IF_ERROR(core_->Flush());
      return std::string();
    }

   private:
    std::unique_ptr<internal::KinesisWriterCore> core_;
    KeyFn key_;
    Serializer serializer_;
  };

  KinesisSinkOptions options_;
  KeyFn partition_key_;
  Serializer serializer_;
};

template <typename KeyFn>
KinesisSink(KinesisSinkOptions, KeyFn) -> KinesisSink<std::string, KeyFn>;

// KinesisSink<T> with the function types deduced: MakeKinesisSink<Click>(options, key, to_bytes).
template <typename T, typename KeyFn, typename Serializer>
KinesisSink<T, KeyFn, Serializer> MakeKinesisSink(KinesisSinkOptions options, KeyFn partition_key,
                                                  Serializer serializer) {
  return KinesisSink<T, KeyFn, Serializer>(std::move(options), std::move(partition_key),
                                           std::move(serializer));
}

}  // namespace sluice
