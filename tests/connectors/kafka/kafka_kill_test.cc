// Kafka source → exactly-once file sink, killed with SIGKILL at random moments and restarted
// from its checkpoints each time (kafka_kill_job in a child process, against the mock cluster in
// another): the committed output holds every record of the topic exactly once — the restored
// offsets lose and repeat nothing.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include "connectors/kafka/kafka_test_util.h"
#include "connectors/kill_loop.h"
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

TEST(KafkaKillTest, KilledAndRestoredJobCommitsEveryRecordExactlyOnce) {
  MockCluster cluster({"kill:2"});
  ASSERT_TRUE(cluster.ok()) << "mock cluster did not start";
  std::vector<Record> records;
  std::vector<std::string> expected;
  for (int i = 0; i < 8000; ++i) {
    records.push_back({.value = absl::StrCat("r-", i), .partition = i % 2});
    expected.push_back(absl::StrCat("got r-", i));
  }
  records.push_back({.value = "END", .partition = 0});
  records.push_back({.value = "END", .partition = 1});
  Produce(cluster.bootstrap(), "kill", records);
  std::sort(expected.begin(), expected.end());

  connectors_test::TempDir dir;
  const std::string work = dir.Path("job");
  const int kills = connectors_test::KillAndRestartUntilDone(
      [&] { return Spawn(cluster.bootstrap(), work); }, work + "/out", expected, /*max_kills=*/4);
  RecordProperty("kills", kills);
  EXPECT_GE(kills, 1) << "the job was too fast to be killed mid-stream";
}

}  // namespace
}  // namespace sluice::kafka_test
