// The broadcast state pattern (Flink's "The Broadcast State Pattern"): one stream broadcast to
// every parallel instance of an operator, which keeps what it learned from it in broadcast state.
//
//   const sluice::MapStateDescriptor<std::string, Rule> kRules("rules");
//   auto alerts = events.KeyBy([](const Event& e) { return e.user; })
//                     .Connect(rules.Broadcast(kRules))
//                     .Process(MatchRules());  // a KeyedBroadcastProcessFunction<...>
//
// `stream.Broadcast(descriptors...)` gives a BroadcastStream; connecting a DataStream to it takes
// a BroadcastProcessFunction<In1, In2, Out>, connecting a KeyedStream a
// KeyedBroadcastProcessFunction<K, In1, In2, Out> (api/functions.h).
#pragma once

#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/api/data_stream.h>
#include <sluice/api/functions.h>
#include <sluice/internal/broadcast_operators.h>
#include <sluice/state/state.h>

namespace sluice {

// A stream whose records go to every parallel instance of the operator it is connected to,
// together with the broadcast states (MapStateDescriptor<K, V>) that operator keeps. A value
// handle, as DataStream.
template <typename T>
class BroadcastStream {
 public:
  BroadcastStream(DataStream<T> stream, std::vector<internal::BroadcastStateDecl> decls)
      : stream_(std::move(stream)), decls_(std::move(decls)) {}

  // Internal.
  const DataStream<T>& stream() const { return stream_; }
  const std::vector<internal::BroadcastStateDecl>& descriptors() const { return decls_; }

 private:
  DataStream<T> stream_;
  std::vector<internal::BroadcastStateDecl> decls_;
};

namespace internal {

template <typename D>
struct IsMapStateDescriptor : std::false_type {};
template <typename UK, typename UV>
struct IsMapStateDescriptor<MapStateDescriptor<UK, UV>> : std::true_type {};

// The output type of a broadcast process function: F::OutputType, or given explicitly.
template <typename Out, typename F>
struct BroadcastProcessOutput {
  using type = Out;
};
template <typename F>
  requires requires { typename F::OutputType; }
struct BroadcastProcessOutput<Deduce, F> {
  using type = typename F::OutputType;
};

}  // namespace internal

// A DataStream connected to a BroadcastStream: Process runs a BroadcastProcessFunction.
template <typename T1, typename T2>
class BroadcastConnectedStream {
 public:
  BroadcastConnectedStream(DataStream<T1> first, BroadcastStream<T2> broadcast)
      : first_(std::move(first)), broadcast_(std::move(broadcast)) {}

  // A class derived from BroadcastProcessFunction<T1, T2, Out> (or any copyable class with its
  // ProcessElement / ProcessBroadcastElement; then write Process<Out>(fn)).
  template <typename Out = internal::Deduce, typename F>
  auto Process(F fn) const {
    static_assert(requires { typename internal::BroadcastProcessOutput<Out, F>::type; },
                  "Process cannot deduce Out: derive from sluice::BroadcastProcessFunction<In1, "
                  "In2, Out> or write Process<Out>(fn)");
    using O = typename internal::BroadcastProcessOutput<Out, F>::type;
    static_assert(std::copy_constructible<F>, "a process function must be copyable");
    static_assert(
        requires(F& f, const T1& a, const T2& b, BroadcastReadOnlyContext& ro,
                 BroadcastContext& rw, Collector<O>& out) {
          f.ProcessElement(a, ro, out);
          f.ProcessBroadcastElement(b, rw, out);
        },
        "Process on a stream connected to a BroadcastStream needs a "
        "sluice::BroadcastProcessFunction<In1, In2, Out> with ProcessElement(const In1&, "
        "ReadOnlyContext&, Collector<Out>&) and ProcessBroadcastElement(const In2&, Context&, "
        "Collector<Out>&)");
    std::vector<internal::BroadcastStateDecl> decls = broadcast_.descriptors();
    return ConnectedStreams<T1, T2>(first_, broadcast_.stream())
        .template Add<O>("Broadcast Process", [fn, decls](internal::OperatorSetup& s) {
          return absl::StatusOr<std::unique_ptr<internal::OperatorBase>>(
              std::make_unique<internal::BroadcastProcessOperator<T1, T2, O, F>>(s, fn, decls));
        });
  }

