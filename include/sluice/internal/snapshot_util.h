// Helpers for keyed operators whose own structures (timers, window contents, buffers) snapshot
// and restore through their keyed state backend. Internal.
//
//   internal_.push_back(RegisterInternalState(*state_, "_timers", max_parallelism,
//                                             [this](InternalStateBuckets& b) { ... b.Add(...) }));
//   ...
//   SLUICE_RETURN_IF_ERROR(RestoreInternal<K>(*state_, "_timers", ctx_, [&](K& key,
//                                             ByteReader& rest, ByteReader& value) { ... }));
//
// A record's composite key starts with the key (Serializer<K>), so the backend can route it to
// the subtask that owns its key group after rescaling.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/core/key.h>
#include <sluice/core/runtime_context.h>
#include <sluice/core/status.h>
#include <sluice/internal/job_failure.h>
#include <sluice/internal/keyed_state_backend.h>
#include <sluice/internal/timer_queue.h>
#include <sluice/state/serializer.h>

namespace sluice::internal {

// Serializable<T>, and so are the elements of the standard containers it is made of: the
// Serializer of std::vector<E> exists for any E, but compiles only when E has one.
template <typename T>
struct FullySerializableImpl : std::bool_constant<Serializable<T>> {};
template <typename E, typename A>
struct FullySerializableImpl<std::vector<E, A>>
    : std::bool_constant<Serializable<std::vector<E, A>> && FullySerializableImpl<E>::value> {};
template <typename E>
struct FullySerializableImpl<std::optional<E>>
    : std::bool_constant<Serializable<std::optional<E>> && FullySerializableImpl<E>::value> {};
template <typename E, size_t N>
struct FullySerializableImpl<std::array<E, N>>
    : std::bool_constant<Serializable<std::array<E, N>> && FullySerializableImpl<E>::value> {};
template <typename E, typename C, typename A>
struct FullySerializableImpl<std::set<E, C, A>>
    : std::bool_constant<Serializable<std::set<E, C, A>> && FullySerializableImpl<E>::value> {};
template <typename A, typename B>
struct FullySerializableImpl<std::pair<A, B>>
    : std::bool_constant<Serializable<std::pair<A, B>> && FullySerializableImpl<A>::value &&
                         FullySerializableImpl<B>::value> {};
template <typename... Ts>
struct FullySerializableImpl<std::tuple<Ts...>>
    : std::bool_constant<Serializable<std::tuple<Ts...>> &&
                         (FullySerializableImpl<Ts>::value && ...)> {};
template <typename K, typename V, typename C, typename A>
struct FullySerializableImpl<std::map<K, V, C, A>>
    : std::bool_constant<Serializable<std::map<K, V, C, A>> && FullySerializableImpl<K>::value &&
                         FullySerializableImpl<V>::value> {};
template <typename K, typename V, typename H, typename E, typename A>
struct FullySerializableImpl<absl::flat_hash_map<K, V, H, E, A>>
    : std::bool_constant<Serializable<absl::flat_hash_map<K, V, H, E, A>> &&
                         FullySerializableImpl<K>::value && FullySerializableImpl<V>::value> {};

// What a checkpoint can write: a type whose Serializer compiles.
template <typename T>
concept FullySerializable = FullySerializableImpl<T>::value;

// An operator's internal keyed structure in a backend's snapshots: PrepareSnapshot runs `fill`,
// which adds every record (Add) or hands over an encoder to run later (Defer); the records are
// encoded once, as snapshot records, per key group, and handed to the snapshot without a copy
// (TakeKeyGroup, TakeDeferred). Only used at checkpoints; not thread-safe.
class InternalStateBuckets final : public InternalKeyedState {
 public:
  using Fill = std::function<void(InternalStateBuckets&)>;
  using Encode = std::function<void(InternalStateBuckets&)>;

  InternalStateBuckets(KeyGroupRange range, int max_parallelism, Fill fill)
      : range_(range), max_parallelism_(max_parallelism), fill_(std::move(fill)) {}

