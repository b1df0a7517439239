// Operator templates: the typed code that runs per record. Internal.
//
// Each operator consumes a whole batch in one (virtual) call and runs the user function over it in
// a plain loop, where the function's concrete type is a template parameter and inlines.
#pragma once

#include <algorithm>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/api/functions.h>
#include <sluice/connectors/sink.h>
#include <sluice/connectors/source.h>
#include <sluice/core/collector.h>
#include <sluice/core/key.h>
#include <sluice/core/status.h>
#include <sluice/internal/batch.h>
#include <sluice/internal/graph.h>
#include <sluice/internal/job_failure.h>
#include <sluice/internal/keyed_state_backend.h>
#include <sluice/internal/operator_state_store.h>
#include <sluice/internal/side_outputs.h>
#include <sluice/internal/snapshot_util.h>
#include <sluice/internal/watermark_combiner.h>
#include <sluice/time/clock.h>
#include <sluice/time/watermark_strategy.h>

namespace sluice::internal {

// Prefixes a status message with where it happened.
inline absl::Status Annotate(const absl::Status& status, absl::string_view where) {
  return absl::Status(status.code(), absl::StrCat(where, ": ", status.message()));
}

// Call inside a catch block: turns the in-flight exception into a JobFailure naming `op`.
[[noreturn]] inline void RethrowAsJobFailure(const std::string& op) {
  RethrowAsJobFailure("operator", op);
}

// Runs `body`, converting any exception into a JobFailure that names operator `op`.
template <typename Body>
void GuardUserCode(const std::string& op, Body&& body) {
  try {
    body();
  } catch (...) {
    RethrowAsJobFailure(op);
  }
}

// The keyed state backend of a keyed operator subtask (RocksDB opens lazily, on first state).
template <typename K>
std::unique_ptr<KeyedStateBackend<K>> MakeKeyedStateBackend(const OperatorSetup& setup) {
  const RuntimeContext& rc = setup.runtime;
  const KeyGroupRange range =
      KeyGroupRange::ForSubtask(rc.max_parallelism, rc.parallelism, rc.subtask_index);
  const StateBackendKind kind =
      setup.state != nullptr ? setup.state->kind : StateBackendKind::kHashMap;
  auto backend = std::make_unique<KeyedStateBackend<K>>(kind, rc.operator_name, range,
                                                        rc.max_parallelism, setup.clock);
  if (kind == StateBackendKind::kRocksDb) {
    const StateBackendSetup* st = setup.state;
    std::string path =
        absl::StrCat(st->rocksdb_job_dir, "/op", setup.node_id, "-", rc.subtask_index);
    backend->set_rocksdb_opener([st, path, clock = setup.clock] {
      return RocksDbStore::Open(st->rocksdb, st->rocksdb_resources, path, clock);
    });
  }
  return backend;
}

// What one operator subtask contributes to a checkpoint (see docs/checkpointing.md).
struct OperatorStateSnapshot {
  // Keyed state, in key groups (rescalable): state handles, timers, window contents.
  std::optional<KeyedSnapshot> keyed;
  // Non-keyed state of this subtask: a source's position, a sink's pending transactions.
  std::string operator_state;
  // Set by the task before SnapshotState: a savepoint, whose keyed state must be in the
  // canonical format (no native RocksDB snapshot).
  bool canonical = false;
  // Set by the task: the operator's EventTimeProgress() at the barrier.
  Timestamp watermark = kMinWatermark;
};

// What one operator subtask restores from, before Open().
struct OperatorStateRestore {
  struct Keyed {
    std::string_view bytes;
    KeyGroupRange key_groups;
    std::vector<uint64_t> offsets;
    std::string where;  // "checkpoint <dir>: file <path>" for errors
    // A native RocksDB snapshot: a private local copy of its files (KeyedStateBackend::
    // RestoreNative consumes it). Empty for the canonical format.
    std::string native_dir;
  };
  int64_t checkpoint_id = 0;
  int old_parallelism = 0;
  // The keyed snapshots of the old subtasks whose key groups intersect this subtask's range.
  std::vector<Keyed> keyed;
  // operator_state of every old subtask, by old subtask index.
  std::vector<std::string> operator_states;
};

// Restores a keyed backend from every intersecting old subtask's snapshot.
template <typename K>
absl::Status RestoreKeyedBackend(KeyedStateBackend<K>& backend, const OperatorStateRestore& in) {
  for (const auto& k : in.keyed) {
    SLUICE_RETURN_IF_ERROR(backend.Restore(k.bytes, k.key_groups, k.offsets, k.where));
    if (!k.native_dir.empty()) {
      SLUICE_RETURN_IF_ERROR(backend.RestoreNative(k.native_dir, k.key_groups, k.where));
    }
  }
  return absl::OkStatus();
}

class OperatorBase {
 public:
  explicit OperatorBase(RuntimeContext ctx) : ctx_(std::move(ctx)) {}
  virtual ~OperatorBase() = default;

  const RuntimeContext& runtime() const { return ctx_; }
  const std::string& name() const { return ctx_.operator_name; }

  // Called once before the first record, downstream operators first. Throws JobFailure.
  virtual void Open() {}
  // Called once at the end, after end of input or on cancellation. Must not throw.
  virtual void Close() {}
  // The task ends cleanly: its input ended and, with final checkpoints, the job's final checkpoint
  // completed. Not called on failure or cancellation. Sinks finish here. Throws JobFailure.
  virtual void EndOfTask() {}

