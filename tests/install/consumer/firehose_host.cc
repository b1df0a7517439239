// A host program linking only the installed sluice::firehose (built by install_test.sh against the
// installed prefix): one bounded job writes 1000 lines through three FirehoseSinks (no
// compression, gzip, zstd) into a local directory, then the program checks the delivered files.
//
//   firehose_host <directory>
//
// Prints one line per stream and exits 0, or names what is wrong and exits 1.
#include <sluice/connectors/firehose_sink.h>
#include <sluice/sluice.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: firehose_host <directory>\n";
    return 2;
  }
  const std::string dir = argv[1];
  std::vector<std::string> lines;
  std::string expected;
  for (int i = 0; i < 1000; ++i) {
    lines.push_back("line-" + std::to_string(i));
    expected += lines.back() + "\n";
  }

  sluice::StreamEnvironment env({.parallelism = 1});
  auto stream = env.FromCollection(lines);
  stream.SinkTo(sluice::FirehoseSink<std::string>(
      {.directory = dir, .stream_name = "plain", .newline_delimiter = true}));
  stream.SinkTo(
      sluice::FirehoseSink<std::string>({.directory = dir,
                                         .stream_name = "gz",
                                         .compression = sluice::FirehoseCompression::kGzip,
                                         .newline_delimiter = true}));
  stream.SinkTo(
      sluice::FirehoseSink<std::string>({.directory = dir,
                                         .stream_name = "zst",
                                         .compression = sluice::FirehoseCompression::kZstd,
                                         .newline_delimiter = true}));
  absl::Status status = env.Execute("firehose-host");
  if (!status.ok()) {
    std::cerr << "firehose_host: job failed: " << status << "\n";
    return 1;
  }

  // Delivered files (outside the hidden staging directory), by stream name.
  std::map<std::string, std::vector<fs::path>> files;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
       ++it) {
    if (it->path().filename() == ".sluice-firehose") {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file()) continue;
    const std::string name = it->path().filename().string();
    files[name.substr(0, name.find('-'))].push_back(it->path());
  }
  bool ok = true;
  auto check = [&](const std::string& stream_name, const std::string& ext,
                   const std::string& magic) {
    const std::vector<fs::path>& delivered = files[stream_name];
    if (delivered.size() != 1) {
      std::cerr << "firehose_host: " << stream_name << ": expected 1 file, found "
                << delivered.size() << "\n";
      ok = false;
      return;
    }
    const std::string bytes = ReadFile(delivered[0]);
    if (delivered[0].extension().string() != ext || bytes.compare(0, magic.size(), magic) != 0) {
      std::cerr << "firehose_host: " << delivered[0] << ": not a " << stream_name << " file\n";
      ok = false;
      return;
    }
    if (stream_name == "plain" && bytes != expected) {
      std::cerr << "firehose_host: " << delivered[0] << ": unexpected content\n";
      ok = false;
      return;
    }
    std::cout << "firehose: " << stream_name << ": 1 file delivered"
              << "\n";
  };
  check("plain", "", "line-0\nline-1\n");
  check("gz", ".gz", std::string("\x1f\x8b", 2));
  check("zst", ".zst", std::string("\x28\xb5\x2f\xfd", 4));
  return ok ? 0 : 1;
}
