// The COST baselines ("Scalability! But at what COST?") of the checked Nexmark queries: one
// thread, plain loops and absl::flat_hash_map, written without the engine (no windows, timers or
// keyed state) from the query definitions in docs/nexmark.md. The nexmark_cost program times them;
// the Nexmark sample test compares the engine's results with theirs.
//
//   nexmark::CostOptions options;
//   options.query = "q9";
//   options.input = "events.csv";          // or options.generator.events = 1'000'000
//   options.output = "q9.csv";             // the result lines (docs/nexmark.md)
//   absl::StatusOr<nexmark::CostResult> r = nexmark::RunCost(options);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "generator.h"

namespace nexmark {

// The queries with a COST baseline, in order: q0 q1 q2 q3 q4 q5 q7 q8 q9 q11.
const std::vector<std::string>& CostQueries();

struct CostOptions {
  std::string query;
  // Generated events (used when `input` is empty).
  GeneratorConfig generator;
  // An event file (docs/nexmark.md), read in line order.
  std::string input;
  // Where to write the result lines; empty: results are counted only.
  std::string output;
};

struct CostResult {
  int64_t events = 0;
  int64_t results = 0;
  // A sum over the results, so the work cannot be optimised away when nothing is written.
  int64_t checksum = 0;
};

// InvalidArgument for a query without a baseline or a malformed line ("FILE:LINE: what"),
// NotFound for a file that cannot be opened or created.
absl::StatusOr<CostResult> RunCost(const CostOptions& options);

}  // namespace nexmark
