// Event time and processing time values.
//
// Timestamps and watermarks are milliseconds since the Unix epoch in an int64_t, as in Flink;
// durations in the API are absl::Duration.
//
//   sluice::Timestamp t = 1'700'000'000'000;          // a record's event time
//   int64_t ms = sluice::ToMillis(absl::Seconds(10));  // 10000
#pragma once

#include <cstdint>
#include <limits>

#include "absl/time/time.h"

namespace sluice {

using Timestamp = int64_t;

// A record without a timestamp carries kNoTimestamp (Flink's Long.MIN_VALUE marker).
inline constexpr Timestamp kNoTimestamp = std::numeric_limits<int64_t>::min();
// The watermark before any was seen.
inline constexpr Timestamp kMinWatermark = std::numeric_limits<int64_t>::min();
// The watermark at the end of a bounded input: every event-time window and timer fires.
inline constexpr Timestamp kMaxWatermark = std::numeric_limits<int64_t>::max();

inline int64_t ToMillis(absl::Duration d) { return absl::ToInt64Milliseconds(d); }

// a + b, saturating at the int64 bounds (window end + lateness must never wrap).
inline constexpr int64_t SaturatingAdd(int64_t a, int64_t b) {
  if (b > 0 && a > std::numeric_limits<int64_t>::max() - b)
    return std::numeric_limits<int64_t>::max();
  if (b < 0 && a < std::numeric_limits<int64_t>::min() - b)
    return std::numeric_limits<int64_t>::min();
  return a + b;
}

}  // namespace sluice
