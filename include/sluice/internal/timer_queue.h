// TimerQueue: the timers of one operator instance, per (time, key, namespace), deduplicated and
// deletable, popped in time order (ties in registration order). A min-heap plus a hash map of live
// timers to their sequence numbers; deletion is lazy. Internal; not thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

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
  using Key = K;
  using Namespace = N;
  struct Timer {
    Timestamp time;
    K key;
    N ns;
  };

  // False when the same timer is already registered.
  bool Register(Timestamp time, const K& key, const N& ns) {
    if (!live_.try_emplace(Entry{time, key, ns}, seq_).second) return false;
    Push(Queued{time, seq_++, key, ns});
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
    return heap_.empty() ? kMaxWatermark : heap_.front().time;
  }

  // Pops the earliest live timer if its time is <= `time`.
  bool PopDue(Timestamp time, Timer* out) {
    DropStale();
    if (heap_.empty() || heap_.front().time > time) return false;
    std::pop_heap(heap_.begin(), heap_.end(), Later{});
    Queued& top = heap_.back();
    live_.erase(Entry{top.time, top.key, top.ns});
    *out = Timer{top.time, std::move(top.key), std::move(top.ns)};
    heap_.pop_back();
    return true;
  }

  size_t size() const { return live_.size(); }
  bool empty() const { return live_.empty(); }

  // Every live timer, unordered (snapshots, tests).
  template <typename F>
  void ForEach(F&& f) const {
    for (const auto& [e, seq] : live_) f(e.time, e.key, e.ns);
  }
  // Every live timer with its sequence number (its place among timers of equal time), unordered:
  // what a snapshot keeps so that a restored queue fires in the same order.
  template <typename F>
  void ForEachWithSequence(F&& f) const {
    for (const auto& [e, seq] : live_) f(e.time, seq, e.key, e.ns);
  }
  // Adds a timer of a snapshot with its sequence number; later registrations come after it. When
  // timers of several snapshots are restored (rescaling), equal sequence numbers of equal times
  // fire in an unspecified order.
  void Restore(Timestamp time, uint64_t seq, const K& key, const N& ns) {
    if (!live_.try_emplace(Entry{time, key, ns}, seq).second) return;
    Push(Queued{time, seq, key, ns});
    seq_ = std::max(seq_, seq + 1);
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

  void Push(Queued q) {
    heap_.push_back(std::move(q));
    std::push_heap(heap_.begin(), heap_.end(), Later{});
  }
  // A queued copy is live when its timer is registered under the copy's sequence number: a timer
  // deleted and registered again is queued twice, and only the later registration fires.
  bool IsLive(const Queued& q) const {
    auto it = live_.find(Entry{q.time, q.key, q.ns});
    return it != live_.end() && it->second == q.seq;
  }
  void DropStale() {
    while (!heap_.empty() && !IsLive(heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), Later{});
      heap_.pop_back();
    }
  }
  void Compact() {
    std::erase_if(heap_, [&](const Queued& q) { return !IsLive(q); });
    std::make_heap(heap_.begin(), heap_.end(), Later{});
  }

  std::vector<Queued> heap_;                   // a min-heap by (time, seq) under Later
  absl::flat_hash_map<Entry, uint64_t> live_;  // live timer -> its sequence number
  uint64_t seq_ = 0;
};

}  // namespace sluice::internal
