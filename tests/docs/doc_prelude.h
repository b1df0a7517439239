// What the code examples of docs/api.md assume: the record types and streams they use without
// declaring them. tests/docs compiles every example after this header (see doc_check_gen.cc).
// Streams and the environment are only declared (extern): the check compiles, it never links or
// runs, so nothing here needs a definition.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <sluice/sluice.h>

// --- Record types ----------------------------------------------------------------------------------

struct Click {
  std::string user;
  std::string page;
  int64_t time_ms = 0;
};
struct Order {
  int64_t id = 0;
  int64_t time = 0;  // event time, ms
};
struct Payment {
  int64_t order_id = 0;
  int64_t amount = 0;
};
struct Paid {
  int64_t order_id = 0;
  int64_t amount = 0;
};
struct Event {
  std::string user;
  std::string kind;
};
struct Rule {
  std::string kind;
  int64_t threshold = 0;
};
struct Alert {
  Event event;
  Rule rule;
};

// Operator and broadcast state store their values through sluice::Serializer: types with strings
// are not trivially copyable, so they get one (docs/api.md, "State").
template <>
struct sluice::Serializer<Event> {
  static void Write(const Event& e, std::string* out) {
    sluice::Serializer<std::string>::Write(e.user, out);
    sluice::Serializer<std::string>::Write(e.kind, out);
  }
  static bool Read(sluice::ByteReader& in, Event* e) {
    return sluice::Serializer<std::string>::Read(in, &e->user) &&
           sluice::Serializer<std::string>::Read(in, &e->kind);
  }
};
template <>
struct sluice::Serializer<Rule> {
  static void Write(const Rule& r, std::string* out) {
    sluice::Serializer<std::string>::Write(r.kind, out);
    sluice::Serializer<int64_t>::Write(r.threshold, out);
  }
  static bool Read(sluice::ByteReader& in, Rule* r) {
    return sluice::Serializer<std::string>::Read(in, &r->kind) &&
           sluice::Serializer<int64_t>::Read(in, &r->threshold);
  }
};

// --- Functions the window example names ------------------------------------------------------------

// Counts the clicks of a window.
class CountClicks : public sluice::AggregateFunction<Click, int64_t, int64_t> {
 public:
  int64_t CreateAccumulator() override { return 0; }
  void Add(const Click&, int64_t& count) override { ++count; }
  int64_t GetResult(const int64_t& count) override { return count; }
  void Merge(const int64_t& from, int64_t& into) override { into += from; }
};
// Formats "<page>: <count>" per window.
class PrintPageCount
    : public sluice::ProcessWindowFunction<int64_t, std::string, std::string, sluice::TimeWindow> {
 public:
  void Process(const std::string& page, Context&, std::span<const int64_t> counts,
               sluice::Collector<std::string>& out) override {
    out.Collect(page + ": " + std::to_string(counts.front()));
  }
};

// --- The environment, a source and the streams the examples start from -------------------------------

extern sluice::StreamEnvironment env;
extern sluice::CollectionSource<Click> source;
extern sluice::DataStream<Click> clicks;
extern sluice::DataStream<Click> stream;
extern sluice::DataStream<Order> orders;
extern sluice::DataStream<Payment> payments;
extern sluice::DataStream<Event> events;
extern sluice::DataStream<Rule> rules;
extern sluice::DataStream<std::string> lines;
