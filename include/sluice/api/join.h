// Window join and co-group of two streams (Flink's JoinedStreams / CoGroupedStreams):
//
//   auto matched = orders.Join(payments)
//                      .Where([](const Order& o) { return o.id; })
//                      .EqualTo([](const Payment& p) { return p.order_id; })
//                      .Window(sluice::TumblingEventTimeWindows::Of(absl::Minutes(5)))
//                      .Apply([](const Order& o, const Payment& p) { return Paid{o.id, p.amount}; });
//
//   auto grouped = a.CoGroup(b).Where(ka).EqualTo(kb).Window(assigner)
//                      .Apply([](std::span<const A> as, std::span<const B> bs,
//                                sluice::Collector<Out>& out) { ... });
//
// As in Flink, both inputs are tagged into one stream (std::variant<A, B>), keyed by their key
// selectors and windowed; when a window fires, the co-group function gets the window's elements
// of each side (either may be empty), and a join emits one result per pair (an inner join: a
// window with one side empty emits nothing). Results carry window.max_timestamp().
#pragma once

#include <span>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/time/time.h"

#include <sluice/api/data_stream.h>
#include <sluice/api/windowed_stream.h>

namespace sluice {

namespace internal {

template <typename A, typename B, typename F1, typename F2>
struct TaggedKeySelector {
  F1 first;
  F2 second;
  auto operator()(const std::variant<A, B>& v) const {
    return v.index() == 0 ? first(std::get<0>(v)) : second(std::get<1>(v));
  }
};

// Splits the tagged elements of a window and calls the co-group function.
template <typename A, typename B, typename Out, typename F>
struct CoGroupWindowFunction {
  using OutputType = Out;
  F fn;
  template <typename K, typename W>
  void Process(const K&, WindowContext<W>&, std::span<const std::variant<A, B>> elements,
               Collector<Out>& out) {
    std::vector<A> first;
    std::vector<B> second;
    for (const auto& e : elements) {
      if (e.index() == 0) {
        first.push_back(std::get<0>(e));
      } else {
        second.push_back(std::get<1>(e));
      }
    }
    std::invoke(fn, std::span<const A>(first), std::span<const B>(second), out);
  }
};

// A join as a co-group: every pair, first side outer.
template <typename A, typename B, typename Out, typename F>
struct JoinCoGroupFunction {
  F fn;
  void operator()(std::span<const A> first, std::span<const B> second, Collector<Out>& out) {
    for (const A& a : first) {
      for (const B& b : second) {
        if constexpr (std::is_invocable_v<F&, const A&, const B&, Collector<Out>&>) {
          std::invoke(fn, a, b, out);
        } else {
          out.Collect(std::invoke(fn, a, b));
        }
      }
    }
  }
};

}  // namespace internal

template <typename A, typename B, bool kJoin>
class TwoInputWindowBuilder {
 public:
  TwoInputWindowBuilder(DataStream<A> first, DataStream<B> second)
      : first_(std::move(first)), second_(std::move(second)) {}

  template <typename F1>
  class WhereStep {
   public:
    WhereStep(DataStream<A> a, DataStream<B> b, F1 k1)
        : a_(std::move(a)), b_(std::move(b)), k1_(std::move(k1)) {}

    template <typename F2>
    class EqualToStep {
     public:
      using K = KeyOf<F1, A>;
      static_assert(std::is_same_v<K, KeyOf<F2, B>>,
                    "Join/CoGroup: Where() and EqualTo() must select keys of the same type");
      EqualToStep(DataStream<A> a, DataStream<B> b, F1 k1, F2 k2)
          : a_(std::move(a)), b_(std::move(b)), k1_(std::move(k1)), k2_(std::move(k2)) {}

      template <typename Assigner>
      class WindowStep {
       public:
        WindowStep(const EqualToStep* e, Assigner assigner, int64_t lateness_ms = 0)
            : e_(*e), assigner_(std::move(assigner)), lateness_ms_(lateness_ms) {}

        WindowStep AllowedLateness(absl::Duration lateness) const {
          return WindowStep(&e_, assigner_, ToMillis(lateness));
        }

