#include "connectors/kinesis/http_client.h"

#include <atomic>
#include <chrono>
#include <optional>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace sluice::kinesis_internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

absl::StatusOr<HttpEndpoint> HttpEndpoint::Parse(const std::string& url) {
  HttpEndpoint ep;
  absl::string_view rest = url;
  if (absl::StartsWith(rest, "http://")) {
    rest.remove_prefix(7);
  } else if (absl::StartsWith(rest, "https://")) {
    ep.https = true;
    rest.remove_prefix(8);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("endpoint '", url, "': must start with http:// or https://"));
  }
  size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  if (slash != absl::string_view::npos) ep.path = std::string(rest.substr(slash));
  size_t colon = authority.rfind(':');
  if (colon != absl::string_view::npos && authority.find(']') == absl::string_view::npos) {
    ep.host = std::string(authority.substr(0, colon));
    ep.port = std::string(authority.substr(colon + 1));
    int port = 0;
    if (!absl::SimpleAtoi(ep.port, &port) || port <= 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("endpoint '", url, "': bad port"));
    }
  } else {
    ep.host = std::string(authority);
    ep.port = ep.https ? "443" : "80";
  }
  if (ep.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("endpoint '", url, "': no host"));
  }
  return ep;
}

std::string HttpEndpoint::HostHeader() const {
  if ((https && port == "443") || (!https && port == "80")) return host;
  return absl::StrCat(host, ":", port);
}

std::string HttpEndpoint::ToString() const {
  return absl::StrCat(https ? "https://" : "http://", host, ":", port, path == "/" ? "" : path);
}

class HttpClient::Impl {
 public:
  Impl(const HttpEndpoint& endpoint, HttpClientOptions options)
      : endpoint_(endpoint), options_(options), ssl_ctx_(asio::ssl::context::tls_client) {
    if (endpoint_.https) {
      ssl_ctx_.set_default_verify_paths();
      ssl_ctx_.set_verify_mode(options_.verify_tls ? asio::ssl::verify_peer
                                                   : asio::ssl::verify_none);
    }
  }

  void Cancel() {
    cancelled_.store(true);
    ioc_.stop();
  }

  absl::StatusOr<HttpResponse> Post(const std::vector<std::pair<std::string, std::string>>& headers,
                                    const std::string& body) {
    http::request<http::string_body> req{http::verb::post, endpoint_.path, 11};
    req.set(http::field::host, endpoint_.HostHeader());
    for (const auto& [name, value] : headers) req.set(name, value);
    req.body() = body;
    req.prepare_payload();
    req.keep_alive(true);
    // A kept-alive connection may have been closed by the peer meanwhile: one fresh retry.
    const bool reused = connected_;
    absl::StatusOr<HttpResponse> response = Exchange(req);
    if (!response.ok() && reused && absl::IsUnavailable(response.status()) && !cancelled_) {
      response = Exchange(req);
    }
    return response;
  }

