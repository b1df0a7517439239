// Helpers for tests that checkpoint, stop and restore running jobs: a source whose records the
// test releases in steps (checkpointable), and a wait with a generous deadline.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"

#include <sluice/sluice.h>

namespace sluice::state_test {

// The values a GatedSource emits: the first `open` of them are released. With `finish` set, the
// source ends once every value was emitted; otherwise it stays open until the job is stopped.
template <typename T>
struct Feed {
  explicit Feed(std::vector<T> v, bool finish_at_end = false)
      : values(std::move(v)), finish(finish_at_end) {}
  std::vector<T> values;
  std::atomic<int64_t> open{0};
  bool finish = false;
};

// A non-parallel source of a Feed; its position is checkpointed.
template <typename T>
class GatedSource final : public Source<T> {
 public:
  explicit GatedSource(std::shared_ptr<Feed<T>> feed) : feed_(std::move(feed)) {}
  bool IsBounded() const override { return feed_->finish; }
  int MaxParallelism() const override { return 1; }
  std::string Describe() const override { return "gated"; }
  absl::StatusOr<std::unique_ptr<SourceReader<T>>> CreateReader(const SourceContext&) override {
    return std::unique_ptr<SourceReader<T>>(new Reader(feed_));
  }

 private:
  class Reader final : public SourceReader<T> {
   public:
    explicit Reader(std::shared_ptr<Feed<T>> feed) : feed_(std::move(feed)) {}
    absl::StatusOr<PollResult> PollNext(Collector<T>& out, int max_records) override {
      const int64_t size = static_cast<int64_t>(feed_->values.size());
      if (next_ >= size && feed_->finish) return PollResult::End();
      const int64_t limit = std::min<int64_t>({feed_->open.load(), size, next_ + max_records});
      if (next_ >= limit) return PollResult::NothingUntil(absl::Milliseconds(2));
      while (next_ < limit) out.Collect(feed_->values[static_cast<size_t>(next_++)]);
      return PollResult::More();
    }
    absl::StatusOr<std::string> SnapshotState(int64_t) override { return SerializeToString(next_); }
    absl::Status RestoreState(std::string_view state) override {
      if (!DeserializeFromString(state, &next_)) return absl::DataLossError("bad position");
      return absl::OkStatus();
    }

   private:
    std::shared_ptr<Feed<T>> feed_;
    int64_t next_ = 0;
  };
  std::shared_ptr<Feed<T>> feed_;
};

// Waits until `cond` holds (fails the test after a minute: a hang, never a timing assertion).
inline void WaitFor(const std::function<bool()>& cond) {
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (!cond()) {
    ASSERT_LT(absl::Now(), deadline) << "timed out";
    absl::SleepFor(absl::Milliseconds(2));
  }
}

// A fresh directory per test, removed at the end.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeDir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  static std::string MakeDir() {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::string suite = ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name();
    std::string dir =
        ::testing::TempDir() + "/sluice_" + std::to_string(::getpid()) + "_" + suite + "_" + name;
    for (size_t i = ::testing::TempDir().size() + 1; i < dir.size(); ++i) {
      if (dir[i] == '/') dir[i] = '_';
    }
    std::filesystem::remove_all(dir);
    return dir;
  }
  std::string dir_;
};

}  // namespace sluice::state_test