  void PrepareSnapshot(size_t state_index) override {
    state_index_ = state_index;
    buckets_.assign(static_cast<size_t>(range_.size()), std::string());
    removed_.clear();
    deferred_.clear();
    tracked_ = Tracked::kNo;
    if (fill_) fill_(*this);
  }
  bool TakeChanges(Changes* out) override {
    if (tracked_ == Tracked::kNo) return false;
    out->full = tracked_ == Tracked::kFull;
    out->records = std::move(buckets_);
    out->removed = std::move(removed_);
    out->removed.resize(out->records.size());
    buckets_.clear();
    removed_.clear();
    if (!deferred_.empty()) {
      out->deferred = [range = range_, maxp = max_parallelism_, index = state_index_,
                       encoders = std::move(deferred_)](Changes& changes) {
        InternalStateBuckets sink(range, maxp, nullptr);
        sink.state_index_ = index;
        sink.buckets_.assign(static_cast<size_t>(range.size()), std::string());
        sink.removed_.assign(static_cast<size_t>(range.size()), std::string());
        for (const Encode& encode : encoders) encode(sink);
        for (size_t g = 0; g < changes.records.size(); ++g) {
          changes.records[g].append(sink.buckets_[g]);
          changes.removed[g].append(sink.removed_[g]);
        }
      };
    }
    deferred_.clear();
    return true;
  }
  bool TakeKeyGroup(int kg, std::string* out) override {
    if (range_.Contains(kg) && !buckets_.empty()) {
      out->swap(buckets_[static_cast<size_t>(kg - range_.start)]);
    }
    return true;
  }
  DeferredRecords TakeDeferred() override {
    if (deferred_.empty()) return nullptr;
    return [range = range_, maxp = max_parallelism_, index = state_index_,
            encoders = std::move(deferred_)](std::vector<std::string>* out) {
      InternalStateBuckets sink(range, maxp, nullptr);
      sink.state_index_ = index;
      sink.buckets_.assign(static_cast<size_t>(range.size()), std::string());
      for (const Encode& encode : encoders) encode(sink);
      *out = std::move(sink.buckets_);
    };
  }
  void WriteKeyGroup(int kg,
                     absl::FunctionRef<void(std::string_view, std::string_view)> emit) override {
    for (const Encode& encode : deferred_) encode(*this);  // at the first key group only
    deferred_.clear();
    std::string bucket;
    TakeKeyGroup(kg, &bucket);
    ByteReader in(bucket);
    uint64_t index = 0;
    std::string_view composite, value;
    while (in.ReadVarint(&index) && in.ReadLengthPrefixed(&composite) &&
           in.ReadLengthPrefixed(&value)) {
      emit(composite, value);
    }
  }

  // Adds a record of `key`; `composite` starts with the key serialized with Serializer<K>.
  template <typename K>
  void Add(const K& key, std::string_view composite, std::string_view value) {
    const int kg = KeyGroupFor(key, max_parallelism_);
    SLUICE_CHECK(range_.Contains(kg));
    PutSnapshotRecord(state_index_, composite, {}, value,
                      &buckets_[static_cast<size_t>(kg - range_.start)]);
  }
  // For `fill`: `encode` adds records (Add) later, once, on the checkpoint writer's thread. It must
  // own what it reads — a copy taken now (cheap for structures without heap buffers): the operator
  // goes on changing its own structures meanwhile.
  void Defer(Encode encode) { deferred_.push_back(std::move(encode)); }

  // For `fill`, change tracking (InternalKeyedState::TakeChanges): this snapshot adds only the
  // records changed since the previous one and removes (Remove) those gone since — or, with
  // `full`, adds every record (the first snapshot, or the first after a restore). The backend
  // keeps the records between snapshots. Without a call, the snapshot adds every record and the
  // backend keeps nothing.
  void TrackChanges(bool full) { tracked_ = full ? Tracked::kFull : Tracked::kChanges; }
  // With TrackChanges(false): the record `composite` of `key` (as given to Add) is gone.
  template <typename K>
  void Remove(const K& key, std::string_view composite) {
    const int kg = KeyGroupFor(key, max_parallelism_);
    SLUICE_CHECK(range_.Contains(kg));
    if (removed_.empty()) removed_.resize(static_cast<size_t>(range_.size()));
    PutLengthPrefixed(composite, &removed_[static_cast<size_t>(kg - range_.start)]);
  }

