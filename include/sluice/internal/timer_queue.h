// TimerQueue: the timers of one operator instance, per (time, key, namespace), deduplicated and
// deletable, popped in time order (ties in registration order). A min-heap plus a hash set of live
// timers; deletion is lazy. Internal; not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"

#include <sluice/time/time.h>

namespace sluice::internal {

// The namespace of timers that do not belong to a window (process functions).
struct VoidNamespace {
  bool operator==(const VoidNamespace&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const VoidNamespace&) {
    return H::combine(std::move(h), 0);
  }
};

template <typename K, typename N>
class TimerQueue {
 public:
  struct Timer {
    Timestamp time;
    K key;
    N ns;
  };

  // False when the same timer is already registered.
  bool Register(Timestamp time, const K& key, const N& ns) {
    if (!live_.insert(Entry{time, key, ns}).second) return false;
    heap_.push(Queued{time, seq_++, key, ns});
    return true;
  }
  bool Delete(Timestamp time, const K& key, const N& ns) {
    bool erased = live_.erase(Entry{time, key, ns}) > 0;
    if (erased && heap_.size() > 64 && heap_.size() > 4 * live_.size()) Compact();
    return erased;
  }
  bool Contains(Timestamp time, const K& key, const N& ns) const {
    return live_.contains(Entry{time, key, ns});
  }

  // The earliest live timer's time, kMaxWatermark when there is none.
  Timestamp NextTime() {
    DropStale();
    return heap_.empty() ? kMaxWatermark : heap_.top().time;
  }

  // Pops the earliest live timer if its time is <= `time`.
  bool PopDue(Timestamp time, Timer* out) {
    DropStale();
    if (heap_.empty() || heap_.top().time > time) return false;
    const Queued& top = heap_.top();
    live_.erase(Entry{top.time, top.key, top.ns});
    *out = Timer{top.time, top.key, top.ns};
    heap_.pop();
    return true;
  }

  size_t size() const { return live_.size(); }
  bool empty() const { return live_.empty(); }

  // Every live timer, unordered (snapshots, tests).
  template <typename F>
  void ForEach(F&& f) const {
    for (const Entry& e : live_) f(e.time, e.key, e.ns);
  }

 private:
  struct Entry {
    Timestamp time;
    K key;
    N ns;
    bool operator==(const Entry&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const Entry& e) {
      return H::combine(std::move(h), e.time, e.key, e.ns);
    }
  };
  struct Queued {
    Timestamp time;
    uint64_t seq;
    K key;
    N ns;
  };
  struct Later {
    bool operator()(const Queued& a, const Queued& b) const {
      return a.time != b.time ? a.time > b.time : a.seq > b.seq;
    }
  };

  void DropStale() {
    while (!heap_.empty()) {
      const Queued& top = heap_.top();
      if (live_.contains(Entry{top.time, top.key, top.ns})) {
        // A timer deleted and registered again is queued twice; the older copy fires it.
        return;
      }
      heap_.pop();
    }
  }
  void Compact() {
    std::vector<Queued> keep;
    absl::flat_hash_set<Entry> seen;
    while (!heap_.empty()) {
      const Queued& q = heap_.top();
      Entry e{q.time, q.key, q.ns};
      if (live_.contains(e) && seen.insert(e).second) keep.push_back(q);
      heap_.pop();
    }
    for (Queued& q : keep) heap_.push(std::move(q));
  }

  std::priority_queue<Queued, std::vector<Queued>, Later> heap_;
  absl::flat_hash_set<Entry> live_;
  uint64_t seq_ = 0;
};

}  // namespace sluice::internal
