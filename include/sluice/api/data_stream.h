// DataStream<T>, KeyedStream<K, T> and DataStreamSink<T>: the typed, Flink-style API.
//
//   auto counts = env.FromSource(sluice::TextFileSource("book.txt"))
//                     .FlatMap([](const std::string& line, sluice::Collector<std::string>& out) {
//                       for (auto w : absl::StrSplit(line, ' ', absl::SkipEmpty()))
//                         out.Collect(std::string(w));
//                     })
//                     .Map([](const std::string& w) { return std::pair(w, int64_t{1}); })
//                     .KeyBy([](const auto& p) { return p.first; })
//                     .Reduce([](const auto& a, const auto& b) {
//                       return std::pair(a.first, a.second + b.second); });
//   counts.SinkTo(sluice::PrintSink<std::pair<std::string, int64_t>>());
//
// Streams are cheap value handles onto the job graph of their environment. Operators apply to all
// parallel subtasks; each subtask gets its own copy of the user function.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

#include <sluice/api/concepts.h>
#include <sluice/api/functions.h>
#include <sluice/api/stream_environment.h>
#include <sluice/connectors/collection_source.h>
#include <sluice/connectors/sink.h>
#include <sluice/connectors/source.h>
#include <sluice/core/output_tag.h>
#include <sluice/internal/exchange.h>
#include <sluice/internal/co_process_operators.h>
#include <sluice/internal/graph.h>
#include <sluice/internal/operators.h>
#include <sluice/time/watermark_strategy.h>

namespace sluice {

namespace internal {

// A key selector behind a std::function: what KeyedStream<K, T> (the type spelled without its
// selector) holds. KeyBy returns KeyedStream<K, T, F> with the lambda's own type, which inlines.
template <typename K, typename T>
struct ErasedKeySelector {
  std::function<K(const T&)> fn;
  K operator()(const T& v) const { return fn(v); }
};

// What KeyBy returns when its key type is not a Key, after a static_assert said why.
struct NotAKey {};

}  // namespace internal

template <typename K, typename T, typename KS = internal::ErasedKeySelector<K, T>>
class KeyedStream;
template <typename T>
class DataStreamSink;
template <typename T1, typename T2>
class ConnectedStreams;
template <typename A, typename B, bool kJoin>
class TwoInputWindowBuilder;
template <typename K, typename T1, typename T2, typename KS1, typename KS2>
class KeyedConnectedStreams;
template <typename T>
class BroadcastStream;
template <typename T1, typename T2>
class BroadcastConnectedStream;
template <typename K, typename T1, typename T2, typename KS>
class KeyedBroadcastConnectedStream;

namespace internal {

// One upstream output that feeds a stream: the main output ("" tag) or a side output of a node,
// with the partitioning of the edges into the next operator. Each input of a union keeps its own.
struct StreamPort {
  int node;
  std::string tag;
  Partitioning partitioning = Partitioning::kDefault;
  WriterFactory make_writer;  // null: the stream's MakeWriter<T>
};

}  // namespace internal

template <typename T>
class DataStream {
 public:
  using value_type = T;

  DataStream(StreamEnvironment* env, std::vector<internal::StreamPort> ports)
      : env_(env), ports_(std::move(ports)), generation_(env->graph().generation) {
    for (internal::StreamPort& p : ports_) {
      if (!p.make_writer) p.make_writer = &internal::MakeWriter<T>;
    }
  }

  // --- Transformations -------------------------------------------------------------------------

  // One output per input: `fn(value) -> Out`.
  template <typename F>
    requires MapFunction<F, T>
  auto Map(F fn) const {
    using Out = std::remove_cvref_t<std::invoke_result_t<F&, T&&>>;
    return Transform<Out>("Map", [fn](internal::OperatorSetup& s) {
      return Made(std::make_unique<internal::MapOperator<T, Out, F>>(s, fn));
    });
  }

  // Keeps the records for which `fn(value)` is true.
  template <typename F>
    requires FilterFunction<F, T>
  DataStream<T> Filter(F fn) const {
    return Transform<T>("Filter", [fn](internal::OperatorSetup& s) {
      return Made(std::make_unique<internal::FilterOperator<T, F>>(s, fn));
    });
  }

  // Zero or more outputs per input: `fn(value, Collector<Out>& out)`. Out is deduced from the
  // collector parameter of a non-generic lambda, or given: `FlatMap<std::string>(fn)`.
  template <typename Out = internal::Deduce, typename F>
  auto FlatMap(F fn) const {
    static_assert(internal::OutputKnown<Out, F, 1>,
                  "FlatMap cannot deduce Out: the function's second parameter must be "
                  "sluice::Collector<Out>&; for a generic lambda write FlatMap<Out>(fn)");
    using O = typename internal::OutputOrDeduced<Out, F, 1>::type;
    static_assert(FlatMapFunction<F, T, O>,
                  "FlatMap needs a function (const T&, sluice::Collector<Out>&)");
    return Transform<O>("Flat Map", [fn](internal::OperatorSetup& s) {
      return Made(std::make_unique<internal::FlatMapOperator<T, O, F>>(s, fn));
    });
  }

