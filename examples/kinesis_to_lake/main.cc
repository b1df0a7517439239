// kinesis_to_lake: page views from a Kinesis stream, counted per page in event-time windows and
// delivered exactly once as gzipped JSON lines to a Firehose-style "lake" directory.
//
// Records are CSV lines `user,page,event_time_ms`; a record `END` ends the stream (the demo's
// bounded mode, KinesisSourceOptions::is_end_of_stream). The job
//   1. takes each click's event time from the record (2 s bounded out-of-orderness; a shard with
//      no records for 30 s is idle and does not hold the watermark back);
//   2. counts views and distinct users per page in tumbling 10 s event-time windows, with 5 s of
//      allowed lateness: a late click within it fires its window again (`"firing":2`, ...);
//   3. writes one JSON line per firing to <output-dir>/page-views/YYYY/MM/DD/HH/*.gz, and the clicks
//      too late for any window to <output-dir>/late-clicks/..., with exactly-once checkpoints
//      (<output-dir>/.checkpoints) every second.
//
//   kinesis_to_lake [--endpoint URL] [--stream NAME] [--output-dir DIR] [--parallelism P]
//                   [--duration SECONDS] [--resume]
//   kinesis_to_lake --produce N [--endpoint URL] [--stream NAME]
//
// Defaults: stream "clicks", output /tmp/kinesis_to_lake, parallelism 2 (windows and sinks). The
// job runs to the END record; --duration stops it earlier (files of completed checkpoints stay),
// and --resume continues from the latest checkpoint in the output directory. --produce puts N
// synthetic clicks (a few of them late) and the END record into an existing stream with
// KinesisSink. The endpoint defaults to $KINESIS_ENDPOINT, else http://127.0.0.1:4567
// (kinesalite); credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. run.sh starts a
// local kinesalite, creates a one-shard stream and runs both modes.
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include <sluice/connectors/firehose_sink.h>
#include <sluice/connectors/kinesis.h>
#include <sluice/sluice.h>

namespace {

struct Click {
  std::string user;
  std::string page;            // empty: the record could not be parsed
  sluice::Timestamp time = 0;  // event time, Unix ms
};

constexpr std::string_view kEndOfStream = "END";

bool ParseInt(std::string_view s, int64_t& out) {
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, out);
  return ec == std::errc() && ptr == end && !s.empty();
}

// `user,page,event_time_ms`. A malformed record becomes a Click with no page (filtered out), so
// one bad producer does not stop the job.
Click ParseClick(std::string_view bytes) {
  Click c;
  const size_t a = bytes.find(',');
  const size_t b = a == std::string_view::npos ? a : bytes.find(',', a + 1);
  if (a == 0 || b == std::string_view::npos || b == a + 1 ||
      !ParseInt(bytes.substr(b + 1), c.time)) {
    return c;
  }
  c.user = std::string(bytes.substr(0, a));
  c.page = std::string(bytes.substr(a + 1, b - a - 1));
  return c;
}

