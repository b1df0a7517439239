// File connectors through real jobs: TextFileSource, CsvFileSource, DirectorySource, FileSink and
// CsvFileSink. Every test compares the exact output (in order where the job defines an order).
#include <sluice/connectors/file.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include <sluice/sluice.h>

#include "connectors/test_util.h"

namespace sluice {
namespace {

using connectors_test::ReadFile;
using connectors_test::TempDir;
using connectors_test::WaitUntil;
using connectors_test::WriteFile;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

// Runs a job `source → CollectSink` and returns what it collected, or the job's error.
template <typename S>
absl::StatusOr<std::vector<typename S::value_type>> Collect(S source, int parallelism = 1) {
  StreamEnvironment env({.parallelism = parallelism});
  CollectSink<typename S::value_type> sink;
  env.FromSource(std::move(source)).SinkTo(sink);
  SLUICE_RETURN_IF_ERROR(env.Execute());
  return sink.values();
}

// --- TextFileSource ------------------------------------------------------------------------------

TEST(TextFileSourceTest, CrlfEmptyLinesAndLastLineWithoutNewline) {
  TempDir dir;
  WriteFile(dir.Path("in.txt"), "alpha\r\nbeta\n\n\r\n  spaced  \r\ngamma\rinside\nlast");
  auto lines = Collect(TextFileSource(dir.Path("in.txt")));
  ASSERT_TRUE(lines.ok()) << lines.status();
  EXPECT_THAT(*lines, ElementsAre("alpha", "beta", "", "", "  spaced  ", "gamma\rinside", "last"));
}

TEST(TextFileSourceTest, TrailingNewlineAddsNoEmptyLineAndEmptyFileHasNoLines) {
  TempDir dir;
  WriteFile(dir.Path("a.txt"), "one\ntwo\n");
  WriteFile(dir.Path("empty.txt"), "");
  auto a = Collect(TextFileSource(dir.Path("a.txt")));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT(*a, ElementsAre("one", "two"));
  auto empty = Collect(TextFileSource(dir.Path("empty.txt")));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
}

TEST(TextFileSourceTest, ManyChunksKeepEveryLineInOrder) {
  // About 400 KiB: several 64 KiB chunks, lines cut at chunk boundaries, and one line of 150 KB
  // that spans three chunks.
  TempDir dir;
  std::vector<std::string> expected;
  std::string content;
  for (int i = 0; i < 30000; ++i) {
    expected.push_back(absl::StrCat("line-", i, i % 7 == 0 ? "-with-some-more-text" : ""));
    if (i == 12345) expected.back() = std::string(150000, 'x');
    content += expected.back();
    content += i % 3 == 0 ? "\r\n" : "\n";
  }
  WriteFile(dir.Path("big.txt"), content);
  auto lines = Collect(TextFileSource(dir.Path("big.txt")), /*parallelism=*/2);
  ASSERT_TRUE(lines.ok()) << lines.status();
  // One reader and a rebalancing edge to two sink subtasks: the multiset is exact.
  std::vector<std::string> sorted_expected = expected;
  std::sort(sorted_expected.begin(), sorted_expected.end());
  std::sort(lines->begin(), lines->end());
  EXPECT_EQ(*lines, sorted_expected);

  auto ordered = Collect(TextFileSource(dir.Path("big.txt")), /*parallelism=*/1);
  ASSERT_TRUE(ordered.ok()) << ordered.status();
  EXPECT_EQ(*ordered, expected);
}

TEST(TextFileSourceTest, CrlfSplitAcrossChunksAndLinesLongerThanAChunk) {
  // The reader itself, with 3-byte chunks: "\r\n" and whole lines straddle chunk boundaries.
  TempDir dir;
  WriteFile(dir.Path("in.txt"), "ab\r\ncdefgh\r\n\r\ni\r");
  auto reader = internal::LineFileReader::Open(dir.Path("in.txt"), 3);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<std::string> lines;
  std::vector<int64_t> numbers;
  for (int guard = 0; guard < 100 && !(*reader)->at_end(); ++guard) {
    std::string_view line;
    while ((*reader)->NextLine(&line)) {
      lines.emplace_back(line);
      numbers.push_back((*reader)->line_number());
    }
    ASSERT_TRUE((*reader)->Fill().ok());
  }
  EXPECT_THAT(lines, ElementsAre("ab", "cdefgh", "", "i"));
  EXPECT_THAT(numbers, ElementsAre(1, 2, 3, 4));
}

TEST(TextFileSourceTest, MissingFileFailsTheJobWithNotFoundNamingThePath) {
  TempDir dir;
  std::string path = dir.Path("no-such-file.txt");
  auto lines = Collect(TextFileSource(path));
  ASSERT_FALSE(lines.ok());
  EXPECT_EQ(lines.status().code(), absl::StatusCode::kNotFound) << lines.status();
  EXPECT_THAT(lines.status().message(), HasSubstr(path));
}

TEST(TextFileSourceTest, DirectoryIsInvalidArgument) {
  TempDir dir;
  auto lines = Collect(TextFileSource(dir.path().string()));
  ASSERT_FALSE(lines.ok());
  EXPECT_EQ(lines.status().code(), absl::StatusCode::kInvalidArgument) << lines.status();
  EXPECT_THAT(lines.status().message(), HasSubstr(dir.path().string()));
}

TEST(TextFileSourceTest, IsBoundedAndNonParallel) {
  TextFileSource source("x.txt");
  EXPECT_TRUE(source.IsBounded());
  EXPECT_EQ(source.MaxParallelism(), 1);
  EXPECT_EQ(source.Describe(), "Text File x.txt");
}

// --- CsvFileSource -------------------------------------------------------------------------------

struct Row {
  std::string name;
  int64_t count = 0;
  std::string note;
  bool operator==(const Row&) const = default;
  friend std::ostream& operator<<(std::ostream& os, const Row& r) {
    return os << "Row{" << r.name << "|" << r.count << "|" << r.note << "}";
  }
};

absl::StatusOr<Row> ParseRow(const std::vector<std::string>& f) {
  if (f.size() != 3)
    return absl::InvalidArgumentError(absl::StrCat("expected 3 fields, got ", f.size()));
  Row row{f[0], 0, f[2]};
  if (!absl::SimpleAtoi(f[1], &row.count)) {
    return absl::InvalidArgumentError(absl::StrCat("count '", f[1], "' is not a number"));
  }
  return row;
}

std::vector<std::string> FormatRow(const Row& r) { return {r.name, absl::StrCat(r.count), r.note}; }

TEST(CsvFileSourceTest, QuotedFieldsHeaderAndBlankLines) {
  TempDir dir;
  WriteFile(dir.Path("rows.csv"),
            "name,count,note\r\n"
            "alice,1,plain\n"
            "\n"
            "\"bob, jr.\",2,\"said \"\"hi\"\"\"\r\n"
            "carol,3,\"\"\n"
            "\r\n"
            "\"dave\",-4,\"a,b,,c\"");  // no newline at the end
  auto rows = Collect(CsvFileSource<Row>(dir.Path("rows.csv"), ParseRow, {.skip_header = true}));
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_THAT(*rows, ElementsAre(Row{"alice", 1, "plain"}, Row{"bob, jr.", 2, "said \"hi\""},
                                 Row{"carol", 3, ""}, Row{"dave", -4, "a,b,,c"}));
}

TEST(CsvFileSourceTest, WithoutSkipHeaderTheHeaderIsParsed) {
  TempDir dir;
  WriteFile(dir.Path("rows.csv"), "name,count,note\nalice,1,plain\n");
  auto rows = Collect(CsvFileSource<Row>(dir.Path("rows.csv"), ParseRow));
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(rows.status().message(),
              HasSubstr(absl::StrCat(dir.Path("rows.csv"), ":1: count 'count' is not a number")));
}

TEST(CsvFileSourceTest, OtherDelimiterAndQuote) {
  TempDir dir;
  WriteFile(dir.Path("rows.csv"), "a;1;'x;y'\n'it''s';2;\n");
  auto rows = Collect(
      CsvFileSource<Row>(dir.Path("rows.csv"), ParseRow, {.delimiter = ';', .quote = '\''}));
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_THAT(*rows, ElementsAre(Row{"a", 1, "x;y"}, Row{"it's", 2, ""}));
}

TEST(CsvFileSourceTest, ParseErrorNamesPathAndPhysicalLine) {
  TempDir dir;
  std::string path = dir.Path("bad.csv");
  // Line 4 is bad; the blank line 2 still counts as a line.
  WriteFile(path, "alice,1,a\n\nbob,2,b\ncarol,three,c\ndave,4,d\n");
  auto rows = Collect(CsvFileSource<Row>(path, ParseRow));
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument) << rows.status();
  EXPECT_THAT(rows.status().message(),
              HasSubstr(absl::StrCat(path, ":4: count 'three' is not a number")));
}

TEST(CsvFileSourceTest, MalformedQuotingNamesPathAndLine) {
  TempDir dir;
  std::string path = dir.Path("bad.csv");
  WriteFile(path, "alice,1,a\n\"bob,2,b\n");
  auto rows = Collect(CsvFileSource<Row>(path, ParseRow));
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument) << rows.status();
  EXPECT_THAT(rows.status().message(), HasSubstr(absl::StrCat(path, ":2: ")));
  EXPECT_THAT(rows.status().message(), HasSubstr("not closed"));

