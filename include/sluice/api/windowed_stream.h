// WindowedStream: a keyed stream cut into windows (KeyedStream::Window, CountWindow) or a whole
// stream in windows (DataStream::WindowAll, CountWindowAll), with Flink's semantics ("Windows").
//
//   OutputTag<Click> late("late");
//   auto counts = clicks.KeyBy([](const Click& c) { return c.page; })
//                     .Window(sluice::TumblingEventTimeWindows::Of(absl::Seconds(10)))
//                     .AllowedLateness(absl::Seconds(5))
//                     .SideOutputLateData(late)
//                     .Aggregate(CountClicks(), EmitWithWindow());
//   auto dropped = counts.GetSideOutput(late);
//
// Modifiers (Trigger, Evictor, AllowedLateness, SideOutputLateData) return a new WindowedStream;
// a window function (Reduce, Aggregate, Process) ends it with an operator. Records a window emits
// carry the timestamp window.max_timestamp(). Late records that go into no window and are beyond
// the allowed lateness go to the late-data side output, or are counted in the job counter
// "<operator name>.numLateRecordsDropped" (JobHandle::Counters()).
#pragma once

#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include <sluice/api/data_stream.h>
#include <sluice/internal/local_aggregate.h>
#include <sluice/internal/session_window_operator.h>
#include <sluice/internal/window_operator.h>
#include <sluice/window/triggers.h>
#include <sluice/window/window_functions.h>
#include <sluice/window/windows.h>

namespace sluice {

namespace internal {

// The trigger an assigner fires with unless one is set.
template <typename Assigner>
auto DefaultTrigger() {
  if constexpr (std::is_same_v<typename Assigner::WindowType, GlobalWindow>) {
    return NeverTrigger();
  } else if constexpr (Assigner::kDomain == TimeDomain::kEventTime) {
    return EventTimeTrigger();
  } else {
    return ProcessingTimeTrigger();
  }
}

// Output type of a process window function: F::OutputType, else the Collector<Out>& parameter
// at position `I` of a lambda, else Out given explicitly.
template <typename Out, typename F, size_t I>
struct WindowProcessOutput {
  using type = Out;
};
// (clang-format 14 misplaces requires-clauses.)
// clang-format off
template <typename F, size_t I>
  requires requires { typename F::OutputType; }
struct WindowProcessOutput<Deduce, F, I> {
  using type = typename F::OutputType;
};
template <typename F, size_t I>
  requires(!requires { typename F::OutputType; })
struct WindowProcessOutput<Deduce, F, I> : DeducedOutputOf<F, I> {};
// clang-format on

}  // namespace internal

template <typename K, typename T, typename KS, typename Assigner, typename Trig, typename Ev,
          bool kAll>
class WindowedStream {
 public:
  using W = typename Assigner::WindowType;
  // The key a process window function receives (none for WindowAll).
  using KeyType = std::conditional_t<kAll, internal::AllKey, K>;

  WindowedStream(KeyedStream<K, T, KS> input, Assigner assigner, Trig trigger, Ev evictor,
                 internal::WindowSettings<T> settings = {})
      : input_(std::move(input)),
        assigner_(std::move(assigner)),
        trigger_(std::move(trigger)),
        evictor_(std::move(evictor)),
        settings_(std::move(settings)) {}

  // Replaces the assigner's default trigger. A merging assigner (sessions) needs a trigger that
  // can merge.
  template <typename NewTrig>
  WindowedStream<K, T, KS, Assigner, NewTrig, Ev, kAll> Trigger(NewTrig trigger) const {
    if constexpr (Assigner::kMerging) {
      if (!trigger.CanMerge()) {
        Env()->RecordError(absl::InvalidArgumentError(
            "Window(): a merging window assigner (sessions) cannot be used with a trigger that "
            "does not support merging (CanMerge() is false)"));
      }
    }
    return {input_, assigner_, std::move(trigger), evictor_, settings_};
  }

  // Removes elements before and/or after the window function runs (count, time, delta).
  template <typename E>
  WindowedStream<K, T, KS, Assigner, Trig, E, kAll> Evictor(E evictor) const {
    return {input_, assigner_, trigger_, std::move(evictor), settings_};
  }