  // The consumer a chained predecessor pushes into (single-input operators).
  virtual BatchConsumerBase* Input() { return nullptr; }
  // A batch that arrived through a channel on input `gate`.
  virtual void ProcessBatch(int gate, AnyBatch& batch) = 0;
  // Every channel of input `gate` has ended.
  virtual void EndOfInput(int gate) = 0;
  // The watermark of input `gate` (the minimum over its channels) advanced.
  virtual void ProcessWatermark(int gate, Timestamp watermark) = 0;
  // Input `gate` became idle (every channel idle) or active again. Operators that forward
  // watermarks forward it; two-input operators leave an idle gate out of their minimum (see
  // CoOperator and WatermarkCombiner). The default ignores it.
  virtual void ProcessWatermarkStatus(int /*gate*/, bool /*idle*/) {}
  virtual int num_gates() const { return 1; }

  // Processing-time callbacks (periodic watermarks, processing-time timers): the runtime calls
  // OnProcessingTime(now) once the clock reaches NextProcessingDeadline().
  virtual Timestamp NextProcessingDeadline() const { return kMaxWatermark; }
  virtual void OnProcessingTime(Timestamp /*now*/) {}

  // --- Checkpoints ----------------------------------------------------------------------------
  // Captures this subtask's state at checkpoint `id`'s barrier: the effect of every record before
  // the barrier and of none after it. Runs on the task's thread. Throws JobFailure.
  virtual void SnapshotState(int64_t /*id*/, OperatorStateSnapshot& /*out*/) {}
  // Checkpoint `id` is complete (every subtask acknowledged it and its _metadata is durable):
  // two-phase-commit sinks commit here. Throws JobFailure.
  virtual void NotifyCheckpointComplete(int64_t /*id*/) {}
  // Checkpoint `id` was aborted (timeout, a declined snapshot, a failed write).
  virtual void NotifyCheckpointAborted(int64_t /*id*/) {}
  // Event time across restores: the watermark this subtask decides lateness, firing and timers
  // by — for a watermark generator, the watermark it emitted. Checkpointed with the subtask, and
  // handed back by RestoreEventTimeProgress (after RestoreState, before Open) so that a record
  // late before a failure is late again when it is replayed.
  virtual Timestamp EventTimeProgress() const { return kMinWatermark; }
  virtual void RestoreEventTimeProgress(Timestamp /*watermark*/) {}

  // Restores this subtask before Open(). The default accepts only an empty restore, so state that
  // an operator cannot restore is never silently dropped.
  virtual absl::Status RestoreState(const OperatorStateRestore& in) {
    for (const std::string& s : in.operator_states) {
      if (!s.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "operator '", name(), "' cannot restore the operator state it was checkpointed with"));
      }
    }
    if (!in.keyed.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("operator '", name(), "' cannot restore keyed state"));
    }
    return absl::OkStatus();
  }

 protected:
  RuntimeContext ctx_;
};

class SourceOperatorBase : public OperatorBase {
 public:
  using OperatorBase::OperatorBase;
  void ProcessBatch(int, AnyBatch&) override { SLUICE_CHECK(false); }
  void EndOfInput(int) override { EndInput(); }
  void ProcessWatermark(int, Timestamp) override {}
  // Polls the reader once. Throws JobFailure.
  virtual PollResult Poll(int max_records) = 0;
  // The reader is exhausted: flush and end every output.
  virtual void EndInput() = 0;
};

template <typename In>
class OneInputOperator : public OperatorBase, public BatchConsumer<In> {
 public:
  using OperatorBase::OperatorBase;
  BatchConsumerBase* Input() final { return this; }
  void ProcessBatch(int, AnyBatch& batch) final {
    auto& b = static_cast<Batch<In>&>(batch);
    this->Consume(b.records, b.timestamps);
  }
  void EndOfInput(int) final { this->OnEndOfInput(); }
  void ProcessWatermark(int, Timestamp watermark) final { this->OnWatermark(watermark); }
  void ProcessWatermarkStatus(int, bool idle) final { this->OnWatermarkStatus(idle); }
};

// Wires a collector to the consumers of output `tag` of an operator instance.
template <typename T>
void WireCollector(Collector<T>& collector, const OperatorSetup& setup,
                   const std::string& tag = "") {
  for (BatchConsumerBase* c : setup.ConsumersOf(tag)) collector.AddConsumer(c);
}

// Calls an optional Open(const RuntimeContext&) / Close() of a user function object.
template <typename F>
void OpenUserFunction(F& fn, const RuntimeContext& ctx) {
  if constexpr (requires { fn.Open(ctx); }) {
    GuardUserCode(ctx.operator_name, [&] { fn.Open(ctx); });
  }
}
// Calls an optional `SnapshotState(int64_t checkpoint_id)` of a user function object (Flink's
// CheckpointedFunction#snapshotState): at each checkpoint, before the operator captures its state,
// so the function can copy its members into state. Never called per record.
template <typename F>
void SnapshotUserFunction(F& fn, int64_t checkpoint_id, const std::string& op) {
  if constexpr (requires { fn.SnapshotState(checkpoint_id); }) {
    GuardUserCode(op, [&] { fn.SnapshotState(checkpoint_id); });
  }
}

template <typename F>
void CloseUserFunction(F& fn) {
  if constexpr (requires { fn.Close(); }) {
    try {
      fn.Close();
    } catch (...) {
      // Close runs during teardown; its failure cannot change the job's outcome.
    }
  }
}