  WriteFile(path, "\"alice\"x,1,a\n");
  rows = Collect(CsvFileSource<Row>(path, ParseRow));
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument) << rows.status();
  EXPECT_THAT(rows.status().message(), HasSubstr(absl::StrCat(path, ":1: ")));
}

TEST(CsvFileSourceTest, ExceptionInParserBecomesInvalidArgumentWithPlace) {
  TempDir dir;
  std::string path = dir.Path("rows.csv");
  WriteFile(path, "1\n2\n");
  auto rows = Collect(CsvFileSource<int>(path, [](const std::vector<std::string>& f) -> int {
    if (f[0] == "2") throw std::runtime_error("two is not allowed");
    return std::stoi(f[0]);
  }));
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument) << rows.status();
  EXPECT_THAT(rows.status().message(), HasSubstr(absl::StrCat(path, ":2: two is not allowed")));
}

TEST(CsvFileSourceTest, FailureDownstreamIsNotReportedAsAParseError) {
  // With batches of one record, emitting a record runs the chained Map at once, inside the
  // source's poll: its exception must keep its own identity.
  TempDir dir;
  std::string path = dir.Path("rows.csv");
  WriteFile(path, "alice,1,a\nbob,2,b\n");
  StreamEnvironment env({.parallelism = 1, .batch_size = 1});
  CollectSink<int64_t> sink;
  env.FromSource(CsvFileSource<Row>(path, ParseRow))
      .Map([](const Row& r) -> int64_t {
        if (r.count == 2) throw std::runtime_error("boom in map");
        return r.count;
      })
      .SinkTo(sink);
  absl::Status status = env.Execute();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("boom in map"));
  EXPECT_THAT(status.message(), ::testing::Not(HasSubstr(path + ":2:")));
}

