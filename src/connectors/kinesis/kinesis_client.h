// The Kinesis Data Streams API over HTTP(S): the JSON 1.1 protocol (X-Amz-Target
// Kinesis_20131202.<Action>), signed with SigV4, retried with exponential backoff on throttling,
// HTTP 5xx and network errors. Used by the source and sink cores and by the tests.
//
//   SLUICE_ASSIGN_OR_RETURN(auto client, KinesisClient::Create(connection_options));
//   SLUICE_ASSIGN_OR_RETURN(std::vector<ShardInfo> shards, client->ListShards("clicks"));
//
// Thread-compatible: one thread makes calls; Cancel() may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

#include <sluice/connectors/kinesis.h>

#include "connectors/kinesis/http_client.h"
#include "connectors/kinesis/json.h"
#include "connectors/kinesis/sigv4.h"

namespace sluice::kinesis_internal {

struct ShardInfo {
  std::string shard_id;
  std::string parent_shard_id;           // empty when none
  std::string adjacent_parent_shard_id;  // a merge's second parent; empty when none
  std::string starting_sequence_number;
  std::string ending_sequence_number;  // empty while the shard is open
  std::string starting_hash_key;
  std::string ending_hash_key;
  bool closed() const { return !ending_sequence_number.empty(); }
};

struct GetRecordsResult {
  std::vector<sluice::internal::KinesisRawRecord> records;
  std::string next_iterator;  // empty: the shard is closed and read to its end (SHARD_END)
  int64_t millis_behind_latest = 0;
};

struct PutRecordsEntry {
  std::string data;
  std::string partition_key;
  std::string explicit_hash_key;  // optional
};

struct PutRecordsResultEntry {
  std::string sequence_number;  // set on success
  std::string shard_id;
  std::string error_code;  // set on failure
  std::string error_message;
};

// The resolved connection: region, endpoint, credentials (options, then environment).
struct ResolvedConnection {
  HttpEndpoint endpoint;
  std::string region;
  AwsCredentials credentials;
};
absl::StatusOr<ResolvedConnection> ResolveConnection(const KinesisConnectionOptions& options);

class KinesisClient {
 public:
  static absl::StatusOr<std::unique_ptr<KinesisClient>> Create(
      const KinesisConnectionOptions& options);

  // One API call with retries. `context` names the stream (and shard) for error messages:
  // "Kinesis <action> on <context>: <AWS error type>: <message>". Errors: NotFound
  // (ResourceNotFoundException), ResourceExhausted (throttled after every attempt),
  // InvalidArgument (validation), PermissionDenied (credentials), FailedPrecondition
  // (ExpiredIteratorException, ResourceInUseException), Unavailable (network, HTTP 5xx).
  absl::StatusOr<Json> Call(absl::string_view action, const std::string& body,
                            absl::string_view context);

  absl::StatusOr<std::vector<ShardInfo>> ListShards(const std::string& stream);
  // type: TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER (`position` = sequence
  // number) or AT_TIMESTAMP (`timestamp`).
  absl::StatusOr<std::string> GetShardIterator(const std::string& stream,
                                               const std::string& shard_id, absl::string_view type,
                                               const std::string& position = "",
                                               absl::Time timestamp = absl::UnixEpoch());
  absl::StatusOr<GetRecordsResult> GetRecords(const std::string& stream,
                                              const std::string& shard_id,
                                              const std::string& iterator, int limit);
  absl::StatusOr<std::vector<PutRecordsResultEntry>> PutRecords(
      const std::string& stream, const std::vector<PutRecordsEntry>& entries);

  // Administration (tests, tools).
  absl::Status CreateStream(const std::string& stream, int shards);
  absl::Status DeleteStream(const std::string& stream);
  // StreamStatus of DescribeStreamSummary ("ACTIVE", "CREATING", "UPDATING", ...).
  absl::StatusOr<std::string> StreamStatus(const std::string& stream);
  absl::Status WaitForActive(const std::string& stream, absl::Duration timeout);
  absl::Status SplitShard(const std::string& stream, const std::string& shard_id,
                          const std::string& new_starting_hash_key);
  absl::Status MergeShards(const std::string& stream, const std::string& shard_id,
                           const std::string& adjacent_shard_id);

  // Aborts the call in progress (and its backoff); every later call fails with Cancelled.
  void Cancel();
  bool cancelled() const { return cancelled_.load(); }
  // Sleeps `d` unless cancelled first; false when cancelled.
  bool SleepFor(absl::Duration d);

  const KinesisConnectionOptions& options() const { return options_; }

 private:
  KinesisClient(KinesisConnectionOptions options, ResolvedConnection connection);

  KinesisConnectionOptions options_;
  ResolvedConnection connection_;
  HttpClient http_;
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace sluice::kinesis_internal