        // Join: `fn(const A&, const B&) -> Out`, or `fn(const A&, const B&, Collector<Out>&)`
        // (flat join; Out deduced from the collector or given). CoGroup:
        // `fn(std::span<const A>, std::span<const B>, Collector<Out>&)`.
        template <typename Out = internal::Deduce, typename F>
        auto Apply(F fn) const {
          if constexpr (kJoin) {
            if constexpr (std::is_invocable_v<F&, const A&, const B&> &&
                          std::is_same_v<Out, internal::Deduce>) {
              using O = std::remove_cvref_t<std::invoke_result_t<F&, const A&, const B&>>;
              return ApplyCoGroup<O>(internal::JoinCoGroupFunction<A, B, O, F>{std::move(fn)});
            } else {
              static_assert(internal::OutputKnown<Out, F, 2>,
                            "Join().Apply(): give a function (const A&, const B&) -> Out, or "
                            "(const A&, const B&, Collector<Out>&)");
              using O = typename internal::OutputOrDeduced<Out, F, 2>::type;
              return ApplyCoGroup<O>(internal::JoinCoGroupFunction<A, B, O, F>{std::move(fn)});
            }
          } else {
            static_assert(internal::OutputKnown<Out, F, 2>,
                          "CoGroup().Apply(): give a function (std::span<const A>, "
                          "std::span<const B>, Collector<Out>&), or write Apply<Out>(fn)");
            using O = typename internal::OutputOrDeduced<Out, F, 2>::type;
            return ApplyCoGroup<O>(std::move(fn));
          }
        }

       private:
        template <typename O, typename G>
        DataStream<O> ApplyCoGroup(G fn) const {
          using V = std::variant<A, B>;
          DataStream<V> tagged_a = e_.a_.Map([](const A& a) { return V(std::in_place_index<0>, a); });
          DataStream<V> tagged_b = e_.b_.Map([](const B& b) { return V(std::in_place_index<1>, b); });
          auto keyed = tagged_a.Union(tagged_b).KeyBy(
              internal::TaggedKeySelector<A, B, F1, F2>{e_.k1_, e_.k2_});
          return keyed.Window(assigner_)
              .AllowedLateness(absl::Milliseconds(lateness_ms_))
              .Process(internal::CoGroupWindowFunction<A, B, O, G>{std::move(fn)})
              .Name(kJoin ? "Window Join" : "Window CoGroup");
        }

        EqualToStep e_;
        Assigner assigner_;
        int64_t lateness_ms_;
      };

      template <typename Assigner>
      WindowStep<Assigner> Window(Assigner assigner) const {
        return WindowStep<Assigner>(this, std::move(assigner));
      }

     private:
      DataStream<A> a_;
      DataStream<B> b_;
      F1 k1_;
      F2 k2_;
    };

    template <typename F2>
      requires KeySelector<F2, B>
    EqualToStep<F2> EqualTo(F2 k2) const {
      return EqualToStep<F2>(a_, b_, k1_, std::move(k2));
    }

   private:
    DataStream<A> a_;
    DataStream<B> b_;
    F1 k1_;
  };

  template <typename F1>
    requires KeySelector<F1, A>
  WhereStep<F1> Where(F1 k1) const {
    return WhereStep<F1>(first_, second_, std::move(k1));
  }

 private:
  DataStream<A> first_;
  DataStream<B> second_;
};

template <typename A, typename B>
using JoinedStreams = TwoInputWindowBuilder<A, B, true>;
template <typename A, typename B>
using CoGroupedStreams = TwoInputWindowBuilder<A, B, false>;

template <typename T>
template <typename U>
JoinedStreams<T, U> DataStream<T>::Join(const DataStream<U>& other) const {
  return JoinedStreams<T, U>(*this, other);
}

template <typename T>
template <typename U>
CoGroupedStreams<T, U> DataStream<T>::CoGroup(const DataStream<U>& other) const {
  return CoGroupedStreams<T, U>(*this, other);
}

}  // namespace sluice
