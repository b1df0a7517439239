// The Nexmark suite checked against itself, from nothing but this repository. Two event files are
// written by the test: one from the project's generator (out-of-order events, many windows) and a
// small hand-written one with the corner cases (bids on window boundaries and at an auction's
// start and expiry, ties, sessions exactly one gap apart, empty strings, out-of-order arrivals).
// Every checked query runs through the engine at parallelism 1 and 2, on HashMap and (stateful
// queries) on RocksDB, and its result must equal, as a multiset of lines, the result of the COST
// program's loops (cost_queries.h, written without the engine) on the same file. Both must be
// non-empty, and on the corner file both must give the results worked out by hand below, so a
// mistake the two implementations share cannot pass unnoticed. Also: the runner's error
// messages, the generator, the event line format and the event serializers.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "cost_queries.h"
#include "event_io.h"
#include "queries.h"

namespace nexmark {
namespace {

std::vector<std::string> SortedLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return lines;
}

// Every file the test writes is in a directory of its own process (ctest runs the tests as
// parallel processes), removed when the process's tests are done, unless one failed.
const std::filesystem::path& ScratchDir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path d =
        std::filesystem::path(::testing::TempDir()) / ("nexmark-test-" + std::to_string(getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

class RemoveScratchDir : public ::testing::Environment {
 public:
  void TearDown() override {
    if (!::testing::UnitTest::GetInstance()->Passed()) {
      std::printf("nexmark_sample_test: the files of the failed run are in %s\n",
                  ScratchDir().c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(ScratchDir(), ec);
  }
};
::testing::Environment* const kRemoveScratchDir =
    ::testing::AddGlobalTestEnvironment(new RemoveScratchDir);

std::string TempPath(const std::string& name) { return (ScratchDir() / name).string(); }

// --- The event files ---------------------------------------------------------------------------

// The generated file: 30 000 events over 150 s of event time (15 tumbling and 75 sliding windows,
// auctions lasting up to ~17 s), 10 % of them up to 3 s out of order.
GeneratorConfig GeneratedConfig() {
  GeneratorConfig config;
  config.events = 30'000;
  config.event_rate = 200;
  config.seed = 7;
  config.max_delay_ms = 3000;
  return config;
}

// The corner file's times are written "@ms", ms after kT0 (a multiple of 10 s).
constexpr int64_t kT0 = 1'700'000'000'000;
std::string At(int64_t ms) { return std::to_string(kT0 + ms); }

// Replaces every "@<ms>" by At(ms) (an '@' before anything else, as in an email, stays).
std::string Absolute(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    bool time = text[i] == '@' && i + 1 < text.size() &&
                (std::isdigit(static_cast<unsigned char>(text[i + 1])) || text[i + 1] == '-');
    if (!time) {
      out.push_back(text[i]);
      continue;
    }
    size_t end = text.find_first_not_of("-0123456789", i + 1);
    if (end == std::string::npos) end = text.size();
    out += At(std::stoll(text.substr(i + 1, end - i - 1)));
    i = end - 1;
  }
  return out;
}

// Arrival order is line order. No event is late: each is less than 4 s behind the latest time
// before it, and the two halves of a session arrive before the watermark closes the first.
const char kCornerEvents[] =
    // Sellers in ID, OR (every text empty), TX (not a q3 state).
    "P,1,Ann Lee,ann@x.io,1111 2222,Boise,ID,@0,\n"
    "P,2,,,,,OR,@100,\n"
    "P,3,Cy Ray,cy@x.io,3333,Austin,TX,@200,vip\n"
    // A bid 1 ms before its auction starts, read before the auction.
    "B,101,9,999,Baidu,nx.io/a,@999,\n"
    "A,101,lamp,,1,2,@1000,@5000,1,10,\n"
    "B,101,7,50,Apple,,@1000,x\n"  // at the auction's start
    "A,102,vase,blue vase,5,10,@1500,@8000,2,10,\n"
    // An auction before its seller's person event; it expires when it starts.
    "A,106,pen,,1,1,@2000,@2000,5,10,\n"
    "A,103,cup,,1,1,@2000,@9000,3,10,\n"  // no bids
    "B,106,11,6,Google,nx.io/b,@2000,\n"
    "P,5,Eve Poe,eve@x.io,5555,Fresno,CA,@2500,\n"
    // Auction 102: the same price twice; the earlier bid (read later) wins over the lower bidder.
    "B,102,7,301,,,@3000,\n"
    "B,102,9,301,Baidu,nx.io/c,@2500,\n"
    // A bid read before its auction, inside its bounds; the auction is 500 ms out of order.
    "B,104,8,40,Apple,nx.io/d,@3500,\n"
    "A,104,rug,,1,1,@3000,@12000,1,11,\n"
    // Auction 101: two bids at its expiry with the same price and time (the lower bidder wins),
    // one 1 ms after it.
    "B,101,8,80,Apple,nx.io/e,@5000,\n"
    "B,101,6,80,Apple,nx.io/f,@5000,\n"
    "B,101,9,999,Baidu,nx.io/g,@5001,\n"
    "B,102,7,200,Apple,nx.io/h,@6000,\n"
    // The last millisecond of the first 10 s window: a person whose auction falls in the next
    // window, and the third bid of price 999 in the window (after auction 102's expiry).
    "P,4,Di Fox,di@x.io,4444,Fresno,CA,@9999,\n"
    "B,102,12,999,Apple,nx.io/i,@9999,\n"
    "A,105,hat,,1,1,@10000,@20000,4,10,\n"
    "B,105,13,5000,Apple,nx.io/j,@10000,\n"  // on the window boundary
    "B,102,7,1,Apple,nx.io/k,@7000,\n"       // 3 s out of order
    "B,104,7,60,Apple,nx.io/l,@12000,\n"     // at auction 104's expiry
    "B,123,30,77,Apple,nx.io/m,@13000,\n"
    "B,123,31,78,Apple,nx.io/n,@14000,\n"
    "B,246,30,5,Apple,nx.io/o,@15000,\n"
    "B,124,32,0,Apple,nx.io/p,@16000,\n"
    "B,124,32,1001,Apple,nx.io/q,@16500,\n"
    // Sessions: bidder 20's bids exactly 10 s apart (one session), bidder 21's 10.001 s (two).
    "B,105,20,1,,,@20000,\n"
    "B,105,21,1,,,@20000,\n"
    "B,105,20,1,,,@30000,\n"
    "B,105,21,1,,,@30001,\n"
    // Bidder 22: two sessions 12 s apart until a bid 3 s out of order joins them; bidder 24's
    // bid is 3.999 s behind the latest time.
    "B,110,22,1,,,@40000,\n"
    "B,110,22,1,,,@52000,\n"
    "B,110,22,3,,,@49000,\n"
    "B,110,24,1,,,@48001,\n";

constexpr int64_t kCornerEventCount = 38;

struct EventFile {
  std::string path;
  int64_t events;
};

// "generated" or "corner", written once per test binary run.
const EventFile& File(const std::string& name) {
  static const std::map<std::string, EventFile> files = [] {
    std::map<std::string, EventFile> f;
    GeneratorConfig config = GeneratedConfig();
    f["generated"] = {TempPath("nexmark-generated-events.csv"), config.events};
    absl::Status s = WriteEventFile(config, f["generated"].path);
    EXPECT_TRUE(s.ok()) << s;
    f["corner"] = {TempPath("nexmark-corner-events.csv"), kCornerEventCount};
    std::ofstream(f["corner"].path) << Absolute(kCornerEvents);
    return f;
  }();
  return files.at(name);
}

// The COST program's result on an event file, sorted (computed once per file and query).
const std::vector<std::string>& CostLines(const std::string& file, const std::string& query) {
  static std::map<std::pair<std::string, std::string>, std::vector<std::string>> cache;
  auto it = cache.find({file, query});
  if (it != cache.end()) return it->second;
  CostOptions options;
  options.query = query;
  options.input = File(file).path;
  options.output = TempPath("nexmark-cost-" + file + "-" + query + ".csv");
  absl::StatusOr<CostResult> r = RunCost(options);
  EXPECT_TRUE(r.ok()) << r.status();
  if (r.ok()) {
    EXPECT_EQ(r->events, File(file).events);
  }
  return cache[{file, query}] = SortedLines(options.output);
}

// Up to five lines of each side that the other lacks (both sorted).
std::string Difference(const std::vector<std::string>& engine,
                       const std::vector<std::string>& cost) {
  std::vector<std::string> only_engine, only_cost;
  std::set_difference(engine.begin(), engine.end(), cost.begin(), cost.end(),
                      std::back_inserter(only_engine));
  std::set_difference(cost.begin(), cost.end(), engine.begin(), engine.end(),
                      std::back_inserter(only_cost));
  std::ostringstream out;
  out << only_engine.size() << " line(s) only from the engine, " << only_cost.size()
      << " only from COST";
  for (size_t i = 0; i < only_engine.size() && i < 5; ++i) out << "\n  engine: " << only_engine[i];
  for (size_t i = 0; i < only_cost.size() && i < 5; ++i) out << "\n  COST:   " << only_cost[i];
  return out.str();
}

// --- The corner file's results, worked out by hand ---------------------------------------------

std::vector<std::string> Sorted(std::vector<std::string> lines) {
  for (std::string& l : lines) l = Absolute(l);
  std::sort(lines.begin(), lines.end());
  return lines;
}

// The whole result of the queries small enough to list.
const std::map<std::string, std::vector<std::string>>& CornerResults() {
  static const auto* results = new std::map<std::string, std::vector<std::string>>{
      {"q2", Sorted({"123,77", "123,78", "246,5"})},
      // Seller 3 is in TX; auction 104 is category 11; 106 came before its seller.
      {"q3", Sorted({"Ann Lee,Boise,ID,101", ",,OR,102", "Eve Poe,Fresno,CA,106",
                     "Di Fox,Fresno,CA,105"})},
      // Category 10: winners 80 + 301 + 5000 + 6 = 5387 over 4 = 1346.75, rounded down.
      {"q4", Sorted({"10,1346", "11,60"})},
      // Ties kept; the bid at @10000 is only in the second window.
      {"q7", Sorted({"@0,@10000,101,9,999,@999", "@0,@10000,101,9,999,@5001",
                     "@0,@10000,102,12,999,@9999", "@10000,@20000,105,13,5000,@10000",
                     "@20000,@30000,105,20,1,@20000", "@20000,@30000,105,21,1,@20000",
                     "@30000,@40000,105,20,1,@30000", "@30000,@40000,105,21,1,@30001",
                     "@40000,@50000,110,22,3,@49000", "@50000,@60000,110,22,1,@52000"})},
      // Person 4 joined at @9999; its auction opened at @10000, in the next window.
      {"q8", Sorted({"@0,1,Ann Lee", "@0,2,", "@0,3,Cy Ray", "@0,5,Eve Poe"})},
      // 101: the bids at its start and expiry count, not those 1 ms outside; of the two at 80 the
      // lower bidder. 102: the earlier of two at 301. 104: the bid read before the auction lost
      // to the one at its expiry. 106: a bid at start = expiry. 103: no bid, no line.
      {"q9", Sorted({"101,1,10,6,80,@5000", "102,2,10,9,301,@2500", "104,1,11,7,60,@12000",
                     "105,4,10,13,5000,@10000", "106,5,10,11,6,@2000"})},
      {"q11", Sorted({"9,3,@999,@15001", "7,5,@1000,@22000", "11,1,@2000,@12000",
                      "8,2,@3500,@15000", "6,1,@5000,@15000", "12,1,@9999,@19999",
                      "13,1,@10000,@20000", "30,2,@13000,@25000", "31,1,@14000,@24000",
                      "32,2,@16000,@26500", "20,2,@20000,@40000", "21,1,@20000,@30000",
                      "21,1,@30001,@40001", "22,3,@40000,@62000", "24,1,@48001,@58001"})},
  };
  return *results;
}

// q5: the whole result of some of the sliding windows (the lines starting with a window start).
const std::map<std::string, std::vector<std::string>>& CornerQ5Windows() {
  static const auto* windows = new std::map<std::string, std::vector<std::string>>{
      {"@-8000", Sorted({"@-8000,@2000,101,2"})},  // the bid at @2000 is not in it
      {"@0", Sorted({"@0,@10000,101,5", "@0,@10000,102,5"})},
      {"@2000", Sorted({"@2000,@12000,102,5"})},
      {"@10000", Sorted({"@10000,@20000,123,2", "@10000,@20000,124,2"})},
      {"@12000", Sorted({"@12000,@22000,105,2", "@12000,@22000,123,2", "@12000,@22000,124,2"})},
      {"@40000", Sorted({"@40000,@50000,110,3"})},
  };
  return *windows;
}

// Checks `lines` (sorted), one implementation's result of `query` on the corner file.
void ExpectCornerResult(const std::string& query, const std::vector<std::string>& lines) {
  auto whole = CornerResults().find(query);
  if (whole != CornerResults().end()) {
    EXPECT_EQ(lines, whole->second) << query << " on the corner file";
    return;
  }
  auto contains = [&](const std::string& line) {
    return std::binary_search(lines.begin(), lines.end(), Absolute(line));
  };
  if (query == "q0") {
    EXPECT_EQ(lines.size(), 27u);
    EXPECT_TRUE(contains("101,7,50,Apple,,@1000,x"));
    EXPECT_TRUE(contains("102,7,301,,,@3000,"));
    EXPECT_TRUE(contains("105,20,1,,,@20000,"));
  } else if (query == "q1") {
    EXPECT_EQ(lines.size(), 27u);
    EXPECT_TRUE(contains("101,7,45.400,@1000,x"));
    EXPECT_TRUE(contains("102,12,907.092,@9999,"));
    EXPECT_TRUE(contains("124,32,0.000,@16000,"));
    EXPECT_TRUE(contains("124,32,908.908,@16500,"));
    EXPECT_TRUE(contains("105,13,4540.000,@10000,"));
  } else if (query == "q5") {
    for (const auto& [start, expected] : CornerQ5Windows()) {
      std::string prefix = Absolute(start) + ",";
      std::vector<std::string> window;
      for (const std::string& l : lines) {
        if (l.rfind(prefix, 0) == 0) window.push_back(l);
      }
      EXPECT_EQ(window, expected) << "q5 window " << start;
    }
  } else {
    ADD_FAILURE() << "no hand-worked result for " << query;
  }
}

TEST(CornerFile, CostGivesTheHandWorkedResults) {
  for (const std::string& q : CostQueries()) {
    SCOPED_TRACE(q);
    ExpectCornerResult(q, CostLines("corner", q));
  }
}

// The generated file is a real workload: out-of-order events, many windows, sessions, joins.
TEST(GeneratedFile, IsOutOfOrderAndCoversManyWindows) {
  std::ifstream in(File("generated").path);
  int64_t latest = 0, behind = 0, lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    Event e;
    ASSERT_TRUE(ParseEventLine(line, &e).ok()) << line;
    int64_t t = EventTime(e);
    if (t < latest) ++behind;
    EXPECT_GT(t, latest - 4000) << "a late event: " << line;
    latest = std::max(latest, t);
  }
  EXPECT_EQ(lines, GeneratedConfig().events);
  EXPECT_GT(behind, lines / 20);
  auto windows = [](const std::string& q) {
    std::set<std::string> starts;
    for (const std::string& l : CostLines("generated", q)) starts.insert(l.substr(0, l.find(',')));
    return starts.size();
  };
  EXPECT_GE(windows("q5"), 70u);
  EXPECT_GE(windows("q7"), 15u);
  EXPECT_GE(windows("q8"), 10u);
  EXPECT_GE(CostLines("generated", "q3").size(), 10u);
  EXPECT_GE(CostLines("generated", "q4").size(), 3u);
  EXPECT_GE(CostLines("generated", "q9").size(), 300u);
  EXPECT_GE(CostLines("generated", "q11").size(), 300u);
  EXPECT_GE(CostLines("generated", "q2").size(), 10u);
}

// --- The engine against the COST program -------------------------------------------------------

struct Case {
  std::string file;  // "generated" or "corner"
  std::string query;
  int parallelism;
  bool rocksdb;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.query << " on the " << c.file << " file at parallelism " << c.parallelism
      << (c.rocksdb ? " on RocksDB" : " on HashMap");
}

std::string Name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.file + "_" + info.param.query + "_p" + std::to_string(info.param.parallelism) +
         (info.param.rocksdb ? "_rocksdb" : "_hashmap");
}

class EngineVsCost : public ::testing::TestWithParam<Case> {};

TEST_P(EngineVsCost, SameMultisetOfLines) {
  const Case& c = GetParam();
  RunOptions options;
  options.query = c.query;
  options.input = File(c.file).path;
  options.output = TempPath("nexmark-" + Name({c, 0}) + ".csv");
  options.parallelism = c.parallelism;
  if (c.rocksdb) {
    options.state_backend = sluice::StateBackendKind::kRocksDb;
    options.rocksdb_dir = TempPath("nexmark-rocksdb-" + Name({c, 0}));
  }
  absl::StatusOr<RunResult> r = RunQuery(options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->events, File(c.file).events);
  const std::vector<std::string>& expected = CostLines(c.file, c.query);
  ASSERT_FALSE(expected.empty()) << "the COST program gave no " << c.query << " result";
  std::vector<std::string> actual = SortedLines(options.output);
  EXPECT_EQ(actual.size(), expected.size());
  EXPECT_TRUE(actual == expected) << c.query << ": the engine's result (" << options.output
                                  << ") differs from the COST program's: "
                                  << Difference(actual, expected);
  EXPECT_GE(r->results, static_cast<int64_t>(expected.size()));
  if (c.file == "corner") ExpectCornerResult(c.query, actual);
  std::filesystem::remove_all(options.rocksdb_dir);
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (const char* file : {"generated", "corner"}) {
    for (const QueryInfo& q : Queries()) {
      if (!q.checked) continue;
      for (int p : {1, 2}) {
        cases.push_back({file, q.name, p, false});
        if (!q.stateless) cases.push_back({file, q.name, p, true});
      }
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Nexmark, EngineVsCost, ::testing::ValuesIn(Cases()), Name);

// Every checked query has a COST baseline (and nothing else does).
TEST(EngineVsCost, EveryCheckedQueryHasACostBaseline) {
  std::vector<std::string> checked;
  for (const QueryInfo& q : Queries()) {
    if (q.checked) checked.push_back(q.name);
  }
  EXPECT_EQ(checked, CostQueries());
}

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