std::string IsoTime(sluice::Timestamp ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

// --- The synthetic clicks of --produce -----------------------------------------------------------

constexpr const char* kPages[] = {"/home", "/search", "/product", "/cart"};
constexpr int64_t kStartMillis = 1795521600000;  // 2026-11-24 12:00:00 UTC: a fixed event time

// Ten clicks per second of event time from 9 users on 4 pages, up to 1.5 s out of order. Click 17
// of every 50 is 6 s late (it updates its window or is dropped, depending on where it falls) and
// click 42 of every 50 is 30 s late (always too late). Deterministic: the same N gives the same
// results on every run.
Click MakeClick(int64_t i) {
  uint64_t h = static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ULL;
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ULL;
  h ^= h >> 29;
  Click c{absl::StrCat("user-", h % 9), kPages[(h >> 8) % 4],
          kStartMillis + i * 100 - static_cast<int64_t>((h >> 16) % 1500)};
  if (i % 50 == 17) c.time -= 6000;
  if (i % 50 == 42) c.time -= 30000;
  return c;
}

// --- The job's functions -------------------------------------------------------------------------

// Bounded out-of-orderness, emitted after every record instead of every 200 ms: which clicks are
// late then depends only on their order in the shard, so the demo gives the same output on every
// run (ForBoundedOutOfOrderness is the periodic, cheaper form for production).
class PerRecordBoundedOutOfOrderness final : public sluice::WatermarkGenerator<Click> {
 public:
  explicit PerRecordBoundedOutOfOrderness(absl::Duration bound)
      : bound_ms_(absl::ToInt64Milliseconds(bound)) {}
  void OnEvent(const Click&, sluice::Timestamp t, sluice::WatermarkOutput& out) override {
    if (t > max_) {
      max_ = t;
      out.EmitWatermark(max_ - bound_ms_ - 1);
    }
  }
  void OnPeriodicEmit(sluice::WatermarkOutput&) override {}

 private:
  int64_t bound_ms_;
  sluice::Timestamp max_ = sluice::kMinWatermark;
};

struct PageViews {
  int64_t views = 0;
  std::set<std::string> users;
};

class CountViews final
    : public sluice::AggregateFunction<Click, PageViews, std::pair<int64_t, int64_t>> {
 public:
  PageViews CreateAccumulator() override { return {}; }
  void Add(const Click& c, PageViews& acc) override {
    ++acc.views;
    acc.users.insert(c.user);
  }
  std::pair<int64_t, int64_t> GetResult(const PageViews& acc) override {
    return {acc.views, static_cast<int64_t>(acc.users.size())};
  }
  void Merge(const PageViews& from, PageViews& into) override {
    into.views += from.views;
    into.users.insert(from.users.begin(), from.users.end());
  }
};

struct WindowResult {
  std::string page;
  sluice::Timestamp start = 0;
  sluice::Timestamp end = 0;
  int64_t views = 0;
  int64_t users = 0;
  int64_t firing = 0;  // 1 when the watermark passed the window's end, 2, 3... for late clicks
};

// Numbers a window's firings in per-window state, which is checkpointed with the window.
class EmitWindow final
    : public sluice::ProcessWindowFunction<std::pair<int64_t, int64_t>, WindowResult, std::string,
                                           sluice::TimeWindow> {
 public:
  void Process(const std::string& page, Context& ctx,
               std::span<const std::pair<int64_t, int64_t>> counts,
               sluice::Collector<WindowResult>& out) override {
    sluice::ValueState<int64_t> firing =
        ctx.WindowState().GetState(sluice::ValueStateDescriptor<int64_t>("firing"));
    const int64_t n = firing.Value().value_or(0) + 1;
    firing.Update(n);
    out.Collect(WindowResult{page, ctx.window().start, ctx.window().end, counts[0].first,
                             counts[0].second, n});
  }
  void Clear(const std::string&, Context& ctx) override {
    ctx.WindowState().GetState(sluice::ValueStateDescriptor<int64_t>("firing")).Clear();
  }
};

void AppendJson(const WindowResult& r, std::string& out) {
  absl::StrAppend(&out, "{\"page\":\"", r.page, "\",\"window_start\":\"", IsoTime(r.start),
                  "\",\"window_end\":\"", IsoTime(r.end), "\",\"views\":", r.views,
                  ",\"users\":", r.users, ",\"firing\":", r.firing, "}");
}
void AppendJson(const Click& c, std::string& out) {
  absl::StrAppend(&out, "{\"user\":\"", c.user, "\",\"page\":\"", c.page, "\",\"event_time\":\"",
                  IsoTime(c.time), "\"}");
}

// --- Options -------------------------------------------------------------------------------------

struct Flags {
  std::string endpoint;
  std::string stream = "clicks";
  std::string output_dir = "/tmp/kinesis_to_lake";
  int64_t parallelism = 2;
  int64_t duration_s = 0;  // 0: until the END record
  int64_t produce = -1;    // >= 0: producer mode
  bool resume = false;
};

bool ParseFlags(int argc, char** argv, Flags& f) {
  const char* env = std::getenv("KINESIS_ENDPOINT");
  f.endpoint = env != nullptr && *env != '\0' ? env : "http://127.0.0.1:4567";
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--resume") {
      f.resume = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    std::string_view value = argv[++i];
    if (arg == "--endpoint") {
      f.endpoint = std::string(value);
    } else if (arg == "--stream") {
      f.stream = std::string(value);
    } else if (arg == "--output-dir") {
      f.output_dir = std::string(value);
    } else if (!((arg == "--parallelism" && ParseInt(value, f.parallelism) && f.parallelism > 0) ||
                 (arg == "--duration" && ParseInt(value, f.duration_s)) ||
                 (arg == "--produce" && ParseInt(value, f.produce) && f.produce >= 0))) {
      return false;
    }
  }
  return true;
}

// Puts the clicks, then the END record once they are all in the stream (a second job, so that
// retries inside the first cannot put a click behind the END record). One END record ends one
// shard: the demo stream has one.
absl::Status Produce(const Flags& f) {
  sluice::KinesisSinkOptions options{.connection = {.endpoint = f.endpoint},
                                     .stream_name = f.stream};
  {
    sluice::StreamEnvironment env({.parallelism = 1});
    env.FromSource(sluice::GeneratorSource(MakeClick, {.count = f.produce}), "Source: clicks")
        .SinkTo(sluice::MakeKinesisSink<Click>(
            options, [](const Click& c) { return c.user; },
            [](const Click& c) { return absl::StrCat(c.user, ",", c.page, ",", c.time); }));
    SLUICE_RETURN_IF_ERROR(env.Execute("produce clicks"));
  }
  sluice::StreamEnvironment env({.parallelism = 1});
  env.FromCollection(std::vector<std::string>{std::string(kEndOfStream)})
      .SinkTo(sluice::KinesisSink(options, [](const std::string&) { return "end"; }));
  return env.Execute("produce end of stream");
}

}  // namespace

