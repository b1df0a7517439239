// Two-phase window aggregation (WindowedStream::TwoPhase): Flink's planner's LocalWindowAggregate
// and GlobalWindowAggregate for the DataStream API. Internal.
//
// The local phase (LocalWindowAggregateOperator) runs at the parallelism of its input, chained to
// it, before any exchange: it folds the records of each (key, slice) into one partial result in
// memory — a slice is gcd(size, slide) long, as in the SlicingWindowOperator — and passes each
// partial on (LocalPartial, timestamp = the slice's max timestamp) when the watermark passes the
// slice's end, before the watermark itself; at a checkpoint barrier (so it has no state of its
// own); at the end of input; and when it holds kMaxLocalPartials. Only partials cross the keyed
// exchange. The global phase is a SlicingWindowOperator whose contents merge partials
// (MergePartialContents, the AggregateFunction's Merge or the reduce function): it fires, cleans
// up and checkpoints windows as without TwoPhase.
//
// Lateness is decided by the global phase, as by a window operator fed the records themselves: a
// record whose slice the local phase already passed on (its watermark is past the slice's end) is
// passed on at once with the record itself, under its own timestamp, so the global phase accepts
// it (within the allowed lateness) or sends the record to the late-data side output exactly as it
// would the raw record. A partial passed on at a watermark is never late downstream: it precedes
// that watermark, and the global watermark is the minimum over the inputs that count. An idle
// input does not count: the local phase passes everything on before it forwards "idle", and once
// its input was idle it passes records on one by one (as a one-phase job), since the global
// watermark may have moved past its own.
#pragma once

#include <cstdint>
#include <map>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

#include <sluice/internal/operators.h>
#include <sluice/internal/window_operator.h>
#include <sluice/window/windows.h>

