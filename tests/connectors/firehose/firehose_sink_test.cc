// Tests of FirehoseSink, driving the writers directly as the runtime would (Write / SnapshotState /
// NotifyCheckpointComplete / RestoreState / Finish / Close) with a manual clock, plus small jobs.
// Compressed files are decompressed here with zlib and libzstd directly.
#include <sluice/connectors/firehose_sink.h>

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

#include <sluice/sluice.h>
#include <sluice/time/clock.h>
#include "connectors/test_util.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using connectors_test::ReadFile;
using connectors_test::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

int64_t UtcMillis(int y, int mo, int d, int h, int mi, int s) {
  return absl::ToUnixMillis(
      absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s), absl::UTCTimeZone()));
}

// Every regular file under `root`, relative, sorted.
std::vector<std::string> ListTree(const fs::path& root) {
  std::vector<std::string> files;
  if (!fs::exists(root)) return files;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file()) files.push_back(fs::relative(e.path(), root).string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

bool Hidden(const std::string& relative) {
  for (const auto& part : fs::path(relative)) {
    if (!part.empty() && part.string()[0] == '.') return true;
  }
  return false;
}

std::vector<std::string> VisibleFiles(const fs::path& root) {
  std::vector<std::string> out;
  for (const std::string& f : ListTree(root)) {
    if (!Hidden(f)) out.push_back(f);
  }
  return out;
}

std::vector<std::string> HiddenFiles(const fs::path& root) {
  std::vector<std::string> out;
  for (const std::string& f : ListTree(root)) {
    if (Hidden(f)) out.push_back(f);
  }
  return out;
}

// "…-<8 hex token><ext>" → "…-TOKEN<ext>" so that names compare exactly.
std::string Untokenized(std::string name) {
  size_t ext = name.find('.', name.rfind('/') + 1);
  if (ext == std::string::npos) ext = name.size();
  if (ext >= 9 && name[ext - 9] == '-') name.replace(ext - 8, 8, "TOKEN");
  return name;
}

std::vector<std::string> Untokenized(std::vector<std::string> names) {
  for (std::string& n : names) n = Untokenized(n);
  return names;
}

std::string Gunzip(const std::string& in) {
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, 15 + 16), Z_OK);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char buf[1 << 16];
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - zs.avail_out);
  }
  EXPECT_EQ(rc, Z_STREAM_END) << "gzip stream incomplete or corrupt";
  EXPECT_EQ(zs.avail_in, 0u) << "bytes after the gzip member";
  inflateEnd(&zs);
  return out;
}

std::string Unzstd(const std::string& in) {
  unsigned long long size = ZSTD_getFrameContentSize(in.data(), in.size());
  EXPECT_NE(size, ZSTD_CONTENTSIZE_ERROR);
  EXPECT_NE(size, ZSTD_CONTENTSIZE_UNKNOWN);
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) return "";
  std::string out(size, '\0');
  size_t n = ZSTD_decompress(out.data(), out.size(), in.data(), in.size());
  EXPECT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
  out.resize(ZSTD_isError(n) ? 0 : n);
  return out;
}

absl::Status WriteStrings(SinkWriter<std::string>& w, std::vector<std::string> records) {
  return w.Write(records);
}

class FirehoseSinkTest : public ::testing::Test {
 protected:
  FirehoseSinkOptions Options() { return {.directory = dir_.Path("bucket"), .clock = clock_}; }

  std::unique_ptr<SinkWriter<std::string>> MakeWriter(const FirehoseSinkOptions& options,
                                                      int subtask = 0, int parallelism = 1) {
    FirehoseSink<std::string> sink(options);
    RuntimeContext ctx;
    ctx.subtask_index = subtask;
    ctx.parallelism = parallelism;
    absl::StatusOr<std::unique_ptr<SinkWriter<std::string>>> w = sink.CreateWriter(ctx);
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? *std::move(w) : nullptr;
  }

  fs::path root() const { return dir_.path() / "bucket"; }
  std::string Read(const std::string& relative) const {
    return ReadFile((root() / relative).string());
  }

  TempDir dir_;
  const int64_t start_ = UtcMillis(2026, 11, 24, 13, 5, 9);
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>(start_);
};

// --- Buffering hints -----------------------------------------------------------------------------

