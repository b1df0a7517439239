// Nexmark's three event kinds (people, auctions, bids) as compact, trivially copyable structs.
//
//   nexmark::Event e = nexmark::Bid{.auction = 1000, .bidder = 1001, .price = 42};
//   if (const nexmark::Bid* b = std::get_if<nexmark::Bid>(&e)) { ... }
//
// Strings are FixedString<N>: inline, at most N bytes, no allocation. An Event is a
// std::variant of the three, so a record is one flat value that Sluice copies and batches as raw
// bytes. In checkpoints (and RocksDB) the serializers at the end of this file write each text as
// its length and bytes, not its inline capacity. Field meanings: docs/nexmark.md.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "absl/strings/string_view.h"

#include <sluice/state/serializer.h>

namespace nexmark {

// At most N bytes of text stored inline (trivially copyable).
template <size_t N>
struct FixedString {
  static_assert(N < 256);
  static constexpr size_t kCapacity = N;
  uint8_t size = 0;
  char data[N];

  // Copies `s`; the caller checks `s.size() <= N` (the generator and reader do).
  void Assign(std::string_view s) {
    size = static_cast<uint8_t>(s.size() < N ? s.size() : N);
    std::memcpy(data, s.data(), size);
  }
  std::string_view view() const { return std::string_view(data, size); }
  bool operator==(std::string_view s) const { return view() == s; }
};

struct Person {
  int64_t id = 0;
  int64_t date_time = 0;
  FixedString<31> name;
  FixedString<47> email;
  FixedString<23> credit_card;
  FixedString<23> city;
  FixedString<7> state;
  FixedString<31> extra;
};

struct Auction {
  int64_t id = 0;
  int64_t initial_bid = 0;
  int64_t reserve = 0;
  int64_t date_time = 0;
  int64_t expires = 0;
  int64_t seller = 0;
  int64_t category = 0;
  FixedString<31> item_name;
  FixedString<63> description;
  FixedString<31> extra;
};

struct Bid {
  int64_t auction = 0;
  int64_t bidder = 0;
  int64_t price = 0;
  int64_t date_time = 0;
  FixedString<15> channel;
  FixedString<71> url;
  FixedString<31> extra;
};

using Event = std::variant<Person, Auction, Bid>;

static_assert(std::is_trivially_copyable_v<Event>, "events are copied and snapshotted as bytes");

// Abseil 20220623's string_view is its own type: for StrCat of std::string_view.
inline absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// The event time of any event, in epoch milliseconds.
inline int64_t EventTime(const Event& e) {
  switch (e.index()) {
    case 0:
      return std::get<0>(e).date_time;
    case 1:
      return std::get<1>(e).date_time;
    default:
      return std::get<2>(e).date_time;
  }
}

}  // namespace nexmark

// --- Serializers: checkpoints hold the texts' bytes only ----------------------------------------

template <size_t N>
struct sluice::Serializer<nexmark::FixedString<N>> {
  static void Write(const nexmark::FixedString<N>& s, std::string* out) {
    out->push_back(static_cast<char>(s.size));
    out->append(s.data, s.size);
  }
  static bool Read(ByteReader& in, nexmark::FixedString<N>* s) {
    uint8_t n = 0;
    std::string_view bytes;
    if (!in.ReadRaw(&n, 1) || n > N || !in.ReadBytes(n, &bytes)) return false;
    s->Assign(bytes);
    return true;
  }
};

namespace nexmark::internal {
// Writes or reads the fields in order: fixed-width integers and length-prefixed texts.
inline void PutFields(std::string*) {}
template <typename F, typename... Rest>
void PutFields(std::string* out, const F& f, const Rest&... rest) {
  sluice::Serializer<F>::Write(f, out);
  PutFields(out, rest...);
}
inline bool GetFields(sluice::ByteReader&) { return true; }
template <typename F, typename... Rest>
bool GetFields(sluice::ByteReader& in, F* f, Rest*... rest) {
  return sluice::Serializer<F>::Read(in, f) && GetFields(in, rest...);
}
}  // namespace nexmark::internal

template <>
struct sluice::Serializer<nexmark::Person> {
  static void Write(const nexmark::Person& p, std::string* out) {
    nexmark::internal::PutFields(out, p.id, p.date_time, p.name, p.email, p.credit_card, p.city,
                                 p.state, p.extra);
  }
  static bool Read(ByteReader& in, nexmark::Person* p) {
    return nexmark::internal::GetFields(in, &p->id, &p->date_time, &p->name, &p->email,
                                        &p->credit_card, &p->city, &p->state, &p->extra);
  }
};
template <>
struct sluice::Serializer<nexmark::Auction> {
  static void Write(const nexmark::Auction& a, std::string* out) {
    nexmark::internal::PutFields(out, a.id, a.initial_bid, a.reserve, a.date_time, a.expires,
                                 a.seller, a.category, a.item_name, a.description, a.extra);
  }
  static bool Read(ByteReader& in, nexmark::Auction* a) {
    return nexmark::internal::GetFields(in, &a->id, &a->initial_bid, &a->reserve, &a->date_time,
                                        &a->expires, &a->seller, &a->category, &a->item_name,
                                        &a->description, &a->extra);
  }
};
template <>
struct sluice::Serializer<nexmark::Bid> {
  static void Write(const nexmark::Bid& b, std::string* out) {
    nexmark::internal::PutFields(out, b.auction, b.bidder, b.price, b.date_time, b.channel, b.url,
                                 b.extra);
  }
  static bool Read(ByteReader& in, nexmark::Bid* b) {
    return nexmark::internal::GetFields(in, &b->auction, &b->bidder, &b->price, &b->date_time,
                                        &b->channel, &b->url, &b->extra);
  }
};
// [u8 kind: 0 person, 1 auction, 2 bid][the event].
template <>
struct sluice::Serializer<nexmark::Event> {
  static void Write(const nexmark::Event& e, std::string* out) {
    out->push_back(static_cast<char>(e.index()));
    std::visit([&](const auto& v) { Serializer<std::decay_t<decltype(v)>>::Write(v, out); }, e);
  }
  static bool Read(ByteReader& in, nexmark::Event* e) {
    uint8_t kind = 0;
    if (!in.ReadRaw(&kind, 1)) return false;
    switch (kind) {
      case 0:
        return Serializer<nexmark::Person>::Read(in, &e->emplace<0>());
      case 1:
        return Serializer<nexmark::Auction>::Read(in, &e->emplace<1>());
      case 2:
        return Serializer<nexmark::Bid>::Read(in, &e->emplace<2>());
      default:
        return false;
    }
  }
};
