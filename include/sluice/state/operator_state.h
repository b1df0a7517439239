// Broadcast state handles (Flink's "The Broadcast State Pattern"): a map per operator subtask,
// the same on every subtask, written only by the broadcast side of a broadcast process function.
//
//   const sluice::MapStateDescriptor<std::string, Rule> rules("rules");
//   // in ProcessBroadcastElement:  ctx.GetBroadcastState(rules).Put(r.name, r);
//   // in ProcessElement:           if (const Rule* r = ctx.GetBroadcastState(rules).Find(name))
//
// Operator list state (RuntimeContext::GetOperatorListState / GetUnionListState) uses the
// ListState<T> handle of state/state.h. Handles are cheap to copy, valid for the life of the
// operator subtask, and not thread-safe (one subtask's thread uses them).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/internal/job_failure.h>
#include <sluice/state/state.h>

namespace sluice {

namespace internal {

// The contents of one broadcast state of an operator subtask. `writable` is set by the operator
// only while ProcessBroadcastElement runs: a write at any other time (through a handle kept from
// the broadcast side) fails the job, as every subtask must hold the same map.
template <typename K, typename V>
struct BroadcastMap {
  std::string name;
  const std::string* operator_name = nullptr;
  const bool* writable = nullptr;
  absl::flat_hash_map<K, V> entries;

  void CheckWritable(const char* what) const {
    if (*writable) [[likely]] {
      return;
    }
    throw JobFailure(absl::FailedPreconditionError(absl::StrCat(
        "operator '", *operator_name, "': broadcast state '", name, "' is read-only here (", what,
        "); only ProcessBroadcastElement may modify broadcast state, so that every parallel "
        "instance holds the same contents")));
  }
};

}  // namespace internal

// Read access to a broadcast state: what ProcessElement (the non-broadcast side) gets.
template <typename K, typename V>
class ReadOnlyBroadcastState {
 public:
  ReadOnlyBroadcastState() = default;
  explicit ReadOnlyBroadcastState(internal::BroadcastMap<K, V>* map) : map_(map) {}

  std::optional<V> Get(const K& key) const {
    auto it = map_->entries.find(key);
    if (it == map_->entries.end()) return std::nullopt;
    return it->second;
  }
  // The value of `key`, or null; valid until the state is next modified.
  const V* Find(const K& key) const {
    auto it = map_->entries.find(key);
    return it == map_->entries.end() ? nullptr : &it->second;
  }
  bool Contains(const K& key) const { return map_->entries.contains(key); }
  bool IsEmpty() const { return map_->entries.empty(); }
  size_t Size() const { return map_->entries.size(); }
  // Every entry, in no particular order (as Flink's immutableEntries()).
  const absl::flat_hash_map<K, V>& Entries() const { return map_->entries; }
  explicit operator bool() const { return map_ != nullptr; }

 protected:
  internal::BroadcastMap<K, V>* map_ = nullptr;
};

// Read-write access to a broadcast state: what ProcessBroadcastElement gets. A write outside
// ProcessBroadcastElement fails the job with FailedPrecondition naming the operator and state.
template <typename K, typename V>
class BroadcastState : public ReadOnlyBroadcastState<K, V> {
 public:
  BroadcastState() = default;
  explicit BroadcastState(internal::BroadcastMap<K, V>* map) : ReadOnlyBroadcastState<K, V>(map) {}

  void Put(K key, V value) const {
    this->map_->CheckWritable("Put");
    this->map_->entries.insert_or_assign(std::move(key), std::move(value));
  }
  void Remove(const K& key) const {
    this->map_->CheckWritable("Remove");
    this->map_->entries.erase(key);
  }
  void Clear() const {
    this->map_->CheckWritable("Clear");
    this->map_->entries.clear();
  }
};

}  // namespace sluice
