// Checkpointed positions of the built-in source readers, driven directly (no job): read part of
// the input, snapshot, read more (lost by the "crash"), drop the reader; a new reader restored
// from the snapshot reads the rest. What came before the snapshot plus what came after the restore
// must be the whole input, exactly, in order.
#include <sluice/connectors/collection_source.h>
#include <sluice/connectors/file.h>
#include <sluice/connectors/socket.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include <sluice/core/collector.h>
#include <sluice/state/serializer.h>

#include "connectors/test_util.h"
#include "runtime/task_services.h"

namespace sluice {
namespace {

using connectors_test::LocalServer;
using connectors_test::TempDir;
using connectors_test::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// --- Driving readers -----------------------------------------------------------------------------

// Appends every record it gets to `*records` (and, for split outputs, the split id to `*splits`).
template <typename T>
class CaptureConsumer : public internal::BatchConsumer<T> {
 public:
  CaptureConsumer(std::vector<T>* records, std::vector<std::string>* splits, std::string split)
      : records_(records), splits_(splits), split_(std::move(split)) {}
  void Consume(std::vector<T>& records, std::vector<Timestamp>&) override {
    for (T& r : records) {
      records_->push_back(std::move(r));
      if (splits_ != nullptr) splits_->push_back(split_);
    }
  }
  void OnEndOfInput() override {}
  void OnWatermark(Timestamp) override {}

 private:
  std::vector<T>* records_;
  std::vector<std::string>* splits_;
  std::string split_;
};

// A collector that captures records in emission order (batch size 1, so records of different
// splits cannot be reordered by buffering), and, when it routes splits, which split each record
// went through and which splits were released.
template <typename T>
class Capture : public internal::SplitRouter<T> {
 public:
  explicit Capture(bool route_splits = false) : main_consumer_(&records, nullptr, "") {
    main_.AddConsumer(&main_consumer_);
    if (route_splits) main_.SetSplitRouter(this);
  }

  Collector<T>& out() { return main_; }

  Collector<T>& ForSplit(std::string_view split_id) override {
    auto& slot = splits_[std::string(split_id)];
    if (slot.collector == nullptr) {
      slot.consumer =
          std::make_unique<CaptureConsumer<T>>(&records, &split_of_record, std::string(split_id));
      slot.collector = std::make_unique<Collector<T>>(1);
      slot.collector->AddConsumer(slot.consumer.get());
    }
    return *slot.collector;
  }
  void ReleaseSplit(std::string_view split_id) override {
    auto it = splits_.find(std::string(split_id));
    if (it == splits_.end()) return;
    it->second.collector->Flush();
    released.push_back(std::string(split_id));
    splits_.erase(it);
  }

  void Flush() {
    main_.Flush();
    for (auto& [id, slot] : splits_) slot.collector->Flush();
  }

  std::vector<T> records;
  std::vector<std::string> split_of_record;
  std::vector<std::string> released;

