// Random event-time window jobs against a brute-force reference written from Flink's documented
// rules, independently of the operator: window assignment (tumbling and sliding with offsets,
// sessions), a window is late when max_timestamp + lateness <= watermark, a record is late when it
// went into no window and timestamp + lateness <= watermark, windows fire when the watermark
// passes max_timestamp, a late-but-allowed record fires its windows again at once with everything
// they hold, windows are cleaned up at max_timestamp + lateness, sessions merge when their windows
// overlap or touch. Compares the exact firings (per key in order), the late side output and the
// dropped counter, for a list window (with and without an evictor), Aggregate + process and
// Reduce, at parallelism 1, 2 and 4.
#include <sluice/sluice.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <ostream>
#include <random>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "window/window_test_util.h"

namespace sluice {
namespace {

using ::testing::ElementsAreArray;
using ::testing::UnorderedElementsAreArray;
using window_test::kNoMark;

struct REv {
  int64_t key = 0;
  Timestamp ts = 0;
  int64_t value = 0;  // unique per record
  int64_t count = 1;
  Timestamp watermark_after = kNoMark;
  bool operator==(const REv&) const = default;
  friend std::ostream& operator<<(std::ostream& os, const REv& e) {
    return os << "REv{k=" << e.key << ", ts=" << e.ts << ", v=" << e.value << "}";
  }
};

// A firing: key, window, what it held (values, or {sum, count}), watermark, output timestamp.
struct RFired {
  int64_t key = 0;
  Timestamp start = 0;
  Timestamp end = 0;
  std::vector<int64_t> values;
  Timestamp watermark = kMinWatermark;
  Timestamp timestamp = kNoTimestamp;
  bool operator==(const RFired&) const = default;
  friend std::ostream& operator<<(std::ostream& os, const RFired& f) {
    os << "RFired{k=" << f.key << ", [" << f.start << ", " << f.end << "), {";
    for (size_t i = 0; i < f.values.size(); ++i) os << (i ? ", " : "") << f.values[i];
    return os << "}, wm=" << f.watermark << ", ts=" << f.timestamp << "}";
  }
};

enum class Kind { kTumbling, kSliding, kSession };

struct Spec {
  Kind kind = Kind::kTumbling;
  int64_t size = 10;
  int64_t slide = 10;
  int64_t offset = 0;
  int64_t gap = 10;
  int64_t lateness = 0;
  bool side_output = false;
  std::string Describe() const {
    switch (kind) {
      case Kind::kTumbling:
        return absl::StrCat("tumbling size=", size, " offset=", offset, " lateness=", lateness);
      case Kind::kSliding:
        return absl::StrCat("sliding size=", size, " slide=", slide, " offset=", offset,
                            " lateness=", lateness);
      case Kind::kSession:
        return absl::StrCat("session gap=", gap, " lateness=", lateness);
    }
    return "";
  }
};

// --- The reference -------------------------------------------------------------------------------

struct Expected {
  std::vector<RFired> lists;       // values in arrival order (sessions: sorted)
  std::vector<RFired> aggregates;  // {sum, count}
  std::vector<REv> late;
  int64_t dropped = 0;
  int64_t on_time = 0;
  int64_t ignored = 0;      // in no window, yet not late (never happens with these assigners)
  int64_t refires = 0;      // firings of late-but-allowed records
  int64_t late_merges = 0;  // sessions joined by a record behind the watermark
};

int64_t FloorMod(int64_t a, int64_t m) {
  int64_t r = a % m;
  return r < 0 ? r + m : r;
}

class Reference {
 public:
  explicit Reference(Spec spec) : spec_(spec) {}

  Expected Run(const std::vector<REv>& events) {
    for (const REv& e : events) {
      Add(e);
      if (e.watermark_after != kNoMark && e.watermark_after > wm_) Advance(e.watermark_after);
    }
    Advance(kMaxWatermark);
    return std::move(out_);
  }

 private:
  using Win = std::pair<Timestamp, Timestamp>;  // [start, end)
  struct Contents {
    std::vector<REv> records;
  };

  static Timestamp MaxTs(const Win& w) { return w.second - 1; }
  bool IsLate(const Win& w) const { return MaxTs(w) + spec_.lateness <= wm_; }