TEST(CsvFileSourceTest, DeducesTheRecordTypeFromTheParser) {
  TempDir dir;
  WriteFile(dir.Path("n.csv"), "1,2\n3,4\n");
  auto source = CsvFileSource(dir.Path("n.csv"), [](const std::vector<std::string>& f) {
    return absl::StatusOr<std::pair<int, int>>(std::pair(std::stoi(f[0]), std::stoi(f[1])));
  });
  static_assert(std::is_same_v<decltype(source)::value_type, std::pair<int, int>>);
  auto pairs = Collect(std::move(source));
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  EXPECT_THAT(*pairs, ElementsAre(std::pair(1, 2), std::pair(3, 4)));
}

TEST(CsvFileSourceTest, MissingFileAndBadOptions) {
  TempDir dir;
  auto missing = Collect(CsvFileSource<Row>(dir.Path("none.csv"), ParseRow));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_THAT(missing.status().message(), HasSubstr(dir.Path("none.csv")));

  WriteFile(dir.Path("x.csv"), "a\n");
  auto bad = Collect(CsvFileSource<Row>(dir.Path("x.csv"), ParseRow, {.delimiter = '"'}));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_THAT(bad.status().message(), HasSubstr("CsvOptions.delimiter"));
}

TEST(CsvLineTest, ParseAndFormatAreInverse) {
  std::vector<std::vector<std::string>> records = {
      {"plain", "two words", ""}, {"a,b", "say \"x\"", "\"", ",", ""}, {"", ""}, {""}, {"cr\rlf\n"},
  };
  for (const auto& fields : records) {
    std::string line;
    internal::AppendCsvLine(fields, ',', '"', &line);
    ASSERT_FALSE(line.empty());
    ASSERT_EQ(line.back(), '\n');
    line.pop_back();
    if (fields.size() == 1 && fields[0].find('\n') != std::string::npos) continue;  // multi-line
    std::vector<std::string> parsed;
    ASSERT_TRUE(internal::ParseCsvLine(line, ',', '"', &parsed).ok()) << line;
    EXPECT_EQ(parsed, fields) << line;
  }
  std::string line;
  internal::AppendCsvLine({"a,b", "c\"d", "e"}, ',', '"', &line);
  EXPECT_EQ(line, "\"a,b\",\"c\"\"d\",e\n");
}

