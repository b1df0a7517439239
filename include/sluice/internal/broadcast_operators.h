// Broadcast process operators: `stream.Connect(rules.Broadcast(desc)).Process(fn)` and
// `keyed.Connect(rules.Broadcast(desc)).Process(fn)`. Internal.
//
// Gate 0 is the non-broadcast input, gate 1 the broadcast input (every record reaches every
// subtask). Broadcast states live in the subtask's OperatorStateStore (mode kBroadcast): writable
// only while ProcessBroadcastElement runs; checkpointed as operator state and, on restore with
// another parallelism, subtask i takes old subtask (i % old parallelism)'s copy (as Flink). The
// operator's event time is the minimum of both inputs' watermarks (TwoInputUserFunctionOperator).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/api/functions.h>
#include <sluice/internal/co_process_operators.h>
#include <sluice/internal/operator_state_store.h>
#include <sluice/internal/operators.h>
#include <sluice/internal/snapshot_util.h>
#include <sluice/state/operator_state.h>

namespace sluice::internal {

// A broadcast state of K -> V: entries written as [Serializer<K>][Serializer<V>].
template <typename K, typename V>
class BroadcastStateEntry final : public BroadcastStateEntryBase<K, V> {
 public:
  using BroadcastStateEntryBase<K, V>::BroadcastStateEntryBase;

  void Write(const std::string& op, std::string* out) const override {
    if constexpr (!FullySerializable<K> || !FullySerializable<V>) {
      ThrowNotCheckpointable(op, absl::StrCat("the key and value types of broadcast state '",
                                              this->name(), "'"));
    } else {
      PutVarint(this->map.entries.size(), out);
      std::string element;
      for (const auto& [k, v] : this->map.entries) {
        element.clear();
        Serializer<K>::Write(k, &element);
        Serializer<V>::Write(v, &element);
        PutLengthPrefixed(element, out);
      }
    }
  }
  bool Load(const std::vector<std::string>& elements) override {
    if constexpr (!FullySerializable<K> || !FullySerializable<V>) {
      return elements.empty();
    } else {
      this->map.entries.clear();
      for (const std::string& e : elements) {
        ByteReader in(e);
        K k{};
        V v{};
        if (!Serializer<K>::Read(in, &k) || !Serializer<V>::Read(in, &v) || !in.empty()) {
          return false;
        }
        this->map.entries.insert_or_assign(std::move(k), std::move(v));
      }
      return true;
    }
  }
};

// A broadcast state declared with Broadcast(descriptor...): creates its entry in each subtask.
struct BroadcastStateDecl {
  std::string name;
  const std::type_info* type = nullptr;  // typeid(std::pair<K, V>)
  std::function<std::unique_ptr<OperatorStateEntry>(const std::string* op, const bool* writable)>
      make;
};

template <typename K, typename V>
BroadcastStateDecl MakeBroadcastStateDecl(const MapStateDescriptor<K, V>& d) {
  std::string name = d.name;
  return BroadcastStateDecl{
      d.name, &typeid(std::pair<K, V>), [name](const std::string* op, const bool* writable) {
        return std::unique_ptr<OperatorStateEntry>(
            new BroadcastStateEntry<K, V>(name, op, writable));
      }};
}

// Sets a flag for the duration of a scope (broadcast state is writable in
// ProcessBroadcastElement only, even when it throws).
class ScopedFlag {
 public:
  explicit ScopedFlag(bool* flag) : flag_(flag) { *flag_ = true; }
  ~ScopedFlag() { *flag_ = false; }
  ScopedFlag(const ScopedFlag&) = delete;
  ScopedFlag& operator=(const ScopedFlag&) = delete;

 private:
  bool* flag_;
};

// Common part: the broadcast states and their snapshot as operator state.
template <typename Out, typename F>
class BroadcastOperatorBase : public TwoInputUserFunctionOperator<Out, F> {
 public:
  BroadcastOperatorBase(const OperatorSetup& setup, F fn,
                        const std::vector<BroadcastStateDecl>& decls)
      : TwoInputUserFunctionOperator<Out, F>(setup, std::move(fn)) {
    for (const BroadcastStateDecl& d : decls) {
      store_.Register(d.make(&this->ctx_.operator_name, &writable_), this->name());
    }
  }

