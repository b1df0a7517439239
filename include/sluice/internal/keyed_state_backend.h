// Keyed state backends: where the state handles of state/state.h keep their values. Internal.
//
// One KeyedStateBackend<K> per keyed operator subtask. It knows the current key (set per record
// or timer) and owns one table per registered state name. Tables do not depend on the key type:
//
//  * HashMap backend: the backend maps each key to a dense id (per key group, so a key group's
//    keys can be enumerated for snapshots and rescaling); a table is a vector indexed by that id
//    (and, for namespaced state such as per-window state, a small hash map per id). Reading state
//    of the current key is one vector index. An id is reference counted by the entries that exist
//    for it and returned when the last one is cleared, so keys without state cost nothing.
//  * RocksDB backend: the backend encodes the current key once ([key group: 2 bytes BE][key]);
//    a table is a column family, and appends the namespace (and map key) to that prefix.
//
// Both produce the same canonical snapshot records (see WriteKeyGroup / RestoreRecord): a
// composite key (key, namespace, map key — the RocksDB key without its key-group prefix) and a
// value encoded as RocksDB stores it, so a snapshot of one backend restores into the other.
//
// Value encodings (identical on both backends):
//  * value, reducing, aggregating state and map entries: [8-byte timestamp if TTL][serialized]
//  * list state: elements, each [varint length][8-byte timestamp if TTL][serialized element]
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/core/key.h>
#include <sluice/core/status.h>
#include <sluice/internal/job_failure.h>
#include <sluice/internal/rocksdb_store.h>
#include <sluice/internal/timer_queue.h>
#include <sluice/state/serializer.h>
#include <sluice/state/serializer_identity.h>
#include <sluice/state/state.h>
#include <sluice/time/clock.h>

namespace sluice::internal {

// kInternal: operator-internal keyed structures (timers, window contents) that snapshot with the
// keyed state through InternalKeyedState.
enum class StateKind : uint8_t {
  kValue = 1,
  kList = 2,
  kMap = 3,
  kReducing = 4,
  kAggregating = 5,
  kInternal = 6,
};
inline const char* StateKindName(StateKind kind) {
  switch (kind) {
    case StateKind::kValue:
      return "ValueState";
    case StateKind::kList:
      return "ListState";
    case StateKind::kMap:
      return "MapState";
    case StateKind::kReducing:
      return "ReducingState";
    case StateKind::kAggregating:
      return "AggregatingState";
    case StateKind::kInternal:
      return "internal state";
  }
  return "state";
}

[[noreturn]] inline void ThrowStateError(absl::Status status) {
  throw JobFailure(std::move(status));
}

inline void PutFixed64(int64_t v, std::string* out) {
  out->append(reinterpret_cast<const char*>(&v), sizeof v);
}
inline int64_t GetFixed64(std::string_view bytes) {
  int64_t v = 0;
  std::memcpy(&v, bytes.data(), sizeof v);
  return v;
}

// What a table sees of the current key. Implemented by KeyedStateBackend<K>.
class KeyContext {
 public:
  static constexpr uint32_t kNoId = UINT32_MAX;
  virtual ~KeyContext() = default;

  // HashMap backend: the current key's id, or kNoId when it has no state.
  uint32_t CurrentId() {
    if (!resolved_) Resolve();
    return id_;
  }
  // HashMap backend: the current key's id, allocated if it had none.
  uint32_t EnsureCurrentId() {
    if (CurrentId() == kNoId) id_ = Allocate();
    return id_;
  }
  // HashMap backend: the entries of key `id` were accessed (and maybe changed). Once snapshots
  // are taken, the next snapshot copies only the keys marked since the previous one.
  void MarkDirty(uint32_t id) {
    if (tracking_ && !dirty_flags_[id]) {
      dirty_flags_[id] = 1;
      dirty_.push_back(id);
    }
  }
  // HashMap backend: entries of `id` appeared / disappeared.
  void Ref(uint32_t id) { ++refs_[id]; }
  void Unref(uint32_t id) {
    if (--refs_[id] == 0) {
      Release(id);
      if (id == id_) id_ = kNoId;
    }
  }
  // RocksDB backend: [key group 2 bytes BE][serialized key].
  const std::string& CurrentKeyBytes() {
    if (!bytes_resolved_) ResolveBytes();
    return key_bytes_;
  }
  Timestamp Now() const { return clock_->NowMillis(); }
  const Clock* clock() const { return clock_; }
  bool has_key() const { return has_key_; }

 protected:
  virtual void Resolve() = 0;
  virtual uint32_t Allocate() = 0;
  virtual void Release(uint32_t id) = 0;
  virtual void ResolveBytes() = 0;

  bool has_key_ = false;
  bool resolved_ = false;
  bool bytes_resolved_ = false;
  uint32_t id_ = kNoId;
  std::vector<uint32_t> refs_;
  // Change tracking (HashMap), on from the first snapshot: a flag per id and the marked ids.
  bool tracking_ = false;
  std::vector<uint8_t> dirty_flags_;
  std::vector<uint32_t> dirty_;
  std::string key_bytes_;
  const Clock* clock_ = nullptr;
};

// The current namespace of namespaced tables (the window of a window function's windowState()).
template <typename N>
struct NamespaceSlot {
  const N* current = nullptr;
};

class StateTableBase {
 public:
  StateTableBase(std::string name, StateKind kind, const std::type_info& type, int64_t ttl_ms)
      : name_(std::move(name)), kind_(kind), type_(&type), ttl_ms_(ttl_ms) {}
  virtual ~StateTableBase() = default;
  const std::string& name() const { return name_; }
  StateKind kind() const { return kind_; }
  const std::type_info& type() const { return *type_; }
  int64_t ttl_ms() const { return ttl_ms_; }
  const std::type_info& namespace_type() const { return *ns_type_; }
  void set_namespace_type(const std::type_info& t) { ns_type_ = &t; }
  // The identity of the format of its values (state/serializer_identity.h), kept in snapshots.
  const std::string& serializer() const { return serializer_; }
  void set_serializer(std::string identity) { serializer_ = std::move(identity); }

  // HashMap: calls emit(composite key suffix after the key, value bytes) for every live entry of
  // key `id`. RocksDB tables do not implement it (the backend scans the column family).
  virtual void ForEachEntry(uint32_t /*id*/, int64_t /*now*/,
                            absl::FunctionRef<void(std::string_view, std::string_view)> /*emit*/) {}
  // HashMap: whether key `id` has an entry (in any namespace).
  virtual bool HasEntry(uint32_t /*id*/) const { return false; }
  // HashMap: restores one entry of key `id` from a canonical record.
  virtual bool RestoreEntry(uint32_t /*id*/, std::string_view /*suffix*/,
                            std::string_view /*value*/) {
    return false;
  }
  // RocksDB: the column family.
  int column_family() const { return cf_; }
  void set_column_family(int cf) { cf_ = cf; }

 protected:
  bool Expired(int64_t ts, int64_t now) const { return ttl_ms_ > 0 && ts + ttl_ms_ <= now; }

  std::string name_;
  StateKind kind_;
  const std::type_info* type_;
  const std::type_info* ns_type_ = &typeid(VoidNamespace);
  int64_t ttl_ms_;
  int cf_ = -1;
  std::string serializer_;
};

// The format of a state's values: its identity, and whether it reads an older identity.
struct StateFormat {
  std::string identity;
  bool (*reads)(std::string_view written) = nullptr;
};
template <typename T>
StateFormat FormatOf() {
  return {SerializerIdentity<T>(), &SerializerReads<T>};
}

// --- HashMap tables ---------------------------------------------------------------------------------

// Storage per key id: the payload P directly (no namespace) or a map namespace -> P.
template <typename N, typename P>
class HeapTable : public StateTableBase {
 public:
  static constexpr bool kVoid = std::is_same_v<N, VoidNamespace>;
  using Entry = std::conditional_t<kVoid, P, absl::flat_hash_map<N, P>>;

  HeapTable(std::string name, StateKind kind, const std::type_info& type, int64_t ttl_ms,
            KeyContext* ctx, const NamespaceSlot<N>* ns)
      : StateTableBase(std::move(name), kind, type, ttl_ms), ctx_(ctx), ns_(ns) {}

  void ForEachEntry(uint32_t id, int64_t now,
                    absl::FunctionRef<void(std::string_view, std::string_view)> emit) override {
    if (id >= entries_.size()) return;
    std::string suffix, value;
    auto one = [&](const std::string& ns_bytes, const P& p) {
      static_cast<const void>(p);
      ForEachPayloadRecord(p, now, [&](std::string_view extra, std::string_view v) {
        suffix.assign(ns_bytes);
        suffix.append(extra);
        value.assign(v);
        emit(suffix, value);
      });
    };
    if constexpr (kVoid) {
      if (entries_[id].present()) one(std::string(), entries_[id]);
    } else {
      for (const auto& [ns, p] : entries_[id]) one(SerializeToString(ns), p);
    }
  }

  bool HasEntry(uint32_t id) const override {
    if (id >= entries_.size()) return false;
    if constexpr (kVoid) {
      return entries_[id].present();
    } else {
      return !entries_[id].empty();
    }
  }

  bool RestoreEntry(uint32_t id, std::string_view suffix, std::string_view value) override {
    ByteReader in(suffix);
    if (id >= entries_.size()) entries_.resize(id + 1);
    P* p = nullptr;
    bool created = false;
    if constexpr (kVoid) {
      p = &entries_[id];
      created = !p->present();
    } else {
      N ns{};
      if (!Serializer<N>::Read(in, &ns)) return false;
      auto [it, inserted] = entries_[id].try_emplace(std::move(ns));
      p = &it->second;
      created = entries_[id].size() == 1 && inserted;
    }
    if (!RestorePayload(*p, in.rest(), value)) return false;
    if (created) ctx_->Ref(id);
    return true;
  }

 protected:
  // For each record of a payload: (extra composite-key bytes, value bytes). Derived classes.
  virtual void ForEachPayloadRecord(
      const P& p, int64_t now,
      absl::FunctionRef<void(std::string_view, std::string_view)> emit) = 0;
  virtual bool RestorePayload(P& p, std::string_view extra, std::string_view value) = 0;

  // The payload of the current (key, namespace), or nullptr.
  P* Find() {
    const uint32_t id = ctx_->CurrentId();
    if (id == KeyContext::kNoId || id >= entries_.size()) return nullptr;
    ctx_->MarkDirty(id);  // the caller may change or erase what it finds
    if constexpr (kVoid) {
      P& p = entries_[id];
      return p.present() ? &p : nullptr;
    } else {
      auto& m = entries_[id];
      auto it = m.find(*ns_->current);
      return it == m.end() ? nullptr : &it->second;
    }
  }
  // The payload of the current (key, namespace), created empty if absent. The caller makes it
  // present before returning to user code, or calls Erase.
  P& FindOrCreate() {
    const uint32_t id = ctx_->EnsureCurrentId();
    ctx_->MarkDirty(id);
    if (id >= entries_.size()) entries_.resize(std::max<size_t>(id + 1, entries_.size() * 2));
    if constexpr (kVoid) {
      P& p = entries_[id];
      if (!p.present()) ctx_->Ref(id);
      return p;
    } else {
      auto& m = entries_[id];
      auto [it, inserted] = m.try_emplace(*ns_->current);
      if (inserted && m.size() == 1) ctx_->Ref(id);
      return it->second;
    }
  }
  // Removes the current (key, namespace)'s payload (which exists).
  void Erase() {
    const uint32_t id = ctx_->CurrentId();
    if constexpr (kVoid) {
      entries_[id].reset();
    } else {
      auto& m = entries_[id];
      m.erase(*ns_->current);
      if (!m.empty()) return;
    }
    ctx_->Unref(id);
  }
  int64_t Now() const { return ttl_ms_ > 0 ? ctx_->Now() : 0; }

  KeyContext* ctx_;
  const NamespaceSlot<N>* ns_;
  std::vector<Entry> entries_;
  bool update_on_read_ = false;

 public:
  void set_update_on_read(bool v) { update_on_read_ = v; }
};

template <typename T>
struct SingleSlot {
  std::optional<T> value;
  int64_t ts = 0;
  bool present() const { return value.has_value(); }
  void reset() { value.reset(); }
};

// Value, reducing and aggregating state: one (optional) value per (key, namespace).
template <typename N, typename T>
class HeapSingleTable : public HeapTable<N, SingleSlot<T>> {
  using Base = HeapTable<N, SingleSlot<T>>;

 public:
  using Base::Base;