// --- DirectorySource -----------------------------------------------------------------------------

class DirectorySourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(dir_.Path("a.txt"), "a1\na2\n");
    WriteFile(dir_.Path("b.txt"), "b1\r\nb2");
    WriteFile(dir_.Path("c.log"), "c1\n");
    WriteFile(dir_.Path("d.txt"), "d1\nd2\nd3\n");
    WriteFile(dir_.Path(".hidden"), "hidden\n");
    WriteFile(dir_.Path("_in_progress"), "in progress\n");
    std::filesystem::create_directory(dir_.Path("sub"));
    WriteFile(dir_.Path("sub/e.txt"), "nested\n");
  }
  TempDir dir_;
  const std::vector<std::string> expected_ = {"a1", "a2", "b1", "b2", "c1", "d1", "d2", "d3"};
};

TEST_F(DirectorySourceTest, ProcessOnceReadsFilesInNameOrder) {
  auto lines = Collect(DirectorySource(dir_.path().string()));
  ASSERT_TRUE(lines.ok()) << lines.status();
  EXPECT_THAT(*lines, ElementsAreArray(expected_));
}

TEST_F(DirectorySourceTest, ProcessOnceInParallelReadsTheSameLines) {
  // The assignment is by name hash: make sure both subtasks get files, so this tests parallelism.
  std::vector<int> subtasks;
  for (const char* name : {"a.txt", "b.txt", "c.log", "d.txt"}) {
    subtasks.push_back(DirectorySource::SubtaskOf(name, 2));
  }
  ASSERT_NE(std::count(subtasks.begin(), subtasks.end(), 0), 0);
  ASSERT_NE(std::count(subtasks.begin(), subtasks.end(), 1), 0);

  auto lines = Collect(DirectorySource(dir_.path().string()), /*parallelism=*/2);
  ASSERT_TRUE(lines.ok()) << lines.status();
  EXPECT_THAT(*lines, UnorderedElementsAreArray(expected_));

  // Each file's lines stay in order (one subtask reads a file from start to end).
  auto pos = [&](const std::string& s) {
    return std::find(lines->begin(), lines->end(), s) - lines->begin();
  };
  EXPECT_LT(pos("d1"), pos("d2"));
  EXPECT_LT(pos("d2"), pos("d3"));
}

TEST(DirectorySourceHashTest, AssignmentIsStableAndInRange) {
  // FNV-1a 64 of the name: fixed values, whatever the machine.
  EXPECT_EQ(DirectorySource::SubtaskOf("a.txt", 1), 0);
  for (int n : {2, 3, 7}) {
    for (const char* name : {"a.txt", "b.txt", "part-17", ""}) {
      int s = DirectorySource::SubtaskOf(name, n);
      EXPECT_GE(s, 0);
      EXPECT_LT(s, n);
      EXPECT_EQ(s, DirectorySource::SubtaskOf(name, n));
    }
  }
  // FNV-1a 64("a") is 0xaf63dc4c8601ec8c (the published test vector).
  EXPECT_EQ(DirectorySource::SubtaskOf("a", 2), static_cast<int>(0xaf63dc4c8601ec8cULL % 2));
  EXPECT_EQ(DirectorySource::SubtaskOf("a", 7), static_cast<int>(0xaf63dc4c8601ec8cULL % 7));
}