  // A process function: a class derived from ProcessFunction<T, Out>, or a lambda
  // `(const T&, ProcessContext&, Collector<Out>&)`. Side outputs go through ctx.Output(tag, v).
  template <typename Out = internal::Deduce, typename F>
  auto Process(F fn) const {
    static_assert(kProcessOutputKnown<Out, F>,
                  "Process cannot deduce Out: derive from sluice::ProcessFunction<In, Out>, give "
                  "the lambda a sluice::Collector<Out>& third parameter, or write Process<Out>(fn)");
    using O = typename ProcessOutput<Out, F>::type;
    static_assert(std::copy_constructible<F>, "a process function must be copyable");
    return Transform<O>("Process", [fn](internal::OperatorSetup& s) {
      return Made(std::make_unique<internal::ProcessOperator<T, O, F>>(s, fn));
    });
  }

  // Gives records event timestamps and generates watermarks from them with `strategy`. Chained
  // to the operator before it; watermarks from upstream are replaced (except the final one).
  DataStream<T> AssignTimestampsAndWatermarks(WatermarkStrategy<T> strategy) const {
    return Transform<T>("Timestamps/Watermarks", [strategy](internal::OperatorSetup& s) {
      return Made(std::make_unique<internal::TimestampsAndWatermarksOperator<T>>(s, strategy));
    });
  }

  // Partitions by key: every record with the same key goes to the same subtask. The key type must
  // be copyable, have operator== and a hash (sluice::Key); when it lacks one, the error names
  // this call and says what to add.
  template <typename F>
    requires std::copy_constructible<F> && std::invocable<const F&, const T&>
  auto KeyBy(F key_selector) const {
    using K = KeyOf<F, T>;
    static_assert(std::copy_constructible<K>, "KeyBy: the key type must be copyable");
    static_assert(std::equality_comparable<K>,
                  "KeyBy: the key type has no operator==: add `bool operator==(const YourKey&) "
                  "const = default;` to it");
    static_assert(AbslHashable<K>,
                  "KeyBy: the key type has no hash: add `template <typename H> friend H "
                  "AbslHashValue(H h, const YourKey& k) { return H::combine(std::move(h), "
                  "k.field1, k.field2); }` to it (Abseil's hashing protocol; Sluice hashes it "
                  "with a stable seed, so key groups are the same in every process)");
    if constexpr (Key<K>) {
      return KeyedStream<K, T, F>(*this, std::move(key_selector));
    } else {
      return internal::NotAKey{};  // only after the static_assert above: keeps the errors short
    }
  }

  // The records of this stream and of `others` (same type) as one stream.
  template <typename... Others>
    requires(std::same_as<Others, DataStream<T>> && ...)
  DataStream<T> Union(const Others&... others) const {
    DataStream<T> result = *this;
    auto add = [&](const DataStream<T>& other) {
      if (other.env_ != env_) {
        env_->RecordError(absl::InvalidArgumentError(
            "Union(): the streams belong to different StreamEnvironments"));
      } else if (other.IsCurrent("Union()")) {
        result.ports_.insert(result.ports_.end(), other.ports_.begin(), other.ports_.end());
      }
    };
    (add(others), ...);
    return result;
  }

  // --- Partitioning (apply to the edge into the next operator) -----------------------------------
  DataStream<T> Rebalance() const { return Partitioned(internal::Partitioning::kRebalance); }
  DataStream<T> Shuffle() const { return Partitioned(internal::Partitioning::kShuffle); }
  DataStream<T> Broadcast() const { return Partitioned(internal::Partitioning::kBroadcast); }
  // Every record to every subtask of the operator it is connected to, with broadcast state
  // `descriptors` (MapStateDescriptor<K, V>...) for its broadcast process function
  // (api/broadcast.h): `stream.Connect(rules.Broadcast(desc)).Process(fn)`.
  template <typename D, typename... Ds>
  BroadcastStream<T> Broadcast(const D& descriptor, const Ds&... descriptors) const;
  DataStream<T> Forward() const { return Partitioned(internal::Partitioning::kForward); }

