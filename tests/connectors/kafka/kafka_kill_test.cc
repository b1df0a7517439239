// Kafka source → exactly-once file sink, killed with SIGKILL at random moments and restarted
// from its checkpoints each time (kafka_kill_job in a child process, against the mock cluster in
// another): the committed output holds every record of the topic exactly once — the restored
// offsets lose and repeat nothing.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include "connectors/kafka/kafka_test_util.h"
#include "connectors/test_util.h"

namespace sluice::kafka_test {
namespace {

pid_t Spawn(const std::string& bootstrap, const std::string& dir) {
  pid_t pid = fork();
  if (pid == 0) {
    execl(KAFKA_KILL_JOB, "kafka_kill_job", bootstrap.c_str(), "kill", dir.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// The committed (visible) lines of the sink's directory, sorted.
std::vector<std::string> Committed(const std::string& out) {
  std::vector<std::string> lines;
  if (!std::filesystem::exists(out)) return lines;
  for (const auto& entry : std::filesystem::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    std::ifstream in(entry.path());
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

TEST(KafkaKillTest, KilledAndRestoredJobCommitsEveryRecordExactlyOnce) {
  MockCluster cluster({"kill:2"});
  ASSERT_TRUE(cluster.ok()) << "mock cluster did not start";
  std::vector<Record> records;
  std::vector<std::string> expected;
  for (int i = 0; i < 3000; ++i) {
    records.push_back({.value = absl::StrCat("r-", i), .partition = i % 2});
    expected.push_back(absl::StrCat("got r-", i));
  }
  records.push_back({.value = "END", .partition = 0});
  records.push_back({.value = "END", .partition = 1});
  Produce(cluster.bootstrap(), "kill", records);
  std::sort(expected.begin(), expected.end());

  connectors_test::TempDir dir;
  const std::string work = dir.Path("job");
  // Each process is killed once it has committed more than the previous ones (a checkpoint of
  // its own completed), plus a random delay: kills land mid-stream and during checkpoints.
  std::mt19937 rng(4242);
  std::uniform_int_distribution<int> extra_ms(0, 80);
  int kills = 0;
  bool finished = false;
  size_t committed_before = 0;
  for (int attempt = 0; attempt < 60 && !finished; ++attempt) {
    pid_t pid = Spawn(cluster.bootstrap(), work);
    int status = 0;
    if (kills < 4) {
      bool exited = false;
      const absl::Time deadline = absl::Now() + absl::Seconds(30);
      while (Committed(work + "/out").size() <= committed_before && absl::Now() < deadline) {
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
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "attempt " << attempt;
        finished = true;
        break;
      }
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ++kills;
      // Whatever is visible is part of the expected output, without duplicates.
      std::vector<std::string> now = Committed(work + "/out");
      auto dup = std::adjacent_find(now.begin(), now.end());
      EXPECT_TRUE(dup == now.end()) << "after kill " << kills << ": " << *dup << " twice";
      EXPECT_TRUE(std::includes(expected.begin(), expected.end(), now.begin(), now.end()))
          << "after kill " << kills;
      EXPECT_GT(now.size(), committed_before) << "after kill " << kills;
      committed_before = now.size();
      continue;
    }
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status)) << "attempt " << attempt;
    ASSERT_EQ(WEXITSTATUS(status), 0) << "attempt " << attempt;
    finished = true;
  }
  ASSERT_TRUE(finished);
  std::vector<std::string> committed = Committed(work + "/out");
  EXPECT_EQ(committed.size(), expected.size());
  EXPECT_EQ(committed, expected);
  RecordProperty("kills", kills);
  EXPECT_GE(kills, 2) << "the job was too fast to be killed mid-stream";
}

}  // namespace
}  // namespace sluice::kafka_test
