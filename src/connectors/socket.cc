// Socket connectors: SocketTextSource's reader and SocketSink's connection, on Boost.Asio.
//
// The source's I/O runs on the job's worker pool. Its state is shared (shared_ptr) between the
// reader and the completion handlers, so a handler that runs after the reader closed or died only
// touches the state. Every access to the Asio objects holds the state's mutex, and only single
// operations are used (no composed async_connect/async_read), so no Asio code touches a socket
// outside that mutex. Close() destroys the socket and resolver while the pool still runs, which
// cancels their operations.
#include <sluice/connectors/socket.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include "runtime/task_services.h"

namespace sluice {
namespace {

using boost::asio::ip::tcp;

absl::Status ValidatePort(const std::string& host, int port) {
  if (port < 1 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(host, ":", port, ": port must be in [1, 65535], got ", port));
  }
  return absl::OkStatus();
}

// --- SocketTextSource ---------------------------------------------------------------------------

// What the reader shares with the I/O completion handlers.
class SourceConnection : public std::enable_shared_from_this<SourceConnection> {
 public:
  // Bytes received but not yet taken by the reader above which reading pauses (backpressure).
  static constexpr size_t kMaxBuffered = size_t{1} << 20;

  SourceConnection(boost::asio::any_io_executor executor, SourceContext ctx, std::string host,
                   int port)
      : executor_(std::move(executor)),
        ctx_(std::move(ctx)),
        host_(std::move(host)),
        port_number_(static_cast<uint16_t>(port)),
        port_(std::to_string(port)),
        where_(absl::StrCat(host_, ":", port_)) {}

  const std::string& where() const { return where_; }

  // Starts resolving and connecting; completions wake the reader.
  void Start() {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    socket_.emplace(executor_);
    boost::system::error_code ec;
    boost::asio::ip::address address = boost::asio::ip::make_address(host_, ec);
    if (!ec) {
      // An address literal needs no resolver (which would start a resolver thread).
      endpoints_.emplace_back(address, port_number_);
      ConnectNextLocked();
      return;
    }
    resolver_.emplace(executor_);
    resolver_->async_resolve(host_, port_,
                             [self = shared_from_this()](const boost::system::error_code& ec,
                                                         tcp::resolver::results_type results) {
                               self->OnResolved(ec, std::move(results));
                             });
  }

  struct Taken {
    bool appended = false;
    bool connected = false;
    bool eof = false;
    absl::Status error;
  };

  // Moves the received bytes to the end of `*out` and reports the connection's state. Resumes
  // reading if it paused because the buffer was full.
  Taken Take(std::string* out) {
    std::lock_guard<std::mutex> lock(mu_);
    Taken taken;
    taken.appended = !received_.empty();
    if (out->empty()) {
      out->swap(received_);  // the common case: no partial record waiting
    } else {
      out->append(received_);
    }
    received_.clear();
    taken.connected = connected_;
    taken.eof = eof_;
    taken.error = error_;
    if (connected_ && !reading_ && !eof_ && error_.ok() && !closed_) StartReadLocked();
    return taken;
  }