 protected:
  // Operator state: the broadcast states (and, for the non-keyed operator, list states).
  void SnapshotOperatorState(int64_t id, OperatorStateSnapshot& out) {
    SnapshotUserFunction(this->fn_, id, this->name());
    out.operator_state = store_.Snapshot(this->name());
  }
  absl::Status RestoreOperatorState(const OperatorStateRestore& in) {
    this->ctx_.restored = true;
    return store_.Restore(in.operator_states, this->ctx_.subtask_index, this->ctx_.parallelism,
                          this->name());
  }

  OperatorStateStore store_;
  bool writable_ = false;
};

// stream.Connect(broadcast).Process(fn): Flink's CoBroadcastWithNonKeyedOperator.
template <typename In1, typename In2, typename Out, typename F>
class BroadcastProcessOperator final : public BroadcastOperatorBase<Out, F> {
  using Base = BroadcastOperatorBase<Out, F>;

 public:
  BroadcastProcessOperator(const OperatorSetup& setup, F fn,
                           const std::vector<BroadcastStateDecl>& decls)
      : Base(setup, std::move(fn), decls),
        ro_(&this->ctx_, &this->side_),
        rw_(&this->ctx_, &this->side_) {
    ro_.SetBroadcastStates(&this->store_, setup.clock);
    rw_.SetBroadcastStates(&this->store_, setup.clock);
    this->ctx_.operator_state = &this->store_;
  }

  void SnapshotState(int64_t id, OperatorStateSnapshot& out) override {
    this->SnapshotOperatorState(id, out);
  }
  absl::Status RestoreState(const OperatorStateRestore& in) override {
    if (!in.keyed.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("operator '", this->name(), "' cannot restore keyed state"));
    }
    return this->RestoreOperatorState(in);
  }

  void ProcessBatch(int gate, AnyBatch& batch) override {
    if (gate == 0) {
      auto& b = static_cast<Batch<In1>&>(batch);
      ro_.SetWatermark(this->watermark_);
      GuardUserCode(this->name(), [&] {
        for (size_t i = 0; i < b.records.size(); ++i) {
          this->out_.SetTimestamp(b.timestamps[i]);
          ro_.SetTimestamp(b.timestamps[i]);
          this->fn_.ProcessElement(std::as_const(b.records[i]), ro_, this->out_);
        }
      });
    } else {
      auto& b = static_cast<Batch<In2>&>(batch);
      rw_.SetWatermark(this->watermark_);
      GuardUserCode(this->name(), [&] {
        ScopedFlag writable(&this->writable_);
        for (size_t i = 0; i < b.records.size(); ++i) {
          this->out_.SetTimestamp(b.timestamps[i]);
          rw_.SetTimestamp(b.timestamps[i]);
          this->fn_.ProcessBroadcastElement(std::as_const(b.records[i]), rw_, this->out_);
        }
      });
    }
    this->FlushOutputs();
  }

 protected:
  void AdvanceEventTime(Timestamp) override {}

 private:
  BroadcastReadOnlyContext ro_;
  BroadcastContext rw_;
};

// keyed.Connect(broadcast).Process(fn): Flink's CoBroadcastWithKeyedOperator. Keyed state and
// timers as in KeyedCoProcessOperator (per key group, rescalable); broadcast state as above.
template <typename K, typename In1, typename In2, typename Out, typename KS, typename F>
class KeyedBroadcastProcessOperator final : public BroadcastOperatorBase<Out, F> {
  using Base = BroadcastOperatorBase<Out, F>;

 public:
  KeyedBroadcastProcessOperator(const OperatorSetup& setup, KS ks, F fn,
                                const std::vector<BroadcastStateDecl>& decls)
      : Base(setup, std::move(fn), decls),
        ks_(std::move(ks)),
        ro_(&this->ctx_, &this->side_),
        rw_(&this->ctx_, &this->side_),
        state_(MakeKeyedStateBackend<K>(setup)) {
    timers_.clock = setup.clock;
    ro_.SetTimers(&timers_);
    ro_.SetState(state_.get());
    ro_.SetBroadcastStates(&this->store_, setup.clock);
    rw_.SetBroadcastStates(&this->store_, setup.clock);
    rw_.SetState(state_.get());
    this->ctx_.keyed_state = state_.get();
    if constexpr (FullySerializable<K>) {
      const int maxp = this->ctx_.max_parallelism;
      internal_.push_back(RegisterInternalState(*state_, kEventTimers, maxp,
                                                [this](InternalStateBuckets& b) {
                                                  AddTimers(b, timers_.event);
                                                }));
      internal_.push_back(RegisterInternalState(*state_, kProcessingTimers, maxp,
                                                [this](InternalStateBuckets& b) {
                                                  AddTimers(b, timers_.processing);
                                                }));
    }
  }
  KeyedStateBackend<K>& state() { return *state_; }