TEST_F(FirehoseSinkTest, SizeHintCutsExactFileBoundaries) {
  FirehoseSinkOptions o = Options();
  o.buffer_size_mib = 1;
  auto w = MakeWriter(o);
  // 300 KiB records: the 4th reaches 1 MiB (1200 KiB) and is delivered with the batch.
  std::vector<std::string> records;
  for (int i = 0; i < 10; ++i)
    records.push_back(std::string(300 << 10, static_cast<char>('a' + i)));
  std::vector<std::string> copy = records;
  ASSERT_TRUE(w->Write(copy).ok());
  EXPECT_THAT(VisibleFiles(root()), IsEmpty());
  EXPECT_THAT(
      Untokenized(HiddenFiles(root())),
      ElementsAre(".sluice-firehose/sluice/sluice-0-2026-11-24-13-05-09-00000000-TOKEN.pending",
                  ".sluice-firehose/sluice/sluice-0-2026-11-24-13-05-09-00000001-TOKEN.pending"));
  ASSERT_TRUE(w->Finish().ok());
  w->Close();
  std::vector<std::string> files = VisibleFiles(root());
  EXPECT_THAT(Untokenized(files),
              ElementsAre("2026/11/24/13/sluice-0-2026-11-24-13-05-09-00000000-TOKEN",
                          "2026/11/24/13/sluice-0-2026-11-24-13-05-09-00000001-TOKEN",
                          "2026/11/24/13/sluice-0-2026-11-24-13-05-09-00000002-TOKEN"));
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(Read(files[0]), records[0] + records[1] + records[2] + records[3]);
  EXPECT_EQ(Read(files[1]), records[4] + records[5] + records[6] + records[7]);
  EXPECT_EQ(Read(files[2]), records[8] + records[9]);
  EXPECT_THAT(HiddenFiles(root()), IsEmpty());
}

TEST_F(FirehoseSinkTest, SizeHintCountsTheNewlineDelimiterAndReachingItExactlyDelivers) {
  FirehoseSinkOptions o = Options();
  o.buffer_size_mib = 1;
  o.newline_delimiter = true;
  auto w = MakeWriter(o);
  // (256 KiB - 1) bytes + '\n': four records are exactly 1 MiB; three are not.
  const std::string r(256 * 1024 - 1, 'x');
  ASSERT_TRUE(WriteStrings(*w, {r, r, r}).ok());
  EXPECT_THAT(HiddenFiles(root()), IsEmpty());
  ASSERT_TRUE(WriteStrings(*w, {r}).ok());
  EXPECT_EQ(HiddenFiles(root()).size(), 1u);
  ASSERT_TRUE(WriteStrings(*w, {"tail"}).ok());
  ASSERT_TRUE(w->Finish().ok());
  std::vector<std::string> files = VisibleFiles(root());
  ASSERT_EQ(files.size(), 2u);
  std::string line = r + "\n";
  EXPECT_EQ(Read(files[0]), line + line + line + line);
  EXPECT_EQ(Read(files[0]).size(), 1u << 20);
  EXPECT_EQ(Read(files[1]), "tail\n");
}

TEST_F(FirehoseSinkTest, IntervalHintDeliversAtTheNextWriteOrCheckpoint) {
  FirehoseSinkOptions o = Options();
  o.buffer_interval = absl::Seconds(60);
  auto w = MakeWriter(o);
  ASSERT_TRUE(WriteStrings(*w, {"a"}).ok());
  clock_->Advance(absl::Seconds(59));
  ASSERT_TRUE(WriteStrings(*w, {"b"}).ok());  // oldest record 59 s old: not due
  EXPECT_THAT(HiddenFiles(root()), IsEmpty());
  clock_->Advance(absl::Seconds(1));
  ASSERT_TRUE(WriteStrings(*w, {"c"}).ok());  // 60 s: "ab" delivered first, "c" starts a batch
  EXPECT_EQ(HiddenFiles(root()).size(), 1u);
  clock_->Advance(absl::Seconds(59));
  ASSERT_TRUE(w->SnapshotState(1).ok());  // "c" is 59 s old: stays in the buffer (and the state)
  EXPECT_EQ(HiddenFiles(root()).size(), 1u);
  clock_->Advance(absl::Seconds(1));
  ASSERT_TRUE(w->SnapshotState(2).ok());  // due at the barrier: delivered and pre-committed
  EXPECT_EQ(HiddenFiles(root()).size(), 2u);
  EXPECT_THAT(VisibleFiles(root()), IsEmpty());
  ASSERT_TRUE(w->NotifyCheckpointComplete(2).ok());
  std::vector<std::string> files = VisibleFiles(root());
  EXPECT_THAT(Untokenized(files),
              ElementsAre("2026/11/24/13/sluice-0-2026-11-24-13-05-09-00000000-TOKEN",
                          "2026/11/24/13/sluice-0-2026-11-24-13-06-09-00000001-TOKEN"));
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(Read(files[0]), "ab");  // no delimiter by default, as Firehose
  EXPECT_EQ(Read(files[1]), "c");
  EXPECT_THAT(HiddenFiles(root()), IsEmpty());
}

