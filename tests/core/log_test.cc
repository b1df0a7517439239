// The library's messages go through the log sink: the default writes one line to stderr, a host's
// sink receives them instead, the minimum severity filters them, and a restart after a failure is
// logged with the failure and the delay.
#include <sluice/sluice.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice {
namespace {

using ::testing::ElementsAre;

struct Captured {
  LogSeverity severity;
  std::string job;
  std::string message;
  bool operator==(const Captured&) const = default;
};

// Collects what is logged while it lives; the default sink is back afterwards.
class LogCapture {
 public:
  LogCapture() {
    SetLogSink([this](const LogRecord& r) {
      std::lock_guard<std::mutex> lock(mu_);
      records_.push_back({r.severity, std::string(r.job), std::string(r.message)});
    });
  }
  ~LogCapture() {
    SetLogSink(nullptr);
    SetMinLogSeverity(LogSeverity::kInfo);
  }
  std::vector<Captured> records() {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }

 private:
  std::mutex mu_;
  std::vector<Captured> records_;
};

TEST(LogTest, TheDefaultSinkWritesOneLineToStderr) {
  ::testing::internal::CaptureStderr();
  internal::Log(LogSeverity::kWarning, "clicks", "something to see");
  internal::Log(LogSeverity::kError, "", "no job");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(),
            "sluice: [WARNING] job 'clicks': something to see\nsluice: [ERROR] no job\n");
}

TEST(LogTest, AHostSinkReceivesTheMessagesAndTheMinimumSeverityFilters) {
  LogCapture capture;
  internal::Log(LogSeverity::kInfo, "a", "one");
  SetMinLogSeverity(LogSeverity::kWarning);
  internal::Log(LogSeverity::kInfo, "a", "dropped");
  internal::Log(LogSeverity::kWarning, "a", "two");
  EXPECT_THAT(capture.records(), ElementsAre(Captured{LogSeverity::kInfo, "a", "one"},
                                             Captured{LogSeverity::kWarning, "a", "two"}));
}

TEST(LogTest, RestartsAndTheirEndAreLogged) {
  LogCapture capture;
  StreamEnvironment env([] {
    RuntimeOptions o;
    o.parallelism = 1;
    o.restart_strategy = RestartStrategy::FixedDelay(1, absl::Milliseconds(1));
    return o;
  }());
  CollectSink<int64_t> sink;
  env.FromSequence(1, 3)
      .Map([](int64_t) -> int64_t { throw std::runtime_error("boom"); })
      .SinkTo(sink);
  absl::Status st = env.Execute("restarts");
  EXPECT_EQ(st.code(), absl::StatusCode::kUnknown) << st;
  EXPECT_THAT(
      capture.records(),
      ElementsAre(Captured{LogSeverity::kWarning, "restarts",
                           "failed: operator 'Map' threw: boom; restarting in 1ms (restart 1)"},
                  Captured{LogSeverity::kError, "restarts",
                           "failed: operator 'Map' threw: boom (the restart strategy allows no "
                           "more restarts after 2 attempts)"}));
}

}  // namespace
}  // namespace sluice
