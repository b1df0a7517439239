// Window contents in the RocksDB backend: representative window jobs give exactly the same
// output on RocksDB as on HashMap (and the expected one), and on RocksDB the contents are in the
// operator's column families while the job runs, not in memory.
#include <sluice/internal/rocksdb_store.h>
#include <sluice/internal/window_operator.h>
#include <sluice/sluice.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "window/window_test_util.h"

namespace sluice::window_test {
namespace {

using ::testing::HasSubstr;

// A backend and the size of the RocksDB window cache (RocksDbStateOptions::window_cache_bytes).
struct Backend {
  StateBackendKind kind;
  int64_t window_cache_bytes;
  const char* name;
};
// On RocksDB: the default cache (nothing is evicted in these small jobs), no cache (every record
// reads and writes RocksDB), and a 1-byte cache (written back and emptied after every batch: the
// contents leave the cache and come back from RocksDB).
constexpr Backend kBackends[] = {
    {StateBackendKind::kHashMap, 0, "HashMap"},
    {StateBackendKind::kRocksDb, int64_t{64} << 20, "RocksDB"},
    {StateBackendKind::kRocksDb, 0, "RocksDB_NoWindowCache"},
    {StateBackendKind::kRocksDb, 1, "RocksDB_WindowCacheEvictedEveryBatch"}};

struct SumEv {
  Ev operator()(const Ev& a, const Ev& b) const {
    Ev r = a;
    r.value += b.value;
    return r;
  }
};

class SumAgg : public AggregateFunction<Ev, int64_t, int64_t> {
 public:
  int64_t CreateAccumulator() override { return 0; }
  void Add(const Ev& e, int64_t& acc) override { acc += e.value; }
  int64_t GetResult(const int64_t& acc) override { return acc; }
  void Merge(const int64_t& from, int64_t& into) override { into += from; }
};

// Reports an aggregate's result like ListValues reports elements.
struct ReportSum {
  template <typename W>
  void operator()(const std::string& key, WindowContext<W>& ctx, std::span<const int64_t> sums,
                  Collector<Fired>& out) const {
    Fired f;
    f.key = key;
    std::tie(f.start, f.end) = Bounds(ctx.window());
    f.values.assign(sums.begin(), sums.end());
    f.watermark = ctx.CurrentWatermark();
    out.Collect(std::move(f));
  }
};

std::vector<Fired> SortedFired(std::vector<Fired> v) {
  std::sort(v.begin(), v.end(), [](const Fired& a, const Fired& b) {
    return std::tie(a.key, a.start, a.end, a.values, a.watermark) <
           std::tie(b.key, b.start, b.end, b.values, b.watermark);
  });
  return v;
}

// Runs `build` over `events` on `backend`; at parallelism > 1 the firings are sorted.
template <typename Build>
std::vector<Fired> RunOn(const Backend& backend, int parallelism, std::vector<Ev> events,
                         Build build) {
  RuntimeOptions options{.parallelism = parallelism, .execution_mode = ExecutionMode::kStreaming};
  options.state_backend = backend.kind;
  options.rocksdb.window_cache_bytes = backend.window_cache_bytes;
  StreamEnvironment env(options);
  CollectSink<Fired> sink;
  Stamped(build(EventSource(env, std::move(events)))).SinkTo(sink);
  absl::Status status = env.Execute("window-rocksdb-test");
  EXPECT_TRUE(status.ok()) << status;
  return parallelism > 1 ? SortedFired(sink.values()) : sink.values();
}

// Every backend configuration, parallelism 1 (exact order) and 2 (as a multiset), give `expected`.
template <typename Build>
void ExpectOnBothBackends(const std::vector<Ev>& events, Build build,
                          const std::vector<Fired>& expected) {
  for (const Backend& backend : kBackends) {
    SCOPED_TRACE(backend.name);
    EXPECT_EQ(RunOn(backend, 1, events, build), expected) << "parallelism 1";
    EXPECT_EQ(RunOn(backend, 2, events, build), SortedFired(expected)) << "parallelism 2";
  }
}

Fired Global(std::string key, std::vector<int64_t> values, Timestamp wm) {
  return {std::move(key), kMinWatermark, kMaxWatermark, std::move(values), wm, kMaxWatermark};
}

// --- Whole jobs: the same output on both backends ------------------------------------------------

const std::vector<Ev> kTumblingInput = {{"a", 1, 1},   {"b", 3, 10},
                                        {"a", 5, 2},   WithMark({"a", 12, 4}, 10),
                                        {"b", 15, 20}, WithMark({"a", 25, 8}, 30)};
const std::vector<Fired> kTumblingSums = {F("a", 0, 10, {3}, 10), F("b", 0, 10, {10}, 10),
                                          F("a", 10, 20, {4}, 30), F("b", 10, 20, {20}, 30),
                                          F("a", 20, 30, {8}, 30)};

TEST(WindowRocksDbTest, TumblingReducePerWindow) {
  ExpectOnBothBackends(
      kTumblingInput,
      [](DataStream<Ev> in) {
        return in.KeyBy(ByKey)
            .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
            .WithoutSliceSharing()
            .Reduce<Fired>(SumEv{}, ListValues{});
      },
      kTumblingSums);
}

TEST(WindowRocksDbTest, TumblingReduceWithSlices) {
  ExpectOnBothBackends(
      kTumblingInput,
      [](DataStream<Ev> in) {
        return in.KeyBy(ByKey)
            .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
            .Reduce<Fired>(SumEv{}, ListValues{});
      },
      kTumblingSums);
}

const std::vector<Ev> kSlidingInput = {{"a", 1, 1},  {"a", 12, 2},
                                       {"b", 14, 5}, WithMark({"a", 25, 4}, 29),
                                       {"a", 31, 8}, WithMark({"b", 40, 16}, 60)};
const std::vector<Fired> kSlidingSums = {
    F("a", -20, 10, {1}, 29), F("a", -10, 20, {3}, 29), F("b", -10, 20, {5}, 29),
    F("a", 0, 30, {7}, 29),   F("b", 0, 30, {5}, 29),   F("a", 10, 40, {14}, 60),
    F("b", 10, 40, {5}, 60),  F("a", 20, 50, {12}, 60), F("b", 20, 50, {16}, 60),
    F("a", 30, 60, {8}, 60),  F("b", 30, 60, {16}, 60), F("b", 40, 70, {16}, kMaxWatermark)};

TEST(WindowRocksDbTest, SlidingAggregateWithSlices) {
  ExpectOnBothBackends(
      kSlidingInput,
      [](DataStream<Ev> in) {
        return in.KeyBy(ByKey)
            .Window(SlidingEventTimeWindows::Of(absl::Milliseconds(30), absl::Milliseconds(10)))
            .Aggregate<Fired>(SumAgg{}, ReportSum{});
      },
      kSlidingSums);
}

TEST(WindowRocksDbTest, SlidingAggregatePerWindow) {
  ExpectOnBothBackends(
      kSlidingInput,
      [](DataStream<Ev> in) {
        return in.KeyBy(ByKey)
            .Window(SlidingEventTimeWindows::Of(absl::Milliseconds(30), absl::Milliseconds(10)))
            .WithoutSliceSharing()
            .Aggregate<Fired>(SumAgg{}, ReportSum{});
      },
      kSlidingSums);
}

// The evictor's changes are written back: the late element re-fires what the first firing left.
TEST(WindowRocksDbTest, ProcessWithEvictorAndLateRefiring) {
  ExpectOnBothBackends(
      {{"a", 1, 1}, {"a", 2, 2}, {"a", 3, 3}, {"b", 4, 7}, WithMark({"a", 15, 5}, 10), {"a", 4, 9}},
      [](DataStream<Ev> in) {
        return in.KeyBy(ByKey)
            .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
            .AllowedLateness(absl::Milliseconds(10))
            .Evictor(CountEvictor::Of(2))
            .Process<Fired>(ListValues{});
      },
      {F("a", 0, 10, {2, 3}, 10), F("b", 0, 10, {7}, 10), F("a", 0, 10, {3, 9}, 10),
       F("a", 10, 20, {5}, kMaxWatermark)});
}

const std::vector<Ev> kSessionInput = {
    {"a", 1, 1}, {"a", 30, 2}, {"b", 5, 16}, {"a", 20, 4}, {"a", 10, 8}};

// Merged contents come in window order ([1,11) then [20,40)), then the merging element.
TEST(WindowRocksDbTest, SessionWindowsMergeListContents) {
  ExpectOnBothBackends(
      kSessionInput,
      [](DataStream<Ev> in) {
        return in.KeyBy(ByKey)
            .Window(EventTimeSessionWindows::WithGap(absl::Milliseconds(10)))
            .Process<Fired>(ListValues{});
      },
      {F("b", 5, 15, {16}, kMaxWatermark), F("a", 1, 40, {1, 2, 4, 8}, kMaxWatermark)});
}

TEST(WindowRocksDbTest, SessionWindowsMergeReducedContents) {
  ExpectOnBothBackends(kSessionInput,
                       [](DataStream<Ev> in) {
                         return in.KeyBy(ByKey)
                             .Window(EventTimeSessionWindows::WithGap(absl::Milliseconds(10)))
                             .Reduce<Fired>(SumEv{}, ListValues{});
                       },
                       {F("b", 5, 15, {16}, kMaxWatermark), F("a", 1, 40, {15}, kMaxWatermark)});
}

// Count windows: GlobalWindow, trigger state (the count) in RocksDB, purging.
TEST(WindowRocksDbTest, CountWindowsKeepTheirCountsInTheBackend) {
  ExpectOnBothBackends(
      {{"a", 1, 1}, {"a", 2, 2}, {"b", 3, 3}, {"a", 4, 4}, {"a", 5, 5}, {"b", 6, 6}, {"a", 7, 7}},
      [](DataStream<Ev> in) { return in.KeyBy(ByKey).CountWindow(2).Process<Fired>(ListValues{}); },
      {Global("a", {1, 2}, kMinWatermark), Global("a", {4, 5}, kMinWatermark),
       Global("b", {3, 6}, kMinWatermark)});
}

TEST(WindowRocksDbTest, WindowAll) {
  ExpectOnBothBackends({{"a", 1, 1}, {"b", 3, 2}, WithMark({"a", 12, 4}, 10), {"c", 14, 8}},
                       [](DataStream<Ev> in) {
                         return in.WindowAll(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
                             .Process<Fired>(ListAllValues{});
                       },
                       {F("*", 0, 10, {1, 2}, 10), F("*", 10, 20, {4, 8}, kMaxWatermark)});
}

// Late within the allowed lateness: the window fires again at once; later than that: the side
// output. Per window, with slices, and with a process function over all elements.
TEST(WindowRocksDbTest, AllowedLatenessRefiresAndLateDataGoesToTheSideOutput) {
  const std::vector<Ev> input = {{"a", 1, 1},
                                 WithMark({"a", 12, 2}, 10),
                                 {"a", 3, 4},
                                 WithMark({"a", 13, 8}, 14),
                                 {"a", 5, 16}};
  const OutputTag<Ev> late("late");
  enum Kind { kProcess, kReducePerWindow, kReduceSlices };
  for (Kind kind : {kProcess, kReducePerWindow, kReduceSlices}) {
    SCOPED_TRACE(kind);
    const std::vector<Fired> expected =
        kind == kProcess ? std::vector<Fired>{F("a", 0, 10, {1}, 10), F("a", 0, 10, {1, 4}, 10),
                                              F("a", 10, 20, {2, 8}, kMaxWatermark)}
                         : std::vector<Fired>{F("a", 0, 10, {1}, 10), F("a", 0, 10, {5}, 10),
                                              F("a", 10, 20, {10}, kMaxWatermark)};
    for (const Backend& backend : kBackends) {
      SCOPED_TRACE(backend.name);
      RuntimeOptions options{.parallelism = 1, .execution_mode = ExecutionMode::kStreaming};
      options.state_backend = backend.kind;
      options.rocksdb.window_cache_bytes = backend.window_cache_bytes;
      StreamEnvironment env(options);
      auto windowed = EventSource(env, input)
                          .KeyBy(ByKey)
                          .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
                          .AllowedLateness(absl::Milliseconds(5))
                          .SideOutputLateData(late);
      DataStream<Fired> fired =
          kind == kProcess ? windowed.Process<Fired>(ListValues{})
          : kind == kReduceSlices
              ? windowed.Reduce<Fired>(SumEv{}, ListValues{})
              : windowed.WithoutSliceSharing().Reduce<Fired>(SumEv{}, ListValues{});
      CollectSink<Fired> sink;
      CollectSink<Ev> late_sink;
      Stamped(fired).SinkTo(sink);
      fired.GetSideOutput(late).SinkTo(late_sink);
      absl::Status status = env.Execute("lateness");
      ASSERT_TRUE(status.ok()) << status;
      EXPECT_EQ(sink.values(), expected);
      EXPECT_EQ(late_sink.values(), (std::vector<Ev>{{"a", 5, 16}}));
    }
  }
}

// --- The contents are in RocksDB while the operator runs ------------------------------------------

// Captures an operator's main output.
class Capture final : public internal::BatchConsumer<Fired> {
 public:
  void Consume(std::vector<Fired>& records, std::vector<Timestamp>&) override {
    lines.insert(lines.end(), records.begin(), records.end());
  }
  void OnEndOfInput() override {}
  void OnWatermark(Timestamp) override {}
  std::vector<Fired> lines;
};

std::string KeyOf(const Ev& e) { return e.key; }
using KeyFn = std::string (*)(const Ev&);
using ListFn = internal::UserWindowFunction<ListValues, false>;
using TumblingOp = internal::WindowOperator<std::string, Ev, Fired, KeyFn, TumblingEventTimeWindows,
                                            EventTimeTrigger, internal::ListContents<Ev>, ListFn>;
using SlicingOp =
    internal::SlicingWindowOperator<std::string, Ev, Fired, KeyFn, SlidingEventTimeWindows,
                                    internal::ReduceContents<Ev, SumEv>, ListFn>;

// One operator subtask driven by the test.
class DirectTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');
    dir_ = (std::filesystem::temp_directory_path() /
            absl::StrCat("sluice-window-rocksdb-", ::getpid(), "-", name))
               .string();
    std::filesystem::remove_all(dir_);
    state_.kind = GetParam().kind;
    if (state_.kind == StateBackendKind::kRocksDb) {
      state_.rocksdb.window_cache_bytes = GetParam().window_cache_bytes;
      state_.rocksdb.block_cache_bytes = 8 << 20;
      state_.rocksdb.write_buffer_budget_bytes = 8 << 20;
      state_.rocksdb_resources = internal::MakeRocksDbResources(state_.rocksdb);
      state_.rocksdb_job_dir = dir_;
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  internal::OperatorSetup MakeSetup() {
    internal::OperatorSetup setup;
    setup.runtime = RuntimeContext{"win", "win (1/1)", 0, 1, 16, false, &counters_};
    setup.state = &state_;
    setup.node_id = 3;
    setup.clock = &clock_;
    internal::OutputSetup main;
    main.consumers.push_back(&out_);
    setup.outputs.push_back(std::move(main));
    return setup;
  }
  // The slicing operator over sliding 20 ms / 10 ms windows summing the values, opened.
  std::unique_ptr<SlicingOp> OpenSlidingSums() {
    setup_ = MakeSetup();
    auto op = std::make_unique<SlicingOp>(
        setup_, &KeyOf, SlidingEventTimeWindows::Of(absl::Milliseconds(20), absl::Milliseconds(10)),
        internal::ReduceContents<Ev, SumEv>{}, ListFn{ListValues{}},
        internal::WindowSettings<Ev>{});
    op->Open();
    return op;
  }
  template <typename Op>
  static void Send(Op& op, std::vector<Ev> events) {
    std::vector<Timestamp> ts;
    for (const Ev& e : events) ts.push_back(e.ts);
    op.Consume(events, ts);
  }
  // Entries of column family `name` of `op`'s instance, and the list elements they hold.
  template <typename Op>
  static std::pair<int, int> CountStored(Op& op, const std::string& name, bool lists) {
    internal::RocksDbStore* db = op.state().rocksdb();
    if (db == nullptr) return {0, 0};
    absl::StatusOr<int> cf = db->ColumnFamily(name);
    EXPECT_TRUE(cf.ok()) << cf.status();
    int entries = 0, elements = 0;
    db->Scan(*cf, "", "", [&](std::string_view, std::string_view v) {
      ++entries;
      if (lists) {
        EXPECT_TRUE(internal::ForEachListElement(v, [&](std::string_view) { ++elements; }));
      }
      return true;
    });
    return {entries, elements};
  }

  std::string dir_;
  internal::OperatorSetup setup_;
  internal::StateBackendSetup state_;
  ManualClock clock_{0};
  Counters counters_;
  Capture out_;
};

TEST_P(DirectTest, ProcessWindowElementsAreAppendedToRocksDb) {
  const bool rocks = GetParam().kind == StateBackendKind::kRocksDb;
  internal::OperatorSetup setup = MakeSetup();
  TumblingOp op(setup, &KeyOf, TumblingEventTimeWindows::Of(absl::Milliseconds(10)),
                EventTimeTrigger{}, internal::ListContents<Ev>{}, ListFn{ListValues{}},
                internal::WindowSettings<Ev>{});
  op.Open();
  EXPECT_EQ(op.contents_in_rocksdb(), rocks);
  Send(op, {{"a", 1, 1}, {"b", 2, 2}, {"a", 3, 3}, {"a", 11, 4}, {"c", 12, 5}});
  // Windows (a,[0,10)), (b,[0,10)), (a,[10,20)), (c,[10,20)) with 5 elements.
  if (rocks) {
    EXPECT_EQ(op.num_window_entries(), 0u);
    EXPECT_EQ(CountStored(op, "_window_contents", true), std::make_pair(4, 5));
  } else {
    EXPECT_EQ(op.num_window_entries(), 4u);
    EXPECT_EQ(op.state().rocksdb(), nullptr);
  }
  op.OnWatermark(9);
  EXPECT_EQ(out_.lines, (std::vector<Fired>{{"a", 0, 10, {1, 3}, 9, kNoTimestamp},
                                            {"b", 0, 10, {2}, 9, kNoTimestamp}}));
  if (rocks) {
    EXPECT_EQ(op.num_window_entries(), 0u);
    EXPECT_EQ(CountStored(op, "_window_contents", true), std::make_pair(2, 2));
  } else {
    EXPECT_EQ(op.num_window_entries(), 2u);
  }
  op.OnWatermark(kMaxWatermark);
  EXPECT_EQ(out_.lines.size(), 4u);
  if (rocks) {
    EXPECT_EQ(CountStored(op, "_window_contents", true), std::make_pair(0, 0));
  }
  EXPECT_EQ(op.num_window_entries(), 0u);
  op.Close();
}

TEST_P(DirectTest, SlicesAreInRocksDb) {
  const bool rocks = GetParam().kind == StateBackendKind::kRocksDb;
  std::unique_ptr<SlicingOp> sliding = OpenSlidingSums();
  SlicingOp& op = *sliding;
  EXPECT_EQ(op.contents_in_rocksdb(), rocks);
  Send(op, {{"a", 1, 1}, {"b", 2, 2}, {"a", 3, 3}, {"a", 11, 4}});
  if (rocks) {
    EXPECT_EQ(op.num_slices(), 0u);
    EXPECT_EQ(CountStored(op, "_slices", false), std::make_pair(3, 0));
  } else {
    EXPECT_EQ(op.num_slices(), 3u);
  }
  op.OnWatermark(kMaxWatermark);
  std::vector<Fired> sums;
  for (const Fired& f : out_.lines) sums.push_back(f);
  EXPECT_EQ(SortedFired(sums), SortedFired({{"a", -10, 10, {4}, kMaxWatermark, kNoTimestamp},
                                            {"b", -10, 10, {2}, kMaxWatermark, kNoTimestamp},
                                            {"a", 0, 20, {8}, kMaxWatermark, kNoTimestamp},
                                            {"b", 0, 20, {2}, kMaxWatermark, kNoTimestamp},
                                            {"a", 10, 30, {4}, kMaxWatermark, kNoTimestamp}}));
  if (rocks) {
    EXPECT_EQ(CountStored(op, "_slices", false), std::make_pair(0, 0));
  }
  op.Close();
}

// A value in RocksDB that does not decode fails the job with DataLoss naming the operator.
TEST(WindowRocksDbDirectTest, CorruptContentsFailWithTheOperatorsName) {
  std::string dir = (std::filesystem::temp_directory_path() /
                     absl::StrCat("sluice-window-rocksdb-corrupt-", ::getpid()))
                        .string();
  std::filesystem::remove_all(dir);
  internal::StateBackendSetup state;
  state.kind = StateBackendKind::kRocksDb;
  state.rocksdb.block_cache_bytes = 8 << 20;
  state.rocksdb.write_buffer_budget_bytes = 8 << 20;
  state.rocksdb_resources = internal::MakeRocksDbResources(state.rocksdb);
  state.rocksdb_job_dir = dir;
  ManualClock clock(0);
  Counters counters;
  Capture out;
  internal::OperatorSetup setup;
  setup.runtime = RuntimeContext{"win", "win (1/1)", 0, 1, 16, false, &counters};
  setup.state = &state;
  setup.clock = &clock;
  internal::OutputSetup main;
  main.consumers.push_back(&out);
  setup.outputs.push_back(std::move(main));
  {
    TumblingOp op(setup, &KeyOf, TumblingEventTimeWindows::Of(absl::Milliseconds(10)),
                  EventTimeTrigger{}, internal::ListContents<Ev>{}, ListFn{ListValues{}},
                  internal::WindowSettings<Ev>{});
    op.Open();
    std::vector<Ev> events = {{"a", 1, 1}};
    std::vector<Timestamp> ts = {1};
    op.Consume(events, ts);
    // The element waits in the window cache until a snapshot writes it to RocksDB.
    ASSERT_TRUE(op.state().Snapshot().ok());
    internal::RocksDbStore* db = op.state().rocksdb();
    ASSERT_NE(db, nullptr);
    absl::StatusOr<int> cf = db->ColumnFamily("_window_contents");
    ASSERT_TRUE(cf.ok());
    std::string key;
    db->Scan(*cf, "", "", [&](std::string_view k, std::string_view) {
      key.assign(k);
      return false;
    });
    ASSERT_FALSE(key.empty());
    db->Put(*cf, key, "\xff");
    try {
      op.OnWatermark(kMaxWatermark);
      ADD_FAILURE() << "the corrupt contents were not noticed";
    } catch (const internal::JobFailure& f) {
      EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << f.status();
      EXPECT_THAT(std::string(f.status().message()), HasSubstr("operator 'win'"));
      EXPECT_THAT(std::string(f.status().message()), HasSubstr("_window_contents"));
    }
    op.Close();
  }
  std::filesystem::remove_all(dir);
}

// --- The write-back cache of window contents on RocksDB -------------------------------------------

class WindowCacheTest : public DirectTest {
 protected:
  // A snapshot of the operator's keyed backend (what a checkpoint takes).
  template <typename Op>
  static void Snapshot(Op& op) {
    absl::StatusOr<internal::KeyedSnapshot> snap = op.state().Snapshot();
    ASSERT_TRUE(snap.ok()) << snap.status();
  }
};

// Records fold into cached slices; RocksDB receives them only when a snapshot is taken, and the
// cleanup deletes what was written.
TEST_P(WindowCacheTest, SlicesStayInTheCacheUntilASnapshot) {
  std::unique_ptr<SlicingOp> sliding = OpenSlidingSums();
  SlicingOp& op = *sliding;
  Send(op, {{"a", 1, 1}, {"b", 2, 2}, {"a", 3, 3}, {"a", 11, 4}});
  EXPECT_EQ(op.num_slices(), 0u);
  EXPECT_EQ(op.cached_window_entries(), 3u);
  EXPECT_EQ(CountStored(op, "_slices", false), std::make_pair(0, 0));
  Snapshot(op);
  EXPECT_EQ(CountStored(op, "_slices", false), std::make_pair(3, 0));
  EXPECT_EQ(op.cached_window_entries(), 3u);  // written back, still cached
  Send(op, {{"a", 4, 10}});                   // folds into the cached slice (a, [0, 10))
  op.OnWatermark(kMaxWatermark);
  EXPECT_EQ(SortedFired(out_.lines),
            SortedFired({{"a", -10, 10, {14}, kMaxWatermark, kNoTimestamp},
                         {"b", -10, 10, {2}, kMaxWatermark, kNoTimestamp},
                         {"a", 0, 20, {18}, kMaxWatermark, kNoTimestamp},
                         {"b", 0, 20, {2}, kMaxWatermark, kNoTimestamp},
                         {"a", 10, 30, {4}, kMaxWatermark, kNoTimestamp}}));
  EXPECT_EQ(CountStored(op, "_slices", false), std::make_pair(0, 0));
  EXPECT_EQ(op.cached_window_entries(), 0u);
  op.Close();
}

// A cache above its bound is written back and emptied at the end of the batch; the next records
// of those slices read them back from RocksDB.
TEST_P(WindowCacheTest, AFullCacheIsWrittenBackAndReadAgain) {
  state_.rocksdb.window_cache_bytes = 1;
  std::unique_ptr<SlicingOp> sliding = OpenSlidingSums();
  SlicingOp& op = *sliding;
  Send(op, {{"a", 1, 1}, {"b", 2, 2}});
  EXPECT_EQ(op.cached_window_entries(), 0u);
  EXPECT_EQ(CountStored(op, "_slices", false), std::make_pair(2, 0));
  Send(op, {{"a", 3, 3}, {"a", 11, 4}});
  EXPECT_EQ(op.cached_window_entries(), 0u);
  EXPECT_EQ(CountStored(op, "_slices", false), std::make_pair(3, 0));
  op.OnWatermark(kMaxWatermark);
  EXPECT_EQ(SortedFired(out_.lines),
            SortedFired({{"a", -10, 10, {4}, kMaxWatermark, kNoTimestamp},
                         {"b", -10, 10, {2}, kMaxWatermark, kNoTimestamp},
                         {"a", 0, 20, {8}, kMaxWatermark, kNoTimestamp},
                         {"b", 0, 20, {2}, kMaxWatermark, kNoTimestamp},
                         {"a", 10, 30, {4}, kMaxWatermark, kNoTimestamp}}));
  EXPECT_EQ(CountStored(op, "_slices", false), std::make_pair(0, 0));
  op.Close();
}

// Process windows: appended elements wait in the cache and reach RocksDB as one list per window
// at a snapshot; a window fires its stored elements followed by the pending ones, in arrival order.
TEST_P(WindowCacheTest, AppendedElementsWaitInTheCacheInArrivalOrder) {
  internal::OperatorSetup setup = MakeSetup();
  TumblingOp op(setup, &KeyOf, TumblingEventTimeWindows::Of(absl::Milliseconds(10)),
                EventTimeTrigger{}, internal::ListContents<Ev>{}, ListFn{ListValues{}},
                internal::WindowSettings<Ev>{});
  op.Open();
  Send(op, {{"a", 1, 1}, {"b", 2, 2}, {"a", 3, 3}});
  EXPECT_EQ(op.cached_window_entries(), 2u);
  EXPECT_EQ(CountStored(op, "_window_contents", true), std::make_pair(0, 0));
  Snapshot(op);
  EXPECT_EQ(CountStored(op, "_window_contents", true), std::make_pair(2, 3));
  EXPECT_EQ(op.cached_window_entries(), 0u);  // pending elements leave the cache
  Send(op, {{"a", 4, 4}, {"c", 12, 5}});
  EXPECT_EQ(op.cached_window_entries(), 2u);
  EXPECT_EQ(CountStored(op, "_window_contents", true), std::make_pair(2, 3));
  op.OnWatermark(9);
  EXPECT_EQ(out_.lines, (std::vector<Fired>{{"a", 0, 10, {1, 3, 4}, 9, kNoTimestamp},
                                            {"b", 0, 10, {2}, 9, kNoTimestamp}}));
  EXPECT_EQ(CountStored(op, "_window_contents", true), std::make_pair(0, 0));
  op.OnWatermark(kMaxWatermark);
  EXPECT_EQ(out_.lines.back(), (Fired{"c", 10, 20, {5}, kMaxWatermark, kNoTimestamp}));
  EXPECT_EQ(op.cached_window_entries(), 0u);
  op.Close();
}

// The per-record storage without the cache (the cache's own tests are below).
INSTANTIATE_TEST_SUITE_P(Backends, DirectTest, ::testing::Values(kBackends[0], kBackends[2]),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return std::string(info.param.name);
                         });
INSTANTIATE_TEST_SUITE_P(Cache, WindowCacheTest, ::testing::Values(kBackends[1]),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace sluice::window_test