  // Keyed state and timers (keyed snapshot), broadcast state (operator state).
  void SnapshotState(int64_t id, OperatorStateSnapshot& out) override {
    this->SnapshotOperatorState(id, out);
    if constexpr (!FullySerializable<K>) {
      ThrowNotCheckpointable(this->name(), "the key type");
    } else {
      SnapshotKeyedBackend(*state_, this->name(), out);
    }
  }
  absl::Status RestoreState(const OperatorStateRestore& in) override {
    SLUICE_RETURN_IF_ERROR(this->RestoreOperatorState(in));
    SLUICE_RETURN_IF_ERROR(RestoreKeyedBackend(*state_, in));
    if constexpr (FullySerializable<K>) {
      SLUICE_RETURN_IF_ERROR(RestoreTimers(*state_, kEventTimers, this->ctx_, timers_.event));
      SLUICE_RETURN_IF_ERROR(
          RestoreTimers(*state_, kProcessingTimers, this->ctx_, timers_.processing));
    }
    return absl::OkStatus();
  }

  void ProcessBatch(int gate, AnyBatch& batch) override {
    if (gate == 0) {
      auto& b = static_cast<Batch<In1>&>(batch);
      ro_.SetWatermark(this->watermark_);
      ro_.SetTimeDomain(TimeDomain::kEventTime);
      GuardUserCode(this->name(), [&] {
        for (size_t i = 0; i < b.records.size(); ++i) {
          const In1& r = b.records[i];
          this->out_.SetTimestamp(b.timestamps[i]);
          ro_.SetTimestamp(b.timestamps[i]);
          ro_.SetCurrentKey(ks_(r));
          this->fn_.ProcessElement(r, ro_, this->out_);
        }
      });
    } else {
      auto& b = static_cast<Batch<In2>&>(batch);
      rw_.SetWatermark(this->watermark_);
      GuardUserCode(this->name(), [&] {
        ScopedFlag writable(&this->writable_);
        for (size_t i = 0; i < b.records.size(); ++i) {
          this->out_.SetTimestamp(b.timestamps[i]);
          rw_.SetTimestamp(b.timestamps[i]);
          this->fn_.ProcessBroadcastElement(std::as_const(b.records[i]), rw_, this->out_);
        }
      });
    }
    this->FlushOutputs();
  }

  Timestamp NextProcessingDeadline() const override {
    return const_cast<KeyedBroadcastProcessOperator*>(this)->timers_.processing.NextTime();
  }
  void OnProcessingTime(Timestamp now) override {
    FireTimers(timers_.processing, now, TimeDomain::kProcessingTime);
  }

 protected:
  void AdvanceEventTime(Timestamp watermark) override {
    ro_.SetWatermark(watermark);
    FireTimers(timers_.event, watermark, TimeDomain::kEventTime);
  }

 private:
  void FireTimers(TimerQueue<K, VoidNamespace>& queue, Timestamp until, TimeDomain domain) {
    typename TimerQueue<K, VoidNamespace>::Timer timer;
    if constexpr (requires { this->fn_.OnTimer(Timestamp{}, ro_, this->out_); }) {
      ro_.SetWatermark(this->watermark_);
      GuardUserCode(this->name(), [&] {
        while (queue.PopDue(until, &timer)) {
          ro_.SetCurrentKey(std::move(timer.key));
          ro_.SetTimeDomain(domain);
          // Output of an event-time timer carries the timer's time; of a processing-time timer
          // none (as Flink).
          Timestamp ts = domain == TimeDomain::kEventTime ? timer.time : kNoTimestamp;
          ro_.SetTimestamp(ts);
          this->out_.SetTimestamp(ts);
          this->fn_.OnTimer(timer.time, ro_, this->out_);
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

  KS ks_;
  KeyedBroadcastReadOnlyContext<K> ro_;
  KeyedBroadcastContext<K> rw_;
  std::unique_ptr<KeyedStateBackend<K>> state_;
  typename KeyedProcessContext<K>::Timers timers_;
  std::vector<std::unique_ptr<InternalStateBuckets>> internal_;  // timers in state_'s snapshots
};

}  // namespace sluice::internal
