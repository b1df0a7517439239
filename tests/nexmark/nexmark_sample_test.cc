// The Nexmark suite on the shared sample (/work/shared/nexmark/sample): every checked query runs
// through the engine at parallelism 1 and 2, on the HashMap backend and (stateful queries) on
// RocksDB, and its result must equal expected/qN.csv as a multiset of lines. Also: the runner's
// error messages, and the generator giving the same stream at every parallelism.
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "event_io.h"
#include "queries.h"

namespace nexmark {
namespace {

const std::string kSample = NEXMARK_SAMPLE_DIR;

std::vector<std::string> SortedLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return lines;
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

void ExpectSampleDir() {
  ASSERT_TRUE(std::filesystem::exists(kSample + "/events.csv"))
      << "the Nexmark sample is missing: expected " << kSample
      << "/events.csv (the shared directory must be checked out next to the repository)";
}

struct Case {
  std::string query;
  int parallelism;
  bool rocksdb;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.query << " at parallelism " << c.parallelism
      << (c.rocksdb ? " on RocksDB" : " on HashMap");
}

std::string Name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.query + "_p" + std::to_string(info.param.parallelism) +
         (info.param.rocksdb ? "_rocksdb" : "_hashmap");
}

class SampleTest : public ::testing::TestWithParam<Case> {};

TEST_P(SampleTest, MatchesExpectedMultiset) {
  ExpectSampleDir();
  const Case& c = GetParam();
  RunOptions options;
  options.query = c.query;
  options.input = kSample + "/events.csv";
  options.output = TempPath("nexmark-" + Name({c, 0}) + ".csv");
  options.parallelism = c.parallelism;
  if (c.rocksdb) {
    options.state_backend = sluice::StateBackendKind::kRocksDb;
    options.rocksdb_dir = TempPath("nexmark-rocksdb-" + Name({c, 0}));
  }
  absl::StatusOr<RunResult> r = RunQuery(options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->events, 20000);
  std::vector<std::string> expected = SortedLines(kSample + "/expected/" + c.query + ".csv");
  ASSERT_FALSE(expected.empty());
  std::vector<std::string> actual = SortedLines(options.output);
  EXPECT_EQ(actual.size(), expected.size());
  EXPECT_TRUE(actual == expected) << c.query << ": the result differs from expected/" << c.query
                                  << ".csv (as multisets); see " << options.output;
  EXPECT_EQ(r->results >= static_cast<int64_t>(expected.size()), true);
  std::filesystem::remove_all(options.rocksdb_dir);
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (const QueryInfo& q : Queries()) {
    if (!q.checked) continue;
    for (int p : {1, 2}) {
      cases.push_back({q.name, p, false});
      if (!q.stateless) cases.push_back({q.name, p, true});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Nexmark, SampleTest, ::testing::ValuesIn(Cases()), Name);

// --- The runner binary -------------------------------------------------------------------------

struct RunnerRun {
  int exit_code;
  std::string output;  // stdout and stderr
};

RunnerRun RunRunner(const std::string& args) {
  std::string cmd = std::string(NEXMARK_RUNNER) + " " + args + " 2>&1";
  RunnerRun run{-1, ""};
  std::FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return run;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) run.output.append(buf, n);
  int status = pclose(p);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

TEST(RunnerErrors, UnknownFlag) {
  RunnerRun r = RunRunner("--query q0 --events 10 --bogus 3");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, ::testing::HasSubstr("sluice-nexmark: unknown flag '--bogus'"));
  EXPECT_THAT(r.output, ::testing::HasSubstr("usage: sluice-nexmark"));
}

TEST(RunnerErrors, BadValues) {
  RunnerRun r = RunRunner("--query q99 --events 10");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, ::testing::HasSubstr("--query: unknown query 'q99'"));
  r = RunRunner("--query q0 --events ten");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, ::testing::HasSubstr("--events: expected an integer >= 0, got 'ten'"));
  r = RunRunner("--query q5 --events 10 --state-backend memory");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output,
              ::testing::HasSubstr("--state-backend: expected hashmap or rocksdb, got 'memory'"));
  r = RunRunner("--query q5 --events 10 --input x.csv");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, ::testing::HasSubstr("give exactly one of --events N and --input FILE"));
  r = RunRunner("--query q5 --events 10 --checkpoint-interval-ms 100");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, ::testing::HasSubstr("--checkpoint-interval-ms needs --checkpoint-dir"));
}

