// Test helpers for the Kinesis connector: a kinesalite server (the npm package, installed into the
// build tree by kinesalite.sh) run as a child process on 127.0.0.1, and connection options for it.
//
//   Kinesalite& k = Kinesalite::Shared();        // started once per test binary
//   auto client = *KinesisClient::Create(k.Connection());
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

#include <sluice/connectors/kinesis.h>

#include "connectors/kinesis/kinesis_client.h"

namespace sluice::kinesis_test {

class Kinesalite {
 public:
  // The server shared by the tests of this binary, started on first use (installing kinesalite
  // into the build tree first when needed); stopped at exit.
  static Kinesalite& Shared() {
    static Kinesalite* server = [] {
      auto* k = new Kinesalite(false);
      std::atexit([] { Shared().Stop(); });
      return k;
    }();
    return *server;
  }
  // The same over HTTPS, with kinesalite's self-signed certificate.
  static Kinesalite& SharedTls() {
    static Kinesalite* server = [] {
      auto* k = new Kinesalite(true);
      std::atexit([] { SharedTls().Stop(); });
      return k;
    }();
    return *server;
  }

  bool ok() const { return port_ > 0; }
  const std::string& error() const { return error_; }
  int port() const { return port_; }
  std::string Endpoint() const {
    return absl::StrCat(tls_ ? "https" : "http", "://127.0.0.1:", port_);
  }

  KinesisConnectionOptions Connection() const {
    KinesisConnectionOptions c;
    c.endpoint = Endpoint();
    c.region = "us-east-1";
    c.access_key_id = "AKIDEXAMPLE";
    c.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    c.initial_backoff = absl::Milliseconds(5);
    c.max_backoff = absl::Milliseconds(50);
    c.request_timeout = absl::Seconds(5);
    c.max_attempts = 5;
    return c;
  }

  void Stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (stdin_fd_ >= 0) ::close(stdin_fd_);
    stdin_fd_ = -1;
  }

 private:
  explicit Kinesalite(bool tls) : tls_(tls) { Start(); }

  void Start() {
    const std::string install =
        absl::StrCat("'", KINESALITE_SCRIPT, "' '", KINESALITE_DIR, "' >&2");
    if (std::system(install.c_str()) != 0) {
      error_ = absl::StrCat("installing kinesalite failed: ", install);
      return;
    }
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
      error_ = "pipe failed";
      return;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::execlp("node", "node", KINESALITE_LAUNCHER, KINESALITE_DIR, tls_ ? "ssl" : "plain",
               static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    stdin_fd_ = in[1];  // closing it (or our death) ends the server
    std::string line;
    char c;
    while (true) {
      pollfd p{out[0], POLLIN, 0};
      if (::poll(&p, 1, 60000) != 1) break;  // a minute at most, even on a loaded machine
      if (::read(out[0], &c, 1) != 1 || c == '\n') break;
      line += c;
    }
    ::close(out[0]);
    if (line.rfind("PORT ", 0) != 0) {
      error_ = absl::StrCat("kinesalite did not start: '", line, "'");
      Stop();
      return;
    }
    port_ = std::atoi(line.c_str() + 5);
  }

  bool tls_ = false;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int port_ = 0;
  std::string error_;
};

// A stream name unique in this process run.
inline std::string UniqueStream(const std::string& prefix) {
  static int counter = 0;
  return absl::StrCat(prefix, "-", ::getpid(), "-", counter++);
}

}  // namespace sluice::kinesis_test
