// Simple sinks: PrintSink (stdout, as Flink's print()), CollectSink (into memory, for tests and host
// applications) and CallbackSink (a user function per record).
//
//   sluice::CollectSink<int64_t> results;
//   env.FromSequence(1, 3).SinkTo(results);
//   SLUICE_RETURN_IF_ERROR(env.Execute());
//   std::vector<int64_t> got = results.values();        // {1, 2, 3} in some order
//
//   stream.SinkTo(sluice::PrintSink<Click>());           // "2> click{...}" when parallelism > 1
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

#include <sluice/connectors/sink.h>
#include <sluice/core/format.h>

namespace sluice {
namespace internal {
// Writes `text` to stdout (or stderr) in one piece, so lines of parallel subtasks never interleave.
void WriteToStandardStream(std::string_view text, bool to_stderr);
}  // namespace internal

struct PrintSinkOptions {
  // Printed before each record as "<identifier>:<subtask>> " (or "<identifier>> " at parallelism
  // 1). Empty: just "<subtask>> ", or nothing at parallelism 1 — exactly as Flink's print().
  std::string identifier;
  // Print to standard error instead of standard output. Default false.
  bool to_stderr = false;
};

// Prints each record on its own line. Subtask numbers in the prefix are 1-based, as in Flink.
template <typename T>
  requires TextFormattable<T>
class PrintSink : public Sink<T> {
 public:
  explicit PrintSink(PrintSinkOptions options = {}) : options_(std::move(options)) {}

  std::string Describe() const override { return "Print to Std. Out"; }

  absl::StatusOr<std::unique_ptr<SinkWriter<T>>> CreateWriter(const RuntimeContext& ctx) override {
    std::string prefix;
    if (ctx.parallelism > 1) {
      prefix = options_.identifier.empty()
                   ? absl::StrCat(ctx.subtask_index + 1, "> ")
                   : absl::StrCat(options_.identifier, ":", ctx.subtask_index + 1, "> ");
    } else if (!options_.identifier.empty()) {
      prefix = absl::StrCat(options_.identifier, "> ");
    }
    return std::unique_ptr<SinkWriter<T>>(new Writer(std::move(prefix), options_.to_stderr));
  }

 private:
  class Writer : public SinkWriter<T> {
   public:
    Writer(std::string prefix, bool to_stderr) : prefix_(std::move(prefix)), to_stderr_(to_stderr) {}
    absl::Status Write(std::vector<T>& records) override {
      out_.str(std::string());
      for (const T& r : records) {
        out_ << prefix_;
        FormatValue(out_, r);
        out_ << '\n';
      }
      internal::WriteToStandardStream(out_.view(), to_stderr_);
      return absl::OkStatus();
    }

   private:
    std::string prefix_;
    bool to_stderr_;
    std::ostringstream out_;
  };

  PrintSinkOptions options_;
};

// Collects every record into memory shared by all copies of the sink. Thread-safe.
template <typename T>
class CollectSink : public Sink<T> {
 public:
  CollectSink() : state_(std::make_shared<State>()) {}

  std::string Describe() const override { return "Collect"; }

  absl::StatusOr<std::unique_ptr<SinkWriter<T>>> CreateWriter(const RuntimeContext&) override {
    return std::unique_ptr<SinkWriter<T>>(new Writer(state_));
  }

  // Everything collected so far, batches of different subtasks in arrival order.
  std::vector<T> values() const {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->values;
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->values.size();
  }
  void Clear() {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->values.clear();
  }

 private:
  struct State {
    mutable std::mutex mu;
    std::vector<T> values;
  };
  class Writer : public SinkWriter<T> {
   public:
    explicit Writer(std::shared_ptr<State> state) : state_(std::move(state)) {}
    absl::Status Write(std::vector<T>& records) override {
      std::lock_guard<std::mutex> lock(state_->mu);
      for (T& r : records) state_->values.push_back(std::move(r));
      return absl::OkStatus();
    }

   private:
    std::shared_ptr<State> state_;
  };

  std::shared_ptr<State> state_;
};

// Calls `fn(const T&)` for each record. Each subtask calls its own copy of `fn`; a callback that
// shares state across copies must synchronize it. A thrown exception fails the job.
template <typename T, typename F = std::function<void(const T&)>>
class CallbackSink : public Sink<T> {
 public:
  template <typename G>
    requires std::invocable<G&, const T&>
  explicit CallbackSink(G fn) : fn_(std::move(fn)) {}

  std::string Describe() const override { return "Callback"; }

  absl::StatusOr<std::unique_ptr<SinkWriter<T>>> CreateWriter(const RuntimeContext&) override {
    return std::unique_ptr<SinkWriter<T>>(new Writer(fn_));
  }

 private:
  class Writer : public SinkWriter<T> {
   public:
    explicit Writer(F fn) : fn_(std::move(fn)) {}
    absl::Status Write(std::vector<T>& records) override {
      for (const T& r : records) fn_(r);
      return absl::OkStatus();
    }

   private:
    F fn_;
  };

  F fn_;
};

}  // namespace sluice
