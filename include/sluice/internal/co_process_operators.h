// Keyed two-input operators: KeyedCoProcessOperator (`Connect(...).KeyBy(...).Process(fn)`) and
// IntervalJoinOperator (`keyed.IntervalJoin(other).Between(lo, hi).Process(fn)`). Internal.
//
// Both inputs arrive hash-partitioned by keys of the same type, so every record of a key, from
// either input, reaches the same subtask. The operator's event time is the smaller of its two
// inputs' watermarks; event-time timers fire when it passes them, before it goes downstream.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/api/functions.h>
#include <sluice/core/collector.h>
#include <sluice/core/output_tag.h>
#include <sluice/core/status.h>
#include <sluice/internal/batch.h>
#include <sluice/internal/graph.h>
#include <sluice/internal/job_failure.h>
#include <sluice/internal/operators.h>
#include <sluice/internal/side_outputs.h>
#include <sluice/internal/snapshot_util.h>
#include <sluice/internal/timer_queue.h>
#include <sluice/internal/watermark_combiner.h>
#include <sluice/time/time.h>

namespace sluice::internal {

// Base of the keyed two-input operators: a user function, a typed main output with side outputs,
// two input gates whose watermarks combine by minimum, and an output that ends when both inputs
// have ended. Subclasses consume batches and act when event time advances.
//
// Event time is combined as in CoOperator (Flink's StatusWatermarkValve over the two gates): an
// idle gate is left out of the minimum, an ended gate no longer holds the other back, and the
// output is idle when both gates are.
template <typename Out, typename F>
class TwoInputUserFunctionOperator : public OperatorBase {
 public:
  TwoInputUserFunctionOperator(const OperatorSetup& setup, F fn)
      : OperatorBase(setup.runtime), fn_(std::move(fn)), out_(setup.batch_size) {
    WireCollector(out_, setup);
    side_.Init(setup);
    gates_[0] = combiner_.AddInput();
    gates_[1] = combiner_.AddInput();
  }
  int num_gates() const override { return 2; }
  void Open() override {
    opened_ = true;
    OpenUserFunction(fn_, ctx_);
  }
  // The user function's Close() runs iff its Open() ran (even when Open() threw).
  void Close() override {
    if (opened_) CloseUserFunction(fn_);
  }
  void EndOfInput(int gate) override {
    const int g = gate == 0 ? 0 : 1;
    ended_[g] = true;
    if (ended_[0] && ended_[1]) {
      out_.EndInput();
      side_.EndInput();
      return;
    }
    combiner_.Release(gates_[g]);
    SyncEventTime();
  }
  void ProcessWatermark(int gate, Timestamp watermark) override {
    combiner_.UpdateWatermark(gates_[gate == 0 ? 0 : 1], watermark);
    SyncEventTime();
  }
  void ProcessWatermarkStatus(int gate, bool idle) override {
    combiner_.SetIdle(gates_[gate == 0 ? 0 : 1], idle);
    SyncEventTime();
  }

  Timestamp current_watermark() const { return watermark_; }
  Timestamp EventTimeProgress() const override { return watermark_; }
  void RestoreEventTimeProgress(Timestamp watermark) override {
    watermark_ = std::max(watermark_, watermark);
    emitted_.watermark = std::max(emitted_.watermark, watermark);
  }

 protected:
  virtual void AdvanceEventTime(Timestamp watermark) = 0;

  void FlushOutputs() {
    out_.Flush();
    side_.Flush();
  }

  F fn_;
  Collector<Out> out_;
  SideOutputs side_;
  Timestamp watermark_ = kMinWatermark;

 private:
  // Tells downstream what changed; when event time advances, the subclass acts on it (fires
  // timers) before the watermark is forwarded.
  void SyncEventTime() {
    emitted_.Sync(
        combiner_,
        [&](bool idle) {
          out_.EmitWatermarkStatus(idle);
          side_.EmitWatermarkStatus(idle);
        },
        [&](Timestamp w) {
          watermark_ = w;
          AdvanceEventTime(w);
          out_.EmitWatermark(w);
          side_.EmitWatermark(w);
        });
  }