TEST_F(DirectorySourceTest, ProcessContinuouslyPicksUpNewFilesUntilCancelled) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<std::string> sink;
  DirectorySource source(
      dir_.path().string(),
      {.mode = DirectorySourceOptions::kProcessContinuously, .interval = absl::Milliseconds(20)});
  EXPECT_FALSE(source.IsBounded());
  env.FromSource(std::move(source)).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok()) << job.status();

  ASSERT_TRUE(WaitUntil([&] { return sink.size() >= expected_.size(); })) << sink.size();
  EXPECT_THAT(sink.values(), ElementsAreArray(expected_));

  // A new file appears the way a producer should publish one: written under a hidden name, then
  // renamed. Another hidden file appears and is ignored.
  WriteFile(dir_.Path("_e.tmp"), "e1\ne2\n");
  std::filesystem::rename(dir_.Path("_e.tmp"), dir_.Path("e.txt"));
  WriteFile(dir_.Path(".f.swp"), "ignored\n");
  std::vector<std::string> expected = expected_;
  expected.insert(expected.end(), {"e1", "e2"});
  ASSERT_TRUE(WaitUntil([&] { return sink.size() >= expected.size(); })) << sink.size();

  // One more: by the time it arrives the directory was rescanned at least twice more, so files
  // read before would have shown up again if they were re-read.
  WriteFile(dir_.Path("_0.tmp"), "zero\n");
  std::filesystem::rename(dir_.Path("_0.tmp"), dir_.Path("0.txt"));
  expected.push_back("zero");
  ASSERT_TRUE(WaitUntil([&] { return sink.size() >= expected.size(); })) << sink.size();

  job->Cancel();
  ASSERT_TRUE(job->WaitFor(absl::Seconds(5)));
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(sink.values(), ElementsAreArray(expected));
}

