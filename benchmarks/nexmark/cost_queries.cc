#include "cost_queries.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

#include <sluice/sluice.h>

#include "event_io.h"
#include "model.h"

namespace nexmark {
namespace {

// The result lines: counted always, formatted and written only when there is an output file.
class Out {
 public:
  explicit Out(std::FILE* file) : file_(file) {}
  bool text() const { return file_ != nullptr; }
  // The line being built (append to it only when text()).
  std::string& buf() { return buf_; }
  void EndLine(int64_t checksum) {
    ++results_;
    checksum_ += checksum;
    if (file_ == nullptr) return;
    buf_.push_back('\n');
    if (buf_.size() > (1 << 20)) Flush();
  }
  void Flush() {
    if (file_ != nullptr && !buf_.empty() &&
        std::fwrite(buf_.data(), 1, buf_.size(), file_) != buf_.size()) {
      write_failed_ = true;
    }
    buf_.clear();
  }
  int64_t results() const { return results_; }
  int64_t checksum() const { return checksum_; }
  bool write_failed() const { return write_failed_; }

 private:
  std::FILE* file_;
  std::string buf_;
  int64_t results_ = 0;
  int64_t checksum_ = 0;
  bool write_failed_ = false;
};

template <size_t N>
void Put(const FixedString<N>& s, std::string* out) {
  out->append(s.data, s.size);
}

// The start of the tumbling window of `size` ms holding time `t`.
int64_t WindowStart(int64_t t, int64_t size) { return t - ((t % size) + size) % size; }

// The events of a run, from the generator or the file, in arrival order.
class Events {
 public:
  explicit Events(const CostOptions& options) : options_(options) {}
  int64_t count() const { return count_; }

  template <typename F>
  absl::Status ForEach(F&& fn) {
    if (options_.input.empty()) {
      Generator g(options_.generator);
      for (int64_t n = 0; n < options_.generator.events; ++n) fn(g.Generate(n));
      count_ = options_.generator.events;
      return absl::OkStatus();
    }
    std::FILE* f = std::fopen(options_.input.c_str(), "rb");
    if (f == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("cannot open event file ", options_.input, ": ", std::strerror(errno)));
    }
    char* line = nullptr;
    size_t cap = 0;
    ssize_t len;
    int64_t n = 0;
    Event e;
    absl::Status status;
    while ((len = getline(&line, &cap, f)) > 0) {
      ++n;
      std::string_view v(line, static_cast<size_t>(len));
      if (v.back() == '\n') v.remove_suffix(1);
      if (absl::Status s = ParseEventLine(v, &e); !s.ok()) {
        status =
            absl::InvalidArgumentError(absl::StrCat(options_.input, ":", n, ": ", s.message()));
        break;
      }
      fn(e);
    }
    std::free(line);
    std::fclose(f);
    count_ = n;
    return status;
  }