  // Keeps event-time windows for `lateness` after their end: a late element within it is added
  // and (with the default trigger) fires the window again with the updated contents. Ignored by
  // processing-time windows, as in Flink.
  WindowedStream AllowedLateness(absl::Duration lateness) const {
    WindowedStream result = *this;
    int64_t ms = ToMillis(lateness);
    if (ms < 0) {
      Env()->RecordError(absl::InvalidArgumentError(absl::StrCat(
          "AllowedLateness(): the allowed lateness cannot be negative, got ", ms, " ms")));
    } else {
      result.settings_.allowed_lateness_ms = ms;
    }
    return result;
  }

  // Late elements (in no window, beyond the allowed lateness) go to side output `tag` of the
  // window operator: result.GetSideOutput(tag).
  WindowedStream SideOutputLateData(const OutputTag<T>& tag) const {
    WindowedStream result = *this;
    if (tag.id().empty()) {
      Env()->RecordError(absl::InvalidArgumentError(
          "SideOutputLateData(): an OutputTag needs a non-empty id (\"\" is the main output)"));
    } else {
      result.settings_.late_tag = tag;
    }
    return result;
  }

  // Sliding and tumbling event-time windows with Reduce or Aggregate (and the default trigger, no
  // evictor) keep one partial result per slice of gcd(size, slide) and combine the slices of a
  // window when it fires, instead of folding every record into size/slide windows. That needs a
  // reduce function that is associative and commutative and an AggregateFunction::Merge. This
  // turns it off: one value per window, records folded in arrival order, Merge never called for
  // non-merging windows — Flink's exact behaviour, at the cost of size/slide folds per record.
  // It also runs event-time session windows (static gap, default trigger, Reduce or Aggregate) in
  // the general window operator instead of the session operator (SessionWindowOperator): the
  // results are the same, the per-record work is not.
  WindowedStream WithoutSliceSharing() const {
    WindowedStream result = *this;
    result.settings_.share_slices = false;
    return result;
  }

  // Aggregates in two phases, as Flink's planner runs window aggregates (LocalWindowAggregate,
  // then GlobalWindowAggregate): each subtask of the input, before the keyed exchange, folds its
  // records per key and slice of gcd(size, slide) into one partial result in memory, and only the
  // partials cross the exchange, where the window operator merges them (AggregateFunction::Merge,
  // or the reduce function) and fires as usual. For aggregates over few keys — or over the whole
  // stream with WindowAll, which then merges one partial per input subtask and slice — the
  // records never leave their core (the local phase is chained to its input when that is one
  // stream). Results, lateness and the late-data side output are those of the one-phase window;
  // partials go downstream when the watermark passes their slice, at each checkpoint barrier (the
  // local phase keeps no state), when the input goes idle (after which that subtask passes
  // records on one by one) and when a subtask holds 65536 of them. Needs event-time tumbling or
  // sliding windows with the default trigger, no evictor, slice sharing, and Reduce or Aggregate
  // (the same conditions as slice sharing). It adds an operator to the job graph: checkpoints of
  // the job with and without it do not restore into each other.
  WindowedStream TwoPhase() const {
    WindowedStream result = *this;
    result.settings_.two_phase = true;
    return result;
  }

  // --- Window functions ---------------------------------------------------------------------------

  // clang-format off
  // `fn(const T&, const T&) -> T`, applied incrementally; emits the reduced value per firing.
  template <typename F>
    requires ReduceFunction<F, T>
  DataStream<T> Reduce(F fn) const {
    return Build<T>(internal::ReduceContents<T, F>{fn}, internal::PassThroughWindowFunction{});
  }

  // Incremental reduce, then `process` once per firing with the one reduced value.
  template <typename Out = internal::Deduce, typename F, typename P>
    requires ReduceFunction<F, T>
  auto Reduce(F fn, P process) const {
    // clang-format on
    using O = typename internal::WindowProcessOutput<Out, P, kAll ? 2 : 3>::type;
    CheckProcess<P, T, O>();
    return Build<O>(internal::ReduceContents<T, F>{fn},
                    internal::UserWindowFunction<P, kAll>{std::move(process)});
  }

