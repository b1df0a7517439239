// Nexmark's three event kinds (people, auctions, bids) as compact, trivially copyable structs.
//
//   nexmark::Event e = nexmark::Bid{.auction = 1000, .bidder = 1001, .price = 42};
//   if (const nexmark::Bid* b = std::get_if<nexmark::Bid>(&e)) { ... }
//
// Strings are FixedString<N>: inline, at most N bytes, no allocation. An Event is a
// std::variant of the three, so a record is one flat value that Sluice copies, batches and
// snapshots as raw bytes. Field meanings: /work/shared/nexmark/FORMAT.md.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "absl/strings/string_view.h"

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
