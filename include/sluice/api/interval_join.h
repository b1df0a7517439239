// Interval join of two keyed streams, as Flink's KeyedStream.intervalJoin: a left element `a`
// and a right element `b` with equal keys join when
//
//   a.timestamp + lower <= b.timestamp <= a.timestamp + upper
//
// (bounds inclusive unless made exclusive). Event time only; each pair goes to the join function
// with the larger of the two timestamps. Elements behind the watermark are late: dropped, or sent
// to a side output. Buffered elements are dropped once the watermark shows that no partner can
// arrive any more.
//
//   auto paid = orders.KeyBy([](const Order& o) { return o.id; })
//                   .IntervalJoin(payments.KeyBy([](const Payment& p) { return p.order_id; }))
//                   .Between(absl::ZeroDuration(), absl::Minutes(10))
//                   .Process([](const Order& o, const Payment& p, sluice::Collector<Paid>& out) {
//                     out.Collect(Paid{o.id, p.amount});
//                   });
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include <sluice/api/concepts.h>
#include <sluice/api/data_stream.h>
#include <sluice/api/functions.h>
#include <sluice/core/collector.h>
#include <sluice/core/output_tag.h>
#include <sluice/internal/co_process_operators.h>

namespace sluice {

template <typename K, typename T1, typename KS1, typename T2, typename KS2>
class IntervalJoined;

// `left.IntervalJoin(right)`: give the bounds with Between().
template <typename K, typename T1, typename KS1, typename T2, typename KS2>
class IntervalJoinStreams {
 public:
  IntervalJoinStreams(KeyedStream<K, T1, KS1> left, KeyedStream<K, T2, KS2> right)
      : left_(std::move(left)), right_(std::move(right)) {}

  // Joins a left element at t with the right elements in [t + lower, t + upper]. The bounds are
  // whole milliseconds, may be negative, and lower <= upper (else Execute() returns
  // InvalidArgument).
  IntervalJoined<K, T1, KS1, T2, KS2> Between(absl::Duration lower, absl::Duration upper) const {
    internal::IntervalJoinBounds bounds;
    absl::Status error = ToBound("lower", lower, &bounds.lower);
    if (error.ok()) error = ToBound("upper", upper, &bounds.upper);
    if (error.ok() && bounds.lower > bounds.upper) {
      error = absl::InvalidArgumentError(
          absl::StrCat("IntervalJoin().Between(", absl::FormatDuration(lower), ", ",
                       absl::FormatDuration(upper),
                       "): the lower bound must not be greater than the upper bound"));
    }
    if (!error.ok()) left_.env()->RecordError(error);
    return IntervalJoined<K, T1, KS1, T2, KS2>(left_, right_, bounds);
  }

 private:
  static absl::Status ToBound(const char* which, absl::Duration d, int64_t* ms) {
    // Bounds beyond ±2^62 ms (146 million years) are rejected so that bound arithmetic on
    // timestamps never overflows.
    constexpr int64_t kLimit = int64_t{1} << 62;
    absl::Duration rest;
    int64_t whole = absl::IDivDuration(d, absl::Milliseconds(1), &rest);
    if (d == absl::InfiniteDuration() || d == -absl::InfiniteDuration() || whole > kLimit ||
        whole < -kLimit) {
      return absl::InvalidArgumentError(absl::StrCat("IntervalJoin().Between(): the ", which,
                                                     " bound ", absl::FormatDuration(d),
                                                     " is out of range"));
    }
    if (rest != absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("IntervalJoin().Between(): the ", which, " bound ",
                       absl::FormatDuration(d), " is not a whole number of milliseconds"));
    }
    *ms = whole;
    return absl::OkStatus();
  }

  KeyedStream<K, T1, KS1> left_;
  KeyedStream<K, T2, KS2> right_;
};

namespace internal {

// The Out of an interval-join function: F::OutputType, the collector of a lambda
// `(const T1&, const T2&, Collector<Out>&)` or `(const T1&, const T2&, ProcessJoinContext&,
// Collector<Out>&)`, or given explicitly.
template <typename Out, typename F>
struct JoinOutput {
  using type = Out;
};
template <typename F>
  requires requires { typename F::OutputType; }
struct JoinOutput<Deduce, F> {
  using type = typename F::OutputType;
};
template <typename F>
  requires(!requires { typename F::OutputType; } && requires { typename DeducedOutput<F, 3>; })
struct JoinOutput<Deduce, F> {
  using type = DeducedOutput<F, 3>;
};
template <typename F>
  requires(!requires { typename F::OutputType; } && !requires { typename DeducedOutput<F, 3>; })
struct JoinOutput<Deduce, F> : DeducedOutputOf<F, 2> {};

}  // namespace internal