 private:
  enum class Tracked { kNo, kFull, kChanges };
  KeyGroupRange range_;
  int max_parallelism_;
  Fill fill_;
  size_t state_index_ = 0;
  std::vector<std::string> buckets_;  // per key group of range_: snapshot records
  std::vector<std::string> removed_;  // per key group (or empty): length-prefixed composite keys
  std::vector<Encode> deferred_;
  Tracked tracked_ = Tracked::kNo;
};

// Change tracking of an operator's in-memory map (Key -> value) for its snapshots: after the
// first snapshot (every record), each snapshot holds only what changed since the previous one
// (InternalStateBuckets::TrackChanges). Each value carries a `changed` flag. Every operation that
// creates or may change a value calls Mark right after finding or inserting it (also when it
// re-inserts a key it erased), and every erase calls MarkErased; both cost a branch while no
// snapshot was taken (no checkpoints).
template <typename Key>
class ChangedKeys {
 public:
  // Between two far-apart snapshots the noted keys could outgrow the state (a key erased and
  // inserted again is noted each time): past `max_noted` of either kind, tracking stops until the
  // next snapshot, which then holds every record again.
  explicit ChangedKeys(size_t max_noted = size_t{1} << 22) : max_noted_(max_noted) {}

  void Mark(const Key& key, bool& changed) {
    if (tracking_ && !changed) [[unlikely]] {
      changed = true;
      keys_.push_back(key);
      if (keys_.size() > max_noted_) [[unlikely]]
        Stop();
    }
  }
  void MarkErased(const Key& key) {
    if (tracking_) {
      erased_.push_back(key);
      if (erased_.size() > max_noted_) [[unlikely]]
        Stop();
    }
  }
  // MarkErased for a map that holds `live` records after the erase. Once more was noted than
  // the map holds, the next snapshot is full (Take: noting more only adds to the difference), so
  // tracking stops at once: erasing most of a map (every window firing at the end of the input)
  // notes none of it.
  void MarkErased(const Key& key, size_t live) {
    if (tracking_) {
      erased_.push_back(key);
      if (erased_.size() > max_noted_ || FullIsSmaller(live, 0)) [[unlikely]]
        Stop();
    }
  }
  // In a snapshot's `fill`: the first time, starts tracking and returns false (the caller adds
  // every record). Then returns true after putting in `changed` the map's elements marked since
  // the previous snapshot (their flags cleared) and in `removed` the keys erased since (some may
  // be in the map again, and in `changed`: the backend applies removals first); `flag(value)` is
  // the value's changed flag.
  // When more was noted than the map holds (most of it erased, as at the end of the input when
  // every window fired), the snapshot is full again: fewer records to copy and write, and the
  // checkpoint writer replaces its copy of the state instead of erasing record by record.
  template <typename Map, typename Flag>
  bool Take(InternalStateBuckets& b, Map& map, Flag&& flag,
            std::vector<const typename Map::value_type*>* changed, std::vector<Key>* removed) {
    if (!tracking_ || FullIsSmaller(map.size(), 0)) {
      tracking_ = true;
      keys_.clear();
      erased_ = {};
      for (auto& kv : map) flag(kv.second) = false;  // set before tracking stopped (Stop)
      b.TrackChanges(/*full=*/true);
      return false;
    }
    b.TrackChanges(/*full=*/false);
    *removed = std::move(erased_);
    erased_ = {};
    if (keys_.size() >= map.size() / 16) {
      // Many changes: one pass over the map's memory costs less than a lookup (a cache miss) per
      // changed key.
      for (auto& kv : map) {
        bool& f = flag(kv.second);
        if (!f) continue;
        f = false;
        changed->push_back(&kv);
      }
    } else {
      for (const Key& k : keys_) {
        auto it = map.find(k);
        if (it == map.end()) continue;  // erased since: in `removed`
        bool& f = flag(it->second);
        if (!f) continue;  // marked twice: taken already
        f = false;
        changed->push_back(&*it);
      }
    }
    keys_.clear();  // its capacity serves the next interval (no pages faulted in again)
    return true;
  }
  // Take for a caller whose values are not one map's (it resolves the keys itself): false the
  // first time, after tracking stopped, and when more was noted (plus `other_removals`, removals
  // the caller names itself) than the `live` records a full snapshot holds (tracking starts; the
  // caller adds every record and clears every flag); else true with the keys marked since the
  // previous snapshot in `marked` (duplicates possible; a key erased since may be among them)
  // and the erased ones in `removed`.
  // The caller tells each of its states' buckets (InternalStateBuckets::TrackChanges).
  bool TakeNoted(std::vector<Key>* marked, std::vector<Key>* removed, size_t live,
                 size_t other_removals) {
    if (!tracking_ || FullIsSmaller(live, other_removals)) {
      tracking_ = true;
      keys_ = {};
      erased_ = {};
      return false;
    }
    *marked = std::move(keys_);
    *removed = std::move(erased_);
    keys_ = {};
    erased_ = {};
    return true;
  }