TEST(RunnerErrors, MissingInputFile) {
  std::string missing = TempPath("no-such-events.csv");
  RunnerRun r = RunRunner("--query q5 --input " + missing);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, ::testing::HasSubstr("cannot open event file " + missing +
                                             ": No such file or directory"));
}

TEST(RunnerErrors, MalformedLineNamesFileAndLine) {
  std::string path = TempPath("malformed-events.csv");
  {
    std::ofstream out(path);
    out << "P,1000,Ann Lee,a@b.com,1234,Boise,ID,1700000000000,\n"
        << "B,1000,1000,12,Baidu,nx.io/1,1700000000001,\n"
        << "B,1000,1000,twelve,Baidu,nx.io/1,1700000000002,\n";
  }
  RunnerRun r = RunRunner("--query q0 --input " + path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output,
              ::testing::HasSubstr(path + ":3: field 4 (price): expected a non-negative integer, "
                                          "got 'twelve'"));
  {
    std::ofstream out(path);
    out << "B,1000,1000,12,Baidu,nx.io/1,1700000000001,\nX,1\n";
  }
  r = RunRunner("--query q5 --input " + path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, ::testing::HasSubstr(path + ":2: unknown event tag 'X'"));
  {
    std::ofstream out(path);
    out << "A,1000,item,desc,1,2,1700000000000,1700000001000,1000\n";
  }
  r = RunRunner("--query q9 --input " + path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, ::testing::HasSubstr(path + ":1: auction line: expected 11 fields, got 9"));
}

// --- Generator ---------------------------------------------------------------------------------

// Event n depends only on n: the generated stream, and so every query's result, is the same at
// every parallelism, and the same as the stream written to a file and read back.
TEST(Generator, SameResultAtEveryParallelismAndThroughAFile) {
  GeneratorConfig config;
  config.events = 50'000;
  config.event_rate = 1000;  // 50 s of event time: many windows
  config.max_delay_ms = 3000;
  std::string file = TempPath("generated-events.csv");
  ASSERT_TRUE(WriteEventFile(config, file).ok());
  for (const char* q : {"q3", "q5", "q7", "q8", "q9", "q11"}) {
    std::vector<std::vector<std::string>> results;
    for (int variant = 0; variant < 3; ++variant) {
      RunOptions options;
      options.query = q;
      options.generator = config;
      if (variant == 2) options.input = file;
      options.parallelism = variant == 1 ? 2 : 1;
      options.output = TempPath(std::string("generated-") + q + ".csv");
      absl::StatusOr<RunResult> r = RunQuery(options);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->events, 50'000);
      results.push_back(SortedLines(options.output));
    }
    EXPECT_FALSE(results[0].empty()) << q;
    EXPECT_TRUE(results[0] == results[1]) << q << ": parallelism 1 and 2 differ";
    EXPECT_TRUE(results[0] == results[2]) << q << ": generator and file differ";
  }
}