// Base of operators with one typed main output and optional side outputs.
template <typename In, typename Out, typename F>
class UserFunctionOperator : public OneInputOperator<In> {
 public:
  UserFunctionOperator(const OperatorSetup& setup, F fn)
      : OneInputOperator<In>(setup.runtime), fn_(std::move(fn)), out_(setup.batch_size) {
    WireCollector(out_, setup);
    side_.Init(setup);
  }
  void Open() override {
    opened_ = true;
    OpenUserFunction(fn_, this->ctx_);
  }
  // The user function's Close() runs iff its Open() ran (even when Open() threw).
  void Close() override {
    if (opened_) CloseUserFunction(fn_);
  }
  void OnEndOfInput() override {
    out_.EndInput();
    side_.EndInput();
  }
  void OnWatermark(Timestamp watermark) override {
    watermark_ = watermark;
    out_.EmitWatermark(watermark);
    side_.EmitWatermark(watermark);
  }
  void OnWatermarkStatus(bool idle) override {
    out_.EmitWatermarkStatus(idle);
    side_.EmitWatermarkStatus(idle);
  }
  Timestamp EventTimeProgress() const override { return watermark_; }
  void RestoreEventTimeProgress(Timestamp watermark) override {
    watermark_ = std::max(watermark_, watermark);
  }

  // The function's SnapshotState hook, then its operator state (non-keyed operators).
  void SnapshotState(int64_t id, OperatorStateSnapshot& out) override {
    SnapshotUserFunction(fn_, id, this->name());
    if (this->ctx_.operator_state != nullptr) {
      out.operator_state = op_state_.Snapshot(this->name());
    }
  }
  absl::Status RestoreState(const OperatorStateRestore& in) override {
    this->ctx_.restored = true;
    if (this->ctx_.operator_state == nullptr) return OperatorBase::RestoreState(in);
    if (!in.keyed.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("operator '", this->name(), "' cannot restore keyed state"));
    }
    return op_state_.Restore(in.operator_states, this->ctx_.subtask_index, this->ctx_.parallelism,
                             this->name());
  }

 protected:
  // Gives the user function operator state (RuntimeContext::GetOperatorListState ...): only
  // non-keyed operators call it.
  void EnableOperatorState() { this->ctx_.operator_state = &op_state_; }
  void FlushOutputs() {
    out_.Flush();
    side_.Flush();
  }
  F fn_;
  OperatorStateStore op_state_;
  Collector<Out> out_;
  SideOutputs side_;
  Timestamp watermark_ = kMinWatermark;
  bool opened_ = false;
};

template <typename In, typename Out, typename F>
class MapOperator final : public UserFunctionOperator<In, Out, F> {
 public:
  MapOperator(const OperatorSetup& setup, F fn)
      : UserFunctionOperator<In, Out, F>(setup, std::move(fn)) {
    this->EnableOperatorState();
  }
  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        this->out_.CollectWithTimestamp(std::invoke(this->fn_, std::move(records[i])),
                                        timestamps[i]);
      }
    });
    this->out_.Flush();
  }
};

template <typename In, typename F>
class FilterOperator final : public UserFunctionOperator<In, In, F> {
 public:
  FilterOperator(const OperatorSetup& setup, F fn)
      : UserFunctionOperator<In, In, F>(setup, std::move(fn)) {
    this->EnableOperatorState();
  }
  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        if (std::invoke(this->fn_, std::as_const(records[i]))) {
          this->out_.CollectWithTimestamp(std::move(records[i]), timestamps[i]);
        }
      }
    });
    this->out_.Flush();
  }
};

template <typename In, typename Out, typename F>
class FlatMapOperator final : public UserFunctionOperator<In, Out, F> {
 public:
  FlatMapOperator(const OperatorSetup& setup, F fn)
      : UserFunctionOperator<In, Out, F>(setup, std::move(fn)) {
    this->EnableOperatorState();
  }
  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        this->out_.SetTimestamp(timestamps[i]);
        std::invoke(this->fn_, std::as_const(records[i]), this->out_);
      }
    });
    this->out_.Flush();
  }
};

template <typename In, typename Out, typename F>
class ProcessOperator final : public UserFunctionOperator<In, Out, F> {
 public:
  ProcessOperator(const OperatorSetup& setup, F fn)
      : UserFunctionOperator<In, Out, F>(setup, std::move(fn)),
        context_(&this->ctx_, &this->side_) {
    this->EnableOperatorState();
  }
  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    context_.SetWatermark(this->watermark_);
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        In& r = records[i];
        this->out_.SetTimestamp(timestamps[i]);
        context_.SetTimestamp(timestamps[i]);
        if constexpr (requires { this->fn_.ProcessElement(r, context_, this->out_); }) {
          this->fn_.ProcessElement(std::as_const(r), context_, this->out_);
        } else {
          std::invoke(this->fn_, std::as_const(r), context_, this->out_);
        }
      }
    });
    this->FlushOutputs();
  }

 private:
  ProcessContext context_;
};

template <typename K, typename In, typename Out, typename KeySelector, typename F>
class KeyedProcessOperator final : public UserFunctionOperator<In, Out, F> {
 public:
  KeyedProcessOperator(const OperatorSetup& setup, KeySelector ks, F fn)
      : UserFunctionOperator<In, Out, F>(setup, std::move(fn)),
        key_selector_(std::move(ks)),
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

