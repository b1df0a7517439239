// The window operator: Flink's WindowOperator / EvictingWindowOperator semantics, typed. Internal.
//
// Per record: the assigner gives the windows; a window whose cleanup time (max timestamp +
// allowed lateness, event time) the watermark has passed is late and skipped; the element is
// added to each other window's contents; the trigger decides FIRE / PURGE; a cleanup timer is
// registered. A record that went into no window and is late (timestamp + lateness <= watermark)
// goes to the late-data side output, or is counted in "<operator>.numLateRecordsDropped".
// Timers are per (key, window, time) in TimerQueues; event-time timers fire when the watermark
// passes them, before the watermark goes downstream. At a window's cleanup time its contents,
// trigger state and merging-set entry are freed.
//
// Merging windows (sessions) keep, per key, the set of current windows; a new window that
// overlaps others merges with them (trigger OnMerge, the merged windows' trigger state and
// cleanup timers cleared, their contents combined into the result window).
//
// How contents are kept is a policy (`Acc`): the reduced value, an aggregate accumulator, the
// list of elements, or (with an evictor) the list of timestamped elements. What runs on firing is
// `WinFn`: pass the result through, or a user process window function.
//
// Where contents live is decided once per operator: in memory (`entries_`, `slices_`) on the
// HashMap backend; on the RocksDB backend in column families of the subtask's instance
// (window_state.h: `_window_contents`, `_window_triggers`, `_slices`), when the key, window and
// contents have canonical serializers (otherwise in memory there too). Each batch, watermark and
// timer takes one branch to a `<kRocks>` instantiation of the per-record code, so the HashMap path
// has no per-record indirection. Timers and merging-window sets stay in memory on both backends.
// Snapshots write the same records under the same names from either storage.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

#include <sluice/internal/operators.h>
#include <sluice/internal/snapshot_util.h>
#include <sluice/internal/timer_queue.h>
#include <sluice/internal/window_key_lists.h>
#include <sluice/internal/window_state.h>
#include <sluice/window/triggers.h>
#include <sluice/window/window_functions.h>
#include <sluice/window/windows.h>

namespace sluice::internal {

// The key of WindowAll: every record has it.
struct AllKey {
  bool operator==(const AllKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const AllKey&) {
    return H::combine(std::move(h), uint8_t{0});
  }
};
struct AllKeySelector {
  template <typename T>
  AllKey operator()(const T&) const {
    return {};
  }
};

// --- Contents policies ---------------------------------------------------------------------------

// Reduce: the window keeps one value.
template <typename In, typename F>
struct ReduceContents {
  using State = In;
  using Result = In;
  static constexpr const char* kStateRole = "the window's reduced value type (the record type)";
  F fn;
  void Add(std::optional<State>& s, const In& v, Timestamp) {
    if (s) {
      *s = std::invoke(fn, std::as_const(*s), v);
    } else {
      s.emplace(v);
    }
  }
  void Merge(std::optional<State>& into, State& from) {
    if (into) {
      *into = std::invoke(fn, std::as_const(*into), std::as_const(from));
    } else {
      into.emplace(std::move(from));
    }
  }
  template <typename W, typename G>
  void Fire(State& s, const W&, G&& g) {
    g(std::span<const Result>(&s, 1));
  }
};

// Aggregate: the window keeps one accumulator.
template <typename In, typename A>
struct AggregateContents {
  using State = typename A::AccumulatorType;
  using Result = typename A::OutputType;
  static constexpr const char* kStateRole = "the window's accumulator type";
  A agg;
  void Add(std::optional<State>& s, const In& v, Timestamp) {
    if (!s) s.emplace(agg.CreateAccumulator());
    agg.Add(v, *s);
  }
  void Merge(std::optional<State>& into, State& from) {
    if (into) {
      agg.Merge(std::as_const(from), *into);
    } else {
      into.emplace(std::move(from));
    }
  }
  template <typename W, typename G>
  void Fire(State& s, const W&, G&& g) {
    Result r = agg.GetResult(std::as_const(s));
    g(std::span<const Result>(&r, 1));
  }
};

// Process: the window keeps every element, in arrival order.
template <typename In>
struct ListContents {
  using State = std::vector<In>;
  using Result = In;
  static constexpr const char* kStateRole = "the window's element type (the record type)";
  void Add(std::optional<State>& s, const In& v, Timestamp) {
    if (!s) s.emplace();
    s->push_back(v);
  }
  void Merge(std::optional<State>& into, State& from) {
    if (!into) {
      into.emplace(std::move(from));
    } else {
      into->insert(into->end(), std::make_move_iterator(from.begin()),
                   std::make_move_iterator(from.end()));
    }
  }
  template <typename W, typename G>
  void Fire(State& s, const W&, G&& g) {
    g(std::span<const Result>(s));
  }
};

// With an evictor: every element with its timestamp; on firing, evict before, run the inner
// policy's function over what is left, evict after (Flink's EvictingWindowOperator).
template <typename In, typename Inner, typename E>
struct EvictingContents {
  using State = std::vector<TimestampedValue<In>>;
  using Result = typename Inner::Result;
  static constexpr const char* kStateRole = "the window's element type (the record type)";
  Inner inner;
  E evictor;
  void Add(std::optional<State>& s, const In& v, Timestamp ts) {
    if (!s) s.emplace();
    s->push_back({v, ts});
  }
  void Merge(std::optional<State>& into, State& from) {
    if (!into) {
      into.emplace(std::move(from));
    } else {
      into->insert(into->end(), std::make_move_iterator(from.begin()),
                   std::make_move_iterator(from.end()));
    }
  }
  template <typename W, typename G>
  void Fire(State& s, const W& w, G&& g) {
    evictor.template EvictBefore<In, W>(s, w);
    if constexpr (std::is_same_v<Inner, ListContents<In>>) {
      std::vector<In> values;
      values.reserve(s.size());
      for (const auto& e : s) values.push_back(e.value);
      g(std::span<const Result>(values));
    } else if constexpr (requires { inner.agg; }) {
      // Flink's AggregateApplyWindowFunction: a fresh accumulator over what is left.
      std::optional<typename Inner::State> acc(inner.agg.CreateAccumulator());
      for (const auto& e : s) inner.agg.Add(e.value, *acc);
      inner.Fire(*acc, w, g);
    } else {
      std::optional<typename Inner::State> acc;
      for (const auto& e : s) inner.Add(acc, e.value, e.timestamp);
      if (acc) inner.Fire(*acc, w, g);
    }
    evictor.template EvictAfter<In, W>(s, w);
  }
  // An evictor may leave no element: the window then has no contents (Flink's emptied list state
  // reads as null), so later firings call no function.
  static bool Emptied(const State& s) { return s.empty(); }
};

// How a contents policy's state is written in checkpoints: with its sluice::Serializer; evicting
// contents as [varint n] then n times [element][8-byte timestamp].
template <typename Acc>
struct ContentsCodec {
  using State = typename Acc::State;
  static constexpr bool kSerializable = FullySerializable<State>;
  static void Write(const State& s, std::string* out) { Serializer<State>::Write(s, out); }
  static bool Read(ByteReader& in, State* s) { return Serializer<State>::Read(in, s); }
  static StateFormat Format() { return FormatOf<State>(); }
};
template <typename In, typename Inner, typename E>
struct ContentsCodec<EvictingContents<In, Inner, E>> {
  using State = std::vector<TimestampedValue<In>>;
  static constexpr bool kSerializable = FullySerializable<In>;
  // The encoding of a vector of (element, 8-byte timestamp) pairs.
  static StateFormat Format() { return FormatOf<std::vector<std::pair<In, int64_t>>>(); }
  static void Write(const State& s, std::string* out) {
    PutVarint(s.size(), out);
    for (const auto& e : s) {
      Serializer<In>::Write(e.value, out);
      PutFixed64(e.timestamp, out);
    }
  }
  static bool Read(ByteReader& in, State* s) {
    uint64_t n = 0;
    if (!in.ReadVarint(&n) || n > in.remaining()) return false;
    s->clear();
    s->reserve(static_cast<size_t>(n));
    for (uint64_t i = 0; i < n; ++i) {
      TimestampedValue<In> e{In{}, 0};
      if (!Serializer<In>::Read(in, &e.value) || !in.ReadRaw(&e.timestamp, sizeof e.timestamp)) {
        return false;
      }
      s->push_back(std::move(e));
    }
    return true;
  }
};

// Process and evicting windows keep their elements in RocksDB as a list (window_state.h) that a
// record appends to: [Serializer<In>] per element, with an evictor [Serializer<In>][8-byte
// timestamp] (the element encoding of ContentsCodec above).
template <typename In>
struct RocksListCodec {
  template <typename State, typename ReadElement>
  static bool ReadList(std::string_view stored, State* s, ReadElement&& read) {
    s->clear();
    bool ok = true;
    const bool listed = ForEachListElement(stored, [&](std::string_view e) {
      ByteReader in(e);
      if (ok && !(read(in, s) && in.empty())) ok = false;
    });
    return listed && ok;
  }
};
template <typename In>
struct RocksContentsCodec<ListContents<In>> {
  using State = std::vector<In>;
  static constexpr bool kAppend = true;
  static void WriteElement(const In& v, Timestamp, std::string* out) {
    Serializer<In>::Write(v, out);
  }
  static void Write(const State& s, std::string* out) {
    std::string e;
    for (const In& v : s) {
      e.clear();
      Serializer<In>::Write(v, &e);
      AppendListElement(e, out);
    }
  }
  static bool Read(std::string_view stored, State* s) {
    return RocksListCodec<In>::ReadList(stored, s, [](ByteReader& in, State* out) {
      In v{};
      if (!Serializer<In>::Read(in, &v)) return false;
      out->push_back(std::move(v));
      return true;
    });
  }
};
template <typename In, typename Inner, typename E>
struct RocksContentsCodec<EvictingContents<In, Inner, E>> {
  using State = std::vector<TimestampedValue<In>>;
  static constexpr bool kAppend = true;
  static void WriteElement(const In& v, Timestamp ts, std::string* out) {
    Serializer<In>::Write(v, out);
    PutFixed64(ts, out);
  }
  static void Write(const State& s, std::string* out) {
    std::string e;
    for (const auto& v : s) {
      e.clear();
      WriteElement(v.value, v.timestamp, &e);
      AppendListElement(e, out);
    }
  }
  static bool Read(std::string_view stored, State* s) {
    return RocksListCodec<In>::ReadList(stored, s, [](ByteReader& in, State* out) {
      TimestampedValue<In> e{In{}, 0};
      if (!Serializer<In>::Read(in, &e.value) || !in.ReadRaw(&e.timestamp, sizeof e.timestamp)) {
        return false;
      }
      out->push_back(std::move(e));
      return true;
    });
  }
};

// Optional contents: [u8 present][state if present].
template <typename Acc>
void WriteOptionalContents(const std::optional<typename Acc::State>& s, std::string* out) {
  out->push_back(s ? 1 : 0);
  if (s) ContentsCodec<Acc>::Write(*s, out);
}
template <typename Acc>
bool ReadOptionalContents(ByteReader& in, std::optional<typename Acc::State>* s) {
  uint8_t present = 0;
  if (!in.ReadRaw(&present, 1) || present > 1) return false;
  s->reset();
  if (present == 0) return true;
  s->emplace();
  return ContentsCodec<Acc>::Read(in, &**s);
}

// --- Window functions ----------------------------------------------------------------------------

// Emits the pre-aggregated result as is (Reduce / Aggregate without a process function).
struct PassThroughWindowFunction {
  template <typename K, typename W, typename V, typename Out>
  void Apply(const K&, WindowContext<W>&, std::span<const V> values, Collector<Out>& out) {
    for (const V& v : values) out.Collect(v);
  }
  template <typename K, typename W>
  void Clear(const K&, WindowContext<W>&) {}
};

// A user process window function; kAll: without the key (WindowAll).
template <typename F, bool kAll>
struct UserWindowFunction {
  F fn;
  void Open(const RuntimeContext& ctx) { OpenUserFunction(fn, ctx); }
  void Close() { CloseUserFunction(fn); }
  template <typename K, typename W, typename V, typename Out>
  void Apply(const K& key, WindowContext<W>& ctx, std::span<const V> values, Collector<Out>& out) {
    if constexpr (kAll) {
      if constexpr (requires { fn.Process(ctx, values, out); }) {
        fn.Process(ctx, values, out);
      } else {
        std::invoke(fn, ctx, values, out);
      }
    } else {
      if constexpr (requires { fn.Process(key, ctx, values, out); }) {
        fn.Process(key, ctx, values, out);
      } else {
        std::invoke(fn, key, ctx, values, out);
      }
    }
  }
  template <typename K, typename W>
  void Clear(const K& key, WindowContext<W>& ctx) {
    if constexpr (kAll) {
      if constexpr (requires { fn.Clear(ctx); }) fn.Clear(ctx);
    } else {
      if constexpr (requires { fn.Clear(key, ctx); }) fn.Clear(key, ctx);
    }
  }
};

// The record a late element stands for on the late-data side output: the element itself, or the
// record a two-phase aggregate's partial carries (local_aggregate.h).
template <typename In>
struct LateRecordOf {
  using type = In;
  static const In& Get(const In& v) { return v; }
};

// The window's settings besides its types.
template <typename T>
struct WindowSettings {
  int64_t allowed_lateness_ms = 0;
  std::optional<OutputTag<typename LateRecordOf<T>::type>> late_tag;
  // Sliding/tumbling Reduce and Aggregate keep partial results per slice (SlicingWindowOperator).
  bool share_slices = true;
  // Pre-aggregated per subtask before the exchange (WindowedStream::TwoPhase, local_aggregate.h).
  bool two_phase = false;
};

// Flink's isEventTime() of an assigner: GlobalWindows is not event time (nothing is ever late).
template <typename Assigner>
inline constexpr bool kEventTimeAssigner =
    Assigner::kDomain == TimeDomain::kEventTime &&
    !std::is_same_v<typename Assigner::WindowType, GlobalWindow>;

inline constexpr const char* kNoTimestampInEventTimeWindow =
    "a record has no timestamp, but the window assigner works in event time: give the stream "
    "timestamps with a WatermarkStrategy (FromSource(source, strategy) or "
    "AssignTimestampsAndWatermarks), or use a processing-time window assigner";

// Records that went into no window because they were late: to the late-data side output, or
// counted in the job counter "<operator>.numLateRecordsDropped" (live: a cell of this subtask).
template <typename In>
class LateRecords {
 public:
  explicit LateRecords(const RuntimeContext& ctx) : dropped_(ctx, "numLateRecordsDropped") {}