 protected:
  // The live value of the current (key, namespace), refreshing its TTL on read if configured.
  T* Live() {
    SingleSlot<T>* s = this->Find();
    if (s == nullptr) return nullptr;
    if (this->ttl_ms_ > 0) {
      const int64_t now = this->ctx_->Now();
      if (this->Expired(s->ts, now)) {
        this->Erase();
        return nullptr;
      }
      if (this->update_on_read_) s->ts = now;
    }
    return &*s->value;
  }
  void Set(T value) {
    SingleSlot<T>& s = this->FindOrCreate();
    s.value = std::move(value);
    s.ts = this->Now();
  }
  void ClearCurrent() {
    if (this->Find() != nullptr) this->Erase();
  }
  void ForEachPayloadRecord(
      const SingleSlot<T>& s, int64_t now,
      absl::FunctionRef<void(std::string_view, std::string_view)> emit) override {
    if (this->Expired(s.ts, now)) return;
    std::string v;
    if (this->ttl_ms_ > 0) PutFixed64(s.ts, &v);
    Serializer<T>::Write(*s.value, &v);
    emit({}, v);
  }
  bool RestorePayload(SingleSlot<T>& s, std::string_view extra, std::string_view value) override {
    if (!extra.empty()) return false;
    if (this->ttl_ms_ > 0) {
      if (value.size() < 8) return false;
      s.ts = GetFixed64(value);
      value.remove_prefix(8);
    }
    T t{};
    if (!DeserializeFromString(value, &t)) return false;
    s.value = std::move(t);
    return true;
  }
};

template <typename N, typename T>
class HeapValueState final : public HeapSingleTable<N, T>, public ValueStateImpl<T> {
 public:
  using HeapSingleTable<N, T>::HeapSingleTable;
  std::optional<T> Value() override {
    T* v = this->Live();
    return v == nullptr ? std::nullopt : std::optional<T>(*v);
  }
  void Update(T value) override { this->Set(std::move(value)); }
  void Clear() override { this->ClearCurrent(); }
};

template <typename N, typename T, typename F>
class HeapReducingState final : public HeapSingleTable<N, T>, public MergingStateImpl<T, T> {
 public:
  template <typename... A>
  HeapReducingState(F f, A&&... a)
      : HeapSingleTable<N, T>(std::forward<A>(a)...), f_(std::move(f)) {}
  std::optional<T> Get() override {
    T* v = this->Live();
    return v == nullptr ? std::nullopt : std::optional<T>(*v);
  }
  void Add(T value) override {
    T* v = this->Live();
    if (v == nullptr) {
      this->Set(std::move(value));
    } else {
      this->Set(f_(std::as_const(*v), std::as_const(value)));
    }
  }
  void Clear() override { this->ClearCurrent(); }

 private:
  F f_;
};

template <typename N, typename Agg>
class HeapAggregatingState final
    : public HeapSingleTable<N, typename Agg::AccumulatorType>,
      public MergingStateImpl<typename Agg::InputType, typename Agg::OutputType> {
  using Acc = typename Agg::AccumulatorType;

 public:
  template <typename... A>
  HeapAggregatingState(Agg agg, A&&... a)
      : HeapSingleTable<N, Acc>(std::forward<A>(a)...), agg_(std::move(agg)) {}
  std::optional<typename Agg::OutputType> Get() override {
    Acc* acc = this->Live();
    if (acc == nullptr) return std::nullopt;
    return agg_.GetResult(std::as_const(*acc));
  }
  void Add(typename Agg::InputType value) override {
    Acc* acc = this->Live();
    if (acc == nullptr) {
      Acc fresh = agg_.CreateAccumulator();
      agg_.Add(std::as_const(value), fresh);
      this->Set(std::move(fresh));
    } else {
      agg_.Add(std::as_const(value), *acc);
      if (this->ttl_ms_ > 0) this->Find()->ts = this->ctx_->Now();
    }
  }
  void Clear() override { this->ClearCurrent(); }

 private:
  Agg agg_;
};

template <typename T>
struct ListSlot {
  std::vector<T> values;
  std::vector<int64_t> ts;  // parallel to values when TTL is on
  bool present() const { return !values.empty(); }
  void reset() {
    values.clear();
    values.shrink_to_fit();
    ts.clear();
    ts.shrink_to_fit();
  }
};

template <typename N, typename T>
class HeapListState final : public HeapTable<N, ListSlot<T>>, public ListStateImpl<T> {
  using Base = HeapTable<N, ListSlot<T>>;

 public:
  using Base::Base;
  std::vector<T> Get() override {
    ListSlot<T>* s = Live();
    return s == nullptr ? std::vector<T>() : s->values;
  }
  void Add(T value) override {
    ListSlot<T>& s = this->FindOrCreate();
    s.values.push_back(std::move(value));
    if (this->ttl_ms_ > 0) s.ts.push_back(this->ctx_->Now());
  }
  void AddAll(std::vector<T> values) override {
    if (values.empty()) return;
    ListSlot<T>& s = this->FindOrCreate();
    const int64_t now = this->Now();
    for (T& v : values) {
      s.values.push_back(std::move(v));
      if (this->ttl_ms_ > 0) s.ts.push_back(now);
    }
  }
  void Update(std::vector<T> values) override {
    Clear();
    AddAll(std::move(values));
  }
  void Clear() override {
    if (this->Find() != nullptr) this->Erase();
  }

 protected:
  ListSlot<T>* Live() {
    ListSlot<T>* s = this->Find();
    if (s == nullptr || this->ttl_ms_ == 0) return s;
    const int64_t now = this->ctx_->Now();
    size_t kept = 0;
    for (size_t i = 0; i < s->values.size(); ++i) {
      if (this->Expired(s->ts[i], now)) continue;
      if (kept != i) {
        s->values[kept] = std::move(s->values[i]);
        s->ts[kept] = s->ts[i];
      }
      if (this->update_on_read_) s->ts[kept] = now;
      ++kept;
    }
    s->values.resize(kept);
    s->ts.resize(kept);
    if (kept == 0) {
      this->Erase();
      return nullptr;
    }
    return s;
  }
  void ForEachPayloadRecord(
      const ListSlot<T>& s, int64_t now,
      absl::FunctionRef<void(std::string_view, std::string_view)> emit) override {
    std::string v, element;
    for (size_t i = 0; i < s.values.size(); ++i) {
      if (this->ttl_ms_ > 0 && this->Expired(s.ts[i], now)) continue;
      element.clear();
      if (this->ttl_ms_ > 0) PutFixed64(s.ts[i], &element);
      Serializer<T>::Write(s.values[i], &element);
      AppendListElement(element, &v);
    }
    if (!v.empty()) emit({}, v);
  }
  bool RestorePayload(ListSlot<T>& s, std::string_view extra, std::string_view value) override {
    if (!extra.empty()) return false;
    bool ok = true;
    const bool listed = ForEachListElement(value, [&](std::string_view e) {
      if (this->ttl_ms_ > 0) {
        if (e.size() < 8) {
          ok = false;
          return;
        }
        s.ts.push_back(GetFixed64(e));
        e.remove_prefix(8);
      }
      T t{};
      if (!DeserializeFromString(e, &t)) ok = false;
      s.values.push_back(std::move(t));
    });
    return listed && ok && !s.values.empty();
  }
};

template <typename UV>
struct MapEntry {
  UV value;
  int64_t ts = 0;
};
template <typename UK, typename UV>
struct MapSlot {
  absl::flat_hash_map<UK, MapEntry<UV>> entries;
  bool present() const { return !entries.empty(); }
  void reset() { absl::flat_hash_map<UK, MapEntry<UV>>().swap(entries); }
};

template <typename N, typename UK, typename UV>
class HeapMapState final : public HeapTable<N, MapSlot<UK, UV>>, public MapStateImpl<UK, UV> {
  using Base = HeapTable<N, MapSlot<UK, UV>>;

 public:
  using Base::Base;
  std::optional<UV> Get(const UK& key) override {
    MapEntry<UV>* e = LiveEntry(key);
    return e == nullptr ? std::nullopt : std::optional<UV>(e->value);
  }
  bool Contains(const UK& key) override { return LiveEntry(key) != nullptr; }
  void Put(UK key, UV value) override {
    MapSlot<UK, UV>& s = this->FindOrCreate();
    s.entries.insert_or_assign(std::move(key), MapEntry<UV>{std::move(value), this->Now()});
  }
  void Remove(const UK& key) override {
    MapSlot<UK, UV>* s = this->Find();
    if (s == nullptr) return;
    s->entries.erase(key);
    if (s->entries.empty()) this->Erase();
  }
  std::vector<std::pair<UK, UV>> Entries() override {
    std::vector<std::pair<UK, UV>> out;
    MapSlot<UK, UV>* s = Live();
    if (s == nullptr) return out;
    out.reserve(s->entries.size());
    for (const auto& [k, e] : s->entries) out.emplace_back(k, e.value);
    return out;
  }
  bool IsEmpty() override { return Live() == nullptr; }
  void Clear() override {
    if (this->Find() != nullptr) this->Erase();
  }

 private:
  MapEntry<UV>* LiveEntry(const UK& key) {
    MapSlot<UK, UV>* s = this->Find();
    if (s == nullptr) return nullptr;
    auto it = s->entries.find(key);
    if (it == s->entries.end()) return nullptr;
    if (this->ttl_ms_ > 0) {
      const int64_t now = this->ctx_->Now();
      if (this->Expired(it->second.ts, now)) {
        s->entries.erase(it);
        if (s->entries.empty()) this->Erase();
        return nullptr;
      }
      if (this->update_on_read_) it->second.ts = now;
    }
    return &it->second;
  }
  MapSlot<UK, UV>* Live() {
    MapSlot<UK, UV>* s = this->Find();
    if (s == nullptr || this->ttl_ms_ == 0) return s;
    const int64_t now = this->ctx_->Now();
    absl::erase_if(s->entries, [&](const auto& kv) { return this->Expired(kv.second.ts, now); });
    if (s->entries.empty()) {
      this->Erase();
      return nullptr;
    }
    if (this->update_on_read_) {
      for (auto& [k, e] : s->entries) e.ts = now;
    }
    return s;
  }
  void ForEachPayloadRecord(
      const MapSlot<UK, UV>& s, int64_t now,
      absl::FunctionRef<void(std::string_view, std::string_view)> emit) override {
    std::string k, v;
    for (const auto& [uk, e] : s.entries) {
      if (this->Expired(e.ts, now)) continue;
      k.clear();
      v.clear();
      Serializer<UK>::Write(uk, &k);
      if (this->ttl_ms_ > 0) PutFixed64(e.ts, &v);
      Serializer<UV>::Write(e.value, &v);
      emit(k, v);
    }
  }
  bool RestorePayload(MapSlot<UK, UV>& s, std::string_view extra, std::string_view value) override {
    UK uk{};
    if (!DeserializeFromString(extra, &uk)) return false;
    MapEntry<UV> e;
    if (this->ttl_ms_ > 0) {
      if (value.size() < 8) return false;
      e.ts = GetFixed64(value);
      value.remove_prefix(8);
    }
    if (!DeserializeFromString(value, &e.value)) return false;
    s.entries.insert_or_assign(std::move(uk), std::move(e));
    return true;
  }
};

// --- RocksDB tables ---------------------------------------------------------------------------------

template <typename N>
class RocksTable : public StateTableBase {
 public:
  RocksTable(std::string name, StateKind kind, const std::type_info& type, int64_t ttl_ms,
             KeyContext* ctx, const NamespaceSlot<N>* ns, RocksDbStore* db)
      : StateTableBase(std::move(name), kind, type, ttl_ms), ctx_(ctx), ns_(ns), db_(db) {}
  void set_update_on_read(bool v) { update_on_read_ = v; }

 protected:
  // The RocksDB key of the current (key, namespace) in key_.
  const std::string& CurrentKey() {
    key_.assign(ctx_->CurrentKeyBytes());
    if constexpr (!std::is_same_v<N, VoidNamespace>) Serializer<N>::Write(*ns_->current, &key_);
    return key_;
  }
  int64_t Now() const { return ttl_ms_ > 0 ? ctx_->Now() : 0; }
  // Reads a TTL-prefixed single value at `key`; false if absent or expired (then deleted).
  template <typename T>
  bool ReadSingle(const std::string& key, T* out, bool refresh) {
    if (!db_->Get(cf_, key, &scratch_)) return false;
    std::string_view v = scratch_;
    if (ttl_ms_ > 0) {
      const int64_t now = ctx_->Now();
      if (v.size() < 8) Corrupt(key);
      if (Expired(GetFixed64(v), now)) {
        db_->Delete(cf_, key);
        return false;
      }
      v.remove_prefix(8);
      if (refresh && update_on_read_) {
        std::string updated;
        PutFixed64(now, &updated);
        updated.append(v);
        db_->Put(cf_, key, updated);
      }
    }
    if (!DeserializeFromString(v, out)) Corrupt(key);
    return true;
  }
  template <typename T>
  void WriteSingle(const std::string& key, const T& value) {
    value_.clear();
    if (ttl_ms_ > 0) PutFixed64(ctx_->Now(), &value_);
    Serializer<T>::Write(value, &value_);
    db_->Put(cf_, key, value_);
  }
  [[noreturn]] void Corrupt(std::string_view) {
    ThrowStateError(
        absl::DataLossError(absl::StrCat("RocksDB state backend at ", db_->path(), ": state '",
                                         name_, "' holds a value that does not decode")));
  }

