// Logging: where the library's own messages go (a restart after a failure, a failed checkpoint,
// state dropped on restore, a fall-back to an older checkpoint). By default one line per message
// on stderr; a host sends them to its own logger instead:
//
//   sluice::SetLogSink([](const sluice::LogRecord& r) {
//     my_logger.Write(r.severity == sluice::LogSeverity::kError ? kError : kWarning,
//                     absl::StrCat("job ", r.job, ": ", r.message));
//   });
//
// The library never writes to stderr or stdout itself except through the default sink.
#pragma once

#include <functional>
#include <string_view>

#include "absl/strings/string_view.h"

namespace sluice {

enum class LogSeverity { kInfo, kWarning, kError };

// "INFO", "WARNING", "ERROR".
const char* LogSeverityName(LogSeverity severity);

struct LogRecord {
  LogSeverity severity;
  std::string_view job;      // the job's name ("" for messages of no job)
  std::string_view message;  // one line, without a trailing newline
};

using LogSink = std::function<void(const LogRecord&)>;

// Sends every message of at least the minimum severity to `sink` (nullptr: back to the default,
// "sluice: [<SEVERITY>] job '<job>': <message>" on stderr). Calls of the sink are serialized (it
// needs no lock of its own) and come from the library's threads, sometimes while a job's
// checkpoint coordinator holds its lock: the sink hands the record to the host's logger and
// returns; it must not call back into Sluice (SetLogSink, a JobHandle, an environment).
// Process-wide, as a logging library's configuration is.
void SetLogSink(LogSink sink);
// Messages below `severity` are dropped. Default kInfo (everything).
void SetMinLogSeverity(LogSeverity severity);

namespace internal {
// Logs `message` for job `job` through the current sink.
void Log(LogSeverity severity, absl::string_view job, absl::string_view message);
}  // namespace internal

}  // namespace sluice