  void Add(const WindowSettings<In>& settings, SideOutputs& side, const In& value,
           Timestamp timestamp) {
    if (settings.late_tag) {
      using L = typename LateRecordOf<In>::type;
      side.Emit(*settings.late_tag, L(LateRecordOf<In>::Get(value)), timestamp);
    } else {
      dropped_.Inc();
    }
  }

 private:
  OperatorCounter dropped_;
};

// Merging-window sets in snapshots (WindowOperator, SessionWindowOperator): per key, composite
// [key]; value [varint count][the key's windows, in order]. `map` is a map or a range of
// pointers to map elements (the changed ones); `append(value, out)` appends the windows of a map
// value to `out`; `heap(element)` is what to prefetch of an element (see ForEachPrefetched). Copied flat (keys with their window counts, then every window) and encoded
// on the checkpoint writer's thread when keys and windows own no heap buffers.
template <typename K, typename W>
void EncodeMergingSet(const K& key, std::span<const W> windows, std::string* composite,
                      std::string* value, InternalStateBuckets& b) {
  composite->clear();
  Serializer<K>::Write(key, composite);
  value->clear();
  PutVarint(windows.size(), value);
  for (const W& w : windows) Serializer<W>::Write(w, value);
  b.Add(key, *composite, *value);
}
template <typename K, typename W, typename Map, typename Heap, typename Append>
void AddMergingSets(InternalStateBuckets& b, const Map& map, Heap&& heap, Append&& append) {
  if constexpr (std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<W>) {
    struct Copy {
      std::vector<std::pair<K, uint32_t>> keys;  // key, number of windows
      std::vector<W> windows;
    };
    auto copy = std::make_shared<Copy>();
    copy->keys.reserve(map.size());
    copy->windows.reserve(map.size());
    ForEachPrefetched(map, heap, [&](const auto& e) {
      const auto& kv = SnapshotElement(e);
      const size_t before = copy->windows.size();
      append(kv.second, copy->windows);
      copy->keys.emplace_back(kv.first, static_cast<uint32_t>(copy->windows.size() - before));
    });
    b.Defer([copy](InternalStateBuckets& out) {
      std::string composite, value;
      size_t next = 0;
      for (const auto& [key, n] : copy->keys) {
        EncodeMergingSet(key, std::span<const W>(copy->windows.data() + next, n), &composite,
                         &value, out);
        next += n;
      }
    });
  } else {
    std::string composite, value;
    std::vector<W> windows;
    ForEachPrefetched(map, heap, [&](const auto& e) {
      const auto& kv = SnapshotElement(e);
      windows.clear();
      append(kv.second, windows);
      EncodeMergingSet(kv.first, std::span<const W>(windows), &composite, &value, b);
    });
  }
}

template <typename K, typename In, typename Out, typename KS, typename Assigner, typename Trig,
          typename Acc, typename WinFn>
class WindowOperator final : public UserFunctionOperator<In, Out, WinFn> {
  using Base = UserFunctionOperator<In, Out, WinFn>;
  using W = typename Assigner::WindowType;
  using State = typename Acc::State;
  static constexpr bool kEventTime = kEventTimeAssigner<Assigner>;
  static constexpr bool kMerging = Assigner::kMerging;
  static constexpr int kTriggerSlots = TriggerStateSlots<Trig>();
  static constexpr Timestamp kNoTimer = kMinWatermark;
  static constexpr bool kCheckpointable =
      FullySerializable<K> && FullySerializable<W> && ContentsCodec<Acc>::kSerializable;
  // On the RocksDB backend, contents and trigger state live in RocksDB when the key and window
  // encode canonically and the contents serialize (otherwise they stay in memory, as on HashMap).
  static constexpr bool kRocksCapable =
      kCheckpointable && kRocksKeyable<K> && kRocksKeyable<W> && Serializable<In>;
  using Slots = std::array<std::optional<int64_t>, kTriggerSlots>;

 public:
  WindowOperator(const OperatorSetup& setup, KS ks, Assigner assigner, Trig trigger, Acc acc,
                 WinFn fn, WindowSettings<In> settings)
      : Base(setup, std::move(fn)),
        key_selector_(std::move(ks)),
        assigner_(std::move(assigner)),
        trigger_(std::move(trigger)),
        acc_(std::move(acc)),
        settings_(std::move(settings)),
        clock_(setup.clock),
        window_ctx_(&this->ctx_, &this->side_, setup.clock),
        trigger_ctx_(this),
        state_(MakeKeyedStateBackend<K>(setup)) {
    this->ctx_.keyed_state = state_.get();
    window_ctx_.SetState(state_.get(), kMerging);
    rocks_ = kRocksCapable && state_->kind() == StateBackendKind::kRocksDb;
    if constexpr (kCheckpointable) {
      const int maxp = this->ctx_.max_parallelism;
      if constexpr (kRocksCapable) {
        if (rocks_) {
          rocks_snapshot_ = std::make_unique<RocksWindowSnapshot>(
              [this] { OpenRocksForSnapshot(); },
              [this](int kg, absl::FunctionRef<void(std::string_view, std::string_view)> emit) {
                WriteRocksEntries(kg, emit);
              });
          state_->RegisterInternalState(kEntries, rocks_snapshot_.get(),
                                        ContentsCodec<Acc>::Format());
        }
      }
      if (!rocks_) {
        internal_.push_back(RegisterInternalState(
            *state_, kEntries, maxp, [this](InternalStateBuckets& b) { AddEntries(b); },
            ContentsCodec<Acc>::Format()));
      }
      internal_.push_back(
          RegisterInternalState(*state_, kEventTimers, maxp,
                                [this](InternalStateBuckets& b) { AddTimers(b, event_timers_); }));
      internal_.push_back(RegisterInternalState(
          *state_, kProcessingTimers, maxp,
          [this](InternalStateBuckets& b) { AddTimers(b, processing_timers_); }));
      if constexpr (kMerging) {
        internal_.push_back(RegisterInternalState(
            *state_, kMergingSets, maxp, [this](InternalStateBuckets& b) { AddMergingSets(b); }));
      }
    }
  }
  KeyedStateBackend<K>& state() { return *state_; }