  // `agg`: a class derived from AggregateFunction<T, Acc, Result>; emits GetResult per firing.
  template <typename A>
  auto Aggregate(A agg) const {
    CheckAggregate<A>();
    using R = typename A::OutputType;
    return Build<R>(internal::AggregateContents<T, A>{std::move(agg)},
                    internal::PassThroughWindowFunction{});
  }

  // Incremental aggregation, then `process` once per firing with the one result.
  template <typename Out = internal::Deduce, typename A, typename P>
  auto Aggregate(A agg, P process) const {
    CheckAggregate<A>();
    using R = typename A::OutputType;
    using O = typename internal::WindowProcessOutput<Out, P, kAll ? 2 : 3>::type;
    CheckProcess<P, R, O>();
    return Build<O>(internal::AggregateContents<T, A>{std::move(agg)},
                    internal::UserWindowFunction<P, kAll>{std::move(process)});
  }

  // A process window function over all elements of the window: a class derived from
  // ProcessWindowFunction<T, Out, K, W> (ProcessAllWindowFunction<T, Out, W> for WindowAll) or a
  // lambda `(const K&, WindowContext<W>&, std::span<const T>, Collector<Out>&)` (without the key
  // for WindowAll).
  template <typename Out = internal::Deduce, typename P>
  auto Process(P process) const {
    using O = typename internal::WindowProcessOutput<Out, P, kAll ? 2 : 3>::type;
    CheckProcess<P, T, O>();
    return Build<O>(internal::ListContents<T>{},
                    internal::UserWindowFunction<P, kAll>{std::move(process)});
  }

 private:
  StreamEnvironment* Env() const { return input_.env(); }

  template <typename A>
  static void CheckAggregate() {
    static_assert(
        requires {
          typename A::InputType;
          typename A::AccumulatorType;
          typename A::OutputType;
        },
        "Aggregate needs a class derived from sluice::AggregateFunction<In, Acc, Out>");
    static_assert(std::is_same_v<typename A::InputType, T>,
                  "Aggregate: the AggregateFunction's input type must be the stream's type");
    static_assert(std::copy_constructible<A>, "an aggregate function must be copyable");
  }
  // clang-format off
  template <typename P, typename V, typename O>
  static void CheckProcess() {
    static_assert(std::copy_constructible<P>, "a window function must be copyable");
    if constexpr (kAll) {
      static_assert(
          requires(P p, WindowContext<W>& c, std::span<const V> v, Collector<O>& o) {
            p.Process(c, v, o);
          } || std::invocable<P&, WindowContext<W>&, std::span<const V>, Collector<O>&>,
          "WindowAll process function: derive from ProcessAllWindowFunction<In, Out, W> or use a "
          "lambda (WindowContext<W>&, std::span<const In>, Collector<Out>&)");
    } else {
      static_assert(
          requires(P p, const K& k, WindowContext<W>& c, std::span<const V> v, Collector<O>& o) {
            p.Process(k, c, v, o);
          } || std::invocable<P&, const K&, WindowContext<W>&, std::span<const V>, Collector<O>&>,
          "Window process function: derive from ProcessWindowFunction<In, Out, K, W> or use a "
          "lambda (const K&, WindowContext<W>&, std::span<const In>, Collector<Out>&)");
    }
  }
  // clang-format on