  // Fires the event-time timers the watermark passed, in time order, then forwards it.
  void OnWatermark(Timestamp watermark) override {
    this->watermark_ = watermark;
    context_.SetWatermark(watermark);
    FireTimers(timers_.event, watermark, TimeDomain::kEventTime);
    UserFunctionOperator<In, Out, F>::OnWatermark(watermark);
  }
  Timestamp NextProcessingDeadline() const override {
    return const_cast<KeyedProcessOperator*>(this)->timers_.processing.NextTime();
  }
  void OnProcessingTime(Timestamp now) override {
    FireTimers(timers_.processing, now, TimeDomain::kProcessingTime);
  }
  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    context_.SetWatermark(this->watermark_);
    context_.SetTimeDomain(TimeDomain::kEventTime);
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        In& r = records[i];
        this->out_.SetTimestamp(timestamps[i]);
        context_.SetTimestamp(timestamps[i]);
        context_.SetCurrentKey(key_selector_(std::as_const(r)));
        if constexpr (requires { this->fn_.ProcessElement(r, context_, this->out_); }) {
          this->fn_.ProcessElement(std::as_const(r), context_, this->out_);
        } else {
          std::invoke(this->fn_, std::as_const(r), context_, this->out_);
        }
      }
    });
    this->FlushOutputs();
  }

 private:
  void FireTimers(internal::TimerQueue<K, VoidNamespace>& queue, Timestamp until,
                  TimeDomain domain) {
    if constexpr (requires { this->fn_.OnTimer(Timestamp{}, context_, this->out_); }) {
      typename internal::TimerQueue<K, VoidNamespace>::Timer timer;
      GuardUserCode(this->name(), [&] {
        while (queue.PopDue(until, &timer)) {
          context_.SetCurrentKey(timer.key);
          context_.SetTimeDomain(domain);
          Timestamp ts = domain == TimeDomain::kEventTime ? timer.time : kNoTimestamp;
          context_.SetTimestamp(ts);
          this->out_.SetTimestamp(ts);
          this->fn_.OnTimer(timer.time, context_, this->out_);
        }
      });
      this->FlushOutputs();
    } else {
      // A function without OnTimer: due timers are dropped (nothing would run).
      typename internal::TimerQueue<K, VoidNamespace>::Timer timer;
      while (queue.PopDue(until, &timer)) {
      }
    }
  }

  static constexpr const char* kEventTimers = "_event_timers";
  static constexpr const char* kProcessingTimers = "_processing_timers";

  KeySelector key_selector_;
  KeyedProcessContext<K> context_;
  typename KeyedProcessContext<K>::Timers timers_;
  std::unique_ptr<KeyedStateBackend<K>> state_;
  std::vector<std::unique_ptr<InternalStateBuckets>> internal_;  // timers in state_'s snapshots
};

// Map, FlatMap and Filter on a KeyedStream with a function that has Open(const RuntimeContext&)
// (Flink's rich functions on keyed streams): the function may take keyed state handles in Open;
// per record the operator makes the record's key current, so the handles refer to it. Keyed
// state snapshots and rescales by key group, as in KeyedProcessOperator.
enum class UserFunctionKind { kMap, kFlatMap, kFilter };

template <typename K, typename In, typename Out, typename KeySelector, typename F,
          UserFunctionKind kKind>
class KeyedUserFunctionOperator final : public UserFunctionOperator<In, Out, F> {
 public:
  KeyedUserFunctionOperator(const OperatorSetup& setup, KeySelector ks, F fn)
      : UserFunctionOperator<In, Out, F>(setup, std::move(fn)),
        key_selector_(std::move(ks)),
        state_(MakeKeyedStateBackend<K>(setup)) {
    this->ctx_.keyed_state = state_.get();
  }
  KeyedStateBackend<K>& state() { return *state_; }

  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        key_ = key_selector_(std::as_const(records[i]));
        state_->SetCurrentKey(&*key_);
        if constexpr (kKind == UserFunctionKind::kMap) {
          this->out_.CollectWithTimestamp(std::invoke(this->fn_, std::move(records[i])),
                                          timestamps[i]);
        } else if constexpr (kKind == UserFunctionKind::kFlatMap) {
          this->out_.SetTimestamp(timestamps[i]);
          std::invoke(this->fn_, std::as_const(records[i]), this->out_);
        } else {
          if (std::invoke(this->fn_, std::as_const(records[i]))) {
            this->out_.CollectWithTimestamp(std::move(records[i]), timestamps[i]);
          }
        }
      }
    });
    this->out_.Flush();
  }

  // Keyed state (per key group, rescalable). A key type without a Serializer is an error only
  // when the function registered state.
  void SnapshotState(int64_t id, OperatorStateSnapshot& out) override {
    SnapshotUserFunction(this->fn_, id, this->name());
    if constexpr (!FullySerializable<K>) {
      if (!state_->tables().empty()) ThrowNotCheckpointable(this->name(), "the key type");
    } else {
      SnapshotKeyedBackend(*state_, this->name(), out);
    }
  }
  absl::Status RestoreState(const OperatorStateRestore& in) override {
    this->ctx_.restored = true;
    for (const std::string& s : in.operator_states) {
      if (!s.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("operator '", this->name(),
                         "' cannot restore the operator state it was "
                         "checkpointed with"));
      }
    }
    return RestoreKeyedBackend(*state_, in);
  }

 private:
  KeySelector key_selector_;
  std::optional<K> key_;
  std::unique_ptr<KeyedStateBackend<K>> state_;
};

// Rolling reduce per key. Streaming: emits the updated value for every record, as Flink does.
// Batch: emits only the final value of each key when the input ends.
template <typename K, typename T, typename KeySelector, typename F>
class KeyedReduceOperator final : public UserFunctionOperator<T, T, F> {
 public:
  KeyedReduceOperator(const OperatorSetup& setup, KeySelector ks, F fn)
      : UserFunctionOperator<T, T, F>(setup, std::move(fn)),
        key_selector_(std::move(ks)),
        backend_(MakeKeyedStateBackend<K>(setup)) {
    if constexpr (FullySerializable<K> && FullySerializable<T>) {
      internal_ = RegisterInternalState(
          *backend_, kValues, this->ctx_.max_parallelism,
          [this](InternalStateBuckets& b) { AddValues(b); }, FormatOf<T>());
    }
  }

