#include "connectors/kinesis/kinesis_client.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

#include <sluice/core/status.h>

namespace sluice {

absl::Status KinesisConnectionOptions::Validate() const {
  if (request_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("KinesisConnectionOptions.request_timeout must be > 0");
  }
  if (initial_backoff <= absl::ZeroDuration() || max_backoff < initial_backoff) {
    return absl::InvalidArgumentError(
        "KinesisConnectionOptions: need 0 < initial_backoff <= max_backoff");
  }
  if (max_attempts < 0) {
    return absl::InvalidArgumentError("KinesisConnectionOptions.max_attempts must be >= 0");
  }
  if (!endpoint.empty()) {
    SLUICE_RETURN_IF_ERROR(kinesis_internal::HttpEndpoint::Parse(endpoint).status());
  }
  return absl::OkStatus();
}

}  // namespace sluice

namespace sluice::kinesis_internal {

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

bool Retryable(absl::string_view type) {
  return type == "ProvisionedThroughputExceededException" || type == "LimitExceededException" ||
         type == "ThrottlingException" || type == "KMSThrottlingException" ||
         type == "InternalFailure" || type == "ServiceUnavailable";
}

absl::Status ErrorFor(absl::string_view type, std::string message) {
  if (type == "ResourceNotFoundException") return absl::NotFoundError(message);
  if (type == "ProvisionedThroughputExceededException" || type == "LimitExceededException" ||
      type == "ThrottlingException" || type == "KMSThrottlingException") {
    return absl::ResourceExhaustedError(message);
  }
  if (type == "InvalidArgumentException" || type == "ValidationException" ||
      type == "SerializationException") {
    return absl::InvalidArgumentError(message);
  }
  if (type == "UnrecognizedClientException" || type == "AccessDeniedException" ||
      type == "IncompleteSignatureException" || type == "MissingAuthenticationTokenException" ||
      type == "InvalidSignatureException" || type == "ExpiredTokenException") {
    return absl::PermissionDeniedError(message);
  }
  if (type == "ExpiredIteratorException" || type == "ResourceInUseException") {
    return absl::FailedPreconditionError(message);
  }
  return absl::UnavailableError(message);
}

absl::Duration Backoff(const KinesisConnectionOptions& o, int attempt) {
  absl::Duration d = o.initial_backoff;
  for (int i = 1; i < attempt && d < o.max_backoff; ++i) d *= 2;
  return std::min(d, o.max_backoff);
}

std::string StreamContext(const std::string& stream) {
  return absl::StrCat("stream '", stream, "'");
}
std::string ShardContext(const std::string& stream, const std::string& shard) {
  return absl::StrCat("stream '", stream, "' shard '", shard, "'");
}

absl::Status ParseError(absl::string_view action, absl::string_view context, const char* what) {
  return absl::InternalError(
      absl::StrCat("Kinesis ", action, " on ", context, ": unexpected response: ", what));
}

}  // namespace

absl::StatusOr<ResolvedConnection> ResolveConnection(const KinesisConnectionOptions& options) {
  SLUICE_RETURN_IF_ERROR(options.Validate());
  ResolvedConnection c;
  c.region = options.region;
  if (c.region.empty()) c.region = Env("AWS_REGION");
  if (c.region.empty()) c.region = Env("AWS_DEFAULT_REGION");
  std::string endpoint = options.endpoint;
  if (endpoint.empty()) {
    if (c.region.empty()) {
      return absl::FailedPreconditionError(
          "Kinesis: no region: set KinesisConnectionOptions.region, AWS_REGION or "
          "AWS_DEFAULT_REGION (or an endpoint)");
    }
    endpoint = absl::StrCat("https://kinesis.", c.region, ".amazonaws.com");
  }
  if (c.region.empty()) c.region = "us-east-1";
  SLUICE_ASSIGN_OR_RETURN(c.endpoint, HttpEndpoint::Parse(endpoint));
  c.credentials.access_key_id = options.access_key_id;
  c.credentials.secret_access_key = options.secret_access_key;
  c.credentials.session_token = options.session_token;
  if (c.credentials.access_key_id.empty() && c.credentials.secret_access_key.empty()) {
    c.credentials.access_key_id = Env("AWS_ACCESS_KEY_ID");
    c.credentials.secret_access_key = Env("AWS_SECRET_ACCESS_KEY");
    if (c.credentials.session_token.empty()) c.credentials.session_token = Env("AWS_SESSION_TOKEN");
  }
  if (c.credentials.access_key_id.empty() || c.credentials.secret_access_key.empty()) {
    return absl::FailedPreconditionError(
        "Kinesis: no AWS credentials: set KinesisConnectionOptions.access_key_id and "
        "secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
  }
  return c;
}

KinesisClient::KinesisClient(KinesisConnectionOptions options, ResolvedConnection connection)
    : options_(std::move(options)),
      connection_(std::move(connection)),
      http_(connection_.endpoint,
            {.request_timeout = options_.request_timeout, .verify_tls = options_.verify_tls}) {}

absl::StatusOr<std::unique_ptr<KinesisClient>> KinesisClient::Create(
    const KinesisConnectionOptions& options) {
  SLUICE_ASSIGN_OR_RETURN(ResolvedConnection c, ResolveConnection(options));
  return std::unique_ptr<KinesisClient>(new KinesisClient(options, std::move(c)));
}

void KinesisClient::Cancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_.store(true);
  }
  cv_.notify_all();
  http_.Cancel();
}