  std::vector<Win> Assign(Timestamp ts) const {
    std::vector<Win> out;
    if (spec_.kind == Kind::kTumbling) {
      Timestamp start = ts - FloorMod(ts - spec_.offset, spec_.size);
      out.push_back({start, start + spec_.size});
    } else if (spec_.kind == Kind::kSliding) {
      // Every window [s, s + size) with s = offset + k * slide and s <= ts < s + size.
      Timestamp last = ts - FloorMod(ts - spec_.offset, spec_.slide);
      for (Timestamp s = last; s + spec_.size > ts; s -= spec_.slide)
        out.push_back({s, s + spec_.size});
    } else {
      out.push_back({ts, ts + spec_.gap});
    }
    return out;
  }

  void Fire(int64_t key, const Win& w, const Contents& c) {
    RFired list{key, w.first, w.second, {}, wm_, MaxTs(w)};
    int64_t sum = 0;
    for (const REv& r : c.records) {
      list.values.push_back(r.value);
      sum += r.value;
    }
    if (spec_.kind == Kind::kSession) std::sort(list.values.begin(), list.values.end());
    out_.aggregates.push_back(
        {key, w.first, w.second, {sum, static_cast<int64_t>(c.records.size())}, wm_, MaxTs(w)});
    out_.lists.push_back(std::move(list));
  }

  void Add(const REv& e) {
    std::map<Win, Contents>& live = windows_[e.key];
    bool skipped = true;
    for (Win w : Assign(e.ts)) {
      if (spec_.kind == Kind::kSession) {
        // The session this record's window belongs to: its window and every live session that
        // overlaps or touches what has been joined so far.
        std::vector<Win> members;
        bool grew = true;
        while (grew) {
          grew = false;
          for (const auto& [x, c] : live) {
            if (std::find(members.begin(), members.end(), x) != members.end()) continue;
            if (x.first <= w.second && x.second >= w.first) {
              members.push_back(x);
              w = {std::min(w.first, x.first), std::max(w.second, x.second)};
              grew = true;
            }
          }
        }
        if (IsLate(w)) continue;
        Contents merged;
        if (members.size() >= 2 && e.ts <= wm_) ++out_.late_merges;
        std::sort(members.begin(), members.end());
        for (const Win& m : members) {
          for (const REv& r : live[m].records) merged.records.push_back(r);
          live.erase(m);
        }
        live[w] = std::move(merged);
      } else if (IsLate(w)) {
        continue;
      }
      skipped = false;
      Contents& c = live[w];
      c.records.push_back(e);
      // The watermark already passed the window's end: it fires at once.
      if (MaxTs(w) <= wm_) {
        Fire(e.key, w, c);
        ++out_.refires;
      }
    }
    if (!skipped) {
      ++out_.on_time;
    } else if (e.ts + spec_.lateness <= wm_) {
      if (spec_.side_output) {
        out_.late.push_back(e);
      } else {
        ++out_.dropped;
      }
    } else {
      ++out_.ignored;
    }
  }

  // The watermark moves to `to`: windows whose end it passes fire (per key in time order), then
  // windows past their end + lateness are cleaned up.
  void Advance(Timestamp to) {
    Timestamp from = wm_;
    wm_ = to;
    for (auto& [key, live] : windows_) {
      std::vector<std::pair<Timestamp, Win>> due;
      for (const auto& [w, c] : live) {
        if (MaxTs(w) > from && MaxTs(w) <= to) due.push_back({MaxTs(w), w});
      }
      std::sort(due.begin(), due.end());
      for (const auto& [t, w] : due) Fire(key, w, live[w]);
      std::erase_if(live, [&](const auto& entry) {
        return to == kMaxWatermark || MaxTs(entry.first) + spec_.lateness <= to;
      });
    }
  }

