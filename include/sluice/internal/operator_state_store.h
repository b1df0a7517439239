// OperatorStateStore: the non-keyed state of one operator subtask (Flink's operator state):
// list state split evenly on rescaling, union list state, and broadcast state. Internal.
//
//   OperatorStateStore store;                          // one per operator subtask
//   ListState<int64_t> s = store.GetListState(desc, OperatorStateMode::kSplit, "Map");
//   std::string bytes = store.Snapshot("Map");         // at a checkpoint barrier
//   store.Restore(old_subtask_strings, subtask, parallelism, "Map");   // before Open()
//
// Snapshot format (in OperatorStateSnapshot::operator_state), version 1:
//   [u8 version = 1][varint #states] per state: [name, length-prefixed][u8 mode]
//   [varint #elements] each element length-prefixed: a list element (Serializer<T>), or a
//   broadcast entry (Serializer<K> then Serializer<V>).
// An operator without operator state writes nothing (an empty string).
//
// Redistribution on restore, as Flink's RoundRobinOperatorStateRepartitioner:
//  * kSplit: at the same parallelism subtask i keeps old subtask i's elements; otherwise the
//    elements of all old subtasks, concatenated by old subtask index, are cut into contiguous
//    chunks of N / P elements, the first N % P chunks one element longer.
//  * kUnion: every subtask gets every element of every old subtask (in old subtask order).
//  * kBroadcast: subtask i gets old subtask (i % old parallelism)'s copy.
// Not thread-safe: used by its subtask's thread only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/core/status.h>
#include <sluice/internal/job_failure.h>
#include <sluice/state/operator_state.h>
#include <sluice/state/serializer.h>
#include <sluice/state/serializer_identity.h>
#include <sluice/state/state.h>

namespace sluice::internal {

enum class OperatorStateMode : uint8_t {
  kSplit = 1,      // GetOperatorListState: even-split redistribution
  kUnion = 2,      // GetUnionListState: every subtask gets everything
  kBroadcast = 3,  // broadcast state: subtask i takes old subtask i % old_parallelism's copy
};
inline const char* OperatorStateModeName(OperatorStateMode mode) {
  switch (mode) {
    case OperatorStateMode::kSplit:
      return "operator list state";
    case OperatorStateMode::kUnion:
      return "union list state";
    case OperatorStateMode::kBroadcast:
      return "broadcast state";
  }
  return "operator state";
}

// Format of a subtask's operator state: [u8 version][varint #states] per state: [name][u8 mode]
// ([format] from version 2: the length-prefixed serializer identity of its elements, "" unknown)
// [varint #elements][length-prefixed element]...
inline constexpr uint8_t kOperatorStateVersion = 2;

// One registered state: it writes its elements into snapshots and loads restored ones.
class OperatorStateEntry {
 public:
  OperatorStateEntry(std::string name, OperatorStateMode mode, const std::type_info& type)
      : name_(std::move(name)), mode_(mode), type_(&type) {}
  virtual ~OperatorStateEntry() = default;
  const std::string& name() const { return name_; }
  OperatorStateMode mode() const { return mode_; }
  const std::type_info& type() const { return *type_; }
  // The format of the elements (state/serializer_identity.h), "" when not checkpointable, and
  // whether they read elements saved in format `saved`.
  virtual std::string Format() const = 0;
  virtual bool ReadsFormat(std::string_view saved) const = 0;

  // Appends [varint #elements][length-prefixed element]... Throws JobFailure when the type cannot
  // be checkpointed.
  virtual void Write(const std::string& op, std::string* out) const = 0;
  // Replaces the contents with restored elements; false when one does not decode.
  virtual bool Load(const std::vector<std::string>& elements) = 0;

 private:
  std::string name_;
  OperatorStateMode mode_;
  const std::type_info* type_;
};

// List state of an operator subtask (split or union redistribution).
template <typename T>
class OperatorListStateImpl final : public OperatorStateEntry, public ListStateImpl<T> {
 public:
  OperatorListStateImpl(std::string name, OperatorStateMode mode)
      : OperatorStateEntry(std::move(name), mode, typeid(T)) {}

  std::string Format() const override {
    if constexpr (Serializable<T>) {
      return SerializerIdentity<T>();
    } else {
      return "";
    }
  }
  bool ReadsFormat(std::string_view saved) const override {
    if constexpr (Serializable<T>) {
      return SerializerReads<T>(saved);
    } else {
      return false;
    }
  }

  std::vector<T> Get() override { return values_; }
  void Add(T value) override { values_.push_back(std::move(value)); }
  void AddAll(std::vector<T> values) override {
    for (T& v : values) values_.push_back(std::move(v));
  }
  void Update(std::vector<T> values) override { values_ = std::move(values); }
  void Clear() override { values_.clear(); }

