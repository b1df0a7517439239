// FormatValue: how sinks that write text (print, file, socket) render a record.
//
// Strings as they are, numbers as std::ostream prints them, std::pair/std::tuple as "(a,b)" (as
// Flink prints its tuples), and any type with an `operator<<(std::ostream&, const T&)`.
#pragma once

#include <concepts>
#include <ostream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace sluice {

template <typename T>
concept Formattable = requires(std::ostream& os, const T& v) { os << v; };

template <typename T>
struct IsTupleLike : std::false_type {};
template <typename A, typename B>
struct IsTupleLike<std::pair<A, B>> : std::true_type {};
template <typename... A>
struct IsTupleLike<std::tuple<A...>> : std::true_type {};

template <typename T>
concept TextFormattable = Formattable<T> || IsTupleLike<T>::value;

template <typename T>
void FormatValue(std::ostream& os, const T& value) {
  if constexpr (IsTupleLike<T>::value) {
    os << '(';
    std::apply(
        [&os](const auto&... parts) {
          bool first = true;
          ((os << (first ? "" : ","), FormatValue(os, parts), first = false), ...);
        },
        value);
    os << ')';
  } else {
    static_assert(Formattable<T>,
                  "this record type has no operator<<(std::ostream&, const T&); give the sink a "
                  "format function");
    os << value;
  }
}

}  // namespace sluice