  WatermarkCombiner combiner_{WatermarkCombiner::Mode::kChannels};
  CombinedOutput emitted_;
  int gates_[2] = {0, 0};
  bool ended_[2] = {false, false};
  bool opened_ = false;
};

// Connect(...).KeyBy(k1, k2).Process(fn): `fn.ProcessElement1` for records of gate 0,
// `ProcessElement2` for gate 1, `OnTimer` for the timers they registered (Flink's
// KeyedCoProcessOperator). Timers are per (key, time), as in KeyedProcessOperator.
template <typename K, typename In1, typename In2, typename Out, typename KS1, typename KS2,
          typename F>
class KeyedCoProcessOperator final : public TwoInputUserFunctionOperator<Out, F> {
  using Base = TwoInputUserFunctionOperator<Out, F>;

 public:
  KeyedCoProcessOperator(const OperatorSetup& setup, KS1 ks1, KS2 ks2, F fn)
      : Base(setup, std::move(fn)),
        ks1_(std::move(ks1)),
        ks2_(std::move(ks2)),
        context_(&this->ctx_, &this->side_),
        state_(MakeKeyedStateBackend<K>(setup)) {
    timers_.clock = setup.clock;
    context_.SetTimers(&timers_);
    context_.SetState(state_.get());
    this->ctx_.keyed_state = state_.get();
    if constexpr (FullySerializable<K>) {
      const int maxp = this->ctx_.max_parallelism;
      internal_.push_back(
          RegisterInternalState(*state_, kEventTimers, maxp,
                                [this](InternalStateBuckets& b) { AddTimers(b, timers_.event); }));
      internal_.push_back(RegisterInternalState(
          *state_, kProcessingTimers, maxp,
          [this](InternalStateBuckets& b) { AddTimers(b, timers_.processing); }));
    }
  }
  KeyedStateBackend<K>& state() { return *state_; }

  // Keyed state and the event-time and processing-time timers (per key group, rescalable).
  void SnapshotState(int64_t id, OperatorStateSnapshot& out) override {
    SnapshotUserFunction(this->fn_, id, this->name());
    if constexpr (!FullySerializable<K>) {
      ThrowNotCheckpointable(this->name(), "the key type");
    } else {
      SnapshotKeyedBackend(*state_, this->name(), out);
    }
  }
  absl::Status RestoreState(const OperatorStateRestore& in) override {
    this->ctx_.restored = true;
    SLUICE_RETURN_IF_ERROR(RestoreKeyedBackend(*state_, in));
    if constexpr (FullySerializable<K>) {
      SLUICE_RETURN_IF_ERROR(RestoreTimers(*state_, kEventTimers, this->ctx_, timers_.event));
      SLUICE_RETURN_IF_ERROR(
          RestoreTimers(*state_, kProcessingTimers, this->ctx_, timers_.processing));
    }
    return absl::OkStatus();
  }

  void ProcessBatch(int gate, AnyBatch& batch) override {
    context_.SetWatermark(this->watermark_);
    context_.SetTimeDomain(TimeDomain::kEventTime);
    if (gate == 0) {
      Apply<0>(static_cast<Batch<In1>&>(batch));
    } else {
      Apply<1>(static_cast<Batch<In2>&>(batch));
    }
    this->FlushOutputs();
  }

  Timestamp NextProcessingDeadline() const override {
    return const_cast<KeyedCoProcessOperator*>(this)->timers_.processing.NextTime();
  }
  void OnProcessingTime(Timestamp now) override {
    FireTimers(timers_.processing, now, TimeDomain::kProcessingTime);
  }

  // For tests: the number of registered event-time timers.
  size_t num_event_timers() const { return timers_.event.size(); }

 protected:
  void AdvanceEventTime(Timestamp watermark) override {
    context_.SetWatermark(watermark);
    FireTimers(timers_.event, watermark, TimeDomain::kEventTime);
  }