  // --- Properties of the operator that produced this stream -------------------------------------
  DataStream<T> SetParallelism(int parallelism) const {
    if (internal::StreamNode* n = ProducerNode("SetParallelism")) {
      if (parallelism < 1) {
        env_->RecordError(absl::InvalidArgumentError(absl::StrCat(
            "operator '", n->name, "': parallelism must be >= 1, got ", parallelism)));
      } else {
        n->parallelism = parallelism;
      }
    }
    return *this;
  }
  DataStream<T> Name(std::string name) const {
    if (internal::StreamNode* n = ProducerNode("Name")) n->name = std::move(name);
    return *this;
  }
  // A stable id for the operator's state in savepoints (Flink's uid()): set it on every stateful
  // operator of a job that will be upgraded, and keep it across versions; the state then finds
  // its operator however the job around it changes. Without it the id derives from the
  // operator's place in the graph (docs/checkpointing.md "Changing a job"). Unique per job.
  DataStream<T> Uid(std::string uid) const {
    if (internal::StreamNode* n = ProducerNode("Uid")) SetUid(*n, std::move(uid));
    return *this;
  }
  // The operator's id itself, 32 hex digits as a refused restore names it (Flink's setUidHash):
  // for state saved by a job without uids that this operator should take over.
  DataStream<T> UidHash(std::string hex) const {
    if (internal::StreamNode* n = ProducerNode("UidHash")) n->uid_hash = std::move(hex);
    return *this;
  }

  // The side output `tag` of the operator that produced this stream.
  template <typename S>
  DataStream<S> GetSideOutput(const OutputTag<S>& tag) const {
    if (tag.id().empty()) {
      env_->RecordError(absl::InvalidArgumentError(
          "GetSideOutput(): an OutputTag needs a non-empty id (\"\" is the main output)"));
      return DataStream<S>(env_, {});
    }
    internal::StreamNode* n = ProducerNode("GetSideOutput");
    if (n == nullptr) return DataStream<S>(env_, {});
    if (n->is_source) {
      env_->RecordError(absl::InvalidArgumentError(
          absl::StrCat("GetSideOutput('", tag.id(), "'): source '", n->name,
                       "' has no side outputs")));
      return DataStream<S>(env_, {});
    }
    const std::type_info* existing = n->SideOutputType(tag.id());
    if (existing == nullptr) {
      n->side_outputs.emplace_back(tag.id(), [](size_t batch_size) {
        return std::unique_ptr<internal::CollectorBase>(new Collector<S>(batch_size));
      });
    } else if (*existing != typeid(S)) {
      env_->RecordError(absl::InvalidArgumentError(
          absl::StrCat("operator '", n->name, "': side output '", tag.id(),
                       "' is requested with two different types")));
    }
    return DataStream<S>(env_, {{n->id, tag.id()}});
  }

  // --- Sinks ----------------------------------------------------------------------------------
  template <typename S>
    requires std::derived_from<S, Sink<T>>
  DataStreamSink<T> SinkTo(S sink) const;

  // --- Internal ---------------------------------------------------------------------------------
  StreamEnvironment* env() const { return env_; }
  const std::vector<internal::StreamPort>& ports() const { return ports_; }

  // This stream with every port's edge partitioned by `p`, written by `make_writer`.
  DataStream<T> Partitioned(internal::Partitioning p,
                            internal::WriterFactory make_writer = &internal::MakeWriter<T>) const {
    DataStream<T> result = *this;
    for (internal::StreamPort& port : result.ports_) {
      port.partitioning = p;
      port.make_writer = make_writer;
    }
    return result;
  }

  // True when this stream belongs to the job being described; otherwise records the misuse (the
  // stream was described for a job that Execute() already consumed).
  bool IsCurrent(absl::string_view what) const {
    if (generation_ == env_->graph().generation) return true;
    env_->RecordError(absl::FailedPreconditionError(
        absl::StrCat(what, ": the stream belongs to a job that was already executed")));
    return false;
  }

  // Adds an operator fed by this stream and returns its output stream.
  template <typename Out>
  DataStream<Out> Transform(std::string name, internal::OperatorFactory factory) const {
    int id = AddNode(std::move(name), std::move(factory), &typeid(Out));
    return DataStream<Out>(env_, {{id, ""}});
  }

  int AddNode(std::string name, internal::OperatorFactory factory,
              const std::type_info* output_type) const {
    internal::StreamGraph& g = env_->graph();
    internal::StreamNode node;
    node.id = static_cast<int>(g.nodes.size());
    node.kind = name.substr(0, name.find_first_of(":("));
    node.name = std::move(name);
    node.output_type = output_type;
    node.make_operator = std::move(factory);
    g.nodes.push_back(std::move(node));
    if (generation_ == g.generation ||
        IsCurrent(absl::StrCat("operator '", g.nodes.back().name, "'"))) {
      for (const internal::StreamPort& p : ports_) {
        g.edges.push_back({p.node, p.tag, g.nodes.back().id, 0, p.partitioning, p.make_writer});
      }
    }
    return g.nodes.back().id;
  }

