#include "runtime/operator_ids.h"

#include <cstdint>
#include <cstring>
#include <deque>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

#include <sluice/core/key.h>

namespace sluice::internal {
namespace {

uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t Load64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];  // little-endian on every host
  return v;
}

void Store64(uint64_t v, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

// Ids are mixed with their inputs' as Flink's hasher does: byte j becomes byte j * 37 ^ input j.
void MixInput(std::string& id, const std::string& input) {
  for (size_t j = 0; j < id.size(); ++j) {
    const auto a = static_cast<unsigned char>(id[j]);
    const auto b = static_cast<unsigned char>(input[j]);
    id[j] = static_cast<char>(static_cast<unsigned char>(a * 37) ^ b);
  }
}

}  // namespace

std::string Murmur3_128(absl::string_view data) {
  constexpr uint64_t c1 = 0x87c37b91114253d5ULL;
  constexpr uint64_t c2 = 0x4cf5ad432745937fULL;
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  const size_t len = data.size();
  uint64_t h1 = 0;
  uint64_t h2 = 0;
  const size_t blocks = len / 16;
  for (size_t i = 0; i < blocks; ++i) {
    uint64_t k1 = Load64(bytes + 16 * i);
    uint64_t k2 = Load64(bytes + 16 * i + 8);
    k1 *= c1;
    k1 = Rotl(k1, 31);
    k1 *= c2;
    h1 ^= k1;
    h1 = Rotl(h1, 27);
    h1 += h2;
    h1 = h1 * 5 + 0x52dce729;
    k2 *= c2;
    k2 = Rotl(k2, 33);
    k2 *= c1;
    h2 ^= k2;
    h2 = Rotl(h2, 31);
    h2 += h1;
    h2 = h2 * 5 + 0x38495ab5;
  }
  const unsigned char* tail = bytes + 16 * blocks;
  const size_t rest = len & 15;
  uint64_t k1 = 0;
  uint64_t k2 = 0;
  for (size_t i = rest; i > 8; --i) k2 = (k2 << 8) | tail[i - 1];
  if (rest > 8) {
    k2 *= c2;
    k2 = Rotl(k2, 33);
    k2 *= c1;
    h2 ^= k2;
  }
  for (size_t i = rest < 8 ? rest : 8; i > 0; --i) k1 = (k1 << 8) | tail[i - 1];
  if (rest > 0) {
    k1 *= c1;
    k1 = Rotl(k1, 31);
    k1 *= c2;
    h1 ^= k1;
  }
  h1 ^= len;
  h2 ^= len;
  h1 += h2;
  h2 += h1;
  h1 = StableHashState::Mix(h1);  // MurmurHash3's fmix64
  h2 = StableHashState::Mix(h2);
  h1 += h2;
  h2 += h1;
  std::string out(16, '\0');
  Store64(h1, out.data());
  Store64(h2, out.data() + 8);
  return out;
}