  // Per key group (rescalable): window contents with trigger state, event-time and
  // processing-time timers (trigger and cleanup timers), merging-window sets, and the keyed
  // state of the window function (WindowState/GlobalState).
  void SnapshotState(int64_t, OperatorStateSnapshot& out) override {
    if constexpr (!FullySerializable<K>) {
      ThrowNotCheckpointable(this->name(), "the key type");
    } else if constexpr (!FullySerializable<W>) {
      ThrowNotCheckpointable(this->name(), "the window type");
    } else if constexpr (!ContentsCodec<Acc>::kSerializable) {
      ThrowNotCheckpointable(this->name(), Acc::kStateRole);
    } else {
      GuardRocksDb(this->name(), [&] { SnapshotKeyedBackend(*state_, this->name(), out); });
    }
  }
  absl::Status RestoreState(const OperatorStateRestore& in) override {
    SLUICE_RETURN_IF_ERROR(RestoreKeyedBackend(*state_, in));
    if constexpr (kCheckpointable) {
      if constexpr (kRocksCapable) {
        if (rocks_) {
          SLUICE_RETURN_IF_ERROR(OpenRocks());
          absl::Status st;
          try {
            st = RestoreRocksEntries();
          } catch (const JobFailure& f) {
            st = f.status();
          }
          SLUICE_RETURN_IF_ERROR(st);
        }
      }
      if (!rocks_) SLUICE_RETURN_IF_ERROR(RestoreEntries());
      SLUICE_RETURN_IF_ERROR(RestoreTimers(*state_, kEventTimers, this->ctx_, event_timers_));
      SLUICE_RETURN_IF_ERROR(
          RestoreTimers(*state_, kProcessingTimers, this->ctx_, processing_timers_));
      if constexpr (kMerging) {
        SLUICE_RETURN_IF_ERROR(RestoreMergingSets());
      }
    }
    return absl::OkStatus();
  }