  void Write(const std::string&, std::string* out) const override {
    PutVarint(values_.size(), out);
    std::string element;
    for (const T& v : values_) {
      element.clear();
      Serializer<T>::Write(v, &element);
      PutLengthPrefixed(element, out);
    }
  }
  bool Load(const std::vector<std::string>& elements) override {
    values_.clear();
    values_.reserve(elements.size());
    for (const std::string& e : elements) {
      T v{};
      ByteReader in(e);
      if (!Serializer<T>::Read(in, &v) || !in.empty()) return false;
      values_.push_back(std::move(v));
    }
    return true;
  }

 private:
  std::vector<T> values_;
};

// A broadcast state's contents as its operator and the contexts see them; the operator registers
// a subclass that knows how to write and load K and V (internal/broadcast_operators.h).
template <typename K, typename V>
class BroadcastStateEntryBase : public OperatorStateEntry {
 public:
  BroadcastStateEntryBase(std::string name, const std::string* op, const bool* writable)
      : OperatorStateEntry(name, OperatorStateMode::kBroadcast, typeid(std::pair<K, V>)) {
    map.name = std::move(name);
    map.operator_name = op;
    map.writable = writable;
  }
  std::string Format() const override {
    if constexpr (Serializable<K> && Serializable<V>) {
      return SerializerIdentity<std::pair<K, V>>();
    } else {
      return "";
    }
  }
  bool ReadsFormat(std::string_view saved) const override {
    if constexpr (Serializable<K> && Serializable<V>) {
      return SerializerReads<std::pair<K, V>>(saved);
    } else {
      return false;
    }
  }
  BroadcastMap<K, V> map;
};

class OperatorStateStore {
 public:
  // The broadcast state `d` declared for this operator (Broadcast(descriptors...)). Throws
  // JobFailure (FailedPrecondition) naming operator `op` when it was not declared or was declared
  // with other types.
  template <typename K, typename V>
  BroadcastMap<K, V>* GetBroadcastMap(const MapStateDescriptor<K, V>& d,
                                      const std::string& op) const {
    OperatorStateEntry* e = Find(d.name);
    if (e == nullptr || e->mode() != OperatorStateMode::kBroadcast) {
      throw JobFailure(absl::FailedPreconditionError(absl::StrCat(
          "operator '", op, "': broadcast state '", d.name,
          "' was not declared: pass its MapStateDescriptor to Broadcast(...) of the broadcast "
          "stream connected to this operator")));
    }
    if (e->type() != typeid(std::pair<K, V>)) {
      throw JobFailure(absl::FailedPreconditionError(
          absl::StrCat("operator '", op, "': broadcast state '", d.name,
                       "' is requested with other key or value types than it was declared with")));
    }
    return &static_cast<BroadcastStateEntryBase<K, V>*>(e)->map;
  }

  // The list state `d` of this subtask, registered on first use (restored elements are loaded
  // then). Throws JobFailure (FailedPrecondition) when the name is registered with another mode
  // or element type, or was restored with another mode.
  template <typename T>
  ListState<T> GetListState(const ListStateDescriptor<T>& d, OperatorStateMode mode,
                            const std::string& op) {
    static_assert(Serializable<T>,
                  "operator ListState<T> needs a sluice::Serializer<T> (state/serializer.h)");
    if (d.ttl) {
      throw JobFailure(absl::InvalidArgumentError(
          absl::StrCat("operator '", op, "': ", OperatorStateModeName(mode), " '", d.name,
                       "': time-to-live applies to keyed state only")));
    }
    if (OperatorStateEntry* e = Find(d.name)) {
      CheckSame(*e, mode, typeid(T), op);
      return ListState<T>(static_cast<OperatorListStateImpl<T>*>(e));
    }
    auto impl = std::make_unique<OperatorListStateImpl<T>>(d.name, mode);
    OperatorListStateImpl<T>* raw = impl.get();
    Register(std::move(impl), op);
    return ListState<T>(raw);
  }

  // Adds a state (broadcast states are registered by their operator when it is built); restored
  // elements of that name are loaded into it. Throws JobFailure.
  void Register(std::unique_ptr<OperatorStateEntry> entry, const std::string& op) {
    if (entry->name().empty()) {
      throw JobFailure(absl::InvalidArgumentError(
          absl::StrCat("operator '", op, "': a state descriptor has an empty name")));
    }
    if (OperatorStateEntry* e = Find(entry->name())) {
      CheckSame(*e, entry->mode(), entry->type(), op);
      return;
    }
    LoadPending(*entry, op);
    entries_.push_back(std::move(entry));
  }