 private:
  // Runs the event loop until `done` or the deadline; false on timeout or cancellation (the
  // connection is then closed and the pending operation drained).
  absl::Status RunUntil(const bool& done, absl::Time deadline, const char* step) {
    while (!done) {
      if (cancelled_.load()) return absl::CancelledError("HTTP request cancelled");
      ioc_.restart();
      if (cancelled_.load()) return absl::CancelledError("HTTP request cancelled");
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) break;
      ioc_.run_for(std::chrono::microseconds(absl::ToInt64Microseconds(left)));
    }
    if (done) return absl::OkStatus();
    if (cancelled_.load()) return absl::CancelledError("HTTP request cancelled");
    Disconnect();
    resolver_.cancel();
    ioc_.restart();
    ioc_.run();  // drains the aborted operation
    return absl::DeadlineExceededError(
        absl::StrCat(endpoint_.ToString(), ": ", step, " timed out after ",
                     absl::FormatDuration(options_.request_timeout)));
  }

  void Disconnect() {
    beast::error_code ignored;
    if (tls_) beast::get_lowest_layer(*tls_).socket().close(ignored);
    if (plain_) plain_->socket().close(ignored);
    connected_ = false;
  }

  absl::Status Fail(const char* step, const beast::error_code& ec) {
    Disconnect();
    return absl::UnavailableError(
        absl::StrCat(endpoint_.ToString(), ": ", step, " failed: ", ec.message()));
  }

  absl::Status Connect(absl::Time deadline) {
    tls_.reset();
    plain_.reset();
    bool done = false;
    beast::error_code ec;
    tcp::resolver::results_type results;
    resolver_.async_resolve(endpoint_.host, endpoint_.port,
                            [&](const beast::error_code& e, tcp::resolver::results_type r) {
                              ec = e;
                              results = std::move(r);
                              done = true;
                            });
    if (absl::Status s = RunUntil(done, deadline, "resolving the host"); !s.ok()) return s;
    if (ec) return Fail("resolving the host", ec);
    done = false;
    auto on_connect = [&](const beast::error_code& e, const tcp::endpoint&) {
      ec = e;
      done = true;
    };
    if (endpoint_.https) {
      tls_.emplace(ioc_, ssl_ctx_);
      if (!SSL_set_tlsext_host_name(tls_->native_handle(), endpoint_.host.c_str())) {
        return absl::UnavailableError(absl::StrCat(endpoint_.ToString(), ": cannot set TLS SNI"));
      }
      tls_->set_verify_callback(asio::ssl::host_name_verification(endpoint_.host));
      beast::get_lowest_layer(*tls_).async_connect(results, on_connect);
    } else {
      plain_.emplace(ioc_);
      plain_->async_connect(results, on_connect);
    }
    if (absl::Status s = RunUntil(done, deadline, "connecting"); !s.ok()) return s;
    if (ec) return Fail("connecting", ec);
    if (tls_) {
      done = false;
      tls_->async_handshake(asio::ssl::stream_base::client, [&](const beast::error_code& e) {
        ec = e;
        done = true;
      });
      if (absl::Status s = RunUntil(done, deadline, "TLS handshake"); !s.ok()) return s;
      if (ec) return Fail("TLS handshake", ec);
    }
    connected_ = true;
    return absl::OkStatus();
  }

  template <typename Stream>
  absl::StatusOr<HttpResponse> ExchangeOn(Stream& stream, http::request<http::string_body>& req,
                                          absl::Time deadline) {
    bool done = false;
    beast::error_code ec;
    http::async_write(stream, req, [&](const beast::error_code& e, size_t) {
      ec = e;
      done = true;
    });
    if (absl::Status s = RunUntil(done, deadline, "sending the request"); !s.ok()) return s;
    if (ec) return Fail("sending the request", ec);
    done = false;
    buffer_.clear();
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::uint64_t{256} << 20);
    http::async_read(stream, buffer_, parser, [&](const beast::error_code& e, size_t) {
      ec = e;
      done = true;
    });
    if (absl::Status s = RunUntil(done, deadline, "reading the response"); !s.ok()) return s;
    if (ec) return Fail("reading the response", ec);
    http::response<http::string_body> res = parser.release();
    if (!res.keep_alive()) Disconnect();
    return HttpResponse{static_cast<int>(res.result_int()), std::move(res.body())};
  }

  absl::StatusOr<HttpResponse> Exchange(http::request<http::string_body>& req) {
    const absl::Time deadline = absl::Now() + options_.request_timeout;
    if (!connected_) {
      if (absl::Status s = Connect(deadline); !s.ok()) return s;
    }
    if (tls_) return ExchangeOn(*tls_, req, deadline);
    return ExchangeOn(*plain_, req, deadline);
  }

  HttpEndpoint endpoint_;
  HttpClientOptions options_;
  asio::io_context ioc_;
  asio::ssl::context ssl_ctx_;
  tcp::resolver resolver_{ioc_};
  std::optional<beast::tcp_stream> plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
  beast::flat_buffer buffer_;
  bool connected_ = false;
  std::atomic<bool> cancelled_{false};
};

HttpClient::HttpClient(HttpEndpoint endpoint, HttpClientOptions options)
    : endpoint_(std::move(endpoint)), impl_(std::make_unique<Impl>(endpoint_, options)) {}

HttpClient::~HttpClient() = default;

absl::StatusOr<HttpResponse> HttpClient::Post(
    const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body) {
  return impl_->Post(headers, body);
}

void HttpClient::Cancel() { impl_->Cancel(); }

}  // namespace sluice::kinesis_internal
