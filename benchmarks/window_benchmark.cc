// Micro-benchmarks of event-time windows, each next to its COST baseline (a hand-written
// single-threaded loop doing the same work).
//
//   ./build/benchmarks/window_benchmark --benchmark_min_time=1 --benchmark_repetitions=3
//
// Input: kEvents records over 1000 keys, 100 records per millisecond of event time (each key gets
// ~100 records per second of event time), ascending timestamps, periodic watermarks. Each window
// emits the sum of its records' values. Rates are per CPU second of the whole process
// (MeasureProcessCPUTime), i.e. events/s per core.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <benchmark/benchmark.h>

#include "absl/container/flat_hash_map.h"

#include <sluice/sluice.h>

namespace {

constexpr int64_t kEvents = 4'000'000;
constexpr int64_t kKeys = 1000;
constexpr int64_t kEventsPerMs = 100;

struct Rec {
  int64_t key = 0;
  int64_t value = 0;
  sluice::Timestamp time = 0;
};

Rec MakeRec(int64_t i) { return Rec{(i * 7919) % kKeys, i & 0xff, i / kEventsPerMs}; }

// Adds up what it receives so the results cannot be optimized away.
class SumSink : public sluice::Sink<Rec> {
 public:
  explicit SumSink(std::shared_ptr<std::atomic<int64_t>> total) : total_(std::move(total)) {}
  absl::StatusOr<std::unique_ptr<sluice::SinkWriter<Rec>>> CreateWriter(
      const sluice::RuntimeContext&) override {
    return std::unique_ptr<sluice::SinkWriter<Rec>>(new Writer(total_));
  }

 private:
  class Writer : public sluice::SinkWriter<Rec> {
   public:
    explicit Writer(std::shared_ptr<std::atomic<int64_t>> total) : total_(std::move(total)) {}
    absl::Status Write(std::vector<Rec>& records) override {
      int64_t sum = 0;
      for (const Rec& r : records) sum += r.value;
      total_->fetch_add(sum, std::memory_order_relaxed);
      return absl::OkStatus();
    }

   private:
    std::shared_ptr<std::atomic<int64_t>> total_;
  };
  std::shared_ptr<std::atomic<int64_t>> total_;
};

Rec Add(const Rec& a, const Rec& b) { return Rec{a.key, a.value + b.value, a.time}; }

template <typename Describe>
void RunJob(benchmark::State& state, Describe describe) {
  double wall = 0;
  for (auto _ : state) {
    auto total = std::make_shared<std::atomic<int64_t>>(0);
    sluice::StreamEnvironment env({.parallelism = static_cast<int>(state.range(0)),
                                   .execution_mode = sluice::ExecutionMode::kStreaming});
    auto keyed =
        env.FromSequence(0, kEvents - 1)
            .Map(MakeRec)
            .AssignTimestampsAndWatermarks(
                sluice::WatermarkStrategy<Rec>::ForMonotonousTimestamps().WithTimestampAssigner(
                    [](const Rec& r) { return r.time; }))
            .KeyBy([](const Rec& r) { return r.key; });
    describe(keyed).SinkTo(SumSink(total));
    auto start = std::chrono::steady_clock::now();
    if (!env.Execute("bench").ok()) state.SkipWithError("job failed");
    wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    benchmark::DoNotOptimize(total->load());
  }
  state.SetItemsProcessed(state.iterations() * kEvents);
  state.counters["wall_eps"] =
      benchmark::Counter(static_cast<double>(state.iterations() * kEvents) / wall);
}

// Tumbling 1 s windows, Reduce (sum).
void BM_Engine_TumblingReduce(benchmark::State& state) {
  RunJob(state, [](auto keyed) {
    return keyed.Window(sluice::TumblingEventTimeWindows::Of(absl::Seconds(1))).Reduce(Add);
  });
}
BENCHMARK(BM_Engine_TumblingReduce)
    ->Arg(1)
    ->Arg(2)
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);

// Sliding 10 s / 1 s windows, Reduce (sum): shared slices.
void BM_Engine_SlidingReduce(benchmark::State& state) {
  RunJob(state, [](auto keyed) {
    return keyed.Window(sluice::SlidingEventTimeWindows::Of(absl::Seconds(10), absl::Seconds(1)))
        .Reduce(Add);
  });
}
BENCHMARK(BM_Engine_SlidingReduce)
    ->Arg(1)
    ->Arg(2)
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);

// The same windows with a trigger set explicitly: the general window operator, which keeps one
// reduced value per window (each record folded into 10 windows, as Flink does).
void BM_Engine_SlidingReducePerWindow(benchmark::State& state) {
  RunJob(state, [](auto keyed) {
    return keyed.Window(sluice::SlidingEventTimeWindows::Of(absl::Seconds(10), absl::Seconds(1)))
        .Trigger(sluice::PurgingTrigger(sluice::EventTimeTrigger::Create()))
        .Reduce(Add);
  });
}
BENCHMARK(BM_Engine_SlidingReducePerWindow)
    ->Arg(1)
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);

// Sessions with a 10 ms gap (keys see a record every ~10 ms: long sessions with merges).
void BM_Engine_SessionReduce(benchmark::State& state) {
  RunJob(state, [](auto keyed) {
    return keyed.Window(sluice::EventTimeSessionWindows::WithGap(absl::Milliseconds(10)))
        .Reduce(Add);
  });
}
BENCHMARK(BM_Engine_SessionReduce)->Arg(1)->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);

// COST: one pass, per key a running sum per slice of 1 s; at each second boundary every key's
// windows ending there are summed over their 10 slices and emitted.
void CostSliding(benchmark::State& state, int64_t size_s) {
  double wall = 0;
  for (auto _ : state) {
    auto start = std::chrono::steady_clock::now();
    absl::flat_hash_map<std::pair<int64_t, int64_t>, int64_t> slices;  // (key, second) → sum
    absl::flat_hash_map<int64_t, int64_t> last_second;                 // key → last slice seen
    int64_t emitted = 0;
    int64_t current = 0;
    auto fire = [&](int64_t ended) {  // windows [ended - size + 1, ended] seconds
      for (auto& [key, last] : last_second) {
        if (last + size_s <= ended) continue;  // no slice of this key in the window
        int64_t sum = 0;
        for (int64_t s = ended - size_s + 1; s <= ended; ++s) {
          auto it = slices.find({key, s});
          if (it != slices.end()) sum += it->second;
        }
        emitted += sum;
        slices.erase({key, ended - size_s + 1});
      }
    };
    for (int64_t i = 0; i < kEvents; ++i) {
      Rec r = MakeRec(i);
      int64_t second = r.time / 1000;
      while (current < second) fire(current++);
      slices[{r.key, second}] += r.value;
      last_second[r.key] = second;
    }
    for (int64_t end = current; end < current + size_s; ++end) fire(end);
    benchmark::DoNotOptimize(emitted);
    wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  state.SetItemsProcessed(state.iterations() * kEvents);
  state.counters["wall_eps"] =
      benchmark::Counter(static_cast<double>(state.iterations() * kEvents) / wall);
}
void BM_Cost_TumblingLoop(benchmark::State& state) { CostSliding(state, 1); }
BENCHMARK(BM_Cost_TumblingLoop)->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
void BM_Cost_SlidingLoop(benchmark::State& state) { CostSliding(state, 10); }
BENCHMARK(BM_Cost_SlidingLoop)->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