bool KinesisClient::SleepFor(absl::Duration d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoMicroseconds(d), [&] { return cancelled_.load(); });
  return !cancelled_.load();
}

absl::StatusOr<Json> KinesisClient::Call(absl::string_view action, const std::string& body,
                                         absl::string_view context) {
  const std::string target = absl::StrCat("Kinesis_20131202.", action);
  for (int attempt = 1;; ++attempt) {
    if (cancelled_.load()) {
      return absl::CancelledError(absl::StrCat("Kinesis ", action, " on ", context, ": cancelled"));
    }
    SigV4Request req;
    req.method = "POST";
    req.path = connection_.endpoint.path;
    req.headers = {{"Host", connection_.endpoint.HostHeader()},
                   {"Content-Type", "application/x-amz-json-1.1"},
                   {"X-Amz-Target", target},
                   {"X-Amz-Date", AmzDate(absl::ToUnixSeconds(absl::Now()))}};
    if (!connection_.credentials.session_token.empty()) {
      req.headers.emplace_back("X-Amz-Security-Token", connection_.credentials.session_token);
    }
    req.payload = body;
    std::string authorization =
        SigV4Authorization(req, connection_.credentials, connection_.region, "kinesis");
    req.headers.erase(req.headers.begin());  // Host: set by the HTTP client
    req.headers.emplace_back("Authorization", std::move(authorization));

    std::string type;
    std::string message;
    absl::StatusOr<HttpResponse> response = http_.Post(req.headers, body);
    bool retry = false;
    if (!response.ok()) {
      if (absl::IsCancelled(response.status()) || cancelled_.load()) {
        return absl::CancelledError(
            absl::StrCat("Kinesis ", action, " on ", context, ": cancelled"));
      }
      message = std::string(response.status().message());
      retry = true;
    } else if (response->status == 200) {
      // CreateStream, SplitShard, ... answer with an empty body.
      absl::StatusOr<Json> doc = Json::Parse(response->body.empty() ? "{}" : response->body);
      if (!doc.ok()) {
        return absl::InternalError(absl::StrCat("Kinesis ", action, " on ", context,
                                                ": unreadable response: ", doc.status().message()));
      }
      return doc;
    } else {
      absl::StatusOr<Json> doc = Json::Parse(response->body);
      if (doc.ok()) {
        type = (*doc)["__type"].string();
        if (size_t hash = type.rfind('#'); hash != std::string::npos) type = type.substr(hash + 1);
        message = (*doc)["message"].string();
        if (message.empty()) message = (*doc)["Message"].string();
      }
      if (type.empty()) type = absl::StrCat("HTTP ", response->status);
      if (message.empty() && !doc.ok()) message = response->body.substr(0, 200);
      retry = response->status >= 500 || Retryable(type);
    }
    if (retry && (options_.max_attempts == 0 || attempt < options_.max_attempts)) {
      if (!SleepFor(Backoff(options_, attempt))) continue;  // cancelled: reported above
      continue;
    }
    std::string text = absl::StrCat("Kinesis ", action, " on ", context, ": ");
    if (!type.empty()) absl::StrAppend(&text, type, ": ");
    absl::StrAppend(&text, message);
    if (attempt > 1) absl::StrAppend(&text, " (after ", attempt, " attempts)");
    if (!response.ok()) {
      return absl::Status(response.status().code() == absl::StatusCode::kDeadlineExceeded
                              ? absl::StatusCode::kDeadlineExceeded
                              : absl::StatusCode::kUnavailable,
                          text);
    }
    if (response->status >= 500 && !Retryable(type)) return absl::UnavailableError(text);
    return ErrorFor(type, std::move(text));
  }
}