  // The storage is chosen per batch (and per watermark or timer), never per record.
  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    if constexpr (kRocksCapable) {
      if (rocks_) {
        GuardRocksDb(this->name(), [&] {
          EnsureRocks();
          GuardUserCode(this->name(), [&] {
            for (size_t i = 0; i < records.size(); ++i) {
              ProcessElement<true>(records[i], timestamps[i]);
            }
          });
          contents_.EvictIfFull();
        });
        this->FlushOutputs();
        return;
      }
    }
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) ProcessElement<false>(records[i], timestamps[i]);
    });
    this->FlushOutputs();
  }

  void OnWatermark(Timestamp watermark) override {
    this->watermark_ = watermark;
    if constexpr (kRocksCapable) {
      if (rocks_) {
        GuardRocksDb(this->name(), [&] {
          EnsureRocks();
          GuardUserCode(this->name(), [&] {
            typename TimerQueue<K, W>::Timer timer;
            while (event_timers_.PopDue(watermark, &timer)) {
              OnTimer<true>(timer, TimeDomain::kEventTime);
            }
          });
        });
        this->FlushOutputs();
        Base::OnWatermark(watermark);
        return;
      }
    }
    GuardUserCode(this->name(), [&] {
      typename TimerQueue<K, W>::Timer timer;
      while (event_timers_.PopDue(watermark, &timer)) {
        OnTimer<false>(timer, TimeDomain::kEventTime);
      }
    });
    this->FlushOutputs();
    Base::OnWatermark(watermark);
  }

  Timestamp NextProcessingDeadline() const override {
    return const_cast<WindowOperator*>(this)->processing_timers_.NextTime();
  }
  void OnProcessingTime(Timestamp now) override { FireProcessingTimers(now); }

  // A bounded input ended: pending processing-time windows fire now rather than being lost (Flink
  // drops them; Sluice never drops data silently). Event time already reached +infinity.
  void OnEndOfInput() override {
    FireProcessingTimers(kMaxWatermark);
    Base::OnEndOfInput();
  }

  // Tests and debugging: windows with contents or trigger state held in memory (always 0 when
  // they are in RocksDB), and whether they are in RocksDB.
  size_t num_window_entries() const { return entries_.size(); }
  bool contents_in_rocksdb() const { return rocks_; }
  // RocksDB: the (key, window)s with contents or pending elements in the write-back cache.
  size_t cached_window_entries() const { return contents_.cached_entries(); }

 private:
  struct Entry {
    std::optional<State> contents;
    Slots slots{};
    // Event-time timers of this (key, window) known to be registered: skips the timer-set lookup
    // when every record of a window registers the same end-of-window and cleanup timers.
    std::array<Timestamp, 2> registered{kNoTimer, kNoTimer};
    bool changed = false;  // since the previous snapshot (ChangedKeys)
    bool HasSlots() const {
      for (const auto& s : slots) {
        if (s) return true;
      }
      return false;
    }
    bool Empty() const { return !contents && !HasSlots(); }
  };
  using EntryKey = std::pair<K, W>;

  // The TriggerContext of the current (key, window). In memory it points at the window's Entry;
  // with RocksDB the slots are read on first use (Lazy) and written back by FlushSlots.
  class Ctx final : public OnMergeContext {
   public:
    explicit Ctx(WindowOperator* op) : op_(op) {}
    void Set(const K* key, const W& window, Entry* entry) {
      key_ = key;
      window_ = window;
      entry_ = entry;
      lazy_ = false;
    }
    void SetLazy(const K* key, const W& window) {
      key_ = key;
      window_ = window;
      entry_ = &op_->rocks_entry_;
      entry_->slots = Slots{};
      entry_->registered = {kNoTimer, kNoTimer};
      lazy_ = true;
      loaded_ = false;
    }
    // RocksDB: writes changed trigger slots of the current window back.
    void FlushSlots() {
      if (!lazy_ || !loaded_ || entry_->slots == loaded_slots_) return;
      op_->StoreSlots(window_, entry_->slots);
      loaded_slots_ = entry_->slots;
    }
    Timestamp CurrentWatermark() const override { return op_->watermark_; }
    Timestamp CurrentProcessingTime() const override { return op_->clock_->NowMillis(); }
    void RegisterEventTimeTimer(Timestamp time) override {
      auto& reg = entry_->registered;
      if (reg[0] == time || reg[1] == time) return;
      op_->event_timers_.Register(time, *key_, window_);
      reg[1] = reg[0];
      reg[0] = time;
    }
    void DeleteEventTimeTimer(Timestamp time) override {
      Forget(time);
      op_->event_timers_.Delete(time, *key_, window_);
    }
    void RegisterProcessingTimeTimer(Timestamp time) override {
      op_->processing_timers_.Register(time, *key_, window_);
    }
    void DeleteProcessingTimeTimer(Timestamp time) override {
      op_->processing_timers_.Delete(time, *key_, window_);
    }
    std::optional<int64_t>& State(int slot) override {
      if (slot < 0 || slot >= kTriggerSlots) {
        throw std::out_of_range(
            absl::StrCat("trigger state slot ", slot, " is out of range [0, ", kTriggerSlots, ")"));
      }
      if (lazy_ && !loaded_) {
        op_->LoadSlots(window_, &entry_->slots);
        loaded_slots_ = entry_->slots;
        loaded_ = true;
      }
      return entry_->slots[static_cast<size_t>(slot)];
    }
    void MergeState(int slot, int64_t (*fn)(int64_t, int64_t)) override {
      std::optional<int64_t>& target = State(slot);
      for (const W& m : *merged_) {
        if (m == window_) continue;
        std::optional<int64_t> v;
        if (lazy_) {
          Slots other{};
          op_->LoadSlots(m, &other);
          v = other[static_cast<size_t>(slot)];
        } else {
          auto it = op_->entries_.find(EntryKey(*key_, m));
          if (it == op_->entries_.end()) continue;
          v = it->second.slots[static_cast<size_t>(slot)];
        }
        if (v) target = target ? fn(*target, *v) : *v;
      }
    }
    void Forget(Timestamp time) {
      auto& reg = entry_->registered;
      if (reg[0] == time) reg[0] = kNoTimer;
      if (reg[1] == time) reg[1] = kNoTimer;
    }
    void SetMerged(const std::vector<W>* merged) { merged_ = merged; }

   private:
    WindowOperator* op_;
    const K* key_ = nullptr;
    W window_{};
    Entry* entry_ = nullptr;
    const std::vector<W>* merged_ = nullptr;
    bool lazy_ = false;
    bool loaded_ = false;
    Slots loaded_slots_{};
  };

  template <bool kRocks>
  void ProcessElement(const In& value, Timestamp timestamp) {
    Timestamp assign_time = timestamp;
    if constexpr (Assigner::kDomain == TimeDomain::kProcessingTime) {
      assign_time = clock_->NowMillis();
    } else if constexpr (kEventTime) {
      if (timestamp == kNoTimestamp) [[unlikely]] {
        throw std::invalid_argument(kNoTimestampInEventTimeWindow);
      }
    }
    key_ = key_selector_(value);
    state_->SetCurrentKey(&*key_);
    if constexpr (kRocks) SetRocksKey();
    windows_.clear();
    assigner_.AssignWindows(value, assign_time, windows_);
    bool skipped = true;
    for (const W& assigned : windows_) {
      W window = assigned;
      if constexpr (kMerging) {
        window = AddToMergingSet<kRocks>(assigned);
        if (IsWindowLate(window)) {
          RetireWindow(window);
          continue;
        }
      } else {
        if (IsWindowLate(window)) continue;
      }
      skipped = false;
      if constexpr (kRocks) {
        std::optional<State>* added =
            contents_.Add(contents_.column().KeyFor(window), acc_, value, timestamp, this->name());
        trigger_ctx_.SetLazy(&*key_, window);
        TriggerResult r = trigger_.OnElement(value, timestamp, window, trigger_ctx_);
        trigger_ctx_.FlushSlots();
        if (IsFire(r)) EmitStored(window, added);
        if (IsPurge(r)) contents_.Delete(contents_.column().KeyFor(window));
        RegisterCleanupTimer(window);
      } else {
        Entry& e = Touch(*key_, window);
        acc_.Add(e.contents, value, timestamp);
        trigger_ctx_.Set(&*key_, window, &e);
        TriggerResult r = trigger_.OnElement(value, timestamp, window, trigger_ctx_);
        if (IsFire(r) && e.contents) Emit(window, e.contents);
        if (IsPurge(r)) e.contents.reset();
        RegisterCleanupTimer(window);
        if (e.Empty()) EraseEntry(EntryKey(*key_, window));
      }
    }
    if (skipped && IsElementLate(timestamp)) late_.Add(settings_, this->side_, value, timestamp);
  }

  void FireProcessingTimers(Timestamp now) {
    if constexpr (kRocksCapable) {
      if (rocks_) {
        GuardRocksDb(this->name(), [&] {
          EnsureRocks();
          GuardUserCode(this->name(), [&] {
            typename TimerQueue<K, W>::Timer timer;
            while (processing_timers_.PopDue(now, &timer)) {
              OnTimer<true>(timer, TimeDomain::kProcessingTime);
            }
          });
        });
        this->FlushOutputs();
        return;
      }
    }
    GuardUserCode(this->name(), [&] {
      typename TimerQueue<K, W>::Timer timer;
      while (processing_timers_.PopDue(now, &timer)) {
        OnTimer<false>(timer, TimeDomain::kProcessingTime);
      }
    });
    this->FlushOutputs();
  }

  template <bool kRocks>
  void OnTimer(const typename TimerQueue<K, W>::Timer& timer, TimeDomain domain) {
    if constexpr (kMerging) {
      auto set = merging_.find(timer.key);
      if (set == merging_.end() ||
          std::find(set->second.begin(), set->second.end(), timer.ns) == set->second.end()) {
        return;  // the window was merged into another or already retired
      }
    }
    key_ = timer.key;
    state_->SetCurrentKey(&*key_);
    const W& window = timer.ns;
    const bool event_time_domain = domain == TimeDomain::kEventTime;
    if constexpr (kRocks) {
      SetRocksKey();
      trigger_ctx_.SetLazy(&*key_, window);
      TriggerResult r;
      if (event_time_domain) {
        trigger_ctx_.Forget(timer.time);
        r = trigger_.OnEventTime(timer.time, window, trigger_ctx_);
      } else {
        r = trigger_.OnProcessingTime(timer.time, window, trigger_ctx_);
      }
      trigger_ctx_.FlushSlots();
      if (IsFire(r)) EmitStored(window, nullptr);
      if (IsPurge(r)) contents_.Delete(contents_.column().KeyFor(window));
      if (event_time_domain == kEventTime && timer.time == CleanupTime(window)) {
        ClearAllState<true>(window);
      }
    } else {
      auto [it, inserted] = entries_.try_emplace(EntryKey(timer.key, window));
      Entry* e = &it->second;
      changes_.Mark(it->first, e->changed);
      trigger_ctx_.Set(&*key_, window, e);
      TriggerResult r;
      if (event_time_domain) {
        trigger_ctx_.Forget(timer.time);
        r = trigger_.OnEventTime(timer.time, window, trigger_ctx_);
      } else {
        r = trigger_.OnProcessingTime(timer.time, window, trigger_ctx_);
      }
      if (IsFire(r) && e->contents) Emit(window, e->contents);
      if (IsPurge(r)) e->contents.reset();
      if (event_time_domain == kEventTime && timer.time == CleanupTime(window)) {
        ClearAllState<false>(window);
      } else if (e->Empty()) {
        changes_.MarkErased(it->first);
        entries_.erase(it);
      }
    }
  }

  void Emit(const W& window, std::optional<State>& contents) {
    this->out_.SetTimestamp(window.max_timestamp());
    window_ctx_.Set(&window, this->watermark_);
    acc_.Fire(*contents, window,
              [&](auto values) { this->fn_.Apply(*key_, window_ctx_, values, this->out_); });
    if constexpr (requires { Acc::Emptied(*contents); }) {
      if (Acc::Emptied(*contents)) contents.reset();
    }
  }

  // RocksDB: fires the contents of (current key, window): `known` when the caller has just
  // computed them (read-modify-write policies), else read from RocksDB. An evictor's changes are
  // written back.
  void EmitStored(const W& window, std::optional<State>* known) {
    std::optional<State>* contents = known;
    if (contents == nullptr || !*contents) {
      if (!contents_.Read(contents_.column().KeyFor(window), &fire_scratch_, this->name())) return;
      contents = &fire_scratch_;
    }
    Emit(window, *contents);
    if constexpr (requires { Acc::Emptied(**contents); }) {
      const std::string& key = contents_.column().KeyFor(window);
      if (*contents) {
        contents_.Write(key, **contents);
      } else {
        contents_.Delete(key);
      }
    }
  }

  // Frees everything of (current key, window): contents, trigger state (the trigger's Clear
  // deletes its timers), the window function's per-window state, the merging-set entry.
  template <bool kRocks>
  void ClearAllState(const W& window) {
    if constexpr (kRocks) {
      trigger_ctx_.SetLazy(&*key_, window);
      trigger_.Clear(window, trigger_ctx_);
      trigger_ctx_.FlushSlots();
    } else {
      trigger_ctx_.Set(&*key_, window, &Touch(*key_, window));
      trigger_.Clear(window, trigger_ctx_);
    }
    window_ctx_.Set(&window, this->watermark_);
    this->fn_.Clear(*key_, window_ctx_);
    if constexpr (kRocks) {
      EraseStored(window);
    } else {
      EraseEntry(EntryKey(*key_, window));
    }
    if constexpr (kMerging) RetireWindow(window);
  }

  static Timestamp CleanupTimeOf(const W& window, int64_t lateness) {
    if constexpr (kEventTime) {
      return SaturatingAdd(window.max_timestamp(), lateness);
    } else {
      return window.max_timestamp();
    }
  }
  Timestamp CleanupTime(const W& window) const {
    return CleanupTimeOf(window, settings_.allowed_lateness_ms);
  }
  bool IsWindowLate(const W& window) const {
    return kEventTime && CleanupTime(window) <= this->watermark_;
  }
  bool IsElementLate(Timestamp timestamp) const {
    return kEventTime &&
           SaturatingAdd(timestamp, settings_.allowed_lateness_ms) <= this->watermark_;
  }
  // Uses the trigger context of the current (key, window).
  void RegisterCleanupTimer(const W& window) {
    Timestamp t = CleanupTime(window);
    if (t == kMaxWatermark) return;  // never cleaned up (global windows)
    if constexpr (kEventTime) {
      trigger_ctx_.RegisterEventTimeTimer(t);
    } else {
      trigger_ctx_.RegisterProcessingTimeTimer(t);
    }
  }
  void DeleteCleanupTimer(const W& window) {
    Timestamp t = CleanupTime(window);
    if (t == kMaxWatermark) return;
    if constexpr (kEventTime) {
      trigger_ctx_.DeleteEventTimeTimer(t);
    } else {
      trigger_ctx_.DeleteProcessingTimeTimer(t);
    }
  }

  // --- Merging windows (Flink's MergingWindowSet.addWindow) ---------------------------------------

  // Adds `window` to the current key's set, merging it with the windows it overlaps; returns the
  // window the element belongs to. The sets stay in memory on both backends (a few windows per
  // key); the merged contents move inside RocksDB.
  template <bool kRocks>
  W AddToMergingSet(const W& window) {
    std::vector<W>& set = merging_[*key_];
    // The common cases without allocating: the windows of a set never overlap or touch, so the
    // new window merges exactly with the ones it overlaps or touches.
    size_t hits = 0, hit = 0;
    for (size_t i = 0; i < set.size(); ++i) {
      if (set[i].Intersects(window)) {
        ++hits;
        hit = i;
      }
    }
    if (hits == 0) {
      set.push_back(window);
      return window;
    }
    if (hits == 1) {
      const W existing = set[hit];
      const W cover = existing.Cover(window);
      if (cover == existing) return existing;
      set[hit] = cover;
      merge_scratch_.assign(1, existing);
      MergeWindows<kRocks>(cover, merge_scratch_);
      return cover;
    }
    std::vector<W> all = set;
    all.push_back(window);
    W result = window;
    bool merged_new = false;
    bool any = false;
    MergeTimeWindows(std::move(all), [&](const W& cover, std::vector<W>& members) {
      any = true;
      auto self = std::find(members.begin(), members.end(), window);
      if (self != members.end()) {
        members.erase(self);
        merged_new = true;
        result = cover;
      }
      if (members.empty()) return;
      std::erase_if(set, [&](const W& w) {
        return std::find(members.begin(), members.end(), w) != members.end();
      });
      set.push_back(cover);
      if (!(members.size() == 1 && members[0] == cover)) MergeWindows<kRocks>(cover, members);
    });
    if (!any || (result == window && !merged_new)) set.push_back(window);
    return result;
  }

  template <bool kRocks>
  void MergeWindows(const W& cover, const std::vector<W>& members) {
    if (kEventTime && CleanupTime(cover) <= this->watermark_) {
      throw std::logic_error(
          "the end of an event-time session window became earlier than the watermark by merging");
    }
    if constexpr (!kRocks && kEventTime && std::is_same_v<Trig, EventTimeTrigger>) {
      if (members.size() == 1) {
        MergeOneWithoutTriggerState(cover, members[0]);
        return;
      }
    }
    // Contents in window order, so a process function sees the session's elements grouped by the
    // part they arrived in.
    std::vector<W> sorted;
    if (members.size() > 1) {
      sorted = members;
      std::sort(sorted.begin(), sorted.end());
    }
    if constexpr (kRocks) {
      trigger_ctx_.SetLazy(&*key_, cover);
      trigger_ctx_.SetMerged(&members);
      trigger_.OnMerge(cover, trigger_ctx_);
      trigger_ctx_.SetMerged(nullptr);
      trigger_ctx_.FlushSlots();
      for (const W& m : members) {
        trigger_ctx_.SetLazy(&*key_, m);
        trigger_.Clear(m, trigger_ctx_);
        trigger_ctx_.FlushSlots();
        DeleteCleanupTimer(m);
      }
      std::string cover_key = contents_.column().KeyFor(cover);
      for (const W& m : members.size() > 1 ? sorted : members) {
        contents_.MoveInto(contents_.column().KeyFor(m), cover_key, acc_, this->name());
        if (triggers_used_) triggers_.Delete(triggers_.KeyFor(m));
      }
    } else {
      Entry* target = &Touch(*key_, cover);
      trigger_ctx_.Set(&*key_, cover, target);
      trigger_ctx_.SetMerged(&members);
      trigger_.OnMerge(cover, trigger_ctx_);
      trigger_ctx_.SetMerged(nullptr);
      for (const W& m : members) {
        auto it = entries_.find(EntryKey(*key_, m));
        Entry scratch;
        if (it != entries_.end()) changes_.Mark(it->first, it->second.changed);
        trigger_ctx_.Set(&*key_, m, it == entries_.end() ? &scratch : &it->second);
        trigger_.Clear(m, trigger_ctx_);
        DeleteCleanupTimer(m);
      }
      for (const W& m : members.size() > 1 ? sorted : members) {
        auto it = entries_.find(EntryKey(*key_, m));
        if (it == entries_.end()) continue;
        std::optional<State> moved = std::move(it->second.contents);
        changes_.MarkErased(it->first);
        entries_.erase(it);
        target = &Touch(*key_, cover);
        if (moved) acc_.Merge(target->contents, *moved);
      }
      if (target->Empty()) EraseEntry(EntryKey(*key_, cover));
    }
  }

  // A session that grows (one window merged into its cover) under EventTimeTrigger, which keeps
  // no trigger state: what the general path does — the member's timers deleted, the cover's
  // registered (OnMerge), the contents moved — with one lookup of each entry.
  void MergeOneWithoutTriggerState(const W& cover, const W& member) {
    std::optional<State> moved;
    if (auto it = entries_.find(EntryKey(*key_, member)); it != entries_.end()) {
      moved = std::move(it->second.contents);
      changes_.MarkErased(it->first);
      entries_.erase(it);
    }
    event_timers_.Delete(member.max_timestamp(), *key_, member);  // EventTimeTrigger::Clear
    if (const Timestamp cleanup = CleanupTime(member);
        cleanup != member.max_timestamp() && cleanup != kMaxWatermark) {
      event_timers_.Delete(cleanup, *key_, member);
    }
    Entry& target = Touch(*key_, cover);
    trigger_ctx_.Set(&*key_, cover, &target);
    trigger_.OnMerge(cover, trigger_ctx_);
    if (moved) acc_.Merge(target.contents, *moved);
    if (target.Empty()) EraseEntry(EntryKey(*key_, cover));
  }

  void RetireWindow(const W& window) {
    auto it = merging_.find(*key_);
    if (it == merging_.end()) return;
    std::erase(it->second, window);
    if (it->second.empty()) merging_.erase(it);
  }

  // --- RocksDB storage ---------------------------------------------------------------------------

  absl::Status OpenRocks() {
    if constexpr (kRocksCapable) {
      if (contents_.column().open()) return absl::OkStatus();
      absl::Status st = contents_.Open(*state_, kEntries);
      if (st.ok()) st = triggers_.Open(*state_, kTriggers);
      if (st.ok()) triggers_used_ = !triggers_.Empty();
      if (!st.ok()) {
        return absl::Status(st.code(),
                            absl::StrCat("operator '", this->name(),
                                         "': window contents in RocksDB: ", st.message()));
      }
    }
    return absl::OkStatus();
  }
  void EnsureRocks() {
    if (contents_.column().open()) return;
    if (absl::Status st = OpenRocks(); !st.ok()) throw JobFailure(std::move(st));
  }
  // Snapshots open the column families when the instance exists (a restored native checkpoint).
  // The cached contents are written back before the column family is read.
  void OpenRocksForSnapshot() {
    if (state_->rocksdb() == nullptr) return;
    EnsureRocks();
    contents_.Flush();
  }
  void SetRocksKey() {
    contents_.column().SetKey(*key_, this->ctx_.max_parallelism);
    triggers_.SetKey(*key_, this->ctx_.max_parallelism);
  }
  void LoadSlots(const W& window, Slots* slots) {
    *slots = Slots{};
    if (!triggers_used_ || !triggers_.Get(triggers_.KeyFor(window), &slot_bytes_)) return;
    ByteReader in(slot_bytes_);
    if (!ReadSlots(in, slots) || !in.empty()) triggers_.Corrupt(this->name());
  }
  void StoreSlots(const W& window, const Slots& slots) {
    const std::string& key = triggers_.KeyFor(window);
    bool any = false;
    for (const auto& s : slots) any = any || s.has_value();
    if (!any) {
      if (triggers_used_) triggers_.Delete(key);
      return;
    }
    slot_bytes_.clear();
    WriteSlots(slots, &slot_bytes_);
    triggers_.Put(key, slot_bytes_);
    triggers_used_ = true;
  }
  void EraseStored(const W& window) {
    contents_.Delete(contents_.column().KeyFor(window));
    if (triggers_used_) triggers_.Delete(triggers_.KeyFor(window));
  }

  // [u8 mask of set slots][8 bytes per set slot].
  static void WriteSlots(const Slots& slots, std::string* out) {
    uint8_t mask = 0;
    for (int i = 0; i < kTriggerSlots; ++i) {
      if (slots[static_cast<size_t>(i)]) mask = static_cast<uint8_t>(mask | (1u << i));
    }
    out->push_back(static_cast<char>(mask));
    for (const auto& slot : slots) {
      if (slot) PutFixed64(*slot, out);
    }
  }
  // Slots beyond the trigger's (written by another trigger before a restore) are read and
  // dropped: this trigger never reads them.
  static bool ReadSlots(ByteReader& in, Slots* slots) {
    uint8_t mask = 0;
    if (!in.ReadRaw(&mask, 1)) return false;
    for (int i = 0; i < kMaxTriggerStateSlots; ++i) {
      if ((mask & (1u << i)) == 0) continue;
      int64_t v = 0;
      if (!in.ReadRaw(&v, sizeof v)) return false;
      if constexpr (kTriggerSlots > 0) {
        if (i < kTriggerSlots) (*slots)[static_cast<size_t>(i)] = v;
      }
    }
    return true;
  }

  // --- Checkpoints -------------------------------------------------------------------------------

  // An entry: composite [key][window]; value [contents (optional)][u8 mask of set trigger slots]
  // [8 bytes per set slot][2 x 8 bytes: the event-time timers known to be registered].
  // After the first snapshot only the entries changed since the previous one are added, and the
  // removed ones named (ChangedKeys; the backend keeps the rest). When keys and windows own no
  // heap buffers and the contents have a flat copy (FlatCopy), the entries are copied flat on the
  // task thread and encoded on the checkpoint writer's (InternalStateBuckets::Defer); otherwise
  // they are encoded at once. Either way the contents' buffers are prefetched while the map is
  // walked.
  void AddEntries(InternalStateBuckets& b) {
    std::vector<const typename decltype(entries_)::value_type*> changed;
    std::vector<EntryKey> removed;
    // Tracked when the composite keys encode one way (the backend matches them byte for byte).
    if (kRocksKeyable<K> && kRocksKeyable<W> &&
        changes_.Take(
            b, entries_, [](Entry& e) -> bool& { return e.changed; }, &changed, &removed)) {
      AddEntriesOf(changed, std::move(removed), b);
    } else {
      AddEntriesOf(entries_, std::move(removed), b);
    }
  }
  static constexpr bool kFlatEntries =
      std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<W> && FlatCopy<State>::kFlat;
  static constexpr uint32_t kNoSlots = ~uint32_t{0};
  struct FlatEntry {
    K key;
    W window;
    std::array<Timestamp, 2> registered;
    uint32_t slots;  // index in EntriesCopy::slots, or kNoSlots
  };
  struct EntriesCopy {
    std::vector<FlatEntry> entries;
    FlatCopy<State> contents;  // by index of `entries`
    std::vector<Slots> slots;  // of the few entries with trigger state
    std::vector<EntryKey> removed;
    void Clear() {
      entries.clear();
      contents.Clear();
      slots.clear();
      removed.clear();
    }
  };
  template <typename Range>
  void AddEntriesOf(const Range& range, std::vector<EntryKey> removed, InternalStateBuckets& b) {
    if constexpr (kFlatEntries) {
      std::shared_ptr<EntriesCopy> copy = entries_copies_->Take();
      copy->entries.reserve(range.size());
      copy->contents.ReserveFor(
          range, [](const auto& x) -> const auto& { return SnapshotElement(x).second.contents; });
      copy->removed = std::move(removed);
      ForEachPrefetched(
          range, [](const auto& x) { return HeapDataOf(SnapshotElement(x).second.contents); },
          [&](const auto& x) {
            const auto& [ek, e] = SnapshotElement(x);
            uint32_t slots = kNoSlots;
            if (e.HasSlots()) {
              slots = static_cast<uint32_t>(copy->slots.size());
              copy->slots.push_back(e.slots);
            }
            copy->entries.push_back(FlatEntry{ek.first, ek.second, e.registered, slots});
            copy->contents.Add(e.contents);
          });
      b.Defer([copy, pool = entries_copies_](InternalStateBuckets& out) {
        std::string composite, value;
        std::optional<State> scratch;
        const Slots none{};
        for (size_t i = 0; i < copy->entries.size(); ++i) {
          const FlatEntry& f = copy->entries[i];
          EncodeEntry(f.key, f.window, copy->contents.Get(static_cast<uint32_t>(i), &scratch),
                      f.slots == kNoSlots ? none : copy->slots[f.slots], f.registered, &composite,
                      &value, out);
        }
        for (const EntryKey& ek : copy->removed) RemoveEntry(ek, &composite, out);
        pool->Recycle(copy);
      });
    } else {
      std::string composite, value;
      ForEachPrefetched(
          range, [](const auto& x) { return HeapDataOf(SnapshotElement(x).second.contents); },
          [&](const auto& x) {
            const auto& [ek, e] = SnapshotElement(x);
            EncodeEntry(ek.first, ek.second, e.contents, e.slots, e.registered, &composite, &value,
                        b);
          });
      for (const EntryKey& ek : removed) RemoveEntry(ek, &composite, b);
    }
  }
  static void RemoveEntry(const EntryKey& ek, std::string* composite, InternalStateBuckets& b) {
    composite->clear();
    WriteRocksKeyPart(ek.first, composite);
    WriteRocksKeyPart(ek.second, composite);
    b.Remove(ek.first, *composite);
  }
  static void EncodeEntry(const K& key, const W& window, const std::optional<State>& contents,
                          const Slots& slots, const std::array<Timestamp, 2>& registered,
                          std::string* composite, std::string* value, InternalStateBuckets& b) {
    composite->clear();
    WriteRocksKeyPart(key, composite);  // an empty key or window type as one 0 byte
    WriteRocksKeyPart(window, composite);
    value->clear();
    WriteOptionalContents<Acc>(contents, value);
    WriteSlots(slots, value);
    PutFixed64(registered[0], value);
    PutFixed64(registered[1], value);
    b.Add(key, *composite, *value);
  }
  absl::Status RestoreEntries() {
    return RestoreInternal<K>(
        *state_, kEntries, this->ctx_, [&](K& key, ByteReader& rest, ByteReader& value) {
          W window{};
          Entry e;
          if (!Serializer<W>::Read(rest, &window) || !rest.empty() ||
              !ReadOptionalContents<Acc>(value, &e.contents) || !ReadSlots(value, &e.slots)) {
            return false;
          }
          if (!value.ReadRaw(&e.registered[0], sizeof(Timestamp)) ||
              !value.ReadRaw(&e.registered[1], sizeof(Timestamp)) || !value.empty()) {
            return false;
          }
          entries_.insert_or_assign(EntryKey(std::move(key), window), std::move(e));
          return true;
        });
  }
  // RocksDB: the same records from the two column families of key group `kg` (both in key
  // order: the trigger slots of the key group are read first, they are few). The registered
  // timers are not tracked there and are written as none.
  void WriteRocksEntries(int kg, absl::FunctionRef<void(std::string_view, std::string_view)> emit) {
    if constexpr (kRocksCapable) {
      if (!contents_.column().open()) return;
      std::vector<std::pair<std::string, std::string>> slots;
      triggers_.ScanKeyGroup(kg, [&](std::string_view k, std::string_view v) {
        slots.emplace_back(std::string(k), std::string(v));
        return true;
      });
      size_t next = 0;
      std::string value;
      auto emit_entry = [&](std::string_view key, const std::string* contents_canonical,
                            std::string_view slot_bytes) {
        value.clear();
        if (contents_canonical != nullptr) {
          value.append(*contents_canonical);
        } else {
          value.push_back(0);
        }
        if (slot_bytes.empty()) {
          value.push_back(0);
        } else {
          value.append(slot_bytes);
        }
        PutFixed64(kNoTimer, &value);
        PutFixed64(kNoTimer, &value);
        emit(key.substr(2), value);
      };
      std::string canonical;
      contents_.column().ScanKeyGroup(kg, [&](std::string_view k, std::string_view v) {
        while (next < slots.size() && std::string_view(slots[next].first) < k) {
          emit_entry(slots[next].first, nullptr, slots[next].second);
          ++next;
        }
        canonical.clear();
        contents_.ToCanonical(
            v, &canonical,
            [](const State& s, std::string* out) { ContentsCodec<Acc>::Write(s, out); },
            this->name());
        std::string_view slot_bytes;
        if (next < slots.size() && std::string_view(slots[next].first) == k) {
          slot_bytes = slots[next].second;
          ++next;
        }
        emit_entry(k, &canonical, slot_bytes);
        return true;
      });
      for (; next < slots.size(); ++next)
        emit_entry(slots[next].first, nullptr, slots[next].second);
    }
  }
  absl::Status RestoreRocksEntries() {
    if constexpr (kRocksCapable) {
      SLUICE_RETURN_IF_ERROR(RestoreInternal<K>(
          *state_, kEntries, this->ctx_, [&](K& key, ByteReader& rest, ByteReader& value) {
            W window{};
            std::optional<State> contents;
            Slots slots{};
            Timestamp registered[2];
            if (!Serializer<W>::Read(rest, &window) || !rest.empty() ||
                !ReadOptionalContents<Acc>(value, &contents) || !ReadSlots(value, &slots) ||
                !value.ReadRaw(&registered[0], sizeof(Timestamp)) ||
                !value.ReadRaw(&registered[1], sizeof(Timestamp)) || !value.empty()) {
              return false;
            }
            contents_.column().SetKey(key, this->ctx_.max_parallelism);
            triggers_.SetKey(key, this->ctx_.max_parallelism);
            if (contents) contents_.Write(contents_.column().KeyFor(window), *contents);
            contents_.EvictIfFull();
            StoreSlots(window, slots);
            return true;
          }));
      contents_.Flush();
      return absl::OkStatus();
    } else {
      return absl::OkStatus();
    }
  }
  // A merging set: composite [key]; value [the key's windows, in order] (AddMergingSets above).
  void AddMergingSets(InternalStateBuckets& b) const {
    internal::AddMergingSets<K, W>(
        b, merging_, [](const auto& kv) { return HeapDataOf(kv.second); },
        [](const std::vector<W>& set, std::vector<W>& out) {
          out.insert(out.end(), set.begin(), set.end());
        });
  }
  absl::Status RestoreMergingSets() {
    return RestoreInternal<K>(*state_, kMergingSets, this->ctx_,
                              [&](K& key, ByteReader& rest, ByteReader& value) {
                                uint64_t n = 0;
                                if (!rest.empty() || !value.ReadVarint(&n) || n > value.remaining())
                                  return false;
                                std::vector<W> windows(static_cast<size_t>(n));
                                for (W& w : windows) {
                                  if (!Serializer<W>::Read(value, &w)) return false;
                                }
                                if (!value.empty()) return false;
                                merging_.insert_or_assign(std::move(key), std::move(windows));
                                return true;
                              });
  }

  static constexpr const char* kEntries = "_window_contents";
  static constexpr const char* kEventTimers = "_event_timers";
  static constexpr const char* kProcessingTimers = "_processing_timers";
  static constexpr const char* kMergingSets = "_merging_windows";
  // RocksDB only: the trigger slots (in snapshots they are part of kEntries' records).
  static constexpr const char* kTriggers = "_window_triggers";

  KS key_selector_;
  Assigner assigner_;
  Trig trigger_;
  Acc acc_;
  WindowSettings<In> settings_;
  const Clock* clock_;
  WindowContext<W> window_ctx_;
  Ctx trigger_ctx_;

  std::optional<K> key_;  // the key being processed
  std::unique_ptr<KeyedStateBackend<K>> state_;
  std::vector<W> windows_;                        // scratch: the windows of the current element
  absl::flat_hash_map<EntryKey, Entry> entries_;  // in memory (HashMap backend)
  ChangedKeys<EntryKey> changes_;                 // of entries_, for snapshots
  // The flat copy of the last snapshot's entries, handed back by the checkpoint writer.
  std::shared_ptr<CopyPool<EntriesCopy>> entries_copies_ =
      std::make_shared<CopyPool<EntriesCopy>>();
  void EraseEntry(const EntryKey& ek) {
    if (entries_.erase(ek) > 0) changes_.MarkErased(ek, entries_.size());
  }
  Entry& Touch(const K& key, const W& window) {
    auto it = entries_.try_emplace(EntryKey(key, window)).first;
    changes_.Mark(it->first, it->second.changed);
    return it->second;
  }
  TimerQueue<K, W> event_timers_;
  TimerQueue<K, W> processing_timers_;
  // Merging assigners: the current windows of each key.
  absl::flat_hash_map<K, std::vector<W>> merging_;
  std::vector<W> merge_scratch_;
  LateRecords<In> late_{this->ctx_};
  std::vector<std::unique_ptr<InternalStateBuckets>> internal_;  // the above in state_'s snapshots
  // RocksDB backend: contents and trigger slots in column families (window_state.h).
  bool rocks_ = false;
  RocksContents<Acc, In> contents_;
  RocksWindowColumn triggers_;
  // Whether the trigger column family may hold slots: false while no trigger stored any (the
  // default triggers never do), so windows read and delete nothing there.
  bool triggers_used_ = false;
  Entry rocks_entry_;                  // the current window's trigger slots (Ctx::SetLazy)
  std::optional<State> fire_scratch_;  // contents read to fire
  std::string slot_bytes_;
  std::unique_ptr<RocksWindowSnapshot> rocks_snapshot_;
};