  // The reduced value and timestamp of every key (per key group, rescalable).
  void SnapshotState(int64_t, OperatorStateSnapshot& out) override {
    if constexpr (!FullySerializable<K>) {
      ThrowNotCheckpointable(this->name(), "the key type");
    } else if constexpr (!FullySerializable<T>) {
      ThrowNotCheckpointable(this->name(), "the reduced value type (the stream's record type)");
    } else {
      SnapshotKeyedBackend(*backend_, this->name(), out);
    }
  }
  absl::Status RestoreState(const OperatorStateRestore& in) override {
    this->ctx_.restored = true;
    SLUICE_RETURN_IF_ERROR(RestoreKeyedBackend(*backend_, in));
    if constexpr (FullySerializable<K> && FullySerializable<T>) {
      // Value: [reduced value][8-byte timestamp].
      return RestoreInternal<K>(
          *backend_, kValues, this->ctx_, [&](K& key, ByteReader& rest, ByteReader& value) {
            T v{};
            Timestamp ts = 0;
            if (!rest.empty() || !Serializer<T>::Read(value, &v) ||
                !value.ReadRaw(&ts, sizeof ts) || !value.empty()) {
              return false;
            }
            state_.insert_or_assign(std::move(key), std::pair<T, Timestamp>(std::move(v), ts));
            return true;
          });
    }
    return absl::OkStatus();
  }

  void Consume(std::vector<T>& records, std::vector<Timestamp>& timestamps) override {
    const bool emit = !this->ctx_.batch_mode;
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        T& r = records[i];
        K key = key_selector_(std::as_const(r));
        auto it = state_.find(key);
        if (it == state_.end()) {
          it = state_.emplace(std::move(key), std::pair<T, Timestamp>(std::move(r), timestamps[i]))
                   .first;
        } else {
          it->second.first =
              std::invoke(this->fn_, std::as_const(it->second.first), std::as_const(r));
          it->second.second = timestamps[i];
        }
        // The update carries the timestamp of the record that caused it, as in Flink.
        if (emit) this->out_.CollectWithTimestamp(it->second.first, timestamps[i]);
      }
    });
    this->out_.Flush();
  }

  void OnEndOfInput() override {
    if (this->ctx_.batch_mode) {
      for (auto& [key, entry] : state_) {
        this->out_.CollectWithTimestamp(std::move(entry.first), entry.second);
      }
      state_.clear();
    }
    UserFunctionOperator<T, T, F>::OnEndOfInput();
  }

 private:
  void AddValues(InternalStateBuckets& b) {
    std::string composite, value;
    for (const auto& [key, entry] : state_) {
      composite.clear();
      Serializer<K>::Write(key, &composite);
      value.clear();
      Serializer<T>::Write(entry.first, &value);
      PutFixed64(entry.second, &value);
      b.Add(key, composite, value);
    }
  }

  static constexpr const char* kValues = "_reduced_values";

  KeySelector key_selector_;
  // Per key: the reduced value and the timestamp of the last record folded into it.
  absl::flat_hash_map<K, std::pair<T, Timestamp>> state_;
  // Only for checkpoints: state_ joins its snapshots as internal state.
  std::unique_ptr<KeyedStateBackend<K>> backend_;
  std::unique_ptr<InternalStateBuckets> internal_;
};

// Two inputs of different types (Connect): `fn1` handles records of gate 0, `fn2` of gate 1, both
// emitting into one output. The output ends when both inputs have ended.
template <typename In1, typename In2, typename Out, typename F1, typename F2, bool kFlat>
class CoOperator final : public OperatorBase {
 public:
  CoOperator(const OperatorSetup& setup, F1 fn1, F2 fn2)
      : OperatorBase(setup.runtime),
        fn1_(std::move(fn1)),
        fn2_(std::move(fn2)),
        out_(setup.batch_size) {
    WireCollector(out_, setup);
    gates_[0] = combiner_.AddInput();
    gates_[1] = combiner_.AddInput();
  }
  int num_gates() const override { return 2; }
  void Open() override {
    opened_ = true;
    OpenUserFunction(fn1_, ctx_);
    OpenUserFunction(fn2_, ctx_);
  }
  void Close() override {
    if (!opened_) return;
    CloseUserFunction(fn1_);
    CloseUserFunction(fn2_);
  }
  void ProcessBatch(int gate, AnyBatch& batch) override {
    if (gate == 0) {
      auto& b = static_cast<Batch<In1>&>(batch);
      Apply(fn1_, b.records, b.timestamps);
    } else {
      auto& b = static_cast<Batch<In2>&>(batch);
      Apply(fn2_, b.records, b.timestamps);
    }
    out_.Flush();
  }
  void EndOfInput(int gate) override {
    const int g = gate == 0 ? 0 : 1;
    ended_[g] = true;
    if (ended_[0] && ended_[1]) {
      out_.EndInput();
      return;
    }
    // An ended input counts as +infinity: it no longer holds the other one back.
    combiner_.Release(gates_[g]);
    SyncOutput();
  }
  // The operator's event time is the minimum of its two inputs' watermarks, leaving an idle
  // input out; the output is idle when both inputs are.
  void ProcessWatermark(int gate, Timestamp watermark) override {
    combiner_.UpdateWatermark(gates_[gate == 0 ? 0 : 1], watermark);
    SyncOutput();
  }
  void ProcessWatermarkStatus(int gate, bool idle) override {
    combiner_.SetIdle(gates_[gate == 0 ? 0 : 1], idle);
    SyncOutput();
  }

 private:
  template <typename F, typename In>
  void Apply(F& fn, std::vector<In>& records, std::vector<Timestamp>& timestamps) {
    GuardUserCode(name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        out_.SetTimestamp(timestamps[i]);
        if constexpr (kFlat) {
          std::invoke(fn, std::as_const(records[i]), out_);
        } else {
          out_.Collect(std::invoke(fn, std::move(records[i])));
        }
      }
    });
  }
  void SyncOutput() {
    emitted_.Sync(
        combiner_, [&](bool idle) { out_.EmitWatermarkStatus(idle); },
        [&](Timestamp w) { out_.EmitWatermark(w); });
  }
  WatermarkCombiner combiner_{WatermarkCombiner::Mode::kChannels};
  CombinedOutput emitted_;
  int gates_[2] = {0, 0};
  F1 fn1_;
  F2 fn2_;
  Collector<Out> out_;
  bool ended_[2] = {false, false};
  bool opened_ = false;
};