 private:
  DataStream<T1> first_;
  BroadcastStream<T2> broadcast_;
};

// A KeyedStream connected to a BroadcastStream: Process runs a KeyedBroadcastProcessFunction.
template <typename K, typename T1, typename T2, typename KS>
class KeyedBroadcastConnectedStream {
 public:
  KeyedBroadcastConnectedStream(KeyedStream<K, T1, KS> first, BroadcastStream<T2> broadcast)
      : first_(std::move(first)), broadcast_(std::move(broadcast)) {}

  // A class derived from KeyedBroadcastProcessFunction<K, T1, T2, Out> (or any copyable class
  // with its ProcessElement / ProcessBroadcastElement, and OnTimer if it uses timers; then write
  // Process<Out>(fn)).
  template <typename Out = internal::Deduce, typename F>
  auto Process(F fn) const {
    static_assert(requires { typename internal::BroadcastProcessOutput<Out, F>::type; },
                  "Process cannot deduce Out: derive from sluice::KeyedBroadcastProcessFunction<K, "
                  "In1, In2, Out> or write Process<Out>(fn)");
    using O = typename internal::BroadcastProcessOutput<Out, F>::type;
    static_assert(std::copy_constructible<F>, "a process function must be copyable");
    static_assert(
        requires(F& f, const T1& a, const T2& b, KeyedBroadcastReadOnlyContext<K>& ro,
                 KeyedBroadcastContext<K>& rw, Collector<O>& out) {
          f.ProcessElement(a, ro, out);
          f.ProcessBroadcastElement(b, rw, out);
        },
        "Process on a KeyedStream connected to a BroadcastStream needs a "
        "sluice::KeyedBroadcastProcessFunction<K, In1, In2, Out> with ProcessElement(const In1&, "
        "ReadOnlyContext&, Collector<Out>&) and ProcessBroadcastElement(const In2&, Context&, "
        "Collector<Out>&)");
    std::vector<internal::BroadcastStateDecl> decls = broadcast_.descriptors();
    KS ks = first_.key_selector();
    return ConnectedStreams<T1, T2>(first_, broadcast_.stream())
        .template Add<O>("Keyed Broadcast Process", [ks, fn, decls](internal::OperatorSetup& s) {
          return absl::StatusOr<std::unique_ptr<internal::OperatorBase>>(
              std::make_unique<internal::KeyedBroadcastProcessOperator<K, T1, T2, O, KS, F>>(
                  s, ks, fn, decls));
        });
  }

 private:
  KeyedStream<K, T1, KS> first_;
  BroadcastStream<T2> broadcast_;
};

// --- DataStream / KeyedStream members ------------------------------------------------------------

template <typename T>
template <typename D, typename... Ds>
BroadcastStream<T> DataStream<T>::Broadcast(const D& descriptor, const Ds&... descriptors) const {
  static_assert(internal::IsMapStateDescriptor<D>::value &&
                    (internal::IsMapStateDescriptor<Ds>::value && ...),
                "Broadcast(descriptors...) takes sluice::MapStateDescriptor<K, V>s (broadcast "
                "state is a map)");
  std::vector<internal::BroadcastStateDecl> decls;
  auto add = [&](const auto& d) {
    internal::BroadcastStateDecl decl = internal::MakeBroadcastStateDecl(d);
    if (decl.name.empty()) {
      env_->RecordError(absl::InvalidArgumentError(
          "Broadcast(): a broadcast state descriptor has an empty name"));
      return;
    }
    for (const auto& other : decls) {
      if (other.name != decl.name) continue;
      if (*other.type != *decl.type) {
        env_->RecordError(absl::InvalidArgumentError(
            absl::StrCat("Broadcast(): broadcast state '", decl.name,
                         "' is declared twice with different key or value types")));
      }
      return;
    }
    decls.push_back(std::move(decl));
  };
  add(descriptor);
  (add(descriptors), ...);
  return BroadcastStream<T>(Partitioned(internal::Partitioning::kBroadcast), std::move(decls));
}

template <typename T>
template <typename U>
BroadcastConnectedStream<T, U> DataStream<T>::Connect(const BroadcastStream<U>& broadcast) const {
  return BroadcastConnectedStream<T, U>(*this, broadcast);
}

template <typename K, typename T, typename KS>
template <typename U>
KeyedBroadcastConnectedStream<K, T, U, KS> KeyedStream<K, T, KS>::Connect(
    const BroadcastStream<U>& broadcast) const {
  return KeyedBroadcastConnectedStream<K, T, U, KS>(*this, broadcast);
}

}  // namespace sluice