absl::StatusOr<std::vector<std::string>> AssignOperatorIds(const StreamGraph& graph) {
  const size_t n = graph.nodes.size();
  std::map<std::string, int> by_uid;
  for (const StreamNode& node : graph.nodes) {
    if (!node.uid.has_value()) continue;
    if (node.uid->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("operator '", node.name, "': Uid(\"\"): a uid must not be empty"));
    }
    auto [it, fresh] = by_uid.emplace(*node.uid, node.id);
    if (!fresh) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Uid(\"", *node.uid, "\") is set on operator '",
          graph.nodes[static_cast<size_t>(it->second)].name, "' and on operator '", node.name,
          "': a uid names one operator (it keys the operator's state in savepoints)"));
    }
  }
  for (const StreamNode& node : graph.nodes) {
    if (node.uid_hash.has_value() &&
        (node.uid_hash->size() != 32 ||
         node.uid_hash->find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)) {
      return absl::InvalidArgumentError(absl::StrCat("operator '", node.name, "': UidHash(\"",
                                                     *node.uid_hash,
                                                     "\"): an operator id is 32 hex digits"));
    }
  }
  std::vector<std::vector<int>> inputs(n), outputs(n);
  std::vector<std::vector<const StreamEdge*>> in_edges(n);
  for (const StreamEdge& e : graph.edges) {
    in_edges[static_cast<size_t>(e.to)].push_back(&e);
    inputs[static_cast<size_t>(e.to)].push_back(e.from);
    outputs[static_cast<size_t>(e.from)].push_back(e.to);
  }
  std::vector<int> followers(n, 0);  // nodes following each node
  for (const StreamNode& node : graph.nodes) {
    if (node.follows >= 0) ++followers[static_cast<size_t>(node.follows)];
  }
  std::vector<std::string> bytes(n);  // 16 bytes per node once assigned
  std::vector<bool> queued(n, false);
  std::deque<int> queue;
  for (const StreamNode& node : graph.nodes) {  // sources in the order they were added
    if (node.is_source) {
      queue.push_back(node.id);
      queued[static_cast<size_t>(node.id)] = true;
    }
  }
  int32_t position = 0;
  while (!queue.empty()) {
    const int id = queue.front();
    queue.pop_front();
    const StreamNode& node = graph.nodes[static_cast<size_t>(id)];
    bool inputs_done = true;
    for (int in : inputs[static_cast<size_t>(id)]) {
      inputs_done = inputs_done && !bytes[static_cast<size_t>(in)].empty();
    }
    if (!inputs_done) {
      queued[static_cast<size_t>(id)] = false;  // queued again when another input is assigned
      continue;
    }
    std::string& own = bytes[static_cast<size_t>(id)];
    const StreamNode* followed =
        node.follows >= 0 ? &graph.nodes[static_cast<size_t>(node.follows)] : nullptr;
    if (node.uid_hash.has_value()) {
      own = absl::HexStringToBytes(absl::AsciiStrToLower(*node.uid_hash));
    } else if (node.uid.has_value()) {
      own = Murmur3_128(*node.uid);
    } else if (followed != nullptr && followed->uid.has_value() &&
               followers[static_cast<size_t>(node.follows)] == 1) {
      own = Murmur3_128(absl::StrCat(*followed->uid, "\n", node.name));
    } else {
      // The position (4 bytes, little endian), whether the input is keyed, and the kind.
      std::string local(4, '\0');
      for (int i = 0; i < 4; ++i)
        local[static_cast<size_t>(i)] = static_cast<char>((position >> (8 * i)) & 0xff);
      bool keyed = false;
      for (const StreamEdge* e : in_edges[static_cast<size_t>(id)]) {
        keyed = keyed || e->partitioning == Partitioning::kHash;
      }
      local.push_back(keyed ? '\1' : '\0');
      local.append(node.kind);
      own = Murmur3_128(local);
      for (int in : inputs[static_cast<size_t>(id)]) MixInput(own, bytes[static_cast<size_t>(in)]);
    }
    ++position;
    for (int out : outputs[static_cast<size_t>(id)]) {
      if (!queued[static_cast<size_t>(out)]) {
        queued[static_cast<size_t>(out)] = true;
        queue.push_back(out);
      }
    }
  }
  std::vector<std::string> ids(n);
  for (size_t i = 0; i < n; ++i) {
    if (bytes[i].empty()) {
      return absl::InternalError(absl::StrCat("operator '", graph.nodes[i].name,
                                              "' is not reachable from a source: no id"));
    }
    ids[i] = absl::BytesToHexString(bytes[i]);
  }
  std::map<std::string, size_t> owner;
  for (size_t i = 0; i < n; ++i) {
    auto [it, fresh] = owner.emplace(ids[i], i);
    if (!fresh) {
      return absl::InvalidArgumentError(absl::StrCat(
          "operators '", graph.nodes[it->second].name, "' and '", graph.nodes[i].name,
          "' have the same id ", ids[i], " (a UidHash() equal to another operator's id)"));
    }
  }
  return ids;
}

}  // namespace sluice::internal
