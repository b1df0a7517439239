// WindowKeyLists: the firing and cleanup timers of aligned event-time windows (tumbling, sliding)
// for all keys at once, as Flink's slicing window operators keep them. Per window start: the keys
// whose firing is pending and the keys (already fired) waiting for the cleanup, each in the order
// it arrived. No per-(key, window) timer: adding a key is one ordered-map lookup and an append,
// and a watermark walks the windows that are due.
//
// A window [start, start + size) fires at its max timestamp (start + size - 1) and is cleaned up
// at its cleanup time (max timestamp + allowed lateness). Advance(watermark) does both in time
// order; a window fires before its own cleanup, and a cleanup goes before a firing of the same
// time (the order the per-key timers had). Keys fire in the order of their first arrival in the
// window; a key added several times (one slice after another) fires once.
//
// Snapshots keep the per-(key, window) timer records TimerQueue wrote — (time, sequence, key,
// start): max timestamp for pending firings, cleanup time for every key — so checkpoints of both
// representations restore into each other. Internal; not thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"

#include <sluice/time/time.h>

namespace sluice::internal {

template <typename K>
class WindowKeyLists {
 public:
  using Key = K;
  using Namespace = Timestamp;  // the window start

  // `unique_adds`: a key is never added twice to one window (tumbling windows: one slice per
  // window), so firing needs no deduplication.
  WindowKeyLists(int64_t size, int64_t allowed_lateness, bool unique_adds)
      : size_(size), lateness_(allowed_lateness), unique_adds_(unique_adds) {}

  // `key` has contents in window `start`: its firing is pending when `fire_pending`, otherwise
  // (the window fired already: late contents within the allowed lateness) only its cleanup is.
  void Add(Timestamp start, const K& key, bool fire_pending) {
    (fire_pending ? pending_ : fired_)[start].push_back(key);
  }

  // Runs every firing and cleanup due at `watermark`, in time order: fire(start, key) once per
  // pending key of a window, clean(start, key) once per key of a window at its cleanup time.
  template <typename Fire, typename Clean>
  void Advance(Timestamp watermark, Fire&& fire, Clean&& clean) {
    for (;;) {
      auto p = pending_.begin();
      auto f = fired_.begin();
      const bool can_fire = p != pending_.end() && MaxTimestamp(p->first) <= watermark;
      const bool can_clean = f != fired_.end() && CleanupTime(f->first) <= watermark;
      if (can_clean && (!can_fire || CleanupTime(f->first) <= MaxTimestamp(p->first))) {
        const Timestamp start = f->first;
        std::vector<K> keys = std::move(f->second);
        fired_.erase(f);
        ForEachDistinct(
            keys, [&](const K& key) { clean(start, key); }, !unique_adds_);
        continue;
      }
      if (!can_fire) return;
      const Timestamp start = p->first;
      std::vector<K> keys = std::move(p->second);
      pending_.erase(p);
      std::vector<K>* distinct = &keys;
      if (!unique_adds_) {
        distinct_.clear();
        ForEachDistinct(
            keys, [&](const K& key) { distinct_.push_back(key); }, true);
        distinct = &distinct_;
      }
      for (const K& key : *distinct) fire(start, key);
      if (CleanupTime(start) <= MaxTimestamp(start)) {
        // No allowed lateness: the cleanup is due now too.
        auto late = fired_.find(start);
        const bool had_late = late != fired_.end();
        if (had_late) {
          distinct->insert(distinct->end(), late->second.begin(), late->second.end());
          fired_.erase(late);
        }
        ForEachDistinct(
            *distinct, [&](const K& key) { clean(start, key); }, had_late);
      } else {
        std::vector<K>& waiting = fired_[start];
        waiting.insert(waiting.end(), std::make_move_iterator(distinct->begin()),
                       std::make_move_iterator(distinct->end()));
      }
    }
  }

