// Kinesis source → exactly-once file sink, killed with SIGKILL at random moments and restarted
// from its checkpoints each time (kinesis_kill_job in a child process): the committed output
// holds every record of the stream exactly once — the restored sequence numbers lose and repeat
// nothing.
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

#include "connectors/kill_loop.h"
#include "connectors/kinesis/kinesalite.h"
#include "connectors/kinesis/kinesis_test_util.h"
#include "connectors/test_util.h"

namespace sluice::kinesis_test {
namespace {

pid_t Spawn(const std::string& stream, const std::string& dir) {
  const std::string endpoint = Kinesalite::Shared().Endpoint();
  pid_t pid = fork();
  if (pid == 0) {
    execl(KINESIS_KILL_JOB, "kinesis_kill_job", endpoint.c_str(), stream.c_str(), dir.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

TEST(KinesisKillTest, KilledAndRestoredJobCommitsEveryRecordExactlyOnce) {
  ASSERT_TRUE(Kinesalite::Shared().ok()) << Kinesalite::Shared().error();
  auto client = NewClient();
  ASSERT_NE(client, nullptr);
  const std::string stream = UniqueStream("kill");
  CreateStream(*client, stream, 2);
  std::vector<std::string> values, keys, expected;
  for (int i = 0; i < 6000; ++i) {
    values.push_back(absl::StrCat("r-", i));
    keys.push_back(absl::StrCat("k", i % 31));
    expected.push_back(absl::StrCat("got r-", i));
  }
  Put(*client, stream, values, keys);
  PutEndMarkers(*client, stream);
  std::sort(expected.begin(), expected.end());

  connectors_test::TempDir dir;
  const std::string work = dir.Path("job");
  const int kills = connectors_test::KillAndRestartUntilDone(
      [&] { return Spawn(stream, work); }, work + "/out", expected, /*max_kills=*/6);
  RecordProperty("kills", kills);
  EXPECT_GE(kills, 2) << "the job was too fast to be killed mid-stream";
}

}  // namespace
}  // namespace sluice::kinesis_test
