// The Nexmark event generator, after Flink's nexmark repository (NexmarkGenerator,
// GeneratorConfig, PersonGenerator, AuctionGenerator, BidGenerator): proportions 1:3:46, ids
// derived from the event number, active people and in-flight auctions, hot auctions / bidders /
// sellers, event time advancing at a configured event rate, and an optional out-of-order delay.
//
//   nexmark::GeneratorConfig config{.events = 1'000'000};
//   nexmark::Generator gen(config);
//   nexmark::Event e = gen.Generate(17);          // event number 17, the same in every run
//   env.FromSource(nexmark::GeneratorEventSource(config), strategy);
//
// Event n is a pure function of (config, n): a parallel source lets subtask i generate the event
// numbers i, i + p, i + 2p, ... and the stream is the same at every parallelism. Differences from
// Flink (docs/nexmark.md): the random numbers come from a per-event SplitMix64 rather than one
// java.util.Random, `extra` is left empty (Flink pads events to 200/500/100 bytes on average), an
// auction's description has at most 63 characters (Flink: 99) and URLs are shorter.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <sluice/connectors/source.h>

#include "model.h"

namespace nexmark {

struct GeneratorConfig {
  // Events over all subtasks.
  int64_t events = 1'000'000;
  // Event time advances at this many events per second (Flink's nexmark.yaml: 10 M/s).
  double event_rate = 10'000'000;
  // Event time of event 0, epoch ms.
  int64_t base_time = 1'700'000'000'000;
  uint64_t seed = 1;
  int person_proportion = 1;
  int auction_proportion = 3;
  int bid_proportion = 46;
  // 1 over these: the share of bids NOT for a hot auction / by a hot bidder, auctions NOT by a hot
  // seller (Flink's defaults).
  int hot_auction_ratio = 2;
  int hot_bidders_ratio = 4;
  int hot_sellers_ratio = 4;
  int num_active_people = 1000;
  int num_in_flight_auctions = 100;
  // Out-of-order delay: with probability `prob_delayed` an event's time is moved back by a
  // uniform [0, max_delay_ms) (so it arrives after later events). Must stay below the 4 s
  // watermark bound or events would be late. 0 = in order (Flink's default).
  int64_t max_delay_ms = 0;
  double prob_delayed = 0.1;

  absl::Status Validate() const;
};

class Generator {
 public:
  explicit Generator(const GeneratorConfig& config);
  Event Generate(int64_t n) const;
  const GeneratorConfig& config() const { return config_; }

 private:
  struct Rng;
  int64_t TimestampFor(int64_t n) const;
  int64_t LastBase0PersonId(int64_t id) const;
  int64_t LastBase0AuctionId(int64_t id) const;
  int64_t NextBase0PersonId(int64_t id, Rng& r) const;
  int64_t NextBase0AuctionId(int64_t id, Rng& r) const;
  void MakePerson(int64_t id, int64_t ts, Rng& r, Person& p) const;
  void MakeAuction(int64_t n, int64_t id, int64_t ts, Rng& r, Auction& a) const;
  void MakeBid(int64_t id, int64_t ts, Rng& r, Bid& b) const;

  GeneratorConfig config_;
  int64_t total_;
  double inter_event_delay_us_;
  // Channel names and URLs (Flink caches 10 000 of them; hot channels have their own URL).
  struct Channel {
    FixedString<15> name;
    FixedString<71> url;
  };
  std::shared_ptr<const std::vector<Channel>> channels_;
  std::shared_ptr<const std::vector<Channel>> hot_channels_;
};

// A parallel, bounded Sluice source of `config.events` generated events; subtask i of p emits
// event numbers i, i + p, ... With `stamp_emission_time`, records carry the steady-clock time (µs)
// of their emission as their Sluice timestamp, for latency measurements of stateless queries
// (then use no watermark strategy). Checkpoints store the next event number.
class GeneratorEventSource : public sluice::Source<Event> {
 public:
  explicit GeneratorEventSource(GeneratorConfig config, bool stamp_emission_time = false)
      : config_(config), stamp_(stamp_emission_time) {}
  bool IsBounded() const override { return true; }
  std::string Describe() const override { return "Nexmark generator"; }
  absl::StatusOr<std::unique_ptr<sluice::SourceReader<Event>>> CreateReader(
      const sluice::SourceContext& ctx) override;

 private:
  GeneratorConfig config_;
  bool stamp_;
};

// Steady-clock microseconds (the emission stamp above).
int64_t NowMicros();

}  // namespace nexmark
