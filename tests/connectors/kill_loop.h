// The kill loop of the connector kill tests (Kafka, Kinesis, the text and CSV file sinks): a job
// process that reads a source into a file sink (an ExactlyOnceFileSink, or FileSink/CsvFileSink)
// is killed with SIGKILL once it has committed more than before (a
// checkpoint of its own completed) plus a random delay, and restarted from its checkpoints, until
// it ends by itself. After every kill what is visible is part of the expected output, without
// duplicates; at the end it is exactly the expected output.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sluice::connectors_test {

// The committed (visible) lines of an ExactlyOnceFileSink directory, sorted.
inline std::vector<std::string> CommittedLines(const std::string& out) {
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

// `spawn()` starts the job process (writing into `out`); `expected` is sorted; `visible(out)` is
// what a reader sees, sorted (by default the committed lines of an ExactlyOnceFileSink). Returns
// the number of kills (at most `max_kills`); test failures are reported through gtest.
inline int KillAndRestartUntilDone(
    const std::function<pid_t()>& spawn, const std::string& out,
    const std::vector<std::string>& expected, int max_kills,
    const std::function<std::vector<std::string>(const std::string&)>& visible = CommittedLines) {
  std::mt19937 rng(4242);
  std::uniform_int_distribution<int> extra_ms(0, 80);
  int kills = 0;
  bool finished = false;
  size_t committed_before = 0;
  for (int attempt = 0; attempt < 60 && !finished; ++attempt) {
    pid_t pid = spawn();
    int status = 0;
    if (kills < max_kills) {
      bool exited = false;
      const absl::Time deadline = absl::Now() + absl::Seconds(30);
      while (visible(out).size() <= committed_before && absl::Now() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
          exited = true;
          break;
        }
        absl::SleepFor(absl::Milliseconds(5));
      }
      if (!exited) {
        absl::SleepFor(absl::Milliseconds(extra_ms(rng)));
        if (waitpid(pid, &status, WNOHANG) == pid) exited = true;
      }
      if (exited) {
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "attempt " << attempt;
        finished = true;
        break;
      }
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ++kills;
      // Whatever is visible is part of the expected output, without duplicates.
      std::vector<std::string> now = visible(out);
      auto dup = std::adjacent_find(now.begin(), now.end());
      EXPECT_TRUE(dup == now.end()) << "after kill " << kills << ": " << *dup << " twice";
      EXPECT_TRUE(std::includes(expected.begin(), expected.end(), now.begin(), now.end()))
          << "after kill " << kills;
      EXPECT_GT(now.size(), committed_before) << "after kill " << kills;
      committed_before = now.size();
      continue;
    }
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status)) << "attempt " << attempt;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "attempt " << attempt;
    finished = true;
  }
  EXPECT_TRUE(finished);
  std::vector<std::string> committed = visible(out);
  EXPECT_EQ(committed.size(), expected.size());
  EXPECT_EQ(committed, expected);
  return kills;
}

}  // namespace sluice::connectors_test
