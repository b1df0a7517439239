// A windowed pipeline the streaming-connector tests share: counts records per 1 s tumbling
// event-time window, the event time read from the record itself.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/time/time.h"

#include <sluice/sluice.h>

namespace sluice::connectors_test {

// (window start, records) of the 1 s event-time windows.
using Count = std::pair<int64_t, int64_t>;

// Counts the records "<event time ms>" or "<tag>@<event time ms>" of `stream` per 1 s tumbling
// event-time window.
inline void CountPerSecond(DataStream<std::string> stream, CollectSink<Count>& windows) {
  stream
      .Map([](const std::string& s) {
        int64_t t = 0;
        EXPECT_TRUE(absl::SimpleAtoi(s.substr(s.find('@') + 1), &t)) << s;
        return Count(t / 1000 * 1000, 1);
      })
      .KeyBy([](const Count& c) { return c.first; })
      .Window(TumblingEventTimeWindows::Of(absl::Seconds(1)))
      .Reduce([](Count a, const Count& b) {
        a.second += b.second;
        return a;
      })
      .SinkTo(windows);
}

}  // namespace sluice::connectors_test
