#include "queries.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include <sluice/sluice.h>

#include "event_io.h"
#include "model.h"

namespace nexmark {
namespace {

using sluice::Collector;
using sluice::TimeWindow;
using sluice::WindowContext;

template <size_t N>
void Put(const FixedString<N>& s, std::string* out) {
  out->append(s.data, s.size);
}

// --- Result records (the output lines of docs/nexmark.md) ------------------------------------

struct Q1Out {
  int64_t auction, bidder, price_milli_eur, date_time;
  FixedString<31> extra;
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, auction, ",", bidder, ",", price_milli_eur / 1000, ".");
    char frac[16];
    std::snprintf(frac, sizeof frac, "%03d", static_cast<int>(price_milli_eur % 1000));
    absl::StrAppend(out, frac, ",", date_time, ",");
    Put(extra, out);
  }
};
struct Q2Out {
  int64_t auction, price;
  void AppendLine(std::string* out) const { absl::StrAppend(out, auction, ",", price); }
};
struct Q3Out {
  FixedString<31> name;
  FixedString<23> city;
  FixedString<7> state;
  int64_t auction;
  void AppendLine(std::string* out) const {
    Put(name, out);
    out->push_back(',');
    Put(city, out);
    out->push_back(',');
    Put(state, out);
    absl::StrAppend(out, ",", auction);
  }
};
struct Q4Out {
  int64_t category, avg_price;
  int64_t UpsertKey() const { return category; }
  void AppendLine(std::string* out) const { absl::StrAppend(out, category, ",", avg_price); }
};
struct Q5Out {
  int64_t start, end, auction, count;
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, start, ",", end, ",", auction, ",", count);
  }
};
struct Q7Bid {
  int64_t auction, bidder, price, date_time;
};
struct Q7Out {
  int64_t start, end;
  Q7Bid bid;
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, start, ",", end, ",", bid.auction, ",", bid.bidder, ",", bid.price, ",",
                    bid.date_time);
  }
};
struct Q8Out {
  int64_t start, id;
  FixedString<31> name;
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, start, ",", id, ",");
    Put(name, out);
  }
};
struct Q9Out {
  int64_t auction, seller, category, bidder, price, date_time;
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, auction, ",", seller, ",", category, ",", bidder, ",", price, ",",
                    date_time);
  }
};
struct SessionOut {  // q11, q12
  int64_t bidder, count, start, end;
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, bidder, ",", count, ",", start, ",", end);
  }
};
struct Q13Out {
  Bid bid;
  FixedString<15> value;
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, bid.auction, ",", bid.bidder, ",", bid.price, ",", bid.date_time, ",");
    Put(value, out);
  }
};
struct Q14Out {
  int64_t auction, bidder, price_milli_eur, date_time, c_counts;
  const char* bid_time_type;
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, auction, ",", bidder, ",", price_milli_eur / 1000, ",", bid_time_type, ",",
                    date_time, ",", c_counts);
  }
};
struct DayStats {  // q15 (per day) and q16 (per channel and day)
  int64_t day;
  int64_t bids[4];     // total, rank1 (< 10 000), rank2 (< 1 000 000), rank3
  int64_t bidders[4];  // distinct, same ranks
  int64_t auctions[4];
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, day);
    for (int64_t v : bids) absl::StrAppend(out, ",", v);
    for (int64_t v : bidders) absl::StrAppend(out, ",", v);
    for (int64_t v : auctions) absl::StrAppend(out, ",", v);
  }
};
struct Q17Out {
  int64_t auction, day, bids[4], min_price, max_price, sum_price;
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, auction, ",", day);
    for (int64_t v : bids) absl::StrAppend(out, ",", v);
    absl::StrAppend(out, ",", min_price, ",", max_price, ",", sum_price / bids[0], ",", sum_price);
  }
};
struct BidOut {  // q18, q19: a bid row
  Bid bid;
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, bid.auction, ",", bid.bidder, ",", bid.price, ",", bid.date_time);
  }
};
struct Q20Out {
  Bid bid;
  int64_t initial_bid, reserve, expires, seller, category;
  FixedString<31> item_name;
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, bid.auction, ",", bid.bidder, ",", bid.price, ",", bid.date_time, ",");
    Put(item_name, out);
    absl::StrAppend(out, ",", initial_bid, ",", reserve, ",", expires, ",", seller, ",", category);
  }
};
struct Q21Out {
  int64_t auction, bidder, price;
  FixedString<15> channel;
  FixedString<15> channel_id;
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, auction, ",", bidder, ",", price, ",");
    Put(channel, out);
    out->push_back(',');
    Put(channel_id, out);
  }
};
struct Q22Out {
  int64_t auction, bidder, price;
  FixedString<15> channel;
  FixedString<15> dir1, dir2, dir3;
  void AppendLine(std::string* out) const {
    absl::StrAppend(out, auction, ",", bidder, ",", price, ",");
    Put(channel, out);
    for (const auto* d : {&dir1, &dir2, &dir3}) {
      out->push_back(',');
      Put(*d, out);
    }
  }
};

void AppendBidLine(const Bid& b, std::string* out) {  // q0
  absl::StrAppend(out, b.auction, ",", b.bidder, ",", b.price, ",");
  Put(b.channel, out);
  out->push_back(',');
  Put(b.url, out);
  absl::StrAppend(out, ",", b.date_time, ",");
  Put(b.extra, out);
}