  // Adds this stream's edges into `node` on input `gate` (the second input of a two-input node).
  void AddInputEdges(int node, int gate) const {
    internal::StreamGraph& g = env_->graph();
    if (!IsCurrent("Connect()")) return;
    for (const internal::StreamPort& p : ports_) {
      g.edges.push_back({p.node, p.tag, node, gate, p.partitioning, p.make_writer});
    }
  }

  // Windows over the whole stream, in one subtask (api/windowed_stream.h).
  template <typename Assigner>
  auto WindowAll(Assigner assigner) const;
  auto CountWindowAll(int64_t size) const;
  auto CountWindowAll(int64_t size, int64_t slide) const;

  // Window join and co-group with `other` (api/join.h):
  //   a.Join(b).Where(key_a).EqualTo(key_b).Window(assigner).Apply(fn)
  template <typename U>
  TwoInputWindowBuilder<T, U, true> Join(const DataStream<U>& other) const;
  template <typename U>
  TwoInputWindowBuilder<T, U, false> CoGroup(const DataStream<U>& other) const;

  // Two streams of possibly different types, processed by one operator (CoMap / CoFlatMap).
  template <typename U>
  ConnectedStreams<T, U> Connect(const DataStream<U>& other) const {
    return ConnectedStreams<T, U>(*this, other);
  }
  // With a broadcast stream (api/broadcast.h): Process takes a BroadcastProcessFunction.
  template <typename U>
  BroadcastConnectedStream<T, U> Connect(const BroadcastStream<U>& broadcast) const;

 protected:
  template <typename Op>
  static absl::StatusOr<std::unique_ptr<internal::OperatorBase>> Made(std::unique_ptr<Op> op) {
    return std::unique_ptr<internal::OperatorBase>(std::move(op));
  }

  template <typename Out, typename F>
  struct ProcessOutput {
    using type = Out;
  };
  template <typename F>
    requires requires { typename F::OutputType; }
  struct ProcessOutput<internal::Deduce, F> {
    using type = typename F::OutputType;
  };
  template <typename F>
    requires(!requires { typename F::OutputType; })
  struct ProcessOutput<internal::Deduce, F> : internal::DeducedOutputOf<F, 2> {};
  template <typename Out, typename F>
  static constexpr bool kProcessOutputKnown = requires { typename ProcessOutput<Out, F>::type; };

  void SetUid(internal::StreamNode& n, std::string uid) const {
    if (uid.empty()) {
      env_->RecordError(absl::InvalidArgumentError(
          absl::StrCat("operator '", n.name, "': Uid(\"\"): a uid must not be empty")));
    } else {
      n.uid = std::move(uid);
    }
  }

  internal::StreamNode* ProducerNode(const char* what) const {
    if (!IsCurrent(absl::StrCat(what, "()"))) return nullptr;
    if (ports_.size() != 1 || !ports_[0].tag.empty()) {
      env_->RecordError(absl::InvalidArgumentError(absl::StrCat(
          what, "() applies to the output of one operator, not to a union or a side output")));
      return nullptr;
    }
    internal::StreamNode* n = &env_->graph().nodes[static_cast<size_t>(ports_[0].node)];
    if (n->follows >= 0) n = &env_->graph().nodes[static_cast<size_t>(n->follows)];
    return n;
  }

  template <typename U>
  friend class DataStream;

  StreamEnvironment* env_;
  std::vector<internal::StreamPort> ports_;
  uint64_t generation_;  // the StreamGraph::generation this stream was described in
};

// A stream partitioned by key. Keyed operators see every record of a key in one subtask.
// `KS` is the key selector's type (a lambda inlines); KeyedStream<K, T> erases it.
template <typename K, typename T, typename KS>
class KeyedStream : public DataStream<T> {
 public:
  using key_type = K;

  KeyedStream(const DataStream<T>& input, KS key_selector)
      : DataStream<T>(input.Partitioned(internal::Partitioning::kHash,
                                        [key_selector](const internal::WriterSetup& setup) {
                                          return internal::MakeHashWriter<T>(setup, key_selector);
                                        })),
        key_selector_(std::move(key_selector)) {}

  // Erases the selector type: KeyedStream<K, T> keyed = stream.KeyBy(...);
  template <typename Other>
    requires(!std::same_as<Other, KS> && std::same_as<KS, internal::ErasedKeySelector<K, T>>)
  KeyedStream(const KeyedStream<K, T, Other>& other)  // NOLINT: implicit by design
      : DataStream<T>(other), key_selector_{other.key_selector()} {}