namespace sluice::internal {

// What the local phase passes to the global one: the partial result of `key` in one slice (the
// slice is the record's timestamp's), and — when the local phase passed a single record on because
// its slice had already gone — that record, for the late-data side output.
template <typename K, typename State, typename T>
struct LocalPartial {
  K key;
  State state;
  std::optional<T> record;
};

template <typename K, typename State, typename T>
struct LateRecordOf<LocalPartial<K, State, T>> {
  using type = T;
  static const T& Get(const LocalPartial<K, State, T>& p) {
    // A partial passed on at a watermark precedes it, so the global phase never finds it late.
    if (!p.record) {
      throw std::logic_error("two-phase window aggregate: a partial result arrived late (bug)");
    }
    return *p.record;
  }
};

struct LocalPartialKeySelector {
  template <typename K, typename State, typename T>
  const K& operator()(const LocalPartial<K, State, T>& p) const {
    return p.key;
  }
};

// The global phase's contents: partials merged with the function's Merge (or reduce).
template <typename P, typename Inner>
struct MergePartialContents {
  using State = typename Inner::State;
  using Result = typename Inner::Result;
  static constexpr const char* kStateRole = Inner::kStateRole;
  Inner inner;
  void Add(std::optional<State>& s, const P& p, Timestamp) {
    State copy = p.state;
    inner.Merge(s, copy);
  }
  void Merge(std::optional<State>& into, State& from) { inner.Merge(into, from); }
  template <typename W, typename G>
  void Fire(State& s, const W& w, G&& g) {
    inner.Fire(s, w, std::forward<G>(g));
  }
};

// Partials the local phase holds at most: beyond, it passes all on (they are merged downstream).
inline constexpr size_t kMaxLocalPartials = size_t{1} << 16;

// The local phase. `Acc` is ReduceContents or AggregateContents.
template <typename K, typename In, typename KS, typename Acc>
class LocalWindowAggregateOperator final
    : public UserFunctionOperator<In, LocalPartial<K, typename Acc::State, In>, Acc> {
  using State = typename Acc::State;
  using Partial = LocalPartial<K, State, In>;
  using Base = UserFunctionOperator<In, Partial, Acc>;
  using Keys = absl::flat_hash_map<K, std::optional<State>>;

 public:
  LocalWindowAggregateOperator(const OperatorSetup& setup, KS ks, int64_t size, int64_t slide,
                               int64_t offset, Acc acc)
      : Base(setup, std::move(acc)),
        key_selector_(std::move(ks)),
        size_(size),
        slide_(slide),
        offset_(offset),
        pane_(std::gcd(size, slide)) {}

  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) Add(records[i], timestamps[i]);
    });
    this->FlushOutputs();
  }

  void OnWatermark(Timestamp watermark) override {
    GuardUserCode(this->name(), [&] {
      while (!slices_.empty() && slices_.begin()->first + pane_ - 1 <= watermark) {
        PassOn(slices_.begin());
      }
    });
    Base::OnWatermark(watermark);  // after the partials it closed
  }

  // The partials go downstream before the barrier: the phase holds nothing across a checkpoint.
  void SnapshotState(int64_t id, OperatorStateSnapshot& out) override {
    PassOnAll();
    this->FlushOutputs();
    Base::SnapshotState(id, out);
  }

  // Idle: the global phase leaves this input out of its watermark, which may then pass the
  // slices held here, so they go on first. Active again: the global watermark may be ahead of this
  // input's (it counts again only once it catches up), and a partial passed on later could be
  // late there without the records it stands for — from now on records go on one by one, as in a
  // one-phase job, each with the record itself.
  void OnWatermarkStatus(bool idle) override {
    if (idle) {
      PassOnAll();
    } else {
      one_by_one_ = true;
    }
    Base::OnWatermarkStatus(idle);  // flushes the partials first
  }

  void OnEndOfInput() override {
    PassOnAll();
    Base::OnEndOfInput();
  }

 private:
  void Add(In& value, Timestamp timestamp) {
    if (timestamp == kNoTimestamp) [[unlikely]] {
      throw std::invalid_argument(kNoTimestampInEventTimeWindow);
    }
    const Timestamp slice = WindowStartWithOffset(timestamp, offset_, pane_);
    if (slice + pane_ - 1 <= this->watermark_ || one_by_one_ || InGap(slice)) [[unlikely]] {
      // Its slice went downstream already (or the input was idle, or the record falls in the gap
      // between two hopping windows): the record goes on alone, under its own timestamp, so the
      // global phase decides its lateness (a record in no window is late once the watermark
      // passed it, as in Flink, and dropped without a count before).
      std::optional<State> one;
      this->fn_.Add(one, value, timestamp);
      K key = key_selector_(std::as_const(value));
      this->out_.CollectWithTimestamp(Partial{std::move(key), std::move(*one), std::move(value)},
                                      timestamp);
      passed_on_.Inc();
      return;
    }
    K key = key_selector_(std::as_const(value));
    if (last_ == nullptr || slice != last_slice_ || !(key == *last_key_)) {
      auto s = slices_.find(slice);
      if (s == slices_.end()) s = slices_.try_emplace(slice).first;
      auto [it, fresh] = s->second.try_emplace(key);
      held_ += fresh ? 1 : 0;
      last_ = &it->second;
      last_slice_ = slice;
      last_key_ = std::move(key);
    }
    this->fn_.Add(*last_, value, timestamp);
    if (held_ > kMaxLocalPartials) [[unlikely]] {
      PassOnAll();
    }
  }

  // Whether the slice starting at `slice` lies in no window (only when slide > size).
  bool InGap(Timestamp slice) const {
    return slide_ > size_ && slice - WindowStartWithOffset(slice, offset_, slide_) >= size_;
  }

  void PassOn(typename std::map<Timestamp, Keys>::iterator s) {
    const Timestamp ts = s->first + pane_ - 1;
    for (auto& [key, state] : s->second) {
      if (state) this->out_.CollectWithTimestamp(Partial{key, std::move(*state), std::nullopt}, ts);
    }
    held_ -= s->second.size();
    passed_on_.Inc(static_cast<int64_t>(s->second.size()));
    slices_.erase(s);
    last_ = nullptr;
  }
  void PassOnAll() {
    GuardUserCode(this->name(), [&] {
      while (!slices_.empty()) PassOn(slices_.begin());
    });
  }

  KS key_selector_;
  const int64_t size_;
  const int64_t slide_;
  const int64_t offset_;
  const int64_t pane_;
  std::map<Timestamp, Keys> slices_;  // by slice start
  size_t held_ = 0;
  // The job counter "<operator>.numPartials": partials passed on (each late record is one).
  OperatorCounter passed_on_{this->ctx_, "numPartials"};
  bool one_by_one_ = false;  // set once the input was idle
  // The contents the previous record went to (valid until the next insertion or pass-on).
  std::optional<State>* last_ = nullptr;
  Timestamp last_slice_ = 0;
  std::optional<K> last_key_;
};

}  // namespace sluice::internal