template <typename R>
void AppendResultLine(const R& r, std::string* out) {
  if constexpr (std::is_same_v<R, Bid>) {
    AppendBidLine(r, out);
  } else {
    r.AppendLine(out);
  }
  out->push_back('\n');
}

// --- Latency histogram (µs, ~3% buckets) -----------------------------------------------------

class Histogram {
 public:
  void Add(int64_t v) {
    if (v < 0) v = 0;
    ++counts_[Index(v)];
    ++n_;
    max_ = std::max(max_, v);
  }
  void Merge(const Histogram& o) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    n_ += o.n_;
    max_ = std::max(max_, o.max_);
  }
  int64_t count() const { return n_; }
  int64_t max() const { return max_; }
  // The upper bound of the bucket holding the q-quantile.
  int64_t Quantile(double q) const {
    int64_t target = static_cast<int64_t>(q * static_cast<double>(n_));
    int64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen > target) return std::min(UpperBound(i), max_);
    }
    return max_;
  }

 private:
  static constexpr int kSub = 32;
  static size_t Index(int64_t v) {
    if (v < kSub) return static_cast<size_t>(v);
    int e = 63 - __builtin_clzll(static_cast<uint64_t>(v)) - 4;  // v >> e in [32, 63]
    return static_cast<size_t>(kSub * e + (v >> e));
  }
  static int64_t UpperBound(size_t i) {
    if (i < kSub) return static_cast<int64_t>(i);
    int64_t e = static_cast<int64_t>(i) / kSub - 1;
    int64_t m = static_cast<int64_t>(i) % kSub + kSub;
    return ((m + 1) << e) - 1;
  }
  std::array<int64_t, kSub * 64> counts_{};
  int64_t n_ = 0;
  int64_t max_ = 0;
};

// --- The sink: counts results, optionally writes their lines ---------------------------------

struct OutputState {
  std::mutex mu;
  std::FILE* file = nullptr;
  std::atomic<int64_t> results{0};
  Histogram latency;                                  // under mu
  absl::flat_hash_map<int64_t, std::string> upserts;  // under mu
};

template <typename R>
class ResultSink : public sluice::Sink<R> {
 public:
  explicit ResultSink(std::shared_ptr<OutputState> state) : state_(std::move(state)) {}
  std::string Describe() const override { return "Nexmark result"; }
  absl::StatusOr<std::unique_ptr<sluice::SinkWriter<R>>> CreateWriter(
      const sluice::RuntimeContext&) override {
    return std::unique_ptr<sluice::SinkWriter<R>>(new Writer(state_));
  }

 private:
  static constexpr bool kUpsert = requires(const R& r) { r.UpsertKey(); };

  class Writer : public sluice::SinkWriter<R> {
   public:
    explicit Writer(std::shared_ptr<OutputState> state) : state_(std::move(state)) {}
    absl::Status Write(std::vector<R>& records) override {
      state_->results.fetch_add(static_cast<int64_t>(records.size()), std::memory_order_relaxed);
      if (state_->file == nullptr) return absl::OkStatus();
      for (const R& r : records) {
        if constexpr (kUpsert) {
          std::string& line = last_[r.UpsertKey()];
          line.clear();
          AppendResultLine(r, &line);
        } else {
          AppendResultLine(r, &buffer_);
        }
      }
      if (buffer_.size() > (1 << 20)) return FlushBuffer();
      return absl::OkStatus();
    }
    absl::Status Finish() override {
      if (state_->file == nullptr) return absl::OkStatus();
      if constexpr (kUpsert) {
        std::lock_guard<std::mutex> lock(state_->mu);
        for (auto& [k, line] : last_) state_->upserts[k] = std::move(line);
        return absl::OkStatus();
      }
      return FlushBuffer();
    }

   private:
    absl::Status FlushBuffer() {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (std::fwrite(buffer_.data(), 1, buffer_.size(), state_->file) != buffer_.size()) {
        return absl::DataLossError("writing the result file failed");
      }
      buffer_.clear();
      return absl::OkStatus();
    }
    std::shared_ptr<OutputState> state_;
    std::string buffer_;
    absl::flat_hash_map<int64_t, std::string> last_;
  };

  std::shared_ptr<OutputState> state_;
};

// Stateless queries: records carry their emission time (µs) as timestamp; one in 16 is measured.
template <typename R>
class LatencyProbe : public sluice::ProcessFunction<R, R> {
 public:
  explicit LatencyProbe(std::shared_ptr<OutputState> state) : state_(std::move(state)) {}
  LatencyProbe(const LatencyProbe& o) : state_(o.state_) {}
  void ProcessElement(const R& value, typename sluice::ProcessFunction<R, R>::Context& ctx,
                      Collector<R>& out) override {
    if ((++n_ & 15) == 0) hist_.Add(NowMicros() - ctx.timestamp());
    out.Collect(value);
  }
  void Close() override {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->latency.Merge(hist_);
  }

 private:
  std::shared_ptr<OutputState> state_;
  Histogram hist_;
  uint64_t n_ = 0;
};

// --- Helpers ---------------------------------------------------------------------------------

template <typename T>
struct Only {
  void operator()(const Event& e, Collector<T>& out) const {
    if (const T* v = std::get_if<T>(&e)) out.Collect(*v);
  }
};

template <typename In>
class CountAgg final : public sluice::AggregateFunction<In, int64_t, int64_t> {
 public:
  int64_t CreateAccumulator() override { return 0; }
  void Add(const In&, int64_t& acc) override { ++acc; }
  int64_t GetResult(const int64_t& acc) override { return acc; }
  void Merge(const int64_t& from, int64_t& into) override { into += from; }
};