  KeyContext* ctx_;
  const NamespaceSlot<N>* ns_;
  RocksDbStore* db_;
  std::string key_, value_, scratch_;
  bool update_on_read_ = false;
};

template <typename N, typename T>
class RocksValueState final : public RocksTable<N>, public ValueStateImpl<T> {
 public:
  using RocksTable<N>::RocksTable;
  std::optional<T> Value() override {
    T v{};
    if (!this->ReadSingle(this->CurrentKey(), &v, true)) return std::nullopt;
    return v;
  }
  void Update(T value) override { this->WriteSingle(this->CurrentKey(), value); }
  void Clear() override { this->db_->Delete(this->cf_, this->CurrentKey()); }
};

template <typename N, typename T, typename F>
class RocksReducingState final : public RocksTable<N>, public MergingStateImpl<T, T> {
 public:
  template <typename... A>
  RocksReducingState(F f, A&&... a) : RocksTable<N>(std::forward<A>(a)...), f_(std::move(f)) {}
  std::optional<T> Get() override {
    T v{};
    if (!this->ReadSingle(this->CurrentKey(), &v, true)) return std::nullopt;
    return v;
  }
  void Add(T value) override {
    const std::string& key = this->CurrentKey();
    T v{};
    if (this->ReadSingle(key, &v, false)) {
      this->WriteSingle(key, f_(std::as_const(v), std::as_const(value)));
    } else {
      this->WriteSingle(key, value);
    }
  }
  void Clear() override { this->db_->Delete(this->cf_, this->CurrentKey()); }

 private:
  F f_;
};

template <typename N, typename Agg>
class RocksAggregatingState final
    : public RocksTable<N>,
      public MergingStateImpl<typename Agg::InputType, typename Agg::OutputType> {
  using Acc = typename Agg::AccumulatorType;

 public:
  template <typename... A>
  RocksAggregatingState(Agg agg, A&&... a)
      : RocksTable<N>(std::forward<A>(a)...), agg_(std::move(agg)) {}
  std::optional<typename Agg::OutputType> Get() override {
    Acc acc{};
    if (!this->ReadSingle(this->CurrentKey(), &acc, true)) return std::nullopt;
    return agg_.GetResult(std::as_const(acc));
  }
  void Add(typename Agg::InputType value) override {
    const std::string& key = this->CurrentKey();
    Acc acc{};
    if (!this->ReadSingle(key, &acc, false)) acc = agg_.CreateAccumulator();
    agg_.Add(std::as_const(value), acc);
    this->WriteSingle(key, acc);
  }
  void Clear() override { this->db_->Delete(this->cf_, this->CurrentKey()); }

 private:
  Agg agg_;
};

template <typename N, typename T>
class RocksListState final : public RocksTable<N>, public ListStateImpl<T> {
 public:
  using RocksTable<N>::RocksTable;
  std::vector<T> Get() override {
    std::vector<T> out;
    const std::string& key = this->CurrentKey();
    if (!this->db_->Get(this->cf_, key, &this->scratch_)) return out;
    const int64_t now = this->Now();
    bool dropped = false;
    bool ok = true;
    std::string rewritten, element;
    const bool listed = ForEachListElement(this->scratch_, [&](std::string_view e) {
      if (this->ttl_ms_ > 0) {
        if (e.size() < 8) {
          ok = false;
          return;
        }
        if (this->Expired(GetFixed64(e), now)) {
          dropped = true;
          return;
        }
        element.clear();
        PutFixed64(this->update_on_read_ ? now : GetFixed64(e), &element);
        element.append(e.substr(8));
        AppendListElement(element, &rewritten);
        e.remove_prefix(8);
      }
      T t{};
      if (!DeserializeFromString(e, &t)) ok = false;
      out.push_back(std::move(t));
    });
    if (!listed || !ok) this->Corrupt(key);
    if (this->ttl_ms_ > 0 && (dropped || this->update_on_read_)) {
      if (out.empty()) {
        this->db_->Delete(this->cf_, key);
      } else {
        this->db_->Put(this->cf_, key, rewritten);
      }
    }
    return out;
  }
  void Add(T value) override {
    this->value_.clear();
    Encode(value, this->Now(), &this->value_);
    this->db_->Append(this->cf_, this->CurrentKey(), this->value_);
  }
  void AddAll(std::vector<T> values) override {
    if (values.empty()) return;
    this->value_.clear();
    const int64_t now = this->Now();
    for (const T& v : values) Encode(v, now, &this->value_);
    this->db_->Append(this->cf_, this->CurrentKey(), this->value_);
  }
  void Update(std::vector<T> values) override {
    if (values.empty()) {
      Clear();
      return;
    }
    this->value_.clear();
    const int64_t now = this->Now();
    for (const T& v : values) Encode(v, now, &this->value_);
    this->db_->Put(this->cf_, this->CurrentKey(), this->value_);
  }
  void Clear() override { this->db_->Delete(this->cf_, this->CurrentKey()); }

 private:
  void Encode(const T& v, int64_t now, std::string* out) {
    element_.clear();
    if (this->ttl_ms_ > 0) PutFixed64(now, &element_);
    Serializer<T>::Write(v, &element_);
    AppendListElement(element_, out);
  }
  std::string element_;
};

template <typename N, typename UK, typename UV>
class RocksMapState final : public RocksTable<N>, public MapStateImpl<UK, UV> {
 public:
  using RocksTable<N>::RocksTable;
  std::optional<UV> Get(const UK& key) override {
    UV v{};
    if (!this->ReadSingle(EntryKey(key), &v, true)) return std::nullopt;
    return v;
  }
  bool Contains(const UK& key) override {
    UV v{};
    return this->ReadSingle(EntryKey(key), &v, false);
  }
  void Put(UK key, UV value) override { this->WriteSingle(EntryKey(key), value); }
  void Remove(const UK& key) override { this->db_->Delete(this->cf_, EntryKey(key)); }
  std::vector<std::pair<UK, UV>> Entries() override {
    std::vector<std::pair<UK, UV>> out;
    ForEachLive([&](UK k, UV v) {
      out.emplace_back(std::move(k), std::move(v));
      return true;
    });
    return out;
  }
  bool IsEmpty() override {
    bool empty = true;
    ForEachLive([&](UK, UV) {
      empty = false;
      return false;
    });
    return empty;
  }
  void Clear() override { this->db_->DeletePrefix(this->cf_, this->CurrentKey()); }

 private:
  const std::string& EntryKey(const UK& key) {
    this->CurrentKey();
    Serializer<UK>::Write(key, &this->key_);
    return this->key_;
  }
  template <typename Fn>
  void ForEachLive(Fn&& fn) {
    const std::string prefix = this->CurrentKey();
    const int64_t now = this->Now();
    std::vector<std::string> expired;
    bool bad = false;
    this->db_->ScanPrefix(this->cf_, prefix, [&](std::string_view k, std::string_view v) {
      if (this->ttl_ms_ > 0) {
        if (v.size() < 8) {
          bad = true;
          return false;
        }
        if (this->Expired(GetFixed64(v), now)) {
          expired.emplace_back(k);
          return true;
        }
        v.remove_prefix(8);
      }
      UK uk{};
      UV uv{};
      if (!DeserializeFromString(k.substr(prefix.size()), &uk) || !DeserializeFromString(v, &uv)) {
        bad = true;
        return false;
      }
      return fn(std::move(uk), std::move(uv));
    });
    if (bad) this->Corrupt(prefix);
    for (const std::string& k : expired) this->db_->Delete(this->cf_, k);
  }
};

// --- The backend ------------------------------------------------------------------------------------

// An operator's own keyed structures (timers, window contents, interval-join buffers) that must
// snapshot and rescale with the keyed state. Records are (composite key, value); the composite key
// starts with the serialized key (Serializer<K>), so the backend can check its key group.
class InternalKeyedState {
 public:
  virtual ~InternalKeyedState() = default;
  // Called once per snapshot, before the key groups are written in order; `state_index` is this
  // state's index in the snapshot (for records encoded ahead, see TakeKeyGroup).
  virtual void PrepareSnapshot(size_t /*state_index*/) {}
  // Emits every record of key group `kg`.
  virtual void WriteKeyGroup(int kg,
                             absl::FunctionRef<void(std::string_view, std::string_view)> emit) = 0;
  // Fast path instead of WriteKeyGroup: moves the records of key group `kg`, already encoded as
  // snapshot records (PutSnapshotRecord) under the index given to PrepareSnapshot, into `out`.
  // False: not supported, call WriteKeyGroup.
  virtual bool TakeKeyGroup(int /*kg*/, std::string* /*out*/) { return false; }
  // Records encoded later, off the task thread: called once (any thread), the function sets
  // (*out)[kg - range.start] to the snapshot records of each key group of the range; they come
  // after the key group's records from TakeKeyGroup. Called after the key groups were taken;
  // nullptr when there is nothing deferred.
  using DeferredRecords = std::function<void(std::vector<std::string>* out)>;
  virtual DeferredRecords TakeDeferred() { return nullptr; }
  // Change tracking, instead of the three above: the snapshot holds only the records changed
  // since the previous snapshot and the composite keys of the records removed since; the backend
  // keeps the state's records from snapshot to snapshot (InternalSnapshotShadow, on the checkpoint
  // writer's side) and writes them whole. `full`: every record (the first snapshot, or after a
  // restore). Per key group of the range: `records` holds snapshot records (PutSnapshotRecord),
  // `removed` length-prefixed composite keys; `deferred`, when set, appends more of both later,
  // off the task thread (as TakeDeferred). Called after PrepareSnapshot; false: not tracked.
  struct Changes {
    bool full = false;
    std::vector<std::string> records;
    std::vector<std::string> removed;
    std::function<void(Changes&)> deferred;
  };
  virtual bool TakeChanges(Changes* /*out*/) { return false; }
  // True when the records live in column families of the subtask's RocksDB instance (window
  // contents on the RocksDB backend): an incremental checkpoint captures them with the instance's
  // native files instead of calling WriteKeyGroup, and restoring such a checkpoint restores the
  // column families themselves (nothing is handed to TakeRestoredInternal). Canonical snapshots
  // (savepoints, full checkpoints) still call WriteKeyGroup.
  virtual bool StoredInRocksDb() const { return false; }
};

// A record restored from a snapshot: its key group, composite key and value.
struct RestoredRecord {
  int key_group;
  std::string composite;
  std::string value;
};

// Registry of one subtask's states, independent of the key type. Operators hold a
// KeyedStateBackend<K>; RuntimeContext and window contexts hold this base.
class KeyedStateStore : public KeyContext {
 public:
  KeyedStateStore(StateBackendKind kind, std::string operator_name, KeyGroupRange range,
                  int max_parallelism, const Clock* clock)
      : kind_(kind),
        operator_name_(std::move(operator_name)),
        range_(range),
        max_parallelism_(max_parallelism) {
    clock_ = clock;
  }
  StateBackendKind kind() const { return kind_; }
  const std::string& operator_name() const { return operator_name_; }
  KeyGroupRange key_groups() const { return range_; }
  RocksDbStore* rocksdb() const { return db_.get(); }

  // Operator-internal state `name` (must start with '_') joins this backend's snapshots.
  // `format` describes its values (checked against a restored snapshot's; empty: unchecked).
  void RegisterInternalState(std::string name, InternalKeyedState* state, StateFormat format = {}) {
    internal_.emplace_back(std::move(name), state);
    internal_formats_.push_back(std::move(format));
  }
  // The records of internal state `name` restored so far (all of this subtask's key groups);
  // taken once.
  std::vector<RestoredRecord> TakeRestoredInternal(const std::string& name) {
    auto it = pending_.find(name);
    if (it == pending_.end()) return {};
    std::vector<RestoredRecord> out = std::move(it->second);
    pending_.erase(it);
    return out;
  }
  // RocksDB: opens this subtask's instance on first use (the backend is created for every keyed
  // operator; only those whose functions register state open a RocksDB instance).
  void set_rocksdb_opener(std::function<absl::StatusOr<std::unique_ptr<RocksDbStore>>()> opener) {
    opener_ = std::move(opener);
  }
  absl::Status EnsureRocksDb() {
    if (db_ != nullptr) return absl::OkStatus();
    if (!opener_) return absl::InternalError("RocksDB state backend: no instance directory");
    SLUICE_ASSIGN_OR_RETURN(db_, opener_());
    return absl::OkStatus();
  }
  const std::vector<std::unique_ptr<StateTableBase>>& tables() const { return tables_; }

