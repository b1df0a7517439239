#include <sluice/core/log.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <utility>

namespace sluice {
namespace {

struct LogState {
  std::mutex mu;
  LogSink sink;  // empty: stderr
  std::atomic<int> min_severity{static_cast<int>(LogSeverity::kInfo)};
};

LogState& State() {
  static LogState* state = new LogState();  // never destroyed: jobs may log during exit
  return *state;
}

}  // namespace

const char* LogSeverityName(LogSeverity severity) {
  switch (severity) {
    case LogSeverity::kInfo:
      return "INFO";
    case LogSeverity::kWarning:
      return "WARNING";
    case LogSeverity::kError:
      return "ERROR";
  }
  return "?";
}

void SetLogSink(LogSink sink) {
  LogState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  s.sink = std::move(sink);
}

void SetMinLogSeverity(LogSeverity severity) {
  State().min_severity.store(static_cast<int>(severity), std::memory_order_relaxed);
}

namespace internal {

void Log(LogSeverity severity, absl::string_view job, absl::string_view message) {
  LogState& s = State();
  if (static_cast<int>(severity) < s.min_severity.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.sink) {
    s.sink(LogRecord{severity, std::string_view(job.data(), job.size()),
                     std::string_view(message.data(), message.size())});
    return;
  }
  std::string line = std::string("sluice: [") + LogSeverityName(severity) + "] ";
  if (!job.empty()) line.append("job '").append(job.data(), job.size()).append("': ");
  line.append(message.data(), message.size()).push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace internal
}  // namespace sluice