 private:
  const CostOptions& options_;
  int64_t count_ = 0;
};

// --- q0, q1, q2: one line per bid (q2: per bid of an auction whose id is a multiple of 123) ----

absl::Status Stateless(const std::string& query, Events& events, Out& out) {
  return events.ForEach([&](const Event& e) {
    const Bid* b = std::get_if<Bid>(&e);
    if (b == nullptr) return;
    std::string& s = out.buf();
    if (query == "q0") {
      if (out.text()) {
        absl::StrAppend(&s, b->auction, ",", b->bidder, ",", b->price, ",");
        Put(b->channel, &s);
        s.push_back(',');
        Put(b->url, &s);
        absl::StrAppend(&s, ",", b->date_time, ",");
        Put(b->extra, &s);
      }
      out.EndLine(b->price);
    } else if (query == "q1") {
      int64_t milli = b->price * 908;  // euros in thousandths, exact
      if (out.text()) {
        char frac[8];
        std::snprintf(frac, sizeof frac, "%03d", static_cast<int>(milli % 1000));
        absl::StrAppend(&s, b->auction, ",", b->bidder, ",", milli / 1000, ".", frac, ",",
                        b->date_time, ",");
        Put(b->extra, &s);
      }
      out.EndLine(milli);
    } else if (b->auction % 123 == 0) {
      if (out.text()) absl::StrAppend(&s, b->auction, ",", b->price);
      out.EndLine(b->price);
    }
  });
}

// --- q3: category-10 auctions whose seller lives in OR, ID or CA ------------------------------

absl::Status Q3(Events& events, Out& out) {
  struct Seller {
    FixedString<31> name;
    FixedString<23> city;
    FixedString<7> state;
  };
  absl::flat_hash_map<int64_t, Seller> sellers;       // the people of those states, by id
  std::vector<std::pair<int64_t, int64_t>> auctions;  // (seller, auction) of category 10
  SLUICE_RETURN_IF_ERROR(events.ForEach([&](const Event& e) {
    if (const Person* p = std::get_if<Person>(&e)) {
      if (p->state == "OR" || p->state == "ID" || p->state == "CA") {
        sellers[p->id] = Seller{p->name, p->city, p->state};
      }
    } else if (const Auction* a = std::get_if<Auction>(&e)) {
      if (a->category == 10) auctions.emplace_back(a->seller, a->id);
    }
  }));
  for (const auto& [seller, auction] : auctions) {
    auto it = sellers.find(seller);
    if (it == sellers.end()) continue;
    if (out.text()) {
      std::string& s = out.buf();
      Put(it->second.name, &s);
      s.push_back(',');
      Put(it->second.city, &s);
      s.push_back(',');
      Put(it->second.state, &s);
      absl::StrAppend(&s, ",", auction);
    }
    out.EndLine(auction);
  }
  return absl::OkStatus();
}

// --- q9 (and q4): each auction's winning bid -------------------------------------------------

struct Winner {
  int64_t auction, seller, category, bidder, price, date_time;
};

// Every auction's best bid among those with start <= time <= expires: the highest price, then the
// earliest time, then the lowest bidder. Bids read before their auction's line wait for it.
absl::Status Winners(Events& events, std::vector<Winner>* winners) {
  struct Offer {
    int64_t bidder, price, date_time;
  };
  struct AuctionBids {
    bool known = false;  // the auction's line was read
    int64_t start = 0, expires = 0, seller = 0, category = 0;
    bool has_best = false;
    Offer best{};
    std::vector<Offer> before;  // bids read before the auction's line
  };
  auto consider = [](AuctionBids& a, const Offer& o) {
    if (o.date_time < a.start || o.date_time > a.expires) return;
    const Offer& b = a.best;
    bool better = !a.has_best || o.price > b.price ||
                  (o.price == b.price && (o.date_time < b.date_time ||
                                          (o.date_time == b.date_time && o.bidder < b.bidder)));
    if (better) {
      a.best = o;
      a.has_best = true;
    }
  };
  absl::flat_hash_map<int64_t, AuctionBids> auctions;
  SLUICE_RETURN_IF_ERROR(events.ForEach([&](const Event& e) {
    if (const Auction* a = std::get_if<Auction>(&e)) {
      AuctionBids& s = auctions[a->id];
      s.known = true;
      s.start = a->date_time;
      s.expires = a->expires;
      s.seller = a->seller;
      s.category = a->category;
      for (const Offer& o : s.before) consider(s, o);
      std::vector<Offer>().swap(s.before);
    } else if (const Bid* b = std::get_if<Bid>(&e)) {
      AuctionBids& s = auctions[b->auction];
      Offer o{b->bidder, b->price, b->date_time};
      if (s.known) {
        consider(s, o);
      } else {
        s.before.push_back(o);
      }
    }
  }));
  for (const auto& [id, s] : auctions) {
    if (!s.known || !s.has_best) continue;
    winners->push_back(
        Winner{id, s.seller, s.category, s.best.bidder, s.best.price, s.best.date_time});
  }
  return absl::OkStatus();
}

absl::Status Q9(Events& events, Out& out) {
  std::vector<Winner> winners;
  SLUICE_RETURN_IF_ERROR(Winners(events, &winners));
  for (const Winner& w : winners) {
    if (out.text()) {
      absl::StrAppend(&out.buf(), w.auction, ",", w.seller, ",", w.category, ",", w.bidder, ",",
                      w.price, ",", w.date_time);
    }
    out.EndLine(w.price);
  }
  return absl::OkStatus();
}

// The average winning price per category, rounded down.
absl::Status Q4(Events& events, Out& out) {
  std::vector<Winner> winners;
  SLUICE_RETURN_IF_ERROR(Winners(events, &winners));
  absl::flat_hash_map<int64_t, std::pair<int64_t, int64_t>> categories;  // (sum, count)
  for (const Winner& w : winners) {
    auto& [sum, count] = categories[w.category];
    sum += w.price;
    ++count;
  }
  for (const auto& [category, sc] : categories) {
    int64_t avg = sc.first / sc.second;  // prices are non-negative: this is the floor
    if (out.text()) absl::StrAppend(&out.buf(), category, ",", avg);
    out.EndLine(avg);
  }
  return absl::OkStatus();
}

// --- q5: the auctions with the most bids in each 10 s window sliding by 2 s -------------------

absl::Status Q5(Events& events, Out& out) {
  absl::flat_hash_map<std::pair<int64_t, int64_t>, int64_t> counts;  // (start, auction) -> bids
  SLUICE_RETURN_IF_ERROR(events.ForEach([&](const Event& e) {
    const Bid* b = std::get_if<Bid>(&e);
    if (b == nullptr) return;
    int64_t last = WindowStart(b->date_time, 2000);
    for (int64_t s = last; s > b->date_time - 10000; s -= 2000) ++counts[{s, b->auction}];
  }));
  absl::flat_hash_map<int64_t, int64_t> max;
  for (const auto& [k, n] : counts) max[k.first] = std::max(max[k.first], n);
  for (const auto& [k, n] : counts) {
    if (n != max[k.first]) continue;
    if (out.text()) {
      absl::StrAppend(&out.buf(), k.first, ",", k.first + 10000, ",", k.second, ",", n);
    }
    out.EndLine(n);
  }
  return absl::OkStatus();
}

// --- q7: the highest bids of each 10 s tumbling window (ties kept) ---------------------------

absl::Status Q7(Events& events, Out& out) {
  struct Top {
    int64_t price = -1;
    std::vector<Bid> bids;
  };
  absl::flat_hash_map<int64_t, Top> windows;
  SLUICE_RETURN_IF_ERROR(events.ForEach([&](const Event& e) {
    const Bid* b = std::get_if<Bid>(&e);
    if (b == nullptr) return;
    Top& t = windows[WindowStart(b->date_time, 10000)];
    if (b->price > t.price) {
      t.price = b->price;
      t.bids.clear();
    }
    if (b->price == t.price) t.bids.push_back(*b);
  }));
  for (const auto& [start, t] : windows) {
    for (const Bid& b : t.bids) {
      if (out.text()) {
        absl::StrAppend(&out.buf(), start, ",", start + 10000, ",", b.auction, ",", b.bidder, ",",
                        b.price, ",", b.date_time);
      }
      out.EndLine(b.price);
    }
  }
  return absl::OkStatus();
}

// --- q8: people who opened an auction in the 10 s window they joined in ----------------------

absl::Status Q8(Events& events, Out& out) {
  absl::flat_hash_map<std::pair<int64_t, int64_t>, FixedString<31>> people;  // (start, id)
  absl::flat_hash_set<std::pair<int64_t, int64_t>> sellers;                  // (start, seller)
  SLUICE_RETURN_IF_ERROR(events.ForEach([&](const Event& e) {
    if (const Person* p = std::get_if<Person>(&e)) {
      people[{WindowStart(p->date_time, 10000), p->id}] = p->name;
    } else if (const Auction* a = std::get_if<Auction>(&e)) {
      sellers.insert({WindowStart(a->date_time, 10000), a->seller});
    }
  }));
  for (const auto& [k, name] : people) {
    if (!sellers.contains(k)) continue;
    if (out.text()) {
      absl::StrAppend(&out.buf(), k.first, ",", k.second, ",");
      Put(name, &out.buf());
    }
    out.EndLine(k.second);
  }
  return absl::OkStatus();
}

// --- q11: bids per bidder session (a gap of more than 10 s ends a session) -------------------

absl::Status Q11(Events& events, Out& out) {
  absl::flat_hash_map<int64_t, std::vector<int64_t>> times;
  SLUICE_RETURN_IF_ERROR(events.ForEach([&](const Event& e) {
    if (const Bid* b = std::get_if<Bid>(&e)) times[b->bidder].push_back(b->date_time);
  }));
  for (auto& [bidder, ts] : times) {
    std::sort(ts.begin(), ts.end());
    size_t begin = 0;
    for (size_t i = 1; i <= ts.size(); ++i) {
      if (i < ts.size() && ts[i] - ts[i - 1] <= 10000) continue;
      int64_t count = static_cast<int64_t>(i - begin);
      if (out.text()) {
        absl::StrAppend(&out.buf(), bidder, ",", count, ",", ts[begin], ",", ts[i - 1] + 10000);
      }
      out.EndLine(count);
      begin = i;
    }
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& CostQueries() {
  static const std::vector<std::string> kQueries = {"q0", "q1", "q2", "q3", "q4",
                                                    "q5", "q7", "q8", "q9", "q11"};
  return kQueries;
}

absl::StatusOr<CostResult> RunCost(const CostOptions& options) {
  const std::string& q = options.query;
  if (std::find(CostQueries().begin(), CostQueries().end(), q) == CostQueries().end()) {
    return absl::InvalidArgumentError(absl::StrCat("no COST baseline for query '", q, "'"));
  }
  std::FILE* file = nullptr;
  if (!options.output.empty() && (file = std::fopen(options.output.c_str(), "wb")) == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot create ", options.output, ": ", std::strerror(errno)));
  }
  Out out(file);
  Events events(options);
  absl::Status status;
  if (q == "q0" || q == "q1" || q == "q2") {
    status = Stateless(q, events, out);
  } else if (q == "q3") {
    status = Q3(events, out);
  } else if (q == "q4") {
    status = Q4(events, out);
  } else if (q == "q5") {
    status = Q5(events, out);
  } else if (q == "q7") {
    status = Q7(events, out);
  } else if (q == "q8") {
    status = Q8(events, out);
  } else if (q == "q9") {
    status = Q9(events, out);
  } else {
    status = Q11(events, out);
  }
  out.Flush();
  if (file != nullptr && std::fclose(file) != 0) {
    status.Update(absl::DataLossError(absl::StrCat("closing ", options.output, " failed")));
  }
  if (out.write_failed()) {
    status.Update(absl::DataLossError(absl::StrCat("writing ", options.output, " failed")));
  }
  SLUICE_RETURN_IF_ERROR(status);
  return CostResult{events.count(), out.results(), out.checksum()};
}

}  // namespace nexmark