  template <typename Out, typename Acc, typename WinFn>
  DataStream<Out> Build(Acc acc, WinFn fn) const {
    if (absl::Status s = assigner_.Validate(); !s.ok()) Env()->RecordError(s);
    using OpKey = std::conditional_t<kAll, internal::AllKey, K>;
    using OpKS = std::conditional_t<kAll, internal::AllKeySelector, KS>;
    OpKS ks{};
    if constexpr (!kAll) ks = input_.key_selector();
    if (settings_.two_phase) {
      if constexpr (std::is_same_v<Ev, NoEvictor> && internal::kSliceable<Assigner, Trig, Acc>) {
        if (settings_.share_slices) return BuildTwoPhase<Out, OpKey>(ks, std::move(acc), fn);
        Env()->RecordError(absl::InvalidArgumentError(
            "Window(): TwoPhase() and WithoutSliceSharing() exclude each other (the second phase "
            "merges partial results per slice)"));
      } else {
        Env()->RecordError(absl::InvalidArgumentError(
            "Window(): TwoPhase() needs event-time tumbling or sliding windows with the default "
            "trigger, no evictor, and Reduce or Aggregate"));
      }
    }
    auto factory = [ks, assigner = assigner_, trigger = trigger_, evictor = evictor_,
                    settings = settings_, acc = std::move(acc),
                    fn = std::move(fn)](internal::OperatorSetup& s) {
      auto make = [&](auto contents) {
        using C = decltype(contents);
        return absl::StatusOr<std::unique_ptr<internal::OperatorBase>>(
            std::make_unique<
                internal::WindowOperator<OpKey, T, Out, OpKS, Assigner, Trig, C, WinFn>>(
                s, ks, assigner, trigger, std::move(contents), fn, settings));
      };
      if constexpr (std::is_same_v<Ev, NoEvictor> && internal::kSliceable<Assigner, Trig, Acc>) {
        if (!settings.share_slices) return make(acc);
        return absl::StatusOr<std::unique_ptr<internal::OperatorBase>>(
            std::make_unique<
                internal::SlicingWindowOperator<OpKey, T, Out, OpKS, Assigner, Acc, WinFn>>(
                s, ks, assigner, acc, fn, settings));
      } else if constexpr (std::is_same_v<Ev, NoEvictor> &&
                           internal::kSessionSpecialisable<Assigner, Trig, Acc>) {
        const bool rocks = s.state != nullptr && s.state->kind == StateBackendKind::kRocksDb;
        if (!settings.share_slices || rocks) return make(acc);
        return absl::StatusOr<std::unique_ptr<internal::OperatorBase>>(
            std::make_unique<
                internal::SessionWindowOperator<OpKey, T, Out, OpKS, Assigner, Acc, WinFn>>(
                s, ks, assigner, acc, fn, settings));
      } else if constexpr (std::is_same_v<Ev, NoEvictor>) {
        return make(acc);
      } else {
        return make(internal::EvictingContents<T, Acc, Ev>{acc, evictor});
      }
    };
    // WindowAll needs no hashing: its one subtask gets every record.
    DataStream<T> in = kAll ? input_.Partitioned(internal::Partitioning::kRebalance)
                            : static_cast<const DataStream<T>&>(input_);
    return AddWindowNode<Out>(in, std::move(factory));
  }

  // The window operator's node fed by `in`; WindowAll runs in one subtask (Flink's non-parallel
  // operator).
  template <typename Out, typename In>
  DataStream<Out> AddWindowNode(const DataStream<In>& in, internal::OperatorFactory factory) const {
    DataStream<Out> result =
        in.template Transform<Out>(kAll ? "All Window" : "Window", std::move(factory));
    if constexpr (kAll) {
      auto& node = Env()->graph().nodes[static_cast<size_t>(result.ports()[0].node)];
      node.parallelism = 1;
      node.max_source_parallelism = 1;
    }
    return result;
  }

  // The local phase at its input's parallelism (chained to a single producer), the exchange of
  // partials, and the global phase (internal/local_aggregate.h).
  template <typename Out, typename OpKey, typename OpKS, typename Acc, typename WinFn>
  DataStream<Out> BuildTwoPhase(OpKS ks, Acc acc, WinFn fn) const {
    using P = internal::LocalPartial<OpKey, typename Acc::State, T>;
    using Global = internal::MergePartialContents<P, Acc>;
    // The input as it was before KeyBy / WindowAll partitioned it.
    DataStream<T> raw = input_.Partitioned(internal::Partitioning::kDefault);
    auto local = [ks, assigner = assigner_, acc](internal::OperatorSetup& s) {
      return absl::StatusOr<std::unique_ptr<internal::OperatorBase>>(
          std::make_unique<internal::LocalWindowAggregateOperator<OpKey, T, OpKS, Acc>>(
              s, ks, assigner.size(), assigner.slide(), assigner.offset(), acc));
    };
    DataStream<P> partials =
        raw.template Transform<P>(kAll ? "Local All Window" : "Local Window", std::move(local));
    if (raw.ports().size() == 1) {
      Env()->graph().nodes[static_cast<size_t>(partials.ports()[0].node)].follows =
          raw.ports()[0].node;
    }
    internal::WindowSettings<P> gs;
    gs.allowed_lateness_ms = settings_.allowed_lateness_ms;
    gs.late_tag = settings_.late_tag;
    auto global = [assigner = assigner_, acc = std::move(acc), fn = std::move(fn),
                   gs](internal::OperatorSetup& s) {
      return absl::StatusOr<std::unique_ptr<internal::OperatorBase>>(
          std::make_unique<internal::SlicingWindowOperator<
              OpKey, P, Out, internal::LocalPartialKeySelector, Assigner, Global, WinFn>>(
              s, internal::LocalPartialKeySelector{}, assigner, Global{acc}, fn, gs));
    };
    DataStream<P> exchanged =
        kAll ? partials.Partitioned(internal::Partitioning::kRebalance)
             : partials.Partitioned(
                   internal::Partitioning::kHash, [](const internal::WriterSetup& setup) {
                     return internal::MakeHashWriter<P>(setup, internal::LocalPartialKeySelector{});
                   });
    return AddWindowNode<Out>(exchanged, std::move(global));
  }

