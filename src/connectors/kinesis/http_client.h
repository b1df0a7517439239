// A minimal HTTP/1.1 client (Boost.Beast) for the Kinesis API: POST with keep-alive, http:// and
// https:// (TLS with certificate verification against the system store), a deadline per request,
// and Cancel() from another thread. No Beast type appears here.
//
//   SLUICE_ASSIGN_OR_RETURN(HttpEndpoint ep, HttpEndpoint::Parse("http://127.0.0.1:4567"));
//   HttpClient client(ep, {.request_timeout = absl::Seconds(10)});
//   SLUICE_ASSIGN_OR_RETURN(HttpResponse r, client.Post(headers, body));
//
// Thread-compatible: one thread calls Post at a time; Cancel() may be called from any thread.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sluice::kinesis_internal {

struct HttpEndpoint {
  bool https = false;
  std::string host;
  std::string port;  // "80" / "443" when the URL has none
  std::string path = "/";

  // "http://host[:port][/path]" or "https://...". InvalidArgument naming the URL otherwise.
  static absl::StatusOr<HttpEndpoint> Parse(const std::string& url);
  // The Host header: host, plus ":port" when it is not the scheme's default.
  std::string HostHeader() const;
  std::string ToString() const;
};

struct HttpResponse {
  int status = 0;
  std::string body;
};

struct HttpClientOptions {
  absl::Duration request_timeout = absl::Seconds(30);  // resolve + connect + send + receive
  bool verify_tls = true;                              // https: verify the peer's certificate
};

class HttpClient {
 public:
  HttpClient(HttpEndpoint endpoint, HttpClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends POST <endpoint path> with these headers (Host and Content-Length are added) and returns
  // the response, whatever its status. Unavailable when the endpoint cannot be reached or the
  // connection fails, DeadlineExceeded after request_timeout, Cancelled after Cancel().
  absl::StatusOr<HttpResponse> Post(const std::vector<std::pair<std::string, std::string>>& headers,
                                    const std::string& body);

  // Aborts the request in progress and makes every later Post fail with Cancelled.
  void Cancel();

  const HttpEndpoint& endpoint() const { return endpoint_; }

 private:
  class Impl;
  HttpEndpoint endpoint_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::kinesis_internal
