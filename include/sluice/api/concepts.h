// Concepts that constrain the user functions of the typed API. A lambda of the wrong shape is a
// compile error that names the concept it does not satisfy.
#pragma once

#include <concepts>
#include <cstddef>
#include <functional>
#include <tuple>
#include <type_traits>

#include <sluice/core/collector.h>
#include <sluice/core/key.h>

namespace sluice {

// Out(const T&) or Out(T), Out not void.
template <typename F, typename T>
concept MapFunction =
    std::copy_constructible<F> && std::invocable<F&, T&&> &&
    !std::is_void_v<std::invoke_result_t<F&, T&&>>;

template <typename F, typename T>
concept FilterFunction = std::copy_constructible<F> && std::predicate<F&, const T&>;

template <typename F, typename T, typename Out>
concept FlatMapFunction =
    std::copy_constructible<F> && std::invocable<F&, const T&, Collector<Out>&>;

template <typename F, typename T>
concept KeySelector = std::copy_constructible<F> && std::invocable<const F&, const T&> &&
                      Key<std::remove_cvref_t<std::invoke_result_t<const F&, const T&>>>;

template <typename F, typename T>
using KeyOf = std::remove_cvref_t<std::invoke_result_t<const F&, const T&>>;

// T(const T& accumulator, const T& value)
template <typename F, typename T>
concept ReduceFunction = std::copy_constructible<F> && std::invocable<F&, const T&, const T&> &&
                         std::convertible_to<std::invoke_result_t<F&, const T&, const T&>, T>;

namespace internal {

// Deduces parameter types of a non-generic callable (lambda, function object, function pointer).
// Has no `Args` for a generic lambda or an overloaded call operator (SFINAE-friendly).
template <typename F, typename = void>
struct CallableTraits {};
template <typename F>
struct CallableTraits<F, std::void_t<decltype(&std::remove_cvref_t<F>::operator())>>
    : CallableTraits<decltype(&std::remove_cvref_t<F>::operator())> {};
template <typename C, typename R, typename... A>
struct CallableTraits<R (C::*)(A...) const, void> {
  using Args = std::tuple<A...>;
};
template <typename C, typename R, typename... A>
struct CallableTraits<R (C::*)(A...), void> {
  using Args = std::tuple<A...>;
};
template <typename C, typename R, typename... A>
struct CallableTraits<R (C::*)(A...) const noexcept, void> {
  using Args = std::tuple<A...>;
};
template <typename C, typename R, typename... A>
struct CallableTraits<R (C::*)(A...) noexcept, void> {
  using Args = std::tuple<A...>;
};
template <typename R, typename... A>
struct CallableTraits<R (*)(A...), void> {
  using Args = std::tuple<A...>;
};
template <typename R, typename... A>
struct CallableTraits<R (*)(A...) noexcept, void> {
  using Args = std::tuple<A...>;
};

template <typename C>
struct CollectorValue {};
template <typename T>
struct CollectorValue<Collector<T>> {
  using type = T;
};

// The Out of a callable whose parameter `I` is `Collector<Out>&`; no `type` when it cannot be
// deduced (a generic lambda, fewer parameters, or a parameter that is not a collector).
template <typename F, size_t I, typename = void>
struct DeducedOutputOf {};
template <typename F, size_t I>
struct DeducedOutputOf<
    F, I,
    std::enable_if_t<(std::tuple_size_v<typename CallableTraits<F>::Args> > I)>>
    : CollectorValue<std::remove_cvref_t<std::tuple_element_t<I, typename CallableTraits<F>::Args>>> {
};

template <typename F, size_t I>
using DeducedOutput = typename DeducedOutputOf<F, I>::type;

struct Deduce {};

// `Out` when given; otherwise deduced from parameter `I` of F. Lazy: a generic lambda with an
// explicit Out never asks for deduction.
template <typename Out, typename F, size_t I>
struct OutputOrDeduced {
  using type = Out;
};
template <typename F, size_t I>
struct OutputOrDeduced<Deduce, F, I> : DeducedOutputOf<F, I> {};

template <typename Out, typename F, size_t I>
concept OutputKnown = requires { typename OutputOrDeduced<Out, F, I>::type; };

}  // namespace internal
}  // namespace sluice
