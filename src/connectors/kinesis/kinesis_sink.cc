// KinesisWriterCore: the non-template half of KinesisSink (include/sluice/connectors/kinesis.h).
// Buffers one PutRecords batch; sends it when full, on Flush (checkpoints, end of input), and
// sends again, with backoff, the records PutRecords rejected one by one (per-record ErrorCode).
#include <algorithm>

#include "absl/strings/str_cat.h"

#include <sluice/connectors/kinesis.h>
#include <sluice/core/status.h>

#include "connectors/kinesis/kinesis_client.h"

namespace sluice {

absl::Status KinesisSinkOptions::Validate() const {
  SLUICE_RETURN_IF_ERROR(connection.Validate());
  if (stream_name.empty()) {
    return absl::InvalidArgumentError("KinesisSinkOptions.stream_name is required");
  }
  if (max_batch_records < 1 || max_batch_records > 500) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KinesisSinkOptions.max_batch_records must be in [1, 500], got ", max_batch_records));
  }
  if (max_batch_bytes < (size_t{1} << 20) || max_batch_bytes > (size_t{5} << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KinesisSinkOptions.max_batch_bytes must be in [1 MiB, 5 MiB], got ", max_batch_bytes));
  }
  if (max_record_attempts < 0) {
    return absl::InvalidArgumentError("KinesisSinkOptions.max_record_attempts must be >= 0");
  }
  return absl::OkStatus();
}

namespace internal {
namespace {

using kinesis_internal::KinesisClient;
using kinesis_internal::PutRecordsEntry;
using kinesis_internal::PutRecordsResultEntry;

constexpr size_t kMaxRecordBytes = size_t{1} << 20;

class WriterCoreImpl final : public KinesisWriterCore {
 public:
  WriterCoreImpl(KinesisSinkOptions options, std::unique_ptr<KinesisClient> client)
      : options_(std::move(options)), client_(std::move(client)) {}

  absl::Status Add(std::string data, std::string partition_key) override {
    if (partition_key.empty() || partition_key.size() > 256) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Kinesis sink of stream '", options_.stream_name,
          "': a partition key must have 1 to 256 characters, got ", partition_key.size()));
    }
    const size_t bytes = data.size() + partition_key.size();
    if (bytes > kMaxRecordBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("Kinesis sink of stream '", options_.stream_name, "': a record of ", bytes,
                       " bytes (data plus partition key) exceeds the 1 MiB limit"));
    }
    if (buffered_bytes_ + bytes > options_.max_batch_bytes) SLUICE_RETURN_IF_ERROR(Flush());
    buffer_.push_back({std::move(data), std::move(partition_key), ""});
    buffered_bytes_ += bytes;
    if (buffer_.size() >= static_cast<size_t>(options_.max_batch_records)) return Flush();
    return absl::OkStatus();
  }

  absl::Status Flush() override {
    int attempt = 0;
    while (!buffer_.empty()) {
      ++attempt;
      SLUICE_ASSIGN_OR_RETURN(std::vector<PutRecordsResultEntry> results,
                              client_->PutRecords(options_.stream_name, buffer_));
      std::vector<PutRecordsEntry> failed;
      size_t failed_bytes = 0;
      const PutRecordsResultEntry* last_error = nullptr;
      for (size_t i = 0; i < results.size(); ++i) {
        if (results[i].error_code.empty()) continue;
        failed_bytes += buffer_[i].data.size() + buffer_[i].partition_key.size();
        failed.push_back(std::move(buffer_[i]));
        last_error = &results[i];
      }
      if (failed.empty()) break;
      if (options_.max_record_attempts != 0 && attempt >= options_.max_record_attempts) {
        std::string message =
            absl::StrCat("Kinesis PutRecords on stream '", options_.stream_name,
                         "': ", failed.size(), " records still rejected after ", attempt,
                         " attempts: ", last_error->error_code, ": ", last_error->error_message);
        buffer_.clear();
        buffered_bytes_ = 0;
        if (last_error->error_code == "ProvisionedThroughputExceededException") {
          return absl::ResourceExhaustedError(message);
        }
        return absl::InternalError(message);
      }
      buffer_ = std::move(failed);
      buffered_bytes_ = failed_bytes;
      const KinesisConnectionOptions& c = options_.connection;
      absl::Duration backoff = c.initial_backoff;
      for (int i = 1; i < attempt && backoff < c.max_backoff; ++i) backoff *= 2;
      if (!client_->SleepFor(std::min(backoff, c.max_backoff))) {
        return absl::CancelledError(
            absl::StrCat("Kinesis PutRecords on stream '", options_.stream_name, "': cancelled"));
      }
    }
    buffer_.clear();
    buffered_bytes_ = 0;
    return absl::OkStatus();
  }

  void Close() override { client_->Cancel(); }

 private:
  const KinesisSinkOptions options_;
  std::unique_ptr<KinesisClient> client_;
  std::vector<PutRecordsEntry> buffer_;
  size_t buffered_bytes_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<KinesisWriterCore>> KinesisWriterCore::Create(
    const KinesisSinkOptions& options, const RuntimeContext&) {
  SLUICE_RETURN_IF_ERROR(options.Validate());
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<KinesisClient> client,
                          KinesisClient::Create(options.connection));
  return std::unique_ptr<KinesisWriterCore>(new WriterCoreImpl(options, std::move(client)));
}

}  // namespace internal
}  // namespace sluice
