// RuntimeContext: what a running operator instance (a subtask) knows about itself.
//
//   class Enrich : public sluice::ProcessFunction<Click, Click> {
//     void Open(const sluice::RuntimeContext& ctx) override { shard_ = ctx.subtask_index; }
//     ...
//   };
#pragma once

#include <string>

#include <sluice/core/counters.h>
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

 private:
  StateAccess<internal::VoidNamespace> Access() const {
    return StateAccess<internal::VoidNamespace>(keyed_state, &internal::kNoNamespace,
                                                &operator_name);
  }
};

}  // namespace sluice
