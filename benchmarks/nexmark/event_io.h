// Nexmark event files (docs/nexmark.md): one CSV line per event, tagged P, A or B.
//
//   std::string line;
//   nexmark::AppendEventLine(event, &line);                 // "B,1000,1001,484,Baidu,...\n"
//   absl::Status s = nexmark::ParseEventLine("B,1000,...", &event);
//   env.FromSource(nexmark::EventFileSource("events.csv"), strategy);
//   nexmark::WriteEventFile(config, "events.csv");         // a generated stream as a file
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <sluice/connectors/source.h>

#include "generator.h"
#include "model.h"

namespace nexmark {

// Appends the event file line of `event`, with its '\n'.
void AppendEventLine(const Event& event, std::string* out);

// Parses one line (without its '\n'). On error: InvalidArgument saying what is wrong (the caller
// adds file and line). Strings longer than the fields' fixed capacities are errors too.
absl::Status ParseEventLine(std::string_view line, Event* event);

// Reads an event file in arrival order (one reader: parallelism 1). A missing file fails
// Execute() with NotFound naming it; a malformed line fails the job with
// "InvalidArgument: <file>:<line>: <what>". With `stamp_emission_time`, records carry the
// steady-clock time (µs) of their emission as timestamp (see GeneratorEventSource).
// Checkpoints store the byte offset and line number.
class EventFileSource : public sluice::Source<Event> {
 public:
  // `lines_read` (optional) counts the events read.
  explicit EventFileSource(std::string path, bool stamp_emission_time = false,
                           std::shared_ptr<std::atomic<int64_t>> lines_read = nullptr)
      : path_(std::move(path)), stamp_(stamp_emission_time), lines_read_(std::move(lines_read)) {}
  bool IsBounded() const override { return true; }
  int MaxParallelism() const override { return 1; }
  std::string Describe() const override { return "Nexmark file " + path_; }
  absl::StatusOr<std::unique_ptr<sluice::SourceReader<Event>>> CreateReader(
      const sluice::SourceContext& ctx) override;

 private:
  std::string path_;
  bool stamp_;
  std::shared_ptr<std::atomic<int64_t>> lines_read_;
};

// Writes `config.events` generated events to `path` as an event file.
absl::Status WriteEventFile(const GeneratorConfig& config, const std::string& path);

}  // namespace nexmark