TEST_F(FirehoseSinkTest, ZeroIntervalDeliversEveryWrite) {
  FirehoseSinkOptions o = Options();
  o.buffer_interval = absl::ZeroDuration();
  auto w = MakeWriter(o);
  ASSERT_TRUE(WriteStrings(*w, {"a", "b"}).ok());
  ASSERT_TRUE(WriteStrings(*w, {"c"}).ok());
  ASSERT_TRUE(w->Finish().ok());
  std::vector<std::string> files = VisibleFiles(root());
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(Read(files[0]), "ab");
  EXPECT_EQ(Read(files[1]), "c");
}

TEST_F(FirehoseSinkTest, HourPrefixRollsAcrossHourAndYearBoundariesInUtc) {
  clock_->Set(UtcMillis(2026, 12, 31, 22, 59, 59) + 999);
  FirehoseSinkOptions o = Options();
  o.buffer_interval = absl::ZeroDuration();
  o.prefix = "logs/";
  o.stream_name = "clicks";
  o.newline_delimiter = true;
  auto w = MakeWriter(o);
  ASSERT_TRUE(WriteStrings(*w, {"a"}).ok());
  clock_->Advance(absl::Milliseconds(1));  // 23:00:00.000
  ASSERT_TRUE(WriteStrings(*w, {"b"}).ok());
  clock_->Set(UtcMillis(2026, 12, 31, 23, 59, 59) + 999);
  ASSERT_TRUE(WriteStrings(*w, {"c"}).ok());
  clock_->Advance(absl::Milliseconds(1));  // 2027-01-01 00:00:00.000
  ASSERT_TRUE(WriteStrings(*w, {"d"}).ok());
  ASSERT_TRUE(w->Finish().ok());
  std::vector<std::string> files = VisibleFiles(root());
  EXPECT_THAT(Untokenized(files),
              ElementsAre("logs/2026/12/31/22/clicks-0-2026-12-31-22-59-59-00000000-TOKEN",
                          "logs/2026/12/31/23/clicks-0-2026-12-31-23-00-00-00000001-TOKEN",
                          "logs/2026/12/31/23/clicks-0-2026-12-31-23-59-59-00000002-TOKEN",
                          "logs/2027/01/01/00/clicks-0-2027-01-01-00-00-00-00000003-TOKEN"));
  ASSERT_EQ(files.size(), 4u);
  EXPECT_EQ(Read(files[0]), "a\n");
  EXPECT_EQ(Read(files[1]), "b\n");
  EXPECT_EQ(Read(files[2]), "c\n");
  EXPECT_EQ(Read(files[3]), "d\n");
}

TEST_F(FirehoseSinkTest, ThePrefixIsTheArrivalHourOfTheOldestRecordNotTheDeliveryHour) {
  clock_->Set(UtcMillis(2026, 12, 31, 22, 59, 59) + 500);
  FirehoseSinkOptions o = Options();
  o.buffer_interval = absl::Seconds(1);
  o.prefix = "logs/";
  o.stream_name = "clicks";
  o.newline_delimiter = true;
  auto w = MakeWriter(o);
  ASSERT_TRUE(WriteStrings(*w, {"a"}).ok());
  clock_->Advance(absl::Milliseconds(700));  // 23:00:00.200: not due yet
  ASSERT_TRUE(WriteStrings(*w, {"b"}).ok());
  clock_->Advance(absl::Milliseconds(1000));  // 23:00:01.200: due, delivered before "c"
  ASSERT_TRUE(WriteStrings(*w, {"c"}).ok());
  ASSERT_TRUE(w->Finish().ok());
  std::vector<std::string> files = VisibleFiles(root());
  EXPECT_THAT(Untokenized(files),
              ElementsAre("logs/2026/12/31/22/clicks-0-2026-12-31-22-59-59-00000000-TOKEN",
                          "logs/2026/12/31/23/clicks-0-2026-12-31-23-00-01-00000001-TOKEN"));
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(Read(files[0]), "a\nb\n");
  EXPECT_EQ(Read(files[1]), "c\n");
}

TEST_F(FirehoseSinkTest, PrefixWithoutSlashIsPrependedAsFirehoseDoes) {
  FirehoseSinkOptions o = Options();
  o.prefix = "app/logs-";
  auto w = MakeWriter(o);
  ASSERT_TRUE(WriteStrings(*w, {"x"}).ok());
  ASSERT_TRUE(w->Finish().ok());
  EXPECT_THAT(Untokenized(VisibleFiles(root())),
              ElementsAre("app/logs-2026/11/24/13/sluice-0-2026-11-24-13-05-09-00000000-TOKEN"));
}

