#include "generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace nexmark {
namespace {

constexpr int64_t kFirstPersonId = 1000;
constexpr int64_t kFirstAuctionId = 1000;
constexpr int64_t kFirstCategoryId = 10;
constexpr int kNumCategories = 5;
constexpr int kHotRatio = 100;  // HOT_AUCTION_RATIO, HOT_BIDDER_RATIO, HOT_SELLER_RATIO
constexpr int kIdLead = 10;     // PERSON_ID_LEAD, AUCTION_ID_LEAD
constexpr int kChannels = 10'000;

constexpr const char* kStates[] = {"AZ", "CA", "ID", "OR", "WA", "WY"};
constexpr const char* kCities[] = {"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland",
                                   "Bend",    "Redmond",     "Seattle",       "Kent",  "Cheyenne"};
constexpr const char* kFirstNames[] = {"Peter", "Paul",  "Luke",  "John",   "Saul",  "Vicky",
                                       "Kate",  "Julie", "Sarah", "Deiter", "Walter"};
constexpr const char* kLastNames[] = {"Shultz", "Abrams", "Spencer", "White", "Bartels",
                                      "Walton", "Smith",  "Jones",   "Noris"};
constexpr const char* kHotChannels[] = {"Google", "Facebook", "Baidu", "Apple"};

}  // namespace

// SplitMix64 seeded per event: event n's fields do not depend on which subtask makes it.
struct Generator::Rng {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound), bound > 0.
  int64_t Below(int64_t bound) {
    return static_cast<int64_t>(
        (static_cast<unsigned __int128>(Next()) * static_cast<uint64_t>(bound)) >> 64);
  }
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // StringsGenerator.nextString: 3..maxLength-1 characters, lower case with ~1/13 spaces, trimmed.
  template <size_t N>
  void String(int max_length, FixedString<N>& out) {
    int len = 3 + static_cast<int>(Below(max_length - 3));
    char buf[256];
    for (int i = 0; i < len; ++i) {
      uint64_t x = Next();
      buf[i] = (x % 13 == 0) ? ' ' : static_cast<char>('a' + (x >> 8) % 26);
    }
    int b = 0, e = len;
    while (b < e && buf[b] == ' ') ++b;
    while (e > b && buf[e - 1] == ' ') --e;
    out.Assign(std::string_view(buf + b, static_cast<size_t>(e - b)));
  }
  // PriceGenerator.nextPrice.
  int64_t Price() { return std::llround(std::pow(10.0, Unit() * 6.0) * 100.0); }
};

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

absl::Status GeneratorConfig::Validate() const {
  if (events < 0)
    return absl::InvalidArgumentError(absl::StrCat("events must be >= 0, got ", events));
  if (!(event_rate > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("event rate must be > 0, got ", event_rate));
  }
  if (person_proportion < 1 || auction_proportion < 1 || bid_proportion < 1) {
    return absl::InvalidArgumentError("person, auction and bid proportions must be >= 1");
  }
  if (hot_auction_ratio < 1 || hot_bidders_ratio < 1 || hot_sellers_ratio < 1 ||
      num_active_people < 1 || num_in_flight_auctions < 1) {
    return absl::InvalidArgumentError(
        "hot ratios, active people and in-flight auctions must be >= 1");
  }
  if (max_delay_ms < 0 || max_delay_ms >= 4000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "out-of-order delay must be in [0, 4000) ms (the queries' watermark allows 4 s), got ",
        max_delay_ms));
  }
  if (prob_delayed < 0 || prob_delayed > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("delay probability must be in [0, 1], got ", prob_delayed));
  }
  return absl::OkStatus();
}

