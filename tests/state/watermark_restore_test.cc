// Event time across failures: a restore gives every operator the watermark it had reached at the
// checkpoint (and the watermark generator the watermark it had emitted), so records that were late
// before a failure are late again when they are replayed, and no window fires a second time with
// only the replayed records. (Flink's DataStream API starts each operator's watermark from nothing
// after a restore; Sluice does better.)
//
// The job: a throttled generator of out-of-order events with punctuated watermarks (every 7th
// event ~300 ms behind: late) → a map that fails once at event `r` → 100 ms tumbling windows
// with late-data side output → exactly-once file sinks. A restart strategy restores it from the
// latest checkpoint (every 10 ms). For failures at 15 points spread over the stream (each after a
// different checkpoint), both output files must equal those of a run without failure.
#include <sluice/sluice.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kEvents = 3000;

struct Event {
  int64_t index = 0;
  int64_t key = 0;
  Timestamp time = 0;
  Timestamp watermark_after = kMinWatermark;  // a punctuated watermark after this event
};

Event MakeEvent(int64_t i) {
  Event e;
  e.index = i;
  e.key = i % 3;
  const Timestamp base = 1000 + 2 * i;
  e.time = i % 7 == 0 ? base - 300 : base - (i * 37) % 40;
  if (i % 5 == 4) e.watermark_after = base - 45;  // above every on-time event so far
  return e;
}

class Punctuated final : public WatermarkGenerator<Event> {
 public:
  void OnEvent(const Event& e, Timestamp, WatermarkOutput& out) override {
    if (e.watermark_after != kMinWatermark) out.EmitWatermark(e.watermark_after);
  }
  void OnPeriodicEmit(WatermarkOutput&) override {}
};

struct Sum {
  int64_t key = 0;
  int64_t count = 0;
  int64_t index_sum = 0;
};

std::vector<std::string> SortedLines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return lines;
}

struct Output {
  std::vector<std::string> windows;
  std::vector<std::string> late;
  int64_t failures = 0;
};

// Runs the job into `dir`; the map throws once when it sees event `fail_at` (-1: never).
Output RunJob(const std::string& dir, int64_t fail_at) {
  fs::remove_all(dir);
  RuntimeOptions options;
  options.parallelism = 1;
  options.checkpointing.interval = absl::Milliseconds(10);
  options.checkpointing.directory = dir + "/checkpoints";
  options.restart_strategy = RestartStrategy::FixedDelay(2, absl::Milliseconds(1));
  StreamEnvironment env(options);
  auto failed = std::make_shared<std::atomic<int64_t>>(0);
  OutputTag<Event> late("late");
  auto windows =
      env.FromSource(GeneratorSource([](int64_t i) { return MakeEvent(i); },
                                     {.count = kEvents, .records_per_second = 12000}),
                     WatermarkStrategy<Event>::ForGenerator([] {
                       return std::make_unique<Punctuated>();
                     }).WithTimestampAssigner([](const Event& e) { return e.time; }))
          .Map([failed, fail_at](const Event& e) {
            int64_t none = 0;
            if (e.index == fail_at && failed->compare_exchange_strong(none, 1)) {
              throw std::runtime_error("injected failure");
            }
            return e;
          })
          .KeyBy([](const Event& e) { return e.key; })
          .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(100)))
          .SideOutputLateData(late)
          .Process([](const int64_t& key, WindowContext<TimeWindow>& ctx, std::span<const Event> in,
                      Collector<std::string>& out) {
            int64_t sum = 0;
            for (const Event& e : in) sum += e.index;
            out.Collect(absl::StrCat(key, " ", ctx.window().start, " ", in.size(), " ", sum));
          });
  windows.SinkTo(FileSink<std::string>(dir + "/windows", {.write_mode = WriteMode::kOverwrite}));
  windows.GetSideOutput(late)
      .Map([](const Event& e) { return absl::StrCat("late ", e.index, " ", e.time); })
      .SinkTo(FileSink<std::string>(dir + "/late", {.write_mode = WriteMode::kOverwrite}));
  absl::Status status = env.Execute("watermark restore");
  EXPECT_TRUE(status.ok()) << status;
  return {SortedLines(dir + "/windows"), SortedLines(dir + "/late"), failed->load()};
}

TEST(WatermarkRestoreTest, ReplayedLateRecordsAreLateAgainAndNoWindowFiresTwice) {
  const std::string dir =
      ::testing::TempDir() + "/watermark_restore_test_" + std::to_string(::getpid());
  const Output reference = RunJob(dir + "/reference", -1);
  ASSERT_GT(reference.late.size(), 300u);     // every 7th event
  ASSERT_GT(reference.windows.size(), 150u);  // 3 keys x 60 windows
  for (int64_t fail_at = 100; fail_at < kEvents; fail_at += kEvents / 15) {
    SCOPED_TRACE(testing::Message() << "failure at event " << fail_at);
    const Output got = RunJob(absl::StrCat(dir, "/fail-", fail_at), fail_at);
    EXPECT_EQ(got.failures, 1);
    EXPECT_EQ(got.windows, reference.windows);
    EXPECT_EQ(got.late, reference.late);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace sluice