 private:
  template <int kInput, typename In>
  void Apply(Batch<In>& b) {
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < b.records.size(); ++i) {
        const In& r = b.records[i];
        this->out_.SetTimestamp(b.timestamps[i]);
        context_.SetTimestamp(b.timestamps[i]);
        if constexpr (kInput == 0) {
          context_.SetCurrentKey(ks1_(r));
          this->fn_.ProcessElement1(r, context_, this->out_);
        } else {
          context_.SetCurrentKey(ks2_(r));
          this->fn_.ProcessElement2(r, context_, this->out_);
        }
      }
    });
  }

  void FireTimers(TimerQueue<K, VoidNamespace>& queue, Timestamp until, TimeDomain domain) {
    typename TimerQueue<K, VoidNamespace>::Timer timer;
    if constexpr (requires { this->fn_.OnTimer(Timestamp{}, context_, this->out_); }) {
      context_.SetWatermark(this->watermark_);
      GuardUserCode(this->name(), [&] {
        while (queue.PopDue(until, &timer)) {
          context_.SetCurrentKey(std::move(timer.key));
          context_.SetTimeDomain(domain);
          // Output of an event-time timer carries the timer's time; of a processing-time timer
          // none (as Flink).
          Timestamp ts = domain == TimeDomain::kEventTime ? timer.time : kNoTimestamp;
          context_.SetTimestamp(ts);
          this->out_.SetTimestamp(ts);
          this->fn_.OnTimer(timer.time, context_, this->out_);
        }
      });
      this->FlushOutputs();
    } else {
      while (queue.PopDue(until, &timer)) {
      }
    }
  }

  static constexpr const char* kEventTimers = "_event_timers";
  static constexpr const char* kProcessingTimers = "_processing_timers";

  KS1 ks1_;
  KS2 ks2_;
  KeyedProcessContext<K> context_;
  std::unique_ptr<KeyedStateBackend<K>> state_;
  typename KeyedProcessContext<K>::Timers timers_;
  std::vector<std::unique_ptr<InternalStateBuckets>> internal_;  // timers in state_'s snapshots
};

// The bounds of an interval join in milliseconds, inclusive: a left element at `t` joins the right
// elements in [t + lower, t + upper]. Exclusive bounds given by the user are moved inward by 1 ms,
// as Flink does.
struct IntervalJoinBounds {
  int64_t lower = 0;
  int64_t upper = 0;
};

// Which buffer an interval-join cleanup timer belongs to (the timer's namespace).
enum class JoinSide : uint8_t { kLeft, kRight };

// The elements an interval join keeps per key and input, bucketed by timestamp (Flink's
// MapState<Long, List<T>> per key). In memory; checkpoints write it into the operator's keyed
// state backend as internal state. Not thread-safe (one per operator instance).
template <typename K, typename T1, typename T2>
class IntervalJoinBuffers {
 public:
  template <typename T>
  using Buckets = absl::btree_map<Timestamp, absl::InlinedVector<T, 1>>;
  struct PerKey {
    Buckets<T1> left;
    Buckets<T2> right;
  };

  // The buffers of `key`, created empty when it has none. Valid until the next call that adds or
  // removes a key.
  PerKey& ForKey(const K& key) { return keys_.try_emplace(key).first->second; }

  // Adds an element; returns a reference to the stored copy (valid while its bucket lives).
  const T1& AddLeft(PerKey& k, Timestamp t, T1 value) {
    ++left_elements_;
    return k.left[t].emplace_back(std::move(value));
  }
  const T2& AddRight(PerKey& k, Timestamp t, T2 value) {
    ++right_elements_;
    return k.right[t].emplace_back(std::move(value));
  }

  // Drops the bucket of `key` at `t` on one side; a key with no buckets left is forgotten.
  void Remove(const K& key, JoinSide side, Timestamp t) {
    auto it = keys_.find(key);
    if (it == keys_.end()) return;
    PerKey& k = it->second;
    if (side == JoinSide::kLeft) {
      left_elements_ -= EraseBucket(k.left, t);
    } else {
      right_elements_ -= EraseBucket(k.right, t);
    }
    if (k.left.empty() && k.right.empty()) keys_.erase(it);
  }

