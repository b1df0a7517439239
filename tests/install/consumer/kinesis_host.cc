// A host program linking only the installed sluice::kinesis (built by install_test.sh against the
// installed prefix): a KinesisSink job and a KinesisSource job against an endpoint on 127.0.0.1
// where nothing listens. Both must fail with Unavailable naming the Kinesis call, the endpoint and
// the connection error, after the configured two attempts.
//
// Prints one line per job and exits 0, or names what is wrong and exits 1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sluice/connectors/kinesis.h>
#include <sluice/sluice.h>

#include <iostream>
#include <string>
#include <vector>

namespace {

// A port on 127.0.0.1 nobody listens on: bound, then closed.
int ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return -1;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool Expect(const std::string& job, const absl::Status& status, const std::string& message) {
  if (status.code() != absl::StatusCode::kUnavailable ||
      std::string(status.message()).find(message) == std::string::npos) {
    std::cerr << "kinesis_host: " << job << ": expected Unavailable containing \"" << message
              << "\", got " << status << "\n";
    return false;
  }
  std::cout << "kinesis: " << job << " failed with Unavailable: connection refused"
            << "\n";
  return true;
}

}  // namespace

int main() {
  const int port = ClosedPort();
  if (port <= 0) {
    std::cerr << "kinesis_host: no free port\n";
    return 1;
  }
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(port);
  const sluice::KinesisConnectionOptions connection{.endpoint = endpoint,
                                                    .access_key_id = "AKIDEXAMPLE",
                                                    .secret_access_key = "secret",
                                                    .request_timeout = absl::Seconds(5),
                                                    .initial_backoff = absl::Milliseconds(10),
                                                    .max_backoff = absl::Milliseconds(10),
                                                    .max_attempts = 2};
  const std::string refused =
      endpoint + ": connecting failed: Connection refused (after 2 attempts)";
  bool ok = true;

  {
    sluice::StreamEnvironment env({.parallelism = 1});
    env.FromCollection(std::vector<std::string>{"a", "b", "c"})
        .SinkTo(sluice::KinesisSink({.connection = connection, .stream_name = "install"},
                                    [](const std::string& s) { return s; }));
    ok &= Expect("sink", env.Execute("kinesis-sink-host"),
                 "Kinesis PutRecords on stream 'install': " + refused);
  }
  {
    sluice::StreamEnvironment env({.parallelism = 1});
    sluice::CollectSink<std::string> out;
    env.FromSource(sluice::KinesisSource({.connection = connection, .stream_name = "install"}))
        .SinkTo(out);
    ok &= Expect("source", env.Execute("kinesis-source-host"),
                 "Kinesis ListShards on stream 'install': " + refused);
  }
  return ok ? 0 : 1;
}