constexpr int64_t kDayMs = 86'400'000;

// --- q3: incremental join of category-10 auctions with their seller in OR, ID or CA ----------

struct SellerInfo {
  FixedString<31> name;
  FixedString<23> city;
  FixedString<7> state;
};

class Q3Join : public sluice::KeyedCoProcessFunction<int64_t, Person, Auction, Q3Out> {
 public:
  void Open(const sluice::RuntimeContext& ctx) override {
    seller_ = ctx.GetState(sluice::ValueStateDescriptor<SellerInfo>("seller"));
    pending_ = ctx.GetListState(sluice::ListStateDescriptor<int64_t>("pending-auctions"));
  }
  void ProcessElement1(const Person& p, Context&, Collector<Q3Out>& out) override {
    SellerInfo s{p.name, p.city, p.state};
    seller_.Update(s);
    for (int64_t auction : pending_.Get()) out.Collect(Q3Out{s.name, s.city, s.state, auction});
    pending_.Clear();
  }
  void ProcessElement2(const Auction& a, Context&, Collector<Q3Out>& out) override {
    if (std::optional<SellerInfo> s = seller_.Value()) {
      out.Collect(Q3Out{s->name, s->city, s->state, a.id});
    } else {
      pending_.Add(a.id);  // the seller's person event may come later
    }
  }

 private:
  sluice::ValueState<SellerInfo> seller_;
  sluice::ListState<int64_t> pending_;
};

// --- q4/q9: the winning bid of each auction --------------------------------------------------

struct AuctionInfo {
  int64_t date_time, expires, seller, category;
};
struct BidInfo {
  int64_t bidder, price, date_time;
};
// Higher price wins, then earlier time, then lower bidder (docs/nexmark.md, q9).
inline bool Better(const BidInfo& a, const BidInfo& b) {
  if (a.price != b.price) return a.price > b.price;
  if (a.date_time != b.date_time) return a.date_time < b.date_time;
  return a.bidder < b.bidder;
}

// Keyed by auction id. The winner is final when event time passes the auction's expiry (no bid
// inside the bounds can come after that, as no event is late), so it is emitted then, from a timer;
// the bounded input's final watermark fires the rest. Bids that arrive before their auction wait
// in state until event time passes their own time (by then the auction would have arrived).
class WinningBid : public sluice::KeyedCoProcessFunction<int64_t, Auction, Bid, Q9Out> {
 public:
  void Open(const sluice::RuntimeContext& ctx) override {
    auction_ = ctx.GetState(sluice::ValueStateDescriptor<AuctionInfo>("auction"));
    best_ = ctx.GetState(sluice::ValueStateDescriptor<BidInfo>("best"));
    pending_ = ctx.GetListState(sluice::ListStateDescriptor<BidInfo>("early-bids"));
  }
  void ProcessElement1(const Auction& a, Context& ctx, Collector<Q9Out>&) override {
    AuctionInfo info{a.date_time, a.expires, a.seller, a.category};
    auction_.Update(info);
    std::optional<BidInfo> best;
    std::vector<BidInfo> early = pending_.Get();
    if (!early.empty()) {
      for (const BidInfo& b : early) {
        if (In(info, b) && (!best || Better(b, *best))) best = b;
      }
      pending_.Clear();
      if (best) best_.Update(*best);
    }
    ctx.RegisterEventTimeTimer(a.expires);
  }
  void ProcessElement2(const Bid& b, Context& ctx, Collector<Q9Out>&) override {
    BidInfo bid{b.bidder, b.price, b.date_time};
    if (std::optional<AuctionInfo> info = auction_.Value()) {
      if (!In(*info, bid)) return;
      std::optional<BidInfo> best = best_.Value();
      if (!best || Better(bid, *best)) best_.Update(bid);
    } else {
      pending_.Add(bid);
      ctx.RegisterEventTimeTimer(b.date_time);
    }
  }
  void OnTimer(sluice::Timestamp t, Context& ctx, Collector<Q9Out>& out) override {
    if (std::optional<AuctionInfo> info = auction_.Value()) {
      if (t < info->expires) return;
      if (std::optional<BidInfo> best = best_.Value()) {
        out.Collect(Q9Out{ctx.CurrentKey(), info->seller, info->category, best->bidder, best->price,
                          best->date_time});
      }
      auction_.Clear();
      best_.Clear();
      return;
    }
    std::vector<BidInfo> early = pending_.Get();
    if (early.empty()) return;
    std::erase_if(early, [t](const BidInfo& b) { return b.date_time <= t; });
    if (early.empty()) {
      pending_.Clear();
    } else {
      pending_.Update(std::move(early));
    }
  }

 private:
  static bool In(const AuctionInfo& a, const BidInfo& b) {
    return a.date_time <= b.date_time && b.date_time <= a.expires;
  }
  sluice::ValueState<AuctionInfo> auction_;
  sluice::ValueState<BidInfo> best_;
  sluice::ListState<BidInfo> pending_;
};

class AveragePerCategory : public sluice::KeyedProcessFunction<int64_t, Q9Out, Q4Out> {
 public:
  void Open(const sluice::RuntimeContext& ctx) override {
    sum_count_ =
        ctx.GetState(sluice::ValueStateDescriptor<std::pair<int64_t, int64_t>>("sum-and-count"));
  }
  void ProcessElement(const Q9Out& w, Context& ctx, Collector<Q4Out>& out) override {
    std::pair<int64_t, int64_t> sc = sum_count_.Value().value_or(std::pair<int64_t, int64_t>{0, 0});
    sc.first += w.price;
    sc.second += 1;
    sum_count_.Update(sc);
    out.Collect(Q4Out{ctx.CurrentKey(), sc.first / sc.second});
  }

