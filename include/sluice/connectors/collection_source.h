// In-memory and generated sources: CollectionSource, SequenceSource, GeneratorSource.
//
//   env.FromCollection(std::vector<std::string>{"a", "b"});            // non-parallel, bounded
//   env.FromSequence(1, 1'000'000);                                     // parallel, bounded
//   env.FromSource(sluice::GeneratorSource<Click>(
//       [](int64_t i) { return Click{i % 100, i}; },
//       {.count = sluice::GeneratorSource<Click>::kUnbounded, .records_per_second = 5000}));
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <tuple>
#include <type_traits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#include <sluice/connectors/source.h>

namespace sluice {

// The elements of a vector, in order, from a single subtask. Bounded.
template <typename T>
class CollectionSource : public Source<T> {
 public:
  explicit CollectionSource(std::vector<T> values)
      : values_(std::make_shared<const std::vector<T>>(std::move(values))) {}

  bool IsBounded() const override { return true; }
  int MaxParallelism() const override { return 1; }
  std::string Describe() const override { return "Collection Source"; }

  absl::StatusOr<std::unique_ptr<SourceReader<T>>> CreateReader(const SourceContext&) override {
    return std::unique_ptr<SourceReader<T>>(new Reader(values_));
  }

 private:
  class Reader : public SourceReader<T> {
   public:
    explicit Reader(std::shared_ptr<const std::vector<T>> values) : values_(std::move(values)) {}
    absl::StatusOr<PollResult> PollNext(Collector<T>& out, int max_records) override {
      size_t end = std::min(values_->size(), next_ + static_cast<size_t>(max_records));
      for (; next_ < end; ++next_) out.Collect((*values_)[next_]);
      return next_ == values_->size() ? PollResult::End() : PollResult::More();
    }

   private:
    std::shared_ptr<const std::vector<T>> values_;
    size_t next_ = 0;
  };

  std::shared_ptr<const std::vector<T>> values_;
};

// Splits [0, count) into `parts` contiguous ranges; returns range `index` as [begin, end).
inline std::pair<int64_t, int64_t> SplitRange(int64_t count, int parts, int index) {
  int64_t base = count / parts;
  int64_t extra = count % parts;
  int64_t begin = index * base + std::min<int64_t>(index, extra);
  int64_t end = begin + base + (index < extra ? 1 : 0);
  return {begin, end};
}

// The numbers [from, to], each subtask emitting one contiguous range in ascending order. Bounded.
class SequenceSource : public Source<int64_t> {
 public:
  SequenceSource(int64_t from, int64_t to) : from_(from), to_(to) {}

  bool IsBounded() const override { return true; }
  std::string Describe() const override { return absl::StrCat("Sequence ", from_, "..", to_); }

  absl::StatusOr<std::unique_ptr<SourceReader<int64_t>>> CreateReader(
      const SourceContext& ctx) override {
    int64_t count = to_ >= from_ ? to_ - from_ + 1 : 0;
    auto [begin, end] = SplitRange(count, ctx.parallelism(), ctx.subtask_index());
    return std::unique_ptr<SourceReader<int64_t>>(new Reader(from_ + begin, from_ + end));
  }

 private:
  class Reader : public SourceReader<int64_t> {
   public:
    Reader(int64_t next, int64_t end) : next_(next), end_(end) {}
    absl::StatusOr<PollResult> PollNext(Collector<int64_t>& out, int max_records) override {
      int64_t stop = std::min(end_, next_ + max_records);
      for (; next_ < stop; ++next_) out.Collect(next_);
      return next_ == end_ ? PollResult::End() : PollResult::More();
    }

   private:
    int64_t next_;
    int64_t end_;
  };

  int64_t from_;
  int64_t to_;
};

struct GeneratorOptions {
  // Number of records over all subtasks; kUnbounded (-1) generates forever. Default unbounded.
  int64_t count = -1;
  // Upper bound on records per second over all subtasks; 0 = as fast as possible. Default 0.
  double records_per_second = 0;
};

// Records made by a function of their index: `generator(i) -> T` for i in [0, count). Each
// subtask generates a contiguous range of indices. Rate limiting sleeps without spinning a core.
// Spelled `sluice::GeneratorSource(fn, options)` the generator's own type is kept and inlines;
// `GeneratorSource<T>` holds it in a std::function.
template <typename T, typename Gen = std::function<T(int64_t)>>
class GeneratorSource : public Source<T> {
 public:
  static constexpr int64_t kUnbounded = -1;
  using Generator = Gen;

  template <typename F>
    requires std::invocable<F&, int64_t> && std::convertible_to<std::invoke_result_t<F&, int64_t>, T>
  GeneratorSource(F generator, GeneratorOptions options)
      : generator_(std::move(generator)), options_(options) {}

  bool IsBounded() const override { return options_.count >= 0; }
  std::string Describe() const override { return "Generator Source"; }

  absl::StatusOr<std::unique_ptr<SourceReader<T>>> CreateReader(const SourceContext& ctx) override {
    if (options_.records_per_second < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GeneratorOptions.records_per_second must be >= 0, got ", options_.records_per_second));
    }
    int64_t begin = 0, end = INT64_MAX;
    if (options_.count >= 0) {
      std::tie(begin, end) = SplitRange(options_.count, ctx.parallelism(), ctx.subtask_index());
    } else {
      // Unbounded: subtask i takes indices i, i + p, i + 2p, ... (stride below).
      begin = ctx.subtask_index();
    }
    return std::unique_ptr<SourceReader<T>>(new Reader(
        generator_, begin, end, options_.count >= 0 ? 1 : ctx.parallelism(),
        options_.records_per_second / ctx.parallelism()));
  }

 private:
  class Reader : public SourceReader<T> {
   public:
    Reader(Generator gen, int64_t next, int64_t end, int64_t stride, double rate)
        : gen_(std::move(gen)), next_(next), end_(end), stride_(stride), rate_(rate) {}

    absl::StatusOr<PollResult> PollNext(Collector<T>& out, int max_records) override {
      int64_t budget = max_records;
      if (rate_ > 0) {
        absl::Time now = absl::Now();
        if (emitted_ == 0) start_ = now;
        int64_t allowed =
            static_cast<int64_t>(absl::ToDoubleSeconds(now - start_) * rate_) + 1 - emitted_;
        if (allowed <= 0) {
          absl::Time due = start_ + absl::Seconds(static_cast<double>(emitted_) / rate_);
          return PollResult::NothingUntil(std::max(due - now, absl::Microseconds(100)));
        }
        budget = std::min(budget, allowed);
      }
      for (int64_t i = 0; i < budget && next_ < end_; ++i, next_ += stride_) {
        out.Collect(gen_(next_));
        ++emitted_;
      }
      return next_ >= end_ ? PollResult::End() : PollResult::More();
    }

   private:
    Generator gen_;
    int64_t next_;
    int64_t end_;
    int64_t stride_;
    double rate_;
    int64_t emitted_ = 0;
    absl::Time start_;
  };

  Generator generator_;
  GeneratorOptions options_;
};

template <typename F>
GeneratorSource(F, GeneratorOptions)
    -> GeneratorSource<std::remove_cvref_t<std::invoke_result_t<F&, int64_t>>, F>;

}  // namespace sluice