  // Windows with a pending firing or cleanup.
  size_t num_windows() const {
    size_t n = pending_.size();
    for (const auto& [start, keys] : fired_) n += pending_.contains(start) ? 0 : 1;
    return n;
  }
  bool empty() const { return pending_.empty() && fired_.empty(); }

  // The max timestamp of the latest window whose firing is done (kMinWatermark when none).
  Timestamp LatestFiredMaxTimestamp() const {
    Timestamp latest = kMinWatermark;
    for (const auto& [start, keys] : fired_) {
      if (!pending_.contains(start)) latest = std::max(latest, MaxTimestamp(start));
    }
    return latest;
  }

  // --- Snapshots: the per-(key, window) timer records --------------------------------------------

  template <typename F>
  void ForEachWithSequence(F&& f) const {
    uint64_t seq = 0;
    absl::flat_hash_set<K> seen;
    for (const auto& [start, keys] : pending_) {
      seen.clear();
      for (const K& key : keys) {
        if (!seen.insert(key).second) continue;
        f(MaxTimestamp(start), seq++, key, start);
        if (CleanupTime(start) != MaxTimestamp(start)) f(CleanupTime(start), seq++, key, start);
      }
    }
    for (const auto& [start, keys] : fired_) {
      seen.clear();
      if (auto p = pending_.find(start); p != pending_.end())
        seen.insert(p->second.begin(), p->second.end());
      for (const K& key : keys) {
        if (seen.insert(key).second) f(CleanupTime(start), seq++, key, start);
      }
    }
  }
  // A record of a snapshot (any order, several snapshots when rescaling); FinishRestore() then
  // rebuilds the lists in the records' sequence order. A record whose time is the window's max
  // timestamp is a pending firing; any other (the cleanup time, or a time from another allowed
  // lateness) means the window's cleanup is pending.
  void Restore(Timestamp time, uint64_t seq, const K& key, Timestamp start) {
    restored_.push_back(Restored{seq, time, start, key});
  }
  void FinishRestore() {
    std::stable_sort(restored_.begin(), restored_.end(),
                     [](const Restored& a, const Restored& b) { return a.seq < b.seq; });
    absl::flat_hash_set<std::pair<Timestamp, K>> pending, added;
    for (const Restored& r : restored_) {
      if (r.time != MaxTimestamp(r.start)) continue;
      if (pending.insert({r.start, r.key}).second) pending_[r.start].push_back(r.key);
    }
    for (const Restored& r : restored_) {
      if (r.time == MaxTimestamp(r.start) || pending.contains({r.start, r.key})) continue;
      if (added.insert({r.start, r.key}).second) fired_[r.start].push_back(r.key);
    }
    restored_.clear();
    restored_.shrink_to_fit();
  }

 private:
  struct Restored {
    uint64_t seq;
    Timestamp time;
    Timestamp start;
    K key;
  };

  Timestamp MaxTimestamp(Timestamp start) const { return start + size_ - 1; }
  Timestamp CleanupTime(Timestamp start) const {
    return SaturatingAdd(start + size_ - 1, lateness_);
  }
  template <typename F>
  void ForEachDistinct(const std::vector<K>& keys, F&& f, bool may_repeat) {
    if (!may_repeat) {
      for (const K& key : keys) f(key);
      return;
    }
    seen_.clear();
    for (const K& key : keys) {
      if (seen_.insert(key).second) f(key);
    }
  }

  const int64_t size_;
  const int64_t lateness_;
  const bool unique_adds_;
  std::map<Timestamp, std::vector<K>> pending_;  // start -> keys whose firing is pending
  std::map<Timestamp, std::vector<K>> fired_;    // start -> keys waiting for the cleanup
  std::vector<Restored> restored_;
  absl::flat_hash_set<K> seen_;  // scratch of ForEachDistinct
  std::vector<K> distinct_;      // scratch of Advance
};

}  // namespace sluice::internal
