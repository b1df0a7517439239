#include "checkpoint/metadata_file.h"

#include <cstdint>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "checkpoint/crc32c.h"

#include <sluice/core/key.h>
#include <sluice/core/status.h>

namespace sluice::internal {
namespace {

using checkpoint::CheckpointMetadata;
using checkpoint::FileRef;

constexpr std::string_view kMetadataMagic = "SLMD";

// Every field a restore uses, checked before use: operator ids present, unique (and 32 hex
// digits from format 4 on); parallelism
// and max parallelism in range; one subtask state per subtask, indices unique; key-group ranges
// as the writer assigns them; key-group offsets one per group, non-decreasing, within the file;
// a known backend. DataLoss naming the checkpoint and the field otherwise.
absl::Status ValidateMetadataFields(const CheckpointMetadata& metadata, const std::string& dir) {
  const auto bad = [&](absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat("checkpoint ", dir, ": _metadata is corrupt (", what, ")"));
  };
  absl::flat_hash_set<std::string> ids;
  for (const checkpoint::OperatorState& op : metadata.operators()) {
    const std::string id = absl::CHexEscape(op.operator_id());
    if (op.operator_id().empty()) return bad("an operator without id");
    if (!ids.insert(op.operator_id()).second) return bad(absl::StrCat("operator ", id, " twice"));
    if (metadata.format_version() >= 4 &&
        (op.operator_id().size() != 32 ||
         op.operator_id().find_first_not_of("0123456789abcdef") != std::string::npos)) {
      return bad(absl::StrCat("operator id ", id, " is not 32 hex digits"));
    }
    if (op.max_parallelism() < 1 || op.max_parallelism() > 32768) {
      return bad(absl::StrCat("operator ", id, ": max parallelism ", op.max_parallelism()));
    }
    if (op.parallelism() < 1 || op.parallelism() > op.max_parallelism() ||
        op.subtasks_size() != op.parallelism()) {
      return bad(absl::StrCat("operator ", id, ": parallelism ", op.parallelism(), " with ",
                              op.subtasks_size(), " subtask states"));
    }
    std::vector<bool> seen(static_cast<size_t>(op.parallelism()), false);
    for (const checkpoint::SubtaskState& st : op.subtasks()) {
      const int s = st.subtask_index();
      if (s < 0 || s >= op.parallelism() || seen[static_cast<size_t>(s)]) {
        return bad(absl::StrCat("operator ", id, ": subtask index ", s));
      }
      seen[static_cast<size_t>(s)] = true;
      const KeyGroupRange range =
          KeyGroupRange::ForSubtask(op.max_parallelism(), op.parallelism(), s);
      if (st.key_groups().start() != range.start || st.key_groups().end() != range.end) {
        return bad(absl::StrCat("operator ", id, " subtask ", s, ": key groups ",
                                st.key_groups().start(), "..", st.key_groups().end()));
      }
      const auto offsets_ok = [&](const auto& offsets, const FileRef& file) {
        if (offsets.size() != range.end - range.start + 1) return false;
        uint64_t previous = 0;
        for (uint64_t off : offsets) {
          if (off < previous || off > file.size()) return false;
          previous = off;
        }
        return true;
      };
      if (st.has_keyed_state() && !st.keyed_state().path().empty() &&
          !offsets_ok(st.key_group_offsets(), st.keyed_state())) {
        return bad(absl::StrCat("operator ", id, " subtask ", s, ": key-group offsets"));
      }
      for (const checkpoint::KeyedStateChanges& c : st.keyed_changes()) {
        if (!offsets_ok(c.key_group_offsets(), c.file())) {
          return bad(absl::StrCat("operator ", id, " subtask ", s,
                                  ": key-group offsets of a file of changes"));
        }
      }
      if (!st.backend().empty() && st.backend() != "hashmap" && st.backend() != "rocksdb" &&
          st.backend() != "rocksdb-native") {
        return bad(absl::StrCat("operator ", id, " subtask ", s, ": backend '",
                                absl::CHexEscape(st.backend()), "'"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CheckpointMetadata> DecodeMetadataFile(std::string_view bytes,
                                                      const std::string& dir) {
  // Version 3 and later: the envelope, whose checksum covers every byte of the protobuf.
  std::string_view payload = bytes;
  const bool enveloped = payload.substr(0, kMetadataMagic.size()) == kMetadataMagic;
  if (enveloped) {
    if (payload.size() < kMetadataMagic.size() + 4) {
      return absl::DataLossError(
          absl::StrCat("checkpoint ", dir, ": _metadata is truncated (", bytes.size(), " bytes)"));
    }
    uint32_t expected = 0;
    for (int i = 3; i >= 0; --i) {
      expected = (expected << 8) |
                 static_cast<uint8_t>(payload[kMetadataMagic.size() + static_cast<size_t>(i)]);
    }
    payload.remove_prefix(kMetadataMagic.size() + 4);
    const uint32_t actual = Crc32c(payload);
    if (actual != expected) {
      return absl::DataLossError(absl::StrFormat(
          "checkpoint %s: _metadata is corrupt (checksum mismatch: crc32c 0x%08x, expected "
          "0x%08x, %d bytes)",
          dir, actual, expected, bytes.size()));
    }
  }
  CheckpointMetadata metadata;
  bool parsed = false;
  std::string parse_error = "not a CheckpointMetadata protobuf";
  try {
    parsed = metadata.ParseFromArray(payload.data(), static_cast<int>(payload.size()));
  } catch (const std::exception& e) {
    parse_error = e.what();
  } catch (...) {
  }
  if (!parsed) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": _metadata is corrupt (",
                                            parse_error, ", ", bytes.size(), " bytes)"));
  }
  if (metadata.format_version() == 0 || metadata.format_version() > kCheckpointFormatVersion) {
    return absl::DataLossError(absl::StrCat(
        "checkpoint ", dir, ": _metadata has format version ", metadata.format_version(),
        ", this Sluice reads versions 1..", kCheckpointFormatVersion));
  }
  if (!enveloped && metadata.format_version() >= 3) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir,
                                            ": _metadata is corrupt (format version ",
                                            metadata.format_version(), " without its checksum)"));
  }
  if (enveloped && metadata.format_version() < 3) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir,
                                            ": _metadata is corrupt (format version ",
                                            metadata.format_version(), " in an envelope)"));
  }
  SLUICE_RETURN_IF_ERROR(ValidateMetadataFields(metadata, dir));
  return metadata;
}

std::string EncodeMetadataFile(const CheckpointMetadata& metadata) {
  std::string payload;
  metadata.SerializeToString(&payload);
  std::string bytes(kMetadataMagic);
  const uint32_t crc = Crc32c(payload);
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  bytes += payload;
  return bytes;
}

}  // namespace sluice::internal