// Sliding (and tumbling) event-time windows with the default trigger and an incremental function
// (Reduce, Aggregate; optionally followed by a process function): instead of adding each element
// to size/slide windows, it goes into one slice ("pane") of gcd(size, slide) ms, and a firing
// window combines the partial results of its slices. Results equal the window operator's when the
// reduce function is associative and commutative (Flink merges partial reductions of session
// windows too); per record: one hash lookup and one fold. Firing and cleanup are not timers per
// (key, window) but, per window, the list of keys holding contents in it (WindowKeyLists).
//
// Same rules as WindowOperator with EventTimeTrigger: a window fires when the watermark passes
// its max timestamp if any of its slices has contents; a late element within the allowed lateness
// re-fires its windows at once; at a window's cleanup time (max timestamp + lateness) the slices
// that no later window covers are freed.
template <typename K, typename In, typename Out, typename KS, typename Assigner, typename Acc,
          typename WinFn>
class SlicingWindowOperator final : public UserFunctionOperator<In, Out, WinFn> {
  using Base = UserFunctionOperator<In, Out, WinFn>;
  using State = typename Acc::State;
  using SliceKey = std::pair<K, Timestamp>;  // (key, slice start)
  static constexpr bool kCheckpointable = FullySerializable<K> && ContentsCodec<Acc>::kSerializable;
  // On the RocksDB backend, slices live in RocksDB when the key encodes canonically.
  static constexpr bool kRocksCapable = kCheckpointable && kRocksKeyable<K>;