  Spec spec_;
  Timestamp wm_ = kMinWatermark;
  std::map<int64_t, std::map<Win, Contents>> windows_;
  Expected out_;
};

// --- Random input --------------------------------------------------------------------------------

struct Case {
  Spec spec;
  std::vector<REv> events;
};

Case MakeCase(uint64_t seed) {
  std::mt19937_64 rng(seed * 7919 + 17);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  Case c;
  Spec& s = c.spec;
  s.kind = static_cast<Kind>(uniform(0, 2));
  s.size = uniform(2, 40);
  s.slide = s.kind == Kind::kSliding ? uniform(1, s.size) : s.size;
  s.offset = uniform(-(s.slide - 1), s.slide - 1);
  s.gap = uniform(1, 30);
  s.lateness = uniform(0, 2) == 0 ? 0 : uniform(1, 40);
  s.side_output = uniform(0, 1) == 1;

  int64_t n = uniform(150, 400);
  int64_t keys = uniform(1, 5);
  int64_t disorder = uniform(0, 20);
  int64_t mark_percent = uniform(5, 30);
  Timestamp t = uniform(-300, 300);
  Timestamp max_seen = kMinWatermark;
  for (int64_t i = 0; i < n; ++i) {
    t += uniform(0, 99) < 8 ? uniform(10, 60) : uniform(0, 3);  // sometimes a pause
    REv e{uniform(0, keys - 1), t - uniform(0, disorder), i + 1};
    if (uniform(0, 99) < 5) e.ts = t - uniform(20, 120);  // deliberately late
    max_seen = std::max(max_seen, e.ts);
    // Punctuated watermarks at known records; some do not advance and are ignored.
    if (uniform(0, 99) < mark_percent) e.watermark_after = max_seen - uniform(0, disorder);
    c.events.push_back(e);
  }
  return c;
}

// --- The job -------------------------------------------------------------------------------------

struct Actual {
  std::vector<RFired> lists, evicting, aggregates, sums;
  std::vector<REv> late_lists, late_evicting, late_aggregates, late_sums;
  std::map<std::string, int64_t> counters;
};

class SumAndCount final : public AggregateFunction<REv, std::pair<int64_t, int64_t>, REv> {
 public:
  std::pair<int64_t, int64_t> CreateAccumulator() override { return {0, 0}; }
  void Add(const REv& e, std::pair<int64_t, int64_t>& acc) override {
    acc.first += e.value;
    acc.second += e.count;
  }
  REv GetResult(const std::pair<int64_t, int64_t>& acc) override {
    return {0, 0, acc.first, acc.second};
  }
  void Merge(const std::pair<int64_t, int64_t>& from, std::pair<int64_t, int64_t>& into) override {
    into.first += from.first;
    into.second += from.second;
  }
};

template <typename Assigner>
Actual RunJob(const Case& c, Assigner assigner, int parallelism) {
  StreamEnvironment env(window_test::Streaming(parallelism));
  OutputTag<REv> late("late");
  CollectSink<RFired> lists, evicting, aggregates, sums;
  CollectSink<REv> late_lists, late_evicting, late_aggregates, late_sums;
  auto windowed = env.FromSource(CollectionSource<REv>(c.events), window_test::Punctuated<REv>())
                      .KeyBy([](const REv& e) { return e.key; })
                      .Window(assigner)
                      .AllowedLateness(absl::Milliseconds(c.spec.lateness));
  if (c.spec.side_output) windowed = windowed.SideOutputLateData(late);
  bool sort = c.spec.kind == Kind::kSession;

  auto list_fn = [sort](const int64_t& key, WindowContext<TimeWindow>& ctx,
                        std::span<const REv> records, Collector<RFired>& out) {
    RFired f{key, ctx.window().start, ctx.window().end, {}, ctx.CurrentWatermark()};
    for (const REv& r : records) f.values.push_back(r.value);
    if (sort) std::sort(f.values.begin(), f.values.end());
    out.Collect(std::move(f));
  };
  auto list = windowed.template Process<RFired>(list_fn).Name("list");
  // The same through the evicting window operator (an evictor that keeps everything).
  auto evicted = windowed.Evictor(CountEvictor::Of(int64_t{1} << 40))
                     .template Process<RFired>(list_fn)
                     .Name("evicting");
  auto aggregate =
      windowed
          .template Aggregate<RFired>(SumAndCount(),
                                      [](const int64_t& key, WindowContext<TimeWindow>& ctx,
                                         std::span<const REv> r, Collector<RFired>& out) {
                                        out.Collect(RFired{key,
                                                           ctx.window().start,
                                                           ctx.window().end,
                                                           {r[0].value, r[0].count},
                                                           ctx.CurrentWatermark()});
                                      })
          .Name("aggregate");
  auto reduce = windowed
                    .Reduce([](const REv& a, const REv& b) {
                      return REv{a.key, 0, a.value + b.value, a.count + b.count};
                    })
                    .Name("reduce");
  window_test::Stamped(list).SinkTo(lists);
  window_test::Stamped(evicted).SinkTo(evicting);
  window_test::Stamped(aggregate).SinkTo(aggregates);
  window_test::Stamped(reduce.Map([](const REv& e) {
    return RFired{e.key, 0, 0, {e.value, e.count}};
  })).SinkTo(sums);
  if (c.spec.side_output) {
    list.GetSideOutput(late).SinkTo(late_lists);
    evicted.GetSideOutput(late).SinkTo(late_evicting);
    aggregate.GetSideOutput(late).SinkTo(late_aggregates);
    reduce.GetSideOutput(late).SinkTo(late_sums);
  }
  absl::StatusOr<JobHandle> job = env.ExecuteAsync("random-windows");
  EXPECT_TRUE(job.ok()) << job.status();
  Actual a;
  if (!job.ok()) return a;
  absl::Status status = job->Wait();
  EXPECT_TRUE(status.ok()) << status;
  a.lists = lists.values();
  a.evicting = evicting.values();
  a.late_evicting = late_evicting.values();
  a.aggregates = aggregates.values();
  a.sums = sums.values();
  a.late_lists = late_lists.values();
  a.late_aggregates = late_aggregates.values();
  a.late_sums = late_sums.values();
  a.counters = job->Counters();
  return a;
}

Actual RunCase(const Case& c, int parallelism) {
  const Spec& s = c.spec;
  switch (s.kind) {
    case Kind::kTumbling:
      return RunJob(
          c, TumblingEventTimeWindows::Of(absl::Milliseconds(s.size), absl::Milliseconds(s.offset)),
          parallelism);
    case Kind::kSliding:
      return RunJob(
          c,
          SlidingEventTimeWindows::Of(absl::Milliseconds(s.size), absl::Milliseconds(s.slide),
                                      absl::Milliseconds(s.offset)),
          parallelism);
    case Kind::kSession:
      return RunJob(c, EventTimeSessionWindows::WithGap(absl::Milliseconds(s.gap)), parallelism);
  }
  return {};
}

std::vector<RFired> OfKey(const std::vector<RFired>& all, int64_t key) {
  std::vector<RFired> out;
  for (const RFired& f : all) {
    if (f.key == key) out.push_back(f);
  }
  return out;
}

std::vector<REv> ByValue(std::vector<REv> v) {
  std::sort(v.begin(), v.end(), [](const REv& a, const REv& b) { return a.value < b.value; });
  return v;
}

class WindowRandomTest : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(WindowRandomTest, MatchesTheReference) {
  auto [seed, parallelism] = GetParam();
  Case c = MakeCase(static_cast<uint64_t>(seed));
  SCOPED_TRACE(absl::StrCat("seed ", seed, ", parallelism ", parallelism, ": ", c.spec.Describe(),
                            c.spec.side_output ? ", late data to a side output" : ""));
  Expected want = Reference(c.spec).Run(c.events);
  ASSERT_EQ(want.ignored, 0);
  ASSERT_EQ(want.on_time + static_cast<int64_t>(want.late.size()) + want.dropped,
            static_cast<int64_t>(c.events.size()));
  Actual got = RunCase(c, parallelism);

