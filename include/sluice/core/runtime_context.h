// RuntimeContext: what a running operator instance (a subtask) knows about itself.
//
//   class Enrich : public sluice::ProcessFunction<Click, Click> {
//     void Open(const sluice::RuntimeContext& ctx) override {
//       shard_ = ctx.subtask_index;
//       seen_ = ctx.GetOperatorListState(sluice::ListStateDescriptor<int64_t>("seen"));
//     }
//     ...
//   };
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/core/counters.h>
#include <sluice/internal/operator_state_store.h>
#include <sluice/state/keyed_state.h>

namespace sluice {

struct RuntimeContext {
  // Name of the operator, as set with Name() or its default ("Map", "Source: numbers", ...).
  std::string operator_name;
  // Name of the task (the chain of operators) this subtask runs in, with "(i/n)" appended.
  std::string task_name;
  int subtask_index = 0;  // [0, parallelism)
  int parallelism = 1;
  int max_parallelism = 128;
  // True when the job runs in ExecutionMode::kBatch (resolved, never kAutomatic).
  bool batch_mode = false;
  // The job's counters (never null inside a running job).
  Counters* counters = nullptr;
  // Keyed state of this subtask; null outside operators on a KeyedStream.
  internal::KeyedStateStore* keyed_state = nullptr;
  // Operator (non-keyed) state of this subtask; null outside non-keyed user function operators.
  internal::OperatorStateStore* operator_state = nullptr;
  // True when this subtask was restored from a checkpoint or savepoint (set before Open).
  bool restored = false;
  // The operator's node in the job graph (tells apart two operators of the same name).
  int node_id = -1;

  // This subtask's cell of the job counter "<operator_name>.<name>" (Flink's
  // getMetricGroup().counter(name)): call in Open and keep the pointer; Inc() it from the
  // function's calls. Read, summed over subtasks, with JobHandle::Counters() while the job runs.
  // Calling it again with the same name returns the same cell. Outside a running job (no
  // counters) the job fails with FailedPrecondition naming the operator and the counter.
  Counter* GetCounter(absl::string_view name) const {
    if (counters == nullptr) {
      internal::ThrowStateError(absl::FailedPreconditionError(
          absl::StrCat("operator '", operator_name, "': counter '", name,
                       "': this RuntimeContext belongs to no running job (no counters)")));
    }
    return counters->Register(operator_name, name, node_id, subtask_index);
  }

  // Keyed state of the current key (Flink's getRuntimeContext().getState(...)); call in Open and
  // keep the handle. Only in functions on a KeyedStream: elsewhere the job fails with
  // FailedPrecondition naming the operator and the state.
  template <typename T>
  ValueState<T> GetState(const ValueStateDescriptor<T>& d) const {
    return Access().GetState(d);
  }
  template <typename T>
  ListState<T> GetListState(const ListStateDescriptor<T>& d) const {
    return Access().GetListState(d);
  }
  template <typename UK, typename UV>
  MapState<UK, UV> GetMapState(const MapStateDescriptor<UK, UV>& d) const {
    return Access().GetMapState(d);
  }
  template <typename T, typename F>
  ReducingState<T> GetReducingState(const ReducingStateDescriptor<T, F>& d) const {
    return Access().GetReducingState(d);
  }
  template <typename Agg>
  auto GetAggregatingState(const AggregatingStateDescriptor<Agg>& d) const {
    return Access().GetAggregatingState(d);
  }

  // --- Operator state (Flink's CheckpointedFunction / OperatorStateStore) ----------------------
  // Only in functions of non-keyed Map, FlatMap, Filter and Process (and BroadcastProcess);
  // elsewhere the job fails with FailedPrecondition naming the operator and the state. Call in
  // Open and keep the handle; a function may also define `void SnapshotState(int64_t
  // checkpoint_id)`, called at every checkpoint before the state is captured, to copy its members
  // into state.

  // List state redistributed evenly when the job is restored with another parallelism.
  template <typename T>
  ListState<T> GetOperatorListState(const ListStateDescriptor<T>& d) const {
    return OperatorState(d.name).GetListState(d, internal::OperatorStateMode::kSplit,
                                              operator_name);
  }
  // List state of which every subtask gets all elements (of all old subtasks) on restore.
  template <typename T>
  ListState<T> GetUnionListState(const ListStateDescriptor<T>& d) const {
    return OperatorState(d.name).GetListState(d, internal::OperatorStateMode::kUnion,
                                              operator_name);
  }
  // True when the subtask resumes from a checkpoint or savepoint (Flink's isRestored()).
  bool IsRestored() const { return restored; }

 private:
  internal::OperatorStateStore& OperatorState(const std::string& state) const {
    if (operator_state == nullptr) {
      internal::ThrowStateError(absl::FailedPreconditionError(absl::StrCat(
          "operator '", operator_name, "': state '", state,
          "': operator state (GetOperatorListState / GetUnionListState) is only available in "
          "functions of non-keyed operators (Map, FlatMap, Filter, Process on a DataStream, "
          "BroadcastProcessFunction)")));
    }
    return *operator_state;
  }

  StateAccess<internal::VoidNamespace> Access() const {
    return StateAccess<internal::VoidNamespace>(keyed_state, &internal::kNoNamespace,
                                                &operator_name);
  }
};

namespace internal {

// A counter cell an operator registers when it is built ("<operator>.<name>"); outside a running
// job (an operator built by a test) a private cell.
class OperatorCounter {
 public:
  OperatorCounter(const RuntimeContext& ctx, absl::string_view name)
      : cell_(ctx.counters != nullptr
                  ? ctx.counters->Register(ctx.operator_name, name, ctx.node_id, ctx.subtask_index)
                  : &own_) {}
  void Inc(int64_t n = 1) { cell_->Inc(n); }
  int64_t Count() const { return cell_->Count(); }

 private:
  Counter own_;
  Counter* cell_;
};

}  // namespace internal
}  // namespace sluice