 private:
  bool FullIsSmaller(size_t live, size_t other_removals) const {
    return live < keys_.size() + erased_.size() + other_removals;
  }
  void Stop() {
    tracking_ = false;
    keys_ = {};
    erased_ = {};
  }

  size_t max_noted_;
  bool tracking_ = false;
  std::vector<Key> keys_;    // marked since the previous snapshot (duplicates possible)
  std::vector<Key> erased_;  // erased since the previous snapshot
};

// An element of a range walked for a snapshot: the element itself, or what a pointer points at.
template <typename T>
const T& SnapshotElement(const T& v) {
  return v;
}
template <typename T>
const T& SnapshotElement(const T* p) {
  return *p;
}

// The heap buffer a value owns (a vector's or a string's elements; also through std::optional),
// or nullptr; of type std::nullptr_t for types that own none.
template <typename T>
auto HeapDataOf(const T& v) {
  if constexpr (requires {
                  v.has_value();
                  *v;
                }) {
    using Inner = decltype(HeapDataOf(*v));
    if constexpr (std::is_same_v<Inner, std::nullptr_t>) {
      return nullptr;
    } else {
      return v.has_value() ? HeapDataOf(*v) : static_cast<const void*>(nullptr);
    }
  } else if constexpr (requires {
                         v.data();
                         v.size();
                       }) {
    return v.size() > 0 ? static_cast<const void*>(v.data()) : static_cast<const void*>(nullptr);
  } else {
    return nullptr;
  }
}

// Calls f(element) for every element of `range` (a hash map, in its order), prefetching the heap
// buffer `heap(element)` names a few elements ahead: encoding a map whose values own buffers
// (list or vector contents) otherwise waits for one cache miss per value.
template <typename Range, typename Heap, typename F>
void ForEachPrefetched(const Range& range, Heap&& heap, F&& f) {
  if constexpr (std::is_same_v<decltype(heap(*range.begin())), std::nullptr_t>) {
    for (const auto& e : range) f(e);
  } else {
    constexpr int kDistance = 16;
    auto lead = range.begin();
    const auto end = range.end();
    for (int i = 0; i < kDistance && lead != end; ++i, ++lead) __builtin_prefetch(heap(*lead));
    for (auto it = range.begin(); it != end; ++it) {
      if (lead != end) {
        __builtin_prefetch(heap(*lead));
        ++lead;
      }
      f(*it);
    }
  }
}

// Registers internal state `name` (starting with '_') of `store`, its values in `format`; the
// caller keeps the result alive as long as the store.
inline std::unique_ptr<InternalStateBuckets> RegisterInternalState(KeyedStateStore& store,
                                                                   std::string name,
                                                                   int max_parallelism,
                                                                   InternalStateBuckets::Fill fill,
                                                                   StateFormat format = {}) {
  auto buckets =
      std::make_unique<InternalStateBuckets>(store.key_groups(), max_parallelism, std::move(fill));
  store.RegisterInternalState(std::move(name), buckets.get(), std::move(format));
  return buckets;
}

// Fails the snapshot of operator `op`: something it must checkpoint has no sluice::Serializer.
// `what` names it ("the key type", "the window's accumulator type").
[[noreturn]] inline void ThrowNotCheckpointable(const std::string& op, std::string_view what) {
  throw JobFailure(absl::FailedPreconditionError(
      absl::StrCat("operator '", op, "': checkpointing needs a sluice::Serializer for ",
                   std::string(what), " (state/serializer.h)")));
}

// Snapshots `backend` (keyed state and the registered internal states) into `out`, naming
// operator `op` in errors. Only the synchronous part runs here: the checkpoint writer
// materializes the snapshot (MaterializeKeyedSnapshot) on its own thread. Unless `out.canonical`
// (a savepoint), a RocksDB backend may take a native incremental snapshot.
template <typename K, typename Out>
void SnapshotKeyedBackend(KeyedStateBackend<K>& backend, const std::string& op, Out& out) {
  absl::StatusOr<KeyedSnapshot> snap =
      backend.Snapshot(/*deferred=*/true, /*native=*/!out.canonical);
  if (!snap.ok()) {
    throw JobFailure(
        absl::Status(snap.status().code(), absl::StrCat(op, ": ", snap.status().message())));
  }
  out.keyed = std::move(*snap);
}

// Decodes the restored records of internal state `name`: for each, reads the key and calls
// `f(K& key, ByteReader& rest_of_composite, ByteReader& value)`, which returns false when the
// record does not decode. Call after the backend was restored.
template <typename K, typename F>
absl::Status RestoreInternalRecords(const std::vector<RestoredRecord>& records,
                                    const std::string& name, const RuntimeContext& ctx, F&& f) {
  for (const RestoredRecord& r : records) {
    ByteReader in(r.composite);
    ByteReader value(r.value);
    K key{};
    if (!Serializer<K>::Read(in, &key) || KeyGroupFor(key, ctx.max_parallelism) != r.key_group) {
      return absl::DataLossError(
          absl::StrCat("operator '", ctx.operator_name, "': restored internal state '", name,
                       "' holds a key that does not decode or belongs to another key group"));
    }
    if (!f(key, in, value)) {
      return absl::DataLossError(absl::StrCat("operator '", ctx.operator_name,
                                              "': restored internal state '", name,
                                              "' holds a record that does not decode"));
    }
  }
  return absl::OkStatus();
}
template <typename K, typename F>
absl::Status RestoreInternal(KeyedStateStore& store, const std::string& name,
                             const RuntimeContext& ctx, F&& f) {
  return RestoreInternalRecords<K>(store.TakeRestoredInternal(name), name, ctx, std::forward<F>(f));
}

// Timers: composite [key][namespace][8-byte time], value [varint sequence number].
// `Timers` is a TimerQueue<K, N> or anything with the same Key/Namespace types,
// ForEachWithSequence and Restore (WindowKeyLists).
// A flat copy of optional values (window contents) taken at a checkpoint, to encode later on the
// checkpoint writer's thread: trivially copyable values as they are, vectors of trivially
// copyable elements into one arena (no allocation per value). Other types have no flat copy
// (kFlat false): encode them at once.
//
//   FlatCopy<State> copy;  uint32_t i = copy.Add(contents);  ...
//   std::optional<State> scratch;  WriteOptionalContents<Acc>(copy.Get(i, &scratch), &out);
template <typename T>
struct FlatCopy {
  static constexpr bool kFlat = false;
  void Clear() {}
};
template <typename T>
requires std::is_trivially_copyable_v<T>
struct FlatCopy<T> {
  static constexpr bool kFlat = true;
  std::vector<std::optional<T>> values;