  // Map, FlatMap and Filter as on DataStream (the result is not keyed). A function object with
  // `Open(const RuntimeContext&)` (Flink's rich function) may take keyed state there
  // (ctx.GetState(...)): the handles refer to the key of the record being processed, and the
  // state is checkpointed and rescaled by key group. Plain lambdas run as on a DataStream.
  template <typename F>
    requires MapFunction<F, T>
  auto Map(F fn) const {
    if constexpr (kRich<F>) {
      using Out = std::remove_cvref_t<std::invoke_result_t<F&, T&&>>;
      return Keyed<Out, F, internal::UserFunctionKind::kMap>("Map", std::move(fn));
    } else {
      return DataStream<T>::Map(std::move(fn));
    }
  }
  template <typename F>
    requires FilterFunction<F, T>
  DataStream<T> Filter(F fn) const {
    if constexpr (kRich<F>) {
      return Keyed<T, F, internal::UserFunctionKind::kFilter>("Filter", std::move(fn));
    } else {
      return DataStream<T>::Filter(std::move(fn));
    }
  }
  template <typename Out = internal::Deduce, typename F>
  auto FlatMap(F fn) const {
    if constexpr (kRich<F>) {
      static_assert(internal::OutputKnown<Out, F, 1>,
                    "FlatMap cannot deduce Out: the function's second parameter must be "
                    "sluice::Collector<Out>&; for a generic function write FlatMap<Out>(fn)");
      using O = typename internal::OutputOrDeduced<Out, F, 1>::type;
      static_assert(FlatMapFunction<F, T, O>,
                    "FlatMap needs a function (const T&, sluice::Collector<Out>&)");
      return Keyed<O, F, internal::UserFunctionKind::kFlatMap>("Flat Map", std::move(fn));
    } else {
      return DataStream<T>::template FlatMap<Out>(std::move(fn));
    }
  }

  // Rolling reduce per key: `fn(accumulator, value) -> new accumulator`. In streaming mode emits
  // the new accumulator for every record; in batch mode the final one per key.
  template <typename F>
    requires ReduceFunction<F, T>
  DataStream<T> Reduce(F fn) const {
    KS ks = key_selector_;
    return this->template Transform<T>("Keyed Reduce", [ks, fn](internal::OperatorSetup& s) {
      return DataStream<T>::Made(
          std::make_unique<internal::KeyedReduceOperator<K, T, KS, F>>(s, ks, fn));
    });
  }

  // A keyed process function: a class derived from KeyedProcessFunction<K, T, Out>, or a lambda
  // `(const T&, KeyedProcessContext<K>&, Collector<Out>&)`.
  template <typename Out = internal::Deduce, typename F>
  auto Process(F fn) const {
    static_assert(DataStream<T>::template kProcessOutputKnown<Out, F>,
                  "Process cannot deduce Out: derive from sluice::KeyedProcessFunction<K, In, Out>, "
                  "give the lambda a sluice::Collector<Out>& third parameter, or write "
                  "Process<Out>(fn)");
    using O = typename DataStream<T>::template ProcessOutput<Out, F>::type;
    KS ks = key_selector_;
    return this->template Transform<O>("Keyed Process", [ks, fn](internal::OperatorSetup& s) {
      return DataStream<T>::Made(
          std::make_unique<internal::KeyedProcessOperator<K, T, O, KS, F>>(s, ks, fn));
    });
  }

  // Connected with another keyed stream of the same key type: Process takes a
  // KeyedCoProcessFunction (Map/FlatMap work as on ConnectedStreams). Any other stream connects
  // unkeyed, as DataStream::Connect.
  using DataStream<T>::Connect;
  template <typename K2, typename U, typename KS2>
  KeyedConnectedStreams<K, T, U, KS, KS2> Connect(const KeyedStream<K2, U, KS2>& other) const {
    static_assert(std::is_same_v<K, K2>,
                  "Connect(): two KeyedStreams connect only when their keys have the same type");
    return KeyedConnectedStreams<K, T, U, KS, KS2>(*this, other);
  }

  // Interval join with a keyed stream of the same key type (api/interval_join.h):
  // IntervalJoin(other).Between(lower, upper).Process(fn).
  template <typename K2, typename U, typename KS2>
  auto IntervalJoin(const KeyedStream<K2, U, KS2>& other) const;

  // Windows per key (api/windowed_stream.h): Window(assigner) with Flink's assigners, and count
  // windows — CountWindow(n) fires every n elements of a key, CountWindow(n, slide) every `slide`
  // elements over the last n.
  template <typename Assigner>
  auto Window(Assigner assigner) const;
  auto CountWindow(int64_t size) const;
  auto CountWindow(int64_t size, int64_t slide) const;

  const KS& key_selector() const { return key_selector_; }

