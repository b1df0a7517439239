// Serializers: how state values, keys and namespaces become bytes (RocksDB, checkpoints,
// savepoints).
//
// Built in: arithmetic types and enums, trivially copyable structs, std::string, std::vector,
// std::array, std::optional, std::pair, std::tuple, std::map, std::set, absl::flat_hash_map, any
// combination of those, and protobuf messages (detected by SerializeToString / ParseFromArray).
// Every encoding is self-delimiting, so values can be concatenated and read back in order.
//
// A user type gets a serializer by specializing sluice::Serializer:
//
//   template <> struct sluice::Serializer<Money> {
//     static constexpr bool kCanonical = true;  // equal values <=> equal bytes (optional)
//     static void Write(const Money& m, std::string* out) {
//       sluice::Serializer<int64_t>::Write(m.cents, out);
//       sluice::Serializer<std::string>::Write(m.currency, out);
//     }
//     static bool Read(sluice::ByteReader& in, Money* m) {
//       return sluice::Serializer<int64_t>::Read(in, &m->cents) &&
//              sluice::Serializer<std::string>::Read(in, &m->currency);
//     }
//   };
//
// A serializer names its format so that a restore can tell whether it reads what a savepoint
// holds (state/serializer_identity.h): kName (default: the type's mangled name) and kVersion
// (default 1); bump kVersion when the encoding changes, and declare the old formats the new Read
// still decodes with `static bool ReadsFormat(std::string_view name, uint32_t version)`:
//
//   template <> struct sluice::Serializer<Money> {
//     static constexpr std::string_view kName = "Money";
//     static constexpr uint32_t kVersion = 2;  // v2 added the currency
//     static bool ReadsFormat(std::string_view name, uint32_t version) {
//       return name == "Money" && version <= 2;  // Read tells v1 records by ... (its own rule)
//     }
//     ...
//   };
//
// kCanonical marks encodings where equal values have equal bytes; RocksDB compares keys (and
// MapState user keys) as bytes, so it requires canonical key encodings (floating point and
// structs with padding are not; protobuf messages are not).
//
// Integers and trivially copyable types are written in the machine's byte order (little-endian
// on every platform Sluice builds for); lengths are LEB128 varints.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace sluice {

// Reads an encoding front to back. Every Read returns false (and reads nothing more) when the
// input is too short or malformed.
class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}

  bool ReadRaw(void* dst, size_t n) {
    if (data_.size() < n) return false;
    if (n > 0) std::memcpy(dst, data_.data(), n);
    data_.remove_prefix(n);
    return true;
  }
  bool ReadBytes(size_t n, std::string_view* out) {
    if (data_.size() < n) return false;
    *out = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }
  bool ReadVarint(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
      if (data_.empty()) return false;
      const auto byte = static_cast<uint8_t>(data_.front());
      data_.remove_prefix(1);
      result |= uint64_t{byte & 0x7fu} << shift;
      if ((byte & 0x80u) == 0) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  // A varint length followed by that many bytes.
  bool ReadLengthPrefixed(std::string_view* out) {
    uint64_t n = 0;
    return ReadVarint(&n) && n <= data_.size() && ReadBytes(static_cast<size_t>(n), out);
  }
  bool empty() const { return data_.empty(); }
  size_t remaining() const { return data_.size(); }
  std::string_view rest() const { return data_; }

 private:
  std::string_view data_;
};

inline void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
inline void PutLengthPrefixed(std::string_view bytes, std::string* out) {
  PutVarint(bytes.size(), out);
  out->append(bytes);
}

// Specialize for user types (see the top of this file).
template <typename T, typename Enable = void>
struct Serializer;

template <typename T>
concept Serializable = requires(const T& v, T* p, std::string* out, ByteReader& in) {
  Serializer<T>::Write(v, out);
  { Serializer<T>::Read(in, p) } -> std::same_as<bool>;
};

// True when Serializer<T> declares kCanonical = true.
template <typename T>
constexpr bool IsCanonicallySerialized() {
  if constexpr (requires { Serializer<T>::kCanonical; }) {
    return Serializer<T>::kCanonical;
  } else {
    return false;
  }
}