 public:
  SlicingWindowOperator(const OperatorSetup& setup, KS ks, Assigner assigner, Acc acc, WinFn fn,
                        WindowSettings<In> settings)
      : Base(setup, std::move(fn)),
        key_selector_(std::move(ks)),
        size_(assigner.size()),
        slide_(assigner.slide()),
        offset_(assigner.offset()),
        pane_(std::gcd(assigner.size(), assigner.slide())),
        acc_(std::move(acc)),
        settings_(std::move(settings)),
        window_ctx_(&this->ctx_, &this->side_, setup.clock),
        state_(MakeKeyedStateBackend<K>(setup)),
        windows_(size_, settings_.allowed_lateness_ms, /*unique_adds=*/size_ == pane_) {
    this->ctx_.keyed_state = state_.get();
    window_ctx_.SetState(state_.get(), false);
    rocks_ = kRocksCapable && state_->kind() == StateBackendKind::kRocksDb;
    if constexpr (kCheckpointable) {
      const int maxp = this->ctx_.max_parallelism;
      if constexpr (kRocksCapable) {
        if (rocks_) {
          rocks_snapshot_ = std::make_unique<RocksWindowSnapshot>(
              [this] {
                if (state_->rocksdb() == nullptr) return;
                EnsureRocks();
                slices_rocks_.Flush();  // the cached slices, before the column family is read
              },
              [this](int kg, absl::FunctionRef<void(std::string_view, std::string_view)> emit) {
                WriteRocksSlices(kg, emit);
              });
          state_->RegisterInternalState(kSlices, rocks_snapshot_.get(),
                                        ContentsCodec<Acc>::Format());
        }
      }
      if (!rocks_) {
        internal_.push_back(RegisterInternalState(
            *state_, kSlices, maxp, [this](InternalStateBuckets& b) { AddSlices(b); },
            ContentsCodec<Acc>::Format()));
      }
      // The key lists are not written: a restore derives them from the slices and the watermark
      // the windows were fired through (one record per key group).
      progress_ = std::make_unique<ProgressState>(this);
      state_->RegisterInternalState(kProgress, progress_.get());
    }
  }
  KeyedStateBackend<K>& state() { return *state_; }