// Assigns timestamps and generates watermarks (AssignTimestampsAndWatermarks, and the strategy
// given to FromSource). Upstream watermarks and idleness are dropped except the final +infinity,
// as in Flink. Periodic generators emit every auto-watermark interval of processing time; in
// batch mode only the final watermark is emitted, and no idleness.
//
// Idleness: when a generator calls MarkIdle (WithIdleness) the output sends IDLE downstream; a
// record or a watermark makes it ACTIVE again, sent before them.
//
// Per split (SplitConsumers): fused with a source whose reader emits through
// Collector::ForSplit, it runs one generator per split, and its watermark is the minimum over the
// active splits (WatermarkCombiner, kSplits mode); idle when all splits are. The generator of the
// source's main output counts while no split was ever opened or once the reader emitted records
// through it; a subtask whose splits are all released keeps its watermark and, with WithIdleness,
// becomes idle after that timeout.
template <typename T>
class TimestampsAndWatermarksOperator final : public OneInputOperator<T>,
                                              private SplitConsumers<T> {
 public:
  TimestampsAndWatermarksOperator(const OperatorSetup& setup, WatermarkStrategy<T> strategy)
      : OneInputOperator<T>(setup.runtime),
        strategy_(std::move(strategy)),
        clock_(setup.clock),
        interval_(setup.auto_watermark_interval_ms),
        idleness_(ToMillis(strategy_.idleness())),
        out_(setup.batch_size),
        main_(std::make_unique<Input>(this)) {
    WireCollector(out_, setup);
    main_->slot = combiner_.AddInput();
  }

  SplitConsumers<T>* splits() override { return strategy_.has_generator() ? this : nullptr; }

  void Open() override {
    GuardUserCode(this->name(), [&] { main_->generator = strategy_.CreateGenerator(clock_); });
    if (strategy_.has_generator() && !this->ctx_.batch_mode) {
      next_emit_ = clock_->NowMillis() + interval_;
    }
  }

  void Consume(std::vector<T>& records, std::vector<Timestamp>& timestamps) override {
    ConsumeFrom(*main_, records, timestamps);
  }

  void OnWatermark(Timestamp watermark) override {
    if (watermark == kMaxWatermark) EmitFinalWatermark();
  }
  // Idleness from upstream is replaced by this operator's own, as in Flink.
  void OnWatermarkStatus(bool) override {}
  void OnEndOfInput() override {
    EmitFinalWatermark();
    out_.EndInput();
  }

  // What it emitted: after a restore it emits nothing below it (the generators start afresh).
  Timestamp EventTimeProgress() const override { return emitted_.watermark; }
  void RestoreEventTimeProgress(Timestamp watermark) override {
    emitted_.watermark = std::max(emitted_.watermark, watermark);
  }

  Timestamp NextProcessingDeadline() const override { return next_emit_; }
  void OnProcessingTime(Timestamp now) override {
    if (next_emit_ == kMaxWatermark) return;
    // Every generator emits first, then the combined result goes out once.
    deferred_ = true;
    GuardUserCode(this->name(), [&] {
      if (main_->generator != nullptr) main_->generator->OnPeriodicEmit(*main_);
      for (auto& split : splits_) {
        if (split->generator != nullptr) split->generator->OnPeriodicEmit(*split);
      }
    });
    // The main output stands in for a subtask whose splits are all released.
    if (MainStandsIn() && idleness_ > 0 && !combiner_.input_idle(main_->slot) &&
        now - stand_in_since_ >= idleness_) {
      combiner_.SetIdle(main_->slot, true);
    }
    deferred_ = false;
    SyncOutput();
    next_emit_ = now + interval_;
  }

 private:
  // One source of watermarks: the main input, or a split. A WatermarkOutput for its generator.
  struct Input final : public BatchConsumer<T>, public WatermarkOutput {
    explicit Input(TimestampsAndWatermarksOperator* o) : op(o) {}
    void Consume(std::vector<T>& records, std::vector<Timestamp>& timestamps) override {
      op->ConsumeFrom(*this, records, timestamps);
    }
    void OnEndOfInput() override {}
    void OnWatermark(Timestamp) override {}
    void EmitWatermark(Timestamp watermark) override { op->InputWatermark(*this, watermark); }
    void MarkIdle() override { op->InputStatus(*this, true); }
    void MarkActive() override { op->InputStatus(*this, false); }

    TimestampsAndWatermarksOperator* op;
    std::unique_ptr<WatermarkGenerator<T>> generator;
    int slot = -1;  // in combiner_; -1 when it does not take part
    Timestamp watermark = kMinWatermark;
    bool idle = false;
    bool has_records = false;
  };

  // Whether the generator of `in` decides its slot in the combiner.
  bool Counts(const Input& in) const {
    return in.slot >= 0 && (&in != main_.get() || in.has_records || !splits_used_);
  }
  bool MainStandsIn() const { return main_->slot >= 0 && !Counts(*main_); }

  void ConsumeFrom(Input& in, std::vector<T>& records, std::vector<Timestamp>& timestamps) {
    if (records.empty()) return;
    if (&in == main_.get() && !in.has_records) {
      // A reader that uses splits emitted through its main output too: one more input.
      in.has_records = true;
      if (in.slot < 0) in.slot = combiner_.AddInput();
      combiner_.UpdateWatermark(in.slot, in.watermark);
    }
    // A record makes its input active; ACTIVE goes downstream before it.
    in.idle = false;
    if (combiner_.input_idle(in.slot)) combiner_.SetIdle(in.slot, false);
    SyncOutput();
    GuardUserCode(this->name(), [&] {
      if (strategy_.assigner()) {
        strategy_.assigner()(records.data(), timestamps.data(), records.size());
      }
      if (in.generator == nullptr) {
        out_.CollectBatch(records, timestamps);
        return;
      }
      if (!in.generator->EmitsOnEvent()) {
        // A periodic generator: it sees the batch first and the batch goes on whole; were it to
        // emit anyway, the watermark would follow the batch.
        deferred_ = true;
        in.generator->OnEvents(records.data(), timestamps.data(), records.size(), in);
        deferred_ = false;
        out_.CollectBatch(records, timestamps);
        SyncOutput();
        return;
      }
      // The generator sees each event after it was emitted, so a punctuated watermark follows
      // the record that caused it (Flink's order).
      for (size_t i = 0; i < records.size(); ++i) {
        out_.CollectWithTimestamp(records[i], timestamps[i]);
        in.generator->OnEvent(records[i], timestamps[i], in);
      }
    });
    out_.Flush();
  }

  // A generator emitted: that also makes its input active again (as in Flink).
  void InputWatermark(Input& in, Timestamp watermark) {
    bool was_idle = in.idle;
    in.idle = false;
    if (watermark <= in.watermark && !was_idle) return;
    in.watermark = std::max(in.watermark, watermark);
    if (!Counts(in)) return;
    combiner_.SetIdle(in.slot, false);
    combiner_.UpdateWatermark(in.slot, in.watermark);
    SyncOutput();
  }
  void InputStatus(Input& in, bool idle) {
    in.idle = idle;
    if (!Counts(in)) return;
    combiner_.SetIdle(in.slot, idle);
    SyncOutput();
  }

  // --- SplitConsumers ---------------------------------------------------------------------------
  BatchConsumer<T>* AddSplit(std::string_view) override {
    auto split = std::make_unique<Input>(this);
    GuardUserCode(this->name(), [&] { split->generator = strategy_.CreateGenerator(clock_); });
    split->slot = combiner_.AddInput();
    splits_used_ = true;
    if (main_->slot >= 0 && !main_->has_records) {
      combiner_.Release(main_->slot);
      main_->slot = -1;
    }
    splits_.push_back(std::move(split));
    SyncOutput();
    return splits_.back().get();
  }
  void ReleaseSplit(BatchConsumer<T>* consumer) override {
    auto it = std::find_if(splits_.begin(), splits_.end(),
                           [&](const auto& s) { return s.get() == consumer; });
    if (it == splits_.end()) return;
    if (splits_.size() == 1 && main_->slot < 0) {
      // The last split goes: the main output stands in, with the status the subtask has, so
      // that the subtask keeps its watermark and can still become idle.
      bool was_idle = combiner_.idle();
      main_->slot = combiner_.AddInput();
      if (was_idle) combiner_.SetIdle(main_->slot, true);
      stand_in_since_ = clock_->NowMillis();
    }
    combiner_.Release((*it)->slot);
    splits_.erase(it);
    SyncOutput();
  }

  void SyncOutput() {
    if (deferred_ || this->ctx_.batch_mode || emitted_.watermark == kMaxWatermark) return;
    emitted_.Sync(
        combiner_, [&](bool idle) { out_.EmitWatermarkStatus(idle); },
        [&](Timestamp w) { out_.EmitWatermark(w); });
  }
  void EmitFinalWatermark() {
    if (emitted_.watermark == kMaxWatermark) return;
    if (emitted_.idle) {
      emitted_.idle = false;
      out_.EmitWatermarkStatus(false);
    }
    emitted_.watermark = kMaxWatermark;
    out_.EmitWatermark(kMaxWatermark);
  }

  WatermarkStrategy<T> strategy_;
  const Clock* clock_;
  int64_t interval_;
  int64_t idleness_;  // ms; 0 = none
  Collector<T> out_;
  WatermarkCombiner combiner_{WatermarkCombiner::Mode::kSplits};
  CombinedOutput emitted_;
  std::unique_ptr<Input> main_;
  std::vector<std::unique_ptr<Input>> splits_;
  bool splits_used_ = false;
  bool deferred_ = false;
  Timestamp stand_in_since_ = kMinWatermark;
  Timestamp next_emit_ = kMaxWatermark;
};

