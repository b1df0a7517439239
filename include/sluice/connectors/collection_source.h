// In-memory and generated sources: CollectionSource, SequenceSource, GeneratorSource.
//
//   env.FromCollection(std::vector<std::string>{"a", "b"});            // non-parallel, bounded
//   env.FromSequence(1, 1'000'000);                                     // parallel, bounded
//   env.FromSource(sluice::GeneratorSource<Click>(
//       [](int64_t i) { return Click{i % 100, i}; },
//       {.count = sluice::GeneratorSource<Click>::kUnbounded, .records_per_second = 5000}));
//
// Checkpoints: every reader's position is the index (or next value) of its own share, encoded with
// sluice::Serializer after a format version byte (1). A job resumes at the same parallelism, so
// subtask i continues old subtask i's share.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <tuple>
#include <type_traits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#include <sluice/connectors/source.h>
#include <sluice/core/status.h>
#include <sluice/state/serializer.h>

namespace sluice {
namespace internal {

// The checkpointed position of an index-based reader: format version 1, then the index.
inline constexpr uint8_t kIndexPositionVersion = 1;

inline std::string EncodeIndexPosition(int64_t next) {
  std::string out;
  Serializer<uint8_t>::Write(kIndexPositionVersion, &out);
  Serializer<int64_t>::Write(next, &out);
  return out;
}

// The index in `state`, or DataLoss naming `description` when the bytes are not such a position.
inline absl::StatusOr<int64_t> DecodeIndexPosition(std::string_view state,
                                                   const std::string& description) {
  ByteReader in(state);
  uint8_t version = 0;
  int64_t next = 0;
  if (!Serializer<uint8_t>::Read(in, &version) || version != kIndexPositionVersion ||
      !Serializer<int64_t>::Read(in, &next) || !in.empty()) {
    return absl::DataLossError(
        absl::StrCat(description, ": checkpointed position does not decode"));
  }
  return next;
}

// DataLoss for a position that decodes but lies outside this subtask's share: a position is in
// [begin, end], `end` meaning "all emitted".
inline absl::Status PositionOutOfRange(const std::string& description, int64_t next,
                                       int64_t begin, int64_t end) {
  return absl::DataLossError(absl::StrCat(description, ": checkpointed position ", next,
                                          " is outside this subtask's range [", begin, ", ", end,
                                          "]; was the source or its parallelism changed?"));
}

}  // namespace internal

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
    return std::unique_ptr<SourceReader<T>>(new Reader(values_, Describe()));
  }

 private:
  class Reader : public SourceReader<T> {
   public:
    Reader(std::shared_ptr<const std::vector<T>> values, std::string description)
        : values_(std::move(values)), description_(std::move(description)) {}
    absl::StatusOr<PollResult> PollNext(Collector<T>& out, int max_records) override {
      size_t end = std::min(values_->size(), next_ + static_cast<size_t>(max_records));
      for (; next_ < end; ++next_) out.Collect((*values_)[next_]);
      return next_ == values_->size() ? PollResult::End() : PollResult::More();
    }

    // The index of the next element.
    absl::StatusOr<std::string> SnapshotState(int64_t) override {
      return internal::EncodeIndexPosition(static_cast<int64_t>(next_));
    }
    absl::Status RestoreState(std::string_view state) override {
      SLUICE_ASSIGN_OR_RETURN(int64_t next, internal::DecodeIndexPosition(state, description_));
      const auto size = static_cast<int64_t>(values_->size());
      if (next < 0 || next > size) return internal::PositionOutOfRange(description_, next, 0, size);
      next_ = static_cast<size_t>(next);
      return absl::OkStatus();
    }

   private:
    std::shared_ptr<const std::vector<T>> values_;
    std::string description_;
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
    return std::unique_ptr<SourceReader<int64_t>>(
        new Reader(from_ + begin, from_ + end, Describe()));
  }

 private:
  class Reader : public SourceReader<int64_t> {
   public:
    Reader(int64_t begin, int64_t end, std::string description)
        : begin_(begin), next_(begin), end_(end), description_(std::move(description)) {}
    absl::StatusOr<PollResult> PollNext(Collector<int64_t>& out, int max_records) override {
      int64_t stop = std::min(end_, next_ + max_records);
      for (; next_ < stop; ++next_) out.Collect(next_);
      return next_ == end_ ? PollResult::End() : PollResult::More();
    }

    // The next value of this subtask's range.
    absl::StatusOr<std::string> SnapshotState(int64_t) override {
      return internal::EncodeIndexPosition(next_);
    }
    absl::Status RestoreState(std::string_view state) override {
      SLUICE_ASSIGN_OR_RETURN(int64_t next, internal::DecodeIndexPosition(state, description_));
      if (next < begin_ || next > end_) {
        return internal::PositionOutOfRange(description_, next, begin_, end_);
      }
      next_ = next;
      return absl::OkStatus();
    }

   private:
    int64_t begin_;
    int64_t next_;
    int64_t end_;
    std::string description_;
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
        options_.records_per_second / ctx.parallelism(), Describe()));
  }

 private:
  class Reader : public SourceReader<T> {
   public:
    Reader(Generator gen, int64_t begin, int64_t end, int64_t stride, double rate,
           std::string description)
        : gen_(std::move(gen)),
          begin_(begin),
          next_(begin),
          end_(end),
          stride_(stride),
          rate_(rate),
          description_(std::move(description)) {}

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

    // The index of the next record of this subtask. The rate limit starts afresh on restore.
    absl::StatusOr<std::string> SnapshotState(int64_t) override {
      return internal::EncodeIndexPosition(next_);
    }
    absl::Status RestoreState(std::string_view state) override {
      SLUICE_ASSIGN_OR_RETURN(int64_t next, internal::DecodeIndexPosition(state, description_));
      if (next < begin_ || next > end_ || (next - begin_) % stride_ != 0) {
        return internal::PositionOutOfRange(description_, next, begin_, end_);
      }
      next_ = next;
      emitted_ = 0;
      return absl::OkStatus();
    }

   private:
    Generator gen_;
    int64_t begin_;
    int64_t next_;
    int64_t end_;
    int64_t stride_;
    double rate_;
    std::string description_;
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
