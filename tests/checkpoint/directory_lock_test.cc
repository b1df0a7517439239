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

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/clock.h"

namespace sluice::internal {
namespace {

using ::testing::HasSubstr;

std::string TestDir(const std::string& name) {
  std::string dir =
      ::testing::TempDir() + "/directory_lock_test_" + std::to_string(::getpid()) + "_" + name;
  dir = std::filesystem::path(dir).lexically_normal().string();  // as the messages print it
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
  EXPECT_THAT(second.status().message(),
              HasSubstr("give each job its own, or wait for the other job to end"));
  first->reset();
  EXPECT_FALSE(std::filesystem::exists(dir + "/.sluice-lock"));  // a clean release leaves no file
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
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
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
      .FromSource(
          GeneratorSource([](int64_t i) { return i; }, {.count = -1, .records_per_second = 1000}))
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

// Two sinks of one job on one path (or one inside the other): refused before anything runs,
// naming both; the file is untouched (it used to lose one sink's lines, and Execute returned OK).
TEST(SinkPathTest, TwoSinksOfOneJobOnOnePathAreRefusedNamingBoth) {
  const std::string dir = TestDir("sinks");
  std::filesystem::create_directories(dir);
  { std::ofstream(dir + "/out.txt") << "kept\n"; }
  StreamEnvironment env({.parallelism = 1});
  auto numbers = env.FromSequence(1, 20000);
  numbers.SinkTo(FileSink<int64_t>(dir + "/out.txt", {.write_mode = WriteMode::kOverwrite}))
      .Name("evens");
  numbers.SinkTo(FileSink<int64_t>(dir + "/./out.txt", {.write_mode = WriteMode::kOverwrite}))
      .Name("odds");
  absl::Status status = env.Execute();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("sinks 'evens' and 'odds' both write " + dir +
                                          "/out.txt: each would overwrite or mix in the other's "
                                          "files; give each sink its own path"));
  std::ifstream in(dir + "/out.txt");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "kept");

  StreamEnvironment nested({.parallelism = 1});
  auto more = nested.FromSequence(1, 3);
  more.SinkTo(ExactlyOnceFileSink<int64_t>({.directory = dir + "/parts"})).Name("parts");
  more.SinkTo(FileSink<int64_t>(dir + "/parts/extra.txt")).Name("extra");
  status = nested.Execute();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("sinks 'parts' and 'extra' both write " + dir + "/parts and " + dir +
                        "/parts/extra.txt, one inside "
                        "the other"));
  std::filesystem::remove_all(dir);
}

// A running job locks its sinks' output paths: a second job writing one of them fails at once.
TEST(SinkPathTest, ASecondJobOnARunningJobsOutputFailsAtOnce) {
  const std::string dir = TestDir("sink-lock");
  StreamEnvironment first_env({.parallelism = 1});
  first_env
      .FromSource(
          GeneratorSource([](int64_t i) { return i; }, {.count = -1, .records_per_second = 1000}))
      .SinkTo(ExactlyOnceFileSink<int64_t>({.directory = dir + "/out"}))
      .Name("lake");
  absl::StatusOr<JobHandle> first = first_env.ExecuteAsync("first");
  ASSERT_TRUE(first.ok()) << first.status();
  StreamEnvironment second_env({.parallelism = 1});
  second_env.FromSequence(1, 3).SinkTo(FileSink<int64_t>(dir + "/out/../out/"));
  absl::Status second = second_env.Execute("second");
  EXPECT_EQ(second.code(), absl::StatusCode::kFailedPrecondition) << second;
  EXPECT_THAT(second.message(),
              HasSubstr("the output of sink 'Sink: File " + dir + "/out/../out/' " + dir +
                        "/out is in use by job "
                        "'first'"));
  first->Cancel();
  first->Wait().IgnoreError();
  std::filesystem::remove_all(dir);
}

// RocksDB working directories: a job locks its own while it runs and removes it at the end; at its
// start it removes those of jobs that died (lock file written, no holder), and leaves a running
// job's and directories without a lock file alone.
TEST(RocksDbWorkingDirectoryTest, AbandonedDirectoriesOfKilledJobsAreRemoved) {
  const std::string base = TestDir("rocksdb");
  std::filesystem::create_directories(base + "/job-1-0-0/op1-0");
  {
    std::ofstream(base + "/job-1-0-0/.sluice-lock") << "job 'killed', process 1, since then\n";
    std::ofstream(base + "/job-1-0-0/op1-0/000001.sst") << "state";
  }
  std::filesystem::create_directories(base + "/job-2-0-0");  // no lock file: left alone
  absl::StatusOr<std::unique_ptr<DirectoryLock>> running =
      DirectoryLock::Acquire(base + "/job-3-0-0", "RocksDB working directory", "job 'running'");
  ASSERT_TRUE(running.ok()) << running.status();

  RuntimeOptions options;
  options.parallelism = 1;
  options.state_backend = StateBackendKind::kRocksDb;
  options.rocksdb.local_dir = base;
  StreamEnvironment env(options);
  CollectSink<int64_t> sink;
  env.FromSequence(1, 10)
      .KeyBy([](int64_t x) { return x % 2; })
      .Reduce([](int64_t a, int64_t b) { return a + b; })
      .SinkTo(sink);
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_THAT(sink.values(), ::testing::UnorderedElementsAre(1, 2, 4, 6, 9, 12, 16, 20, 25, 30));
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(base)) {
    left.push_back(e.path().filename().string());
  }
  std::sort(left.begin(), left.end());
  EXPECT_THAT(left, ::testing::ElementsAre("job-2-0-0", "job-3-0-0"));
  running->reset();
  std::filesystem::remove_all(base);
}

}  // namespace
}  // namespace sluice::internal