  KeyedStream<K, T, KS> input_;
  Assigner assigner_;
  Trig trigger_;
  Ev evictor_;
  internal::WindowSettings<T> settings_;
};

// --- KeyedStream / DataStream entry points -------------------------------------------------------

template <typename K, typename T, typename KS>
template <typename Assigner>
auto KeyedStream<K, T, KS>::Window(Assigner assigner) const {
  using Trig = decltype(internal::DefaultTrigger<Assigner>());
  return WindowedStream<K, T, KS, Assigner, Trig, NoEvictor, false>(
      *this, std::move(assigner), internal::DefaultTrigger<Assigner>(), NoEvictor{});
}

template <typename K, typename T, typename KS>
auto KeyedStream<K, T, KS>::CountWindow(int64_t size) const {
  if (size <= 0) {
    this->env()->RecordError(absl::InvalidArgumentError(
        absl::StrCat("CountWindow(): the size must be > 0, got ", size)));
  }
  return Window(GlobalWindows::Create()).Trigger(PurgingTrigger(CountTrigger::Of(size)));
}

template <typename K, typename T, typename KS>
auto KeyedStream<K, T, KS>::CountWindow(int64_t size, int64_t slide) const {
  if (size <= 0 || slide <= 0) {
    this->env()->RecordError(absl::InvalidArgumentError(absl::StrCat(
        "CountWindow(): size and slide must be > 0, got size ", size, ", slide ", slide)));
  }
  return Window(GlobalWindows::Create())
      .Evictor(CountEvictor::Of(size))
      .Trigger(CountTrigger::Of(slide));
}

template <typename T>
template <typename Assigner>
auto DataStream<T>::WindowAll(Assigner assigner) const {
  using Trig = decltype(internal::DefaultTrigger<Assigner>());
  using KS = internal::AllKeySelector;
  KeyedStream<internal::AllKey, T, KS> keyed(Partitioned(internal::Partitioning::kRebalance), KS{});
  return WindowedStream<internal::AllKey, T, KS, Assigner, Trig, NoEvictor, true>(
      keyed, std::move(assigner), internal::DefaultTrigger<Assigner>(), NoEvictor{});
}

template <typename T>
auto DataStream<T>::CountWindowAll(int64_t size) const {
  if (size <= 0) {
    env_->RecordError(absl::InvalidArgumentError(
        absl::StrCat("CountWindowAll(): the size must be > 0, got ", size)));
  }
  return WindowAll(GlobalWindows::Create()).Trigger(PurgingTrigger(CountTrigger::Of(size)));
}

template <typename T>
auto DataStream<T>::CountWindowAll(int64_t size, int64_t slide) const {
  if (size <= 0 || slide <= 0) {
    env_->RecordError(absl::InvalidArgumentError(absl::StrCat(
        "CountWindowAll(): size and slide must be > 0, got size ", size, ", slide ", slide)));
  }
  return WindowAll(GlobalWindows::Create())
      .Evictor(CountEvictor::Of(size))
      .Trigger(CountTrigger::Of(slide));
}

}  // namespace sluice