template <>
struct sluice::Serializer<PageViews> {
  static void Write(const PageViews& p, std::string* out) {
    Serializer<int64_t>::Write(p.views, out);
    Serializer<std::set<std::string>>::Write(p.users, out);
  }
  static bool Read(ByteReader& in, PageViews* p) {
    return Serializer<int64_t>::Read(in, &p->views) &&
           Serializer<std::set<std::string>>::Read(in, &p->users);
  }
};

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, flags)) {
    std::cerr << "usage: kinesis_to_lake [--endpoint URL] [--stream NAME] [--output-dir DIR]\n"
                 "                       [--parallelism P] [--duration SECONDS] [--resume]\n"
                 "       kinesis_to_lake --produce N [--endpoint URL] [--stream NAME]\n";
    return 2;
  }
  if (flags.produce >= 0) {
    absl::Status status = Produce(flags);
    if (!status.ok()) {
      std::cerr << "kinesis_to_lake --produce failed: " << status << "\n";
      return 1;
    }
    std::cout << "put " << flags.produce << " clicks and the END record into stream '"
              << flags.stream << "'\n";
    return 0;
  }

  // The source runs at the environment's parallelism, 1: the demo stream has one shard, and with a
  // single reader the watermark follows that shard's records only, so the same clicks are late on
  // every run. Windows and sinks run at --parallelism.
  const std::string checkpoints = flags.output_dir + "/.checkpoints";
  sluice::StreamEnvironment env(
      {.parallelism = 1,
       .checkpointing = {.interval = absl::Seconds(1), .directory = checkpoints},
       .restore_from = flags.resume ? checkpoints : "",
       .restart_strategy = sluice::RestartStrategy::FixedDelay(3, absl::Seconds(1))});
  const int parallelism = static_cast<int>(flags.parallelism);

  sluice::KinesisSourceOptions in{.connection = {.endpoint = flags.endpoint},
                                  .stream_name = flags.stream};
  in.initial_position = sluice::KinesisStartingPosition::kTrimHorizon;
  in.is_end_of_stream = [](std::string_view bytes) { return bytes == kEndOfStream; };
  auto per_record = [] {
    return std::make_unique<PerRecordBoundedOutOfOrderness>(absl::Seconds(2));
  };
  auto watermarks = sluice::WatermarkStrategy<Click>::ForGenerator(per_record)
                        .WithTimestampAssigner([](const Click& c) { return c.time; })
                        .WithIdleness(absl::Seconds(30));
  auto clicks = env.FromSource(sluice::KinesisSource(in, ParseClick), watermarks,
                               "Source: Kinesis " + flags.stream)
                    .Filter([](const Click& c) { return !c.page.empty(); })
                    .Name("parsed clicks");

  sluice::OutputTag<Click> too_late("too-late");
  auto per_page = clicks.KeyBy([](const Click& c) { return c.page; })
                      .Window(sluice::TumblingEventTimeWindows::Of(absl::Seconds(10)))
                      .AllowedLateness(absl::Seconds(5))
                      .SideOutputLateData(too_late)
                      .Aggregate(CountViews(), EmitWindow())
                      .Name("views per page")
                      .SetParallelism(parallelism);

  sluice::FirehoseSinkOptions lake{.directory = flags.output_dir,
                                   .stream_name = "page-views",
                                   .prefix = "page-views/",
                                   .buffer_interval = absl::Seconds(60),
                                   .compression = sluice::FirehoseCompression::kGzip,
                                   .newline_delimiter = true};
  per_page
      .SinkTo(sluice::MakeFirehoseSink<WindowResult>(
          lake, [](const WindowResult& r, std::string& out) { AppendJson(r, out); }))
      .Name("Sink: page-views")
      .SetParallelism(parallelism);
  lake.stream_name = "late-clicks";
  lake.prefix = "late-clicks/";
  per_page.GetSideOutput(too_late)
      .SinkTo(sluice::MakeFirehoseSink<Click>(
          lake, [](const Click& c, std::string& out) { AppendJson(c, out); }))
      .Name("Sink: late-clicks")
      .SetParallelism(parallelism);

  absl::StatusOr<sluice::JobHandle> job = env.ExecuteAsync("kinesis-to-lake");
  if (!job.ok()) {
    std::cerr << "kinesis_to_lake failed: " << job.status() << "\n";
    return 1;
  }
  if (flags.duration_s > 0 && !job->WaitFor(absl::Seconds(flags.duration_s))) {
    // Files of completed checkpoints stay; the rest is replayed by the next run with --resume.
    std::cout << "kinesis_to_lake: --duration reached, stopping\n";
    job->Cancel();
  }
  absl::Status status = job->Wait();
  if (!status.ok() && !(flags.duration_s > 0 && absl::IsCancelled(status))) {
    std::cerr << "kinesis_to_lake failed: " << status << "\n";
    return 1;
  }
  std::cout << "kinesis_to_lake: stream '" << flags.stream << "' read"
            << (status.ok() ? " to its END record" : "") << "; results in " << flags.output_dir
            << "/page-views/, clicks too late for any window in " << flags.output_dir
            << "/late-clicks/\n";
  return 0;
}
