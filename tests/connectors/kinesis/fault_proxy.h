// A fault-injecting HTTP proxy for the Kinesis tests (Boost.Beast, blocking, a thread per
// connection), listening on 127.0.0.1: kinesalite never throttles, so the proxy answers chosen
// requests itself (ProvisionedThroughputExceededException as HTTP 400, or HTTP 500) and forwards
// the others. For PutRecords it can also forward only some records and report the others as
// failed (per-record ErrorCode), as Kinesis does under partial throttling.
//
//   FaultProxy proxy(kinesalite_port, [](const std::string& action, int n, int seen) {
//     return action == "GetRecords" && seen == 0 ? FaultProxy::kThrottle : FaultProxy::kForward;
//   });
//   options.connection.endpoint = proxy.Endpoint();
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "absl/strings/str_cat.h"

#include "connectors/kinesis/json.h"

namespace sluice::kinesis_test {

class FaultProxy {
 public:
  enum Action {
    kForward,
    kThrottle,              // HTTP 400 ProvisionedThroughputExceededException
    kServerError,           // HTTP 500
    kFailEveryOtherRecord,  // PutRecords: forward records 0, 2, 4...; the others fail
  };
  // Decides per request: `action` is the Kinesis action (X-Amz-Target suffix), `n` counts the
  // requests of that action so far, from 0, and `seen` how often this very request (same action
  // and body: a client's retry) came before — so each request can fail a set number of times
  // whatever the interleaving of concurrent clients.
  using Decide = std::function<Action(const std::string& action, int n, int seen)>;

  FaultProxy(int upstream_port, Decide decide)
      : upstream_port_(upstream_port), decide_(std::move(decide)) {
    namespace asio = boost::asio;
    acceptor_.open(asio::ip::tcp::v4());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~FaultProxy() {
    stop_ = true;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    accept_thread_.join();
    std::list<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
      threads.swap(threads_);
    }
    for (std::thread& t : threads) t.join();
  }

  std::string Endpoint() const { return absl::StrCat("http://127.0.0.1:", port_); }

  // How many requests of `action` arrived.
  int Requests(const std::string& action) {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_[action];
  }

  // How many requests of `action` were answered with a fault (any but kForward).
  int Faults(const std::string& action) {
    std::lock_guard<std::mutex> lock(mu_);
    return faults_[action];
  }

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  void AcceptLoop() {
    while (!stop_) {
      boost::system::error_code ec;
      auto socket = std::make_shared<boost::asio::ip::tcp::socket>(ioc_);
      acceptor_.accept(*socket, ec);
      if (ec || stop_) return;
      std::lock_guard<std::mutex> lock(mu_);
      fds_.push_back(socket->native_handle());
      threads_.emplace_back([this, socket] { Serve(*socket); });
    }
  }

  void Serve(boost::asio::ip::tcp::socket& socket) {
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buffer;
    while (!stop_) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(std::uint64_t{64} << 20);  // PutRecords bodies reach 5 MiB and more
      boost::system::error_code ec;
      http::read(socket, buffer, parser, ec);
      if (ec) return;
      Request req = parser.release();
      std::string amz_target(req["X-Amz-Target"]);
      const std::string action = amz_target.substr(amz_target.find('.') + 1);
      int n;
      int seen;
      {
        std::lock_guard<std::mutex> lock(mu_);
        n = counts_[action]++;
        seen = seen_[action + "\n" + req.body()]++;
      }
      const Action what = decide_(action, n, seen);
      if (what != kForward) {
        std::lock_guard<std::mutex> lock(mu_);
        ++faults_[action];
      }
      Response res;
      if (what == kThrottle) {
        res = Reply(400, R"j({"__type":"ProvisionedThroughputExceededException",)j"
                         R"j("message":"Rate exceeded for shard (injected)"})j");
      } else if (what == kServerError) {
        res = Reply(500, R"({"__type":"InternalFailure","message":"injected"})");
      } else if (what == kFailEveryOtherRecord && action == "PutRecords") {
        res = PartialPut(req);
      } else {
        res = Forward(req);
      }
      res.keep_alive(true);
      http::write(socket, res, ec);
      if (ec) return;
    }
  }

  static Response Reply(int status, std::string body) {
    Response res{static_cast<boost::beast::http::status>(status), 11};
    res.set(boost::beast::http::field::content_type, "application/x-amz-json-1.1");
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }

  Response Forward(const Request& req) {
    namespace http = boost::beast::http;
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::socket up(ioc);
    boost::system::error_code ec;
    up.connect(
        {boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(upstream_port_)},
        ec);
    if (ec) return Reply(502, "{}");
    Request copy = req;
    copy.keep_alive(false);
    http::write(up, copy, ec);
    boost::beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::uint64_t{64} << 20);
    if (!ec) http::read(up, buffer, parser, ec);
    if (ec) return Reply(502, "{}");
    return parser.release();
  }

  // Forwards the even-indexed records; the odd ones come back failed.
  Response PartialPut(const Request& req) {
    using kinesis_internal::Json;
    using kinesis_internal::JsonWriter;
    auto doc = Json::Parse(req.body());
    if (!doc.ok()) return Reply(500, "{}");
    const std::vector<Json>& records = (*doc)["Records"].array();
    JsonWriter w;
    w.BeginObject();
    w.Field("StreamName", (*doc)["StreamName"].string());
    w.Key("Records");
    w.BeginArray();
    for (size_t i = 0; i < records.size(); i += 2) {
      w.BeginObject();
      w.Field("Data", records[i]["Data"].string());
      w.Field("PartitionKey", records[i]["PartitionKey"].string());
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    Request sub = req;
    sub.body() = w.str();
    sub.prepare_payload();
    Response res = Forward(sub);
    auto answer = Json::Parse(res.body());
    if (res.result_int() != 200 || !answer.ok()) return res;
    const std::vector<Json>& done = (*answer)["Records"].array();
    JsonWriter out;
    out.BeginObject();
    out.Key("FailedRecordCount");
    out.Int(static_cast<int64_t>(records.size() / 2));
    out.Key("Records");
    out.BeginArray();
    for (size_t i = 0; i < records.size(); ++i) {
      out.BeginObject();
      if (i % 2 == 0 && i / 2 < done.size()) {
        out.Field("SequenceNumber", done[i / 2]["SequenceNumber"].string());
        out.Field("ShardId", done[i / 2]["ShardId"].string());
      } else {
        out.Field("ErrorCode", "ProvisionedThroughputExceededException");
        out.Field("ErrorMessage", "Rate exceeded for shard (injected)");
      }
      out.EndObject();
    }
    out.EndArray();
    out.EndObject();
    return Reply(200, out.Take());
  }

  const int upstream_port_;
  Decide decide_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_{ioc_};
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::list<std::thread> threads_;
  std::vector<int> fds_;
  std::map<std::string, int> counts_;
  std::map<std::string, int> faults_;
  std::map<std::string, int> seen_;
};

}  // namespace sluice::kinesis_test