Generator::Generator(const GeneratorConfig& config)
    : config_(config),
      total_(config.person_proportion + config.auction_proportion + config.bid_proportion),
      inter_event_delay_us_(1'000'000.0 / config.event_rate) {
  // Channel URLs as Flink's BidGenerator.getBaseUrl (shortened host), 9 in 10 with a channel id.
  Rng r{config.seed * 0x2545f4914f6cdd1dULL + 7};
  auto base_url = [&r] {
    char buf[64];
    int n = std::snprintf(buf, sizeof buf, "https://nx.io/");
    for (int part = 0; part < 3; ++part) {
      for (int i = 0; i < 5; ++i) {
        uint64_t x = r.Next();
        buf[n++] = x % 13 == 0 ? '_' : static_cast<char>('a' + (x >> 8) % 26);
      }
      buf[n++] = '/';
    }
    n += std::snprintf(buf + n, sizeof buf - static_cast<size_t>(n), "item.htm?q=1");
    return std::string(buf, static_cast<size_t>(n));
  };
  auto channels = std::make_shared<std::vector<Channel>>(kChannels);
  for (int i = 0; i < kChannels; ++i) {
    Channel& c = (*channels)[static_cast<size_t>(i)];
    c.name.Assign(absl::StrCat("channel-", i));
    std::string url = base_url();
    if (r.Below(10) > 0) {
      // Math.abs(Integer.reverse(i))
      uint32_t v = static_cast<uint32_t>(i), rev = 0;
      for (int b = 0; b < 32; ++b) rev |= ((v >> b) & 1u) << (31 - b);
      int64_t s = static_cast<int32_t>(rev);
      absl::StrAppend(&url, "&channel_id=", s < 0 ? -s : s);
    }
    c.url.Assign(url);
  }
  auto hot = std::make_shared<std::vector<Channel>>(4);
  for (int i = 0; i < 4; ++i) {
    (*hot)[static_cast<size_t>(i)].name.Assign(kHotChannels[i]);
    (*hot)[static_cast<size_t>(i)].url.Assign(base_url());
  }
  channels_ = std::move(channels);
  hot_channels_ = std::move(hot);
}

int64_t Generator::TimestampFor(int64_t n) const {
  return config_.base_time +
         static_cast<int64_t>(static_cast<double>(n) * inter_event_delay_us_) / 1000;
}

int64_t Generator::LastBase0PersonId(int64_t id) const {
  int64_t epoch = id / total_, offset = id % total_;
  if (offset >= config_.person_proportion) offset = config_.person_proportion - 1;
  return epoch * config_.person_proportion + offset;
}

int64_t Generator::LastBase0AuctionId(int64_t id) const {
  int64_t epoch = id / total_, offset = id % total_;
  if (offset < config_.person_proportion) {
    --epoch;
    offset = config_.auction_proportion - 1;
  } else if (offset >= config_.person_proportion + config_.auction_proportion) {
    offset = config_.auction_proportion - 1;
  } else {
    offset -= config_.person_proportion;
  }
  return epoch * config_.auction_proportion + offset;
}

int64_t Generator::NextBase0PersonId(int64_t id, Rng& r) const {
  int64_t num_people = LastBase0PersonId(id) + 1;
  int64_t active = std::min<int64_t>(num_people, config_.num_active_people);
  return num_people - active + r.Below(active + kIdLead);
}

int64_t Generator::NextBase0AuctionId(int64_t id, Rng& r) const {
  int64_t max_auction = LastBase0AuctionId(id);
  int64_t min_auction = std::max<int64_t>(max_auction - config_.num_in_flight_auctions, 0);
  return min_auction + r.Below(max_auction - min_auction + 1 + kIdLead);
}

void Generator::MakePerson(int64_t id, int64_t ts, Rng& r, Person& p) const {
  p.id = LastBase0PersonId(id) + kFirstPersonId;
  p.date_time = ts;
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%s %s", kFirstNames[r.Below(11)], kLastNames[r.Below(9)]);
  p.name.Assign(std::string_view(buf, static_cast<size_t>(n)));
  FixedString<15> user, host;
  r.String(7, user);
  r.String(5, host);
  n = std::snprintf(buf, sizeof buf, "%.*s@%.*s.com", static_cast<int>(user.size), user.data,
                    static_cast<int>(host.size), host.data);
  p.email.Assign(std::string_view(buf, static_cast<size_t>(n)));
  n = std::snprintf(buf, sizeof buf, "%04d %04d %04d %04d", static_cast<int>(r.Below(10000)),
                    static_cast<int>(r.Below(10000)), static_cast<int>(r.Below(10000)),
                    static_cast<int>(r.Below(10000)));
  p.credit_card.Assign(std::string_view(buf, static_cast<size_t>(n)));
  p.city.Assign(kCities[r.Below(10)]);
  p.state.Assign(kStates[r.Below(6)]);
  p.extra.size = 0;
}