  template <typename N, typename T>
  ValueState<T> GetValueState(const ValueStateDescriptor<T>& d, const NamespaceSlot<N>* ns) {
    static_assert(Serializable<T>,
                  "ValueState<T> needs a sluice::Serializer<T> (state/serializer.h)");
    return ValueState<T>(Register<ValueStateImpl<T>, HeapValueState<N, T>, RocksValueState<N, T>>(
        d, StateKind::kValue, typeid(T), TtlLayout::kValue, FormatOf<T>(), ns));
  }
  template <typename N, typename T>
  ListState<T> GetListState(const ListStateDescriptor<T>& d, const NamespaceSlot<N>* ns) {
    static_assert(Serializable<T>,
                  "ListState<T> needs a sluice::Serializer<T> (state/serializer.h)");
    return ListState<T>(Register<ListStateImpl<T>, HeapListState<N, T>, RocksListState<N, T>>(
        d, StateKind::kList, typeid(T), TtlLayout::kList, FormatOf<T>(), ns));
  }
  template <typename N, typename UK, typename UV>
  MapState<UK, UV> GetMapState(const MapStateDescriptor<UK, UV>& d, const NamespaceSlot<N>* ns) {
    static_assert(Serializable<UK> && Serializable<UV>,
                  "MapState<UK, UV> needs sluice::Serializer<UK> and <UV> (state/serializer.h)");
    if (kind_ == StateBackendKind::kRocksDb && !IsCanonicallySerialized<UK>()) {
      ThrowStateError(absl::FailedPreconditionError(absl::StrCat(
          "operator '", operator_name_, "': MapState '", d.name,
          "' on the RocksDB backend needs a user key type whose encoding is canonical (equal "
          "keys, equal bytes): floating point and structs with padding are not; give the type a "
          "sluice::Serializer with kCanonical = true")));
    }
    return MapState<UK, UV>(
        Register<MapStateImpl<UK, UV>, HeapMapState<N, UK, UV>, RocksMapState<N, UK, UV>>(
            d, StateKind::kMap, typeid(std::pair<UK, UV>), TtlLayout::kValue,
            FormatOf<std::map<UK, UV>>(), ns));
  }
  template <typename N, typename T, typename F>
  ReducingState<T> GetReducingState(const ReducingStateDescriptor<T, F>& d,
                                    const NamespaceSlot<N>* ns) {
    static_assert(Serializable<T>, "ReducingState<T> needs a sluice::Serializer<T>");
    return ReducingState<T>(
        Register<MergingStateImpl<T, T>, HeapReducingState<N, T, F>, RocksReducingState<N, T, F>>(
            d, StateKind::kReducing, typeid(T), TtlLayout::kValue, FormatOf<T>(), ns, d.reduce));
  }
  template <typename N, typename Agg>
  AggregatingState<typename Agg::InputType, typename Agg::OutputType> GetAggregatingState(
      const AggregatingStateDescriptor<Agg>& d, const NamespaceSlot<N>* ns) {
    static_assert(Serializable<typename Agg::AccumulatorType>,
                  "AggregatingState needs a sluice::Serializer for the accumulator type");
    return AggregatingState<typename Agg::InputType, typename Agg::OutputType>(
        Register<MergingStateImpl<typename Agg::InputType, typename Agg::OutputType>,
                 HeapAggregatingState<N, Agg>, RocksAggregatingState<N, Agg>>(
            d, StateKind::kAggregating, typeid(typename Agg::AccumulatorType), TtlLayout::kValue,
            FormatOf<typename Agg::AccumulatorType>(), ns, d.aggregate));
  }

 protected:
  template <typename Impl, typename Heap, typename Rocks, typename N, typename... Extra>
  Impl* Register(const StateDescriptorBase& d, StateKind kind, const std::type_info& type,
                 TtlLayout layout, const StateFormat& format, const NamespaceSlot<N>* ns,
                 const Extra&... extra) {
    const int64_t ttl_ms = d.ttl ? absl::ToInt64Milliseconds(d.ttl->ttl) : 0;
    if (d.name.empty()) {
      ThrowStateError(absl::InvalidArgumentError(
          absl::StrCat("operator '", operator_name_, "': a state descriptor has an empty name")));
    }
    if (d.ttl && ttl_ms <= 0) {
      ThrowStateError(absl::InvalidArgumentError(
          absl::StrCat("operator '", operator_name_, "': state '", d.name,
                       "': StateTtlConfig.ttl must be at least 1 ms")));
    }
    if (!key_serializable_ && (kind_ == StateBackendKind::kRocksDb)) {
      ThrowStateError(absl::FailedPreconditionError(absl::StrCat(
          "operator '", operator_name_, "': state '", d.name,
          "' on the RocksDB backend needs a key type with a canonical sluice::Serializer")));
    }
    for (const auto& t : tables_) {
      if (t->name() != d.name) continue;
      if (t->kind() != kind || t->type() != type || t->ttl_ms() != ttl_ms ||
          t->namespace_type() != typeid(N)) {
        ThrowStateError(absl::FailedPreconditionError(
            absl::StrCat("operator '", operator_name_, "': state '", d.name,
                         "' is already registered as a ", StateKindName(t->kind()),
                         " with another type, namespace or TTL; one name is one "
                         "state")));
      }
      return dynamic_cast<Impl*>(t.get());
    }
    if (auto it = restored_.find(d.name); it != restored_.end()) {
      if (it->second.kind != kind || it->second.ttl_ms != ttl_ms) {
        ThrowStateError(absl::FailedPreconditionError(absl::StrCat(
            "operator '", operator_name_, "': state '", d.name, "' was restored as a ",
            StateKindName(it->second.kind), it->second.ttl_ms > 0 ? " with TTL" : "",
            " but is registered as a ", StateKindName(kind), ttl_ms > 0 ? " with TTL" : "")));
      }
      const std::string& saved = it->second.serializer;
      if (!saved.empty() && saved != format.identity && !format.reads(saved)) {
        ThrowStateError(absl::FailedPreconditionError(absl::StrCat(
            "operator '", operator_name_, "': state '", d.name, "' was saved in the format ",
            ReadableSerializerIdentity(saved), " but is registered as ",
            ReadableSerializerIdentity(format.identity),
            ", whose serializer does not read that format; keep the state's type, or give the "
            "type a sluice::Serializer that declares it reads the old format (ReadsFormat; "
            "docs/checkpointing.md \"Changing a job\")")));
      }
    }
    const bool on_read = d.ttl && d.ttl->update_type == StateTtlConfig::UpdateType::kOnReadAndWrite;
    Impl* impl = nullptr;
    if (kind_ == StateBackendKind::kHashMap) {
      auto t = std::make_unique<Heap>(extra..., d.name, kind, type, ttl_ms, this, ns);
      t->set_update_on_read(on_read);
      t->set_namespace_type(typeid(N));
      t->set_serializer(format.identity);
      impl = t.get();
      tables_.push_back(std::move(t));
      ReplayPending(*tables_.back());
    } else {
      if (absl::Status st = EnsureRocksDb(); !st.ok()) ThrowStateError(st);
      absl::StatusOr<int> cf = db_->ColumnFamily(d.name, layout, ttl_ms);
      if (!cf.ok()) ThrowStateError(cf.status());
      cf_by_name_[d.name] = *cf;
      auto t = std::make_unique<Rocks>(extra..., d.name, kind, type, ttl_ms, this, ns, db_.get());
      t->set_update_on_read(on_read);
      t->set_namespace_type(typeid(N));
      t->set_serializer(format.identity);
      t->set_column_family(*cf);
      impl = t.get();
      tables_.push_back(std::move(t));
    }
    return impl;
  }
  // HashMap: restored records of a state registered after the restore.
  virtual void ReplayPending(StateTableBase& table) = 0;

  struct RestoredState {
    StateKind kind;
    int64_t ttl_ms;
    std::string serializer;  // "" when unknown (a snapshot before version 2, internal states)
  };
  // The key type's format as snapshots record it ("" for a key type without a serializer).
  std::string key_serializer_;

  // FailedPrecondition when internal state `name` (window contents, buffers) was saved in a
  // format its operator's serializers do not read.
  absl::Status CheckInternalFormat(const std::string& name, const RestoredState& rs,
                                   const std::string& where) const {
    for (size_t i = 0; i < internal_.size(); ++i) {
      const StateFormat& f = internal_formats_[i];
      if (internal_[i].first != name || rs.serializer.empty() || f.identity.empty() ||
          rs.serializer == f.identity || (f.reads != nullptr && f.reads(rs.serializer))) {
        continue;
      }
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": operator '", operator_name_, "': its state '", name,
                       "' was saved in the format ", ReadableSerializerIdentity(rs.serializer),
                       " but the operator now keeps ", ReadableSerializerIdentity(f.identity),
                       ", whose serializer does not read that format; keep the operator's types "
                       "(docs/checkpointing.md \"Changing a job\")"));
    }
    return absl::OkStatus();
  }
  absl::flat_hash_map<std::string, RestoredState> restored_;
  // Restored records not (yet) in a table: HashMap states registered later, internal states.
  absl::flat_hash_map<std::string, std::vector<RestoredRecord>> pending_;
  std::vector<std::pair<std::string, InternalKeyedState*>> internal_;
  std::vector<StateFormat> internal_formats_;         // by index of internal_
  absl::flat_hash_map<std::string, int> cf_by_name_;  // RocksDB
  std::function<absl::StatusOr<std::unique_ptr<RocksDbStore>>()> opener_;
  bool key_serializable_ = false;
  StateBackendKind kind_;
  std::string operator_name_;
  KeyGroupRange range_;
  int max_parallelism_;
  std::unique_ptr<RocksDbStore> db_;
  std::vector<std::unique_ptr<StateTableBase>> tables_;
};

// Canonical snapshot format of one subtask's keyed state (version 1):
//   header: "SLKS" [u32 version][key format][varint #states] per state: [name][u8 kind]
//     [varint ttl_ms][format] where formats are length-prefixed serializer identities
//     (state/serializer_identity.h; "" unknown); version 1 has neither format
//   then per key group of the subtask's range, in order (offsets recorded by the caller):
//     records until the next key group: [varint state index + 1][composite key][value], where
//     composite key = serialized key, namespace, map key (length-prefixed as a whole) and value is
//     the encoded value (length-prefixed); a 0 byte ends the key group.
inline constexpr uint32_t kKeyedSnapshotVersion = 2;

// Change-log format of one subtask's keyed state (HashMap backend, incremental checkpoints): a
// chain of files, one full file then files of the changes since the file before. Resolved into the
// canonical format on restore (src/state/keyed_change_log.h).
//   header: "SLKC" [u32 version][u8 0 = full, 1 = changes] then the canonical header's state list
//     (from version 2 [key format], then [varint #states] per state: [name][u8 kind]
//     [varint ttl_ms] and from version 2 [format]; the canonical version is the same), then one
//     mode byte per state:
//     0 = written whole (its records in this file replace all earlier ones), 1 = changed records
//     and removed composite keys, 2 = per key (a heap table: a key's records replace all its
//     earlier records in every per-key state). Every file of a chain has the same state list.
//   then per key group of the subtask's range, in order (offsets recorded by the caller):
//     operations on the records of modes 0 and 1, applied in order: [varint state index + 1]
//     [length-prefixed composite key][length-prefixed value] writes a record (as in the canonical
//     format), [varint #states + state index + 1][length-prefixed composite key] removes one
//     (mode 1); then a 0 byte;
//     keys, applied in order: [varint 1][length-prefixed key][length-prefixed records] or
//     [varint 2][length-prefixed key] (removed), then 0; records = ([varint state index]
//     [length-prefixed suffix][length-prefixed value])*, composite key = key + suffix.
inline constexpr uint32_t kKeyedChangeLogVersion = 2;
enum class KeyedChangeLogMode : uint8_t { kWhole = 0, kChanges = 1, kPerKey = 2 };

// Where a backend's change log stands: `token` names the backend instance, `generation` counts
// its materialized snapshots.
struct KeyedChangeLogPosition {
  uint64_t token = 0;
  int64_t generation = -1;
  bool operator==(const KeyedChangeLogPosition&) const = default;
};

struct KeyedSnapshot {
  std::string bytes;
  KeyGroupRange key_groups;
  std::vector<uint64_t> key_group_offsets;  // one per key group of key_groups
  // When set, `bytes` and `key_group_offsets` are still to be produced by calling it once (the
  // asynchronous part of a checkpoint, run by the checkpoint writer's thread).
  std::function<absl::Status(KeyedSnapshot&)> materialize;

  // Set by the caller before materializing: write the change-log format if the backend can (the
  // HashMap backend with a serializable key); only the changes when the backend's previous
  // materialized snapshot is at `changes_since` (as reported in `position` then).
  bool change_log = false;
  KeyedChangeLogPosition changes_since;
  // Set by materializing: what `bytes` holds, and the backend's position after it.
  enum class Format : uint8_t { kCanonical, kChangeLogFull, kChangeLogChanges };
  Format format = Format::kCanonical;
  KeyedChangeLogPosition position;