  // Connected with a broadcast stream (api/broadcast.h): Process takes a
  // KeyedBroadcastProcessFunction<K, T, U, Out>.
  template <typename U>
  KeyedBroadcastConnectedStream<K, T, U, KS> Connect(const BroadcastStream<U>& broadcast) const;

 private:
  template <typename F>
  static constexpr bool kRich = requires(F& f, const RuntimeContext& c) { f.Open(c); };

  template <typename Out, typename F, internal::UserFunctionKind kKind>
  DataStream<Out> Keyed(std::string name, F fn) const {
    KS ks = key_selector_;
    return this->template Transform<Out>(std::move(name), [ks, fn](internal::OperatorSetup& s) {
      return DataStream<T>::Made(
          std::make_unique<internal::KeyedUserFunctionOperator<K, T, Out, KS, F, kKind>>(s, ks,
                                                                                         fn));
    });
  }

  KS key_selector_;
};

// Two connected streams: one operator sees the records of both, each through its own function,
// and keeps shared per-subtask state in its function objects (Flink's ConnectedStreams).
//
//   auto merged = orders.Connect(refunds).Map([](const Order& o) { return o.amount; },
//                                            [](const Refund& r) { return -r.amount; });
template <typename T1, typename T2>
class ConnectedStreams {
 public:
  ConnectedStreams(DataStream<T1> first, DataStream<T2> second)
      : first_(std::move(first)), second_(std::move(second)) {}

  // `f1(const T1&) -> Out` and `f2(const T2&) -> Out`.
  template <typename F1, typename F2>
    requires MapFunction<F1, T1> && MapFunction<F2, T2>
  auto Map(F1 f1, F2 f2) const {
    using Out = std::remove_cvref_t<std::invoke_result_t<F1&, T1&&>>;
    static_assert(std::is_same_v<Out, std::remove_cvref_t<std::invoke_result_t<F2&, T2&&>>>,
                  "CoMap: both functions must return the same type");
    return Add<Out>("Co-Map", [f1, f2](internal::OperatorSetup& s) {
      return absl::StatusOr<std::unique_ptr<internal::OperatorBase>>(
          std::make_unique<internal::CoOperator<T1, T2, Out, F1, F2, false>>(s, f1, f2));
    });
  }

  // `f1(const T1&, Collector<Out>&)` and `f2(const T2&, Collector<Out>&)`; Out deduced from `f1`
  // or given: `FlatMap<Out>(f1, f2)`.
  template <typename Out = internal::Deduce, typename F1, typename F2>
  auto FlatMap(F1 f1, F2 f2) const {
    static_assert(internal::OutputKnown<Out, F1, 1>,
                  "CoFlatMap cannot deduce Out: give the first function a sluice::Collector<Out>& "
                  "second parameter, or write FlatMap<Out>(f1, f2)");
    using O = typename internal::OutputOrDeduced<Out, F1, 1>::type;
    static_assert(FlatMapFunction<F1, T1, O> && FlatMapFunction<F2, T2, O>,
                  "CoFlatMap needs functions (const T1&, Collector<Out>&) and (const T2&, "
                  "Collector<Out>&)");
    return Add<O>("Co-Flat Map", [f1, f2](internal::OperatorSetup& s) {
      return absl::StatusOr<std::unique_ptr<internal::OperatorBase>>(
          std::make_unique<internal::CoOperator<T1, T2, O, F1, F2, true>>(s, f1, f2));
    });
  }

  // Partitions both inputs by key: `key1(const T1&)` and `key2(const T2&)` return the same key
  // type, so records of either input with equal keys meet in one subtask. The result's Process
  // takes a KeyedCoProcessFunction<K, T1, T2, Out>.
  template <typename KS1, typename KS2>
    requires KeySelector<KS1, T1> && KeySelector<KS2, T2>
  auto KeyBy(KS1 key1, KS2 key2) const {
    using K = KeyOf<KS1, T1>;
    static_assert(std::is_same_v<K, KeyOf<KS2, T2>>,
                  "Connect(...).KeyBy(key1, key2): both key selectors must return the same key "
                  "type");
    return KeyedConnectedStreams<K, T1, T2, KS1, KS2>(first_.KeyBy(std::move(key1)),
                                                      second_.KeyBy(std::move(key2)));
  }

  const DataStream<T1>& first() const { return first_; }
  const DataStream<T2>& second() const { return second_; }

  // Internal: adds a two-input operator fed by `first` (gate 0) and `second` (gate 1).
  template <typename Out>
  DataStream<Out> Add(std::string name, internal::OperatorFactory factory) const {
    if (first_.env() != second_.env()) {
      first_.env()->RecordError(absl::InvalidArgumentError(
          "Connect(): the streams belong to different StreamEnvironments"));
    }
    int id = first_.AddNode(std::move(name), std::move(factory), &typeid(Out));
    if (first_.env() == second_.env()) second_.AddInputEdges(id, 1);
    return DataStream<Out>(first_.env(), {{id, ""}});
  }

