// sluice-nexmark: runs one Nexmark query on Sluice and reports its throughput.
//
//   sluice-nexmark --query q5 (--events N | --input FILE) [--output FILE] [--parallelism P]
//                  [--state-backend hashmap|rocksdb] [--checkpoint-interval-ms MS]
//                  [--checkpoint-dir DIR] [--full-checkpoints] [--event-rate R] [--seed S]
//                  [--max-delay-ms D]
//   sluice-nexmark --write-events FILE --events N [generator flags]   (an event file)
//   sluice-nexmark --generate-only --events N [generator flags]       (the generator's own rate)
//
// docs/nexmark.md describes the queries and the output.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include "event_io.h"
#include "generator.h"
#include "queries.h"

namespace {

constexpr const char* kUsage =
    "usage: sluice-nexmark --query QUERY (--events N | --input FILE) [--output FILE]\n"
    "                      [--parallelism P] [--state-backend hashmap|rocksdb]\n"
    "                      [--checkpoint-interval-ms MS] [--checkpoint-dir DIR]\n"
    "                      [--full-checkpoints]\n"
    "                      [--rocksdb-window-cache-mb MB]\n"
    "                      [--event-rate EVENTS_PER_S] [--seed S] [--max-delay-ms D]\n"
    "       sluice-nexmark --write-events FILE --events N [generator flags]\n"
    "       sluice-nexmark --generate-only --events N [generator flags]\n"
    "queries: q0 q1 q2 q3 q4 q5 q7 q8 q9 q11 (checked) q12 ... q22 (workloads)\n";

struct Flags {
  nexmark::RunOptions run;
  bool has_events = false;
  std::string write_events;
  bool generate_only = false;
  bool help = false;
};

absl::Status ParseInt(const std::string& flag, const std::string& v, int64_t min, int64_t* out) {
  if (!absl::SimpleAtoi(v, out) || *out < min) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected an integer >= ", min, ", got '", v, "'"));
  }
  return absl::OkStatus();
}

