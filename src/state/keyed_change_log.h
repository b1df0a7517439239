// Restoring incremental HashMap checkpoints: a chain of change-log files (the format is described
// at kKeyedChangeLogVersion in include/sluice/internal/keyed_state_backend.h) resolved into the
// one canonical keyed-state file that KeyedStateBackend::Restore reads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include <sluice/core/key.h>

namespace sluice::internal {

// One file of a chain: its bytes, per-key-group offsets and a name for errors.
struct KeyedChangeLogFile {
  std::string_view bytes;
  std::vector<uint64_t> offsets;
  std::string where;
};

struct CanonicalKeyedState {
  std::string bytes;
  std::vector<uint64_t> offsets;
};

// Applies `chain` (a full file, then files of changes, every one covering `range`) in order and
// returns the canonical file of the result. DataLoss naming the file (and key group) when one does
// not decode, is out of order, or names other states than the first.
absl::StatusOr<CanonicalKeyedState> ResolveKeyedChangeLog(
    KeyGroupRange range, const std::vector<KeyedChangeLogFile>& chain);

// True when `bytes` starts like a change-log file.
bool IsKeyedChangeLog(std::string_view bytes);

}  // namespace sluice::internal
