// The kill test: kill_job runs in a child process that is killed with SIGKILL at random moments
// (during processing and during checkpoints) and restarted each time from its checkpoints; the
// committed output must equal the output of a run that was never killed — nothing lost, nothing
// duplicated — on both state backends. A second test adds a user exception thrown during a
// checkpoint in every process (recovered in-process by the restart strategy) to the kills.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace {

constexpr int64_t kEvents = 30000;
constexpr double kRate = 10000;  // three seconds per uninterrupted run

std::string JobBinary() { return KILL_JOB_BINARY; }

pid_t Spawn(const std::string& dir, const std::string& backend, bool throw_in_checkpoint = false) {
  pid_t pid = fork();
  if (pid == 0) {
    const std::string events = std::to_string(kEvents);
    const std::string rate = std::to_string(kRate);
    execl(JobBinary().c_str(), "kill_job", dir.c_str(), backend.c_str(), events.c_str(),
          rate.c_str(), throw_in_checkpoint ? "throw" : static_cast<char*>(nullptr),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// The visible (committed) lines of the output directory, sorted.
std::vector<std::string> Committed(const std::string& out) {
  std::vector<std::string> lines;
  if (!std::filesystem::exists(out)) return lines;
  for (const auto& entry : std::filesystem::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.') continue;  // in-progress and pending parts are hidden
    std::ifstream in(entry.path());
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

int RunToEnd(const std::string& dir, const std::string& backend) {
  pid_t pid = Spawn(dir, backend);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class KillTest : public ::testing::TestWithParam<std::string> {};

// Equal sorted multisets of lines; on failure names the lines missing from `actual` and the ones
// it has too many of (the whole vectors are too long for gtest to print).
::testing::AssertionResult SameLines(const std::vector<std::string>& actual,
                                     const std::vector<std::string>& expected) {
  std::vector<std::string> missing, extra;
  std::set_difference(expected.begin(), expected.end(), actual.begin(), actual.end(),
                      std::back_inserter(missing));
  std::set_difference(actual.begin(), actual.end(), expected.begin(), expected.end(),
                      std::back_inserter(extra));
  if (missing.empty() && extra.empty()) return ::testing::AssertionSuccess();
  auto failure = ::testing::AssertionFailure();
  failure << actual.size() << " lines, expected " << expected.size() << "; missing:";
  for (const std::string& l : missing) failure << " [" << l << "]";
  failure << "; extra:";
  for (const std::string& l : extra) failure << " [" << l << "]";
  return failure;
}

// Runs kill_job in `dir` until it finishes, killing it with SIGKILL `kills` times at random
// moments first; every kill must leave a prefix of `reference` visible. Returns the number of kills.
int KillAndResume(const std::string& dir, const std::string& backend, bool throw_in_checkpoint,
                  int kills_wanted, const std::vector<std::string>& reference, unsigned seed) {
  std::mt19937 rng(seed);
  // With an exception thrown at each process's second checkpoint, processes live long enough to
  // reach it (checkpoints every 50 ms, after the restore).
  std::uniform_int_distribution<int> wait_ms(throw_in_checkpoint ? 300 : 30,
                                             throw_in_checkpoint ? 600 : 250);
  int kills = 0;
  bool finished = false;
  for (int attempt = 0; attempt < 200 && !finished; ++attempt) {
    pid_t pid = Spawn(dir, backend, throw_in_checkpoint);
    if (kills < kills_wanted) {
      absl::SleepFor(absl::Milliseconds(wait_ms(rng)));
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "attempt " << attempt;
        finished = true;
        break;
      }
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ++kills;
      // What is visible is always a prefix of the reference: never a duplicate.
      std::vector<std::string> now = Committed(dir + "/out");
      EXPECT_TRUE(std::includes(reference.begin(), reference.end(), now.begin(), now.end()))
          << "after kill " << kills;
      continue;
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status)) << "attempt " << attempt;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "attempt " << attempt;
    finished = true;
  }
  EXPECT_TRUE(finished);
  return kills;
}

std::string BaseDir(const std::string& test, const std::string& backend) {
  return ::testing::TempDir() + "/kill_test_" + std::to_string(getpid()) + "_" + test + "_" +
         backend;
}

TEST_P(KillTest, CommittedOutputEqualsAFailureFreeRun) {
  const std::string base = BaseDir("kill", GetParam());
  std::filesystem::remove_all(base);
  const std::string reference_dir = base + "/reference";
  ASSERT_EQ(RunToEnd(reference_dir, GetParam()), 0);
  const std::vector<std::string> reference = Committed(reference_dir + "/out");
  ASSERT_GT(reference.size(), 500u);

  const std::string dir = base + "/killed";
  EXPECT_GE(KillAndResume(dir, GetParam(), false, 20, reference, 12345), 20);
  EXPECT_TRUE(SameLines(Committed(dir + "/out"), reference));
  std::filesystem::remove_all(base);
}

// Every process's sink throws during its second checkpoint; the job restarts in-process from the
// latest complete checkpoint (and is also killed a few times): the committed output still equals
// the failure-free run.
TEST_P(KillTest, AUserExceptionDuringACheckpointRecoversTheSameWay) {
  const std::string base = BaseDir("throw", GetParam());
  std::filesystem::remove_all(base);
  const std::string reference_dir = base + "/reference";
  ASSERT_EQ(RunToEnd(reference_dir, GetParam()), 0);
  const std::vector<std::string> reference = Committed(reference_dir + "/out");
  ASSERT_GT(reference.size(), 500u);

  const std::string dir = base + "/throwing";
  KillAndResume(dir, GetParam(), true, 5, reference, 777);
  EXPECT_TRUE(SameLines(Committed(dir + "/out"), reference));
  // The exception really happened (a marker per process that reached its second checkpoint).
  int markers = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind("threw-", 0) == 0) ++markers;
  }
  EXPECT_GE(markers, 3) << "processes that threw during a checkpoint";
  std::filesystem::remove_all(base);
}

INSTANTIATE_TEST_SUITE_P(Backends, KillTest, ::testing::Values("hashmap", "rocksdb"));

}  // namespace