absl::Status Parse(int argc, char** argv, Flags* f) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::string value;
    bool has_value = false;
    if (size_t eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    auto take = [&]() -> absl::StatusOr<std::string> {
      if (has_value) return value;
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
      }
      return args[++i];
    };
    int64_t n = 0;
    if (flag == "--help" || flag == "-h") {
      f->help = true;
    } else if (flag == "--generate-only") {
      f->generate_only = true;
    } else if (flag == "--query") {
      SLUICE_ASSIGN_OR_RETURN(f->run.query, take());
      if (nexmark::FindQuery(f->run.query) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("--query: unknown query '", f->run.query, "'"));
      }
    } else if (flag == "--events") {
      SLUICE_ASSIGN_OR_RETURN(std::string v, take());
      SLUICE_RETURN_IF_ERROR(ParseInt(flag, v, 0, &f->run.generator.events));
      f->has_events = true;
    } else if (flag == "--input") {
      SLUICE_ASSIGN_OR_RETURN(f->run.input, take());
    } else if (flag == "--output") {
      SLUICE_ASSIGN_OR_RETURN(f->run.output, take());
    } else if (flag == "--write-events") {
      SLUICE_ASSIGN_OR_RETURN(f->write_events, take());
    } else if (flag == "--parallelism") {
      SLUICE_ASSIGN_OR_RETURN(std::string v, take());
      SLUICE_RETURN_IF_ERROR(ParseInt(flag, v, 1, &n));
      if (n > 1024) return absl::InvalidArgumentError("--parallelism: at most 1024");
      f->run.parallelism = static_cast<int>(n);
    } else if (flag == "--state-backend") {
      SLUICE_ASSIGN_OR_RETURN(std::string v, take());
      if (v == "hashmap") {
        f->run.state_backend = sluice::StateBackendKind::kHashMap;
      } else if (v == "rocksdb") {
        f->run.state_backend = sluice::StateBackendKind::kRocksDb;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("--state-backend: expected hashmap or rocksdb, got '", v, "'"));
      }
    } else if (flag == "--checkpoint-interval-ms") {
      SLUICE_ASSIGN_OR_RETURN(std::string v, take());
      SLUICE_RETURN_IF_ERROR(ParseInt(flag, v, 1, &f->run.checkpoint_interval_ms));
    } else if (flag == "--rocksdb-window-cache-mb") {
      SLUICE_ASSIGN_OR_RETURN(std::string v, take());
      SLUICE_RETURN_IF_ERROR(ParseInt(flag, v, 0, &n));
      if (n > (int64_t{1} << 20))
        return absl::InvalidArgumentError(absl::StrCat(flag, ": at most 1048576"));
      f->run.rocksdb_window_cache_bytes = n << 20;
    } else if (flag == "--checkpoint-dir") {
      SLUICE_ASSIGN_OR_RETURN(f->run.checkpoint_dir, take());
    } else if (flag == "--full-checkpoints") {
      f->run.incremental_checkpoints = false;
    } else if (flag == "--event-rate") {
      SLUICE_ASSIGN_OR_RETURN(std::string v, take());
      SLUICE_RETURN_IF_ERROR(ParseInt(flag, v, 1, &n));
      f->run.generator.event_rate = static_cast<double>(n);
    } else if (flag == "--seed") {
      SLUICE_ASSIGN_OR_RETURN(std::string v, take());
      SLUICE_RETURN_IF_ERROR(ParseInt(flag, v, 0, &n));
      f->run.generator.seed = static_cast<uint64_t>(n);
    } else if (flag == "--max-delay-ms") {
      SLUICE_ASSIGN_OR_RETURN(std::string v, take());
      SLUICE_RETURN_IF_ERROR(ParseInt(flag, v, 0, &f->run.generator.max_delay_ms));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", args[i], "'"));
    }
  }
  if (f->help) return absl::OkStatus();
  if (!f->write_events.empty() || f->generate_only) {
    if (!f->has_events) {
      return absl::InvalidArgumentError("--write-events and --generate-only need --events N");
    }
    return f->run.generator.Validate();
  }
  if (f->run.query.empty()) return absl::InvalidArgumentError("--query is required");
  if (f->has_events == !f->run.input.empty()) {
    return absl::InvalidArgumentError("give exactly one of --events N and --input FILE");
  }
  if (f->run.checkpoint_interval_ms > 0 && f->run.checkpoint_dir.empty()) {
    return absl::InvalidArgumentError("--checkpoint-interval-ms needs --checkpoint-dir DIR");
  }
  if (f->run.checkpoint_interval_ms == 0 && !f->run.incremental_checkpoints) {
    return absl::InvalidArgumentError("--full-checkpoints needs --checkpoint-interval-ms MS");
  }
  if (f->run.checkpoint_interval_ms == 0 && !f->run.checkpoint_dir.empty()) {
    return absl::InvalidArgumentError("--checkpoint-dir needs --checkpoint-interval-ms MS");
  }
  return f->run.generator.Validate();
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (absl::Status s = Parse(argc, argv, &flags); !s.ok()) {
    std::cerr << "sluice-nexmark: " << s.message() << "\n" << kUsage;
    return 2;
  }
  if (flags.help) {
    std::cout << kUsage;
    return 0;
  }
  const nexmark::GeneratorConfig& gen = flags.run.generator;
  if (!flags.write_events.empty()) {
    if (absl::Status s = nexmark::WriteEventFile(gen, flags.write_events); !s.ok()) {
      std::cerr << "sluice-nexmark: " << s << "\n";
      return 1;
    }
    std::cout << "wrote " << gen.events << " events to " << flags.write_events << "\n";
    return 0;
  }
  if (flags.generate_only) {
    nexmark::Generator g(gen);
    std::clock_t c0 = std::clock();
    auto t0 = std::chrono::steady_clock::now();
    int64_t checksum = 0;
    for (int64_t n = 0; n < gen.events; ++n) checksum += nexmark::EventTime(g.Generate(n)) & 1;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
    std::printf(
        "generate-only: events %lld, wall %.3f s, %.0f events/s, cpu %.3f s, %.0f events/s per "
        "core (checksum %lld)\n",
        static_cast<long long>(gen.events), s, static_cast<double>(gen.events) / s, cpu,
        static_cast<double>(gen.events) / cpu, static_cast<long long>(checksum));
    return 0;
  }
  absl::StatusOr<nexmark::RunResult> r = nexmark::RunQuery(flags.run);
  if (!r.ok()) {
    std::cerr << "sluice-nexmark: " << flags.run.query << " failed: " << r.status() << "\n";
    return 1;
  }
  double eps = static_cast<double>(r->events) / r->wall_seconds;
  double per_core = r->cpu_seconds > 0 ? static_cast<double>(r->events) / r->cpu_seconds : 0;
  std::printf(
      "query %s: events %lld, results %lld, wall %.3f s, %.0f events/s, cpu %.3f s, "
      "%.0f events/s per core (parallelism %d, %s)\n",
      flags.run.query.c_str(), static_cast<long long>(r->events),
      static_cast<long long>(r->results), r->wall_seconds, eps, r->cpu_seconds, per_core,
      flags.run.parallelism,
      flags.run.state_backend == sluice::StateBackendKind::kRocksDb ? "rocksdb" : "hashmap");
  if (r->checkpoint_sync_us >= 0) {
    std::printf("checkpoints: %lld complete, synchronous part %.1f ms on the task threads\n",
                static_cast<long long>(r->checkpoints),
                static_cast<double>(r->checkpoint_sync_us) / 1000.0);
  }
  if (r->latency_samples > 0) {
    std::printf(
        "latency (emission to sink, %lld samples): p50 %lld us, p99 %lld us, max %lld us\n",
        static_cast<long long>(r->latency_samples), static_cast<long long>(r->latency_p50_us),
        static_cast<long long>(r->latency_p99_us), static_cast<long long>(r->latency_max_us));
  }
  return 0;
}
