// StateAccess: where user functions get keyed state handles — RuntimeContext (per key), and a
// window function's context (WindowState(): per key and window; GlobalState(): per key).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/internal/keyed_state_backend.h>
#include <sluice/state/state.h>

namespace sluice {

namespace internal {
inline const NamespaceSlot<VoidNamespace> kNoNamespace{};
}  // namespace internal

// Handles for one namespace (none, or the current window). Getting a handle for a name that
// exists returns the same state; a name registered with another kind, type or TTL fails the job
// with FailedPrecondition naming the operator and the state.
template <typename N>
class StateAccess {
 public:
  StateAccess(internal::KeyedStateStore* store, const internal::NamespaceSlot<N>* ns,
              const std::string* operator_name)
      : store_(store), ns_(ns), operator_name_(operator_name) {}

  template <typename T>
  ValueState<T> GetState(const ValueStateDescriptor<T>& d) const {
    return Store(d.name)->template GetValueState<N>(d, ns_);
  }
  template <typename T>
  ListState<T> GetListState(const ListStateDescriptor<T>& d) const {
    return Store(d.name)->template GetListState<N>(d, ns_);
  }
  template <typename UK, typename UV>
  MapState<UK, UV> GetMapState(const MapStateDescriptor<UK, UV>& d) const {
    return Store(d.name)->template GetMapState<N>(d, ns_);
  }
  template <typename T, typename F>
  ReducingState<T> GetReducingState(const ReducingStateDescriptor<T, F>& d) const {
    return Store(d.name)->template GetReducingState<N>(d, ns_);
  }
  template <typename Agg>
  auto GetAggregatingState(const AggregatingStateDescriptor<Agg>& d) const {
    return Store(d.name)->template GetAggregatingState<N>(d, ns_);
  }

 private:
  internal::KeyedStateStore* Store(const std::string& state) const {
    if (store_ == nullptr) {
      internal::ThrowStateError(absl::FailedPreconditionError(absl::StrCat(
          "operator '", operator_name_ ? *operator_name_ : std::string("?"), "': state '", state,
          "': keyed state is only available in functions applied to a KeyedStream (KeyBy)")));
    }
    return store_;
  }
  internal::KeyedStateStore* store_;
  const internal::NamespaceSlot<N>* ns_;
  const std::string* operator_name_;
};

}  // namespace sluice