template <typename T>
class SinkOperator final : public OneInputOperator<T> {
 public:
  SinkOperator(const OperatorSetup& setup, std::unique_ptr<SinkWriter<T>> writer)
      : OneInputOperator<T>(setup.runtime), writer_(std::move(writer)) {}

  void Consume(std::vector<T>& records, std::vector<Timestamp>&) override {
    absl::Status status;
    GuardUserCode(this->name(), [&] { status = writer_->Write(records); });
    if (!status.ok()) throw JobFailure(Annotate(status, this->name()));
  }
  // With final checkpoints the final checkpoint still comes (a two-phase-commit sink pre-commits
  // on it): the writer only hands over what it buffers here, and finishes in EndOfTask.
  void OnEndOfInput() override {
    absl::Status status;
    GuardUserCode(this->name(), [&] { status = writer_->EndOfInput(); });
    if (!status.ok()) throw JobFailure(Annotate(status, this->name()));
  }
  void EndOfTask() override {
    absl::Status status;
    GuardUserCode(this->name(), [&] { status = writer_->Finish(); });
    if (!status.ok()) throw JobFailure(Annotate(status, this->name()));
  }
  void OnWatermark(Timestamp) override {}
  void Close() override {
    try {
      writer_->Close();
    } catch (...) {
    }
  }