 private:
  sluice::ValueState<std::pair<int64_t, int64_t>> sum_count_;
};

// --- q5: the auctions with the most bids of each window -------------------------------------

// The elements of a window whose `kValue` is the highest (all of them: ties are kept), each made
// from an input by `kMake`.
template <typename In, typename T, T (*kMake)(const In&), int64_t T::*kValue>
class TopWithTiesAgg final : public sluice::AggregateFunction<In, std::vector<T>, std::vector<T>> {
 public:
  std::vector<T> CreateAccumulator() override { return {}; }
  void Add(const In& in, std::vector<T>& acc) override { Push(kMake(in), acc); }
  std::vector<T> GetResult(const std::vector<T>& acc) override { return acc; }
  void Merge(const std::vector<T>& from, std::vector<T>& into) override {
    for (const T& x : from) Push(x, into);
  }

 private:
  static void Push(const T& x, std::vector<T>& acc) {
    if (!acc.empty() && x.*kValue < acc.front().*kValue) return;
    if (!acc.empty() && x.*kValue > acc.front().*kValue) acc.clear();
    acc.push_back(x);
  }
};

Q5Out SameCount(const Q5Out& r) { return r; }
// The counts of a window that equal its highest count.
using HottestAgg = TopWithTiesAgg<Q5Out, Q5Out, &SameCount, &Q5Out::count>;

// --- q7: the highest bids of each window -----------------------------------------------------

Q7Bid ToQ7Bid(const Bid& b) { return Q7Bid{b.auction, b.bidder, b.price, b.date_time}; }
Q7Bid SameBid(const Q7Bid& b) { return b; }
using MaxBidsAgg = TopWithTiesAgg<Q7Bid, Q7Bid, &SameBid, &Q7Bid::price>;

// --- q8: people who created an auction in the window they registered ------------------------

struct NewSeller {
  FixedString<31> name;  // of the person, when one registered in the window
  bool person = false;
  bool auction = false;  // whether the key (as seller) created an auction in the window
};

class NewSellerAgg final : public sluice::AggregateFunction<Event, NewSeller, NewSeller> {
 public:
  NewSeller CreateAccumulator() override { return {}; }
  void Add(const Event& e, NewSeller& acc) override {
    if (const Person* p = std::get_if<Person>(&e)) {
      acc.name = p->name;
      acc.person = true;
    } else {
      acc.auction = true;
    }
  }
  NewSeller GetResult(const NewSeller& acc) override { return acc; }
  void Merge(const NewSeller& from, NewSeller& into) override {
    if (from.person) {
      into.name = from.name;
      into.person = true;
    }
    into.auction = into.auction || from.auction;
  }
};

// --- q15/q16: daily statistics with distinct counts ------------------------------------------