  // Every key's buffers (snapshots).
  template <typename Fn>
  void ForEachKey(Fn&& f) const {
    for (const auto& [key, k] : keys_) f(key, k);
  }

  size_t num_keys() const { return keys_.size(); }
  size_t left_elements() const { return left_elements_; }
  size_t right_elements() const { return right_elements_; }
  // The bucket timestamps of `key` on one side, ascending (tests).
  std::vector<Timestamp> Timestamps(const K& key, JoinSide side) const {
    std::vector<Timestamp> result;
    auto it = keys_.find(key);
    if (it == keys_.end()) return result;
    if (side == JoinSide::kLeft) {
      for (const auto& [t, bucket] : it->second.left) result.push_back(t);
    } else {
      for (const auto& [t, bucket] : it->second.right) result.push_back(t);
    }
    return result;
  }

 private:
  template <typename T>
  static size_t EraseBucket(Buckets<T>& buckets, Timestamp t) {
    auto it = buckets.find(t);
    if (it == buckets.end()) return 0;
    size_t n = it->second.size();
    buckets.erase(it);
    return n;
  }

  absl::flat_hash_map<K, PerKey> keys_;
  size_t left_elements_ = 0;
  size_t right_elements_ = 0;
};

// The options of one interval join, fixed when the job is described.
template <typename In1, typename In2>
struct IntervalJoinSpec {
  IntervalJoinBounds bounds;
  std::optional<OutputTag<In1>> left_late;   // SideOutputLeftLateData
  std::optional<OutputTag<In2>> right_late;  // SideOutputRightLateData
};

// keyed_a.IntervalJoin(keyed_b).Between(lower, upper).Process(fn), with Flink's
// IntervalJoinOperator semantics:
//  * a record without a timestamp fails the job; a record with timestamp < the current watermark
//    is late: dropped, or emitted to the late-data side output of its input when one is set;
//  * otherwise the record is buffered under its key and timestamp, and joined with every buffered
//    record of the other input whose timestamp lies in the bounds; each pair goes to the user
//    function with timestamp max(left, right);
//  * cleanup: a left record at t stays until the watermark reaches t + upper (t when upper <= 0),
//    a right record at t until it reaches t - lower (t when lower >= 0), through one event-time
//    timer per key, input and time.
template <typename K, typename In1, typename In2, typename Out, typename KS1, typename KS2,
          typename F>
class IntervalJoinOperator final : public TwoInputUserFunctionOperator<Out, F> {
  using Base = TwoInputUserFunctionOperator<Out, F>;

 public:
  IntervalJoinOperator(const OperatorSetup& setup, KS1 ks1, KS2 ks2,
                       IntervalJoinSpec<In1, In2> spec, F fn)
      : Base(setup, std::move(fn)),
        ks1_(std::move(ks1)),
        ks2_(std::move(ks2)),
        spec_(std::move(spec)),
        context_(&this->ctx_, &this->side_),
        state_(MakeKeyedStateBackend<K>(setup)) {
    if constexpr (FullySerializable<K> && FullySerializable<In1> && FullySerializable<In2>) {
      const int maxp = this->ctx_.max_parallelism;
      internal_.push_back(RegisterInternalState(
          *state_, kLeft, maxp, [this](InternalStateBuckets& b) { AddBuffers<0>(b); }));
      internal_.push_back(RegisterInternalState(
          *state_, kRight, maxp, [this](InternalStateBuckets& b) { AddBuffers<1>(b); }));
      internal_.push_back(RegisterInternalState(
          *state_, kCleanup, maxp, [this](InternalStateBuckets& b) { AddTimers(b, cleanup_); }));
    }
  }