  void SnapshotState(int64_t id, OperatorStateSnapshot& out) override {
    absl::StatusOr<std::string> state;
    GuardUserCode(this->name(), [&] { state = writer_->SnapshotState(id); });
    if (!state.ok()) throw JobFailure(Annotate(state.status(), this->name()));
    out.operator_state = std::move(*state);
  }
  void NotifyCheckpointComplete(int64_t id) override {
    absl::Status status;
    GuardUserCode(this->name(), [&] { status = writer_->NotifyCheckpointComplete(id); });
    if (!status.ok()) throw JobFailure(Annotate(status, this->name()));
  }
  absl::Status RestoreState(const OperatorStateRestore& in) override {
    std::vector<std::string> mine;
    const int p = this->ctx_.parallelism;
    for (size_t j = 0; j < in.operator_states.size(); ++j) {
      if (static_cast<int>(j) % p == this->ctx_.subtask_index)
        mine.push_back(in.operator_states[j]);
    }
    absl::Status status;
    try {
      status = writer_->RestoreState(mine);
    } catch (const std::exception& e) {
      status = absl::UnknownError(absl::StrCat("threw: ", e.what()));
    }
    return status.ok() ? status : Annotate(status, this->name());
  }

 private:
  std::unique_ptr<SinkWriter<T>> writer_;
};

// Polls a reader. With a watermark strategy fused after it (SplitConsumers), the reader's
// Collector::ForSplit gets a collector per split that feeds that split's generator.
template <typename T>
class SourceOperator final : public SourceOperatorBase, private SplitRouter<T> {
 public:
  SourceOperator(const OperatorSetup& setup, std::unique_ptr<SourceReader<T>> reader)
      : SourceOperatorBase(setup.runtime),
        reader_(std::move(reader)),
        batch_size_(static_cast<size_t>(setup.batch_size)),
        out_(setup.batch_size) {
    WireCollector(out_, setup);
    std::vector<BatchConsumerBase*> consumers = setup.ConsumersOf("");
    if (consumers.size() == 1) {
      split_consumers_ = static_cast<BatchConsumer<T>*>(consumers[0])->splits();
    }
    if (split_consumers_ != nullptr) out_.SetSplitRouter(this);
  }

  PollResult Poll(int max_records) override {
    absl::StatusOr<PollResult> result;
    GuardUserCode(name(), [&] { result = reader_->PollNext(out_, max_records); });
    out_.Flush();
    for (auto& [id, split] : splits_) split->out.Flush();
    if (!result.ok()) throw JobFailure(Annotate(result.status(), name()));
    return *result;
  }
  void SnapshotState(int64_t id, OperatorStateSnapshot& out) override {
    absl::StatusOr<std::string> state;
    GuardUserCode(name(), [&] { state = reader_->SnapshotState(id); });
    if (!state.ok()) throw JobFailure(Annotate(state.status(), name()));
    out.operator_state = std::move(*state);
  }
  void NotifyCheckpointComplete(int64_t id) override {
    GuardUserCode(name(), [&] { reader_->NotifyCheckpointComplete(id); });
  }
  // At the same parallelism subtask i continues from old subtask i's position; at another one
  // every subtask gets every old state (SourceReader::RestoreRescaled), if the reader can.
  absl::Status RestoreState(const OperatorStateRestore& in) override {
    absl::Status status;
    try {
      if (in.old_parallelism != ctx_.parallelism) {
        status = reader_->RestoreRescaled(in.operator_states);
        if (absl::IsUnimplemented(status)) {
          return absl::FailedPreconditionError(absl::StrCat(
              "source '", name(), "' was checkpointed with parallelism ", in.old_parallelism,
              " and cannot resume with parallelism ", ctx_.parallelism, ": ", status.message()));
        }
      } else {
        status = reader_->RestoreState(in.operator_states[static_cast<size_t>(ctx_.subtask_index)]);
      }
    } catch (const std::exception& e) {
      status = absl::UnknownError(absl::StrCat("threw: ", e.what()));
    }
    return status.ok() ? status : Annotate(status, name());
  }

  // End of a bounded input: event time jumps to +infinity so every event-time window and timer
  // downstream fires (as Flink's sources do), then the end of input follows.
  void EndInput() override {
    out_.EmitWatermark(kMaxWatermark);
    out_.EndInput();
  }
  void Close() override {
    try {
      reader_->Close();
    } catch (...) {
    }
  }

 private:
  struct Split {
    explicit Split(size_t batch_size) : out(batch_size) {}
    Collector<T> out;
    BatchConsumer<T>* consumer = nullptr;
  };

  // --- SplitRouter -------------------------------------------------------------------------------
  Collector<T>& ForSplit(std::string_view split_id) override {
    auto it = splits_.find(absl::string_view(split_id.data(), split_id.size()));
    if (it != splits_.end()) return it->second->out;
    auto split = std::make_unique<Split>(batch_size_);
    split->consumer = split_consumers_->AddSplit(split_id);
    split->out.AddConsumer(split->consumer);
    return splits_.emplace(std::string(split_id), std::move(split)).first->second->out;
  }
  void ReleaseSplit(std::string_view split_id) override {
    auto it = splits_.find(absl::string_view(split_id.data(), split_id.size()));
    if (it == splits_.end()) return;
    it->second->out.Flush();
    split_consumers_->ReleaseSplit(it->second->consumer);
    splits_.erase(it);
  }

  std::unique_ptr<SourceReader<T>> reader_;
  size_t batch_size_;
  Collector<T> out_;
  SplitConsumers<T>* split_consumers_ = nullptr;
  absl::flat_hash_map<std::string, std::unique_ptr<Split>> splits_;
};

}  // namespace sluice::internal