void Generator::MakeAuction(int64_t n, int64_t id, int64_t ts, Rng& r, Auction& a) const {
  a.id = LastBase0AuctionId(id) + kFirstAuctionId;
  int64_t seller;
  if (r.Below(config_.hot_sellers_ratio) > 0) {
    seller = (LastBase0PersonId(id) / kHotRatio) * kHotRatio;
  } else {
    seller = NextBase0PersonId(id, r);
  }
  a.seller = seller + kFirstPersonId;
  a.category = kFirstCategoryId + r.Below(kNumCategories);
  a.initial_bid = r.Price();
  // nextAuctionLengthMs: on average until num_in_flight_auctions more auctions were generated.
  int64_t events_for_auctions =
      (static_cast<int64_t>(config_.num_in_flight_auctions) * total_) / config_.auction_proportion;
  int64_t horizon = TimestampFor(n + events_for_auctions) - ts;
  a.expires = ts + 1 + r.Below(std::max<int64_t>(horizon * 2, 1));
  a.date_time = ts;
  r.String(20, a.item_name);
  r.String(64, a.description);
  a.reserve = a.initial_bid + r.Price();
  a.extra.size = 0;
}

void Generator::MakeBid(int64_t id, int64_t ts, Rng& r, Bid& b) const {
  int64_t auction;
  if (r.Below(config_.hot_auction_ratio) > 0) {
    auction = (LastBase0AuctionId(id) / kHotRatio) * kHotRatio;
  } else {
    auction = NextBase0AuctionId(id, r);
  }
  b.auction = auction + kFirstAuctionId;
  int64_t bidder;
  if (r.Below(config_.hot_bidders_ratio) > 0) {
    bidder = (LastBase0PersonId(id) / kHotRatio) * kHotRatio + 1;
  } else {
    bidder = NextBase0PersonId(id, r);
  }
  b.bidder = bidder + kFirstPersonId;
  b.price = r.Price();
  const Channel& c = r.Below(2) > 0 ? (*hot_channels_)[static_cast<size_t>(r.Below(4))]
                                    : (*channels_)[static_cast<size_t>(r.Below(kChannels))];
  b.channel = c.name;
  b.url = c.url;
  b.date_time = ts;
  b.extra.size = 0;
}

Event Generator::Generate(int64_t n) const {
  Rng r{config_.seed ^ (static_cast<uint64_t>(n) * 0xd1342543de82ef95ULL)};
  int64_t ts = TimestampFor(n);
  if (config_.max_delay_ms > 0 && r.Unit() < config_.prob_delayed) {
    ts -= r.Below(config_.max_delay_ms);
  }
  int64_t rem = n % total_;
  if (rem < config_.person_proportion) {
    Event e(std::in_place_index<0>);
    MakePerson(n, ts, r, std::get<0>(e));
    return e;
  }
  if (rem < config_.person_proportion + config_.auction_proportion) {
    Event e(std::in_place_index<1>);
    MakeAuction(n, n, ts, r, std::get<1>(e));
    return e;
  }
  Event e(std::in_place_index<2>);
  MakeBid(n, ts, r, std::get<2>(e));
  return e;
}

namespace {

class GeneratorReader : public sluice::SourceReader<Event> {
 public:
  GeneratorReader(const GeneratorConfig& config, int64_t first, int64_t stride, bool stamp)
      : gen_(config),
        next_(first),
        first_(first),
        stride_(stride),
        end_(config.events),
        stamp_(stamp) {}

  absl::StatusOr<sluice::PollResult> PollNext(sluice::Collector<Event>& out,
                                              int max_records) override {
    int64_t now = stamp_ ? NowMicros() : sluice::kNoTimestamp;
    for (int i = 0; i < max_records && next_ < end_; ++i, next_ += stride_) {
      out.CollectWithTimestamp(gen_.Generate(next_), now);
    }
    return next_ >= end_ ? sluice::PollResult::End() : sluice::PollResult::More();
  }

  absl::StatusOr<std::string> SnapshotState(int64_t) override { return absl::StrCat(next_); }
  absl::Status RestoreState(std::string_view state) override {
    int64_t next = 0;
    if (!absl::SimpleAtoi(absl::string_view(state.data(), state.size()), &next) || next < first_ ||
        (next - first_) % stride_ != 0) {
      return absl::DataLossError(absl::StrCat("Nexmark generator: bad checkpointed position '",
                                              absl::string_view(state.data(), state.size()), "'"));
    }
    next_ = next;
    return absl::OkStatus();
  }

 private:
  Generator gen_;
  int64_t next_;
  int64_t first_;
  int64_t stride_;
  int64_t end_;
  bool stamp_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<sluice::SourceReader<Event>>> GeneratorEventSource::CreateReader(
    const sluice::SourceContext& ctx) {
  if (absl::Status s = config_.Validate(); !s.ok()) return s;
  return std::unique_ptr<sluice::SourceReader<Event>>(
      new GeneratorReader(config_, ctx.subtask_index(), ctx.parallelism(), stamp_));
}

}  // namespace nexmark