  // RocksDB incremental checkpoint: the column families are not in `bytes` (which then holds
  // the header and the operator-internal states kept in memory) but in a native checkpoint of
  // the instance in local directory `native_dir` (hard links). The checkpoint writer uploads its
  // files — an SST file under its `shared_name` into the storage's shared/ directory, where an
  // earlier checkpoint may have put it already (an SST file never changes), the other files
  // (MANIFEST, CURRENT, OPTIONS) into the checkpoint's own directory — then removes native_dir.
  struct NativeFile {
    std::string name;         // file name in native_dir
    std::string shared_name;  // empty: private to this checkpoint
  };
  std::string native_dir;
  std::vector<NativeFile> native_files;
};

// In a directory given to KeyedStateBackend::RestoreNative: lines "<SST file> <shared name>".
inline constexpr const char* kSharedNamesFile = "SLUICE_SHARED_NAMES";

// Produces the bytes of a deferred snapshot; a no-op for a complete one.
inline absl::Status MaterializeKeyedSnapshot(KeyedSnapshot& snap) {
  if (!snap.materialize) return absl::OkStatus();
  std::function<absl::Status(KeyedSnapshot&)> f = std::move(snap.materialize);
  snap.materialize = nullptr;
  return f(snap);
}

// [varint state index + 1][varint length][key part][suffix][length-prefixed value]: one record of
// a key group in the canonical format.
inline void PutSnapshotRecord(size_t state_index, std::string_view key_part,
                              std::string_view suffix, std::string_view value, std::string* out) {
  PutVarint(state_index + 1, out);
  PutVarint(key_part.size() + suffix.size(), out);
  out->append(key_part);
  out->append(suffix);
  PutLengthPrefixed(value, out);
}

// HashMap backend: the serialized records of every key as of the latest materialized snapshot,
// plus the changes of the snapshots taken since. A snapshot pushes its changes (the keys accessed
// since the previous one) on the task thread; materializing applies the changes of every snapshot
// up to its own, in order (also those of snapshots that were aborted before being written), on the
// checkpoint writer's thread. Thread-safe.
class HeapSnapshotShadow {
 public:
  struct Change {
    int key_group;
    std::string key;                     // serialized key
    std::optional<std::string> records;  // [varint table index][suffix][value]...; none: removed
  };
  explicit HeapSnapshotShadow(KeyGroupRange range)
      : range_(range), keys_(static_cast<size_t>(range.size())) {}

  // Returns the sequence number of the pushed changes.
  int64_t Push(std::vector<Change> changes) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back({++pushed_, std::move(changes)});
    return pushed_;
  }
  // Applies the changes up to `seq` — calling on_change(key group - start, change) before each —
  // then calls f(keys), keys[key group - start]: key -> records.
  template <typename F, typename OnChange>
  absl::Status WithStateAt(int64_t seq, F&& f, OnChange&& on_change) {
    std::lock_guard<std::mutex> lock(mu_);
    if (applied_ > seq) {
      return absl::InternalError("a later snapshot of this subtask was already written");
    }
    while (!pending_.empty() && pending_.front().first <= seq) {
      for (Change& c : pending_.front().second) {
        const auto g = static_cast<size_t>(c.key_group - range_.start);
        on_change(g, std::as_const(c));
        auto& m = keys_[g];
        if (c.records) {
          m.insert_or_assign(std::move(c.key), std::move(*c.records));
        } else {
          m.erase(c.key);
        }
      }
      applied_ = pending_.front().first;
      pending_.pop_front();
    }
    f(std::as_const(keys_));
    return absl::OkStatus();
  }
  template <typename F>
  absl::Status WithStateAt(int64_t seq, F&& f) {
    return WithStateAt(seq, std::forward<F>(f), [](size_t, const Change&) {});
  }

 private:
  std::mutex mu_;
  KeyGroupRange range_;
  std::vector<absl::flat_hash_map<std::string, std::string>> keys_;
  std::deque<std::pair<int64_t, std::vector<Change>>> pending_;
  int64_t pushed_ = 0;
  int64_t applied_ = 0;
};

// The records of one change-tracked internal state (InternalKeyedState::TakeChanges) as of the
// latest materialized snapshot, plus the changes of the snapshots taken since: as
// HeapSnapshotShadow, per (composite key) instead of per key. A snapshot pushes its changes on
// the task thread; the checkpoint writer applies them in order (running their deferred encoders
// first: Push never waits for that) and writes every record. Thread-safe.
//
// The records' bytes live in large chunks (an arena) the maps' views point into: a record costs
// no allocation of its own, and a full snapshot drops the chunks instead of freeing every
// record. Bytes of erased or overwritten records are reclaimed by compacting the live ones into
// new chunks once they outweigh them.
class InternalSnapshotShadow {
 public:
  using Changes = InternalKeyedState::Changes;
  // Composite key -> value, both views of the shadow's chunks (valid while the lock ApplyThrough
  // returns is held).
  using Records = absl::flat_hash_map<std::string_view, std::string_view>;

  // `min_compaction`: the bytes of dead records below which the arena is never compacted.
  explicit InternalSnapshotShadow(KeyGroupRange range, size_t min_compaction = size_t{4} << 20)
      : records_(static_cast<size_t>(range.size())), min_compaction_(min_compaction) {}

