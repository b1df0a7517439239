// Keys, stable hashing and key groups.
//
// A key is any type that is equality-comparable, copyable and hashable with Abseil's hashing protocol
// (integers, strings, std::pair/std::tuple/std::array/std::vector of keys, and user structs that
// define `AbslHashValue`). Sluice hashes keys with its own *stable* hash state, so a key maps to the
// same key group in every process (Abseil's default hash is salted per process, which would scatter
// checkpointed state on restore).
//
//   struct UserPage {
//     int64_t user; std::string page;
//     bool operator==(const UserPage&) const = default;
//     template <typename H> friend H AbslHashValue(H h, const UserPage& k) {
//       return H::combine(std::move(h), k.user, k.page);
//     }
//   };
//   int group = sluice::KeyGroupFor(UserPage{7, "/home"}, 128);   // stable across runs
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/hash/hash.h"

namespace sluice {

// A hash state for Abseil's `AbslHashValue` protocol whose result depends only on the hashed values.
// Thread-compatible value type.
class StableHashState : public absl::hash_internal::HashStateBase<StableHashState> {
 public:
  StableHashState() = default;

  // Abseil calls this with bytes (for strings and uniquely represented values) or with arrays of
  // other hashable values.
  template <typename T>
  static StableHashState combine_contiguous(StableHashState state, const T* data, size_t size) {
    if constexpr (std::is_integral_v<T> && sizeof(T) == 1) {
      return CombineBytes(state, reinterpret_cast<const unsigned char*>(data), size);
    } else {
      for (size_t i = 0; i < size; ++i) state = combine(std::move(state), data[i]);
      return state;
    }
  }

  uint64_t Finish() const { return Mix(h_); }
  // Finish() of a fresh state given 8 bytes (CombineBytes of one word).
  [[gnu::always_inline]] static constexpr uint64_t OfWord(uint64_t word) {
    return Mix(Mix(Mix(kSeed ^ word) + kWordDone));
  }

  // The MurmurHash3 64-bit finalizer: a bijective mix with good avalanche.
  [[gnu::always_inline]] static constexpr uint64_t Mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
  }

 private:
  static StableHashState CombineBytes(StableHashState state, const unsigned char* data,
                                      size_t size) {
    uint64_t h = state.h_;
    while (size >= 8) {
      uint64_t word;
      std::memcpy(&word, data, 8);
      h = Mix(h ^ word);
      data += 8;
      size -= 8;
    }
    if (size > 0) {
      uint64_t word = 0;
      std::memcpy(&word, data, size);
      h = Mix(h ^ word ^ (uint64_t{size} << 56));
    }
    state.h_ = Mix(h + kWordDone);
    return state;
  }

  static constexpr uint64_t kSeed = 0x2545f4914f6cdd1dULL;
  static constexpr uint64_t kWordDone = 0x9e3779b97f4a7c15ULL;
  uint64_t h_ = kSeed;
};

// Types hashable through Abseil's `AbslHashValue` protocol: integers, strings, std::pair,
// std::tuple, std::array and std::vector of such, and types that define `AbslHashValue`.
template <typename K>
concept AbslHashable = absl::hash_internal::is_hashable<K>::value;

// Types usable as keys of KeyBy. (clang-format 14 misplaces requires-expressions.)
// clang-format off
template <typename K>
concept Key = std::copy_constructible<K> && std::equality_comparable<K> && AbslHashable<K> &&
              requires(StableHashState h, const K& k) {
                { StableHashState::combine(std::move(h), k) } -> std::same_as<StableHashState>;
              };
// clang-format on

// Hash of a key that is the same in every process and on every run. 8-byte integers (the
// keyed exchange's common case) take the same steps inline: their bytes as one word.
template <Key K>
inline uint64_t StableHash(const K& key) {
  if constexpr (std::is_integral_v<K> && sizeof(K) == 8) {
    return StableHashState::OfWord(static_cast<uint64_t>(key));
  } else {
    return StableHashState::combine(StableHashState(), key).Finish();
  }
}

// Key group of a hash: [0, max_parallelism).
inline int KeyGroupForHash(uint64_t hash, int max_parallelism) {
  return static_cast<int>(hash % static_cast<uint64_t>(max_parallelism));
}

template <Key K>
int KeyGroupFor(const K& key, int max_parallelism) {
  return KeyGroupForHash(StableHash(key), max_parallelism);
}

// Subtask that owns a key group: key groups are split into `parallelism` contiguous ranges, exactly
// as Flink's KeyGroupRangeAssignment does, so state can be rescaled by moving whole ranges.
inline int OperatorIndexForKeyGroup(int key_group, int max_parallelism, int parallelism) {
  return static_cast<int>(static_cast<int64_t>(key_group) * parallelism / max_parallelism);
}

// A contiguous, inclusive range of key groups [start, end]; empty when end < start.
struct KeyGroupRange {
  int start = 0;
  int end = -1;

  bool Contains(int key_group) const { return key_group >= start && key_group <= end; }
  int size() const { return end < start ? 0 : end - start + 1; }
  bool operator==(const KeyGroupRange&) const = default;

  // The key groups owned by `subtask` of an operator with `parallelism` subtasks.
  static KeyGroupRange ForSubtask(int max_parallelism, int parallelism, int subtask) {
    int start = static_cast<int>(
        (static_cast<int64_t>(subtask) * max_parallelism + parallelism - 1) / parallelism);
    int end =
        static_cast<int>((static_cast<int64_t>(subtask + 1) * max_parallelism - 1) / parallelism);
    return KeyGroupRange{start, end};
  }
};

}  // namespace sluice
