// Socket connectors: SocketTextSource (lines read from a TCP connection, as Flink's
// socketTextStream) and SocketSink<T> (records written as lines to a TCP connection).
//
//   // In another terminal: nc -lk 9999
//   auto lines = env.FromSource(sluice::SocketTextSource("localhost", 9999));
//   lines.Map([](const std::string& s) { return s.size(); })
//       .SinkTo(sluice::SocketSink<size_t>("localhost", 9998));
//
// The implementation (Boost.Asio) lives in src/connectors/socket.cc; this header stays free of it.
//
// Thread-safety: sources and sinks are configured from one thread; each subtask's reader or writer
// is used by one thread at a time (the runtime's contract). The source's network I/O completes on
// the job's worker pool and is synchronized with its reader internally.
#pragma once

#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include <sluice/connectors/sink.h>
#include <sluice/connectors/source.h>
#include <sluice/core/format.h>
#include <sluice/core/runtime_context.h>
#include <sluice/core/status.h>

namespace sluice {

struct SocketSourceOptions {
  // Ends a record. When it is '\n', a '\r' right before it is dropped too (as Flink). Default '\n'.
  char delimiter = '\n';
  // A record longer than this fails the job with ResourceExhausted naming host:port, instead of
  // buffering without bound. Must be > 0. Default 1 MiB.
  size_t max_line_bytes = size_t{1} << 20;
  // Resolving and connecting longer than this fails the job with DeadlineExceeded. Must be > 0.
  // Default 10 seconds.
  absl::Duration connect_timeout = absl::Seconds(10);

  absl::Status Validate() const;
};

// The records of a TCP connection to `host:port`, split at `delimiter`, without it. Non-parallel;
// unbounded in kind (IsBounded() is false, so the job runs in streaming mode), but the reader ends
// when the peer closes the connection, emitting a last record without delimiter if there is one —
// exactly as Flink's socketTextStream (with no reconnection attempts).
//
// Connecting and reading are asynchronous on the job's worker pool: no worker ever blocks on the
// network, and cancelling the job closes the connection at once. A refused or failed connection
// fails the job with Unavailable naming host:port.
//
// Checkpoints: at-most-once: records in flight at a failure are lost. The reader's checkpointed
// state is empty (a TCP stream cannot be rewound), and a job resumed from a checkpoint opens a new
// connection and reads whatever the peer sends from then on; records the peer sent before the
// failure and that the job had not fully processed are not read again.
class SocketTextSource : public Source<std::string> {
 public:
  SocketTextSource(std::string host, int port, SocketSourceOptions options = {})
      : host_(std::move(host)), port_(port), options_(options) {}

  bool IsBounded() const override { return false; }
  int MaxParallelism() const override { return 1; }
  std::string Describe() const override {
    return absl::StrCat("Socket Stream ", host_, ":", port_);
  }
  // Defined in src/connectors/socket.cc. InvalidArgument for a bad port or bad options; the
  // connection is made when the reader is first polled.
  absl::StatusOr<std::unique_ptr<SourceReader<std::string>>> CreateReader(
      const SourceContext& ctx) override;

 private:
  std::string host_;
  int port_;
  SocketSourceOptions options_;
};

struct SocketSinkOptions {
  // Written after each record. Default '\n'.
  char delimiter = '\n';
  // Resolving and connecting longer than this fails the job with DeadlineExceeded. Must be > 0.
  // Default 10 seconds.
  absl::Duration connect_timeout = absl::Seconds(10);

  absl::Status Validate() const;
};

namespace internal {

// A blocking TCP client connection (Asio behind a pimpl). Not thread-safe.
class SocketConnection {
 public:
  // Resolves and connects; Unavailable (refused, unreachable, unknown host) or DeadlineExceeded,
  // naming host:port.
  static absl::StatusOr<std::unique_ptr<SocketConnection>> Connect(const std::string& host,
                                                                   int port,
                                                                   absl::Duration timeout);
  ~SocketConnection();
  SocketConnection(const SocketConnection&) = delete;
  SocketConnection& operator=(const SocketConnection&) = delete;

  // Writes all of `data`, blocking until the kernel took it. Unavailable naming host:port when the
  // connection is broken.
  absl::Status Write(std::string_view data);
  // Shuts the connection down, reporting errors. Idempotent.
  absl::Status Finish();
  // Closes at once without reporting errors.
  void Close();

 private:
  struct Impl;
  explicit SocketConnection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace internal

// Writes each record, rendered with FormatValue or by `format` (`std::string(const T&)`, without
// the delimiter), followed by `delimiter`, to a TCP connection to `host:port`. Every subtask opens
// its own connection when the job starts; a refused connection fails the job with Unavailable
// naming host:port before any record flows.
//
// Writes are blocking (one write per batch): a peer that stops reading stalls the sink's worker
// thread until the kernel's send buffer drains, and cancellation takes effect only after the
// write in progress returns. A broken connection fails the job with Unavailable naming host:port.
template <typename T>
class SocketSink : public Sink<T> {
 public:
  using Format = std::function<std::string(const T&)>;

  SocketSink(std::string host, int port, SocketSinkOptions options = {})
    requires TextFormattable<T>
      : host_(std::move(host)), port_(port), options_(options) {}
  SocketSink(std::string host, int port, Format format, SocketSinkOptions options = {})
      : host_(std::move(host)), port_(port), format_(std::move(format)), options_(options) {}

  std::string Describe() const override { return absl::StrCat("Socket ", host_, ":", port_); }

  absl::StatusOr<std::unique_ptr<SinkWriter<T>>> CreateWriter(const RuntimeContext&) override {
    SLUICE_RETURN_IF_ERROR(options_.Validate());
    SLUICE_ASSIGN_OR_RETURN(
        std::unique_ptr<internal::SocketConnection> connection,
        internal::SocketConnection::Connect(host_, port_, options_.connect_timeout));
    return std::unique_ptr<SinkWriter<T>>(
        new Writer(std::move(connection), format_, options_.delimiter));
  }

 private:
  class Writer : public SinkWriter<T> {
   public:
    Writer(std::unique_ptr<internal::SocketConnection> connection, Format format, char delimiter)
        : connection_(std::move(connection)), format_(std::move(format)), delimiter_(delimiter) {}

    absl::Status Write(std::vector<T>& records) override {
      if (format_) {
        text_.clear();
        for (const T& r : records) {
          text_ += format_(r);
          text_ += delimiter_;
        }
        return connection_->Write(text_);
      }
      if constexpr (TextFormattable<T>) {
        out_.str(std::string());
        for (const T& r : records) {
          FormatValue(out_, r);
          out_ << delimiter_;
        }
        return connection_->Write(out_.view());
      }
      return absl::OkStatus();
    }
    absl::Status Finish() override { return connection_->Finish(); }
    void Close() override { connection_->Close(); }

   private:
    std::unique_ptr<internal::SocketConnection> connection_;
    Format format_;
    char delimiter_;
    std::string text_;
    std::ostringstream out_;
  };

  std::string host_;
  int port_;
  Format format_;
  SocketSinkOptions options_;
};

}  // namespace sluice