  // Both buffers and the cleanup timers (per key group, rescalable).
  void SnapshotState(int64_t, OperatorStateSnapshot& out) override {
    if constexpr (!FullySerializable<K>) {
      ThrowNotCheckpointable(this->name(), "the key type");
    } else if constexpr (!FullySerializable<In1>) {
      ThrowNotCheckpointable(this->name(), "the first (left) input's record type");
    } else if constexpr (!FullySerializable<In2>) {
      ThrowNotCheckpointable(this->name(), "the second (right) input's record type");
    } else {
      SnapshotKeyedBackend(*state_, this->name(), out);
    }
  }
  absl::Status RestoreState(const OperatorStateRestore& in) override {
    this->ctx_.restored = true;
    SLUICE_RETURN_IF_ERROR(RestoreKeyedBackend(*state_, in));
    if constexpr (FullySerializable<K> && FullySerializable<In1> && FullySerializable<In2>) {
      SLUICE_RETURN_IF_ERROR(RestoreBuffers<0>());
      SLUICE_RETURN_IF_ERROR(RestoreBuffers<1>());
      SLUICE_RETURN_IF_ERROR(RestoreTimers(*state_, kCleanup, this->ctx_, cleanup_));
    }
    return absl::OkStatus();
  }

  void ProcessBatch(int gate, AnyBatch& batch) override {
    if (gate == 0) {
      auto& b = static_cast<Batch<In1>&>(batch);
      GuardUserCode(this->name(), [&] {
        for (size_t i = 0; i < b.records.size(); ++i) ProcessLeft(b.records[i], b.timestamps[i]);
      });
    } else {
      auto& b = static_cast<Batch<In2>&>(batch);
      GuardUserCode(this->name(), [&] {
        for (size_t i = 0; i < b.records.size(); ++i) ProcessRight(b.records[i], b.timestamps[i]);
      });
    }
    this->FlushOutputs();
  }

  // For tests: the buffered elements and the cleanup timers.
  const IntervalJoinBuffers<K, In1, In2>& buffers() const { return buffers_; }
  size_t num_cleanup_timers() const { return cleanup_.size(); }

 protected:
  // Drops the buckets whose cleanup time the watermark reached (Flink's onEventTime).
  void AdvanceEventTime(Timestamp watermark) override {
    typename TimerQueue<K, JoinSide>::Timer timer;
    const IntervalJoinBounds& b = spec_.bounds;
    while (cleanup_.PopDue(watermark, &timer)) {
      if (timer.ns == JoinSide::kLeft) {
        buffers_.Remove(timer.key, JoinSide::kLeft,
                        b.upper <= 0 ? timer.time : timer.time - b.upper);
      } else {
        buffers_.Remove(timer.key, JoinSide::kRight,
                        b.lower <= 0 ? timer.time + b.lower : timer.time);
      }
    }
  }

 private:
  void ProcessLeft(In1& record, Timestamp t) {
    CheckTimestamp(t, "first (left)");
    if (t < this->watermark_) {
      if (spec_.left_late) this->side_.Emit(*spec_.left_late, In1(std::move(record)), t);
      return;
    }
    const IntervalJoinBounds& b = spec_.bounds;
    K key = ks1_(std::as_const(record));
    // Cleanup when the watermark reaches t + upper: no right record joining this one can come.
    cleanup_.Register(b.upper > 0 ? SaturatingAdd(t, b.upper) : t, key, JoinSide::kLeft);
    auto& k = buffers_.ForKey(key);
    const In1& left = buffers_.AddLeft(k, t, std::move(record));
    const Timestamp hi = SaturatingAdd(t, b.upper);
    for (auto it = k.right.lower_bound(SaturatingAdd(t, b.lower));
         it != k.right.end() && it->first <= hi; ++it) {
      for (const In2& right : it->second) Join(left, right, t, it->first);
    }
  }

  void ProcessRight(In2& record, Timestamp t) {
    CheckTimestamp(t, "second (right)");
    if (t < this->watermark_) {
      if (spec_.right_late) this->side_.Emit(*spec_.right_late, In2(std::move(record)), t);
      return;
    }
    const IntervalJoinBounds& b = spec_.bounds;
    K key = ks2_(std::as_const(record));
    // Seen from the right, the left partners lie in [t - upper, t - lower].
    cleanup_.Register(b.lower < 0 ? SaturatingAdd(t, -b.lower) : t, key, JoinSide::kRight);
    auto& k = buffers_.ForKey(key);
    const In2& right = buffers_.AddRight(k, t, std::move(record));
    const Timestamp hi = SaturatingAdd(t, -b.lower);
    for (auto it = k.left.lower_bound(SaturatingAdd(t, -b.upper));
         it != k.left.end() && it->first <= hi; ++it) {
      for (const In1& left : it->second) Join(left, right, it->first, t);
    }
  }