  // Fails the connection (a timeout detected by the reader) and releases the socket.
  void FailAndClose(absl::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.ok()) error_ = std::move(status);
    CloseLocked();
  }

  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    CloseLocked();
  }

 private:
  void CloseLocked() {
    closed_ = true;
    // Destroying the I/O objects cancels their pending operations, whose handlers then see
    // `closed_` and return.
    if (resolver_) {
      resolver_->cancel();
      resolver_.reset();
    }
    if (socket_) {
      boost::system::error_code ignored;
      socket_->close(ignored);
      socket_.reset();
    }
  }

  void OnResolved(const boost::system::error_code& ec, tcp::resolver::results_type results) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      if (ec || results.empty()) {
        error_ = absl::UnavailableError(
            absl::StrCat(where_, ": cannot resolve host: ", ec ? ec.message() : "no addresses"));
      } else {
        for (const auto& entry : results) endpoints_.push_back(entry.endpoint());
        resolver_.reset();
        ConnectNextLocked();
        return;
      }
    }
    ctx_.Wake();
  }

  // Tries the next resolved address (as Asio's range async_connect does, but without touching the
  // socket outside the mutex).
  void ConnectNextLocked() {
    tcp::endpoint endpoint = endpoints_[next_endpoint_++];
    boost::system::error_code ignored;
    socket_->close(ignored);
    socket_->async_connect(endpoint,
                           [self = shared_from_this()](const boost::system::error_code& ec) {
                             self->OnConnected(ec);
                           });
  }

  void OnConnected(const boost::system::error_code& ec) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      if (ec) {
        if (next_endpoint_ < endpoints_.size()) {
          ConnectNextLocked();
          return;
        }
        error_ = absl::UnavailableError(absl::StrCat(where_, ": cannot connect: ", ec.message()));
      } else {
        connected_ = true;
        resolver_.reset();
        StartReadLocked();
      }
    }
    ctx_.Wake();
  }

  void StartReadLocked() {
    reading_ = true;
    socket_->async_read_some(boost::asio::buffer(chunk_),
                             [self = shared_from_this()](const boost::system::error_code& ec,
                                                         size_t n) { self->OnRead(ec, n); });
  }

  void OnRead(const boost::system::error_code& ec, size_t n) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      reading_ = false;
      if (closed_) return;
      received_.append(chunk_.data(), n);
      if (ec == boost::asio::error::eof) {
        eof_ = true;
      } else if (ec) {
        error_ = absl::UnavailableError(absl::StrCat(where_, ": read failed: ", ec.message()));
      } else if (received_.size() < kMaxBuffered) {
        StartReadLocked();
      }
    }
    ctx_.Wake();
  }

  const boost::asio::any_io_executor executor_;
  const SourceContext ctx_;
  const std::string host_;
  const uint16_t port_number_;
  const std::string port_;
  const std::string where_;

  std::mutex mu_;
  std::optional<tcp::resolver> resolver_;
  std::optional<tcp::socket> socket_;
  std::vector<tcp::endpoint> endpoints_;
  size_t next_endpoint_ = 0;
  bool closed_ = false;
  bool connected_ = false;
  bool reading_ = false;
  bool eof_ = false;
  absl::Status error_;
  std::string received_;
  // Target of the one outstanding read.
  std::array<char, 64 << 10> chunk_;
};

class SocketTextReader : public SourceReader<std::string> {
 public:
  SocketTextReader(std::shared_ptr<SourceConnection> connection, SocketSourceOptions options)
      : connection_(std::move(connection)), options_(options) {}
  ~SocketTextReader() override { connection_->Close(); }

  absl::StatusOr<PollResult> PollNext(Collector<std::string>& out, int max_records) override {
    if (!started_) {
      // Connect on the first poll rather than in CreateReader: the task is running by then, so
      // the completion's Wake() reaches a started task.
      started_ = true;
      connect_deadline_ = absl::Now() + options_.connect_timeout;
      connection_->Start();
      return PollResult::NothingUntil(options_.connect_timeout);
    }
    int emitted = 0;
    SourceConnection::Taken taken;
    while (emitted < max_records) {
      size_t end = pending_.find(options_.delimiter, std::max(pos_, scanned_));
      if (end != std::string::npos) {
        Emit(out, end);
        pos_ = end + 1;
        ++emitted;
        continue;
      }
      scanned_ = pending_.size();
      if (pending_.size() - pos_ > options_.max_line_bytes) {
        return absl::ResourceExhaustedError(
            absl::StrCat(connection_->where(), ": a record is longer than max_line_bytes (",
                         options_.max_line_bytes, ")"));
      }
      Compact();
      taken = connection_->Take(&pending_);
      if (!taken.appended) break;
    }
    if (emitted == max_records) return PollResult::More();
    if (!taken.error.ok()) return taken.error;
    if (taken.eof) {
      // The peer closed the connection: a last record without delimiter still counts (Flink).
      if (pos_ < pending_.size()) Emit(out, pending_.size());
      pending_.clear();
      pos_ = scanned_ = 0;
      return PollResult::End();
    }
    if (!taken.connected) {
      absl::Time now = absl::Now();
      if (now >= connect_deadline_) {
        absl::Status timeout = absl::DeadlineExceededError(
            absl::StrCat(connection_->where(), ": not connected after ",
                         absl::FormatDuration(options_.connect_timeout)));
        connection_->FailAndClose(timeout);
        return timeout;
      }
      return PollResult::NothingUntil(connect_deadline_ - now);
    }
    return PollResult::WaitForWake();
  }