TEST(DirectorySourceErrorTest, MissingDirectoryAndBadInterval) {
  TempDir dir;
  auto missing = Collect(DirectorySource(dir.Path("nope")));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_THAT(missing.status().message(), HasSubstr(dir.Path("nope")));

  auto bad = Collect(DirectorySource(dir.path().string(), {.interval = absl::ZeroDuration()}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
}

// --- FileSink ------------------------------------------------------------------------------------

TEST(FileSinkTest, ParallelismOneWritesOneFile) {
  TempDir dir;
  std::string path = dir.Path("out.txt");
  StreamEnvironment env({.parallelism = 1});
  env.FromSequence(1, 5).SinkTo(FileSink<int64_t>(path));
  ASSERT_TRUE(env.Execute().ok());
  EXPECT_EQ(ReadFile(path), "1\n2\n3\n4\n5\n");
  EXPECT_TRUE(std::filesystem::is_regular_file(path));
}

TEST(FileSinkTest, ParallelismTwoWritesAPartFilePerSubtask) {
  TempDir dir;
  std::string path = dir.Path("out");
  StreamEnvironment env({.parallelism = 2});
  // The sequence source gives subtask 0 the numbers 1..500 and subtask 1 501..1000, chained to
  // the sink subtask with the same index: each part file's content is known exactly.
  env.FromSequence(1, 1000).SinkTo(FileSink<int64_t>(path));
  ASSERT_TRUE(env.Execute().ok());
  std::string part0, part1;
  for (int i = 1; i <= 500; ++i) absl::StrAppend(&part0, i, "\n");
  for (int i = 501; i <= 1000; ++i) absl::StrAppend(&part1, i, "\n");
  EXPECT_EQ(ReadFile(path + "/part-0"), part0);
  EXPECT_EQ(ReadFile(path + "/part-1"), part1);
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(path)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_THAT(names, ElementsAre("part-0", "part-1"));
}

TEST(FileSinkTest, FormatValueAndFormatFunction) {
  TempDir dir;
  using P = std::pair<std::string, int64_t>;
  {
    StreamEnvironment env({.parallelism = 1});
    env.FromCollection(std::vector<P>{{"a", 1}, {"b", 2}}).SinkTo(FileSink<P>(dir.Path("tuples")));
    ASSERT_TRUE(env.Execute().ok());
    EXPECT_EQ(ReadFile(dir.Path("tuples")), "(a,1)\n(b,2)\n");
  }
  {
    StreamEnvironment env({.parallelism = 1});
    env.FromCollection(std::vector<P>{{"a", 1}, {"b", 2}})
        .SinkTo(FileSink<P>(dir.Path("custom"),
                            [](const P& p) { return absl::StrCat(p.first, "=", p.second); }));
    ASSERT_TRUE(env.Execute().ok());
    EXPECT_EQ(ReadFile(dir.Path("custom")), "a=1\nb=2\n");
  }
}

TEST(FileSinkTest, WriteModes) {
  TempDir dir;
  std::string path = dir.Path("out.txt");
  WriteFile(path, "old content that is longer\n");
  {
    StreamEnvironment env({.parallelism = 1});
    env.FromSequence(1, 2).SinkTo(FileSink<int64_t>(path));
    absl::Status status = env.Execute();
    EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
    EXPECT_THAT(status.message(), HasSubstr(path));
    EXPECT_EQ(ReadFile(path), "old content that is longer\n");
  }
  {
    StreamEnvironment env({.parallelism = 1});
    env.FromSequence(1, 2).SinkTo(FileSink<int64_t>(path, {.write_mode = WriteMode::kOverwrite}));
    ASSERT_TRUE(env.Execute().ok());
    EXPECT_EQ(ReadFile(path), "1\n2\n");
  }
  {
    // At parallelism 2 the regular file is replaced by a directory of part files.
    StreamEnvironment env({.parallelism = 2});
    env.FromSequence(1, 2).SinkTo(FileSink<int64_t>(path, {.write_mode = WriteMode::kOverwrite}));
    ASSERT_TRUE(env.Execute().ok());
    EXPECT_EQ(ReadFile(path + "/part-0"), "1\n");
    EXPECT_EQ(ReadFile(path + "/part-1"), "2\n");
  }
}

TEST(FileSinkTest, OpenErrorNamesTheFile) {
  TempDir dir;
  WriteFile(dir.Path("plain"), "x");
  std::string path = dir.Path("plain/out.txt");  // a file where a directory is needed
  StreamEnvironment env({.parallelism = 1});
  env.FromSequence(1, 2).SinkTo(FileSink<int64_t>(path));
  absl::Status status = env.Execute();
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr(dir.Path("plain")));
}

// --- FileSink and CsvFileSink across failures: the writers' checkpoint state ----------------------

RuntimeContext SubtaskContext(int index, int parallelism) {
  RuntimeContext ctx;
  ctx.subtask_index = index;
  ctx.parallelism = parallelism;
  return ctx;
}

std::unique_ptr<SinkWriter<int64_t>> Writer(FileSink<int64_t>& sink, int index, int parallelism) {
  absl::StatusOr<std::unique_ptr<SinkWriter<int64_t>>> w =
      sink.CreateWriter(SubtaskContext(index, parallelism));
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? *std::move(w) : nullptr;
}

absl::Status WriteValues(SinkWriter<int64_t>& w, std::vector<int64_t> values) {
  return w.Write(values);
}

// The repro of the report: records written after the last checkpoint, then a crash. The resumed
// writer cuts the file back to the checkpoint's length (the replayed records follow once), in
// either write mode: a resume neither truncates the file to nothing nor refuses it.
TEST(FileSinkCheckpointTest, AResumeKeepsTheCheckpointedPrefixAndWritesTheReplayOnce) {
  for (WriteMode mode : {WriteMode::kOverwrite, WriteMode::kNoOverwrite}) {
    TempDir dir;
    const std::string path = dir.Path("out.txt");
    FileSink<int64_t> sink(path, {.write_mode = mode, .buffer_bytes = 4});
    std::string state;
    {
      auto w = Writer(sink, 0, 1);
      ASSERT_TRUE(WriteValues(*w, {1, 2}).ok());
      absl::StatusOr<std::string> s = w->SnapshotState(1);
      ASSERT_TRUE(s.ok()) << s.status();
      state = *s;
      EXPECT_EQ(ReadFile(path), "1\n2\n");  // on disk at the barrier
      ASSERT_TRUE(WriteValues(*w, {3, 4}).ok());
      w->Close();  // the crash: 3 and 4 are in the file but in no checkpoint
    }
    EXPECT_EQ(ReadFile(path), "1\n2\n3\n4\n");
    auto w = Writer(sink, 0, 1);
    ASSERT_TRUE(w->RestoreState({state}).ok());
    EXPECT_EQ(ReadFile(path), "1\n2\n");
    ASSERT_TRUE(WriteValues(*w, {3, 4, 5}).ok());  // replayed, then new
    ASSERT_TRUE(w->Finish().ok());
    EXPECT_EQ(ReadFile(path), "1\n2\n3\n4\n5\n");
  }
}

// Part files: each subtask resumes its own file, cut back to its checkpointed length.
TEST(FileSinkCheckpointTest, PartFilesResumeEachSubtasksOwnFile) {
  TempDir dir;
  const std::string path = dir.Path("out");
  FileSink<int64_t> sink(path, {.write_mode = WriteMode::kNoOverwrite});
  std::vector<std::string> states;
  for (int i = 0; i < 2; ++i) {
    auto w = Writer(sink, i, 2);
    ASSERT_TRUE(WriteValues(*w, {10 * i, 10 * i + 1}).ok());
    states.push_back(*w->SnapshotState(1));
    ASSERT_TRUE(WriteValues(*w, {99}).ok());  // after the checkpoint
    w->Close();
  }
  for (int i = 0; i < 2; ++i) {
    auto w = Writer(sink, i, 2);
    ASSERT_TRUE(w->RestoreState({states[static_cast<size_t>(i)]}).ok());
    ASSERT_TRUE(WriteValues(*w, {100 + i}).ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  EXPECT_EQ(ReadFile(path + "/part-0"), "0\n1\n100\n");
  EXPECT_EQ(ReadFile(path + "/part-1"), "10\n11\n101\n");
}

// Another parallelism is refused, scaling up (a subtask without state) and down (two states).
TEST(FileSinkCheckpointTest, AnotherParallelismIsRefusedNamingThePath) {
  TempDir dir;
  const std::string path = dir.Path("out");
  FileSink<int64_t> sink(path, {.write_mode = WriteMode::kOverwrite});
  std::vector<std::string> states;
  for (int i = 0; i < 2; ++i) {
    auto w = Writer(sink, i, 2);
    ASSERT_TRUE(WriteValues(*w, {i}).ok());
    states.push_back(*w->SnapshotState(1));
    ASSERT_TRUE(w->Finish().ok());
  }
  absl::Status up = Writer(sink, 1, 3)->RestoreState({states[1]});
  EXPECT_EQ(up.code(), absl::StatusCode::kFailedPrecondition) << up;
  EXPECT_THAT(up.message(), HasSubstr(path + ": the file sink's checkpoint was written at "
                                             "parallelism 2 and cannot be resumed at parallelism "
                                             "3: each subtask resumes its own file"));
  absl::Status fresh = Writer(sink, 2, 3)->RestoreState({});
  EXPECT_EQ(fresh.code(), absl::StatusCode::kFailedPrecondition) << fresh;
  absl::Status down = Writer(sink, 0, 1)->RestoreState(states);
  EXPECT_EQ(down.code(), absl::StatusCode::kFailedPrecondition) << down;
  EXPECT_THAT(down.message(), HasSubstr("written at parallelism 2 and cannot be resumed at "
                                        "parallelism 1"));
  EXPECT_EQ(ReadFile(path + "/part-0"), "0\n");  // untouched
  EXPECT_EQ(ReadFile(path + "/part-1"), "1\n");
}

TEST(FileSinkCheckpointTest, RefusalsNameTheFile) {
  TempDir dir;
  const std::string path = dir.Path("out.txt");
  FileSink<int64_t> sink(path, {.write_mode = WriteMode::kOverwrite});
  std::string state;
  {
    auto w = Writer(sink, 0, 1);
    ASSERT_TRUE(WriteValues(*w, {1, 2, 3}).ok());
    state = *w->SnapshotState(1);
    ASSERT_TRUE(w->Finish().ok());
  }
  // The file lost what the checkpoint recorded.
  WriteFile(path, "1\n");
  absl::Status shorter = Writer(sink, 0, 1)->RestoreState({state});
  EXPECT_EQ(shorter.code(), absl::StatusCode::kDataLoss) << shorter;
  EXPECT_THAT(shorter.message(),
              HasSubstr(path + ": the checkpoint being restored recorded 6 bytes written, but the "
                               "file has 2"));
  absl::Status garbage = Writer(sink, 0, 1)->RestoreState({"\x07junk"});
  EXPECT_EQ(garbage.code(), absl::StatusCode::kDataLoss) << garbage;
  EXPECT_THAT(garbage.message(), HasSubstr("state does not decode"));
}

TEST(CsvFileSinkCheckpointTest, TheHeaderIsWrittenOnceAcrossAResume) {
  TempDir dir;
  const std::string path = dir.Path("rows.csv");
  CsvFileSink<int64_t> sink(path,
                            [](const int64_t& v) {
                              return std::vector<std::string>{absl::StrCat(v), "x,y"};
                            },
                            {.header = {"v", "note"}});
  std::string state;
  {
    auto w = *sink.CreateWriter(SubtaskContext(0, 1));
    ASSERT_TRUE(WriteValues(*w, {1}).ok());
    state = *w->SnapshotState(1);
    ASSERT_TRUE(WriteValues(*w, {2}).ok());
    w->Close();
  }
  auto w = *sink.CreateWriter(SubtaskContext(0, 1));
  ASSERT_TRUE(w->RestoreState({state}).ok());
  ASSERT_TRUE(WriteValues(*w, {2, 3}).ok());
  ASSERT_TRUE(w->Finish().ok());
  EXPECT_EQ(ReadFile(path), "v,note\n1,\"x,y\"\n2,\"x,y\"\n3,\"x,y\"\n");
}

// --- CsvFileSink ---------------------------------------------------------------------------------

TEST(CsvFileSinkTest, RoundTripThroughCsvFileSource) {
  TempDir dir;
  std::string path = dir.Path("rows.csv");
  std::vector<Row> rows = {{"alice", 1, "plain"},
                           {"bob, jr.", 2, "said \"hi\""},
                           {"", 3, ""},
                           {"semi;colon", -4, "\"quoted\""}};
  {
    StreamEnvironment env({.parallelism = 1});
    env.FromCollection(rows).SinkTo(
        CsvFileSink<Row>(path, FormatRow, {.header = {"name", "count", "note"}}));
    ASSERT_TRUE(env.Execute().ok());
  }
  EXPECT_EQ(ReadFile(path),
            "name,count,note\n"
            "alice,1,plain\n"
            "\"bob, jr.\",2,\"said \"\"hi\"\"\"\n"
            ",3,\n"
            "semi;colon,-4,\"\"\"quoted\"\"\"\n");
  auto back = Collect(CsvFileSource<Row>(path, ParseRow, {.skip_header = true}));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, rows);
}

TEST(CsvFileSinkTest, ParallelRoundTripWithOtherDelimiter) {
  TempDir dir;
  std::string path = dir.Path("rows");
  std::vector<Row> rows;
  for (int i = 0; i < 100; ++i) rows.push_back({absl::StrCat("n;", i), i, i % 2 ? "'odd'" : ""});
  {
    StreamEnvironment env({.parallelism = 2});
    env.FromCollection(rows).SinkTo(
        CsvFileSink<Row>(path, FormatRow, {.delimiter = ';', .quote = '\''}));
    ASSERT_TRUE(env.Execute().ok());
  }
  std::vector<Row> back;
  for (const char* part : {"part-0", "part-1"}) {
    auto got =
        Collect(CsvFileSource<Row>(path + "/" + part, ParseRow, {.delimiter = ';', .quote = '\''}));
    ASSERT_TRUE(got.ok()) << got.status();
    back.insert(back.end(), got->begin(), got->end());
  }
  auto by_count = [](const Row& a, const Row& b) { return a.count < b.count; };
  std::sort(back.begin(), back.end(), by_count);
  EXPECT_EQ(back, rows);
}

}  // namespace
}  // namespace sluice