 private:
  DataStream<T1> first_;
  DataStream<T2> second_;
};

namespace internal {

// The output type of a two-input process function: F::OutputType, or given explicitly.
template <typename Out, typename F>
struct CoProcessOutput {
  using type = Out;
};
template <typename F>
  requires requires { typename F::OutputType; }
struct CoProcessOutput<Deduce, F> {
  using type = typename F::OutputType;
};

}  // namespace internal

// Two connected streams partitioned by keys of one type K (`a.Connect(b).KeyBy(ka, kb)`, or two
// KeyedStreams connected): Process runs a KeyedCoProcessFunction with per-key timers, as Flink's
// keyed ConnectedStreams.
//
//   class Join : public sluice::KeyedCoProcessFunction<int64_t, Order, Payment, Paid> { ... };
//   auto paid = orders.Connect(payments)
//                   .KeyBy([](const Order& o) { return o.id; },
//                          [](const Payment& p) { return p.order_id; })
//                   .Process(Join());
template <typename K, typename T1, typename T2, typename KS1, typename KS2>
class KeyedConnectedStreams {
 public:
  KeyedConnectedStreams(KeyedStream<K, T1, KS1> first, KeyedStream<K, T2, KS2> second)
      : first_(std::move(first)), second_(std::move(second)) {}

  // A class derived from KeyedCoProcessFunction<K, T1, T2, Out> (or any copyable class with its
  // ProcessElement1/ProcessElement2, and OnTimer if it uses timers; then write Process<Out>(fn)).
  template <typename Out = internal::Deduce, typename F>
  auto Process(F fn) const {
    static_assert(requires { typename internal::CoProcessOutput<Out, F>::type; },
                  "Process cannot deduce Out: derive from sluice::KeyedCoProcessFunction<K, In1, "
                  "In2, Out> or write Process<Out>(fn)");
    using O = typename internal::CoProcessOutput<Out, F>::type;
    static_assert(std::copy_constructible<F>, "a process function must be copyable");
    static_assert(
        requires(F& f, const T1& a, const T2& b, KeyedProcessContext<K>& ctx, Collector<O>& out) {
          f.ProcessElement1(a, ctx, out);
          f.ProcessElement2(b, ctx, out);
        },
        "Process on keyed connected streams needs a sluice::KeyedCoProcessFunction<K, In1, In2, "
        "Out> with ProcessElement1(const In1&, Context&, Collector<Out>&) and "
        "ProcessElement2(const In2&, Context&, Collector<Out>&)");
    KS1 ks1 = first_.key_selector();
    KS2 ks2 = second_.key_selector();
    return Unkeyed().template Add<O>(
        "Keyed Co-Process", [ks1, ks2, fn](internal::OperatorSetup& s) {
          return absl::StatusOr<std::unique_ptr<internal::OperatorBase>>(
              std::make_unique<internal::KeyedCoProcessOperator<K, T1, T2, O, KS1, KS2, F>>(
                  s, ks1, ks2, fn));
        });
  }

  // CoMap / CoFlatMap over the keyed inputs, as on ConnectedStreams.
  template <typename F1, typename F2>
  auto Map(F1 f1, F2 f2) const {
    return Unkeyed().Map(std::move(f1), std::move(f2));
  }
  template <typename Out = internal::Deduce, typename F1, typename F2>
  auto FlatMap(F1 f1, F2 f2) const {
    return Unkeyed().template FlatMap<Out>(std::move(f1), std::move(f2));
  }

  const KeyedStream<K, T1, KS1>& first() const { return first_; }
  const KeyedStream<K, T2, KS2>& second() const { return second_; }

 private:
  ConnectedStreams<T1, T2> Unkeyed() const { return ConnectedStreams<T1, T2>(first_, second_); }