  void Close() override { connection_->Close(); }

  // At-most-once (see socket.h): a TCP stream cannot be rewound, so there is no position to
  // keep. Records received but not yet emitted, and those in flight after the checkpoint, are
  // lost at a failure.
  absl::StatusOr<std::string> SnapshotState(int64_t) override { return std::string(); }
  // Accepts any state (only "" is ever written) and connects afresh on the first poll, as a
  // reader that was never checkpointed does; nothing here touches the network.
  absl::Status RestoreState(std::string_view) override { return absl::OkStatus(); }

 private:
  // Emits pending_[pos_, end) as a record.
  void Emit(Collector<std::string>& out, size_t end) {
    std::string_view record(pending_.data() + pos_, end - pos_);
    if (options_.delimiter == '\n' && !record.empty() && record.back() == '\r') {
      record.remove_suffix(1);
    }
    out.Emplace(record);
  }

  void Compact() {
    if (pos_ == 0) return;
    pending_.erase(0, pos_);
    scanned_ -= pos_;
    pos_ = 0;
  }

  const std::shared_ptr<SourceConnection> connection_;
  const SocketSourceOptions options_;
  bool started_ = false;
  absl::Time connect_deadline_;
  // Received bytes owned by the polling thread: records are cut from here without the lock.
  std::string pending_;
  size_t pos_ = 0;      // start of the first record not emitted
  size_t scanned_ = 0;  // pending_[pos_, scanned_) holds no delimiter
};

}  // namespace

absl::Status SocketSourceOptions::Validate() const {
  if (max_line_bytes == 0) {
    return absl::InvalidArgumentError("SocketSourceOptions.max_line_bytes must be > 0");
  }
  if (connect_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SocketSourceOptions.connect_timeout must be > 0, got ",
                     absl::FormatDuration(connect_timeout)));
  }
  return absl::OkStatus();
}

absl::Status SocketSinkOptions::Validate() const {
  if (connect_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SocketSinkOptions.connect_timeout must be > 0, got ",
                     absl::FormatDuration(connect_timeout)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SourceReader<std::string>>> SocketTextSource::CreateReader(
    const SourceContext& ctx) {
  SLUICE_RETURN_IF_ERROR(ValidatePort(host_, port_));
  SLUICE_RETURN_IF_ERROR(options_.Validate());
  if (ctx.services() == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "socket ", host_, ":", port_, ": SocketTextSource needs the Sluice runtime's executor"));
  }
  auto connection =
      std::make_shared<SourceConnection>(ctx.services()->executor(), ctx, host_, port_);
  return std::unique_ptr<SourceReader<std::string>>(
      new SocketTextReader(std::move(connection), options_));
}

// --- SocketSink's connection ---------------------------------------------------------------------

