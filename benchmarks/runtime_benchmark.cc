// Micro-benchmarks of the runtime's hot paths, each next to its COST baseline: a hand-written
// single-threaded loop doing the same work.
//
//   ./build/benchmarks/runtime_benchmark
//
// Rates are per CPU second of the whole process (MeasureProcessCPUTime), i.e. events/s per core;
// the "wall_eps" counter is events per wall-clock second.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include "absl/container/flat_hash_map.h"

#include <sluice/sluice.h>

namespace {

constexpr int64_t kEvents = 4'000'000;

// Sums what it receives, per batch, so the records cannot be optimized away.
class SumSink : public sluice::Sink<int64_t> {
 public:
  explicit SumSink(std::shared_ptr<std::atomic<int64_t>> total) : total_(std::move(total)) {}
  absl::StatusOr<std::unique_ptr<sluice::SinkWriter<int64_t>>> CreateWriter(
      const sluice::RuntimeContext&) override {
    return std::unique_ptr<sluice::SinkWriter<int64_t>>(new Writer(total_));
  }

 private:
  class Writer : public sluice::SinkWriter<int64_t> {
   public:
    explicit Writer(std::shared_ptr<std::atomic<int64_t>> total) : total_(std::move(total)) {}
    absl::Status Write(std::vector<int64_t>& records) override {
      int64_t sum = 0;
      for (int64_t r : records) sum += r;
      total_->fetch_add(sum, std::memory_order_relaxed);
      return absl::OkStatus();
    }

   private:
    std::shared_ptr<std::atomic<int64_t>> total_;
  };
  std::shared_ptr<std::atomic<int64_t>> total_;
};

void Report(benchmark::State& state, int64_t events, double wall_seconds) {
  state.SetItemsProcessed(events);
  state.counters["wall_eps"] = benchmark::Counter(static_cast<double>(events) / wall_seconds);
}

// Runs the job `describe(env, sink)` once per iteration and reports its rates.
template <typename Describe>
void RunJob(benchmark::State& state, sluice::RuntimeOptions options, Describe describe) {
  double wall = 0;
  for (auto _ : state) {
    auto total = std::make_shared<std::atomic<int64_t>>(0);
    sluice::StreamEnvironment env(options);
    describe(env, SumSink(total));
    auto start = std::chrono::steady_clock::now();
    if (!env.Execute("bench").ok()) state.SkipWithError("job failed");
    wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    benchmark::DoNotOptimize(total->load());
  }
  Report(state, state.iterations() * kEvents, wall);
}

// Source → Map → Filter → Sink, all chained into one task per subtask.
void BM_Engine_MapFilterChain(benchmark::State& state) {
  RunJob(state, {.parallelism = static_cast<int>(state.range(0))},
         [](sluice::StreamEnvironment& env, SumSink sink) {
           env.FromSequence(0, kEvents - 1)
               .Map([](int64_t x) { return x * 3; })
               .Filter([](int64_t x) { return (x & 1) == 0; })
               .SinkTo(std::move(sink));
         });
}
BENCHMARK(BM_Engine_MapFilterChain)
    ->Arg(1)
    ->Arg(2)
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);

void BM_Cost_MapFilterLoop(benchmark::State& state) {
  double wall = 0;
  for (auto _ : state) {
    auto start = std::chrono::steady_clock::now();
    int64_t sum = 0;
    for (int64_t i = 0; i < kEvents; ++i) {
      int64_t x = i * 3;
      if ((x & 1) == 0) sum += x;
    }
    benchmark::DoNotOptimize(sum);
    wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  Report(state, state.iterations() * kEvents, wall);
}
BENCHMARK(BM_Cost_MapFilterLoop)->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);

// Source → KeyBy (exchange between tasks through channels) → rolling Reduce → Sink.
void BM_Engine_KeyByReduce(benchmark::State& state) {
  RunJob(state,
         {.parallelism = static_cast<int>(state.range(0)),
          .execution_mode = sluice::ExecutionMode::kStreaming},
         [](sluice::StreamEnvironment& env, SumSink sink) {
           env.FromSequence(0, kEvents - 1)
               .KeyBy([](int64_t x) { return x % 1000; })
               .Reduce([](int64_t a, int64_t b) { return a + b; })
               .SinkTo(std::move(sink));
         });
}
BENCHMARK(BM_Engine_KeyByReduce)
    ->Arg(1)
    ->Arg(2)
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);

void BM_Cost_KeyedReduceLoop(benchmark::State& state) {
  double wall = 0;
  for (auto _ : state) {
    auto start = std::chrono::steady_clock::now();
    absl::flat_hash_map<int64_t, int64_t> sums;
    int64_t emitted = 0;
    for (int64_t i = 0; i < kEvents; ++i) {
      int64_t& s = sums[i % 1000];
      s += i;
      emitted += s;  // the rolling update a streaming reduce emits
    }
    benchmark::DoNotOptimize(emitted);
    wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  Report(state, state.iterations() * kEvents, wall);
}
BENCHMARK(BM_Cost_KeyedReduceLoop)->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);

// Source → Process → Sink chained, the function bumping a user counter per record (range(1) = 1)
// or not (0): what a live counter costs in a job.
class MaybeCounted final : public sluice::ProcessFunction<int64_t, int64_t> {
 public:
  explicit MaybeCounted(bool counted) : counted_(counted) {}
  void Open(const sluice::RuntimeContext& ctx) override { seen_ = ctx.GetCounter("seen"); }
  void ProcessElement(const int64_t& x, Context&, sluice::Collector<int64_t>& out) override {
    if (counted_) seen_->Inc();
    out.Collect(x);
  }

 private:
  bool counted_;
  sluice::Counter* seen_ = nullptr;
};

void BM_Engine_ProcessCounted(benchmark::State& state) {
  const bool counted = state.range(1) == 1;
  RunJob(state, {.parallelism = static_cast<int>(state.range(0))},
         [counted](sluice::StreamEnvironment& env, SumSink sink) {
           env.FromSequence(0, kEvents - 1)
               .Process(MaybeCounted(counted))
               .Name("count")
               .SinkTo(std::move(sink));
         });
}
BENCHMARK(BM_Engine_ProcessCounted)
    ->Args({1, 0})
    ->Args({1, 1})
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);

// A counter cell bumped per event (RuntimeContext::GetCounter) against the by-name Counters::Add
// (a lock and a string per call), with a reader taking a snapshot every millisecond.
template <bool kByName>
void CounterLoop(benchmark::State& state) {
  double wall = 0;
  for (auto _ : state) {
    sluice::Counters counters;
    sluice::Counter* cell = counters.Register("count", "seen", 0, 0);
    std::atomic<bool> done{false};
    std::thread reader([&] {
      while (!done.load()) {
        benchmark::DoNotOptimize(counters.Snapshot());
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
    auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < kEvents; ++i) {
      if constexpr (kByName) {
        counters.Add("count", "seen", 1);
      } else {
        cell->Inc();
      }
    }
    wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    done = true;
    reader.join();
    if (counters.Snapshot()["count.seen"] != kEvents) state.SkipWithError("lost a count");
  }
  Report(state, state.iterations() * kEvents, wall);
}
void BM_Counter_CellInc(benchmark::State& state) { CounterLoop<false>(state); }
void BM_Counter_AddByName(benchmark::State& state) { CounterLoop<true>(state); }
BENCHMARK(BM_Counter_CellInc)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Counter_AddByName)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