absl::StatusOr<std::vector<ShardInfo>> KinesisClient::ListShards(const std::string& stream) {
  std::vector<ShardInfo> shards;
  std::string next_token;
  while (true) {
    JsonWriter w;
    w.BeginObject();
    if (next_token.empty()) {
      w.Field("StreamName", stream);
    } else {
      w.Field("NextToken", next_token);
    }
    w.EndObject();
    SLUICE_ASSIGN_OR_RETURN(Json doc, Call("ListShards", w.str(), StreamContext(stream)));
    if (!doc["Shards"].is_array()) {
      return ParseError("ListShards", StreamContext(stream), "no Shards");
    }
    for (const Json& s : doc["Shards"].array()) {
      ShardInfo info;
      info.shard_id = s["ShardId"].string();
      info.parent_shard_id = s["ParentShardId"].string();
      info.adjacent_parent_shard_id = s["AdjacentParentShardId"].string();
      info.starting_sequence_number = s["SequenceNumberRange"]["StartingSequenceNumber"].string();
      info.ending_sequence_number = s["SequenceNumberRange"]["EndingSequenceNumber"].string();
      info.starting_hash_key = s["HashKeyRange"]["StartingHashKey"].string();
      info.ending_hash_key = s["HashKeyRange"]["EndingHashKey"].string();
      if (info.shard_id.empty())
        return ParseError("ListShards", StreamContext(stream), "no ShardId");
      shards.push_back(std::move(info));
    }
    next_token = doc["NextToken"].string();
    if (next_token.empty()) return shards;
  }
}

absl::StatusOr<std::string> KinesisClient::GetShardIterator(const std::string& stream,
                                                            const std::string& shard_id,
                                                            absl::string_view type,
                                                            const std::string& position,
                                                            absl::Time timestamp) {
  JsonWriter w;
  w.BeginObject();
  w.Field("StreamName", stream);
  w.Field("ShardId", shard_id);
  w.Field("ShardIteratorType", type);
  if (type == "AT_SEQUENCE_NUMBER" || type == "AFTER_SEQUENCE_NUMBER") {
    w.Field("StartingSequenceNumber", position);
  }
  if (type == "AT_TIMESTAMP") {
    // Seconds with exactly three decimals: the double the server parses is then the one it
    // compares with its own arrival times (milliseconds / 1000), with no rounding in between.
    const int64_t ms = std::max<int64_t>(absl::ToUnixMillis(timestamp), 0);
    w.Key("Timestamp");
    w.RawNumber(absl::StrFormat("%d.%03d", ms / 1000, ms % 1000));
  }
  w.EndObject();
  SLUICE_ASSIGN_OR_RETURN(Json doc,
                          Call("GetShardIterator", w.str(), ShardContext(stream, shard_id)));
  std::string iterator = doc["ShardIterator"].string();
  if (iterator.empty()) {
    return ParseError("GetShardIterator", ShardContext(stream, shard_id), "no ShardIterator");
  }
  return iterator;
}

absl::StatusOr<GetRecordsResult> KinesisClient::GetRecords(const std::string& stream,
                                                           const std::string& shard_id,
                                                           const std::string& iterator, int limit) {
  JsonWriter w;
  w.BeginObject();
  w.Field("ShardIterator", iterator);
  w.Key("Limit");
  w.Int(limit);
  w.EndObject();
  const std::string context = ShardContext(stream, shard_id);
  SLUICE_ASSIGN_OR_RETURN(Json doc, Call("GetRecords", w.str(), context));
  GetRecordsResult result;
  result.next_iterator = doc["NextShardIterator"].string();
  result.millis_behind_latest = doc["MillisBehindLatest"].integer();
  for (const Json& r : doc["Records"].array()) {
    sluice::internal::KinesisRawRecord rec;
    if (!absl::Base64Unescape(r["Data"].string(), &rec.data)) {
      return ParseError("GetRecords", context, "Data is not base64");
    }
    rec.partition_key = r["PartitionKey"].string();
    rec.sequence_number = r["SequenceNumber"].string();
    rec.arrival_ms = std::llround(r["ApproximateArrivalTimestamp"].number() * 1000.0);
    if (rec.sequence_number.empty()) return ParseError("GetRecords", context, "no SequenceNumber");
    result.records.push_back(std::move(rec));
  }
  return result;
}

