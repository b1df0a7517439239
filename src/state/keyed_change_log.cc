#include "state/keyed_change_log.h"

#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

#include <sluice/internal/keyed_state_backend.h>
#include <sluice/state/serializer.h>

namespace sluice::internal {
namespace {

constexpr std::string_view kMagic = "SLKC";
// A change log of version v resolves into the canonical format of version v (same state list).
static_assert(kKeyedChangeLogVersion == kKeyedSnapshotVersion);

struct Header {
  uint32_t version = 0;
  bool changes = false;
  std::string_view state_list;  // as in the canonical header
  std::vector<KeyedChangeLogMode> modes;
};

absl::Status Corrupt(const KeyedChangeLogFile& f, std::string_view what) {
  return absl::DataLossError(absl::StrCat(f.where, ": keyed state change log is corrupt (",
                                          absl::string_view(what.data(), what.size()), ")"));
}

absl::StatusOr<Header> ReadHeader(const KeyedChangeLogFile& f, const KeyGroupRange& range) {
  ByteReader in(f.bytes);
  std::string_view magic;
  uint32_t version = 0;
  uint8_t kind = 0;
  if (!in.ReadBytes(4, &magic) || magic != kMagic || !in.ReadRaw(&version, sizeof version)) {
    return Corrupt(f, "bad header");
  }
  if (version == 0 || version > kKeyedChangeLogVersion) {
    return absl::DataLossError(absl::StrCat(f.where, ": keyed state change log has format version ",
                                            version, ", this Sluice reads versions 1..",
                                            kKeyedChangeLogVersion));
  }
  if (!in.ReadRaw(&kind, 1) || kind > 1) return Corrupt(f, "bad file kind");
  Header h;
  h.version = version;
  h.changes = kind == 1;
  const std::string_view list_start = in.rest();
  std::string_view key_format;
  if (version >= 2 && !in.ReadLengthPrefixed(&key_format)) return Corrupt(f, "bad key format");
  uint64_t n = 0;
  if (!in.ReadVarint(&n) || n > in.remaining()) return Corrupt(f, "bad state count");
  for (uint64_t i = 0; i < n; ++i) {
    std::string_view name;
    uint8_t state_kind = 0;
    uint64_t ttl = 0;
    std::string_view format;
    if (!in.ReadLengthPrefixed(&name) || !in.ReadRaw(&state_kind, 1) || !in.ReadVarint(&ttl) ||
        (version >= 2 && !in.ReadLengthPrefixed(&format))) {
      return Corrupt(f, "bad state list");
    }
  }
  h.state_list = list_start.substr(0, list_start.size() - in.remaining());
  for (uint64_t i = 0; i < n; ++i) {
    uint8_t mode = 0;
    if (!in.ReadRaw(&mode, 1) || mode > 2) return Corrupt(f, "bad state mode");
    h.modes.push_back(static_cast<KeyedChangeLogMode>(mode));
  }
  if (f.offsets.size() != static_cast<size_t>(range.size())) {
    return Corrupt(f, "key group offsets do not match the key group range");
  }
  return h;
}

}  // namespace

bool IsKeyedChangeLog(std::string_view bytes) { return bytes.starts_with(kMagic); }

absl::StatusOr<CanonicalKeyedState> ResolveKeyedChangeLog(
    KeyGroupRange range, const std::vector<KeyedChangeLogFile>& chain) {
  if (chain.empty()) return absl::InternalError("keyed state change log: no files");
  std::vector<Header> headers;
  for (size_t i = 0; i < chain.size(); ++i) {
    SLUICE_ASSIGN_OR_RETURN(Header h, ReadHeader(chain[i], range));
    if (h.changes != (i > 0)) {
      return absl::DataLossError(
          absl::StrCat(chain[i].where, ": keyed state change log ",
                       i == 0 ? "starts with a file of changes, not a full file"
                              : absl::StrCat("has a full file after ", chain[i - 1].where)));
    }
    if (i > 0 && (h.state_list != headers[0].state_list || h.version != headers[0].version)) {
      return absl::DataLossError(absl::StrCat(chain[i].where, ": names other states than ",
                                              chain[0].where, ", the start of its change log"));
    }
    headers.push_back(std::move(h));
  }
  const size_t num_states = headers[0].modes.size();
  CanonicalKeyedState out;
  out.bytes.append("SLKS");
  // The canonical format of the same version has the same state list.
  const uint32_t version = headers[0].version;
  out.bytes.append(reinterpret_cast<const char*>(&version), sizeof version);
  out.bytes.append(headers[0].state_list);

  // One key group at a time: the records of modes 0 and 1 by state and composite key, and the
  // per-key records by key.
  std::vector<absl::flat_hash_map<std::string, std::string>> records(num_states);
  absl::flat_hash_map<std::string, std::string> keys;
  for (int kg = range.start; kg <= range.end; ++kg) {
    const size_t g = static_cast<size_t>(kg - range.start);
    for (auto& m : records) m.clear();
    keys.clear();
    for (size_t i = 0; i < chain.size(); ++i) {
      const KeyedChangeLogFile& f = chain[i];
      const Header& h = headers[i];
      const auto bad = [&](std::string_view what) {
        return Corrupt(
            f, absl::StrCat(absl::string_view(what.data(), what.size()), " in key group ", kg));
      };
      if (f.offsets[g] > f.bytes.size()) return bad("bad offset");
      for (size_t s = 0; s < num_states; ++s) {
        if (h.modes[s] == KeyedChangeLogMode::kWhole) records[s].clear();
      }
      ByteReader in(f.bytes.substr(f.offsets[g]));
      uint64_t tag = 0;
      std::string_view composite, value;
      while (true) {  // operations on records
        if (!in.ReadVarint(&tag)) return bad("truncated records");
        if (tag == 0) break;
        if (tag <= num_states) {
          if (h.modes[tag - 1] == KeyedChangeLogMode::kPerKey ||
              !in.ReadLengthPrefixed(&composite) || !in.ReadLengthPrefixed(&value)) {
            return bad("bad record");
          }
          records[tag - 1].insert_or_assign(std::string(composite), std::string(value));
          continue;
        }
        const uint64_t state = tag - num_states - 1;
        if (state >= num_states || h.modes[state] != KeyedChangeLogMode::kChanges ||
            !in.ReadLengthPrefixed(&composite)) {
          return bad("bad removal");
        }
        records[state].erase(absl::string_view(composite.data(), composite.size()));
      }
      while (true) {  // keys
        std::string_view key, key_records;
        if (!in.ReadVarint(&tag)) return bad("truncated keys");
        if (tag == 0) break;
        if ((tag != 1 && tag != 2) || !in.ReadLengthPrefixed(&key) ||
            (tag == 1 && !in.ReadLengthPrefixed(&key_records))) {
          return bad("bad key");
        }
        if (tag == 2 || key_records.empty()) {
          keys.erase(absl::string_view(key.data(), key.size()));
          continue;
        }
        // Checked here, where the file is known.
        ByteReader r(key_records);
        uint64_t index = 0;
        std::string_view suffix;
        while (!r.empty()) {
          if (!r.ReadVarint(&index) || index >= num_states ||
              h.modes[index] != KeyedChangeLogMode::kPerKey || !r.ReadLengthPrefixed(&suffix) ||
              !r.ReadLengthPrefixed(&value)) {
            return bad("bad records of a key");
          }
        }
        keys.insert_or_assign(std::string(key), std::string(key_records));
      }
    }
    out.offsets.push_back(out.bytes.size());
    for (size_t s = 0; s < num_states; ++s) {
      for (const auto& [c, v] : records[s]) PutSnapshotRecord(s, c, {}, v, &out.bytes);
    }
    for (const auto& [key, key_records] : keys) {
      ByteReader r(key_records);
      uint64_t index = 0;
      std::string_view suffix, value;
      while (r.ReadVarint(&index) && r.ReadLengthPrefixed(&suffix) &&
             r.ReadLengthPrefixed(&value)) {
        PutSnapshotRecord(index, key, suffix, value, &out.bytes);
      }
    }
    out.bytes.push_back(0);
  }
  return out;
}

}  // namespace sluice::internal