  EXPECT_THAT(got.lists, UnorderedElementsAreArray(want.lists));
  EXPECT_THAT(got.evicting, UnorderedElementsAreArray(want.lists));
  EXPECT_THAT(got.aggregates, UnorderedElementsAreArray(want.aggregates));
  std::vector<RFired> want_sums;
  for (const RFired& f : want.aggregates) {
    want_sums.push_back({f.key, 0, 0, f.values, kMinWatermark, f.timestamp});
  }
  EXPECT_THAT(got.sums, UnorderedElementsAreArray(want_sums));
  // The firings of a key come in the order of the reference (time order within a watermark).
  std::set<int64_t> keys;
  for (const REv& e : c.events) keys.insert(e.key);
  for (int64_t key : keys) {
    EXPECT_THAT(OfKey(got.lists, key), ElementsAreArray(OfKey(want.lists, key))) << "key " << key;
    EXPECT_THAT(OfKey(got.evicting, key), ElementsAreArray(OfKey(want.lists, key)))
        << "key " << key;
    EXPECT_THAT(OfKey(got.aggregates, key), ElementsAreArray(OfKey(want.aggregates, key)))
        << "key " << key;
  }

  std::vector<REv> want_late = ByValue(want.late);
  EXPECT_THAT(ByValue(got.late_lists), ElementsAreArray(want_late));
  EXPECT_THAT(ByValue(got.late_evicting), ElementsAreArray(want_late));
  EXPECT_THAT(ByValue(got.late_aggregates), ElementsAreArray(want_late));
  EXPECT_THAT(ByValue(got.late_sums), ElementsAreArray(want_late));
  for (const char* op : {"list", "evicting", "aggregate", "reduce"}) {
    std::string counter = absl::StrCat(op, ".numLateRecordsDropped");
    EXPECT_EQ(got.counters[counter], want.dropped) << counter;
  }