absl::StatusOr<std::vector<PutRecordsResultEntry>> KinesisClient::PutRecords(
    const std::string& stream, const std::vector<PutRecordsEntry>& entries) {
  JsonWriter w;
  w.BeginObject();
  w.Field("StreamName", stream);
  w.Key("Records");
  w.BeginArray();
  for (const PutRecordsEntry& e : entries) {
    w.BeginObject();
    w.Field("Data", absl::Base64Escape(e.data));
    w.Field("PartitionKey", e.partition_key);
    if (!e.explicit_hash_key.empty()) w.Field("ExplicitHashKey", e.explicit_hash_key);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  SLUICE_ASSIGN_OR_RETURN(Json doc, Call("PutRecords", w.str(), StreamContext(stream)));
  const std::vector<Json>& records = doc["Records"].array();
  if (records.size() != entries.size()) {
    return ParseError("PutRecords", StreamContext(stream), "Records does not match the request");
  }
  std::vector<PutRecordsResultEntry> out;
  out.reserve(records.size());
  for (const Json& r : records) {
    out.push_back({r["SequenceNumber"].string(), r["ShardId"].string(), r["ErrorCode"].string(),
                   r["ErrorMessage"].string()});
  }
  return out;
}

absl::Status KinesisClient::CreateStream(const std::string& stream, int shards) {
  JsonWriter w;
  w.BeginObject();
  w.Field("StreamName", stream);
  w.Key("ShardCount");
  w.Int(shards);
  w.EndObject();
  return Call("CreateStream", w.str(), StreamContext(stream)).status();
}

absl::Status KinesisClient::DeleteStream(const std::string& stream) {
  JsonWriter w;
  w.BeginObject();
  w.Field("StreamName", stream);
  w.EndObject();
  return Call("DeleteStream", w.str(), StreamContext(stream)).status();
}

absl::StatusOr<std::string> KinesisClient::StreamStatus(const std::string& stream) {
  JsonWriter w;
  w.BeginObject();
  w.Field("StreamName", stream);
  w.EndObject();
  SLUICE_ASSIGN_OR_RETURN(Json doc, Call("DescribeStreamSummary", w.str(), StreamContext(stream)));
  return doc["StreamDescriptionSummary"]["StreamStatus"].string();
}

absl::Status KinesisClient::WaitForActive(const std::string& stream, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    SLUICE_ASSIGN_OR_RETURN(std::string status, StreamStatus(stream));
    if (status == "ACTIVE") return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("Kinesis stream '", stream, "' still ",
                                                      status, " after ",
                                                      absl::FormatDuration(timeout)));
    }
    if (!SleepFor(absl::Milliseconds(20))) return absl::CancelledError("cancelled");
  }
}

absl::Status KinesisClient::SplitShard(const std::string& stream, const std::string& shard_id,
                                       const std::string& new_starting_hash_key) {
  JsonWriter w;
  w.BeginObject();
  w.Field("StreamName", stream);
  w.Field("ShardToSplit", shard_id);
  w.Field("NewStartingHashKey", new_starting_hash_key);
  w.EndObject();
  return Call("SplitShard", w.str(), ShardContext(stream, shard_id)).status();
}

absl::Status KinesisClient::MergeShards(const std::string& stream, const std::string& shard_id,
                                        const std::string& adjacent_shard_id) {
  JsonWriter w;
  w.BeginObject();
  w.Field("StreamName", stream);
  w.Field("ShardToMerge", shard_id);
  w.Field("AdjacentShardToMerge", adjacent_shard_id);
  w.EndObject();
  return Call("MergeShards", w.str(), ShardContext(stream, shard_id)).status();
}

}  // namespace sluice::kinesis_internal
