// The Firehose kill test: firehose_kill_job runs in a child process that is killed with SIGKILL at
// random moments (while delivering, committing and checkpointing) and restarted from its
// checkpoints each time. After every kill the visible files must be complete gzip files holding
// no record twice; at the end every record is in exactly one visible file (delivered ones in
// data/, failed ones in processing-failed/) and no hidden file is left.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "connectors/test_util.h"

namespace {

namespace fs = std::filesystem;

constexpr int64_t kEvents = 16000;
constexpr double kRate = 4000;  // four seconds per uninterrupted run
constexpr int kKills = 6;

pid_t Spawn(const std::string& dir) {
  pid_t pid = fork();
  if (pid == 0) {
    const std::string events = std::to_string(kEvents);
    const std::string rate = std::to_string(kRate);
    execl(FIREHOSE_KILL_JOB, "firehose_kill_job", dir.c_str(), events.c_str(), rate.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// Decompresses a whole gzip file; false when it is not one complete gzip member.
bool Gunzip(const std::string& in, std::string* out) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) return false;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  char buf[1 << 15];
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = inflate(&zs, Z_NO_FLUSH);
    out->append(buf, sizeof(buf) - zs.avail_out);
  }
  const bool ok = rc == Z_STREAM_END && zs.avail_in == 0;
  inflateEnd(&zs);
  return ok;
}

struct Output {
  std::vector<std::string> delivered;  // sorted lines of data/
  std::vector<std::string> failed;     // sorted original records of processing-failed/
  std::vector<std::string> hidden;     // files under a hidden directory or with a hidden name
  int broken_files = 0;                // visible files that are not complete gzip files
  int stray_files = 0;                 // visible files outside both prefixes
};

Output Collect(const fs::path& out) {
  Output o;
  if (!fs::exists(out)) return o;
  for (const auto& e : fs::recursive_directory_iterator(out)) {
    if (!e.is_regular_file()) continue;
    const std::string rel = fs::relative(e.path(), out).string();
    bool hidden = false;
    for (const auto& part : fs::path(rel)) hidden = hidden || part.string().starts_with(".");
    if (hidden) {
      o.hidden.push_back(rel);
      continue;
    }
    std::string text;
    if (!Gunzip(sluice::connectors_test::ReadFile(e.path().string()), &text)) {
      ++o.broken_files;
      continue;
    }
    const bool error = rel.starts_with("processing-failed/");
    if (!error && !rel.starts_with("data/")) {
      ++o.stray_files;
      continue;
    }
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      std::string line = text.substr(start, end - start);
      start = end + 1;
      if (!error) {
        o.delivered.push_back(line);
        continue;
      }
      // {..."rawData":"<base64>","recordId":<id>}
      const std::string key = "\"rawData\":\"";
      size_t at = line.find(key);
      std::string raw;
      if (at == std::string::npos ||
          !absl::Base64Unescape(
              line.substr(at + key.size(), line.find('"', at + key.size()) - at - key.size()),
              &raw) ||
          line.find("\"errorCode\":\"Lambda.ProcessingFailedStatus\"") == std::string::npos ||
          line.find("\"errorMessage\":\"multiple of 97\"") == std::string::npos) {
        raw = "<malformed error line: " + line + ">";
      }
      o.failed.push_back(raw);
    }
  }
  std::sort(o.delivered.begin(), o.delivered.end());
  std::sort(o.failed.begin(), o.failed.end());
  return o;
}

// While the job runs (files appear, are renamed and go): whether a hidden file is there now.
bool HasHiddenFiles(const fs::path& out) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(out, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().filename().string().starts_with(".")) return true;
  }
  return false;
}

bool NoDuplicates(const std::vector<std::string>& sorted) {
  return std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end();
}

