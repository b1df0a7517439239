// JobFailure: how code running inside a task fails the job. Internal.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sluice::internal {

// Thrown inside a task to fail the job with `status`; caught at the task boundary, never escapes
// to user code.
class JobFailure : public std::exception {
 public:
  explicit JobFailure(absl::Status status) : status_(std::move(status)) {}
  const char* what() const noexcept override { return "sluice job failure"; }
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
};

// Call inside a catch block: rethrows a JobFailure as is, and turns any other exception into a
// JobFailure "<what> '<name>' threw: <message>" (what = "operator", "key selector of", ...).
[[noreturn]] inline void RethrowAsJobFailure(const char* what, const std::string& name) {
  try {
    throw;
  } catch (const JobFailure&) {
    throw;
  } catch (const std::exception& e) {
    throw JobFailure(absl::UnknownError(absl::StrCat(what, " '", name, "' threw: ", e.what())));
  } catch (...) {
    throw JobFailure(absl::UnknownError(absl::StrCat(what, " '", name, "' threw an exception")));
  }
}

}  // namespace sluice::internal