  OperatorStateEntry* Find(const std::string& name) const {
    for (const auto& e : entries_) {
      if (e->name() == name) return e.get();
    }
    return nullptr;
  }

  // True after Restore() (the subtask resumes from a checkpoint or savepoint).
  bool restored() const { return restored_; }
  bool empty() const { return entries_.empty() && pending_.empty(); }

  // This subtask's operator state: registered states, then restored states never registered
  // (kept as they are, never dropped). Empty when there is none. Throws JobFailure.
  std::string Snapshot(const std::string& op) const {
    if (empty()) return std::string();
    std::string out;
    out.push_back(static_cast<char>(kOperatorStateVersion));
    PutVarint(entries_.size() + pending_.size(), &out);
    for (const auto& e : entries_) {
      PutLengthPrefixed(e->name(), &out);
      out.push_back(static_cast<char>(e->mode()));
      PutLengthPrefixed(e->Format(), &out);
      e->Write(op, &out);
    }
    for (const auto& [name, p] : pending_) {
      PutLengthPrefixed(name, &out);
      out.push_back(static_cast<char>(p.mode));
      PutLengthPrefixed(p.format, &out);
      PutVarint(p.elements.size(), &out);
      for (const std::string& el : p.elements) PutLengthPrefixed(el, &out);
    }
    return out;
  }

  // Restores this subtask (`subtask` of `parallelism`) from the operator states of every old
  // subtask (by old index), redistributing each state by its mode. Call before any state is
  // registered.
  absl::Status Restore(const std::vector<std::string>& old, int subtask, int parallelism,
                       const std::string& op) {
    restored_ = true;
    const size_t old_p = old.size();
    struct Parsed {
      OperatorStateMode mode;
      std::string format;
      std::vector<std::vector<std::string>> per_old;  // by old subtask
      std::vector<bool> present;
    };
    std::vector<std::pair<std::string, Parsed>> states;  // in first-seen order
    auto find = [&](const std::string& name) -> Parsed* {
      for (auto& [n, p] : states) {
        if (n == name) return &p;
      }
      return nullptr;
    };
    for (size_t j = 0; j < old_p; ++j) {
      if (old[j].empty()) continue;
      auto corrupt = [&](const std::string& what) {
        return absl::DataLossError(absl::StrCat(
            "operator '", op, "': operator state of old subtask ", j, " is corrupt (", what, ")"));
      };
      ByteReader in(old[j]);
      uint8_t version = 0;
      if (!in.ReadRaw(&version, 1)) return corrupt("empty");
      if (version == 0 || version > kOperatorStateVersion) {
        return absl::DataLossError(absl::StrCat(
            "operator '", op, "': operator state of old subtask ", j, " has format version ",
            static_cast<int>(version), ", this Sluice reads versions 1..",
            static_cast<int>(kOperatorStateVersion)));
      }
      uint64_t n = 0;
      if (!in.ReadVarint(&n) || n > in.remaining()) return corrupt("bad state count");
      for (uint64_t s = 0; s < n; ++s) {
        std::string_view name_bytes;
        uint8_t mode = 0;
        std::string_view format;
        uint64_t count = 0;
        if (!in.ReadLengthPrefixed(&name_bytes) || !in.ReadRaw(&mode, 1) || mode < 1 || mode > 3 ||
            (version >= 2 && !in.ReadLengthPrefixed(&format)) || !in.ReadVarint(&count) ||
            count > in.remaining()) {
          return corrupt("bad state header");
        }
        const std::string name(name_bytes);
        Parsed* p = find(name);
        if (p == nullptr) {
          states.emplace_back(name,
                              Parsed{static_cast<OperatorStateMode>(mode), std::string(format),
                                     std::vector<std::vector<std::string>>(old_p),
                                     std::vector<bool>(old_p, false)});
          p = &states.back().second;
        } else if (p->mode != static_cast<OperatorStateMode>(mode)) {
          return absl::DataLossError(absl::StrCat(
              "operator '", op, "': state '", name, "' is ", OperatorStateModeName(p->mode),
              " in one old subtask and ",
              OperatorStateModeName(static_cast<OperatorStateMode>(mode)), " in old subtask ", j));
        } else if (p->format.empty()) {
          p->format = std::string(format);  // old subtasks of an older version may not say
        }
        p->present[j] = true;
        for (uint64_t e = 0; e < count; ++e) {
          std::string_view el;
          if (!in.ReadLengthPrefixed(&el)) return corrupt(absl::StrCat("state '", name, "'"));
          p->per_old[j].emplace_back(el);
        }
      }
      if (!in.empty()) return corrupt("trailing bytes");
    }
    for (auto& [name, p] : states) {
      Pending mine{p.mode, p.format, {}};
      switch (p.mode) {
        case OperatorStateMode::kSplit:
          if (static_cast<size_t>(parallelism) == old_p) {
            mine.elements = std::move(p.per_old[static_cast<size_t>(subtask)]);
          } else {
            std::vector<std::string> all;
            for (auto& v : p.per_old) {
              for (auto& e : v) all.push_back(std::move(e));
            }
            const size_t total = all.size();
            const size_t P = static_cast<size_t>(parallelism);
            const size_t i = static_cast<size_t>(subtask);
            const size_t base = total / P, rem = total % P;
            const size_t start = i * base + std::min(i, rem);
            const size_t count = base + (i < rem ? 1 : 0);
            for (size_t k = start; k < start + count; ++k)
              mine.elements.push_back(std::move(all[k]));
          }
          break;
        case OperatorStateMode::kUnion:
          for (auto& v : p.per_old) {
            for (auto& e : v) mine.elements.push_back(std::move(e));
          }
          break;
        case OperatorStateMode::kBroadcast: {
          if (old_p == 0) break;
          const size_t from = static_cast<size_t>(subtask) % old_p;
          mine.elements = std::move(p.per_old[from]);
          break;
        }
      }
      if (OperatorStateEntry* e = Find(name)) {
        if (e->mode() != mine.mode) {
          return absl::FailedPreconditionError(ModeMismatch(op, name, mine.mode, e->mode()));
        }
        if (!FormatReadable(*e, mine.format)) {
          return absl::FailedPreconditionError(FormatMismatch(op, *e, mine.format));
        }
        if (!e->Load(mine.elements)) {
          return absl::DataLossError(absl::StrCat("operator '", op, "': restored ",
                                                  OperatorStateModeName(e->mode()), " '", name,
                                                  "' holds an element that does not decode"));
        }
      } else {
        pending_.emplace_back(name, std::move(mine));
      }
    }
    return absl::OkStatus();
  }