// An interval join with its bounds: optionally make them exclusive or send late elements to side
// outputs, then give the join function to Process().
template <typename K, typename T1, typename KS1, typename T2, typename KS2>
class IntervalJoined {
 public:
  IntervalJoined(KeyedStream<K, T1, KS1> left, KeyedStream<K, T2, KS2> right,
                 internal::IntervalJoinBounds bounds)
      : left_(std::move(left)), right_(std::move(right)) {
    spec_.bounds = bounds;
  }

  // Excludes elements exactly at t + lower (moves the lower bound up by 1 ms, as Flink).
  IntervalJoined LowerBoundExclusive() const {
    IntervalJoined result = *this;
    result.lower_exclusive_ = true;
    return result;
  }
  // Excludes elements exactly at t + upper (moves the upper bound down by 1 ms).
  IntervalJoined UpperBoundExclusive() const {
    IntervalJoined result = *this;
    result.upper_exclusive_ = true;
    return result;
  }
  // Late left / right elements (timestamp < the operator's watermark) go to `tag` instead of
  // being dropped: `joined.GetSideOutput(tag)`.
  IntervalJoined SideOutputLeftLateData(const OutputTag<T1>& tag) const {
    IntervalJoined result = *this;
    result.spec_.left_late = tag;
    return result;
  }
  IntervalJoined SideOutputRightLateData(const OutputTag<T2>& tag) const {
    IntervalJoined result = *this;
    result.spec_.right_late = tag;
    return result;
  }

  // The join function, called once per joined pair: a class derived from
  // ProcessJoinFunction<T1, T2, Out>, or a lambda `(const T1&, const T2&, Collector<Out>&)` or
  // `(const T1&, const T2&, ProcessJoinContext&, Collector<Out>&)`. Its output records carry the
  // larger timestamp of the pair.
  template <typename Out = internal::Deduce, typename F>
  auto Process(F fn) const {
    static_assert(requires { typename internal::JoinOutput<Out, F>::type; },
                  "IntervalJoin Process cannot deduce Out: derive from "
                  "sluice::ProcessJoinFunction<In1, In2, Out>, give the lambda a "
                  "sluice::Collector<Out>& last parameter, or write Process<Out>(fn)");
    using O = typename internal::JoinOutput<Out, F>::type;
    static_assert(std::copy_constructible<F>, "a join function must be copyable");
    static_assert(
        requires(F& f, const T1& a, const T2& b, ProcessJoinContext& ctx, Collector<O>& out) {
          f.ProcessElement(a, b, ctx, out);
        } || std::invocable<F&, const T1&, const T2&, ProcessJoinContext&, Collector<O>&> ||
            std::invocable<F&, const T1&, const T2&, Collector<O>&>,
        "IntervalJoin Process needs a sluice::ProcessJoinFunction<In1, In2, Out> or a function "
        "(const In1&, const In2&, [ProcessJoinContext&,] Collector<Out>&)");
    internal::IntervalJoinSpec<T1, T2> spec = spec_;
    if (lower_exclusive_) spec.bounds.lower += 1;
    if (upper_exclusive_) spec.bounds.upper -= 1;
    KS1 ks1 = left_.key_selector();
    KS2 ks2 = right_.key_selector();
    ConnectedStreams<T1, T2> inputs(left_, right_);
    return inputs.template Add<O>(
        "Interval Join", [ks1, ks2, spec, fn](internal::OperatorSetup& s) {
          return absl::StatusOr<std::unique_ptr<internal::OperatorBase>>(
              std::make_unique<internal::IntervalJoinOperator<K, T1, T2, O, KS1, KS2, F>>(
                  s, ks1, ks2, spec, fn));
        });
  }

 private:
  KeyedStream<K, T1, KS1> left_;
  KeyedStream<K, T2, KS2> right_;
  internal::IntervalJoinSpec<T1, T2> spec_;
  bool lower_exclusive_ = false;
  bool upper_exclusive_ = false;
};

template <typename K, typename T, typename KS>
template <typename K2, typename U, typename KS2>
auto KeyedStream<K, T, KS>::IntervalJoin(const KeyedStream<K2, U, KS2>& other) const {
  static_assert(std::is_same_v<K, K2>,
                "IntervalJoin(): both KeyedStreams must have the same key type");
  return IntervalJoinStreams<K, T, KS, U, KS2>(*this, other);
}

}  // namespace sluice
