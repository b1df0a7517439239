// One job per checkpoint directory: DirectoryLock, and the lock a job takes on its checkpoint
// directory (a second job — in this process or another — is refused at once, naming the
// directory and the holder; the lock goes with the job, or with its process on kill -9).
#include "checkpoint/directory_lock.h"

#include <sluice/sluice.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/clock.h"

namespace sluice::internal {
namespace {

using ::testing::HasSubstr;

std::string TestDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/directory_lock_test_" + std::to_string(::getpid()) +
                    "_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

TEST(DirectoryLockTest, ASecondHolderIsRefusedUntilTheFirstReleases) {
  const std::string dir = TestDir("second") + "/a/b";  // created with its parents
  absl::StatusOr<std::unique_ptr<DirectoryLock>> first =
      DirectoryLock::Acquire(dir, "checkpoint directory", "job 'first'");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(std::filesystem::exists(dir + "/.sluice-lock"));
  absl::StatusOr<std::unique_ptr<DirectoryLock>> second =
      DirectoryLock::Acquire(dir, "checkpoint directory", "job 'second'");
  ASSERT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(),
              HasSubstr("the checkpoint directory " + dir + " is in use by job 'first', process " +
                        std::to_string(::getpid()) + ", since "));
  EXPECT_THAT(second.status().message(), HasSubstr("give each job its own directory"));
  first->reset();
  second = DirectoryLock::Acquire(dir, "checkpoint directory", "job 'second'");
  EXPECT_TRUE(second.ok()) << second.status();
}

TEST(DirectoryLockTest, AnotherProcessHoldsItUntilItIsKilled) {
  const std::string dir = TestDir("process");
  ASSERT_TRUE(DirectoryLock::Acquire(dir, "checkpoint directory", "job 'x'").ok());  // released
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Only async-signal-safe calls in the child: lock, tell the parent, wait to be killed.
    const std::string path = dir + "/.sluice-lock";
    const int fd = ::open(path.c_str(), O_RDWR);
    if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) ::_exit(3);
    const char line[] = "job 'other'\n";
    (void)!::pwrite(fd, line, sizeof line - 1, 0);
    (void)!::write(ready[1], "x", 1);
    while (true) ::pause();
  }
  ::close(ready[1]);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  absl::StatusOr<std::unique_ptr<DirectoryLock>> refused =
      DirectoryLock::Acquire(dir, "checkpoint directory", "job 'mine'");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("is in use by job 'other'"));
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  absl::StatusOr<std::unique_ptr<DirectoryLock>> after =
      DirectoryLock::Acquire(dir, "checkpoint directory", "job 'mine'");
  EXPECT_TRUE(after.ok()) << after.status();
}

// Two jobs on one checkpoint directory: the second fails at once with the directory named and
// runs nothing; once the first has ended, the directory is free again.
TEST(DirectoryLockTest, ASecondJobOnTheSameCheckpointDirectoryFailsAtOnce) {
  const std::string dir = TestDir("jobs");
  auto options = [&] {
    RuntimeOptions o;
    o.parallelism = 1;
    o.execution_mode = ExecutionMode::kStreaming;
    o.checkpointing.interval = absl::Milliseconds(50);
    o.checkpointing.directory = dir;
    return o;
  };
  StreamEnvironment first_env(options());
  CollectSink<int64_t> first_sink;
  first_env
      .FromSource(GeneratorSource([](int64_t i) { return i; },
                                  {.count = -1, .records_per_second = 1000}))
      .SinkTo(first_sink);
  absl::StatusOr<JobHandle> first = first_env.ExecuteAsync("first");
  ASSERT_TRUE(first.ok()) << first.status();

  CollectSink<int64_t> sink;
  auto second_job = [&] {
    StreamEnvironment env(options());
    env.FromSequence(1, 3).SinkTo(sink);
    return env.Execute("second");
  };
  const absl::Time start = absl::Now();
  absl::Status second = second_job();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(second.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.message(),
              HasSubstr("the checkpoint directory " + dir + " is in use by job 'first'"));
  EXPECT_TRUE(sink.values().empty());

  first->Cancel();
  EXPECT_EQ(first->Wait().code(), absl::StatusCode::kCancelled);
  second = second_job();
  EXPECT_TRUE(second.ok()) << second;
  EXPECT_THAT(sink.values(), ::testing::UnorderedElementsAre(1, 2, 3));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sluice::internal
