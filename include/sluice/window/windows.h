// Windows and window assigners, with Flink's exact boundaries ("Windows" in Flink's docs).
//
//   stream.KeyBy(...).Window(sluice::TumblingEventTimeWindows::Of(absl::Minutes(1)))
//   stream.KeyBy(...).Window(
//       sluice::SlidingEventTimeWindows::Of(absl::Seconds(10), absl::Seconds(5)))
//   stream.KeyBy(...).Window(sluice::EventTimeSessionWindows::WithGap(absl::Minutes(30)))
//   stream.KeyBy(...).CountWindow(100)
//
// A TimeWindow is [start, end); its max_timestamp() is end - 1. Assigners are plain values;
// invalid parameters are reported by Validate() when the job is built.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include <sluice/time/time.h>

namespace sluice {

struct TimeWindow {
  Timestamp start = 0;
  Timestamp end = 0;

  Timestamp max_timestamp() const { return end - 1; }
  // Flink's TimeWindow.intersects: windows that overlap or touch.
  bool Intersects(const TimeWindow& o) const { return start <= o.end && end >= o.start; }
  TimeWindow Cover(const TimeWindow& o) const {
    return {std::min(start, o.start), std::max(end, o.end)};
  }
  bool operator==(const TimeWindow&) const = default;
  auto operator<=>(const TimeWindow&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const TimeWindow& w) {
    return H::combine(std::move(h), w.start, w.end);
  }
  friend std::ostream& operator<<(std::ostream& os, const TimeWindow& w) {
    return os << "TimeWindow{start=" << w.start << ", end=" << w.end << "}";
  }
};

// The single window of GlobalWindows.
struct GlobalWindow {
  Timestamp max_timestamp() const { return kMaxWatermark; }
  bool operator==(const GlobalWindow&) const = default;
  auto operator<=>(const GlobalWindow&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const GlobalWindow&) {
    return H::combine(std::move(h), 0);
  }
  friend std::ostream& operator<<(std::ostream& os, const GlobalWindow&) {
    return os << "GlobalWindow";
  }
};

// Flink's TimeWindow.getWindowStartWithOffset, correct for negative timestamps too.
inline Timestamp WindowStartWithOffset(Timestamp timestamp, int64_t offset, int64_t size) {
  int64_t remainder = (timestamp - offset) % size;
  return remainder < 0 ? timestamp - (remainder + size) : timestamp - remainder;
}

enum class TimeDomain { kEventTime, kProcessingTime };

namespace internal {

inline absl::Status CheckSizeAndOffset(const char* what, int64_t size, int64_t slide,
                                       int64_t offset) {
  if (size <= 0 || slide <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": size and slide must be > 0, got size ",
                                                   size, " ms, slide ", slide, " ms"));
  }
  if (offset <= -slide || offset >= slide) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the offset must satisfy abs(offset) < ",
                                                   slide == size ? "size" : "slide",
                                                   ", got offset ", offset, " ms"));
  }
  return absl::OkStatus();
}

template <TimeDomain D>
class TumblingWindows {
 public:
  using WindowType = TimeWindow;
  static constexpr bool kMerging = false;
  static constexpr TimeDomain kDomain = D;

  static TumblingWindows Of(absl::Duration size, absl::Duration offset = absl::ZeroDuration()) {
    return TumblingWindows(ToMillis(size), ToMillis(offset));
  }

  template <typename T>
  void AssignWindows(const T&, Timestamp timestamp, std::vector<TimeWindow>& out) const {
    Timestamp start = WindowStartWithOffset(timestamp, offset_, size_);
    out.push_back({start, start + size_});
  }
  absl::Status Validate() const {
    return CheckSizeAndOffset(
        D == TimeDomain::kEventTime ? "TumblingEventTimeWindows" : "TumblingProcessingTimeWindows",
        size_, size_, offset_);
  }
  int64_t size() const { return size_; }
  int64_t slide() const { return size_; }
  int64_t offset() const { return offset_; }

 private:
  TumblingWindows(int64_t size, int64_t offset) : size_(size), offset_(offset) {}
  int64_t size_;
  int64_t offset_;
};

template <TimeDomain D>
class SlidingWindows {
 public:
  using WindowType = TimeWindow;
  static constexpr bool kMerging = false;
  static constexpr TimeDomain kDomain = D;

  static SlidingWindows Of(absl::Duration size, absl::Duration slide,
                           absl::Duration offset = absl::ZeroDuration()) {
    return SlidingWindows(ToMillis(size), ToMillis(slide), ToMillis(offset));
  }

