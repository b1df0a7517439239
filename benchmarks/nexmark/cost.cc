// nexmark_cost: single-threaded COST baselines ("Scalability! But at what COST?") for Nexmark
// q0, q1, q2, q3, q4, q5, q7, q8, q9 and q11 — the same generator (or event file) as
// sluice-nexmark, the same results, computed with plain loops and absl::flat_hash_map
// (cost_queries.h).
//
//   nexmark_cost --query q5 (--events N | --input FILE) [--output FILE]
//
// Prints events, results, wall seconds and events/s (one core). With --output it writes the
// result lines of docs/nexmark.md, so the engine can be checked against it (the Nexmark sample
// test, benchmarks/nexmark/check_sample.sh). Exits 2 on a bad flag, 1 on a failed run.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"

#include "cost_queries.h"

int main(int argc, char** argv) {
  nexmark::CostOptions options;
  bool has_events = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--query") {
      options.query = value;
    } else if (flag == "--events" && absl::SimpleAtoi(value, &options.generator.events) &&
               options.generator.events >= 0) {
      has_events = true;
    } else if (flag == "--input") {
      options.input = value;
    } else if (flag == "--output") {
      options.output = value;
    } else {
      std::cerr << "nexmark_cost: bad flag '" << flag << " " << value << "'\n";
      return 2;
    }
  }
  const std::string queries = absl::StrJoin(nexmark::CostQueries(), "|");
  if (argc % 2 == 0 || options.query.empty() || has_events == !options.input.empty()) {
    std::cerr << "usage: nexmark_cost --query " << queries
              << " (--events N | --input FILE) [--output FILE]\n";
    return 2;
  }
  const auto& known = nexmark::CostQueries();
  if (std::find(known.begin(), known.end(), options.query) == known.end()) {
    std::cerr << "nexmark_cost: no COST baseline for query '" << options.query << "' (" << queries
              << ")\n";
    return 2;
  }
  auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<nexmark::CostResult> r = nexmark::RunCost(options);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!r.ok()) {
    std::cerr << "nexmark_cost: " << r.status().message() << "\n";
    return 1;
  }
  std::printf(
      "cost %s: events %lld, results %lld, wall %.3f s, %.0f events/s (1 core, "
      "checksum %lld)\n",
      options.query.c_str(), static_cast<long long>(r->events), static_cast<long long>(r->results),
      s, static_cast<double>(r->events) / s, static_cast<long long>(r->checksum));
  return 0;
}
