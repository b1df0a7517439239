// Helpers shared by the API tests.
#pragma once

#include <cstdint>
#include <vector>

namespace sluice::testing_util {

// The numbers [from, to], in order.
inline std::vector<int64_t> Range(int64_t from, int64_t to) {
  std::vector<int64_t> v;
  for (int64_t i = from; i <= to; ++i) v.push_back(i);
  return v;
}

}  // namespace sluice::testing_util