  // Windows in Flink's order: the latest start first.
  template <typename T>
  void AssignWindows(const T&, Timestamp timestamp, std::vector<TimeWindow>& out) const {
    Timestamp last_start = WindowStartWithOffset(timestamp, offset_, slide_);
    for (Timestamp start = last_start; start > timestamp - size_; start -= slide_) {
      out.push_back({start, start + size_});
    }
  }
  absl::Status Validate() const {
    return CheckSizeAndOffset(
        D == TimeDomain::kEventTime ? "SlidingEventTimeWindows" : "SlidingProcessingTimeWindows",
        size_, slide_, offset_);
  }
  int64_t size() const { return size_; }
  int64_t slide() const { return slide_; }
  int64_t offset() const { return offset_; }

 private:
  SlidingWindows(int64_t size, int64_t slide, int64_t offset)
      : size_(size), slide_(slide), offset_(offset) {}
  int64_t size_;
  int64_t slide_;
  int64_t offset_;
};

// Sessions: each record opens [t, t + gap); overlapping or touching windows merge.
template <TimeDomain D, typename GapFn>
class SessionWindows {
 public:
  using WindowType = TimeWindow;
  static constexpr bool kMerging = true;
  static constexpr TimeDomain kDomain = D;

  SessionWindows(GapFn gap_fn, int64_t static_gap) : gap_fn_(std::move(gap_fn)), gap_(static_gap) {}

  template <typename T>
  void AssignWindows(const T& value, Timestamp timestamp, std::vector<TimeWindow>& out) const {
    int64_t gap = gap_;
    if constexpr (!std::is_same_v<GapFn, std::nullptr_t>) gap = ToMillis(gap_fn_(value));
    if (gap <= 0) {
      throw std::invalid_argument(
          absl::StrCat("session window gap must be > 0, the gap extractor returned ", gap, " ms"));
    }
    out.push_back({timestamp, timestamp + gap});
  }
  // The static gap in ms (0 with a gap extractor).
  int64_t gap() const { return gap_; }
  absl::Status Validate() const {
    if constexpr (std::is_same_v<GapFn, std::nullptr_t>) {
      if (gap_ <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("session windows: the gap must be > 0, got ", gap_, " ms"));
      }
    }
    return absl::OkStatus();
  }

 private:
  GapFn gap_fn_;
  int64_t gap_;
};

// Merges `windows` (any order) into the minimal set of covering windows, as Flink's
// TimeWindow.mergeWindows: sorted by start, a window that intersects the current cover joins it.
// Calls `merge(result, members)` for every result made of more than one window.
template <typename F>
void MergeTimeWindows(std::vector<TimeWindow> windows, F&& merge) {
  std::sort(windows.begin(), windows.end(),
            [](const TimeWindow& a, const TimeWindow& b) { return a.start < b.start; });
  std::vector<std::pair<TimeWindow, std::vector<TimeWindow>>> merged;
  for (const TimeWindow& w : windows) {
    if (!merged.empty() && merged.back().first.Intersects(w)) {
      merged.back().first = merged.back().first.Cover(w);
      merged.back().second.push_back(w);
    } else {
      merged.push_back({w, {w}});
    }
  }
  for (auto& [cover, members] : merged) {
    if (members.size() > 1) merge(cover, members);
  }
}

}  // namespace internal

using TumblingEventTimeWindows = internal::TumblingWindows<TimeDomain::kEventTime>;
using TumblingProcessingTimeWindows = internal::TumblingWindows<TimeDomain::kProcessingTime>;
using SlidingEventTimeWindows = internal::SlidingWindows<TimeDomain::kEventTime>;
using SlidingProcessingTimeWindows = internal::SlidingWindows<TimeDomain::kProcessingTime>;

struct EventTimeSessionWindows {
  static internal::SessionWindows<TimeDomain::kEventTime, std::nullptr_t> WithGap(
      absl::Duration gap) {
    return {nullptr, ToMillis(gap)};
  }
  // `extractor(const T&) -> absl::Duration`: a gap per record.
  template <typename F>
  static internal::SessionWindows<TimeDomain::kEventTime, F> WithDynamicGap(F extractor) {
    return {std::move(extractor), 0};
  }
};
struct ProcessingTimeSessionWindows {
  static internal::SessionWindows<TimeDomain::kProcessingTime, std::nullptr_t> WithGap(
      absl::Duration gap) {
    return {nullptr, ToMillis(gap)};
  }
  template <typename F>
  static internal::SessionWindows<TimeDomain::kProcessingTime, F> WithDynamicGap(F extractor) {
    return {std::move(extractor), 0};
  }
};

// Every record in one window per key; fires only with a custom trigger (default: never).
class GlobalWindows {
 public:
  using WindowType = GlobalWindow;
  static constexpr bool kMerging = false;
  static constexpr TimeDomain kDomain = TimeDomain::kEventTime;
  static GlobalWindows Create() { return {}; }
  template <typename T>
  void AssignWindows(const T&, Timestamp, std::vector<GlobalWindow>& out) const {
    out.push_back({});
  }
  absl::Status Validate() const { return absl::OkStatus(); }
};

}  // namespace sluice