  KeyedStream<K, T1, KS1> first_;
  KeyedStream<K, T2, KS2> second_;
};

// The handle of a sink: set its parallelism and name.
template <typename T>
class DataStreamSink {
 public:
  DataStreamSink(StreamEnvironment* env, int node)
      : env_(env), node_(node), generation_(env->graph().generation) {}
  DataStreamSink SetParallelism(int parallelism) const {
    if (!IsCurrent("SetParallelism()")) return *this;
    auto& n = env_->graph().nodes[static_cast<size_t>(node_)];
    if (parallelism < 1) {
      env_->RecordError(absl::InvalidArgumentError(
          absl::StrCat("sink '", n.name, "': parallelism must be >= 1, got ", parallelism)));
    } else {
      n.parallelism = parallelism;
    }
    return *this;
  }
  DataStreamSink Name(std::string name) const {
    if (IsCurrent("Name()")) env_->graph().nodes[static_cast<size_t>(node_)].name = std::move(name);
    return *this;
  }
  DataStreamSink UidHash(std::string hex) const {
    if (IsCurrent("UidHash()"))
      env_->graph().nodes[static_cast<size_t>(node_)].uid_hash = std::move(hex);
    return *this;
  }
  // As DataStream::Uid: the sink's state (two-phase commit transactions, file positions) is kept
  // under it in savepoints.
  DataStreamSink Uid(std::string uid) const {
    if (!IsCurrent("Uid()")) return *this;
    auto& n = env_->graph().nodes[static_cast<size_t>(node_)];
    if (uid.empty()) {
      env_->RecordError(absl::InvalidArgumentError(
          absl::StrCat("sink '", n.name, "': Uid(\"\"): a uid must not be empty")));
    } else {
      n.uid = std::move(uid);
    }
    return *this;
  }

 private:
  bool IsCurrent(absl::string_view what) const {
    if (generation_ == env_->graph().generation) return true;
    env_->RecordError(absl::FailedPreconditionError(
        absl::StrCat(what, ": the sink belongs to a job that was already executed")));
    return false;
  }

  StreamEnvironment* env_;
  int node_;
  uint64_t generation_;
};

template <typename T>
template <typename S>
  requires std::derived_from<S, Sink<T>>
DataStreamSink<T> DataStream<T>::SinkTo(S sink) const {
  auto shared = std::make_shared<S>(std::move(sink));
  int id = AddNode(
      absl::StrCat("Sink: ", shared->Describe()),
      [shared](internal::OperatorSetup& s) -> absl::StatusOr<std::unique_ptr<internal::OperatorBase>> {
        absl::StatusOr<std::unique_ptr<SinkWriter<T>>> writer = shared->CreateWriter(s.runtime);
        if (!writer.ok()) return internal::Annotate(writer.status(), s.runtime.operator_name);
        return Made(std::make_unique<internal::SinkOperator<T>>(s, std::move(*writer)));
      },
      nullptr);
  auto& node = env_->graph().nodes[static_cast<size_t>(id)];
  node.is_sink = true;
  node.max_source_parallelism = shared->MaxParallelism();
  node.output_path = shared->OutputPath();
  return DataStreamSink<T>(env_, id);
}

// --- StreamEnvironment templates -----------------------------------------------------------------

template <typename S>
  requires std::derived_from<S, Source<typename S::value_type>>
DataStream<typename S::value_type> StreamEnvironment::FromSource(S source, std::string name) {
  using T = typename S::value_type;
  auto shared = std::make_shared<S>(std::move(source));
  internal::StreamNode node;
  node.id = static_cast<int>(graph_->nodes.size());
  node.name = name.empty() ? absl::StrCat("Source: ", shared->Describe()) : std::move(name);
  node.kind = "Source";
  node.is_source = true;
  node.bounded = shared->IsBounded();
  node.max_source_parallelism = shared->MaxParallelism();
  node.output_type = &typeid(T);
  node.make_operator =
      [shared](internal::OperatorSetup& s) -> absl::StatusOr<std::unique_ptr<internal::OperatorBase>> {
    absl::StatusOr<std::unique_ptr<SourceReader<T>>> reader =
        shared->CreateReader(SourceContext(s.runtime, s.services));
    if (!reader.ok()) return internal::Annotate(reader.status(), s.runtime.operator_name);
    return std::unique_ptr<internal::OperatorBase>(
        std::make_unique<internal::SourceOperator<T>>(s, std::move(*reader)));
  };
  graph_->nodes.push_back(std::move(node));
  return DataStream<T>(this, {{graph_->nodes.back().id, ""}});
}

template <typename S>
  requires std::derived_from<S, Source<typename S::value_type>>
DataStream<typename S::value_type> StreamEnvironment::FromSource(
    S source, WatermarkStrategy<typename S::value_type> strategy, std::string name) {
  DataStream<typename S::value_type> raw = FromSource(std::move(source), std::move(name));
  int source_id = raw.ports()[0].node;
  DataStream<typename S::value_type> stamped =
      raw.AssignTimestampsAndWatermarks(std::move(strategy));
  graph_->nodes[static_cast<size_t>(stamped.ports()[0].node)].follows = source_id;
  return stamped;
}

template <typename T>
DataStream<T> StreamEnvironment::FromCollection(std::vector<T> values) {
  return FromSource(CollectionSource<T>(std::move(values)), "Source: Collection Source");
}

}  // namespace sluice
