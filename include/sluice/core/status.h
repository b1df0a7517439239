// Status helpers: the macros Abseil 20220623 lacks, and Sluice's invariant check.
//
//   absl::StatusOr<Config> Load(const std::string& path) {
//     SLUICE_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
//     SLUICE_RETURN_IF_ERROR(Validate(text));
//     return Parse(text);
//   }
#pragma once

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SLUICE_INTERNAL_CONCAT_INNER(a, b) a##b
#define SLUICE_INTERNAL_CONCAT(a, b) SLUICE_INTERNAL_CONCAT_INNER(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function if it is not OK.
#define SLUICE_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status sluice_status_ = (expr);          \
    if (!sluice_status_.ok()) return sluice_status_; \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, otherwise assigns the
// value to `lhs`, which may be a declaration (`SLUICE_ASSIGN_OR_RETURN(auto x, F())`).
#define SLUICE_ASSIGN_OR_RETURN(lhs, rexpr) \
  SLUICE_INTERNAL_ASSIGN_OR_RETURN(SLUICE_INTERNAL_CONCAT(sluice_statusor_, __LINE__), lhs, rexpr)

#define SLUICE_INTERNAL_ASSIGN_OR_RETURN(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                     \
  if (!statusor.ok()) return std::move(statusor).status();     \
  lhs = std::move(statusor).value()

// Checks an internal invariant. A failure is a bug in Sluice, never a user error: user errors are
// reported through absl::Status.
#define SLUICE_CHECK(cond)                                                                       \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      std::fprintf(stderr, "%s:%d: Sluice invariant violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                              \
    }                                                                                            \
  } while (0)