TEST(Generator, ProportionsAndIds) {
  GeneratorConfig config;
  Generator gen(config);
  int counts[3] = {0, 0, 0};
  int64_t next_person = 1000, next_auction = 1000;
  for (int64_t n = 0; n < 5000; ++n) {
    Event e = gen.Generate(n);
    ++counts[e.index()];
    if (e.index() == 0) {
      EXPECT_EQ(std::get<0>(e).id, next_person++);
    }
    if (e.index() == 1) {
      EXPECT_EQ(std::get<1>(e).id, next_auction++);
    }
    if (e.index() == 2) {
      EXPECT_LT(std::get<2>(e).auction, next_auction + 10);  // AUCTION_ID_LEAD
    }
  }
  EXPECT_EQ(counts[0], 100);
  EXPECT_EQ(counts[1], 300);
  EXPECT_EQ(counts[2], 4600);
}

TEST(EventFormat, RoundTrip) {
  GeneratorConfig config;
  Generator gen(config);
  for (int64_t n = 0; n < 200; ++n) {
    Event e = gen.Generate(n);
    std::string line;
    AppendEventLine(e, &line);
    Event back;
    ASSERT_TRUE(ParseEventLine(std::string_view(line).substr(0, line.size() - 1), &back).ok())
        << line;
    std::string again;
    AppendEventLine(back, &again);
    EXPECT_EQ(again, line);
  }
}

// Checkpoints hold events through their serializers: every event of every kind comes back equal
// (the text lines are equal), each text costs its length plus one byte, and truncated or
// malformed bytes are refused.
TEST(EventSerializer, RoundTripCompactAndChecked) {
  GeneratorConfig config;
  Generator gen(config);
  int kinds[3] = {0, 0, 0};
  for (int64_t n = 0; n < 500; ++n) {
    const Event e = gen.Generate(n);
    ++kinds[e.index()];
    std::string bytes;
    sluice::Serializer<Event>::Write(e, &bytes);
    sluice::ByteReader in(bytes);
    Event back;
    ASSERT_TRUE(sluice::Serializer<Event>::Read(in, &back)) << n;
    EXPECT_TRUE(in.empty()) << n;
    std::string line, again;
    AppendEventLine(e, &line);
    AppendEventLine(back, &again);
    EXPECT_EQ(again, line);
    size_t texts = 0;
    std::visit(
        [&](const auto& v) {
          if constexpr (std::is_same_v<std::decay_t<decltype(v)>, Person>) {
            texts = 6 + v.name.size + v.email.size + v.credit_card.size + v.city.size +
                    v.state.size + v.extra.size;
            EXPECT_EQ(bytes.size(), 1 + 2 * 8 + texts) << line;
          } else if constexpr (std::is_same_v<std::decay_t<decltype(v)>, Auction>) {
            texts = 3 + v.item_name.size + v.description.size + v.extra.size;
            EXPECT_EQ(bytes.size(), 1 + 7 * 8 + texts) << line;
          } else {
            texts = 3 + v.channel.size + v.url.size + v.extra.size;
            EXPECT_EQ(bytes.size(), 1 + 4 * 8 + texts) << line;
          }
        },
        e);
    for (size_t cut = 0; cut < bytes.size(); cut += 7) {
      sluice::ByteReader truncated(std::string_view(bytes).substr(0, cut));
      EXPECT_FALSE(sluice::Serializer<Event>::Read(truncated, &back)) << n << " cut at " << cut;
    }
  }
  EXPECT_GT(kinds[0], 0);
  EXPECT_GT(kinds[1], 0);
  EXPECT_GT(kinds[2], 0);
  sluice::ByteReader bad_kind(std::string_view("\x03", 1));
  Event back;
  EXPECT_FALSE(sluice::Serializer<Event>::Read(bad_kind, &back));
  // A text longer than its capacity (a state's FixedString<7> claiming 8 bytes).
  std::string bytes;
  sluice::Serializer<Event>::Write(Event(Person{}), &bytes);
  bytes[1 + 2 * 8 + 4] = 8;  // name, email, credit card, city: empty; then the state's length
  bytes.append(std::string(8, 'x'));
  sluice::ByteReader too_long(bytes);
  EXPECT_FALSE(sluice::Serializer<Event>::Read(too_long, &back));
}

}  // namespace
}  // namespace nexmark
