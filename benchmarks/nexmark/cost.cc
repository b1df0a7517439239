// nexmark_cost: single-threaded COST baselines ("Scalability! But at what COST?") for Nexmark
// q0, q1, q2, q5, q7, q8 and q11 — the same generator (or event file) as sluice-nexmark, the
// same results, computed with plain loops and absl::flat_hash_map.
//
//   nexmark_cost --query q5 (--events N | --input FILE) [--output FILE]
//
// Prints events, wall seconds and events/s (one core). With --output it writes the FORMAT.md
// result lines, so the baselines can be checked against the sample like the engine.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include <sluice/sluice.h>

#include "event_io.h"
#include "generator.h"

namespace {

using nexmark::Bid;
using nexmark::Event;

struct Out {
  std::FILE* file = nullptr;
  std::string buf;
  int64_t results = 0;
  void Line() {
    ++results;
    if (file == nullptr) {
      buf.clear();
      return;
    }
    buf.push_back('\n');
    if (buf.size() > (1 << 20)) Flush();
  }
  void Flush() {
    if (file != nullptr) std::fwrite(buf.data(), 1, buf.size(), file);
    buf.clear();
  }
};

template <size_t N>
void Put(const nexmark::FixedString<N>& s, std::string* out) {
  out->append(s.data, s.size);
}

int64_t WindowStart(int64_t t, int64_t size) { return t - ((t % size) + size) % size; }

// Feeds every event to `fn`, from the generator or the file. Returns false on a file error.
template <typename F>
bool ForEachEvent(const nexmark::GeneratorConfig& gen, const std::string& input, int64_t* count,
                  F&& fn) {
  if (input.empty()) {
    nexmark::Generator g(gen);
    for (int64_t n = 0; n < gen.events; ++n) fn(g.Generate(n));
    *count = gen.events;
    return true;
  }
  std::FILE* f = std::fopen(input.c_str(), "rb");
  if (f == nullptr) {
    std::cerr << "nexmark_cost: cannot open " << input << "\n";
    return false;
  }
  char* line = nullptr;
  size_t cap = 0;
  ssize_t len;
  int64_t n = 0;
  Event e;
  while ((len = getline(&line, &cap, f)) > 0) {
    ++n;
    std::string_view v(line, static_cast<size_t>(len));
    if (v.back() == '\n') v.remove_suffix(1);
    if (absl::Status s = nexmark::ParseEventLine(v, &e); !s.ok()) {
      std::cerr << "nexmark_cost: " << input << ":" << n << ": " << s.message() << "\n";
      std::free(line);
      std::fclose(f);
      return false;
    }
    fn(e);
  }
  std::free(line);
  std::fclose(f);
  *count = n;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string query, input, output;
  nexmark::GeneratorConfig gen;
  bool has_events = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--query") {
      query = value;
    } else if (flag == "--events" && absl::SimpleAtoi(value, &gen.events) && gen.events >= 0) {
      has_events = true;
    } else if (flag == "--input") {
      input = value;
    } else if (flag == "--output") {
      output = value;
    } else {
      std::cerr << "nexmark_cost: bad flag '" << flag << " " << value << "'\n";
      return 2;
    }
  }
  if (argc % 2 == 0 || query.empty() || has_events == !input.empty()) {
    std::cerr << "usage: nexmark_cost --query q0|q1|q2|q5|q7|q8|q11 (--events N | --input FILE) "
                 "[--output FILE]\n";
    return 2;
  }
  Out out;
  if (!output.empty() && (out.file = std::fopen(output.c_str(), "wb")) == nullptr) {
    std::cerr << "nexmark_cost: cannot create " << output << "\n";
    return 1;
  }
  const bool text = out.file != nullptr;
  int64_t events = 0;
  int64_t checksum = 0;
  bool ok = true;
  auto t0 = std::chrono::steady_clock::now();

  if (query == "q0" || query == "q1" || query == "q2") {
    ok = ForEachEvent(gen, input, &events, [&](const Event& e) {
      const Bid* b = std::get_if<Bid>(&e);
      if (b == nullptr) return;
      if (query == "q0") {
        checksum += b->price;
        if (text) {
          absl::StrAppend(&out.buf, b->auction, ",", b->bidder, ",", b->price, ",");
          Put(b->channel, &out.buf);
          out.buf.push_back(',');
          Put(b->url, &out.buf);
          absl::StrAppend(&out.buf, ",", b->date_time, ",");
          Put(b->extra, &out.buf);
        }
        out.Line();
      } else if (query == "q1") {
        int64_t milli = b->price * 908;
        checksum += milli;
        if (text) {
          char frac[8];
          std::snprintf(frac, sizeof frac, "%03d", static_cast<int>(milli % 1000));
          absl::StrAppend(&out.buf, b->auction, ",", b->bidder, ",", milli / 1000, ".", frac, ",",
                          b->date_time, ",");
          Put(b->extra, &out.buf);
        }
        out.Line();
      } else if (b->auction % 123 == 0) {
        checksum += b->price;
        if (text) absl::StrAppend(&out.buf, b->auction, ",", b->price);
        out.Line();
      }
    });
  } else if (query == "q5") {
    // (window start, auction) -> count, for every 10 s window sliding by 2 s.
    absl::flat_hash_map<std::pair<int64_t, int64_t>, int64_t> counts;
    ok = ForEachEvent(gen, input, &events, [&](const Event& e) {
      const Bid* b = std::get_if<Bid>(&e);
      if (b == nullptr) return;
      int64_t last = WindowStart(b->date_time, 2000);
      for (int64_t s = last; s > b->date_time - 10000; s -= 2000) ++counts[{s, b->auction}];
    });
    absl::flat_hash_map<int64_t, int64_t> max;
    for (const auto& [k, n] : counts) max[k.first] = std::max(max[k.first], n);
    for (const auto& [k, n] : counts) {
      if (n != max[k.first]) continue;
      if (text) absl::StrAppend(&out.buf, k.first, ",", k.first + 10000, ",", k.second, ",", n);
      out.Line();
    }
  } else if (query == "q7") {
    struct Top {
      int64_t price = -1;
      std::vector<Bid> bids;
    };
    absl::flat_hash_map<int64_t, Top> windows;
    ok = ForEachEvent(gen, input, &events, [&](const Event& e) {
      const Bid* b = std::get_if<Bid>(&e);
      if (b == nullptr) return;
      Top& t = windows[WindowStart(b->date_time, 10000)];
      if (b->price > t.price) {
        t.price = b->price;
        t.bids.clear();
      }
      if (b->price == t.price) t.bids.push_back(*b);
    });
    for (const auto& [start, t] : windows) {
      for (const Bid& b : t.bids) {
        if (text) {
          absl::StrAppend(&out.buf, start, ",", start + 10000, ",", b.auction, ",", b.bidder, ",",
                          b.price, ",", b.date_time);
        }
        out.Line();
      }
    }
  } else if (query == "q8") {
    absl::flat_hash_map<std::pair<int64_t, int64_t>, nexmark::FixedString<31>> people;
    absl::flat_hash_set<std::pair<int64_t, int64_t>> sellers;
    ok = ForEachEvent(gen, input, &events, [&](const Event& e) {
      if (const nexmark::Person* p = std::get_if<nexmark::Person>(&e)) {
        people[{WindowStart(p->date_time, 10000), p->id}] = p->name;
      } else if (const nexmark::Auction* a = std::get_if<nexmark::Auction>(&e)) {
        sellers.insert({WindowStart(a->date_time, 10000), a->seller});
      }
    });
    for (const auto& [k, name] : people) {
      if (!sellers.contains(k)) continue;
      if (text) {
        absl::StrAppend(&out.buf, k.first, ",", k.second, ",");
        Put(name, &out.buf);
      }
      out.Line();
    }
  } else if (query == "q11") {
    absl::flat_hash_map<int64_t, std::vector<int64_t>> times;
    ok = ForEachEvent(gen, input, &events, [&](const Event& e) {
      if (const Bid* b = std::get_if<Bid>(&e)) times[b->bidder].push_back(b->date_time);
    });
    for (auto& [bidder, ts] : times) {
      std::sort(ts.begin(), ts.end());
      size_t begin = 0;
      for (size_t i = 1; i <= ts.size(); ++i) {
        if (i == ts.size() || ts[i] - ts[i - 1] > 10000) {
          if (text) {
            absl::StrAppend(&out.buf, bidder, ",", i - begin, ",", ts[begin], ",",
                            ts[i - 1] + 10000);
          }
          out.Line();
          begin = i;
        }
      }
    }
  } else {
    std::cerr << "nexmark_cost: no COST baseline for query '" << query
              << "' (q0, q1, q2, q5, q7, q8, q11)\n";
    return 2;
  }
  out.Flush();
  if (out.file != nullptr) std::fclose(out.file);
  if (!ok) return 1;
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "cost %s: events %lld, results %lld, wall %.3f s, %.0f events/s (1 core, "
      "checksum %lld)\n",
      query.c_str(), static_cast<long long>(events), static_cast<long long>(out.results), s,
      static_cast<double>(events) / s, static_cast<long long>(checksum));
  return 0;
}