// --- Compression --------------------------------------------------------------------------------

class FirehoseCompressionTest : public FirehoseSinkTest,
                                public ::testing::WithParamInterface<FirehoseCompression> {};

TEST_P(FirehoseCompressionTest, FilesDecompressToExactlyTheRecords) {
  const bool gzip = GetParam() == FirehoseCompression::kGzip;
  FirehoseSinkOptions o = Options();
  o.compression = GetParam();
  o.newline_delimiter = true;
  o.buffer_size_mib = 1;
  auto w = MakeWriter(o);
  std::vector<std::string> records;
  std::string expected;
  for (int i = 0; i < 90000; ++i) {
    records.push_back(absl::StrCat("record-", i, i % 7 == 0 ? std::string("\0\xff\x01", 3) : ""));
    expected += records.back() + "\n";
  }
  std::vector<std::string> copy = records;
  ASSERT_TRUE(w->Write(copy).ok());
  ASSERT_TRUE(w->Finish().ok());
  std::vector<std::string> files = VisibleFiles(root());
  ASSERT_EQ(files.size(), 2u);  // ~1.2 MB of records: one 1 MiB batch and the rest at Finish
  std::vector<std::string> plain;
  for (const std::string& f : files) {
    EXPECT_TRUE(f.ends_with(gzip ? ".gz" : ".zst")) << f;
    std::string bytes = Read(f);
    ASSERT_GE(bytes.size(), 4u);
    if (gzip) {
      EXPECT_EQ(bytes.substr(0, 2), "\x1f\x8b");
      plain.push_back(Gunzip(bytes));
    } else {
      EXPECT_EQ(bytes.substr(0, 4), "\x28\xb5\x2f\xfd");
      plain.push_back(Unzstd(bytes));
    }
    EXPECT_LT(bytes.size(), plain.back().size() / 2) << "compressed";
  }
  // The first batch ends with the record that reached 1 MiB.
  EXPECT_GE(plain[0].size(), 1u << 20);
  EXPECT_LT(plain[0].size(), (1u << 20) + 20);
  EXPECT_EQ(plain[0] + plain[1], expected);
}

INSTANTIATE_TEST_SUITE_P(GzipAndZstd, FirehoseCompressionTest,
                         ::testing::Values(FirehoseCompression::kGzip, FirehoseCompression::kZstd),
                         [](const auto& info) {
                           return info.param == FirehoseCompression::kGzip ? "Gzip" : "Zstd";
                         });

// --- Transformation -----------------------------------------------------------------------------

std::string ErrorLine(uint64_t id, const std::string& raw, int64_t arrival, const std::string& code,
                      const std::string& message, int64_t ending) {
  return absl::StrCat("{\"attemptsMade\":1,\"arrivalTimestamp\":", arrival, ",\"errorCode\":\"",
                      code, "\",\"errorMessage\":\"", message,
                      "\",\"attemptEndingTimestamp\":", ending, ",\"rawData\":\"",
                      absl::Base64Escape(raw), "\",\"recordId\":", id, "}\n");
}

TEST_F(FirehoseSinkTest, TransformationOkDroppedAndProcessingFailed) {
  FirehoseSinkOptions o = Options();
  o.newline_delimiter = true;
  std::vector<std::vector<uint64_t>> seen_ids;
  o.transformation = [&](std::span<const FirehoseRecord> batch) {
    std::vector<uint64_t> ids;
    std::vector<FirehoseTransformResult> out;
    for (const FirehoseRecord& r : batch) {
      ids.push_back(r.record_id);
      if (r.data == "drop") {
        out.push_back({.record_id = r.record_id, .result = FirehoseResult::kDropped});
      } else if (r.data == "fail") {
        out.push_back({.record_id = r.record_id,
                       .result = FirehoseResult::kProcessingFailed,
                       .error_message = "bad \"record\""});
      } else if (r.data.starts_with("fail-")) {
        out.push_back({.record_id = r.record_id, .result = FirehoseResult::kProcessingFailed});
      } else {
        std::string upper(r.data);
        for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        out.push_back({.record_id = r.record_id, .result = FirehoseResult::kOk, .data = upper});
      }
    }
    std::reverse(out.begin(), out.end());  // any order
    seen_ids.push_back(ids);
    return out;
  };
  auto w = MakeWriter(o);
  const int64_t t0 = clock_->NowMillis();
  ASSERT_TRUE(WriteStrings(*w, {"keep", "drop", "fail"}).ok());
  clock_->Advance(absl::Seconds(2));
  ASSERT_TRUE(WriteStrings(*w, {"fail-\x01", "more"}).ok());
  clock_->Advance(absl::Seconds(3));
  const int64_t t2 = clock_->NowMillis();
  ASSERT_TRUE(w->Finish().ok());
  EXPECT_THAT(seen_ids, ElementsAre(ElementsAre(0, 1, 2, 3, 4)));
  std::vector<std::string> files = VisibleFiles(root());
  EXPECT_THAT(
      Untokenized(files),
      ElementsAre("2026/11/24/13/sluice-0-2026-11-24-13-05-09-00000000-TOKEN",
                  "processing-failed/2026/11/24/13/sluice-0-2026-11-24-13-05-09-00000001-TOKEN"));
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(Read(files[0]), "KEEP\nMORE\n");
  EXPECT_EQ(Read(files[1]),
            ErrorLine(2, "fail", t0, "Lambda.ProcessingFailedStatus", "bad \\\"record\\\"", t2) +
                ErrorLine(3, "fail-\x01", t0 + 2000, "Lambda.ProcessingFailedStatus",
                          "ProcessingFailed status set for record", t2));
}