  // Per key group (rescalable): the slices' partial results, the watermark the windows were
  // fired through, and the keyed state of the window function (WindowState/GlobalState).
  void SnapshotState(int64_t, OperatorStateSnapshot& out) override {
    if constexpr (!FullySerializable<K>) {
      ThrowNotCheckpointable(this->name(), "the key type");
    } else if constexpr (!ContentsCodec<Acc>::kSerializable) {
      ThrowNotCheckpointable(this->name(), Acc::kStateRole);
    } else {
      GuardRocksDb(this->name(), [&] { SnapshotKeyedBackend(*state_, this->name(), out); });
    }
  }
  absl::Status RestoreState(const OperatorStateRestore& in) override {
    SLUICE_RETURN_IF_ERROR(RestoreKeyedBackend(*state_, in));
    if constexpr (kCheckpointable) {
      if constexpr (kRocksCapable) {
        if (rocks_) {
          SLUICE_RETURN_IF_ERROR(OpenRocks());
          absl::Status st;
          try {
            st = RestoreRocksSlices();
          } catch (const JobFailure& f) {
            st = f.status();
          }
          SLUICE_RETURN_IF_ERROR(st);
        }
      }
      if (!rocks_) SLUICE_RETURN_IF_ERROR(RestoreSlices());
      SLUICE_RETURN_IF_ERROR(RestoreWindowLists());
    }
    return absl::OkStatus();
  }

