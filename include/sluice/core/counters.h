// Counters: named job-wide metrics (Flink's numLateRecordsDropped and the like), summed over the
// parallel subtasks of an operator and read live with JobHandle::Counters().
//
// A counter that changes per record is a `Counter` cell: each operator subtask registers its own
// once (RuntimeContext::GetCounter in Open, or the operator's constructor) and bumps it with a
// plain load and store — no lock, no string, no read-modify-write instruction. A reader sums the
// cells of a name while the job runs, so values are live (at most a few records behind, never
// torn). Rare events (once per checkpoint) may call Counters::Add by name instead.
//
//   class Count : public sluice::ProcessFunction<Click, Click> {
//     void Open(const sluice::RuntimeContext& ctx) override { seen_ = ctx.GetCounter("seen"); }
//     void ProcessElement(const Click& c, Context&, sluice::Collector<Click>& out) override {
//       seen_->Inc();
//       out.Collect(c);
//     }
//     sluice::Counter* seen_ = nullptr;
//   };
//   ...
//   absl::StatusOr<sluice::JobHandle> job = env.ExecuteAsync("clicks");
//   int64_t so_far = job->Counters()["Count.seen"];  // while it runs
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace sluice {

// One subtask's share of a counter (Flink's Counter). Written only by the thread that runs the
// subtask (its functions and timers); read from any thread.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Single writer: a relaxed load and store (plain moves), so readers see every value whole.
  void Inc(int64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void Dec(int64_t n = 1) { Inc(-n); }
  int64_t Count() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

class Counters {
 public:
  // The cell of counter "<op>.<name>" owned by subtask `subtask` of graph node `node_id`: the same
  // cell for the same arguments (registering again does not reset it), a new one otherwise. The
  // pointer stays valid as long as this object. Thread-safe (takes a lock: call once, not per
  // record).
  Counter* Register(absl::string_view op, absl::string_view name, int node_id, int subtask) {
    std::lock_guard<std::mutex> lock(mu_);
    return &cells_.try_emplace(CellKey(absl::StrCat(op, ".", name), node_id, subtask))
                .first->second;
  }

  // Adds `delta` to counter "<op>.<name>". Thread-safe; takes a lock and builds the name, so for
  // rare events only.
  void Add(absl::string_view op, absl::string_view name, int64_t delta) {
    std::lock_guard<std::mutex> lock(mu_);
    values_[absl::StrCat(op, ".", name)] += delta;
  }

  // Every counter's current value: what Add added plus the sum of the registered cells (a
  // registered counter shows even while it is 0).
  std::map<std::string, int64_t> Snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::string, int64_t> out = values_;
    for (const auto& [key, cell] : cells_) out[std::get<0>(key)] += cell.Count();
    return out;
  }

 private:
  using CellKey = std::tuple<std::string, int, int>;  // full name, node id, subtask

  mutable std::mutex mu_;
  std::map<std::string, int64_t> values_;
  std::map<CellKey, Counter> cells_;  // node-based: addresses stay put
};

}  // namespace sluice
