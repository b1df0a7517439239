// clickstream: the flagship example — event-time windows over out-of-order page clicks.
//
// A generator produces clicks of 12 users on 6 pages, 20 clicks per second of event time, arriving
// up to 3 s out of order; three clicks in 100 arrive 12 s or 40 s late (a phone that was
// offline). The job
//   1. counts clicks per page in tumbling 30-second event-time windows, with a 5 s bounded
//      out-of-orderness watermark and 10 s of allowed lateness (a late click within it updates its
//      window's count: the window fires again);
//   2. cuts each user's clicks into sessions (a gap of 20 s of event time ends a session) and
//      prints each session's length and pages;
//   3. prints the clicks that were too late for any window (the late-data side output).
//
//   clickstream [--clicks N] [--rate CLICKS_PER_SECOND] [--parallelism P]
//
// With no arguments: 3000 clicks (150 s of event time) at 1000 clicks/s on all cores, 3 seconds.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

#include <sluice/sluice.h>

namespace {

struct Click {
  int64_t user = 0;
  std::string page;
  sluice::Timestamp time = 0;  // event time, ms
};

constexpr const char* kPages[] = {"/home", "/search", "/product", "/cart", "/checkout", "/help"};

Click MakeClick(int64_t i) {
  // A fixed pseudo-random walk, so every run produces the same clicks.
  uint64_t h = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ULL;
  h ^= h >> 29;
  sluice::Timestamp time = i * 50 - static_cast<int64_t>((h >> 12) % 3000);
  int64_t user = static_cast<int64_t>(h % 12);
  // Each user is away one 45-second period in three: sessions end and start again.
  if ((time / 45000 + user) % 3 == 0) user = (user + 1) % 12;
  if ((h >> 24) % 100 == 0)
    time -= 40000;  // arrives 40 s late: too late for its window
  else if ((h >> 24) % 100 < 3)
    time -= 12000;  // arrives 12 s late: updates its window
  return Click{user, kPages[(h >> 8) % 6], std::max<int64_t>(0, time)};
}

std::string Clock(sluice::Timestamp ms) {
  int64_t s = ms / 1000;
  return absl::StrFormat("%02d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
}

class CountClicks final : public sluice::AggregateFunction<Click, int64_t, int64_t> {
 public:
  int64_t CreateAccumulator() override { return 0; }
  void Add(const Click&, int64_t& n) override { ++n; }
  int64_t GetResult(const int64_t& n) override { return n; }
  void Merge(const int64_t& from, int64_t& into) override { into += from; }
};

// Prints a window's count; a second firing of the same window is an update by a late click.
class PrintPageCount final
    : public sluice::ProcessWindowFunction<int64_t, std::string, std::string, sluice::TimeWindow> {
 public:
  void Process(const std::string& page, Context& ctx, std::span<const int64_t> count,
               sluice::Collector<std::string>& out) override {
    const sluice::TimeWindow& w = ctx.window();
    int firing = ++firings_[{page, w.start}];
    out.Collect(absl::StrFormat("%-9s [%s, %s) %4d clicks%s", page, Clock(w.start), Clock(w.end),
                                count[0], firing > 1 ? "  (updated by a late click)" : ""));
  }
  // The window is gone for good (the watermark passed its end + allowed lateness).
  void Clear(const std::string& page, Context& ctx) override {
    firings_.erase({page, ctx.window().start});
  }

 private:
  absl::flat_hash_map<std::pair<std::string, sluice::Timestamp>, int> firings_;
};

// Clicks and distinct pages of a session, incrementally.
struct SessionStats {
  int64_t clicks = 0;
  uint32_t pages = 0;  // bit i: kPages[i] visited
};
class CountSession final : public sluice::AggregateFunction<Click, SessionStats, SessionStats> {
 public:
  SessionStats CreateAccumulator() override { return {}; }
  void Add(const Click& c, SessionStats& s) override {
    ++s.clicks;
    for (int i = 0; i < 6; ++i) {
      if (c.page == kPages[i]) s.pages |= 1u << i;
    }
  }
  SessionStats GetResult(const SessionStats& s) override { return s; }
  void Merge(const SessionStats& from, SessionStats& into) override {
    into.clicks += from.clicks;
    into.pages |= from.pages;
  }
};

bool ParseFlag(std::string_view arg, std::string_view name, char* next, int64_t* value) {
  if (arg != name || next == nullptr) return false;
  if (!absl::SimpleAtoi(next, value)) {
    std::cerr << "clickstream: " << name << " needs a number, got '" << next << "'\n";
    std::exit(2);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t clicks = 3000, rate = 1000, parallelism = 0;
  for (int i = 1; i < argc; ++i) {
    char* next = i + 1 < argc ? argv[i + 1] : nullptr;
    if (ParseFlag(argv[i], "--clicks", next, &clicks) ||
        ParseFlag(argv[i], "--rate", next, &rate) ||
        ParseFlag(argv[i], "--parallelism", next, &parallelism)) {
      ++i;
      continue;
    }
    std::cerr << "usage: clickstream [--clicks N] [--rate CLICKS_PER_SECOND] [--parallelism P]\n";
    return 2;
  }

  sluice::StreamEnvironment env({.parallelism = static_cast<int>(parallelism),
                                 .execution_mode = sluice::ExecutionMode::kStreaming});
  auto watermarks = sluice::WatermarkStrategy<Click>::ForBoundedOutOfOrderness(absl::Seconds(5))
                        .WithTimestampAssigner([](const Click& c) { return c.time; });
  auto clicks_stream = env.FromSource(
      sluice::GeneratorSource(MakeClick,
                              {.count = clicks, .records_per_second = static_cast<double>(rate)}),
      watermarks, "Source: clicks");

  // 1. Clicks per page, tumbling 30 s windows, late clicks within 10 s update the count.
  sluice::OutputTag<Click> too_late("too-late");
  auto per_page = clicks_stream.KeyBy([](const Click& c) { return c.page; })
                      .Window(sluice::TumblingEventTimeWindows::Of(absl::Seconds(30)))
                      .AllowedLateness(absl::Seconds(10))
                      .SideOutputLateData(too_late)
                      .Aggregate(CountClicks(), PrintPageCount())
                      .Name("clicks per page");
  per_page.SinkTo(sluice::PrintSink<std::string>({.identifier = "page"}));

  // 2. Sessions per user: a gap of 20 s ends a session.
  clicks_stream.KeyBy([](const Click& c) { return c.user; })
      .Window(sluice::EventTimeSessionWindows::WithGap(absl::Seconds(20)))
      .Aggregate(CountSession(),
                 [](const int64_t& user, sluice::WindowContext<sluice::TimeWindow>& ctx,
                    std::span<const SessionStats> s, sluice::Collector<std::string>& out) {
                   std::string pages;
                   for (int i = 0; i < 6; ++i) {
                     if (s[0].pages & (1u << i)) absl::StrAppend(&pages, " ", kPages[i]);
                   }
                   out.Collect(absl::StrFormat("user-%02d %s-%s %4d clicks, pages:%s", user,
                                               Clock(ctx.window().start), Clock(ctx.window().end),
                                               s[0].clicks, pages));
                 })
      .Name("sessions per user")
      .SinkTo(sluice::PrintSink<std::string>({.identifier = "session"}));

  // 3. Clicks too late for their window.
  per_page.GetSideOutput(too_late)
      .Map([](const Click& c) {
        return absl::StrFormat("user-%02d %s at %s", c.user, c.page, Clock(c.time));
      })
      .SinkTo(sluice::PrintSink<std::string>({.identifier = "too late"}));

  absl::StatusOr<sluice::JobHandle> job = env.ExecuteAsync("clickstream");
  absl::Status status = job.ok() ? job->Wait() : job.status();
  if (!status.ok()) {
    std::cerr << "clickstream failed: " << status << "\n";
    return 1;
  }
  return 0;
}
