// word_count: the classic. Counts words in a text file, in lines read from a TCP socket, or in a
// built-in text when given no input.
//
//   word_count                          # the built-in text, final counts (batch mode)
//   word_count --input book.txt         # a file: bounded, so one final count per word
//   word_count --socket localhost:9999  # e.g. after `nc -lk 9999`: a running count per word
//   word_count ... --parallelism 4
#include <cctype>
#include <cstdint>
#include <iostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

#include <sluice/connectors/file.h>
#include <sluice/connectors/socket.h>
#include <sluice/sluice.h>

namespace {

const std::vector<std::string> kBuiltInText = {
    "To be, or not to be, that is the question:",    "Whether 'tis nobler in the mind to suffer",
    "The slings and arrows of outrageous fortune,",  "Or to take arms against a sea of troubles",
    "And by opposing end them. To die -- to sleep,", "No more; and by a sleep to say we end",
};

using WordCount = std::pair<std::string, int64_t>;

int Usage() {
  std::cerr << "usage: word_count [--input FILE | --socket HOST:PORT] [--parallelism P]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string input, socket;
  int parallelism = 0;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (i + 1 >= argc) return Usage();
    if (arg == "--input") {
      input = argv[++i];
    } else if (arg == "--socket") {
      socket = argv[++i];
    } else if (arg == "--parallelism") {
      if (!absl::SimpleAtoi(argv[++i], &parallelism) || parallelism < 1) return Usage();
    } else {
      return Usage();
    }
  }

  // AUTOMATIC: a file or the built-in text is bounded and runs in BATCH mode (one final count per
  // word); a socket is unbounded and runs in STREAMING mode (a count per word occurrence).
  sluice::StreamEnvironment env(
      {.parallelism = parallelism, .execution_mode = sluice::ExecutionMode::kAutomatic});
  auto lines = [&]() -> sluice::DataStream<std::string> {
    if (!input.empty()) return env.FromSource(sluice::TextFileSource(input));
    if (!socket.empty()) {
      std::vector<std::string> parts = absl::StrSplit(socket, ':');
      int port = 0;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &port)) {
        std::cerr << "word_count: --socket needs HOST:PORT, got '" << socket << "'\n";
        std::exit(2);
      }
      return env.FromSource(sluice::SocketTextSource(parts[0], port));
    }
    return env.FromCollection(kBuiltInText);
  }();

  lines
      .FlatMap([](const std::string& line, sluice::Collector<WordCount>& out) {
        for (absl::string_view word :
             absl::StrSplit(line, absl::ByAnyChar(" \t,.;:!?'\"-()"), absl::SkipEmpty())) {
          out.Collect(WordCount(absl::AsciiStrToLower(word), 1));
        }
      })
      .Name("tokenize")
      .KeyBy([](const WordCount& wc) { return wc.first; })
      .Reduce([](const WordCount& a, const WordCount& b) {
        return WordCount(a.first, a.second + b.second);
      })
      .Name("count")
      .SinkTo(sluice::PrintSink<WordCount>());

  absl::Status status = env.Execute("word-count");
  if (!status.ok()) {
    std::cerr << "word_count failed: " << status << "\n";
    return 1;
  }
  return 0;
}