TEST_F(FirehoseSinkTest, MissingDuplicateAndUnknownRecordIdsAreProcessingFailures) {
  FirehoseSinkOptions o = Options();
  o.error_prefix = "errors/";
  o.transformation = [](std::span<const FirehoseRecord> batch) {
    EXPECT_EQ(batch.size(), 4u);
    std::vector<FirehoseTransformResult> out;
    // id 0 missing; id 1 twice; id 2 Ok; id 3 Ok; an unknown id 9.
    out.push_back({.record_id = 1, .data = "one-a"});
    out.push_back({.record_id = 9, .data = "ghost"});
    out.push_back({.record_id = 2, .data = "two"});
    out.push_back({.record_id = 1, .data = "one-b"});
    out.push_back({.record_id = 3, .data = "three"});
    return out;
  };
  auto w = MakeWriter(o);
  const int64_t t = clock_->NowMillis();
  ASSERT_TRUE(WriteStrings(*w, {"r0", "r1", "r2", "r3"}).ok());
  ASSERT_TRUE(w->SnapshotState(1).ok());  // not due: the batch waits in the state
  EXPECT_THAT(ListTree(root()), IsEmpty());
  ASSERT_TRUE(w->Finish().ok());
  std::vector<std::string> files = VisibleFiles(root());
  ASSERT_EQ(files.size(), 2u);
  EXPECT_TRUE(files[0].starts_with("2026/11/24/13/")) << files[0];
  EXPECT_TRUE(files[1].starts_with("errors/2026/11/24/13/")) << files[1];
  EXPECT_EQ(Read(files[0]), "twothree");
  EXPECT_EQ(Read(files[1]),
            ErrorLine(9, "ghost", t, "Lambda.UnknownRecordId",
                      "the transformation returned record id 9, which is not in the batch of 4 "
                      "records; rawData is the data it returned",
                      t) +
                ErrorLine(0, "r0", t, "Lambda.MissingRecordId",
                          "the transformation returned no result for record id 0", t) +
                ErrorLine(1, "r1", t, "Lambda.DuplicatedRecordId",
                          "the transformation returned 2 results for record id 1", t));
}

TEST_F(FirehoseSinkTest, EverythingDroppedWritesNoFile) {
  FirehoseSinkOptions o = Options();
  o.transformation = [](std::span<const FirehoseRecord> batch) {
    std::vector<FirehoseTransformResult> out;
    for (const FirehoseRecord& r : batch) {
      out.push_back({.record_id = r.record_id, .result = FirehoseResult::kDropped});
    }
    return out;
  };
  auto w = MakeWriter(o);
  ASSERT_TRUE(WriteStrings(*w, {"a", "b"}).ok());
  ASSERT_TRUE(w->Finish().ok());
  EXPECT_THAT(ListTree(root()), IsEmpty());
}