namespace internal {
template <typename T>
concept ProtobufLike = requires(const T& m, T& mm, std::string* s, const void* p, int n) {
  { m.SerializeToString(s) } -> std::same_as<bool>;
  { mm.ParseFromArray(p, n) } -> std::same_as<bool>;
  m.ByteSizeLong();
};
template <typename T>
concept PlainBytes = std::is_trivially_copyable_v<T> && !ProtobufLike<T>;

// The format of a type stored as its object bytes: "bool", "int64", "uint8", "float64" for
// arithmetic types; "enum:<mangled name>:<size>" and "raw:<mangled name>:<size>" otherwise (the
// name, as the C++ ABI mangles it, has only letters, digits and '_').
template <typename T>
std::string PlainFormatName() {
  if constexpr (std::is_same_v<T, bool>) {
    return "bool";
  } else if constexpr (std::is_integral_v<T>) {
    return (std::is_signed_v<T> ? "int" : "uint") + std::to_string(8 * sizeof(T));
  } else if constexpr (std::is_floating_point_v<T>) {
    return "float" + std::to_string(8 * sizeof(T));
  } else {
    return std::string(std::is_enum_v<T> ? "enum:" : "raw:") + typeid(T).name() + ":" +
           std::to_string(sizeof(T));
  }
}

template <typename C, typename E>
bool ReadSequence(ByteReader& in, C* out) {
  uint64_t n = 0;
  if (!in.ReadVarint(&n) || n > in.remaining()) return false;  // every element takes >= 1 byte
  out->clear();
  for (uint64_t i = 0; i < n; ++i) {
    E e{};
    if (!Serializer<E>::Read(in, &e)) return false;
    if constexpr (requires { out->push_back(std::move(e)); }) {
      out->push_back(std::move(e));
    } else {
      out->insert(std::move(e));
    }
  }
  return true;
}
}  // namespace internal

// Arithmetic types, enums and trivially copyable structs: their object bytes. Canonical when the
// type has a unique object representation (no padding, no floating point).
template <typename T>
  requires internal::PlainBytes<T>