  // Returns the sequence number of the pushed changes.
  int64_t Push(Changes changes) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back({++pushed_, std::move(changes)});
    return pushed_;
  }
  // What ApplyThrough reports of the changes it applies (incremental checkpoints): per key group,
  // their operations in the change-log format (see kKeyedChangeLogVersion: records tagged
  // `record_tag`, removals `removal_tag`), and whether one of them was a full snapshot.
  struct Applied {
    uint64_t record_tag = 0;
    uint64_t removal_tag = 0;
    std::vector<std::string> ops;
    bool full = false;
  };

  // Applies the changes up to `seq`; the records (records()[key group - start]) then stay as they
  // are until the returned lock is released. Fails when the changes do not decode or a later
  // snapshot was applied already.
  absl::Status ApplyThrough(int64_t seq, std::unique_lock<std::mutex>* lock,
                            Applied* applied = nullptr) {
    *lock = std::unique_lock<std::mutex>(apply_mu_);
    if (applied_ > seq) {
      return absl::InternalError("a later snapshot of this subtask was already written");
    }
    changed_ = applied;
    if (applied != nullptr) applied->ops.resize(records_.size());
    std::deque<std::pair<int64_t, Changes>> due;
    {
      std::lock_guard<std::mutex> queue(mu_);
      while (!pending_.empty() && pending_.front().first <= seq) {
        due.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    for (auto& [s, changes] : due) {
      if (applied != nullptr && changes.full) applied->full = true;
      absl::Status st = Apply(changes);
      if (!st.ok()) {
        changed_ = nullptr;
        return st;
      }
      applied_ = s;
    }
    changed_ = nullptr;
    return absl::OkStatus();
  }
  const std::vector<Records>& records() const { return records_; }
  // The bytes of the records' composite keys and values (for reserving the file).
  size_t bytes() const { return bytes_; }

 private:
  absl::Status Apply(Changes& c) {
    if (c.deferred) {
      c.deferred(c);
      c.deferred = nullptr;
    }
    if (c.records.size() != records_.size() || c.removed.size() != records_.size()) {
      return absl::InternalError("internal state changes of another key-group range");
    }
    if (c.full) {
      for (Records& r : records_) Records().swap(r);
      arena_.Clear();
      bytes_ = 0;
      garbage_ = 0;
    }
    for (size_t g = 0; g < records_.size(); ++g) {
      Records& m = records_[g];
      ByteReader removed(c.removed[g]);
      std::string_view composite, value;
      std::string* ops = changed_ != nullptr ? &changed_->ops[g] : nullptr;
      if (ops != nullptr) ops->reserve(ops->size() + c.removed[g].size() + c.records[g].size());
      while (!removed.empty()) {
        if (!removed.ReadLengthPrefixed(&composite)) {
          return absl::InternalError("internal state changes: a removed key does not decode");
        }
        if (ops != nullptr) {
          PutVarint(changed_->removal_tag, ops);
          PutLengthPrefixed(composite, ops);
        }
        auto it = m.find(composite);
        if (it == m.end()) continue;
        const size_t size = it->first.size() + it->second.size();
        bytes_ -= size;
        garbage_ += size;
        m.erase(it);
      }
      ByteReader in(c.records[g]);
      uint64_t index = 0;
      while (!in.empty()) {
        if (!in.ReadVarint(&index) || !in.ReadLengthPrefixed(&composite) ||
            !in.ReadLengthPrefixed(&value)) {
          return absl::InternalError("internal state changes: a record does not decode");
        }
        if (ops != nullptr) {
          PutVarint(changed_->record_tag, ops);
          PutLengthPrefixed(composite, ops);
          PutLengthPrefixed(value, ops);
        }
        // One probe: the key is copied into the arena first and given back if it was there.
        const std::string_view key = arena_.Copy(composite);
        auto [it, inserted] = m.try_emplace(key, std::string_view());
        if (inserted) {
          bytes_ += key.size();
        } else {
          arena_.GiveBackLast(key);
          bytes_ -= it->second.size();
        }
        if (!inserted && value.size() <= it->second.size()) {
          // Overwritten in place (the arena's bytes are the shadow's own).
          std::memcpy(const_cast<char*>(it->second.data()), value.data(), value.size());
          garbage_ += it->second.size() - value.size();
          it->second = std::string_view(it->second.data(), value.size());
        } else {
          garbage_ += it->second.size();
          it->second = arena_.Copy(value);
        }
        bytes_ += value.size();
      }
      std::string().swap(c.records[g]);
      std::string().swap(c.removed[g]);
    }
    if (garbage_ > bytes_ && garbage_ >= min_compaction_) Compact();
    return absl::OkStatus();
  }

  // Chunks of bytes handed out in order.
  class Arena {
   public:
    std::string_view Copy(std::string_view bytes) {
      if (chunks_.empty() || used_ + bytes.size() > capacity_) {
        capacity_ = std::max(kChunk, bytes.size());
        chunks_.push_back(std::make_unique<char[]>(capacity_));
        used_ = 0;
      }
      char* at = chunks_.back().get() + used_;
      if (!bytes.empty()) std::memcpy(at, bytes.data(), bytes.size());
      used_ += bytes.size();
      return std::string_view(at, bytes.size());
    }
    // `last` is the latest Copy: its bytes are free again.
    void GiveBackLast(std::string_view last) { used_ -= last.size(); }
    void Clear() {
      chunks_.clear();
      used_ = capacity_ = 0;
    }

   private:
    static constexpr size_t kChunk = size_t{1} << 20;
    std::vector<std::unique_ptr<char[]>> chunks_;
    size_t used_ = 0;
    size_t capacity_ = 0;
  };

  // The live records into new chunks (the maps rebuilt: their keys are views too).
  void Compact() {
    Arena fresh;
    for (Records& m : records_) {
      Records moved;
      moved.reserve(m.size());
      for (const auto& [k, v] : m) moved.emplace(fresh.Copy(k), fresh.Copy(v));
      m.swap(moved);
    }
    arena_ = std::move(fresh);
    garbage_ = 0;
  }

  std::mutex mu_;        // pending_, pushed_
  std::mutex apply_mu_;  // records_, applied_, bytes_, changed_
  std::vector<Records> records_;
  size_t min_compaction_;
  Arena arena_;                 // the bytes records_ views
  Applied* changed_ = nullptr;  // during ApplyThrough
  size_t bytes_ = 0;            // of the live records
  size_t garbage_ = 0;          // of the arena's records erased or overwritten since
  std::deque<std::pair<int64_t, Changes>> pending_;
  int64_t pushed_ = 0;
  int64_t applied_ = 0;
};

template <typename K>
class KeyedStateBackend final : public KeyedStateStore {
 public:
  KeyedStateBackend(StateBackendKind kind, std::string operator_name, KeyGroupRange range,
                    int max_parallelism, const Clock* clock)
      : KeyedStateStore(kind, std::move(operator_name), range, max_parallelism, clock),
        dicts_(static_cast<size_t>(range.end - range.start + 1)) {
    key_serializable_ = CanonicalKey();
    if (kind == StateBackendKind::kHashMap) key_serializable_ = Serializable<K>;
    if constexpr (Serializable<K>) key_serializer_ = SerializerIdentity<K>();
  }
  static constexpr bool CanonicalKey() {
    if constexpr (Serializable<K>) {
      return IsCanonicallySerialized<K>();
    } else {
      return false;
    }
  }

  // RocksDB: the instance this backend owns (opened by the caller under a unique directory).
  void set_rocksdb(std::unique_ptr<RocksDbStore> db) { db_ = std::move(db); }

  // The key of the record or timer being processed; `key` must stay valid until the next call.
  void SetCurrentKey(const K* key) {
    key_ = key;
    has_key_ = true;
    resolved_ = false;
    bytes_resolved_ = false;
  }

  // Number of keys with state (HashMap backend); for tests and metrics.
  size_t num_keys() const {
    size_t n = 0;
    for (const auto& d : dicts_) n += d.size();
    return n;
  }

  // HashMap: the keys that have an entry in state `name` (Flink's applyToKeyedState).
  std::vector<K> KeysWithEntries(const std::string& name) const {
    std::vector<K> keys;
    for (const auto& t : tables_) {
      if (t->name() != name) continue;
      for (const auto& dict : dicts_) {
        for (const auto& [key, id] : dict) {
          if (t->HasEntry(id)) keys.push_back(key);
        }
      }
    }
    return keys;
  }

  // HashMap: the number of keys the latest snapshot copied (accessed or removed since the one
  // before); for tests and metrics.
  size_t last_snapshot_changed_keys() const { return last_changed_keys_; }

  // --- Snapshots ----------------------------------------------------------------------------------
  // Snapshots every state of this subtask in the canonical format. With `deferred`, only the
  // synchronous part runs here (on the task thread): the HashMap backend serializes the keys
  // accessed since the previous snapshot (not the whole state) and the operator-internal states;
  // the caller then runs `materialize` (MaterializeKeyedSnapshot) on another thread, which merges
  // those changes into a serialized copy of the state kept from earlier snapshots and writes the
  // file. Without `deferred` the snapshot is complete on return.
  //
  // With `native` (only with `deferred`, and only for checkpoints: savepoints are canonical), a
  // RocksDB backend whose options enable incremental checkpoints takes a native checkpoint of its
  // instance instead of scanning it (see KeyedSnapshot::native_dir).
  absl::StatusOr<KeyedSnapshot> Snapshot(bool deferred = false, bool native = false) {
    native = native && deferred && kind_ == StateBackendKind::kRocksDb && db_ != nullptr &&
             db_->options().incremental_checkpoints;
    auto c = std::make_shared<CapturedSnapshot>();
    c->now = clock_->NowMillis();
    std::string& header = c->header;
    header.append("SLKS");
    const uint32_t version = kKeyedSnapshotVersion;
    header.append(reinterpret_cast<const char*>(&version), sizeof version);
    // States: registered tables (their index is stable: tables are only ever added), internal
    // states, then restored-but-unregistered ones (kept, never dropped).
    std::vector<std::pair<std::string, RestoredState>> states;
    for (const auto& t : tables_) {
      states.push_back({t->name(), {t->kind(), t->ttl_ms(), t->serializer()}});
    }
    const size_t first_internal = states.size();
    for (size_t i = 0; i < internal_.size(); ++i) {
      internal_[i].second->PrepareSnapshot(states.size());
      states.push_back(
          {internal_[i].first, {StateKind::kInternal, 0, internal_formats_[i].identity}});
    }
    const size_t first_unregistered = states.size();
    for (const auto& [name, rs] : restored_) {
      if (!HasTable(name) && !IsInternal(name)) states.push_back({name, rs});
    }
    PutLengthPrefixed(key_serializer_, &header);
    PutVarint(states.size(), &header);
    for (const auto& [name, rs] : states) {
      PutLengthPrefixed(name, &header);
      header.push_back(static_cast<char>(rs.kind));
      PutVarint(static_cast<uint64_t>(rs.ttl_ms), &header);
      PutLengthPrefixed(rs.serializer, &header);
      c->states.push_back(rs);
    }
    const int64_t now = c->now;
    c->blobs.resize(static_cast<size_t>(range_.size()));
    // Change-tracked internal states: their changes go to their shadows (written whole by
    // Materialize); a state that stopped tracking loses its shadow.
    std::vector<uint8_t> tracked(states.size(), 0);
    for (size_t i = first_internal; i < first_unregistered; ++i) {
      const auto& [name, st] = internal_[i - first_internal];
      if (native && st->StoredInRocksDb()) continue;
      InternalKeyedState::Changes changes;
      if (!st->TakeChanges(&changes)) {
        internal_shadows_.erase(name);
        continue;
      }
      std::shared_ptr<InternalSnapshotShadow>& shadow = internal_shadows_[name];
      if (shadow == nullptr) {
        if (!changes.full) {
          return absl::InternalError(
              absl::StrCat("operator '", operator_name_, "': internal state '", name,
                           "' gave the changes since a snapshot this backend did not take"));
        }
        shadow = std::make_shared<InternalSnapshotShadow>(range_);
      }
      c->tracked.push_back({i, shadow, shadow->Push(std::move(changes))});
      tracked[i] = 1;
    }
    // Deferred records: encoded by Materialize, in the piece that names them.
    std::vector<int> deferred_of(states.size(), -1);
    for (size_t i = first_internal; i < first_unregistered; ++i) {
      InternalKeyedState& st = *internal_[i - first_internal].second;
      if ((native && st.StoredInRocksDb()) || tracked[i]) continue;
      if (InternalKeyedState::DeferredRecords d = st.TakeDeferred()) {
        deferred_of[i] = static_cast<int>(c->deferred.size());
        c->deferred.push_back(std::move(d));
      }
    }
    for (int kg = range_.start; kg <= range_.end; ++kg) {
      std::vector<typename CapturedSnapshot::Piece>& pieces =
          c->blobs[static_cast<size_t>(kg - range_.start)];
      pieces.emplace_back();
      for (size_t i = first_internal; i < first_unregistered; ++i) {
        InternalKeyedState& st = *internal_[i - first_internal].second;
        if ((native && st.StoredInRocksDb()) || tracked[i]) continue;
        std::string taken;
        if (st.TakeKeyGroup(kg, &taken)) {  // moved, not copied: one piece more
          if (!taken.empty()) {
            pieces.push_back({std::move(taken)});
            pieces.emplace_back();
          }
          if (deferred_of[i] >= 0) {
            pieces.push_back({std::string(), deferred_of[i]});
            pieces.emplace_back();
          }
          continue;
        }
        st.WriteKeyGroup(kg, [&](std::string_view composite, std::string_view v) {
          PutSnapshotRecord(i, composite, {}, v, &pieces.back().bytes);
        });
      }
      std::string& blob = pieces.back().bytes;
      for (size_t i = first_unregistered; i < states.size(); ++i) {
        if (kind_ == StateBackendKind::kRocksDb) break;  // restored into column families
        auto it = pending_.find(states[i].first);
        if (it == pending_.end()) continue;
        for (const RestoredRecord& r : it->second) {
          if (r.key_group == kg) PutSnapshotRecord(i, r.composite, {}, r.value, &blob);
        }
      }
      if (kind_ == StateBackendKind::kRocksDb && !native) {
        const std::string begin = KeyGroupPrefix(kg);
        const std::string end = kg == 0xFFFF ? std::string() : KeyGroupPrefix(kg + 1);
        for (size_t i = 0; i < states.size(); ++i) {
          if (i >= first_internal && i < first_unregistered) continue;
          auto cf = cf_by_name_.find(states[i].first);
          if (cf == cf_by_name_.end() || db_ == nullptr) continue;
          const RestoredState st = states[i].second;
          std::string kept;
          db_->Scan(cf->second, begin, end, [&](std::string_view k, std::string_view v) {
            std::string_view value;
            if (LiveValue(st, now, v, &kept, &value)) {
              PutSnapshotRecord(i, k.substr(2), {}, value, &blob);
            }
            return true;
          });
        }
      }
    }
    if constexpr (Serializable<K>) {
      if (kind_ == StateBackendKind::kHashMap) {
        if (shadow_ == nullptr) shadow_ = std::make_shared<HeapSnapshotShadow>(range_);
        c->shadow = shadow_;
        if (cursor_ == nullptr) {
          cursor_ = std::make_shared<ChangeLogCursor>();
          std::random_device rd;
          cursor_->position.token = (static_cast<uint64_t>(rd()) << 32 | rd()) | 1;
          cursor_->position.generation = 0;
        }
        c->cursor = cursor_;
        c->first_internal = first_internal;
        std::vector<HeapSnapshotShadow::Change> changes = CollectChanges(now);
        last_changed_keys_ = changes.size();
        c->seq = shadow_->Push(std::move(changes));
      }
    }
    KeyedSnapshot snap;
    snap.key_groups = range_;
    if (native) SLUICE_RETURN_IF_ERROR(TakeNativeCheckpoint(snap));
    snap.materialize = [c](KeyedSnapshot& s) { return c->Materialize(s); };
    if (!deferred) SLUICE_RETURN_IF_ERROR(MaterializeKeyedSnapshot(snap));
    return snap;
  }

  // Restores the column families of a native (incremental) RocksDB checkpoint of an old subtask
  // covering `file_range`: `dir` is a private local copy of its files (consumed: moved or
  // removed). Call after Restore() of the same snapshot's bytes (its header names the states).
  // At the same key-group range on the RocksDB backend the copy becomes this subtask's instance;
  // otherwise (rescaling, or the HashMap backend) this subtask's key groups are read from it.
  absl::Status RestoreNative(const std::string& dir, KeyGroupRange file_range,
                             const std::string& where) {
    std::error_code ec;
    if (kind_ == StateBackendKind::kRocksDb && db_ == nullptr && file_range.start == range_.start &&
        file_range.end == range_.end) {
      // The SST files keep the shared names they were uploaded under: the next checkpoints
      // reference them instead of uploading them again.
      const std::filesystem::path names_file = std::filesystem::path(dir) / kSharedNamesFile;
      if (std::filesystem::exists(names_file, ec)) {
        std::ifstream in(names_file);
        std::string file, shared;
        while (in >> file >> shared) restored_sst_[file] = shared;
        std::filesystem::remove(names_file, ec);
      }
      SLUICE_RETURN_IF_ERROR(EnsureRocksDb());  // a fresh instance, only to learn its directory
      const std::string path = db_->path();
      db_.reset();
      std::filesystem::remove_all(path, ec);
      std::filesystem::rename(dir, path, ec);
      if (ec) {
        return absl::InternalError(absl::StrCat(where, ": cannot move the restored RocksDB files ",
                                                "to ", path, ": ", ec.message()));
      }
      if (absl::Status st = EnsureRocksDb(); !st.ok()) {
        return absl::Status(st.code(), absl::StrCat(where, ": ", st.message()));
      }
      for (const std::string& name : db_->ColumnFamilyNames()) {
        auto it = restored_.find(name);
        if (it == restored_.end() || it->second.kind == StateKind::kInternal) continue;
        SLUICE_ASSIGN_OR_RETURN(
            cf_by_name_[name],
            db_->ColumnFamily(name, LayoutOf(it->second.kind), it->second.ttl_ms));
      }
      return absl::OkStatus();
    }
    std::unique_ptr<RocksDbStore> old;
    if (kind_ == StateBackendKind::kRocksDb) {
      SLUICE_RETURN_IF_ERROR(EnsureRocksDb());
      SLUICE_ASSIGN_OR_RETURN(old, db_->OpenSibling(dir));
    } else {
      SLUICE_ASSIGN_OR_RETURN(old, RocksDbStore::Open(RocksDbStateOptions{}, nullptr, dir, clock_));
    }
    const int64_t now = clock_->NowMillis();
    for (const std::string& name : old->ColumnFamilyNames()) {
      auto it = restored_.find(name);
      // A column family no state names: an operator's internal state kept in RocksDB (window
      // contents), in that operator's RocksDB layout. Another RocksDB instance takes it as is;
      // the HashMap backend needs the canonical format, i.e. a savepoint (as in Flink, the
      // backend changes only through a canonical savepoint).
      const RestoredState rs =
          it == restored_.end() ? RestoredState{StateKind::kInternal, 0} : it->second;
      if (rs.kind == StateKind::kInternal && kind_ == StateBackendKind::kHashMap) {
        return absl::FailedPreconditionError(absl::StrCat(
            where, ": operator '", operator_name_, "' keeps '", name,
            "' in RocksDB's native format in this incremental checkpoint; restore it with the "
            "RocksDB backend, or take a savepoint (canonical format) to change the backend"));
      }
      SLUICE_ASSIGN_OR_RETURN(const int from, old->ColumnFamily(name));
      int to = -1;
      if (kind_ == StateBackendKind::kRocksDb) {
        SLUICE_ASSIGN_OR_RETURN(to, db_->ColumnFamily(name, LayoutOf(rs.kind), rs.ttl_ms));
        if (rs.kind != StateKind::kInternal) cf_by_name_[name] = to;
      }
      std::string kept;
      for (int kg = std::max(file_range.start, range_.start);
           kg <= std::min(file_range.end, range_.end); ++kg) {
        const std::string end = kg == 0xFFFF ? std::string() : KeyGroupPrefix(kg + 1);
        old->Scan(from, KeyGroupPrefix(kg), end, [&](std::string_view k, std::string_view v) {
          std::string_view value;
          if (!LiveValue(rs, now, v, &kept, &value)) return true;
          if (to >= 0) {
            db_->Put(to, k, value);
          } else {
            pending_[name].push_back({kg, std::string(k.substr(2)), std::string(value)});
          }
          return true;
        });
      }
    }
    old.reset();
    std::filesystem::remove_all(dir, ec);
    if (kind_ == StateBackendKind::kHashMap) {
      for (auto& t : tables_) ReplayPending(*t);
    }
    return absl::OkStatus();
  }

  // FailedPrecondition when keys were saved in a format Serializer<K> does not read.
  absl::Status CheckKeyFormat(std::string_view saved, const std::string& where) const {
    if (saved.empty() || saved == key_serializer_) return absl::OkStatus();
    bool reads = false;
    if constexpr (Serializable<K>) reads = SerializerReads<K>(saved);
    if (reads) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": operator '", operator_name_, "': its keys were saved in the format ",
                     ReadableSerializerIdentity(saved), " but the job's key type is ",
                     key_serializer_.empty() ? "a type without a sluice::Serializer"
                                             : ReadableSerializerIdentity(key_serializer_),
                     "; keep the KeyBy key type (docs/checkpointing.md \"Changing a job\")"));
  }

  // Restores the key groups of `file` (a snapshot covering `file_range`, with per-key-group
  // `offsets`) that belong to this backend's range. Call before processing starts; may be called
  // once per snapshot file when rescaling. `where` names the file in errors.
  absl::Status Restore(std::string_view file, KeyGroupRange file_range,
                       const std::vector<uint64_t>& offsets, const std::string& where) {
    auto corrupt = [&](const std::string& what) {
      return absl::DataLossError(
          absl::StrCat(where, ": keyed state snapshot is corrupt (", what, ")"));
    };
    ByteReader in(file);
    std::string_view magic;
    uint32_t version = 0;
    if (!in.ReadBytes(4, &magic) || magic != "SLKS" || !in.ReadRaw(&version, sizeof version)) {
      return corrupt("bad header");
    }
    if (version == 0 || version > kKeyedSnapshotVersion) {
      return absl::DataLossError(absl::StrCat(where, ": keyed state snapshot has format version ",
                                              version, ", this Sluice reads versions 1..",
                                              kKeyedSnapshotVersion));
    }
    if (version >= 2) {
      std::string_view saved_key;
      if (!in.ReadLengthPrefixed(&saved_key)) return corrupt("bad key format");
      SLUICE_RETURN_IF_ERROR(CheckKeyFormat(saved_key, where));
    }
    uint64_t n = 0;
    if (!in.ReadVarint(&n) || n > in.remaining()) return corrupt("bad state count");
    std::vector<std::pair<std::string, RestoredState>> states;
    for (uint64_t i = 0; i < n; ++i) {
      std::string_view name_bytes;
      uint8_t kind = 0;
      uint64_t ttl = 0;
      std::string_view serializer;
      if (!in.ReadLengthPrefixed(&name_bytes) || !in.ReadRaw(&kind, 1) || !in.ReadVarint(&ttl) ||
          kind < 1 || kind > 6 || (version >= 2 && !in.ReadLengthPrefixed(&serializer))) {
        return corrupt("bad state list");
      }
      const std::string name(name_bytes);
      RestoredState rs{static_cast<StateKind>(kind), static_cast<int64_t>(ttl),
                       std::string(serializer)};
      // A format of "" is unknown (a state restored from an older snapshot and never registered
      // since): it agrees with any, and a known one wins.
      auto it = restored_.find(name);
      if (it != restored_.end() && rs.serializer.empty()) rs.serializer = it->second.serializer;
      if (it != restored_.end() &&
          (it->second.kind != rs.kind || it->second.ttl_ms != rs.ttl_ms ||
           (!it->second.serializer.empty() && it->second.serializer != rs.serializer))) {
        return absl::FailedPreconditionError(
            absl::StrCat(where, ": state '", name, "' differs from another restored snapshot"));
      }
      if (rs.kind == StateKind::kInternal)
        SLUICE_RETURN_IF_ERROR(CheckInternalFormat(name, rs, where));
      restored_[name] = rs;
      states.emplace_back(name, rs);
    }
    if (offsets.size() != static_cast<size_t>(file_range.end - file_range.start + 1)) {
      return corrupt("key group offsets do not match the key group range");
    }
    std::vector<int> cfs(states.size(), -1);
    for (int kg = std::max(file_range.start, range_.start);
         kg <= std::min(file_range.end, range_.end); ++kg) {
      const uint64_t off = offsets[kg - file_range.start];
      if (off > file.size()) return corrupt(absl::StrCat("offset of key group ", kg));
      ByteReader block(file.substr(off));
      while (true) {
        uint64_t idx = 0;
        if (!block.ReadVarint(&idx)) return corrupt(absl::StrCat("key group ", kg, " truncated"));
        if (idx == 0) break;
        std::string_view composite, value;
        if (idx > states.size() || !block.ReadLengthPrefixed(&composite) ||
            !block.ReadLengthPrefixed(&value)) {
          return corrupt(absl::StrCat("record in key group ", kg));
        }
        const auto& [name, rs] = states[idx - 1];
        if (kind_ == StateBackendKind::kRocksDb && rs.kind != StateKind::kInternal) {
          if (cfs[idx - 1] < 0) {
            SLUICE_RETURN_IF_ERROR(EnsureRocksDb());
            SLUICE_ASSIGN_OR_RETURN(
                cfs[idx - 1],
                db_->ColumnFamily(
                    name, rs.kind == StateKind::kList ? TtlLayout::kList : TtlLayout::kValue,
                    rs.ttl_ms));
            cf_by_name_[name] = cfs[idx - 1];
          }
          std::string key = KeyGroupPrefix(kg);
          key.append(composite);
          db_->Put(cfs[idx - 1], key, value);
        } else {
          pending_[name].push_back({kg, std::string(composite), std::string(value)});
        }
      }
    }
    if (kind_ == StateBackendKind::kHashMap) {
      for (auto& t : tables_) ReplayPending(*t);
      for (const auto& [name, records] : pending_) {
        if (records.empty()) continue;
        if constexpr (!Serializable<K>) {
          return absl::FailedPreconditionError(absl::StrCat(where, ": the key type of operator '",
                                                            operator_name_,
                                                            "' has no sluice::Serializer"));
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  // The change log of a HashMap backend: its position (see KeyedChangeLogPosition) and the state
  // list of its latest materialized snapshot. Shared by its snapshots.
  struct ChangeLogCursor {
    std::mutex mu;
    KeyedChangeLogPosition position;
    std::string state_list;
  };

  // What the synchronous part of a snapshot captured; Materialize writes the file from it.
  struct CapturedSnapshot {
    int64_t now = 0;
    std::string header;
    std::vector<RestoredState> states;  // by state index
    // Per key group of the range: records already encoded (internal states, restored states not
    // registered, RocksDB column families) or still to encode (deferred), in pieces to write in
    // order.
    struct Piece {
      std::string bytes;
      int deferred = -1;  // >= 0: instead, this key group's records of deferred[deferred]
    };
    std::vector<std::vector<Piece>> blobs;
    std::vector<InternalKeyedState::DeferredRecords> deferred;
    std::shared_ptr<HeapSnapshotShadow> shadow;  // HashMap: the tables' records
    int64_t seq = 0;
    // Change-tracked internal states: their records are in their shadows as of `seq`.
    struct Tracked {
      size_t index;
      std::shared_ptr<InternalSnapshotShadow> shadow;
      int64_t seq;
    };
    std::vector<Tracked> tracked;
    // HashMap: the backend's change log position (shared by its snapshots) and where the states
    // of each kind start in `states` (heap tables first, then internal, then unregistered).
    std::shared_ptr<ChangeLogCursor> cursor;
    size_t first_internal = 0;

    absl::Status Materialize(KeyedSnapshot& s) {
      std::vector<std::vector<std::string>> encoded_later(deferred.size());
      for (size_t j = 0; j < deferred.size(); ++j) {
        deferred[j](&encoded_later[j]);
        if (encoded_later[j].size() != blobs.size()) {
          return absl::InternalError("keyed snapshot: deferred records of another key-group range");
        }
      }
      // The change log: only the changes when the previous materialized snapshot of this backend
      // is the one the caller names and the states are the same.
      const bool log = s.change_log && shadow != nullptr && cursor != nullptr;
      bool changes_only = false;
      std::unique_lock<std::mutex> cursor_lock;
      if (cursor != nullptr) {
        cursor_lock = std::unique_lock<std::mutex>(cursor->mu);
        const std::string_view state_list = std::string_view(header).substr(8);
        changes_only =
            log && s.changes_since == cursor->position && cursor->state_list == state_list;
        // From here on the shadows hold this snapshot, whatever happens next.
        ++cursor->position.generation;
        cursor->state_list.assign(state_list);
        s.position = cursor->position;
      }
      // Changes only: the operations of every change applied, in order, per tracked state.
      std::vector<InternalSnapshotShadow::Applied> applied(changes_only ? tracked.size() : 0);
      std::vector<std::unique_lock<std::mutex>> locks(tracked.size());
      for (size_t j = 0; j < tracked.size(); ++j) {
        InternalSnapshotShadow::Applied* a = nullptr;
        if (changes_only) {
          a = &applied[j];
          a->record_tag = tracked[j].index + 1;
          a->removal_tag = states.size() + tracked[j].index + 1;
        }
        absl::Status st = tracked[j].shadow->ApplyThrough(tracked[j].seq, &locks[j], a);
        if (!st.ok()) return absl::InternalError(absl::StrCat("keyed snapshot: ", st.message()));
      }
      if (log) {
        s.format = changes_only ? KeyedSnapshot::Format::kChangeLogChanges
                                : KeyedSnapshot::Format::kChangeLogFull;
        return WriteChangeLog(s, changes_only, encoded_later, applied);
      }
      s.format = KeyedSnapshot::Format::kCanonical;
      s.bytes = std::move(header);
      size_t encoded = s.bytes.size() + blobs.size();
      for (const Tracked& t : tracked) encoded += t.shadow->bytes() * 5 / 4;
      for (const std::vector<Piece>& pieces : blobs) {
        for (const Piece& piece : pieces) encoded += piece.bytes.size();
      }
      for (const std::vector<std::string>& buckets : encoded_later) {
        for (const std::string& bucket : buckets) encoded += bucket.size();
      }
      s.bytes.reserve(encoded);
      s.key_group_offsets.clear();
      bool corrupt = false;
      auto write = [&](const std::vector<absl::flat_hash_map<std::string, std::string>>* keys) {
        std::string kept;
        for (size_t g = 0; g < blobs.size(); ++g) {
          s.key_group_offsets.push_back(s.bytes.size());
          AppendPieces(g, encoded_later, &s.bytes);
          for (const Tracked& t : tracked) {
            for (const auto& [composite, value] : t.shadow->records()[g]) {
              PutSnapshotRecord(t.index, composite, {}, value, &s.bytes);
            }
          }
          if (keys == nullptr) {
            s.bytes.push_back(0);
            continue;
          }
          for (const auto& [key, records] : (*keys)[g]) {
            ByteReader in(records);
            uint64_t index = 0;
            std::string_view suffix, value, live;
            while (!in.empty()) {
              if (!in.ReadVarint(&index) || index >= states.size() ||
                  !in.ReadLengthPrefixed(&suffix) || !in.ReadLengthPrefixed(&value)) {
                corrupt = true;
                break;
              }
              if (LiveValue(states[index], now, value, &kept, &live)) {
                PutSnapshotRecord(index, key, suffix, live, &s.bytes);
              }
            }
          }
          s.bytes.push_back(0);
        }
      };
      if (shadow != nullptr) {
        SLUICE_RETURN_IF_ERROR(shadow->WithStateAt(seq, [&](const auto& keys) { write(&keys); }));
      } else {
        write(nullptr);
      }
      if (corrupt) return absl::InternalError("keyed snapshot: a change record does not decode");
      return absl::OkStatus();
    }

    // Appends key group g's already encoded records (and frees them).
    void AppendPieces(size_t g, std::vector<std::vector<std::string>>& encoded_later,
                      std::string* out) {
      for (const Piece& piece : blobs[g]) {
        if (piece.deferred >= 0) {
          std::string& bucket = encoded_later[static_cast<size_t>(piece.deferred)][g];
          out->append(bucket);
          std::string().swap(bucket);
        } else {
          out->append(piece.bytes);
        }
      }
      std::vector<Piece>().swap(blobs[g]);
    }

    // Writes the change-log format (see kKeyedChangeLogVersion): everything, or the changes since
    // the previous materialized snapshot (`applied`: per tracked state, the operations of the
    // changes applied since; a tracked state that was given a full snapshot is written whole).
    absl::Status WriteChangeLog(KeyedSnapshot& s, bool changes_only,
                                std::vector<std::vector<std::string>>& encoded_later,
                                std::vector<InternalSnapshotShadow::Applied>& applied) {
      std::string& out = s.bytes;
      out.clear();
      out.append("SLKC");
      const uint32_t version = kKeyedChangeLogVersion;
      out.append(reinterpret_cast<const char*>(&version), sizeof version);
      out.push_back(changes_only ? 1 : 0);
      out.append(std::string_view(header).substr(8));
      std::vector<uint8_t> whole(tracked.size(), 1);
      std::vector<KeyedChangeLogMode> modes(states.size(), KeyedChangeLogMode::kWhole);
      for (size_t i = 0; i < first_internal; ++i) modes[i] = KeyedChangeLogMode::kPerKey;
      for (size_t j = 0; j < tracked.size(); ++j) {
        whole[j] = !changes_only || applied[j].full;
        if (!whole[j]) modes[tracked[j].index] = KeyedChangeLogMode::kChanges;
      }
      for (KeyedChangeLogMode m : modes) out.push_back(static_cast<char>(m));
      size_t encoded = out.size() + 3 * blobs.size();
      for (size_t j = 0; j < tracked.size(); ++j) {
        if (whole[j]) {
          encoded += tracked[j].shadow->bytes() * 5 / 4;
        } else {
          for (const std::string& ops : applied[j].ops) encoded += ops.size();
        }
      }
      for (const std::vector<Piece>& pieces : blobs) {
        for (const Piece& piece : pieces) encoded += piece.bytes.size();
      }
      for (const std::vector<std::string>& buckets : encoded_later) {
        for (const std::string& bucket : buckets) encoded += bucket.size();
      }
      s.key_group_offsets.clear();
      bool corrupt = false;
      std::string kept, records;
      // A key's live records in the change-log form: [varint 1][key][records].
      const auto put_key = [&](const std::string& key, const std::string& stored, std::string* to) {
        records.clear();
        ByteReader in(stored);
        uint64_t index = 0;
        std::string_view suffix, value, live;
        while (!in.empty()) {
          if (!in.ReadVarint(&index) || index >= first_internal ||
              !in.ReadLengthPrefixed(&suffix) || !in.ReadLengthPrefixed(&value)) {
            corrupt = true;
            return;
          }
          if (LiveValue(states[index], now, value, &kept, &live)) {
            PutVarint(index, &records);
            PutLengthPrefixed(suffix, &records);
            PutLengthPrefixed(live, &records);
          }
        }
        PutVarint(1, to);
        PutLengthPrefixed(key, to);
        PutLengthPrefixed(records, to);
      };
      // Changes only: per key group, the keys changed in order, as they were applied.
      std::vector<std::string> key_ops(changes_only ? blobs.size() : 0);
      const auto on_change = [&](size_t g, const HeapSnapshotShadow::Change& c) {
        if (!changes_only) return;
        if (c.records) {
          put_key(c.key, *c.records, &key_ops[g]);
        } else {
          PutVarint(2, &key_ops[g]);
          PutLengthPrefixed(c.key, &key_ops[g]);
        }
      };
      auto write = [&](const std::vector<absl::flat_hash_map<std::string, std::string>>& keys) {
        if (changes_only) {
          for (const std::string& k : key_ops) encoded += k.size();
        }
        out.reserve(encoded);
        for (size_t g = 0; g < blobs.size(); ++g) {
          s.key_group_offsets.push_back(out.size());
          AppendPieces(g, encoded_later, &out);
          for (size_t j = 0; j < tracked.size(); ++j) {
            if (whole[j]) {
              for (const auto& [composite, value] : tracked[j].shadow->records()[g]) {
                PutSnapshotRecord(tracked[j].index, composite, {}, value, &out);
              }
            } else {
              out.append(applied[j].ops[g]);
              std::string().swap(applied[j].ops[g]);
            }
          }
          out.push_back(0);
          if (changes_only) {
            out.append(key_ops[g]);
            std::string().swap(key_ops[g]);
          } else {
            for (const auto& [key, stored] : keys[g]) put_key(key, stored, &out);
          }
          out.push_back(0);
        }
      };
      SLUICE_RETURN_IF_ERROR(shadow->WithStateAt(
          seq, [&](const auto& keys) { write(keys); }, on_change));
      if (corrupt) return absl::InternalError("keyed snapshot: a change record does not decode");
      return absl::OkStatus();
    }
  };

  static TtlLayout LayoutOf(StateKind kind) {
    return kind == StateKind::kList ? TtlLayout::kList : TtlLayout::kValue;
  }

  // RocksDB: a native checkpoint of the instance into a fresh local directory (previous ones are
  // gone: the checkpoint writer handles one checkpoint at a time and removes what it uploaded).
  absl::Status TakeNativeCheckpoint(KeyedSnapshot& snap) {
    if (instance_id_.empty()) {
      std::random_device rd;
      instance_id_ =
          absl::StrCat(absl::Hex(static_cast<uint64_t>(rd()) << 32 | rd(), absl::kZeroPad16));
    }
    const std::string base = db_->path() + ".checkpoints";
    std::error_code ec;
    std::filesystem::remove_all(base, ec);  // leftovers of checkpoints that were never written
    const std::string dir = absl::StrCat(base, "/", ++native_checkpoints_);
    SLUICE_ASSIGN_OR_RETURN(std::vector<std::string> files, db_->CreateNativeCheckpoint(dir));
    snap.native_dir = dir;
    for (std::string& f : files) {
      KeyedSnapshot::NativeFile nf;
      if (f.size() > 4 && f.compare(f.size() - 4, 4, ".sst") == 0) {
        auto it = restored_sst_.find(f);
        nf.shared_name =
            it != restored_sst_.end() ? it->second : absl::StrCat(instance_id_, "/", f);
      }
      nf.name = std::move(f);
      snap.native_files.push_back(std::move(nf));
    }
    return absl::OkStatus();
  }

  // The part of value `v` of a state `st` still alive at `now` (TTL): false when nothing is; list
  // elements that expired are left out (the kept ones are copied to `kept`).
  static bool LiveValue(RestoredState st, int64_t now, std::string_view v, std::string* kept,
                        std::string_view* out) {
    *out = v;
    if (st.ttl_ms <= 0) return true;
    if (st.kind != StateKind::kList) return !(v.size() >= 8 && GetFixed64(v) + st.ttl_ms <= now);
    kept->clear();
    ForEachListElement(v, [&](std::string_view e) {
      if (e.size() >= 8 && GetFixed64(e) + st.ttl_ms > now) AppendListElement(e, kept);
    });
    if (kept->empty()) return false;
    *out = *kept;
    return true;
  }

  // HashMap: the records of every key accessed since the previous snapshot (all keys at the
  // first one) and the keys that lost their last entry.
  std::vector<HeapSnapshotShadow::Change> CollectChanges(int64_t now) {
    std::vector<HeapSnapshotShadow::Change> changes = std::move(removed_);
    removed_.clear();
    if (!tracking_) {
      tracking_ = true;
      dirty_flags_.assign(id_keys_.size(), 0);
      dirty_.clear();
      for (const auto& dict : dicts_) {
        for (const auto& [key, id] : dict) dirty_.push_back(id);
      }
    }
    if constexpr (Serializable<K>) {
      for (uint32_t id : dirty_) {
        dirty_flags_[id] = 0;
        if (!id_keys_[id]) continue;  // released: its removal is in `changes` already
        HeapSnapshotShadow::Change c{id_kg_[id], SerializeToString(*id_keys_[id]), std::string()};
        std::string& records = *c.records;
        for (size_t i = 0; i < tables_.size(); ++i) {
          tables_[i]->ForEachEntry(id, now, [&](std::string_view suffix, std::string_view v) {
            PutVarint(i, &records);
            PutLengthPrefixed(suffix, &records);
            PutLengthPrefixed(v, &records);
          });
        }
        if (records.empty()) c.records.reset();  // only expired entries left
        changes.push_back(std::move(c));
      }
    }
    dirty_.clear();
    return changes;
  }

  static std::string KeyGroupPrefix(int kg) {
    std::string p(2, '\0');
    p[0] = static_cast<char>((kg >> 8) & 0xFF);
    p[1] = static_cast<char>(kg & 0xFF);
    return p;
  }
  static bool IsInternal(const std::string& name) { return !name.empty() && name[0] == '_'; }
  bool HasTable(const std::string& name) const {
    for (const auto& t : tables_) {
      if (t->name() == name) return true;
    }
    return false;
  }

  void ReplayPending(StateTableBase& table) override {
    auto it = pending_.find(table.name());
    if (it == pending_.end()) return;
    if constexpr (Serializable<K>) {
      for (const RestoredRecord& r : it->second) {
        ByteReader in(r.composite);
        K key{};
        if (!Serializer<K>::Read(in, &key) || KeyGroupFor(key, max_parallelism_) != r.key_group) {
          ThrowStateError(absl::DataLossError(
              absl::StrCat("operator '", operator_name_, "': restored state '", table.name(),
                           "' holds a key that does not decode or belongs to another key group")));
        }
        const uint32_t id = IdFor(key, r.key_group);
        MarkDirty(id);  // registered after a snapshot: the next one must include it
        if (!table.RestoreEntry(id, in.rest(), r.value)) {
          ThrowStateError(absl::DataLossError(
              absl::StrCat("operator '", operator_name_, "': restored state '", table.name(),
                           "' holds a value that does not decode")));
        }
        if (refs_[id] == 0) ReleaseIfUnused(id);
      }
    }
    pending_.erase(it);
  }

  // Id of `key` (in key group `kg`), allocated if needed (HashMap).
  uint32_t IdFor(const K& key, int kg) {
    auto& dict = dicts_[kg - range_.start];
    auto it = dict.find(key);
    if (it != dict.end()) return it->second;
    const uint32_t id = NewId();
    dict.emplace(key, id);
    id_keys_[id].emplace(key);
    id_kg_[id] = kg;
    return id;
  }
  void ReleaseIfUnused(uint32_t id) { Release(id); }

  uint32_t NewId() {
    uint32_t id;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
    } else {
      id = static_cast<uint32_t>(id_keys_.size());
      id_keys_.emplace_back();
      id_kg_.push_back(0);
      refs_.push_back(0);
      dirty_flags_.push_back(0);
    }
    return id;
  }

  void Resolve() override {
    resolved_ = true;
    current_kg_ = KeyGroupFor(*key_, max_parallelism_);
    if (current_kg_ < range_.start || current_kg_ > range_.end) {
      ThrowStateError(absl::InternalError(
          absl::StrCat("operator '", operator_name_, "': key group ", current_kg_,
                       " is outside this subtask's range [", range_.start, ", ", range_.end, "]")));
    }
    const auto& dict = dicts_[current_kg_ - range_.start];
    auto it = dict.find(*key_);
    id_ = it == dict.end() ? kNoId : it->second;
  }
  uint32_t Allocate() override {
    if (!resolved_) Resolve();
    return IdFor(*key_, current_kg_);
  }
  void Release(uint32_t id) override {
    if constexpr (Serializable<K>) {
      if (tracking_)
        removed_.push_back({id_kg_[id], SerializeToString(*id_keys_[id]), std::nullopt});
    }
    dicts_[id_kg_[id] - range_.start].erase(*id_keys_[id]);
    id_keys_[id].reset();
    free_.push_back(id);
  }
  void ResolveBytes() override {
    bytes_resolved_ = true;
    if constexpr (Serializable<K>) {
      const int kg = KeyGroupFor(*key_, max_parallelism_);
      key_bytes_ = KeyGroupPrefix(kg);
      Serializer<K>::Write(*key_, &key_bytes_);
    }
  }

  const K* key_ = nullptr;
  int current_kg_ = 0;
  std::vector<absl::flat_hash_map<K, uint32_t>> dicts_;  // per key group of the range
  std::vector<std::optional<K>> id_keys_;
  std::vector<int> id_kg_;
  std::vector<uint32_t> free_;
  // HashMap snapshots: keys removed since the previous one, and the state as of the last one.
  std::vector<HeapSnapshotShadow::Change> removed_;
  std::shared_ptr<HeapSnapshotShadow> shadow_;
  std::shared_ptr<ChangeLogCursor> cursor_;
  // Change-tracked internal states: their records as of the snapshots taken, by state name.
  absl::flat_hash_map<std::string, std::shared_ptr<InternalSnapshotShadow>> internal_shadows_;
  size_t last_changed_keys_ = 0;
  // RocksDB incremental checkpoints: this instance's id in shared SST names, and the native
  // checkpoints taken.
  std::string instance_id_;
  int64_t native_checkpoints_ = 0;
  absl::flat_hash_map<std::string, std::string> restored_sst_;  // SST file -> its shared name
};

}  // namespace sluice::internal