TEST_F(FirehoseSinkTest, ThrowingTransformationFailsWithItsMessage) {
  FirehoseSinkOptions o = Options();
  o.stream_name = "clicks";
  o.buffer_interval = absl::ZeroDuration();
  o.transformation = [](std::span<const FirehoseRecord>) -> std::vector<FirehoseTransformResult> {
    throw std::runtime_error("lambda exploded");
  };
  auto w = MakeWriter(o);
  absl::Status st = WriteStrings(*w, {"a"});
  EXPECT_EQ(st.code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(st.message(), "FirehoseSink clicks: transformation threw: lambda exploded");
  w->Close();
  EXPECT_THAT(ListTree(root()), IsEmpty());

  // In a job: Execute() returns the failure with the message.
  StreamEnvironment env({.parallelism = 1});
  env.FromCollection(std::vector<std::string>{"a", "b"}).SinkTo(FirehoseSink<std::string>(o));
  absl::Status job = env.Execute("throwing-transformation");
  EXPECT_FALSE(job.ok());
  EXPECT_THAT(std::string(job.message()),
              HasSubstr("FirehoseSink clicks: transformation threw: lambda exploded"));
  EXPECT_THAT(VisibleFiles(root()), IsEmpty());
}

// --- Exactly once -------------------------------------------------------------------------------

TEST_F(FirehoseSinkTest, FilesAreInvisibleUntilTheirCheckpointCompletes) {
  FirehoseSinkOptions o = Options();
  o.buffer_interval = absl::ZeroDuration();
  auto w = MakeWriter(o);
  ASSERT_TRUE(WriteStrings(*w, {"a"}).ok());
  ASSERT_TRUE(w->SnapshotState(1).ok());
  ASSERT_TRUE(WriteStrings(*w, {"b"}).ok());
  EXPECT_THAT(VisibleFiles(root()), IsEmpty());
  EXPECT_EQ(HiddenFiles(root()).size(), 2u);
  ASSERT_TRUE(w->NotifyCheckpointComplete(1).ok());
  std::vector<std::string> files = VisibleFiles(root());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(Read(files[0]), "a");
  ASSERT_TRUE(w->SnapshotState(2).ok());
  EXPECT_EQ(VisibleFiles(root()).size(), 1u);
  ASSERT_TRUE(w->NotifyCheckpointComplete(2).ok());
  files = VisibleFiles(root());
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(Read(files[1]), "b");
  // A repeated notification changes nothing.
  ASSERT_TRUE(w->NotifyCheckpointComplete(2).ok());
  EXPECT_EQ(VisibleFiles(root()).size(), 2u);
  // Close without Finish: the open transaction's delivered file is removed.
  ASSERT_TRUE(WriteStrings(*w, {"c"}).ok());
  EXPECT_EQ(HiddenFiles(root()).size(), 1u);
  w->Close();
  EXPECT_EQ(VisibleFiles(root()).size(), 2u);
  EXPECT_THAT(HiddenFiles(root()), IsEmpty());
}

TEST_F(FirehoseSinkTest, CrashRestoreCommitsListedFilesRestoresTheBufferAndDropsLeftovers) {
  FirehoseSinkOptions o = Options();
  o.buffer_interval = absl::Seconds(100);
  o.buffer_size_mib = 1;
  o.newline_delimiter = true;
  const std::string big(600 << 10, 'B');
  std::string state;
  {
    auto w = MakeWriter(o);
    ASSERT_TRUE(WriteStrings(*w, {"a", big, big}).ok());  // "a", big, big delivered (size)
    ASSERT_TRUE(WriteStrings(*w, {"x", "y"}).ok());       // buffered
    absl::StatusOr<std::string> s = w->SnapshotState(1);
    ASSERT_TRUE(s.ok()) << s.status();
    state = *s;
    ASSERT_TRUE(WriteStrings(*w, {"z", big, big}).ok());  // delivered after the barrier
    ASSERT_TRUE(w->SnapshotState(2).ok());                // checkpoint 2 never completes
    ASSERT_TRUE(WriteStrings(*w, {big, big}).ok());       // delivered, open transaction
    // Hard crash: no Close, no Finish.
  }
  EXPECT_THAT(VisibleFiles(root()), IsEmpty());
  EXPECT_EQ(HiddenFiles(root()).size(), 3u);
  // A leftover of another subtask that this one does not restore stays.
  connectors_test::WriteFile(
      (root() / ".sluice-firehose/sluice/sluice-1-2026-11-24-13-05-09-00000000-abcdef01.pending")
          .string(),
      "other");

  for (int attempt = 0; attempt < 2; ++attempt) {  // a crash during recovery: restore again
    auto w = MakeWriter(o);
    ASSERT_TRUE(w->RestoreState({state}).ok());
    std::vector<std::string> files = VisibleFiles(root());
    ASSERT_EQ(files.size(), 1u);
    EXPECT_EQ(Read(files[0]), "a\n" + big + "\n" + big + "\n");
    EXPECT_THAT(HiddenFiles(root()),
                ElementsAre(".sluice-firehose/sluice/"
                            "sluice-1-2026-11-24-13-05-09-00000000-abcdef01.pending"));
    if (attempt == 0) continue;
    // The source replays what came after checkpoint 1.
    ASSERT_TRUE(WriteStrings(*w, {"z"}).ok());
    ASSERT_TRUE(w->Finish().ok());
    files = VisibleFiles(root());
    ASSERT_EQ(files.size(), 2u);
    // The restored buffer continues the numbering after the state's counter.
    EXPECT_EQ(Untokenized(files[1]), "2026/11/24/13/sluice-0-2026-11-24-13-05-09-00000001-TOKEN");
    EXPECT_EQ(Read(files[1]), "x\ny\nz\n");
  }
}

TEST_F(FirehoseSinkTest, FailedCommitNamesThePathAndIsRetriedOnRestore) {
  FirehoseSinkOptions o = Options();
  o.buffer_interval = absl::ZeroDuration();
  auto w = MakeWriter(o);
  ASSERT_TRUE(WriteStrings(*w, {"a"}).ok());
  absl::StatusOr<std::string> state = w->SnapshotState(1);
  ASSERT_TRUE(state.ok()) << state.status();
  connectors_test::WriteFile((root() / "2026").string(), "a file where a directory goes");
  absl::Status st = w->NotifyCheckpointComplete(1);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            (root() / "2026/11").string() + ": cannot create directory: Not a directory");
  w->Close();
  EXPECT_EQ(HiddenFiles(root()).size(), 1u);  // still pending: the job fails and restores
  fs::remove(root() / "2026");
  auto restored = MakeWriter(o);
  ASSERT_TRUE(restored->RestoreState({*state}).ok());
  std::vector<std::string> files = VisibleFiles(root());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(Read(files[0]), "a");
  EXPECT_THAT(HiddenFiles(root()), IsEmpty());
}