  void Join(const In1& left, const In2& right, Timestamp left_ts, Timestamp right_ts) {
    context_.SetTimestamps(left_ts, right_ts);
    this->out_.SetTimestamp(std::max(left_ts, right_ts));
    if constexpr (requires { this->fn_.ProcessElement(left, right, context_, this->out_); }) {
      this->fn_.ProcessElement(left, right, context_, this->out_);
    } else if constexpr (requires { std::invoke(this->fn_, left, right, context_, this->out_); }) {
      std::invoke(this->fn_, left, right, context_, this->out_);
    } else {
      std::invoke(this->fn_, left, right, this->out_);
    }
  }

  void CheckTimestamp(Timestamp t, const char* input) const {
    if (t != kNoTimestamp) [[likely]] {
      return;
    }
    throw JobFailure(absl::InvalidArgumentError(absl::StrCat(
        "operator '", this->name(), "': a record of the ", input,
        " input has no timestamp; an interval join works in event time only (give the input a "
        "WatermarkStrategy with FromSource(source, strategy) or AssignTimestampsAndWatermarks)")));
  }

  // A buffer bucket: composite [key][8-byte timestamp], value [varint n][n elements].
  template <int kSide>
  void AddBuffers(InternalStateBuckets& b) const {
    std::string composite, value;
    buffers_.ForEachKey([&](const K& key, const auto& k) {
      for (const auto& [t, bucket] : SideOf<kSide>(k)) {
        composite.clear();
        Serializer<K>::Write(key, &composite);
        PutFixed64(t, &composite);
        value.clear();
        PutVarint(bucket.size(), &value);
        for (const auto& e : bucket) Serializer<SideType<kSide>>::Write(e, &value);
        b.Add(key, composite, value);
      }
    });
  }
  template <int kSide>
  absl::Status RestoreBuffers() {
    return RestoreInternal<K>(*state_, kSide == 0 ? kLeft : kRight, this->ctx_,
                              [&](K& key, ByteReader& rest, ByteReader& value) {
                                Timestamp t = 0;
                                uint64_t n = 0;
                                if (!rest.ReadRaw(&t, sizeof t) || !rest.empty() ||
                                    !value.ReadVarint(&n) || n > value.remaining()) {
                                  return false;
                                }
                                auto& k = buffers_.ForKey(key);
                                for (uint64_t i = 0; i < n; ++i) {
                                  SideType<kSide> e{};
                                  if (!Serializer<SideType<kSide>>::Read(value, &e)) return false;
                                  if constexpr (kSide == 0) {
                                    buffers_.AddLeft(k, t, std::move(e));
                                  } else {
                                    buffers_.AddRight(k, t, std::move(e));
                                  }
                                }
                                return value.empty();
                              });
  }
  template <int kSide>
  using SideType = std::conditional_t<kSide == 0, In1, In2>;
  template <int kSide, typename PerKey>
  static const auto& SideOf(const PerKey& k) {
    if constexpr (kSide == 0) {
      return k.left;
    } else {
      return k.right;
    }
  }

  static constexpr const char* kLeft = "_left_buffer";
  static constexpr const char* kRight = "_right_buffer";
  static constexpr const char* kCleanup = "_cleanup_timers";

  KS1 ks1_;
  KS2 ks2_;
  IntervalJoinSpec<In1, In2> spec_;
  ProcessJoinContext context_;
  IntervalJoinBuffers<K, In1, In2> buffers_;
  TimerQueue<K, JoinSide> cleanup_;
  // Only for checkpoints: the buffers and timers join its snapshots as internal state.
  std::unique_ptr<KeyedStateBackend<K>> state_;
  std::vector<std::unique_ptr<InternalStateBuckets>> internal_;
};

}  // namespace sluice::internal
