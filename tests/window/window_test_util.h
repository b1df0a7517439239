// Helpers shared by the window tests: records that carry a punctuated watermark, a window
// function that reports exactly what a window emitted, and a source fed by the test thread.
#pragma once

#include <sluice/sluice.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sluice::window_test {

// No watermark after this record.
inline constexpr Timestamp kNoMark = kMinWatermark;

// An input record. The test source emits `watermark_after` right after the record (a punctuated
// generator), so windows fire at exact points of the input, at any parallelism.
struct Ev {
  std::string key;
  Timestamp ts = 0;
  int64_t value = 0;
  Timestamp watermark_after = kNoMark;
  bool operator==(const Ev&) const = default;
  friend std::ostream& operator<<(std::ostream& os, const Ev& e) {
    os << "Ev{" << e.key << ", ts=" << e.ts << ", v=" << e.value;
    if (e.watermark_after != kNoMark) os << ", then watermark " << e.watermark_after;
    return os << "}";
  }
};

}  // namespace sluice::window_test

// Window contents of Ev records can be checkpointed and kept in RocksDB.
template <>
struct sluice::Serializer<sluice::window_test::Ev> {
  static void Write(const sluice::window_test::Ev& e, std::string* out) {
    Serializer<std::string>::Write(e.key, out);
    Serializer<int64_t>::Write(e.ts, out);
    Serializer<int64_t>::Write(e.value, out);
    Serializer<int64_t>::Write(e.watermark_after, out);
  }
  static bool Read(ByteReader& in, sluice::window_test::Ev* e) {
    return Serializer<std::string>::Read(in, &e->key) && Serializer<int64_t>::Read(in, &e->ts) &&
           Serializer<int64_t>::Read(in, &e->value) &&
           Serializer<int64_t>::Read(in, &e->watermark_after);
  }
};