  template <typename Range, typename Value>
  void ReserveFor(const Range& range, Value&&) {
    values.reserve(values.size() + range.size());
  }
  void Clear() { values.clear(); }
  uint32_t Add(const std::optional<T>& v) {
    values.push_back(v);
    return static_cast<uint32_t>(values.size() - 1);
  }
  const std::optional<T>& Get(uint32_t i, std::optional<T>* /*scratch*/) const { return values[i]; }
};
template <typename E>
requires std::is_trivially_copyable_v<E>
struct FlatCopy<std::vector<E>> {
  static constexpr bool kFlat = true;
  static constexpr uint32_t kNone = ~uint32_t{0};
  std::vector<E> arena;
  std::vector<std::pair<size_t, uint32_t>> spans;  // offset in arena, count (kNone: no value)

  // Room for the `n` values of `range` (whose elements `value(element)` are std::optional
  // vectors): the arena grows once, not by doubling (each growth faults fresh pages in).
  template <typename Range, typename Value>
  void ReserveFor(const Range& range, Value&& value) {
    size_t elements = 0;
    for (const auto& x : range) {
      const std::optional<std::vector<E>>& v = value(x);
      if (v) elements += v->size();
    }
    spans.reserve(spans.size() + range.size());
    arena.reserve(arena.size() + elements);
  }
  void Clear() {
    arena.clear();
    spans.clear();
  }
  uint32_t Add(const std::optional<std::vector<E>>& v) {
    if (!v.has_value()) {
      spans.emplace_back(arena.size(), kNone);
    } else {
      spans.emplace_back(arena.size(), static_cast<uint32_t>(v->size()));
      arena.insert(arena.end(), v->begin(), v->end());
    }
    return static_cast<uint32_t>(spans.size() - 1);
  }
  // The value, rebuilt in `scratch` (its buffer reused from call to call).
  const std::optional<std::vector<E>>& Get(uint32_t i,
                                           std::optional<std::vector<E>>* scratch) const {
    const auto [offset, count] = spans[i];
    if (count == kNone) {
      scratch->reset();
    } else {
      if (!scratch->has_value()) scratch->emplace();
      const auto first = arena.begin() + static_cast<std::ptrdiff_t>(offset);
      (*scratch)->assign(first, first + count);
    }
    return *scratch;
  }
};

// Flat snapshot copies, reused: the checkpoint writer hands a copy back once it encoded it
// (Recycle) and the next snapshot takes it (Take), capacity and all — a copy of tens of megabytes
// is otherwise mapped fresh by malloc and page-faulted in at every checkpoint (on the task
// thread). Keeps one copy (`Copy::Clear()` empties it). Thread-safe.
template <typename Copy>
class CopyPool {
 public:
  std::shared_ptr<Copy> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    if (kept_ != nullptr) return std::move(kept_);
    return std::make_shared<Copy>();
  }
  void Recycle(std::shared_ptr<Copy> copy) {
    copy->Clear();
    std::lock_guard<std::mutex> lock(mu_);
    kept_ = std::move(copy);
  }

