// Counters: named job-wide metrics (Flink's numLateRecordsDropped and the like), summed over the
// parallel subtasks of an operator. Operators add to them on rare events (a dropped late record)
// or in bulk; JobHandle::Counters() reads them, live or after the job ended.
//
//   absl::StatusOr<sluice::JobHandle> job = env.ExecuteAsync("sessions");
//   job->Wait();
//   int64_t dropped = job->Counters()["Window.numLateRecordsDropped"];
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace sluice {

class Counters {
 public:
  // Adds `delta` to counter "<operator>.<name>". Thread-safe.
  void Add(absl::string_view op, absl::string_view name, int64_t delta) {
    std::lock_guard<std::mutex> lock(mu_);
    values_[absl::StrCat(op, ".", name)] += delta;
  }
  std::map<std::string, int64_t> Snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    return values_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, int64_t> values_;
};

}  // namespace sluice