inline int Rank(int64_t price) { return price < 10'000 ? 1 : price < 1'000'000 ? 2 : 3; }

template <typename K>
class DailyStats : public sluice::KeyedProcessFunction<K, Bid, DayStats> {
  using Ctx = typename sluice::KeyedProcessFunction<K, Bid, DayStats>::Context;

 public:
  void Open(const sluice::RuntimeContext& ctx) override {
    stats_ = ctx.GetState(sluice::ValueStateDescriptor<DayStats>("stats"));
    bidders_ = ctx.GetMapState(sluice::MapStateDescriptor<int64_t, uint8_t>("bidders"));
    auctions_ = ctx.GetMapState(sluice::MapStateDescriptor<int64_t, uint8_t>("auctions"));
  }
  void ProcessElement(const Bid& b, Ctx&, Collector<DayStats>& out) override {
    DayStats s = stats_.Value().value_or(DayStats{b.date_time / kDayMs, {}, {}, {}});
    int rank = Rank(b.price);
    ++s.bids[0];
    ++s.bids[rank];
    Distinct(bidders_, b.bidder, rank, s.bidders);
    Distinct(auctions_, b.auction, rank, s.auctions);
    stats_.Update(s);
    out.Collect(s);
  }

 private:
  static void Distinct(const sluice::MapState<int64_t, uint8_t>& seen, int64_t id, int rank,
                       int64_t* counts) {
    uint8_t mask = seen.Get(id).value_or(0);
    uint8_t bit = static_cast<uint8_t>(1u << rank);
    if (mask == 0) ++counts[0];
    if ((mask & bit) == 0) {
      ++counts[rank];
      seen.Put(id, static_cast<uint8_t>(mask | bit | 1u));
    }
  }
  sluice::ValueState<DayStats> stats_;
  sluice::MapState<int64_t, uint8_t> bidders_;
  sluice::MapState<int64_t, uint8_t> auctions_;
};

// --- q20: bids joined with their category-10 auction -----------------------------------------

class Q20Join : public sluice::KeyedCoProcessFunction<int64_t, Auction, Bid, Q20Out> {
 public:
  void Open(const sluice::RuntimeContext& ctx) override {
    auction_ = ctx.GetState(sluice::ValueStateDescriptor<Auction>("auction"));
    pending_ = ctx.GetListState(sluice::ListStateDescriptor<Bid>("early-bids"));
  }
  void ProcessElement1(const Auction& a, Context&, Collector<Q20Out>& out) override {
    auction_.Update(a);
    for (const Bid& b : pending_.Get()) Emit(a, b, out);
    pending_.Clear();
  }
  void ProcessElement2(const Bid& b, Context& ctx, Collector<Q20Out>& out) override {
    if (std::optional<Auction> a = auction_.Value()) {
      Emit(*a, b, out);
    } else {
      pending_.Add(b);
      ctx.RegisterEventTimeTimer(b.date_time);
    }
  }
  // A bid whose auction has not come by its own time has no category-10 auction (no late events).
  void OnTimer(sluice::Timestamp t, Context&, Collector<Q20Out>&) override {
    if (auction_.Value()) return;
    std::vector<Bid> early = pending_.Get();
    std::erase_if(early, [t](const Bid& b) { return b.date_time <= t; });
    if (early.empty()) {
      pending_.Clear();
    } else {
      pending_.Update(std::move(early));
    }
  }

 private:
  static void Emit(const Auction& a, const Bid& b, Collector<Q20Out>& out) {
    out.Collect(Q20Out{b, a.initial_bid, a.reserve, a.expires, a.seller, a.category, a.item_name});
  }
  sluice::ValueState<Auction> auction_;
  sluice::ListState<Bid> pending_;
};

// --- Building a query ------------------------------------------------------------------------

struct Builder {
  sluice::DataStream<Event> events;
  std::shared_ptr<OutputState> state;
  bool latency;

  sluice::DataStream<Bid> Bids() const { return events.FlatMap<Bid>(Only<Bid>{}).Name("Bids"); }
  // Only the fields a query uses, taken from the bids as they leave the source (the projection
  // Flink's planner pushes into the scan): smaller records to copy, exchange and keep.
  template <typename P, typename F>
  sluice::DataStream<P> BidFields(F project) const {
    return events
        .FlatMap<P>([project](const Event& e, Collector<P>& out) {
          if (const Bid* x = std::get_if<Bid>(&e)) out.Collect(project(*x));
        })
        .Name("Bids");
  }
  sluice::DataStream<Auction> Auctions() const {
    return events.FlatMap<Auction>(Only<Auction>{}).Name("Auctions");
  }
  sluice::DataStream<Person> Persons() const {
    return events.FlatMap<Person>(Only<Person>{}).Name("Persons");
  }

  template <typename R>
  void Sink(sluice::DataStream<R> results) const {
    if (latency) results = results.Process(LatencyProbe<R>(state)).Name("Latency probe");
    results.SinkTo(ResultSink<R>(state));
  }
};

absl::Status Build(const std::string& q, const Builder& b) {
  using absl::Seconds;
  if (q == "q0") {
    b.Sink(b.Bids());
  } else if (q == "q1") {
    b.Sink(b.Bids().Map([](const Bid& x) {
      return Q1Out{x.auction, x.bidder, x.price * 908, x.date_time, x.extra};
    }));
  } else if (q == "q2") {
    b.Sink(b.Bids().Filter([](const Bid& x) { return x.auction % 123 == 0; }).Map([](const Bid& x) {
      return Q2Out{x.auction, x.price};
    }));
  } else if (q == "q3") {
    auto persons = b.Persons().Filter(
        [](const Person& p) { return p.state == "OR" || p.state == "ID" || p.state == "CA"; });
    auto auctions = b.Auctions().Filter([](const Auction& a) { return a.category == 10; });
    b.Sink(persons.KeyBy([](const Person& p) { return p.id; })
               .Connect(auctions.KeyBy([](const Auction& a) { return a.seller; }))
               .Process(Q3Join())
               .Name("Q3 join"));
  } else if (q == "q4" || q == "q9") {
    auto winners = b.Auctions()
                       .KeyBy([](const Auction& a) { return a.id; })
                       .Connect(b.Bids().KeyBy([](const Bid& x) { return x.auction; }))
                       .Process(WinningBid())
                       .Name("Winning bids");
    if (q == "q9") {
      b.Sink(winners);
    } else {
      b.Sink(winners.KeyBy([](const Q9Out& w) { return w.category; })
                 .Process(AveragePerCategory())
                 .Name("Average per category"));
    }
  } else if (q == "q5") {
    auto counts =
        b.BidFields<int64_t>([](const Bid& x) { return x.auction; })
            .KeyBy([](const int64_t& auction) { return auction; })
            .Window(sluice::SlidingEventTimeWindows::Of(Seconds(10), Seconds(2)))
            .Aggregate(CountAgg<int64_t>(),
                       [](const int64_t& auction, WindowContext<TimeWindow>& ctx,
                          std::span<const int64_t> n, Collector<Q5Out>& out) {
                         out.Collect(Q5Out{ctx.window().start, ctx.window().end, auction, n[0]});
                       })
            .Name("Bids per auction");
    // Each counting window's results carry its end - 1: a 2 s tumbling window keyed by the end
    // holds exactly one hopping window's counts.
    b.Sink(counts.KeyBy([](const Q5Out& r) { return r.end; })
               .Window(sluice::TumblingEventTimeWindows::Of(Seconds(2)))
               .Aggregate(HottestAgg(),
                          [](const int64_t&, WindowContext<TimeWindow>&,
                             std::span<const std::vector<Q5Out>> top, Collector<Q5Out>& out) {
                            for (const Q5Out& r : top[0]) out.Collect(r);
                          })
               .Name("Hottest auctions"));
  } else if (q == "q7") {
    // Flink's plan: the highest bids of each window, aggregated in two phases — per source
    // subtask before the exchange (LocalWindowAggregate), then the partials of every subtask.
    b.Sink(b.BidFields<Q7Bid>(ToQ7Bid)
               .WindowAll(sluice::TumblingEventTimeWindows::Of(Seconds(10)))
               .TwoPhase()
               .Aggregate(MaxBidsAgg(),
                          [](WindowContext<TimeWindow>& ctx,
                             std::span<const std::vector<Q7Bid>> top, Collector<Q7Out>& out) {
                            for (const Q7Bid& bid : top[0]) {
                              out.Collect(Q7Out{ctx.window().start, ctx.window().end, bid});
                            }
                          })
               .Name("Highest bids"));
  } else if (q == "q8") {
    // Flink's plan: per (id, window) the person and per (seller, window) whether it sold, both
    // window aggregates, then joined — here one aggregate per (person id = seller, window).
    b.Sink(b.events.Filter([](const Event& e) { return e.index() != 2; })
               .KeyBy([](const Event& e) {
                 return e.index() == 0 ? std::get<0>(e).id : std::get<1>(e).seller;
               })
               .Window(sluice::TumblingEventTimeWindows::Of(Seconds(10)))
               .Aggregate(NewSellerAgg(),
                          [](const int64_t& id, WindowContext<TimeWindow>& ctx,
                             std::span<const NewSeller> seen, Collector<Q8Out>& out) {
                            if (seen[0].person && seen[0].auction) {
                              out.Collect(Q8Out{ctx.window().start, id, seen[0].name});
                            }
                          })
               .Name("New sellers"));
  } else if (q == "q11" || q == "q12") {
    auto keyed = b.BidFields<int64_t>([](const Bid& x) {
                    return x.bidder;
                  }).KeyBy([](const int64_t& bidder) { return bidder; });
    auto emit = [](const int64_t& bidder, WindowContext<TimeWindow>& ctx,
                   std::span<const int64_t> n, Collector<SessionOut>& out) {
      out.Collect(SessionOut{bidder, n[0], ctx.window().start, ctx.window().end});
    };
    if (q == "q11") {
      b.Sink(keyed.Window(sluice::EventTimeSessionWindows::WithGap(Seconds(10)))
                 .Aggregate(CountAgg<int64_t>(), emit)
                 .Name("Bid sessions"));
    } else {
      b.Sink(keyed.Window(sluice::TumblingProcessingTimeWindows::Of(Seconds(10)))
                 .Aggregate(CountAgg<int64_t>(), emit)
                 .Name("Bids per bidder (processing time)"));
    }
  } else if (q == "q13") {
    // Nexmark's side input: 10 000 (key, value) rows; bids join on auction % 10000.
    auto side = std::make_shared<std::vector<FixedString<15>>>(10'000);
    for (int i = 0; i < 10'000; ++i) (*side)[static_cast<size_t>(i)].Assign(absl::StrCat(i));
    b.Sink(b.Bids().Map([side](const Bid& x) {
      return Q13Out{x, (*side)[static_cast<size_t>(x.auction % 10'000)]};
    }));
  } else if (q == "q14") {
    b.Sink(b.Bids()
               .Filter([](const Bid& x) {
                 int64_t eur = x.price * 908;  // milli-euros
                 return eur > 1'000'000'000 && eur < 50'000'000'000;
               })
               .Map([](const Bid& x) {
                 int64_t hour = (x.date_time / 3'600'000) % 24;
                 const char* type = hour >= 8 && hour <= 18   ? "dayTime"
                                    : hour <= 6 || hour >= 20 ? "nightTime"
                                                              : "otherTime";
                 int64_t c = std::count(x.extra.data, x.extra.data + x.extra.size, 'c');
                 return Q14Out{x.auction, x.bidder, x.price * 908, x.date_time, c, type};
               }));
  } else if (q == "q15") {
    b.Sink(b.Bids()
               .KeyBy([](const Bid& x) { return x.date_time / kDayMs; })
               .Process(DailyStats<int64_t>())
               .Name("Daily statistics"));
  } else if (q == "q16") {
    using K = std::pair<std::string, int64_t>;
    b.Sink(b.Bids()
               .KeyBy([](const Bid& x) {
                 return K(std::string(x.channel.view()), x.date_time / kDayMs);
               })
               .Process(DailyStats<K>())
               .Name("Daily channel statistics"));
  } else if (q == "q17") {
    using K = std::pair<int64_t, int64_t>;
    b.Sink(b.Bids()
               .KeyBy([](const Bid& x) { return K(x.auction, x.date_time / kDayMs); })
               .Process([state = sluice::ValueState<Q17Out>()](const Bid& x,
                                                               sluice::KeyedProcessContext<K>& ctx,
                                                               Collector<Q17Out>& out) mutable {
                 // Lambdas get no Open: the handle is taken on first use.
                 if (!state) {
                   state = ctx.runtime().GetState(sluice::ValueStateDescriptor<Q17Out>("stats"));
                 }
                 Q17Out s = state.Value().value_or(
                     Q17Out{x.auction, x.date_time / kDayMs, {}, INT64_MAX, 0, 0});
                 ++s.bids[0];
                 ++s.bids[Rank(x.price)];
                 s.min_price = std::min(s.min_price, x.price);
                 s.max_price = std::max(s.max_price, x.price);
                 s.sum_price += x.price;
                 state.Update(s);
                 out.Collect(s);
               })
               .Name("Daily auction statistics"));
  } else if (q == "q18") {
    using K = std::pair<int64_t, int64_t>;
    b.Sink(b.Bids()
               .KeyBy([](const Bid& x) { return K(x.bidder, x.auction); })
               .Process([last = sluice::ValueState<int64_t>()](const Bid& x,
                                                               sluice::KeyedProcessContext<K>& ctx,
                                                               Collector<BidOut>& out) mutable {
                 if (!last)
                   last = ctx.runtime().GetState(sluice::ValueStateDescriptor<int64_t>("last"));
                 std::optional<int64_t> t = last.Value();
                 if (!t || x.date_time >= *t) {  // ROW_NUMBER() ... ORDER BY dateTime DESC = 1
                   last.Update(x.date_time);
                   out.Collect(BidOut{x});
                 }
               })
               .Name("Last bid per bidder and auction"));
  } else if (q == "q19") {
    b.Sink(b.Bids()
               .KeyBy([](const Bid& x) { return x.auction; })
               .Process([top = sluice::ValueState<std::vector<Q7Bid>>()](
                            const Bid& x, sluice::KeyedProcessContext<int64_t>& ctx,
                            Collector<BidOut>& out) mutable {
                 if (!top) {
                   top = ctx.runtime().GetState(
                       sluice::ValueStateDescriptor<std::vector<Q7Bid>>("top10"));
                 }
                 std::vector<Q7Bid> v = top.Value().value_or(std::vector<Q7Bid>{});
                 if (v.size() == 10 && x.price <= v.back().price) return;
                 Q7Bid nb{x.auction, x.bidder, x.price, x.date_time};
                 auto pos = std::upper_bound(
                     v.begin(), v.end(), nb,
                     [](const Q7Bid& a, const Q7Bid& c) { return a.price > c.price; });
                 v.insert(pos, nb);
                 if (v.size() > 10) v.pop_back();
                 top.Update(std::move(v));
                 out.Collect(BidOut{x});
               })
               .Name("Top 10 bids per auction"));
  } else if (q == "q20") {
    auto auctions = b.Auctions().Filter([](const Auction& a) { return a.category == 10; });
    b.Sink(auctions.KeyBy([](const Auction& a) { return a.id; })
               .Connect(b.Bids().KeyBy([](const Bid& x) { return x.auction; }))
               .Process(Q20Join())
               .Name("Q20 join"));
  } else if (q == "q21") {
    b.Sink(b.Bids().FlatMap<Q21Out>([](const Bid& x, Collector<Q21Out>& out) {
      Q21Out r{x.auction, x.bidder, x.price, x.channel, {}};
      std::string_view ch = x.channel.view();
      auto lower_is = [ch](std::string_view s) {
        if (ch.size() != s.size()) return false;
        for (size_t i = 0; i < s.size(); ++i) {
          if (static_cast<char>(std::tolower(static_cast<unsigned char>(ch[i]))) != s[i]) {
            return false;
          }
        }
        return true;
      };
      if (lower_is("apple")) {
        r.channel_id.Assign("0");
      } else if (lower_is("google")) {
        r.channel_id.Assign("1");
      } else if (lower_is("facebook")) {
        r.channel_id.Assign("2");
      } else if (lower_is("baidu")) {
        r.channel_id.Assign("3");
      } else {
        // REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)
        std::string_view url = x.url.view();
        size_t at = std::string_view::npos;
        for (size_t p = url.find("channel_id="); p != std::string_view::npos;
             p = url.find("channel_id=", p + 1)) {
          if (p == 0 || url[p - 1] == '&') {
            at = p + 11;
            break;
          }
        }
        if (at == std::string_view::npos) return;  // channel_id IS NULL: filtered out
        std::string_view id = url.substr(at, url.find('&', at) - at);
        r.channel_id.Assign(id.substr(0, 15));
      }
      out.Collect(r);
    }));
  } else if (q == "q22") {
    b.Sink(b.Bids().Map([](const Bid& x) {
      Q22Out r{x.auction, x.bidder, x.price, x.channel, {}, {}, {}};
      // SPLIT_INDEX(url, '/', 3), 4 and 5.
      std::string_view url = x.url.view();
      FixedString<15>* dirs[] = {&r.dir1, &r.dir2, &r.dir3};
      size_t start = 0;
      for (int i = 0; i <= 5 && start <= url.size(); ++i) {
        size_t slash = url.find('/', start);
        std::string_view part = url.substr(
            start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
        if (i >= 3) dirs[i - 3]->Assign(part.substr(0, 15));
        if (slash == std::string_view::npos) break;
        start = slash + 1;
      }
      return r;
    }));
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown query '", q, "'"));
  }
  return absl::OkStatus();
}

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

}  // namespace

const std::vector<QueryInfo>& Queries() {
  static const std::vector<QueryInfo> kQueries = {
      {"q0", true, true, "pass-through of bids"},
      {"q1", true, true, "bid prices in euros"},
      {"q2", true, true, "bids of auctions with id % 123 == 0"},
      {"q3", true, false, "category-10 auctions joined with their seller in OR, ID or CA"},
      {"q4", true, false, "average winning price per category"},
      {"q5", true, false, "hottest auctions in 10 s windows sliding by 2 s"},
      {"q7", true, false, "highest bids in 10 s tumbling windows"},
      {"q8", true, false, "new people who opened an auction in the same 10 s window"},
      {"q9", true, false, "winning bid of each auction"},
      {"q11", true, false, "bids per bidder session (gap 10 s)"},
      {"q12", false, false, "bids per bidder in 10 s processing-time windows"},
      {"q13", false, true, "bids joined with a bounded side input"},
      {"q14", false, true, "filtered, converted and classified bids"},
      {"q15", false, false, "daily bidding statistics with distinct counts"},
      {"q16", false, false, "daily statistics per channel"},
      {"q17", false, false, "daily statistics per auction"},
      {"q18", false, false, "last bid per bidder and auction"},
      {"q19", false, false, "top 10 bids per auction"},
      {"q20", false, false, "bids joined with their category-10 auction"},
      {"q21", false, true, "bids with a channel id"},
      {"q22", false, true, "bids with their URL split into directories"},
  };
  return kQueries;
}

const QueryInfo* FindQuery(const std::string& name) {
  for (const QueryInfo& q : Queries()) {
    if (name == q.name) return &q;
  }
  return nullptr;
}

absl::StatusOr<RunResult> RunQuery(const RunOptions& options) {
  const QueryInfo* info = FindQuery(options.query);
  if (info == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown query '", options.query, "'"));
  }
  if (options.input.empty()) SLUICE_RETURN_IF_ERROR(options.generator.Validate());

  sluice::RuntimeOptions runtime;
  runtime.parallelism = options.parallelism;
  runtime.worker_threads = options.parallelism;
  runtime.execution_mode = sluice::ExecutionMode::kStreaming;
  runtime.state_backend = options.state_backend;
  std::string rocksdb_dir;
  if (options.state_backend == sluice::StateBackendKind::kRocksDb) {
    rocksdb_dir = options.rocksdb_dir;
    if (rocksdb_dir.empty()) {
      rocksdb_dir = absl::StrCat(std::filesystem::temp_directory_path().string(),
                                 "/sluice-nexmark-rocksdb-", getpid());
    }
    runtime.rocksdb.local_dir = rocksdb_dir;
    if (options.rocksdb_window_cache_bytes >= 0) {
      runtime.rocksdb.window_cache_bytes = options.rocksdb_window_cache_bytes;
    }
  }
  if (options.checkpoint_interval_ms > 0) {
    runtime.checkpointing.interval = absl::Milliseconds(options.checkpoint_interval_ms);
    runtime.checkpointing.directory = options.checkpoint_dir;
    runtime.checkpointing.incremental = options.incremental_checkpoints;
  }

  auto state = std::make_shared<OutputState>();
  if (!options.output.empty()) {
    state->file = std::fopen(options.output.c_str(), "wb");
    if (state->file == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("cannot create output file ", options.output, ": ", std::strerror(errno)));
    }
  }
  struct Closer {
    OutputState* s;
    ~Closer() {
      if (s->file != nullptr) std::fclose(s->file);
    }
  } closer{state.get()};

  sluice::StreamEnvironment env(runtime);
  bool latency = info->stateless;
  auto strategy = sluice::WatermarkStrategy<Event>::ForBoundedOutOfOrderness(absl::Seconds(4))
                      .WithTimestampAssigner([](const Event& e) { return EventTime(e); });
  auto read = std::make_shared<std::atomic<int64_t>>(0);
  sluice::DataStream<Event> events =
      options.input.empty()
          ? (latency ? env.FromSource(GeneratorEventSource(options.generator, true))
                     : env.FromSource(GeneratorEventSource(options.generator), strategy))
          : (latency ? env.FromSource(EventFileSource(options.input, true, read))
                     : env.FromSource(EventFileSource(options.input, false, read), strategy));
  SLUICE_RETURN_IF_ERROR(Build(options.query, Builder{events, state, latency}));

  double cpu0 = CpuSeconds();
  auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<sluice::JobHandle> job = env.ExecuteAsync(absl::StrCat("nexmark-", options.query));
  absl::Status status = job.ok() ? job->Wait() : job.status();
  auto t1 = std::chrono::steady_clock::now();
  double cpu1 = CpuSeconds();
  if (!rocksdb_dir.empty() && options.rocksdb_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(rocksdb_dir, ec);
  }
  SLUICE_RETURN_IF_ERROR(status);

  if (state->file != nullptr && !state->upserts.empty()) {
    for (const auto& [k, line] : state->upserts) std::fputs(line.c_str(), state->file);
  }
  if (state->file != nullptr) {
    int rc = std::fclose(state->file);
    state->file = nullptr;
    if (rc != 0) return absl::DataLossError(absl::StrCat("closing ", options.output, " failed"));
  }

  RunResult r;
  r.events = options.input.empty() ? options.generator.events : read->load();
  r.results = state->results.load();
  r.wall_seconds = std::chrono::duration<double>(t1 - t0).count();
  r.cpu_seconds = cpu1 - cpu0;
  if (options.checkpoint_interval_ms > 0) {
    r.checkpoints = job->LastCompletedCheckpoint();
    r.checkpoint_sync_us = 0;
    for (const auto& [name, value] : job->Counters()) {
      if (absl::EndsWith(name, ".checkpointSyncMicros")) r.checkpoint_sync_us += value;
    }
  }
  if (latency && state->latency.count() > 0) {
    r.latency_samples = state->latency.count();
    r.latency_p50_us = state->latency.Quantile(0.50);
    r.latency_p99_us = state->latency.Quantile(0.99);
    r.latency_max_us = state->latency.max();
  }
  return r;
}

}  // namespace nexmark