 private:
  std::mutex mu_;
  std::shared_ptr<Copy> kept_;
};

// Keys and namespaces without heap buffers: the timers are copied flat on the task thread and
// encoded on the checkpoint writer's (InternalStateBuckets::Defer).
template <typename K, typename N>
void EncodeTimer(Timestamp time, uint64_t seq, const K& key, const N& ns, std::string* composite,
                 std::string* value, InternalStateBuckets& b) {
  composite->clear();
  Serializer<K>::Write(key, composite);
  Serializer<N>::Write(ns, composite);
  PutFixed64(time, composite);
  value->clear();
  PutVarint(seq, value);
  b.Add(key, *composite, *value);
}
// Names the record of EncodeTimer's timer (time, key, ns) for removal (change-tracked timers).
template <typename K, typename N>
void RemoveTimer(Timestamp time, const K& key, const N& ns, std::string* composite,
                 InternalStateBuckets& b) {
  composite->clear();
  Serializer<K>::Write(key, composite);
  Serializer<N>::Write(ns, composite);
  PutFixed64(time, composite);
  b.Remove(key, *composite);
}
template <typename Timers>
void AddTimers(InternalStateBuckets& b, const Timers& timers) {
  using K = typename Timers::Key;
  using N = typename Timers::Namespace;
  if constexpr (std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<N>) {
    struct Flat {
      Timestamp time;
      uint64_t seq;
      K key;
      N ns;
    };
    auto copy = std::make_shared<std::vector<Flat>>();
    if constexpr (requires { timers.size(); }) copy->reserve(timers.size());
    timers.ForEachWithSequence([&](Timestamp time, uint64_t seq, const K& key, const N& ns) {
      copy->push_back(Flat{time, seq, key, ns});
    });
    b.Defer([copy](InternalStateBuckets& out) {
      std::string composite, value;
      for (const Flat& f : *copy) EncodeTimer(f.time, f.seq, f.key, f.ns, &composite, &value, out);
    });
  } else {
    std::string composite, value;
    timers.ForEachWithSequence([&](Timestamp time, uint64_t seq, const K& key, const N& ns) {
      EncodeTimer(time, seq, key, ns, &composite, &value, b);
    });
  }
}

template <typename Timers>
absl::Status RestoreTimerRecords(const std::vector<RestoredRecord>& records,
                                 const std::string& name, const RuntimeContext& ctx,
                                 Timers& timers) {
  using K = typename Timers::Key;
  using N = typename Timers::Namespace;
  return RestoreInternalRecords<K>(
      records, name, ctx, [&](K& key, ByteReader& rest, ByteReader& value) {
        N ns{};
        Timestamp time = 0;
        uint64_t seq = 0;
        if (!Serializer<N>::Read(rest, &ns) || !rest.ReadRaw(&time, sizeof time) || !rest.empty() ||
            !value.ReadVarint(&seq) || !value.empty()) {
          return false;
        }
        timers.Restore(time, seq, key, ns);
        return true;
      });
}
template <typename Timers>
absl::Status RestoreTimers(KeyedStateStore& store, const std::string& name,
                           const RuntimeContext& ctx, Timers& timers) {
  return RestoreTimerRecords(store.TakeRestoredInternal(name), name, ctx, timers);
}

}  // namespace sluice::internal