 private:
  struct Pending {
    OperatorStateMode mode;
    std::string format;  // "" when unknown (version 1)
    std::vector<std::string> elements;
  };

  static bool FormatReadable(const OperatorStateEntry& e, const std::string& saved) {
    return saved.empty() || saved == e.Format() || e.ReadsFormat(saved);
  }
  static std::string FormatMismatch(const std::string& op, const OperatorStateEntry& e,
                                    const std::string& saved) {
    return absl::StrCat("operator '", op, "': ", OperatorStateModeName(e.mode()), " '", e.name(),
                        "' was saved in the format ", ReadableSerializerIdentity(saved),
                        " but is registered as ", ReadableSerializerIdentity(e.Format()),
                        ", whose serializer does not read that format; keep the state's type, or "
                        "give the type a sluice::Serializer that declares it reads the old format "
                        "(ReadsFormat; docs/checkpointing.md \"Changing a job\")");
  }

  static std::string ModeMismatch(const std::string& op, const std::string& name,
                                  OperatorStateMode restored, OperatorStateMode requested) {
    return absl::StrCat("operator '", op, "': state '", name, "' was checkpointed as ",
                        OperatorStateModeName(restored), " but is requested as ",
                        OperatorStateModeName(requested));
  }

  static void CheckSame(const OperatorStateEntry& e, OperatorStateMode mode,
                        const std::type_info& type, const std::string& op) {
    if (e.mode() != mode || e.type() != type) {
      throw JobFailure(absl::FailedPreconditionError(absl::StrCat(
          "operator '", op, "': state '", e.name(), "' is already registered as ",
          OperatorStateModeName(e.mode()), e.mode() == mode ? " of another element type" : "",
          "; one name is one state")));
    }
  }

  void LoadPending(OperatorStateEntry& entry, const std::string& op) {
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
      if (it->first != entry.name()) continue;
      if (it->second.mode != entry.mode()) {
        throw JobFailure(absl::FailedPreconditionError(
            ModeMismatch(op, entry.name(), it->second.mode, entry.mode())));
      }
      if (!FormatReadable(entry, it->second.format)) {
        throw JobFailure(
            absl::FailedPreconditionError(FormatMismatch(op, entry, it->second.format)));
      }
      if (!entry.Load(it->second.elements)) {
        throw JobFailure(absl::DataLossError(
            absl::StrCat("operator '", op, "': restored ", OperatorStateModeName(entry.mode()),
                         " '", entry.name(), "' holds an element that does not decode")));
      }
      pending_.erase(it);
      return;
    }
  }

  std::vector<std::unique_ptr<OperatorStateEntry>> entries_;
  std::vector<std::pair<std::string, Pending>> pending_;  // restored, not yet registered
  bool restored_ = false;
};

}  // namespace sluice::internal