 private:
  struct Split {
    std::unique_ptr<CaptureConsumer<T>> consumer;
    std::unique_ptr<Collector<T>> collector;
  };
  Collector<T> main_{1};
  CaptureConsumer<T> main_consumer_;
  std::map<std::string, Split> splits_;
};

SourceContext ContextFor(int subtask, int parallelism, internal::TaskServices* services = nullptr) {
  RuntimeContext runtime;
  runtime.operator_name = "Source: test";
  runtime.task_name = absl::StrCat("Source: test (", subtask + 1, "/", parallelism, ")");
  runtime.subtask_index = subtask;
  runtime.parallelism = parallelism;
  return SourceContext(runtime, services);
}

template <typename T>
std::unique_ptr<SourceReader<T>> MakeReader(Source<T>& source, int subtask = 0,
                                            int parallelism = 1) {
  auto reader = source.CreateReader(ContextFor(subtask, parallelism));
  EXPECT_TRUE(reader.ok()) << reader.status();
  return reader.ok() ? *std::move(reader) : nullptr;
}

// Polls `reader` up to `polls` times (-1: until its end) with `max_records` per poll, capturing
// into `capture`. Returns true when the reader reported its end.
template <typename T>
absl::StatusOr<bool> Poll(SourceReader<T>& reader, Capture<T>& capture, int polls,
                          int max_records) {
  for (int i = 0; polls < 0 ? i < 1'000'000 : i < polls; ++i) {
    absl::StatusOr<PollResult> result = reader.PollNext(capture.out(), max_records);
    capture.Flush();
    if (!result.ok()) return result.status();
    if (result->kind == PollResult::Kind::kEndOfInput) return true;
    if (result->kind == PollResult::Kind::kNothingAvailable) {
      absl::SleepFor(std::min(result->retry_after, absl::Milliseconds(1)));
    }
  }
  return false;
}

template <typename T>
std::vector<T> ReadAll(Source<T>& source, int subtask = 0, int parallelism = 1) {
  std::unique_ptr<SourceReader<T>> reader = MakeReader(source, subtask, parallelism);
  Capture<T> capture;
  if (reader == nullptr) return {};
  absl::StatusOr<bool> ended = Poll(*reader, capture, -1, 3);
  EXPECT_TRUE(ended.ok() && *ended) << ended.status();
  return capture.records;
}

template <typename T>
std::vector<T> Concat(std::vector<T> a, const std::vector<T>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The crash-and-resume scenario for subtask `subtask` of `parallelism`: returns the records read
// before the snapshot followed by those read after the restore (to be compared with the input).
// `polls_before` polls precede the snapshot and `polls_lost` follow it.
template <typename T>
std::vector<T> ResumeOnce(Source<T>& source, int subtask, int parallelism, int polls_before,
                          int polls_lost, int max_records) {
  std::unique_ptr<SourceReader<T>> first = MakeReader(source, subtask, parallelism);
  if (first == nullptr) return {};
  Capture<T> before;
  EXPECT_TRUE(Poll(*first, before, polls_before, max_records).ok());
  absl::StatusOr<std::string> state = first->SnapshotState(1);
  EXPECT_TRUE(state.ok()) << state.status();
  Capture<T> lost;
  EXPECT_TRUE(Poll(*first, lost, polls_lost, max_records).ok());
  EXPECT_THAT(lost.records, Not(IsEmpty())) << "the scenario should lose records";
  first->Close();
  first.reset();

  std::unique_ptr<SourceReader<T>> second = MakeReader(source, subtask, parallelism);
  if (second == nullptr || !state.ok()) return {};
  absl::Status restored = second->RestoreState(*state);
  EXPECT_TRUE(restored.ok()) << restored;
  Capture<T> after;
  absl::StatusOr<bool> ended = Poll(*second, after, -1, max_records);
  EXPECT_TRUE(ended.ok() && *ended) << ended.status();
  EXPECT_THAT(before.records, Not(IsEmpty()));
  EXPECT_THAT(after.records, Not(IsEmpty()));
  return Concat(before.records, after.records);
}

// Restoring `state` into a fresh reader of `source` fails with DataLoss carrying `message`.
template <typename T>
void ExpectDataLoss(Source<T>& source, std::string_view state, std::string_view message) {
  std::unique_ptr<SourceReader<T>> reader = MakeReader(source);
  ASSERT_NE(reader, nullptr);
  absl::Status status = reader->RestoreState(state);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr(message));
}

// Corrupted versions of a valid `state`: empty, unknown version, truncated, trailing bytes.
std::vector<std::string> Corruptions(const std::string& state) {
  std::vector<std::string> bad = {"", std::string(1, '\x07') + state.substr(1),
                                  state.substr(0, state.size() - 1), state + "x"};
  return bad;
}

template <typename T>
void ExpectCorruptStatesFail(Source<T>& source, int polls) {
  std::unique_ptr<SourceReader<T>> reader = MakeReader(source);
  ASSERT_NE(reader, nullptr);
  Capture<T> capture;
  ASSERT_TRUE(Poll(*reader, capture, polls, 2).ok());
  absl::StatusOr<std::string> state = reader->SnapshotState(1);
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_FALSE(state->empty());
  EXPECT_EQ((*state)[0], '\x01') << "format version byte";
  for (const std::string& bad : Corruptions(*state)) {
    ExpectDataLoss(source, bad,
                   absl::StrCat(source.Describe(), ": checkpointed position does not decode"));
  }
}

std::vector<int64_t> Range(int64_t from, int64_t to) {  // [from, to]
  std::vector<int64_t> v;
  for (int64_t i = from; i <= to; ++i) v.push_back(i);
  return v;
}

// --- CollectionSource ----------------------------------------------------------------------------

TEST(CollectionSourceCheckpointTest, ResumesRightAfterTheSnapshot) {
  std::vector<std::string> values;
  for (int i = 0; i < 50; ++i) values.push_back(absl::StrCat("v", i));
  CollectionSource<std::string> source(values);
  EXPECT_EQ(ResumeOnce<std::string>(source, 0, 1, 3, 2, 7), values);
  // Snapshot at the very start and at the very end.
  EXPECT_EQ(ReadAll<std::string>(source), values);
  auto reader = MakeReader<std::string>(source);
  Capture<std::string> all;
  ASSERT_TRUE(Poll(*reader, all, -1, 100).ok());
  auto at_end = reader->SnapshotState(2);
  ASSERT_TRUE(at_end.ok());
  auto resumed = MakeReader<std::string>(source);
  ASSERT_TRUE(resumed->RestoreState(*at_end).ok());
  Capture<std::string> nothing;
  EXPECT_EQ(Poll(*resumed, nothing, -1, 100).value_or(false), true);
  EXPECT_THAT(nothing.records, IsEmpty());
}

TEST(CollectionSourceCheckpointTest, CorruptOrForeignStateIsDataLoss) {
  CollectionSource<int> source(std::vector<int>{1, 2, 3, 4, 5});
  ExpectCorruptStatesFail<int>(source, 1);
  ExpectDataLoss<int>(source, internal::EncodeIndexPosition(6), "outside this subtask's range");
  ExpectDataLoss<int>(source, internal::EncodeIndexPosition(-1), "outside this subtask's range");
}

// --- SequenceSource ------------------------------------------------------------------------------

TEST(SequenceSourceCheckpointTest, ResumesAtParallelismOneAndTwo) {
  SequenceSource source(10, 110);
  EXPECT_EQ(ResumeOnce<int64_t>(source, 0, 1, 4, 3, 9), Range(10, 110));
  // Each subtask resumes its own share; together they are the whole sequence.
  std::vector<int64_t> both;
  for (int subtask = 0; subtask < 2; ++subtask) {
    std::vector<int64_t> share = ReadAll<int64_t>(source, subtask, 2);
    EXPECT_EQ(ResumeOnce<int64_t>(source, subtask, 2, 2 + subtask, 2, 5), share);
    both = Concat(both, share);
  }
  EXPECT_EQ(both, Range(10, 110));
}

TEST(SequenceSourceCheckpointTest, CorruptOrForeignStateIsDataLoss) {
  SequenceSource source(1, 20);
  ExpectCorruptStatesFail<int64_t>(source, 1);
  ExpectDataLoss<int64_t>(source, internal::EncodeIndexPosition(0), "Sequence 1..20: ");
  ExpectDataLoss<int64_t>(source, internal::EncodeIndexPosition(22), "outside");
}

// --- GeneratorSource -----------------------------------------------------------------------------

TEST(GeneratorSourceCheckpointTest, BoundedResumesAtParallelismOneAndTwo) {
  GeneratorSource<std::string> source([](int64_t i) { return absl::StrCat("g", i * i); },
                                      {.count = 77});
  std::vector<std::string> full = ReadAll<std::string>(source);
  ASSERT_EQ(full.size(), 77u);
  EXPECT_EQ(ResumeOnce<std::string>(source, 0, 1, 5, 1, 6), full);
  std::vector<std::string> both;
  for (int subtask = 0; subtask < 2; ++subtask) {
    std::vector<std::string> share = ReadAll<std::string>(source, subtask, 2);
    EXPECT_EQ(ResumeOnce<std::string>(source, subtask, 2, 3, 2, 4), share);
    both = Concat(both, share);
  }
  EXPECT_EQ(both, full);
}

TEST(GeneratorSourceCheckpointTest, DeducedGeneratorTypeResumesToo) {
  GeneratorSource source([](int64_t i) { return i * 3; }, {.count = 40});
  EXPECT_EQ(ResumeOnce<int64_t>(source, 1, 2, 2, 1, 3),
            (std::vector<int64_t>{60, 63, 66, 69, 72,  75,  78,  81,  84,  87,
                                  90, 93, 96, 99, 102, 105, 108, 111, 114, 117}));
}

TEST(GeneratorSourceCheckpointTest, UnboundedResumesItsStrideAtParallelismTwo) {
  GeneratorSource<int64_t> source([](int64_t i) { return i; },
                                  {.count = GeneratorSource<int64_t>::kUnbounded});
  for (int subtask = 0; subtask < 2; ++subtask) {
    auto first = MakeReader<int64_t>(source, subtask, 2);
    Capture<int64_t> before;
    ASSERT_TRUE(Poll(*first, before, 3, 5).ok());
    auto state = first->SnapshotState(1);
    ASSERT_TRUE(state.ok());
    Capture<int64_t> lost;
    ASSERT_TRUE(Poll(*first, lost, 2, 5).ok());
    first.reset();
    auto second = MakeReader<int64_t>(source, subtask, 2);
    ASSERT_TRUE(second->RestoreState(*state).ok());
    Capture<int64_t> after;
    ASSERT_TRUE(Poll(*second, after, 3, 5).ok());
    std::vector<int64_t> expected;
    for (int64_t i = subtask; expected.size() < 30; i += 2) expected.push_back(i);
    EXPECT_EQ(Concat(before.records, after.records), expected) << "subtask " << subtask;
  }
  // Subtask 0's position (an even index) does not belong to subtask 1.
  auto reader = MakeReader<int64_t>(source, 1, 2);
  absl::Status status = reader->RestoreState(internal::EncodeIndexPosition(4));
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
}

TEST(GeneratorSourceCheckpointTest, CorruptStateIsDataLoss) {
  GeneratorSource<int> source([](int64_t i) { return static_cast<int>(i); }, {.count = 10});
  ExpectCorruptStatesFail<int>(source, 1);
  ExpectDataLoss<int>(source, internal::EncodeIndexPosition(11), "Generator Source: ");
}

// --- TextFileSource ------------------------------------------------------------------------------

TEST(TextFileSourceCheckpointTest, ResumesAfterACrlfLine) {
  TempDir dir;
  WriteFile(dir.Path("in.txt"), "alpha\r\nbeta\r\n\r\ngamma\rinside\nfive\r\nsix\nlast");
  TextFileSource source(dir.Path("in.txt"));
  std::vector<std::string> full = ReadAll<std::string>(source);
  EXPECT_THAT(full, ElementsAre("alpha", "beta", "", "gamma\rinside", "five", "six", "last"));
  // Snapshot after "beta\r\n" (2 polls of 1 line), lose "" and "gamma\rinside".
  EXPECT_EQ(ResumeOnce<std::string>(source, 0, 1, 2, 2, 1), full);
  // Snapshot after "five\r\n".
  EXPECT_EQ(ResumeOnce<std::string>(source, 0, 1, 5, 1, 1), full);
}

TEST(TextFileSourceCheckpointTest, EveryCutOfABigFileResumesExactly) {
  // Several 64 KiB chunks with lines cut at chunk boundaries: positions after buffer compaction.
  TempDir dir;
  std::vector<std::string> expected;
  std::string content;
  for (int i = 0; i < 20000; ++i) {
    expected.push_back(absl::StrCat("line-", i, i % 7 == 0 ? "-with-some-more-text" : ""));
    content += expected.back();
    content += i % 3 == 0 ? "\r\n" : "\n";
  }
  WriteFile(dir.Path("big.txt"), content);
  TextFileSource source(dir.Path("big.txt"));
  for (int polls : {1, 9, 17, 33}) {
    EXPECT_EQ(ResumeOnce<std::string>(source, 0, 1, polls, 3, 487), expected) << polls;
  }
}

TEST(TextFileSourceCheckpointTest, LineReaderResumesAtEveryLineWithTinyChunks) {
  // 3-byte chunks: "\r\n" and lines straddle chunk boundaries; every line is a snapshot point.
  TempDir dir;
  const std::string path = dir.Path("in.txt");
  WriteFile(path, "ab\r\ncdefgh\r\n\r\ni\rj\nk");
  const std::vector<std::string> all = {"ab", "cdefgh", "", "i\rj", "k"};
  for (size_t cut = 0; cut <= all.size(); ++cut) {
    auto reader = internal::LineFileReader::Open(path, 3);
    ASSERT_TRUE(reader.ok()) << reader.status();
    std::vector<std::string> lines;
    while (lines.size() < cut) {
      std::string_view line;
      if ((*reader)->NextLine(&line)) {
        lines.emplace_back(line);
      } else {
        ASSERT_TRUE((*reader)->Fill().ok());
      }
    }
    std::string state = internal::EncodeFilePosition(**reader);
    auto resumed = internal::LineFileReader::Open(path, 3);
    ASSERT_TRUE(resumed.ok());
    ASSERT_TRUE(internal::RestoreFilePosition(state, "test", **resumed).ok());
    std::vector<int64_t> numbers;
    for (int guard = 0; guard < 100 && !(*resumed)->at_end(); ++guard) {
      std::string_view line;
      while ((*resumed)->NextLine(&line)) {
        lines.emplace_back(line);
        numbers.push_back((*resumed)->line_number());
      }
      ASSERT_TRUE((*resumed)->Fill().ok());
    }
    EXPECT_EQ(lines, all) << "cut after " << cut << " lines";
    std::vector<int64_t> expected_numbers;
    for (size_t n = cut + 1; n <= all.size(); ++n)
      expected_numbers.push_back(static_cast<int64_t>(n));
    EXPECT_EQ(numbers, expected_numbers) << "cut after " << cut << " lines";
  }
}

TEST(TextFileSourceCheckpointTest, ShorterFileIsDataLossNamingIt) {
  TempDir dir;
  const std::string path = dir.Path("in.txt");
  WriteFile(path, "one\ntwo\nthree\nfour\n");
  TextFileSource source(path);
  auto reader = MakeReader<std::string>(source);
  Capture<std::string> capture;
  ASSERT_TRUE(Poll(*reader, capture, 3, 1).ok());
  auto state = reader->SnapshotState(1);
  ASSERT_TRUE(state.ok());
  reader.reset();
  WriteFile(path, "one\n");
  ExpectDataLoss<std::string>(source, *state, path);
}

TEST(TextFileSourceCheckpointTest, CorruptStateIsDataLoss) {
  TempDir dir;
  WriteFile(dir.Path("in.txt"), "one\ntwo\nthree\n");
  TextFileSource source(dir.Path("in.txt"));
  ExpectCorruptStatesFail<std::string>(source, 1);
}

// --- CsvFileSource -------------------------------------------------------------------------------

struct Row {
  std::string name;
  int count = 0;
  bool operator==(const Row&) const = default;
};

absl::StatusOr<Row> ParseRow(const std::vector<std::string>& fields) {
  if (fields.size() != 2) return absl::InvalidArgumentError("expected 2 fields");
  Row row{fields[0], 0};
  if (!absl::SimpleAtoi(fields[1], &row.count)) {
    return absl::InvalidArgumentError(absl::StrCat("not a number: ", fields[1]));
  }
  return row;
}

TEST(CsvFileSourceCheckpointTest, ResumesAfterACrlfLineAndKeepsLineNumbersInErrors) {
  TempDir dir;
  const std::string path = dir.Path("rows.csv");
  // Line 1 header, 2-4 good (CRLF), 5 blank, 6 good, 7 bad.
  WriteFile(path, "name,count\r\na,1\r\nb,2\r\n\"c,d\",3\r\n\r\ne,5\nf,oops\ng,7\n");
  CsvFileSource<Row> source(path, ParseRow, {.skip_header = true});

  auto first = MakeReader<Row>(source);
  Capture<Row> before;
  ASSERT_TRUE(Poll(*first, before, 3, 1).ok());  // the header, a, b
  EXPECT_THAT(before.records, ElementsAre(Row{"a", 1}, Row{"b", 2}));
  auto state = first->SnapshotState(1);
  ASSERT_TRUE(state.ok()) << state.status();
  Capture<Row> lost;
  ASSERT_TRUE(Poll(*first, lost, 1, 1).ok());
  EXPECT_THAT(lost.records, ElementsAre(Row{"c,d", 3}));
  first.reset();

  auto second = MakeReader<Row>(source);
  ASSERT_TRUE(second->RestoreState(*state).ok());
  Capture<Row> after;
  absl::StatusOr<bool> ended = Poll(*second, after, -1, 1);
  ASSERT_FALSE(ended.ok());
  EXPECT_EQ(ended.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ended.status().message(), HasSubstr(absl::StrCat(path, ":7: not a number: oops")));
  EXPECT_THAT(Concat(before.records, after.records),
              ElementsAre(Row{"a", 1}, Row{"b", 2}, Row{"c,d", 3}, Row{"e", 5}));
}

TEST(CsvFileSourceCheckpointTest, FullInputAndHeaderSkippedOnlyOnce) {
  TempDir dir;
  const std::string path = dir.Path("rows.csv");
  std::string content = "name,count\r\n";
  std::vector<Row> expected;
  for (int i = 0; i < 40; ++i) {
    expected.push_back(Row{absl::StrCat("n", i), i});
    absl::StrAppend(&content, "n", i, ",", i, i % 2 == 0 ? "\r\n" : "\n");
  }
  WriteFile(path, content);
  CsvFileSource<Row> source(path, ParseRow, {.skip_header = true});
  EXPECT_EQ(ResumeOnce<Row>(source, 0, 1, 4, 2, 3), expected);
  // A snapshot taken before anything was read restores to the start: the header is still skipped.
  auto fresh = MakeReader<Row>(source);
  auto at_start = fresh->SnapshotState(1);
  ASSERT_TRUE(at_start.ok());
  auto resumed = MakeReader<Row>(source);
  ASSERT_TRUE(resumed->RestoreState(*at_start).ok());
  Capture<Row> all;
  ASSERT_TRUE(Poll(*resumed, all, -1, 5).ok());
  EXPECT_EQ(all.records, expected);
}

TEST(CsvFileSourceCheckpointTest, CorruptStateAndShorterFileAreDataLoss) {
  TempDir dir;
  const std::string path = dir.Path("rows.csv");
  WriteFile(path, "a,1\nb,2\nc,3\n");
  CsvFileSource<Row> source(path, ParseRow);
  ExpectCorruptStatesFail<Row>(source, 2);
  auto reader = MakeReader<Row>(source);
  Capture<Row> capture;
  ASSERT_TRUE(Poll(*reader, capture, 2, 1).ok());
  auto state = reader->SnapshotState(1);
  ASSERT_TRUE(state.ok());
  WriteFile(path, "a,1\n");
  ExpectDataLoss<Row>(source, *state, path);
}

// --- DirectorySource -----------------------------------------------------------------------------

// Five lines per file: "<name>:1" ... "<name>:5"; the 2nd and 4th end with "\r\n".
std::vector<std::string> WriteDirectoryFile(const TempDir& dir, const std::string& name) {
  std::vector<std::string> lines;
  std::string content;
  for (int i = 1; i <= 5; ++i) {
    lines.push_back(absl::StrCat(name, ":", i));
    absl::StrAppend(&content, lines.back(), i % 2 == 0 ? "\r\n" : "\n");
  }
  WriteFile(dir.Path(name), content);
  return lines;
}

TEST(DirectorySourceCheckpointTest, SnapshotInTheMiddleOfTheSecondOfThreeFiles) {
  TempDir dir;
  std::vector<std::string> full;
  for (const char* name : {"a.txt", "b.txt", "c.txt"}) {
    full = Concat(full, WriteDirectoryFile(dir, name));
  }
  DirectorySource source(dir.path().string());

  auto first = MakeReader<std::string>(source);
  Capture<std::string> before(/*route_splits=*/true);
  ASSERT_TRUE(Poll(*first, before, 3, 2).ok());  // a:1-2, a:3-4, a:5 (released) and b:1
  EXPECT_THAT(before.records,
              ElementsAre("a.txt:1", "a.txt:2", "a.txt:3", "a.txt:4", "a.txt:5", "b.txt:1"));
  EXPECT_THAT(before.released, ElementsAre("a.txt"));
  auto state = first->SnapshotState(1);
  ASSERT_TRUE(state.ok()) << state.status();
  Capture<std::string> lost(true);
  ASSERT_TRUE(Poll(*first, lost, 2, 2).ok());
  EXPECT_THAT(lost.records, ElementsAre("b.txt:2", "b.txt:3", "b.txt:4", "b.txt:5"));
  first->Close();
  first.reset();

  auto second = MakeReader<std::string>(source);
  ASSERT_TRUE(second->RestoreState(*state).ok());
  Capture<std::string> after(true);
  absl::StatusOr<bool> ended = Poll(*second, after, -1, 2);
  ASSERT_TRUE(ended.ok() && *ended) << ended.status();
  EXPECT_EQ(Concat(before.records, after.records), full);
  // The finished file is not re-emitted; the current one continues in its own split.
  EXPECT_THAT(after.split_of_record, ElementsAre("b.txt", "b.txt", "b.txt", "b.txt", "c.txt",
                                                 "c.txt", "c.txt", "c.txt", "c.txt"));
  EXPECT_THAT(after.released, ElementsAre("b.txt", "c.txt"));
}

TEST(DirectorySourceCheckpointTest, ResumesAtParallelismTwo) {
  TempDir dir;
  std::vector<std::string> names;
  for (int i = 0; i < 8; ++i) names.push_back(absl::StrCat("file-", i, ".txt"));
  for (const std::string& name : names) WriteDirectoryFile(dir, name);
  DirectorySource source(dir.path().string());
  size_t total = 0;
  int resumed = 0;
  for (int subtask = 0; subtask < 2; ++subtask) {
    std::vector<std::string> share = ReadAll<std::string>(source, subtask, 2);
    total += share.size();
    if (share.size() < 20) continue;  // too few files hash here for a meaningful scenario
    EXPECT_EQ(ResumeOnce<std::string>(source, subtask, 2, 3, 2, 3), share) << subtask;
    ++resumed;
  }
  EXPECT_EQ(total, 40u);
  EXPECT_GE(resumed, 1);
}

TEST(DirectorySourceCheckpointTest, ContinuousModeScansForNewFilesAfterRestore) {
  TempDir dir;
  std::vector<std::string> full =
      Concat(WriteDirectoryFile(dir, "a.txt"), WriteDirectoryFile(dir, "b.txt"));
  DirectorySource source(dir.path().string(), {.mode = DirectorySourceOptions::kProcessContinuously,
                                               .interval = absl::Milliseconds(1)});
  auto first = MakeReader<std::string>(source);
  Capture<std::string> before(true);
  ASSERT_TRUE(Poll(*first, before, 3, 2).ok());
  auto state = first->SnapshotState(1);
  ASSERT_TRUE(state.ok());
  first.reset();

  full = Concat(full, WriteDirectoryFile(dir, "c.txt"));
  auto second = MakeReader<std::string>(source);
  ASSERT_TRUE(second->RestoreState(*state).ok());
  Capture<std::string> after(true);
  for (int i = 0; i < 10'000 && before.records.size() + after.records.size() < full.size(); ++i) {
    ASSERT_TRUE(Poll(*second, after, 1, 2).ok());
  }
  EXPECT_EQ(Concat(before.records, after.records), full);
}

TEST(DirectorySourceCheckpointTest, ChangedFileAndCorruptStateAreDataLoss) {
  TempDir dir;
  WriteDirectoryFile(dir, "a.txt");
  WriteDirectoryFile(dir, "b.txt");
  DirectorySource source(dir.path().string());
  ExpectCorruptStatesFail<std::string>(source, 4);

  auto reader = MakeReader<std::string>(source);
  Capture<std::string> capture;
  ASSERT_TRUE(Poll(*reader, capture, 4, 2).ok());  // in the middle of b.txt
  auto state = reader->SnapshotState(1);
  ASSERT_TRUE(state.ok());
  reader.reset();
  WriteFile(dir.Path("b.txt"), "b");
  ExpectDataLoss<std::string>(source, *state, dir.Path("b.txt"));
}

// --- SocketTextSource ----------------------------------------------------------------------------

// Task services whose executor runs on a thread of the test.
class TestServices : public internal::TaskServices {
 public:
  TestServices() : work_(io_.get_executor()), thread_([this] { io_.run(); }) {}
  ~TestServices() override {
    work_.reset();
    thread_.join();
  }
  void Wake() override {}
  boost::asio::any_io_executor executor() override { return io_.get_executor(); }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
};

TEST(SocketTextSourceCheckpointTest, StateIsEmptyAndRestoreConnectsAfresh) {
  TestServices services;
  LocalServer server;
  SocketTextSource source("127.0.0.1", server.port());

  auto created = source.CreateReader(ContextFor(0, 1, &services));
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<SourceReader<std::string>> first = *std::move(created);
  // Nothing is connected yet: checkpointing needs no connection.
  auto empty = first->SnapshotState(1);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(*empty, "");
  Capture<std::string> before;
  ASSERT_TRUE(Poll(*first, before, 1, 10).ok());  // starts connecting
  ASSERT_TRUE(server.Accept());
  ASSERT_TRUE(server.Send("a\nb\n"));
  for (int i = 0; i < 5000 && before.records.size() < 2; ++i) {
    ASSERT_TRUE(Poll(*first, before, 1, 10).ok());
  }
  EXPECT_THAT(before.records, ElementsAre("a", "b"));
  auto state = first->SnapshotState(2);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(*state, "");
  first->Close();
  first.reset();
  server.CloseConnection();

  // Restoring reconnects: the new connection's data is read, nothing is replayed.
  auto recreated = source.CreateReader(ContextFor(0, 1, &services));
  ASSERT_TRUE(recreated.ok());
  std::unique_ptr<SourceReader<std::string>> second = *std::move(recreated);
  ASSERT_TRUE(second->RestoreState(*state).ok());
  Capture<std::string> after;
  ASSERT_TRUE(Poll(*second, after, 1, 10).ok());
  ASSERT_TRUE(server.Accept());
  ASSERT_TRUE(server.Send("c\nlast"));
  server.CloseConnection();
  absl::StatusOr<bool> ended = Poll(*second, after, 100'000, 10);
  ASSERT_TRUE(ended.ok() && *ended) << ended.status();
  EXPECT_THAT(after.records, ElementsAre("c", "last"));
}

TEST(SocketTextSourceCheckpointTest, RestoreAcceptsAnyStateWithoutConnecting) {
  TestServices services;
  // Nothing listens here: RestoreState must not try to connect.
  SocketTextSource source("127.0.0.1", connectors_test::UnusedPort());
  for (std::string_view state : {std::string_view(""), std::string_view("\x01garbage")}) {
    auto reader = source.CreateReader(ContextFor(0, 1, &services));
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_TRUE((*reader)->RestoreState(state).ok());
    (*reader)->Close();
  }
}

}  // namespace
}  // namespace sluice
