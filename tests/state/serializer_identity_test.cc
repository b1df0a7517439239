// Serializer identities (state/serializer_identity.h): the exact identity of built-in and user
// formats, which old identities a serializer reads, and their readable form.
#include <sluice/state/serializer_identity.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "absl/container/flat_hash_map.h"

namespace demo {
struct Point {
  int32_t x;
  int64_t y;
};
enum class Color : uint8_t { kRed };
struct Money {
  int64_t cents = 0;
};
struct Stamp {  // a layout first stored as its bytes, then given a serializer
  int64_t t = 0;
};
}  // namespace demo

template <>
struct sluice::Serializer<demo::Money> {
  static constexpr std::string_view kName = "Money";
  static constexpr uint32_t kVersion = 1'700'000'000;
  static bool ReadsFormat(std::string_view name, uint32_t version) {
    return name == "Money" && version >= 1'600'000'000 && version <= kVersion;
  }
  static void Write(const demo::Money& m, std::string* out) {
    Serializer<int64_t>::Write(m.cents, out);
  }
  static bool Read(ByteReader& in, demo::Money* m) {
    return Serializer<int64_t>::Read(in, &m->cents);
  }
};
template <>
struct sluice::Serializer<demo::Stamp> {
  static constexpr std::string_view kName = "Stamp";
  static bool ReadsFormat(std::string_view name, uint32_t version) {
    return (name == "Stamp" && version == 1) || (name == "int64" && version == 0);
  }
  static void Write(const demo::Stamp& s, std::string* out) {
    Serializer<int64_t>::Write(s.t, out);
  }
  static bool Read(ByteReader& in, demo::Stamp* s) { return Serializer<int64_t>::Read(in, &s->t); }
};

namespace sluice {
namespace {

TEST(SerializerIdentityTest, BuiltInFormatsNameTheirStructure) {
  EXPECT_EQ(SerializerIdentity<int64_t>(), "int64");
  EXPECT_EQ(SerializerIdentity<uint8_t>(), "uint8");
  EXPECT_EQ(SerializerIdentity<double>(), "float64");
  EXPECT_EQ(SerializerIdentity<bool>(), "bool");
  EXPECT_EQ(SerializerIdentity<std::string>(), "string");
  EXPECT_EQ((SerializerIdentity<std::vector<std::map<std::string, int32_t>>>()),
            "vector<map<string,int32>>");
  EXPECT_EQ((SerializerIdentity<absl::flat_hash_map<std::string, int32_t>>()),
            "map<string,int32>");  // the same format as std::map
  EXPECT_EQ((SerializerIdentity<std::tuple<std::string, std::array<std::string, 3>>>()),
            "tuple<string,array[3]<string>>");
  EXPECT_EQ((SerializerIdentity<std::pair<std::string, demo::Point>>()),
            "pair<string,raw:N4demo5PointE:16>");
  EXPECT_EQ(SerializerIdentity<demo::Color>(), "enum:N4demo5ColorE:1");
  EXPECT_EQ(SerializerIdentity<std::vector<demo::Money>>(), "vector<Money@1700000000>");
  EXPECT_EQ(ReadableSerializerIdentity("pair<string,raw:N4demo5PointE:16>"),
            "pair<string,demo::Point (16 bytes)>");
  EXPECT_EQ(ReadableSerializerIdentity("vector<enum:N4demo5ColorE:1>"),
            "vector<enum demo::Color (1 bytes)>");
}

TEST(SerializerIdentityTest, WhatReadsWhat) {
  EXPECT_TRUE(SerializerReads<int64_t>("int64"));
  EXPECT_FALSE(SerializerReads<double>("int64"));
  EXPECT_FALSE(SerializerReads<int64_t>("int64x@1"));
  EXPECT_FALSE(SerializerReads<std::string>("string<int64>"));
  EXPECT_TRUE((SerializerReads<std::map<std::string, int64_t>>("map<string,int64>")));
  EXPECT_FALSE((SerializerReads<std::map<std::string, int64_t>>("map<string,int32>")));
  EXPECT_FALSE((SerializerReads<std::map<std::string, int64_t>>("map<string,int64>,")));
  EXPECT_FALSE(SerializerReads<demo::Point>("raw:N4demo5PointE:1"));
  EXPECT_TRUE(SerializerReads<demo::Point>("raw:N4demo5PointE:16"));
  // A user serializer: its own versions that it declares, nested too, large version numbers.
  EXPECT_TRUE(SerializerReads<std::vector<demo::Money>>("vector<Money@1650000000>"));
  EXPECT_FALSE(SerializerReads<std::vector<demo::Money>>("vector<Money@1>"));
  EXPECT_FALSE(SerializerReads<std::vector<demo::Money>>("vector<Money@99999999999>"));
  EXPECT_FALSE(SerializerReads<demo::Money>("Money@"));
  // A serializer that took over a type stored as an int64 declares it reads that layout.
  EXPECT_TRUE(SerializerReads<demo::Stamp>("int64"));
  EXPECT_TRUE(SerializerReads<std::vector<demo::Stamp>>("vector<int64>"));
  EXPECT_FALSE(SerializerReads<demo::Stamp>("float64"));
  EXPECT_FALSE(SerializerReads<demo::Stamp>("vector<int64>"));
}

}  // namespace
}  // namespace sluice