  // Every record is accounted for once: in some firing, in the late output, or dropped.
  std::set<int64_t> fired;
  for (const RFired& f : got.lists) fired.insert(f.values.begin(), f.values.end());
  EXPECT_EQ(static_cast<int64_t>(fired.size()) + static_cast<int64_t>(got.late_lists.size()) +
                got.counters["list.numLateRecordsDropped"],
            static_cast<int64_t>(c.events.size()));
}

INSTANTIATE_TEST_SUITE_P(Seeds, WindowRandomTest,
                         ::testing::Combine(::testing::Range(0, 20), ::testing::Values(1, 2, 4)),
                         [](const auto& info) {
                           return absl::StrCat("seed", std::get<0>(info.param), "_p",
                                               std::get<1>(info.param));
                         });

// The seeds exercise what the test is for: re-firings of late-but-allowed records, sessions
// joined by late records, late records to the side output and dropped, every kind of window.
TEST(WindowReferenceTest, TheSeedsCoverLatenessAndMerging) {
  int64_t refires = 0, late_merges = 0, late = 0, dropped = 0;
  std::set<Kind> kinds;
  for (int seed = 0; seed < 20; ++seed) {
    Case c = MakeCase(static_cast<uint64_t>(seed));
    Expected e = Reference(c.spec).Run(c.events);
    refires += e.refires;
    late_merges += e.late_merges;
    late += static_cast<int64_t>(e.late.size());
    dropped += e.dropped;
    kinds.insert(c.spec.kind);
  }
  EXPECT_GE(refires, 20);
  EXPECT_GE(late_merges, 3);
  EXPECT_GE(late, 20);
  EXPECT_GE(dropped, 20);
  EXPECT_EQ(kinds.size(), 3u);
}

// The reference itself, on the deck example (tumbling 10 s, lateness 5 s) and a bridging session.
TEST(WindowReferenceTest, ReproducesHandComputedFirings) {
  Spec tumbling{.kind = Kind::kTumbling, .size = 10, .slide = 10, .lateness = 5};
  std::vector<REv> events = {{0, 3, 3},       {0, 1, 1},        {0, 11, 11}, {0, 7, 7},
                             {0, 8, 8, 1, 9}, {0, 4, 4, 1, 15}, {0, 2, 2}};
  Expected e = Reference(tumbling).Run(events);
  EXPECT_THAT(e.lists, ElementsAreArray(std::vector<RFired>{{0, 0, 10, {3, 1, 7, 8}, 9, 9},
                                                            {0, 0, 10, {3, 1, 7, 8, 4}, 9, 9},
                                                            {0, 10, 20, {11}, kMaxWatermark, 19}}));
  EXPECT_EQ(e.dropped, 1);  // 2 came after [0, 10) was cleaned up at 9 + 5

  Spec session{.kind = Kind::kSession, .gap = 10, .lateness = 20};
  events = {{0, 0, 1}, {0, 15, 2, 1, 26}, {0, 7, 3}};
  e = Reference(session).Run(events);
  EXPECT_THAT(e.lists, ElementsAreArray(std::vector<RFired>{{0, 0, 10, {1}, 26, 9},
                                                            {0, 15, 25, {2}, 26, 24},
                                                            {0, 0, 25, {1, 2, 3}, 26, 24}}));
}

}  // namespace
}  // namespace sluice