struct Serializer<T> {
  static constexpr bool kCanonical = std::has_unique_object_representations_v<T>;
  static std::string FormatName() { return internal::PlainFormatName<T>(); }
  using FormatArgs = std::tuple<>;
  static void Write(const T& v, std::string* out) {
    out->append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  static bool Read(ByteReader& in, T* v) { return in.ReadRaw(v, sizeof(T)); }
};

template <>
struct Serializer<std::string> {
  static constexpr bool kCanonical = true;
  static std::string FormatName() { return "string"; }
  using FormatArgs = std::tuple<>;
  static void Write(const std::string& v, std::string* out) { PutLengthPrefixed(v, out); }
  static bool Read(ByteReader& in, std::string* v) {
    std::string_view bytes;
    if (!in.ReadLengthPrefixed(&bytes)) return false;
    v->assign(bytes);
    return true;
  }
};

template <typename E>
  requires(!internal::PlainBytes<std::vector<E>> && Serializable<E>)
struct Serializer<std::vector<E>> {
  static constexpr bool kCanonical = IsCanonicallySerialized<E>();
  static std::string FormatName() { return "vector"; }
  using FormatArgs = std::tuple<E>;
  static void Write(const std::vector<E>& v, std::string* out) {
    PutVarint(v.size(), out);
    for (const E& e : v) Serializer<E>::Write(e, out);
  }
  static bool Read(ByteReader& in, std::vector<E>* v) {
    return internal::ReadSequence<std::vector<E>, E>(in, v);
  }
};

template <typename E>
  requires Serializable<E>
struct Serializer<std::set<E>> {
  static constexpr bool kCanonical = IsCanonicallySerialized<E>();
  static std::string FormatName() { return "set"; }
  using FormatArgs = std::tuple<E>;
  static void Write(const std::set<E>& v, std::string* out) {
    PutVarint(v.size(), out);
    for (const E& e : v) Serializer<E>::Write(e, out);
  }
  static bool Read(ByteReader& in, std::set<E>* v) {
    return internal::ReadSequence<std::set<E>, E>(in, v);
  }
};

template <typename E, size_t N>
  requires(!internal::PlainBytes<std::array<E, N>> && Serializable<E>)
struct Serializer<std::array<E, N>> {
  static constexpr bool kCanonical = IsCanonicallySerialized<E>();
  static std::string FormatName() { return "array[" + std::to_string(N) + "]"; }
  using FormatArgs = std::tuple<E>;
  static void Write(const std::array<E, N>& v, std::string* out) {
    for (const E& e : v) Serializer<E>::Write(e, out);
  }
  static bool Read(ByteReader& in, std::array<E, N>* v) {
    for (E& e : *v) {
      if (!Serializer<E>::Read(in, &e)) return false;
    }
    return true;
  }
};

template <typename E>
  requires(!internal::PlainBytes<std::optional<E>> && Serializable<E>)
struct Serializer<std::optional<E>> {
  static constexpr bool kCanonical = IsCanonicallySerialized<E>();
  static std::string FormatName() { return "optional"; }
  using FormatArgs = std::tuple<E>;
  static void Write(const std::optional<E>& v, std::string* out) {
    out->push_back(v.has_value() ? 1 : 0);
    if (v.has_value()) Serializer<E>::Write(*v, out);
  }
  static bool Read(ByteReader& in, std::optional<E>* v) {
    uint8_t present = 0;
    if (!in.ReadRaw(&present, 1) || present > 1) return false;
    if (present == 0) {
      v->reset();
      return true;
    }
    E e{};
    if (!Serializer<E>::Read(in, &e)) return false;
    *v = std::move(e);
    return true;
  }
};

template <typename A, typename B>
  requires(!internal::PlainBytes<std::pair<A, B>> && Serializable<A> && Serializable<B>)
struct Serializer<std::pair<A, B>> {
  static constexpr bool kCanonical = IsCanonicallySerialized<A>() && IsCanonicallySerialized<B>();
  static std::string FormatName() { return "pair"; }
  using FormatArgs = std::tuple<A, B>;
  static void Write(const std::pair<A, B>& v, std::string* out) {
    Serializer<A>::Write(v.first, out);
    Serializer<B>::Write(v.second, out);
  }
  static bool Read(ByteReader& in, std::pair<A, B>* v) {
    return Serializer<A>::Read(in, &v->first) && Serializer<B>::Read(in, &v->second);
  }
};

template <typename... Ts>
  requires(!internal::PlainBytes<std::tuple<Ts...>> && (Serializable<Ts> && ...))
struct Serializer<std::tuple<Ts...>> {
  static constexpr bool kCanonical = (IsCanonicallySerialized<Ts>() && ...);
  static std::string FormatName() { return "tuple"; }
  using FormatArgs = std::tuple<Ts...>;
  static void Write(const std::tuple<Ts...>& v, std::string* out) {
    std::apply([out](const Ts&... e) { (Serializer<Ts>::Write(e, out), ...); }, v);
  }
  static bool Read(ByteReader& in, std::tuple<Ts...>* v) {
    return std::apply([&in](Ts&... e) { return (Serializer<Ts>::Read(in, &e) && ...); }, *v);
  }
};

namespace internal {
template <typename M>
struct MapSerializer {
  using K = typename M::key_type;
  using V = typename M::mapped_type;
  // std::map and absl::flat_hash_map share the format.
  static std::string FormatName() { return "map"; }
  using FormatArgs = std::tuple<K, V>;
  static void Write(const M& m, std::string* out) {
    PutVarint(m.size(), out);
    for (const auto& [k, v] : m) {
      Serializer<K>::Write(k, out);
      Serializer<V>::Write(v, out);
    }
  }
  static bool Read(ByteReader& in, M* m) {
    uint64_t n = 0;
    if (!in.ReadVarint(&n) || n > in.remaining()) return false;
    m->clear();
    for (uint64_t i = 0; i < n; ++i) {
      K k{};
      V v{};
      if (!Serializer<K>::Read(in, &k) || !Serializer<V>::Read(in, &v)) return false;
      m->insert_or_assign(std::move(k), std::move(v));
    }
    return true;
  }
};
}  // namespace internal

template <typename K, typename V, typename C, typename A>
  requires(Serializable<K> && Serializable<V>)
struct Serializer<std::map<K, V, C, A>> : internal::MapSerializer<std::map<K, V, C, A>> {
  static constexpr bool kCanonical = IsCanonicallySerialized<K>() && IsCanonicallySerialized<V>();
};
// Iteration order is unspecified, so never canonical.
template <typename K, typename V, typename H, typename E, typename A>
  requires(Serializable<K> && Serializable<V>)
struct Serializer<absl::flat_hash_map<K, V, H, E, A>>
    : internal::MapSerializer<absl::flat_hash_map<K, V, H, E, A>> {};

// Protobuf messages: a length-prefixed serialized message.
template <typename T>
  requires internal::ProtobufLike<T>
struct Serializer<T> {
  // Protobuf messages evolve compatibly by their own rules: the message name is the format.
  static std::string FormatName() {
    if constexpr (requires { T().GetTypeName(); }) {
      return "protobuf:" + std::string(T().GetTypeName());
    } else {
      return std::string("protobuf:") + typeid(T).name();
    }
  }
  using FormatArgs = std::tuple<>;
  static void Write(const T& m, std::string* out) {
    std::string bytes;
    m.SerializeToString(&bytes);
    PutLengthPrefixed(bytes, out);
  }
  static bool Read(ByteReader& in, T* m) {
    std::string_view bytes;
    return in.ReadLengthPrefixed(&bytes) &&
           m->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
  }
};

// Convenience: the encoding of `v` as a new string, and decoding a whole string.
template <Serializable T>
std::string SerializeToString(const T& v) {
  std::string out;
  Serializer<T>::Write(v, &out);
  return out;
}
template <Serializable T>
bool DeserializeFromString(std::string_view bytes, T* v) {
  ByteReader in(bytes);
  return Serializer<T>::Read(in, v) && in.empty();
}

}  // namespace sluice