namespace internal {

struct SocketConnection::Impl {
  explicit Impl(std::string where) : where(std::move(where)) {}
  std::string where;
  boost::asio::io_context io;
  tcp::socket socket{io};
  bool open = true;
};

SocketConnection::SocketConnection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SocketConnection::~SocketConnection() { Close(); }

absl::StatusOr<std::unique_ptr<SocketConnection>> SocketConnection::Connect(
    const std::string& host, int port, absl::Duration timeout) {
  SLUICE_RETURN_IF_ERROR(ValidatePort(host, port));
  auto impl = std::make_unique<Impl>(absl::StrCat(host, ":", port));
  Impl* p = impl.get();

  // Asynchronous on a private io_context so that the whole attempt obeys `timeout`.
  std::optional<tcp::resolver> resolver;
  absl::Status status;
  std::vector<tcp::endpoint> endpoints;
  size_t next = 0;
  bool timed_out = false;
  std::function<void()> connect_next;
  auto on_connected = [&](const boost::system::error_code& ec) {
    if (timed_out) return;
    if (!ec) {
      status = absl::OkStatus();
    } else if (next < endpoints.size()) {
      connect_next();
    } else {
      status = absl::UnavailableError(absl::StrCat(p->where, ": cannot connect: ", ec.message()));
    }
  };
  connect_next = [&] {
    tcp::endpoint endpoint = endpoints[next++];
    boost::system::error_code ignored;
    p->socket.close(ignored);
    p->socket.async_connect(endpoint, on_connected);
  };
  boost::system::error_code literal_ec;
  boost::asio::ip::address address = boost::asio::ip::make_address(host, literal_ec);
  if (!literal_ec) {
    // An address literal needs no resolver (which would start a resolver thread).
    endpoints.emplace_back(address, static_cast<uint16_t>(port));
    connect_next();
  } else {
    resolver.emplace(p->io);
    resolver->async_resolve(
        host, std::to_string(port),
        [&](const boost::system::error_code& ec, tcp::resolver::results_type results) {
          if (timed_out) return;
          if (ec || results.empty()) {
            status = absl::UnavailableError(absl::StrCat(
                p->where, ": cannot resolve host: ", ec ? ec.message() : "no addresses"));
            return;
          }
          for (const auto& entry : results) endpoints.push_back(entry.endpoint());
          connect_next();
        });
  }
  p->io.run_for(absl::ToChronoNanoseconds(timeout));
  if (!p->io.stopped()) {
    // Timed out: cancel, then let the cancelled handlers run before the locals they use go away.
    timed_out = true;
    if (resolver) resolver->cancel();
    boost::system::error_code ignored;
    p->socket.close(ignored);
    p->io.run();
    status = absl::DeadlineExceededError(
        absl::StrCat(p->where, ": not connected after ", absl::FormatDuration(timeout)));
  }
  if (!status.ok()) return status;
  p->io.restart();
  return std::unique_ptr<SocketConnection>(new SocketConnection(std::move(impl)));
}

absl::Status SocketConnection::Write(std::string_view data) {
  if (!impl_->open) {
    return absl::FailedPreconditionError(absl::StrCat(impl_->where, ": connection closed"));
  }
  boost::system::error_code ec;
  // Asio sends with MSG_NOSIGNAL: a peer that went away is an error here, never a SIGPIPE.
  boost::asio::write(impl_->socket, boost::asio::buffer(data.data(), data.size()), ec);
  if (ec)
    return absl::UnavailableError(absl::StrCat(impl_->where, ": write failed: ", ec.message()));
  return absl::OkStatus();
}

absl::Status SocketConnection::Finish() {
  if (!impl_->open) return absl::OkStatus();
  impl_->open = false;
  boost::system::error_code ec;
  impl_->socket.shutdown(tcp::socket::shutdown_send, ec);
  absl::Status status;
  if (ec && ec != boost::asio::error::not_connected) {
    status =
        absl::UnavailableError(absl::StrCat(impl_->where, ": shutdown failed: ", ec.message()));
  }
  impl_->socket.close(ec);
  if (ec && status.ok()) {
    status = absl::UnavailableError(absl::StrCat(impl_->where, ": close failed: ", ec.message()));
  }
  return status;
}

void SocketConnection::Close() {
  if (!impl_ || !impl_->open) return;
  impl_->open = false;
  boost::system::error_code ignored;
  impl_->socket.close(ignored);
}

}  // namespace internal
}  // namespace sluice
