// Helpers shared by the runtime tests: thread counting and bounded waits on jobs.
#pragma once

#include <dirent.h>

#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#include <sluice/api/job_handle.h>

#include <gtest/gtest.h>

namespace sluice::testing_util {

// Threads of this process right now (entries of /proc/self/task).
inline int ThreadCount() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n;
}

// Threads of this process before a job starts. Creates and joins one thread first: sanitizer
// runtimes (TSan) start a helper thread of their own at the first pthread_create, which must not
// be mistaken for a thread the job leaked.
inline int BaselineThreadCount() {
  static const bool warmed_up = [] {
    std::thread([] {}).join();
    absl::SleepFor(absl::Milliseconds(20));  // let the kernel reap the joined thread
    return true;
  }();
  (void)warmed_up;
  return ThreadCount();
}

// ThreadCount() once it is at most `bound`, or after `timeout` whatever it is then. A joined
// thread can linger in /proc/self/task for a moment after pthread_join() returned (the kernel
// reaps it after it cleared its tid), so a count taken right after a join may be too high.
inline int ThreadCountSettled(int bound, absl::Duration timeout = absl::Seconds(2)) {
  absl::Time deadline = absl::Now() + timeout;
  int n = ThreadCount();
  while (n > bound && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
    n = ThreadCount();
  }
  return n;
}

// Generous bound for a job that must end by itself or after Cancel(): a hang fails the test
// instead of blocking the suite.
inline constexpr absl::Duration kNoHang = absl::Seconds(60);

// Waits for `job` to end (at most kNoHang) and returns its status; records a test failure and
// returns DeadlineExceeded on timeout (the handle's destructor then cancels the job).
inline absl::Status WaitOrFail(JobHandle& job, absl::Duration timeout = kNoHang) {
  if (!job.WaitFor(timeout)) {
    ADD_FAILURE() << "job '" << job.name() << "' did not end within " << timeout;
    return absl::DeadlineExceededError("job hung");
  }
  return job.Wait();
}

}  // namespace sluice::testing_util
