// The `_metadata` file: the envelope of format version 3 (the magic "SLMD", the CRC-32C of the
// protobuf, 4 bytes little endian, the protobuf), versions 1-2 without it, and the validation of
// every field a restore uses. See docs/checkpointing.md, "Storage layout".
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "checkpoint/checkpoint.pb.h"

namespace sluice::internal {

// The `_metadata` format this Sluice writes; it reads versions 1..kCheckpointFormatVersion.
// Version 2 adds SubtaskState.keyed_changes. Version 3 puts the protobuf in the envelope; a file
// without the envelope that says version 3 or more is corrupt. Version 4: operator ids are hashes
// of the Uid() or of the graph position (runtime/operator_ids.h), and keyed and operator state
// files record each state's serializer identity.
inline constexpr uint32_t kCheckpointFormatVersion = 4;

// The bytes of a `_metadata` file (the version 3 envelope around `metadata`), and back: DataLoss
// naming `dir` for a checksum mismatch, an unparsable protobuf, an unknown format version or a
// field a restore could not use.
std::string EncodeMetadataFile(const checkpoint::CheckpointMetadata& metadata);
absl::StatusOr<checkpoint::CheckpointMetadata> DecodeMetadataFile(std::string_view bytes,
                                                                  const std::string& dir);

}  // namespace sluice::internal
