// FileSink and CsvFileSink across kill -9: file_sink_kill_job runs in a child process that is
// killed with SIGKILL at random moments and restarted from its checkpoints (the text sink as part
// files at parallelism 2; the CSV sink as one file with a header). After every kill the files hold no line twice and nothing that is not output; at the
// end they hold every line exactly once.
//
// SLUICE_LONG_KILL_LOOPS=1 runs 40 kills per case instead of 4 (docs/checkpointing.md).
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "connectors/kill_loop.h"

namespace sluice::connectors_test {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kEvents = 12000;
constexpr double kRate = 6000;  // two seconds per uninterrupted run

int Kills() { return std::getenv("SLUICE_LONG_KILL_LOOPS") != nullptr ? 40 : 4; }

std::string WorkDir(const std::string& name) {
  std::string dir =
      ::testing::TempDir() + "/file_sink_kill_test_" + std::to_string(::getpid()) + "_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Every line of the file `out`, or of the files in the directory `out`, sorted; the CSV header
// (first line of each file) is checked and left out.
std::vector<std::string> FileLines(const std::string& out, bool csv) {
  std::vector<std::string> lines;
  std::vector<fs::path> files;
  if (fs::is_directory(out)) {
    for (const auto& e : fs::directory_iterator(out)) files.push_back(e.path());
  } else if (fs::exists(out)) {
    files.push_back(out);
  }
  for (const fs::path& f : files) {
    std::ifstream in(f);
    std::string line;
    bool first = true;
    while (std::getline(in, line)) {
      if (csv && first) {
        EXPECT_EQ(line, "id,label") << f;
        first = false;
        continue;
      }
      first = false;
      lines.push_back(line);
    }
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

void RunKillLoop(const std::string& kind, int parallelism) {
  const bool csv = kind == "csv";
  const std::string dir = WorkDir(kind);
  std::vector<std::string> expected;
  for (int64_t i = 0; i < kEvents; ++i) {
    expected.push_back(csv ? absl::StrCat(i, ",\"a,", i, "\"") : absl::StrCat("event ", i));
  }
  std::sort(expected.begin(), expected.end());
  auto spawn = [&] {
    const std::string p = std::to_string(parallelism);
    pid_t pid = fork();
    if (pid == 0) {
      const std::string events = std::to_string(kEvents), rate = std::to_string(kRate);
      execl(FILE_SINK_KILL_JOB, "file_sink_kill_job", dir.c_str(), kind.c_str(), p.c_str(),
            events.c_str(), rate.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    return pid;
  };
  const int kills =
      KillAndRestartUntilDone(spawn, dir + "/out", expected, Kills(),
                              [csv](const std::string& out) { return FileLines(out, csv); });
  EXPECT_GE(kills, 1);
  fs::remove_all(dir);
}

TEST(FileSinkKillTest, TextPartFilesAcrossKillsHoldEveryLineOnce) { RunKillLoop("text", 2); }

TEST(FileSinkKillTest, OneCsvFileAcrossKillsHoldsEveryLineOnce) { RunKillLoop("csv", 1); }

}  // namespace
}  // namespace sluice::connectors_test