namespace sluice::window_test {

// A record, then the watermark `wm` right after it.
inline Ev WithMark(Ev e, Timestamp wm) {
  e.watermark_after = wm;
  return e;
}

template <typename T>
class PunctuatedWatermarks final : public WatermarkGenerator<T> {
 public:
  void OnEvent(const T& e, Timestamp, WatermarkOutput& out) override {
    if (e.watermark_after != kNoMark) out.EmitWatermark(e.watermark_after);
  }
  void OnPeriodicEmit(WatermarkOutput&) override {}
};

// Timestamps from `ts`, watermarks from `watermark_after`.
template <typename T>
WatermarkStrategy<T> Punctuated() {
  return WatermarkStrategy<T>::ForGenerator(
             [] { return std::make_unique<PunctuatedWatermarks<T>>(); })
      .WithTimestampAssigner([](const T& e) { return e.ts; });
}

// The state backend of the window suites: HashMap, or RocksDB when the environment variable
// SLUICE_TEST_STATE_BACKEND is "rocksdb" (tests/window/CMakeLists.txt registers every window
// test a second time that way, as "<binary>.rocksdb.<test>").
inline StateBackendKind TestStateBackend() {
  const char* v = std::getenv("SLUICE_TEST_STATE_BACKEND");
  return v != nullptr && std::string_view(v) == "rocksdb" ? StateBackendKind::kRocksDb
                                                          : StateBackendKind::kHashMap;
}
inline RuntimeOptions WithTestBackend(RuntimeOptions options) {
  options.state_backend = TestStateBackend();
  return options;
}

// Streaming mode: watermarks flow (a bounded job in automatic mode would run as a batch job).
inline RuntimeOptions Streaming(int parallelism, std::shared_ptr<Clock> clock = nullptr) {
  return WithTestBackend({.parallelism = parallelism,
                          .execution_mode = ExecutionMode::kStreaming,
                          .clock = std::move(clock)});
}

inline DataStream<Ev> EventSource(StreamEnvironment& env, std::vector<Ev> events) {
  return env.FromSource(CollectionSource<Ev>(std::move(events)), Punctuated<Ev>());
}

inline std::string ByKey(const Ev& e) { return e.key; }

// What a window emitted: key, window bounds, the values the window function saw (in its order),
// the watermark it saw, and the timestamp the emitted record carried downstream.
struct Fired {
  std::string key;
  Timestamp start = 0;
  Timestamp end = 0;
  std::vector<int64_t> values;
  Timestamp watermark = kMinWatermark;
  Timestamp timestamp = kNoTimestamp;
  bool operator==(const Fired&) const = default;
  friend std::ostream& operator<<(std::ostream& os, const Fired& f) {
    os << "Fired{" << f.key << ", [" << f.start << ", " << f.end << "), {";
    for (size_t i = 0; i < f.values.size(); ++i) os << (i ? ", " : "") << f.values[i];
    os << "}, wm=" << f.watermark << ", ts=" << f.timestamp << "}";
    return os;
  }
};

// The expected record of a window [start, end) that fired at watermark `wm`.
inline Fired F(std::string key, Timestamp start, Timestamp end, std::vector<int64_t> values,
               Timestamp wm) {
  return {std::move(key), start, end, std::move(values), wm, end - 1};
}

inline std::pair<Timestamp, Timestamp> Bounds(const TimeWindow& w) { return {w.start, w.end}; }
inline std::pair<Timestamp, Timestamp> Bounds(const GlobalWindow&) {
  return {kMinWatermark, kMaxWatermark};
}

// A process window function that reports every firing: Process<Fired>(ListValues{}).
struct ListValues {
  bool sort = false;  // sessions: the order of merged contents is not specified
  template <typename K, typename W>
  void operator()(const K& key, WindowContext<W>& ctx, std::span<const Ev> elements,
                  Collector<Fired>& out) const {
    Fired f;
    f.key = key;
    std::tie(f.start, f.end) = Bounds(ctx.window());
    for (const Ev& e : elements) f.values.push_back(e.value);
    if (sort) std::sort(f.values.begin(), f.values.end());
    f.watermark = ctx.CurrentWatermark();
    out.Collect(std::move(f));
  }
};

// The same for WindowAll (no key): reported with key "*".
struct ListAllValues {
  template <typename W>
  void operator()(WindowContext<W>& ctx, std::span<const Ev> elements,
                  Collector<Fired>& out) const {
    ListValues{}(std::string("*"), ctx, elements, out);
  }
};

// Copies the timestamp each record carries into it (after a window: window.max_timestamp()).
template <typename T>
DataStream<T> Stamped(const DataStream<T>& stream) {
  return stream.Process([](const T& v, ProcessContext& ctx, Collector<T>& out) {
    T copy = v;
    copy.timestamp = ctx.timestamp();
    out.Collect(std::move(copy));
  });
}

// Runs `build(source) -> DataStream<Fired>` over `events` (timestamps and punctuated watermarks
// from the records) and returns every firing, stamped with the timestamp it carried.
template <typename Build>
std::vector<Fired> RunFired(int parallelism, std::vector<Ev> events, Build build) {
  StreamEnvironment env(Streaming(parallelism));
  CollectSink<Fired> sink;
  Stamped(build(EventSource(env, std::move(events)))).SinkTo(sink);
  absl::Status status = env.Execute("window-test");
  EXPECT_TRUE(status.ok()) << status;
  return sink.values();
}

// The firings of one key, in the order they were emitted.
inline std::vector<Fired> OfKey(const std::vector<Fired>& all, const std::string& key) {
  std::vector<Fired> out;
  for (const Fired& f : all) {
    if (f.key == key) out.push_back(f);
  }
  return out;
}

inline std::vector<Ev> Sorted(std::vector<Ev> v) {
  std::sort(v.begin(), v.end(), [](const Ev& a, const Ev& b) {
    return std::tie(a.key, a.ts, a.value) < std::tie(b.key, b.ts, b.value);
  });
  return v;
}

inline bool WaitUntil(const std::function<bool()>& done,
                      absl::Duration timeout = absl::Seconds(20)) {
  absl::Time deadline = absl::Now() + timeout;
  while (!done() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  return done();
}

// An unbounded, non-parallel source whose records the test pushes while the job runs.
template <typename T>
class PushSource : public Source<T> {
 public:
  PushSource() : shared_(std::make_shared<Shared>()) {}

  bool IsBounded() const override { return false; }
  int MaxParallelism() const override { return 1; }
  absl::StatusOr<std::unique_ptr<SourceReader<T>>> CreateReader(const SourceContext& ctx) override {
    std::lock_guard<std::mutex> lock(shared_->mu);
    shared_->ctx.emplace(ctx);
    return std::unique_ptr<SourceReader<T>>(new Reader(shared_));
  }

  // Hands `records` to the running job.
  void Push(std::vector<T> records) {
    std::lock_guard<std::mutex> lock(shared_->mu);
    for (T& r : records) shared_->pending.push_back(std::move(r));
    if (shared_->ctx) shared_->ctx->Wake();
  }

 private:
  struct Shared {
    std::mutex mu;
    std::deque<T> pending;
    std::optional<SourceContext> ctx;
  };
  class Reader : public SourceReader<T> {
   public:
    explicit Reader(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
    absl::StatusOr<PollResult> PollNext(Collector<T>& out, int) override {
      std::lock_guard<std::mutex> lock(shared_->mu);
      while (!shared_->pending.empty()) {
        out.Collect(std::move(shared_->pending.front()));
        shared_->pending.pop_front();
      }
      return PollResult::WaitForWake();
    }

   private:
    std::shared_ptr<Shared> shared_;
  };
  std::shared_ptr<Shared> shared_;
};

// Wraps a window assigner and counts the records it assigned, so a test knows the window operator
// has taken a record (and read the processing time for it) before it moves a ManualClock.
template <typename A>
class ObservedAssigner {
 public:
  using WindowType = typename A::WindowType;
  static constexpr bool kMerging = A::kMerging;
  static constexpr TimeDomain kDomain = A::kDomain;

  explicit ObservedAssigner(A inner)
      : inner_(std::move(inner)), seen_(std::make_shared<std::atomic<int64_t>>(0)) {}
  template <typename T>
  void AssignWindows(const T& value, Timestamp timestamp, std::vector<WindowType>& out) const {
    inner_.AssignWindows(value, timestamp, out);
    seen_->fetch_add(1);
  }
  absl::Status Validate() const { return inner_.Validate(); }
  int64_t seen() const { return seen_->load(); }

 private:
  A inner_;
  std::shared_ptr<std::atomic<int64_t>> seen_;
};

}  // namespace sluice::window_test
