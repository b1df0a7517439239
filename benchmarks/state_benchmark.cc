// Keyed state and checkpoint benchmarks (docs/benchmarks.md, "State and checkpoints").
//
//   ./build/benchmarks/state_benchmark --benchmark_min_time=0.5
//
// * BM_State_ValueUpdate/<backend>/<keys>: read-modify-write of a ValueState<int64_t> per record,
//   one CPU core; BM_Cost_HashMapUpdate is the same work on a plain absl::flat_hash_map.
// * BM_Serialize/<type>: one value written with sluice::Serializer and read back.
// * BM_State_Snapshot/<backend>/<keys>/<changed per mille>/<native>: the synchronous part of a
//   checkpoint after that share of the keys changed (counter async_ms: the asynchronous part;
//   bytes: the snapshot file, plus the native files for native = 1, RocksDB incremental).
// * BM_Job_KeyedWindow/<checkpoint interval ms>: a keyed job (sequence → map → keyed running sum in
//   ValueState → tumbling window reduce → sink) at parallelism 1, without checkpoints (0) and with
//   checkpoints every 1 s; events/s per core.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"

#include <sluice/internal/keyed_state_backend.h>
#include <sluice/sluice.h>

namespace {

using sluice::StateBackendKind;
using sluice::internal::KeyedStateBackend;

std::string TempDir(const std::string& what) {
  std::string dir = "/tmp/sluice-state-benchmark-" + std::to_string(getpid()) + "-" + what;
  std::filesystem::remove_all(dir);
  return dir;
}

struct Fixture {
  Fixture(StateBackendKind kind, int64_t keys) : clock(0) {
    dir = TempDir(sluice::StateBackendName(kind));
    options.block_cache_bytes = 64 << 20;
    resources = sluice::internal::MakeRocksDbResources(options);
    backend = std::make_unique<KeyedStateBackend<int64_t>>(
        kind, "bench", sluice::KeyGroupRange::ForSubtask(128, 1, 0), 128, &clock);
    if (kind == StateBackendKind::kRocksDb) {
      backend->set_rocksdb_opener([this] {
        return sluice::internal::RocksDbStore::Open(options, resources, dir + "/db", &clock);
      });
    }
    sluice::StateAccess<sluice::internal::VoidNamespace> access(
        backend.get(), &sluice::internal::kNoNamespace, nullptr);
    value = access.GetState(sluice::ValueStateDescriptor<int64_t>("v"));
    for (int64_t k = 0; k < keys; ++k) key_list.push_back(k * 7919);
  }
  ~Fixture() {
    backend.reset();
    std::filesystem::remove_all(dir);
  }
  sluice::ManualClock clock;
  std::string dir;
  sluice::RocksDbStateOptions options;
  std::shared_ptr<sluice::internal::RocksDbResources> resources;
  std::unique_ptr<KeyedStateBackend<int64_t>> backend;
  sluice::ValueState<int64_t> value;
  std::vector<int64_t> key_list;
};

void BM_State_ValueUpdate(benchmark::State& state) {
  const auto kind = static_cast<StateBackendKind>(state.range(0));
  Fixture f(kind, state.range(1));
  size_t i = 0;
  for (auto _ : state) {
    f.backend->SetCurrentKey(&f.key_list[i]);
    f.value.Update(f.value.Value().value_or(0) + 1);
    if (++i == f.key_list.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(sluice::StateBackendName(kind));
}
BENCHMARK(BM_State_ValueUpdate)
    ->Args({static_cast<int>(StateBackendKind::kHashMap), 10'000})
    ->Args({static_cast<int>(StateBackendKind::kHashMap), 1'000'000})
    ->Args({static_cast<int>(StateBackendKind::kRocksDb), 10'000})
    ->Args({static_cast<int>(StateBackendKind::kRocksDb), 1'000'000});

// Serialization of state values (sluice::Serializer): write into a reused buffer and read back,
// per value. range(0): 0 = int64_t, 1 = a 24-byte struct (trivially copyable), 2 = a 32-char
// std::string, 3 = std::vector<int64_t> of 8, 4 = std::pair<std::string, int64_t>.
struct Bid24 {
  int64_t auction;
  int64_t bidder;
  int64_t price;
};

template <typename T>
void SerializeRoundTrip(benchmark::State& state, const T& value) {
  std::string buffer;
  T back{};
  for (auto _ : state) {
    buffer.clear();
    sluice::Serializer<T>::Write(value, &buffer);
    sluice::ByteReader in(buffer);
    if (!sluice::Serializer<T>::Read(in, &back)) state.SkipWithError("read failed");
    benchmark::DoNotOptimize(back);
  }
  state.counters["bytes"] = static_cast<double>(buffer.size());
  state.SetItemsProcessed(state.iterations());
}

void BM_Serialize(benchmark::State& state) {
  switch (state.range(0)) {
    case 0:
      SerializeRoundTrip<int64_t>(state, 1234567);
      state.SetLabel("int64_t");
      break;
    case 1:
      SerializeRoundTrip<Bid24>(state, Bid24{1, 2, 3});
      state.SetLabel("struct (24 B)");
      break;
    case 2:
      SerializeRoundTrip<std::string>(state, std::string(32, 'x'));
      state.SetLabel("string (32 chars)");
      break;
    case 3:
      SerializeRoundTrip<std::vector<int64_t>>(state, std::vector<int64_t>(8, 7));
      state.SetLabel("vector<int64_t> (8)");
      break;
    default:
      SerializeRoundTrip<std::pair<std::string, int64_t>>(state, {std::string(16, 'k'), 9});
      state.SetLabel("pair<string, int64_t>");
      break;
  }
}
BENCHMARK(BM_Serialize)->DenseRange(0, 4);

void BM_Cost_HashMapUpdate(benchmark::State& state) {
  absl::flat_hash_map<int64_t, int64_t> map;
  std::vector<int64_t> keys;
  for (int64_t k = 0; k < state.range(0); ++k) keys.push_back(k * 7919);
  size_t i = 0;
  for (auto _ : state) {
    ++map[keys[i]];
    if (++i == keys.size()) i = 0;
  }
  benchmark::DoNotOptimize(map.size());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Cost_HashMapUpdate)->Arg(10'000)->Arg(1'000'000);

// One checkpoint of a subtask holding range(1) keys after range(2) per mille of them changed:
// the timed part is the synchronous one (on the task thread: the keys accessed since the
// previous checkpoint, or the whole RocksDB scan); counter async_ms is the part the checkpoint
// writer's thread does (merge and serialize the file).
void BM_State_Snapshot(benchmark::State& state) {
  const auto kind = static_cast<StateBackendKind>(state.range(0));
  Fixture f(kind, state.range(1));
  for (int64_t& k : f.key_list) {
    f.backend->SetCurrentKey(&k);
    f.value.Update(k);
  }
  const size_t changed = f.key_list.size() * static_cast<size_t>(state.range(2)) / 1000;
  size_t bytes = 0, next = 0;
  double async_seconds = 0;
  std::set<std::string> uploaded;
  {
    absl::StatusOr<sluice::internal::KeyedSnapshot> first = f.backend->Snapshot();  // full
    if (!first.ok()) state.SkipWithError("snapshot failed");
  }
  for (auto _ : state) {
    state.PauseTiming();
    for (size_t i = 0; i < changed; ++i) {
      f.backend->SetCurrentKey(&f.key_list[next]);
      f.value.Update(static_cast<int64_t>(i));
      if (++next == f.key_list.size()) next = 0;
    }
    state.ResumeTiming();
    absl::StatusOr<sluice::internal::KeyedSnapshot> snap =
        f.backend->Snapshot(/*deferred=*/true, /*native=*/state.range(3) != 0);
    state.PauseTiming();
    if (!snap.ok()) state.SkipWithError("snapshot failed");
    const auto start = std::chrono::steady_clock::now();
    if (!sluice::internal::MaterializeKeyedSnapshot(*snap).ok()) state.SkipWithError("materialize");
    async_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    bytes = snap->bytes.size();
    // Native: what the checkpoint writer would upload (SST files not uploaded before).
    for (const auto& file : snap->native_files) {
      if (!file.shared_name.empty() && !uploaded.insert(file.shared_name).second) continue;
      bytes += std::filesystem::file_size(snap->native_dir + "/" + file.name);
    }
    benchmark::DoNotOptimize(snap->bytes.data());
    state.ResumeTiming();
  }
  state.counters["bytes"] = static_cast<double>(bytes);
  state.counters["async_ms"] = 1000 * async_seconds / static_cast<double>(state.iterations());
  state.SetLabel(sluice::StateBackendName(kind));
}
constexpr int kHashMapArg = static_cast<int>(StateBackendKind::kHashMap);
constexpr int kRocksDbArg = static_cast<int>(StateBackendKind::kRocksDb);
BENCHMARK(BM_State_Snapshot)
    ->ArgNames({"backend", "keys", "changed_per_mille", "native"})
    ->Args({kHashMapArg, 10'000, 1000, 0})
    ->Args({kHashMapArg, 1'000'000, 1000, 0})
    ->Args({kHashMapArg, 1'000'000, 100, 0})
    ->Args({kHashMapArg, 1'000'000, 10, 0})
    ->Args({kRocksDbArg, 1'000'000, 10, 0})
    ->Args({kRocksDbArg, 1'000'000, 10, 1})
    ->Args({kRocksDbArg, 1'000'000, 100, 1})
    ->Unit(benchmark::kMillisecond);

struct Rec {
  int64_t key = 0;
  int64_t value = 0;
  sluice::Timestamp time = 0;
};

class RunningSum final : public sluice::KeyedProcessFunction<int64_t, Rec, Rec> {
 public:
  void Open(const sluice::RuntimeContext& ctx) override {
    sum_ = ctx.GetState(sluice::ValueStateDescriptor<int64_t>("sum"));
  }
  void ProcessElement(const Rec& r, Context&, sluice::Collector<Rec>& out) override {
    const int64_t s = sum_.Value().value_or(0) + r.value;
    sum_.Update(s);
    out.Collect(Rec{r.key, s, r.time});
  }

 private:
  sluice::ValueState<int64_t> sum_;
};

void BM_Job_KeyedWindow(benchmark::State& state) {
  constexpr int64_t kEvents = 30'000'000;
  const int64_t interval_ms = state.range(0);
  const std::string dir = TempDir("job");
  int64_t checkpoints = 0;
  for (auto _ : state) {
    sluice::RuntimeOptions options;
    options.parallelism = 1;
    options.execution_mode = sluice::ExecutionMode::kStreaming;
    if (interval_ms > 0) {
      options.checkpointing.interval = absl::Milliseconds(interval_ms);
      options.checkpointing.directory = dir;
    }
    sluice::StreamEnvironment env(options);
    std::atomic<int64_t> total{0};
    env.FromSequence(0, kEvents - 1)
        .Map([](int64_t i) {
          return Rec{(i * 7919) % 10'000, i & 0xff, i / 100};
        })
        .AssignTimestampsAndWatermarks(
            sluice::WatermarkStrategy<Rec>::ForMonotonousTimestamps().WithTimestampAssigner(
                [](const Rec& r) { return r.time; }))
        .KeyBy([](const Rec& r) { return r.key; })
        .Process(RunningSum())
        .KeyBy([](const Rec& r) { return r.key; })
        .Window(sluice::TumblingEventTimeWindows::Of(absl::Seconds(1)))
        .Reduce([](Rec a, const Rec& b) {
          a.value += b.value;
          return a;
        })
        .SinkTo(sluice::CallbackSink<Rec>([&total](const Rec& r) { total += r.value; }));
    absl::StatusOr<sluice::JobHandle> job = env.ExecuteAsync("bench");
    if (!job.ok() || !job->Wait().ok()) state.SkipWithError("job failed");
    checkpoints += job->LastCompletedCheckpoint();
    benchmark::DoNotOptimize(total.load());
  }
  state.counters["checkpoints"] =
      static_cast<double>(checkpoints) / static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations() * kEvents);
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_Job_KeyedWindow)
    ->Arg(0)
    ->Arg(1000)
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