TEST_F(FirehoseSinkTest, RescaleRestoresTheBuffersOfTwoOldSubtasksIntoOne) {
  FirehoseSinkOptions o = Options();
  std::string s0;
  std::string s1;
  {
    auto w0 = MakeWriter(o, 0, 2);
    auto w1 = MakeWriter(o, 1, 2);
    ASSERT_TRUE(WriteStrings(*w0, {"p"}).ok());
    ASSERT_TRUE(WriteStrings(*w1, {"q"}).ok());
    s0 = *w0->SnapshotState(3);
    s1 = *w1->SnapshotState(3);
  }
  auto w = MakeWriter(o, 0, 1);
  ASSERT_TRUE(w->RestoreState({s0, s1}).ok());
  ASSERT_TRUE(w->Finish().ok());
  std::vector<std::string> files = VisibleFiles(root());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(Read(files[0]), "pq");
}

TEST_F(FirehoseSinkTest, MalformedStateIsDataLoss) {
  auto w = MakeWriter(Options());
  std::string good;
  {
    auto other = MakeWriter(Options());
    ASSERT_TRUE(WriteStrings(*other, {"a"}).ok());
    good = *other->SnapshotState(1);
  }
  absl::Status st = w->RestoreState({good.substr(0, good.size() - 1)});
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
}

// A bounded job without checkpointing: everything becomes visible at the end of the input.
TEST_F(FirehoseSinkTest, BoundedJobPublishesAtFinish) {
  FirehoseSinkOptions o = Options();
  o.newline_delimiter = true;
  using Click = std::pair<std::string, int>;
  StreamEnvironment env({.parallelism = 1});
  env.FromCollection(std::vector<Click>{{"ann", 1}, {"bob", 2}})
      .SinkTo(MakeFirehoseSink<Click>(o, [](const Click& c, std::string& out) {
        absl::StrAppend(&out, c.first, ":", c.second);
      }));
  ASSERT_TRUE(env.Execute("bounded").ok());
  std::vector<std::string> files = VisibleFiles(root());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(Read(files[0]), "ann:1\nbob:2\n");
  EXPECT_THAT(HiddenFiles(root()), IsEmpty());
}

