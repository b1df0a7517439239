// Serializer identities: what a snapshot records of the format of each state (Flink's serializer
// snapshots), so that a restore refuses bytes its serializers do not read instead of
// reinterpreting them (a savepoint's ValueState<int64_t> read as ValueState<double>).
//
// An identity is a string `name[<arg,...>][@version]`:
//   * built-in formats are structural: "int64", "float64", "bool", "string", "vector<int64>",
//     "map<string,optional<float64>>", "pair<int32,raw:N4demo5PointE:16>", "protobuf:demo.Order";
//   * a user Serializer is "<kName>@<kVersion>" ("type:<mangled name>@1" without them).
// Names never contain '<', '>', ',' or '@'.
//
// SerializerReads<T>(old) is true when Serializer<T> reads bytes written under identity `old`:
// built-in formats when the structure is the same and every part reads its old part (so
// vector<Money> at version 3 reads vector<Money@2> when Money's serializer says it reads version 2);
// a user serializer when its ReadsFormat(name, version) says so (a built-in leaf format such as
// "int64" or "raw:N4demo5PointE:16" is asked with version 0: a serializer that takes over a type
// stored as its bytes can declare it reads that layout), or else when name and version are equal.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <tuple>
#include <typeinfo>
#include <utility>

#include <sluice/state/serializer.h>

namespace sluice {
namespace internal {

// A user serializer's name must not contain the identity grammar's punctuation.
constexpr bool ValidFormatName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (c == '<' || c == '>' || c == ',' || c == '@') return false;
  }
  return true;
}

template <typename T>
concept BuiltInFormat = requires {
  Serializer<T>::FormatName();
  typename Serializer<T>::FormatArgs;
};

template <typename T>
std::string UserFormatName() {
  if constexpr (requires { Serializer<T>::kName; }) {
    static_assert(ValidFormatName(std::string_view(Serializer<T>::kName)),
                  "Serializer<T>::kName must be non-empty, without '<', '>', ',' or '@'");
    return std::string(std::string_view(Serializer<T>::kName));
  } else {
    return std::string("type:") + typeid(T).name();
  }
}

template <typename T>
uint32_t UserFormatVersion() {
  if constexpr (requires { Serializer<T>::kVersion; }) {
    return static_cast<uint32_t>(Serializer<T>::kVersion);
  } else {
    return 1;
  }
}

// Reads an identity front to back.
struct IdentityCursor {
  std::string_view rest;

  bool Take(std::string_view s) {
    if (rest.substr(0, s.size()) != s) return false;
    rest.remove_prefix(s.size());
    return true;
  }
  // A name with its "@version", up to the next '<', '>' or ','.
  std::string_view Leaf() {
    const size_t end = rest.find_first_of("<>,");
    std::string_view leaf = rest.substr(0, end);
    rest.remove_prefix(leaf.size());
    return leaf;
  }
};

template <typename T>
bool ReadsIdentityPrefix(IdentityCursor& c);

template <typename Tuple, size_t... I>
bool ReadsArgs(IdentityCursor& c, std::index_sequence<I...>) {
  return ((c.Take(I == 0 ? "" : ",") && ReadsIdentityPrefix<std::tuple_element_t<I, Tuple>>(c)) &&
          ...);
}

template <typename T>
bool ReadsIdentityPrefix(IdentityCursor& c) {
  if constexpr (BuiltInFormat<T>) {
    using Args = typename Serializer<T>::FormatArgs;
    constexpr size_t n = std::tuple_size_v<Args>;
    if (!c.Take(Serializer<T>::FormatName())) return false;
    if constexpr (n == 0) {
      return c.rest.empty() || c.rest.front() != '<';
    } else {
      return c.Take("<") && ReadsArgs<Args>(c, std::make_index_sequence<n>{}) && c.Take(">");
    }
  } else {
    const std::string_view leaf = c.Leaf();
    const size_t at = leaf.rfind('@');
    std::string_view name = leaf;
    uint32_t version = 0;  // a built-in leaf format ("int64", "raw:...") has none
    if (at != std::string_view::npos) {
      name = leaf.substr(0, at);
      uint64_t v = 0;
      for (char d : leaf.substr(at + 1)) {
        if (d < '0' || d > '9') return false;
        v = v * 10 + static_cast<uint64_t>(d - '0');
        if (v > std::numeric_limits<uint32_t>::max()) return false;
      }
      if (at + 1 == leaf.size()) return false;
      version = static_cast<uint32_t>(v);
    } else if (!c.rest.empty() && c.rest.front() == '<') {
      return false;  // a built-in format with arguments: only the same structure reads it
    }
    if constexpr (requires { Serializer<T>::ReadsFormat(name, version); }) {
      return Serializer<T>::ReadsFormat(name, version);
    } else {
      return name == UserFormatName<T>() && version == UserFormatVersion<T>();
    }
  }
}

template <typename Tuple, size_t... I>
std::string ArgIdentities(std::index_sequence<I...>);

}  // namespace internal

// The identity of Serializer<T>'s format (see the top of this file).
template <typename T>
std::string SerializerIdentity() {
  if constexpr (internal::BuiltInFormat<T>) {
    using Args = typename Serializer<T>::FormatArgs;
    constexpr size_t n = std::tuple_size_v<Args>;
    std::string out = Serializer<T>::FormatName();
    if constexpr (n > 0) {
      out += "<";
      out += internal::ArgIdentities<Args>(std::make_index_sequence<n>{});
      out += ">";
    }
    return out;
  } else {
    return internal::UserFormatName<T>() + "@" + std::to_string(internal::UserFormatVersion<T>());
  }
}

// True when Serializer<T> reads bytes written under identity `written`.
template <typename T>
bool SerializerReads(std::string_view written) {
  internal::IdentityCursor c{written};
  return internal::ReadsIdentityPrefix<T>(c) && c.rest.empty();
}

// `identity` for people: mangled type names demangled ("raw:N4demo5PointE:16" becomes
// "demo::Point (16 bytes)").
std::string ReadableSerializerIdentity(std::string_view identity);

namespace internal {
template <typename Tuple, size_t... I>
std::string ArgIdentities(std::index_sequence<I...>) {
  std::string out;
  ((out += (I == 0 ? "" : ","), out += SerializerIdentity<std::tuple_element_t<I, Tuple>>()), ...);
  return out;
}
}  // namespace internal

}  // namespace sluice