  // The storage is chosen per batch (and per watermark), never per record.
  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    if constexpr (kRocksCapable) {
      if (rocks_) {
        GuardRocksDb(this->name(), [&] {
          EnsureRocks();
          GuardUserCode(this->name(), [&] {
            for (size_t i = 0; i < records.size(); ++i) {
              ProcessElement<true>(records[i], timestamps[i]);
            }
          });
          slices_rocks_.EvictIfFull();
        });
        this->FlushOutputs();
        return;
      }
    }
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) ProcessElement<false>(records[i], timestamps[i]);
    });
    this->FlushOutputs();
  }

  void OnWatermark(Timestamp watermark) override {
    this->watermark_ = watermark;
    if constexpr (kRocksCapable) {
      if (rocks_) {
        GuardRocksDb(this->name(), [&] {
          EnsureRocks();
          GuardUserCode(this->name(), [&] { AdvanceWindows<true>(watermark); });
        });
        this->FlushOutputs();
        Base::OnWatermark(watermark);
        return;
      }
    }
    GuardUserCode(this->name(), [&] { AdvanceWindows<false>(watermark); });
    this->FlushOutputs();
    Base::OnWatermark(watermark);
  }

  // Slices held in memory (always 0 when they are in RocksDB), and whether they are in RocksDB.
  size_t num_slices() const { return slices_.size(); }
  bool contents_in_rocksdb() const { return rocks_; }
  // RocksDB: the slices in the write-back cache.
  size_t cached_window_entries() const { return slices_rocks_.cached_entries(); }

 private:
  Timestamp CleanupTime(Timestamp start) const {
    return SaturatingAdd(start + size_ - 1, settings_.allowed_lateness_ms);
  }

  template <bool kRocks>
  void ProcessElement(const In& value, Timestamp timestamp) {
    if (timestamp == kNoTimestamp) [[unlikely]] {
      throw std::invalid_argument(kNoTimestampInEventTimeWindow);
    }
    const Timestamp wm = this->watermark_;
    const Timestamp last_start = WindowStartWithOffset(timestamp, offset_, slide_);
    // The latest window has the latest cleanup time: if it is late, every window is.
    if (CleanupTime(last_start) <= wm) {
      if (SaturatingAdd(timestamp, settings_.allowed_lateness_ms) <= wm) {
        late_.Add(settings_, this->side_, value, timestamp);
      }
      return;
    }
    key_ = key_selector_(value);
    state_->SetCurrentKey(&*key_);
    const Timestamp slice = WindowStartWithOffset(timestamp, offset_, pane_);
    bool inserted;
    if constexpr (kRocks) {
      slices_rocks_.column().SetKey(*key_, this->ctx_.max_parallelism);
      inserted = !slices_rocks_.AddAndCheckExisted(slices_rocks_.column().KeyFor(slice), acc_,
                                                   value, timestamp, this->name());
    } else {
      auto [it, fresh] = slices_.try_emplace(SliceKey(*key_, slice));
      changes_.Mark(it->first, it->second.changed);
      acc_.Add(it->second.contents, value, timestamp);
      inserted = fresh;
      if (fresh) NoteSlice(slice);
    }
    if (inserted) {
      // A new slice: the key has contents in its live windows (their firing, unless the window
      // fired already, and their cleanup).
      for (Timestamp start = last_start; start > timestamp - size_; start -= slide_) {
        if (CleanupTime(start) <= wm) break;  // this and earlier windows are gone
        windows_.Add(start, *key_, /*fire_pending=*/start + size_ - 1 > wm);
      }
    }
    // Late but within the allowed lateness: the windows already fired fire again at once (the
    // EventTimeTrigger's FIRE on element), latest window first as the assigner orders them.
    Timestamp first_start = last_start;
    while (first_start - slide_ > timestamp - size_) first_start -= slide_;
    if (first_start + size_ - 1 <= wm) {
      for (Timestamp start = last_start; start > timestamp - size_; start -= slide_) {
        if (start + size_ - 1 > wm) continue;
        if (CleanupTime(start) <= wm) break;
        FireWindow<kRocks>(start);
      }
    }
  }

  // Fires the windows whose max timestamp is <= `watermark` and cleans up those whose cleanup
  // time is, for every key they hold, in time order.
  template <bool kRocks>
  void AdvanceWindows(Timestamp watermark) {
    windows_.Advance(
        watermark,
        [&](Timestamp start, const K& key) {
          SetKey<kRocks>(key);
          FireWindow<kRocks>(start);
        },
        [&](Timestamp start, const K& key) {
          SetKey<kRocks>(key);
          TimeWindow window{start, start + size_};
          window_ctx_.Set(&window, this->watermark_);
          this->fn_.Clear(*key_, window_ctx_);
          // No later window covers the slices of [start, start + slide).
          for (Timestamp s = start; s < start + slide_; s += pane_) {
            if constexpr (kRocks) {
              slices_rocks_.Delete(slices_rocks_.column().KeyFor(s));
            } else {
              if (s < first_slice_ || s > last_slice_) continue;
              if (slices_.erase(SliceKey(*key_, s)) > 0) {
                changes_.MarkErased(SliceKey(*key_, s), slices_.size());
              }
            }
          }
        });
  }
  template <bool kRocks>
  void SetKey(const K& key) {
    key_ = key;
    state_->SetCurrentKey(&*key_);
    if constexpr (kRocks) slices_rocks_.column().SetKey(*key_, this->ctx_.max_parallelism);
  }

  // Combines the slices of window [start, start + size) of the current key and emits the result.
  // RocksDB: the current key's slices are read from RocksDB (the key was set by the caller).
  template <bool kRocks>
  void FireWindow(Timestamp start) {
    std::optional<State> combined;
    for (Timestamp s = start; s < start + size_; s += pane_) {
      if constexpr (kRocks) {
        if (!slices_rocks_.Read(slices_rocks_.column().KeyFor(s), &slice_scratch_, this->name())) {
          continue;
        }
        acc_.Merge(combined, *slice_scratch_);
      } else {
        if (s < first_slice_ || s > last_slice_) continue;  // no key has such a slice
        auto it = slices_.find(SliceKey(*key_, s));
        if (it == slices_.end() || !it->second.contents) continue;
        State copy = *it->second.contents;
        acc_.Merge(combined, copy);
      }
    }
    if (!combined) return;
    TimeWindow window{start, start + size_};
    this->out_.SetTimestamp(window.max_timestamp());
    window_ctx_.Set(&window, this->watermark_);
    acc_.Fire(*combined, window,
              [&](auto values) { this->fn_.Apply(*key_, window_ctx_, values, this->out_); });
  }

  // The watermark the windows of a key group were fired through, written once per key group of
  // the subtask: composite empty, value [8 bytes]. After a restore the operator's watermark starts
  // from nothing while the restored windows stay fired through the restored value: a key group's
  // value is the larger of the two.
  class ProgressState final : public InternalKeyedState {
   public:
    explicit ProgressState(SlicingWindowOperator* op) : op_(op) {}
    void PrepareSnapshot(size_t) override { watermark_ = op_->watermark_; }
    void WriteKeyGroup(int kg,
                       absl::FunctionRef<void(std::string_view, std::string_view)> emit) override {
      if (!op_->state_->key_groups().Contains(kg)) return;
      std::string value;
      PutFixed64(std::max(watermark_, op_->RestoredFiredThrough(kg)), &value);
      emit(std::string_view(), value);
    }

   private:
    SlicingWindowOperator* op_;
    Timestamp watermark_ = kMinWatermark;
  };
  Timestamp RestoredFiredThrough(int kg) const {
    auto it = restored_fired_through_.find(kg);
    return it == restored_fired_through_.end() ? restored_fired_through_default_ : it->second;
  }

  // Rebuilds the per-window key lists after the slices were restored. Every slice (key, s) puts
  // its key in each window containing s that was not cleaned up yet (cleanup time > the watermark
  // its key group was fired through), as pending when the window's max timestamp is above it.
  // Exact: a window not yet cleaned up still has all its slices (a cleanup frees only slices no
  // later window covers). Checkpoints of older versions hold per-(key, window) timer records
  // instead; they are restored as such.
  absl::Status RestoreWindowLists() {
    std::vector<RestoredRecord> timers = state_->TakeRestoredInternal(kTimers);
    if (!timers.empty()) {
      SLUICE_RETURN_IF_ERROR(RestoreTimerRecords(timers, kTimers, this->ctx_, windows_));
      windows_.FinishRestore();
      // The windows were fired through the max timestamp of the latest window that fired.
      restored_fired_through_default_ = windows_.LatestFiredMaxTimestamp();
      return absl::OkStatus();
    }
    absl::flat_hash_map<int, Timestamp>& fired_through = restored_fired_through_;
    for (const RestoredRecord& r : state_->TakeRestoredInternal(kProgress)) {
      ByteReader value(r.value);
      Timestamp f = 0;
      if (!r.composite.empty() || !value.ReadRaw(&f, sizeof f) || !value.empty()) {
        return absl::DataLossError(absl::StrCat("operator '", this->name(),
                                                "': restored internal state '", kProgress,
                                                "' holds a record that does not decode"));
      }
      fired_through[r.key_group] = std::max(f, RestoredFiredThrough(r.key_group));
    }
    auto add = [&](const K& key, Timestamp slice) {
      auto it = fired_through.find(KeyGroupFor(key, this->ctx_.max_parallelism));
      const Timestamp f = it == fired_through.end() ? kMinWatermark : it->second;
      for (Timestamp start = WindowStartWithOffset(slice, offset_, slide_); start > slice - size_;
           start -= slide_) {
        if (CleanupTime(start) <= f) break;
        windows_.Add(start, key, /*fire_pending=*/start + size_ - 1 > f);
      }
    };
    if constexpr (kRocksCapable) {
      if (rocks_) {
        const KeyGroupRange range = state_->key_groups();
        bool ok = true;
        for (int kg = range.start; kg <= range.end && ok; ++kg) {
          slices_rocks_.column().ScanKeyGroup(kg, [&](std::string_view k, std::string_view) {
            ByteReader in(k.substr(2));
            K key{};
            Timestamp start = 0;
            if (!Serializer<K>::Read(in, &key) || !in.ReadRaw(&start, sizeof start) ||
                !in.empty()) {
              ok = false;
              return false;
            }
            add(key, start);
            return true;
          });
        }
        if (!ok) {
          return absl::DataLossError(absl::StrCat("operator '", this->name(),
                                                  "': a window slice in RocksDB does not decode"));
        }
        return absl::OkStatus();
      }
    }
    for (const auto& [sk, slice] : slices_) add(sk.first, sk.second);
    return absl::OkStatus();
  }

  // A slice: composite [key][8-byte slice start]; value [partial result (optional)].
  // After the first snapshot only the slices changed since the previous one are added, and the
  // removed ones named (ChangedKeys). Copied flat and encoded on the checkpoint writer's thread
  // when the key owns no heap buffer and the contents have a flat copy (FlatCopy); otherwise
  // encoded at once. The contents' buffers are prefetched while the map is walked.
  void AddSlices(InternalStateBuckets& b) {
    std::vector<const typename decltype(slices_)::value_type*> changed;
    std::vector<SliceKey> removed;
    if (kRocksKeyable<K> &&
        changes_.Take(
            b, slices_, [](Slice& s) -> bool& { return s.changed; }, &changed, &removed)) {
      AddSlicesOf(changed, std::move(removed), b);
    } else {
      AddSlicesOf(slices_, std::move(removed), b);
    }
  }
  static constexpr bool kFlatSlices = std::is_trivially_copyable_v<K> && FlatCopy<State>::kFlat;
  struct SlicesCopy {
    std::vector<std::pair<K, Timestamp>> keys;
    FlatCopy<State> contents;  // by index of `keys`
    std::vector<SliceKey> removed;
    void Clear() {
      keys.clear();
      contents.Clear();
      removed.clear();
    }
  };
  template <typename Range>
  void AddSlicesOf(const Range& range, std::vector<SliceKey> removed, InternalStateBuckets& b) {
    if constexpr (kFlatSlices) {
      std::shared_ptr<SlicesCopy> copy = slices_copies_->Take();
      copy->keys.reserve(range.size());
      copy->contents.ReserveFor(
          range, [](const auto& x) -> const auto& { return SnapshotElement(x).second.contents; });
      copy->removed = std::move(removed);
      ForEachPrefetched(
          range, [](const auto& x) { return HeapDataOf(SnapshotElement(x).second.contents); },
          [&](const auto& x) {
            const auto& [sk, slice] = SnapshotElement(x);
            copy->keys.emplace_back(sk.first, sk.second);
            copy->contents.Add(slice.contents);
          });
      b.Defer([copy, pool = slices_copies_](InternalStateBuckets& out) {
        std::string composite, value;
        std::optional<State> scratch;
        for (size_t i = 0; i < copy->keys.size(); ++i) {
          const auto& [key, start] = copy->keys[i];
          EncodeSlice(key, start, copy->contents.Get(static_cast<uint32_t>(i), &scratch),
                      &composite, &value, out);
        }
        for (const SliceKey& sk : copy->removed) RemoveSlice(sk, &composite, out);
        pool->Recycle(copy);
      });
    } else {
      std::string composite, value;
      ForEachPrefetched(
          range, [](const auto& x) { return HeapDataOf(SnapshotElement(x).second.contents); },
          [&](const auto& x) {
            const auto& [sk, slice] = SnapshotElement(x);
            EncodeSlice(sk.first, sk.second, slice.contents, &composite, &value, b);
          });
      for (const SliceKey& sk : removed) RemoveSlice(sk, &composite, b);
    }
  }
  static void RemoveSlice(const SliceKey& sk, std::string* composite, InternalStateBuckets& b) {
    composite->clear();
    Serializer<K>::Write(sk.first, composite);
    PutFixed64(sk.second, composite);
    b.Remove(sk.first, *composite);
  }
  static void EncodeSlice(const K& key, Timestamp start, const std::optional<State>& contents,
                          std::string* composite, std::string* value, InternalStateBuckets& b) {
    composite->clear();
    Serializer<K>::Write(key, composite);
    PutFixed64(start, composite);
    value->clear();
    WriteOptionalContents<Acc>(contents, value);
    b.Add(key, *composite, *value);
  }
  absl::Status RestoreSlices() {
    return RestoreInternal<K>(
        *state_, kSlices, this->ctx_, [&](K& key, ByteReader& rest, ByteReader& value) {
          Timestamp start = 0;
          std::optional<State> contents;
          if (!rest.ReadRaw(&start, sizeof start) || !rest.empty() ||
              !ReadOptionalContents<Acc>(value, &contents) || !value.empty()) {
            return false;
          }
          slices_.insert_or_assign(SliceKey(std::move(key), start), Slice{std::move(contents)});
          NoteSlice(start);
          return true;
        });
  }

  // --- RocksDB storage ---------------------------------------------------------------------------

  absl::Status OpenRocks() {
    if constexpr (kRocksCapable) {
      if (slices_rocks_.column().open()) return absl::OkStatus();
      absl::Status st = slices_rocks_.Open(*state_, kSlices);
      if (!st.ok()) {
        return absl::Status(st.code(), absl::StrCat("operator '", this->name(),
                                                    "': window slices in RocksDB: ", st.message()));
      }
    }
    return absl::OkStatus();
  }
  void EnsureRocks() {
    if (slices_rocks_.column().open()) return;
    if (absl::Status st = OpenRocks(); !st.ok()) throw JobFailure(std::move(st));
  }
  // The records AddSlices writes, from the column family's key group `kg`.
  void WriteRocksSlices(int kg, absl::FunctionRef<void(std::string_view, std::string_view)> emit) {
    if constexpr (kRocksCapable) {
      if (!slices_rocks_.column().open()) return;
      std::string canonical;
      slices_rocks_.column().ScanKeyGroup(kg, [&](std::string_view k, std::string_view v) {
        canonical.clear();
        slices_rocks_.ToCanonical(
            v, &canonical,
            [](const State& s, std::string* out) { ContentsCodec<Acc>::Write(s, out); },
            this->name());
        emit(k.substr(2), canonical);
        return true;
      });
    }
  }
  absl::Status RestoreRocksSlices() {
    if constexpr (kRocksCapable) {
      SLUICE_RETURN_IF_ERROR(RestoreInternal<K>(
          *state_, kSlices, this->ctx_, [&](K& key, ByteReader& rest, ByteReader& value) {
            Timestamp start = 0;
            std::optional<State> contents;
            if (!rest.ReadRaw(&start, sizeof start) || !rest.empty() ||
                !ReadOptionalContents<Acc>(value, &contents) || !value.empty()) {
              return false;
            }
            // A slice without contents holds nothing to fire; its timers are restored apart.
            if (!contents) return true;
            slices_rocks_.column().SetKey(key, this->ctx_.max_parallelism);
            slices_rocks_.Write(slices_rocks_.column().KeyFor(start), *contents);
            slices_rocks_.EvictIfFull();
            return true;
          }));
      slices_rocks_.Flush();  // RestoreWindowLists scans the column family
      return absl::OkStatus();
    } else {
      return absl::OkStatus();
    }
  }

  static constexpr const char* kSlices = "_slices";
  static constexpr const char* kTimers = "_window_timers";  // older checkpoints only
  static constexpr const char* kProgress = "_window_progress";

  KS key_selector_;
  const int64_t size_;
  const int64_t slide_;
  const int64_t offset_;
  const int64_t pane_;
  Acc acc_;
  WindowSettings<In> settings_;
  WindowContext<TimeWindow> window_ctx_;
  std::optional<K> key_;
  std::unique_ptr<KeyedStateBackend<K>> state_;
  struct Slice {
    std::optional<State> contents;
    bool changed = false;  // since the previous snapshot (ChangedKeys)
  };
  absl::flat_hash_map<SliceKey, Slice> slices_;
  ChangedKeys<SliceKey> changes_;  // of slices_, for snapshots
  // The earliest and latest slice start slices_ ever held: a window firing or cleaned up looks
  // up no slice outside them (at the edges of the data most of a window's slices exist for no
  // key).
  Timestamp first_slice_ = kMaxWatermark;
  Timestamp last_slice_ = kMinWatermark;
  void NoteSlice(Timestamp start) {
    first_slice_ = std::min(first_slice_, start);
    last_slice_ = std::max(last_slice_, start);
  }
  // The flat copy of the last snapshot's slices, handed back by the checkpoint writer.
  std::shared_ptr<CopyPool<SlicesCopy>> slices_copies_ = std::make_shared<CopyPool<SlicesCopy>>();
  // Per window start: the keys whose firing (at the max timestamp) and cleanup are pending.
  WindowKeyLists<K> windows_;
  LateRecords<In> late_{this->ctx_};
  std::vector<std::unique_ptr<InternalStateBuckets>> internal_;  // the above in state_'s snapshots
  std::unique_ptr<ProgressState> progress_;
  // Per key group, the watermark a restored snapshot's windows were fired through (and the value
  // for key groups without one).
  absl::flat_hash_map<int, Timestamp> restored_fired_through_;
  Timestamp restored_fired_through_default_ = kMinWatermark;
  // RocksDB backend: the slices in a column family (window_state.h).
  bool rocks_ = false;
  RocksContents<Acc, In> slices_rocks_;
  std::optional<State> slice_scratch_;
  std::unique_ptr<RocksWindowSnapshot> rocks_snapshot_;
};

// True when SlicingWindowOperator can run a window: event-time tumbling or sliding windows, the
// default trigger, no evictor, an incremental function.
template <typename Assigner, typename Trig, typename Contents>
inline constexpr bool kSliceable = false;
template <typename Trig, typename Contents>
requires std::is_same_v<Trig, EventTimeTrigger>
inline constexpr bool kSliceable<SlidingWindows<TimeDomain::kEventTime>, Trig, Contents> =
    !std::is_same_v<Contents, ListContents<typename Contents::Result>>;
template <typename Trig, typename Contents>
requires std::is_same_v<Trig, EventTimeTrigger>
inline constexpr bool kSliceable<TumblingWindows<TimeDomain::kEventTime>, Trig, Contents> =
    !std::is_same_v<Contents, ListContents<typename Contents::Result>>;

}  // namespace sluice::internal