TEST(FirehoseKillTest, EveryRecordExactlyOnceAfterKillsAndRestarts) {
  const std::string dir = ::testing::TempDir() + "/firehose_kill_test_" + std::to_string(getpid());
  fs::remove_all(dir);
  std::vector<std::string> want_delivered;
  std::vector<std::string> want_failed;
  for (int64_t i = 0; i < kEvents; ++i) {
    if (i % 50 == 0) continue;
    (i % 97 == 0 ? want_failed : want_delivered).push_back("r" + std::to_string(i));
  }
  std::sort(want_delivered.begin(), want_delivered.end());
  std::sort(want_failed.begin(), want_failed.end());

  std::mt19937 rng(20261124);
  // Six kills stop the job after at most 2.7 s of its 4 s of input: the kills never land after the
  // final commit at the end of the input (see the limits in firehose_sink.h).
  std::uniform_int_distribution<int> wait_ms(200, 450);
  int kills = 0;
  int kills_with_leftovers = 0;  // kills that left hidden (pending or in-progress) files
  std::vector<size_t> visible_after_kill;
  bool finished = false;
  for (int attempt = 0; attempt < 50 && !finished; ++attempt) {
    pid_t pid = Spawn(dir);
    int status = 0;
    if (kills < kKills) {
      absl::SleepFor(absl::Milliseconds(wait_ms(rng)));
      // The first kill waits (up to 1 s more) until files are in flight, so that at least one
      // kill hits hidden files however the machine's timing falls.
      for (int waited = 0; kills == 0 && waited < 200; ++waited) {
        if (HasHiddenFiles(fs::path(dir) / "out")) break;
        absl::SleepFor(absl::Milliseconds(5));
      }
      if (waitpid(pid, &status, WNOHANG) == pid) {
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "attempt " << attempt;
        finished = true;
        break;
      }
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ++kills;
      Output now = Collect(fs::path(dir) / "out");
      visible_after_kill.push_back(now.delivered.size() + now.failed.size());
      if (!now.hidden.empty()) ++kills_with_leftovers;
      EXPECT_EQ(now.broken_files, 0) << "after kill " << kills;
      EXPECT_EQ(now.stray_files, 0) << "after kill " << kills;
      EXPECT_TRUE(NoDuplicates(now.delivered)) << "after kill " << kills;
      EXPECT_TRUE(std::includes(want_delivered.begin(), want_delivered.end(), now.delivered.begin(),
                                now.delivered.end()))
          << "after kill " << kills;
      EXPECT_TRUE(std::includes(want_failed.begin(), want_failed.end(), now.failed.begin(),
                                now.failed.end()))
          << "after kill " << kills;
      continue;
    }
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status)) << "attempt " << attempt;
    ASSERT_EQ(WEXITSTATUS(status), 0) << "attempt " << attempt;
    finished = true;
  }
  ASSERT_TRUE(finished);
  EXPECT_EQ(kills, kKills);
  // The kills hit a job that had committed files and had hidden files in flight, and each restart
  // resumed from a checkpoint (the visible records grow from kill to kill).
  std::printf("visible records after each kill:");
  for (size_t n : visible_after_kill) std::printf(" %zu", n);
  std::printf("; kills that left hidden files: %d\n", kills_with_leftovers);
  ASSERT_EQ(visible_after_kill.size(), static_cast<size_t>(kKills));
  EXPECT_GT(visible_after_kill.back(), 0u);
  EXPECT_TRUE(std::is_sorted(visible_after_kill.begin(), visible_after_kill.end()));
  EXPECT_GE(kills_with_leftovers, 1);
  Output end = Collect(fs::path(dir) / "out");
  EXPECT_EQ(end.broken_files, 0);
  EXPECT_EQ(end.stray_files, 0);
  EXPECT_THAT(end.hidden, ::testing::IsEmpty());
  EXPECT_EQ(end.delivered.size(), want_delivered.size());
  EXPECT_TRUE(end.delivered == want_delivered) << "delivered records differ";
  EXPECT_EQ(end.failed.size(), want_failed.size());
  EXPECT_TRUE(end.failed == want_failed) << "failed records differ";
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

}  // namespace