// The encoder may also return the bytes (here a std::string per record).
TEST_F(FirehoseSinkTest, EncoderReturningBytes) {
  static_assert(FirehoseEncoder<FirehoseBytesEncoder, std::string>);
  static_assert(FirehoseEncoder<FirehoseBytesEncoder, std::string_view>);
  static_assert(!FirehoseEncoder<FirehoseBytesEncoder, int>);
  auto sink = MakeFirehoseSink<int>(Options(), [](int i) { return absl::StrCat("<", i, ">"); });
  auto w = sink.CreateWriter(RuntimeContext{});
  ASSERT_TRUE(w.ok()) << w.status();
  std::vector<int> records = {1, 22, 333};
  ASSERT_TRUE((*w)->Write(records).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  std::vector<std::string> files = VisibleFiles(root());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(Read(files[0]), "<1><22><333>");
}

// --- Options ------------------------------------------------------------------------------------

TEST_F(FirehoseSinkTest, BadOptionsGiveExactMessages) {
  auto message = [&](const FirehoseSinkOptions& o) {
    absl::Status st = o.Validate();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    FirehoseSink<std::string> sink(o);
    EXPECT_EQ(sink.CreateWriter(RuntimeContext{}).status(), st);
    return std::string(st.message());
  };
  EXPECT_TRUE(Options().Validate().ok());
  FirehoseSinkOptions o = Options();
  o.directory.clear();
  EXPECT_EQ(message(o), "FirehoseSinkOptions.directory: empty");
  o = Options();
  o.stream_name = "a/b";
  EXPECT_EQ(message(o),
            "FirehoseSinkOptions.stream_name: \"a/b\" must be 1 to 64 characters of "
            "[A-Za-z0-9_.-], not \".\" nor \"..\"");
  o.stream_name = std::string(65, 's');
  EXPECT_THAT(message(o), HasSubstr("FirehoseSinkOptions.stream_name: "));
  o.stream_name = "..";
  EXPECT_THAT(message(o), HasSubstr("FirehoseSinkOptions.stream_name: \"..\""));
  o = Options();
  o.prefix = "/abs/";
  EXPECT_EQ(message(o), "FirehoseSinkOptions.prefix: \"/abs/\" must be relative (starts with '/')");
  o.prefix = "a//b/";
  EXPECT_EQ(message(o),
            "FirehoseSinkOptions.prefix: \"a//b/\" has an empty path component (\"//\")");
  o.prefix = "a/../b/";
  EXPECT_EQ(message(o),
            "FirehoseSinkOptions.prefix: \"a/../b/\" has a path component starting "
            "with '.' (hidden, \".\" or \"..\")");
  o.prefix = ".hidden/";
  EXPECT_THAT(message(o),
              HasSubstr("FirehoseSinkOptions.prefix: \".hidden/\" has a path component"));
  o.prefix = std::string(1025, 'p');
  EXPECT_THAT(message(o), HasSubstr("is longer than 1024 characters"));
  o = Options();
  o.error_prefix = "";
  EXPECT_EQ(message(o), "FirehoseSinkOptions.error_prefix: empty");
  o.error_prefix = "x/./";
  EXPECT_THAT(message(o), HasSubstr("FirehoseSinkOptions.error_prefix: \"x/./\" has a path"));
  o = Options();
  o.prefix = "same/";
  o.error_prefix = "same/";
  EXPECT_EQ(message(o), "FirehoseSinkOptions.error_prefix: \"same/\" must differ from prefix");
  o = Options();
  o.buffer_size_mib = 0;
  EXPECT_EQ(message(o), "FirehoseSinkOptions.buffer_size_mib: must be in [1, 128], got 0");
  o.buffer_size_mib = 129;
  EXPECT_EQ(message(o), "FirehoseSinkOptions.buffer_size_mib: must be in [1, 128], got 129");
  o.buffer_size_mib = 128;
  EXPECT_TRUE(o.Validate().ok());
  o = Options();
  o.buffer_interval = absl::Seconds(901);
  EXPECT_EQ(message(o), "FirehoseSinkOptions.buffer_interval: must be in [0s, 900s], got 15m1s");
  o.buffer_interval = -absl::Milliseconds(1);
  EXPECT_EQ(message(o), "FirehoseSinkOptions.buffer_interval: must be in [0s, 900s], got -1ms");
  o.buffer_interval = absl::Seconds(900);
  EXPECT_TRUE(o.Validate().ok());
  o = Options();
  o.compression = static_cast<FirehoseCompression>(7);
  EXPECT_EQ(message(o), "FirehoseSinkOptions.compression: unknown value 7");
}

TEST_F(FirehoseSinkTest, UnusableDirectoryNamesThePath) {
  connectors_test::WriteFile(dir_.Path("plain-file"), "x");
  FirehoseSinkOptions o = Options();
  o.directory = dir_.Path("plain-file") + "/sub";
  FirehoseSink<std::string> sink(o);
  absl::StatusOr<std::unique_ptr<SinkWriter<std::string>>> w = sink.CreateWriter({});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().message(),
            absl::StrCat(o.directory, ": cannot create directory: Not a directory"));
}

}  // namespace
}  // namespace sluice
