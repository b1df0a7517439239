// Operator templates: the typed code that runs per record. Internal.
//
// Each operator consumes a whole batch in one (virtual) call and runs the user function over it in
// a plain loop, where the function's concrete type is a template parameter and inlines.
#pragma once

#include <algorithm>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/api/functions.h>
#include <sluice/connectors/sink.h>
#include <sluice/connectors/source.h>
#include <sluice/core/collector.h>
#include <sluice/core/key.h>
#include <sluice/core/status.h>
#include <sluice/internal/batch.h>
#include <sluice/internal/graph.h>
#include <sluice/internal/job_failure.h>
#include <sluice/internal/side_outputs.h>
#include <sluice/time/clock.h>
#include <sluice/time/watermark_strategy.h>

namespace sluice::internal {

// Prefixes a status message with where it happened.
inline absl::Status Annotate(const absl::Status& status, absl::string_view where) {
  return absl::Status(status.code(), absl::StrCat(where, ": ", status.message()));
}

// Call inside a catch block: turns the in-flight exception into a JobFailure naming `op`.
[[noreturn]] inline void RethrowAsJobFailure(const std::string& op) {
  RethrowAsJobFailure("operator", op);
}

// Runs `body`, converting any exception into a JobFailure that names operator `op`.
template <typename Body>
void GuardUserCode(const std::string& op, Body&& body) {
  try {
    body();
  } catch (...) {
    RethrowAsJobFailure(op);
  }
}

class OperatorBase {
 public:
  explicit OperatorBase(RuntimeContext ctx) : ctx_(std::move(ctx)) {}
  virtual ~OperatorBase() = default;

  const RuntimeContext& runtime() const { return ctx_; }
  const std::string& name() const { return ctx_.operator_name; }

  // Called once before the first record, downstream operators first. Throws JobFailure.
  virtual void Open() {}
  // Called once at the end, after end of input or on cancellation. Must not throw.
  virtual void Close() {}

  // The consumer a chained predecessor pushes into (single-input operators).
  virtual BatchConsumerBase* Input() { return nullptr; }
  // A batch that arrived through a channel on input `gate`.
  virtual void ProcessBatch(int gate, AnyBatch& batch) = 0;
  // Every channel of input `gate` has ended.
  virtual void EndOfInput(int gate) = 0;
  // The watermark of input `gate` (the minimum over its channels) advanced.
  virtual void ProcessWatermark(int gate, Timestamp watermark) = 0;
  virtual int num_gates() const { return 1; }

  // Processing-time callbacks (periodic watermarks, processing-time timers): the runtime calls
  // OnProcessingTime(now) once the clock reaches NextProcessingDeadline().
  virtual Timestamp NextProcessingDeadline() const { return kMaxWatermark; }
  virtual void OnProcessingTime(Timestamp /*now*/) {}

 protected:
  RuntimeContext ctx_;
};

class SourceOperatorBase : public OperatorBase {
 public:
  using OperatorBase::OperatorBase;
  void ProcessBatch(int, AnyBatch&) override { SLUICE_CHECK(false); }
  void EndOfInput(int) override { EndInput(); }
  void ProcessWatermark(int, Timestamp) override {}
  // Polls the reader once. Throws JobFailure.
  virtual PollResult Poll(int max_records) = 0;
  // The reader is exhausted: flush and end every output.
  virtual void EndInput() = 0;
};

template <typename In>
class OneInputOperator : public OperatorBase, public BatchConsumer<In> {
 public:
  using OperatorBase::OperatorBase;
  BatchConsumerBase* Input() final { return this; }
  void ProcessBatch(int, AnyBatch& batch) final {
    auto& b = static_cast<Batch<In>&>(batch);
    this->Consume(b.records, b.timestamps);
  }
  void EndOfInput(int) final { this->OnEndOfInput(); }
  void ProcessWatermark(int, Timestamp watermark) final { this->OnWatermark(watermark); }
};

// Wires a collector to the consumers of output `tag` of an operator instance.
template <typename T>
void WireCollector(Collector<T>& collector, const OperatorSetup& setup, const std::string& tag = "") {
  for (BatchConsumerBase* c : setup.ConsumersOf(tag)) collector.AddConsumer(c);
}

// Calls an optional Open(const RuntimeContext&) / Close() of a user function object.
template <typename F>
void OpenUserFunction(F& fn, const RuntimeContext& ctx) {
  if constexpr (requires { fn.Open(ctx); }) {
    GuardUserCode(ctx.operator_name, [&] { fn.Open(ctx); });
  }
}
template <typename F>
void CloseUserFunction(F& fn) {
  if constexpr (requires { fn.Close(); }) {
    try {
      fn.Close();
    } catch (...) {
      // Close runs during teardown; its failure cannot change the job's outcome.
    }
  }
}

// Base of operators with one typed main output and optional side outputs.
template <typename In, typename Out, typename F>
class UserFunctionOperator : public OneInputOperator<In> {
 public:
  UserFunctionOperator(const OperatorSetup& setup, F fn)
      : OneInputOperator<In>(setup.runtime), fn_(std::move(fn)), out_(setup.batch_size) {
    WireCollector(out_, setup);
    side_.Init(setup);
  }
  void Open() override {
    opened_ = true;
    OpenUserFunction(fn_, this->ctx_);
  }
  // The user function's Close() runs iff its Open() ran (even when Open() threw).
  void Close() override {
    if (opened_) CloseUserFunction(fn_);
  }
  void OnEndOfInput() override {
    out_.EndInput();
    side_.EndInput();
  }
  void OnWatermark(Timestamp watermark) override {
    watermark_ = watermark;
    out_.EmitWatermark(watermark);
    side_.EmitWatermark(watermark);
  }

 protected:
  void FlushOutputs() {
    out_.Flush();
    side_.Flush();
  }
  F fn_;
  Collector<Out> out_;
  SideOutputs side_;
  Timestamp watermark_ = kMinWatermark;
  bool opened_ = false;
};

template <typename In, typename Out, typename F>
class MapOperator final : public UserFunctionOperator<In, Out, F> {
 public:
  using UserFunctionOperator<In, Out, F>::UserFunctionOperator;
  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        this->out_.CollectWithTimestamp(std::invoke(this->fn_, std::move(records[i])),
                                        timestamps[i]);
      }
    });
    this->out_.Flush();
  }
};

template <typename In, typename F>
class FilterOperator final : public UserFunctionOperator<In, In, F> {
 public:
  using UserFunctionOperator<In, In, F>::UserFunctionOperator;
  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        if (std::invoke(this->fn_, std::as_const(records[i]))) {
          this->out_.CollectWithTimestamp(std::move(records[i]), timestamps[i]);
        }
      }
    });
    this->out_.Flush();
  }
};

template <typename In, typename Out, typename F>
class FlatMapOperator final : public UserFunctionOperator<In, Out, F> {
 public:
  using UserFunctionOperator<In, Out, F>::UserFunctionOperator;
  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        this->out_.SetTimestamp(timestamps[i]);
        std::invoke(this->fn_, std::as_const(records[i]), this->out_);
      }
    });
    this->out_.Flush();
  }
};

template <typename In, typename Out, typename F>
class ProcessOperator final : public UserFunctionOperator<In, Out, F> {
 public:
  ProcessOperator(const OperatorSetup& setup, F fn)
      : UserFunctionOperator<In, Out, F>(setup, std::move(fn)),
        context_(&this->ctx_, &this->side_) {}
  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    context_.SetWatermark(this->watermark_);
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        In& r = records[i];
        this->out_.SetTimestamp(timestamps[i]);
        context_.SetTimestamp(timestamps[i]);
        if constexpr (requires { this->fn_.ProcessElement(r, context_, this->out_); }) {
          this->fn_.ProcessElement(std::as_const(r), context_, this->out_);
        } else {
          std::invoke(this->fn_, std::as_const(r), context_, this->out_);
        }
      }
    });
    this->FlushOutputs();
  }

 private:
  ProcessContext context_;
};

template <typename K, typename In, typename Out, typename KeySelector, typename F>
class KeyedProcessOperator final : public UserFunctionOperator<In, Out, F> {
 public:
  KeyedProcessOperator(const OperatorSetup& setup, KeySelector ks, F fn)
      : UserFunctionOperator<In, Out, F>(setup, std::move(fn)),
        key_selector_(std::move(ks)),
        context_(&this->ctx_, &this->side_) {
    timers_.clock = setup.clock;
    context_.SetTimers(&timers_);
  }

  // Fires the event-time timers the watermark passed, in time order, then forwards it.
  void OnWatermark(Timestamp watermark) override {
    this->watermark_ = watermark;
    context_.SetWatermark(watermark);
    FireTimers(timers_.event, watermark, TimeDomain::kEventTime);
    UserFunctionOperator<In, Out, F>::OnWatermark(watermark);
  }
  Timestamp NextProcessingDeadline() const override {
    return const_cast<KeyedProcessOperator*>(this)->timers_.processing.NextTime();
  }
  void OnProcessingTime(Timestamp now) override {
    FireTimers(timers_.processing, now, TimeDomain::kProcessingTime);
  }
  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    context_.SetWatermark(this->watermark_);
    context_.SetTimeDomain(TimeDomain::kEventTime);
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        In& r = records[i];
        this->out_.SetTimestamp(timestamps[i]);
        context_.SetTimestamp(timestamps[i]);
        context_.SetCurrentKey(key_selector_(std::as_const(r)));
        if constexpr (requires { this->fn_.ProcessElement(r, context_, this->out_); }) {
          this->fn_.ProcessElement(std::as_const(r), context_, this->out_);
        } else {
          std::invoke(this->fn_, std::as_const(r), context_, this->out_);
        }
      }
    });
    this->FlushOutputs();
  }

 private:
  void FireTimers(internal::TimerQueue<K, VoidNamespace>& queue, Timestamp until,
                  TimeDomain domain) {
    if constexpr (requires { this->fn_.OnTimer(Timestamp{}, context_, this->out_); }) {
      typename internal::TimerQueue<K, VoidNamespace>::Timer timer;
      GuardUserCode(this->name(), [&] {
        while (queue.PopDue(until, &timer)) {
          context_.SetCurrentKey(timer.key);
          context_.SetTimeDomain(domain);
          Timestamp ts = domain == TimeDomain::kEventTime ? timer.time : kNoTimestamp;
          context_.SetTimestamp(ts);
          this->out_.SetTimestamp(ts);
          this->fn_.OnTimer(timer.time, context_, this->out_);
        }
      });
      this->FlushOutputs();
    } else {
      // A function without OnTimer: due timers are dropped (nothing would run).
      typename internal::TimerQueue<K, VoidNamespace>::Timer timer;
      while (queue.PopDue(until, &timer)) {
      }
    }
  }

  KeySelector key_selector_;
  KeyedProcessContext<K> context_;
  typename KeyedProcessContext<K>::Timers timers_;
};

// Rolling reduce per key. Streaming: emits the updated value for every record, as Flink does.
// Batch: emits only the final value of each key when the input ends.
template <typename K, typename T, typename KeySelector, typename F>
class KeyedReduceOperator final : public UserFunctionOperator<T, T, F> {
 public:
  KeyedReduceOperator(const OperatorSetup& setup, KeySelector ks, F fn)
      : UserFunctionOperator<T, T, F>(setup, std::move(fn)), key_selector_(std::move(ks)) {}

  void Consume(std::vector<T>& records, std::vector<Timestamp>& timestamps) override {
    const bool emit = !this->ctx_.batch_mode;
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        T& r = records[i];
        K key = key_selector_(std::as_const(r));
        auto it = state_.find(key);
        if (it == state_.end()) {
          it = state_.emplace(std::move(key), std::pair<T, Timestamp>(std::move(r), timestamps[i]))
                   .first;
        } else {
          it->second.first =
              std::invoke(this->fn_, std::as_const(it->second.first), std::as_const(r));
          it->second.second = timestamps[i];
        }
        // The update carries the timestamp of the record that caused it, as in Flink.
        if (emit) this->out_.CollectWithTimestamp(it->second.first, timestamps[i]);
      }
    });
    this->out_.Flush();
  }

  void OnEndOfInput() override {
    if (this->ctx_.batch_mode) {
      for (auto& [key, entry] : state_) {
        this->out_.CollectWithTimestamp(std::move(entry.first), entry.second);
      }
      state_.clear();
    }
    UserFunctionOperator<T, T, F>::OnEndOfInput();
  }

 private:
  KeySelector key_selector_;
  // Per key: the reduced value and the timestamp of the last record folded into it.
  absl::flat_hash_map<K, std::pair<T, Timestamp>> state_;
};

// Two inputs of different types (Connect): `fn1` handles records of gate 0, `fn2` of gate 1, both
// emitting into one output. The output ends when both inputs have ended.
template <typename In1, typename In2, typename Out, typename F1, typename F2, bool kFlat>
class CoOperator final : public OperatorBase {
 public:
  CoOperator(const OperatorSetup& setup, F1 fn1, F2 fn2)
      : OperatorBase(setup.runtime), fn1_(std::move(fn1)), fn2_(std::move(fn2)),
        out_(setup.batch_size) {
    WireCollector(out_, setup);
  }
  int num_gates() const override { return 2; }
  void Open() override {
    opened_ = true;
    OpenUserFunction(fn1_, ctx_);
    OpenUserFunction(fn2_, ctx_);
  }
  void Close() override {
    if (!opened_) return;
    CloseUserFunction(fn1_);
    CloseUserFunction(fn2_);
  }
  void ProcessBatch(int gate, AnyBatch& batch) override {
    if (gate == 0) {
      auto& b = static_cast<Batch<In1>&>(batch);
      Apply(fn1_, b.records, b.timestamps);
    } else {
      auto& b = static_cast<Batch<In2>&>(batch);
      Apply(fn2_, b.records, b.timestamps);
    }
    out_.Flush();
  }
  void EndOfInput(int gate) override {
    ended_[gate == 0 ? 0 : 1] = true;
    if (ended_[0] && ended_[1]) out_.EndInput();
  }
  // The operator's event time is the minimum of its two inputs' watermarks.
  void ProcessWatermark(int gate, Timestamp watermark) override {
    gate_watermark_[gate == 0 ? 0 : 1] = watermark;
    Timestamp combined = std::min(gate_watermark_[0], gate_watermark_[1]);
    if (combined > watermark_) {
      watermark_ = combined;
      out_.EmitWatermark(combined);
    }
  }

 private:
  template <typename F, typename In>
  void Apply(F& fn, std::vector<In>& records, std::vector<Timestamp>& timestamps) {
    GuardUserCode(name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) {
        out_.SetTimestamp(timestamps[i]);
        if constexpr (kFlat) {
          std::invoke(fn, std::as_const(records[i]), out_);
        } else {
          out_.Collect(std::invoke(fn, std::move(records[i])));
        }
      }
    });
  }
  Timestamp gate_watermark_[2] = {kMinWatermark, kMinWatermark};
  Timestamp watermark_ = kMinWatermark;
  F1 fn1_;
  F2 fn2_;
  Collector<Out> out_;
  bool ended_[2] = {false, false};
  bool opened_ = false;
};

// Assigns timestamps and generates watermarks (AssignTimestampsAndWatermarks, and the strategy
// given to FromSource). Upstream watermarks are dropped except the final +infinity, as in Flink.
// Periodic generators emit every auto-watermark interval of processing time; in batch mode only
// the final watermark is emitted.
template <typename T>
class TimestampsAndWatermarksOperator final : public OneInputOperator<T>, private WatermarkOutput {
 public:
  TimestampsAndWatermarksOperator(const OperatorSetup& setup, WatermarkStrategy<T> strategy)
      : OneInputOperator<T>(setup.runtime),
        strategy_(std::move(strategy)),
        clock_(setup.clock),
        interval_(setup.auto_watermark_interval_ms),
        out_(setup.batch_size) {
    WireCollector(out_, setup);
  }

  void Open() override {
    GuardUserCode(this->name(), [&] { generator_ = strategy_.CreateGenerator(clock_); });
    if (generator_ != nullptr && !this->ctx_.batch_mode) {
      next_emit_ = clock_->NowMillis() + interval_;
    }
  }

  void Consume(std::vector<T>& records, std::vector<Timestamp>& timestamps) override {
    GuardUserCode(this->name(), [&] {
      if (strategy_.assigner()) strategy_.assigner()(records.data(), timestamps.data(), records.size());
      if (generator_ == nullptr) {
        for (size_t i = 0; i < records.size(); ++i) {
          out_.CollectWithTimestamp(std::move(records[i]), timestamps[i]);
        }
        return;
      }
      // The generator sees each event after it was emitted, so a punctuated watermark follows
      // the record that caused it (Flink's order).
      for (size_t i = 0; i < records.size(); ++i) {
        out_.CollectWithTimestamp(records[i], timestamps[i]);
        generator_->OnEvent(records[i], timestamps[i], *this);
      }
    });
    out_.Flush();
  }

  void OnWatermark(Timestamp watermark) override {
    if (watermark == kMaxWatermark) EmitWatermark(kMaxWatermark);
  }
  void OnEndOfInput() override {
    EmitWatermark(kMaxWatermark);
    out_.EndInput();
  }

  Timestamp NextProcessingDeadline() const override { return next_emit_; }
  void OnProcessingTime(Timestamp now) override {
    if (generator_ == nullptr || next_emit_ == kMaxWatermark) return;
    GuardUserCode(this->name(), [&] { generator_->OnPeriodicEmit(*this); });
    next_emit_ = now + interval_;
  }

 private:
  // WatermarkOutput: only advancing watermarks go downstream; none in batch mode but the last.
  void EmitWatermark(Timestamp watermark) override {
    if (watermark <= emitted_) return;
    if (this->ctx_.batch_mode && watermark != kMaxWatermark) return;
    emitted_ = watermark;
    out_.EmitWatermark(watermark);
  }
  void MarkIdle() override {}
  void MarkActive() override {}

  WatermarkStrategy<T> strategy_;
  const Clock* clock_;
  int64_t interval_;
  std::unique_ptr<WatermarkGenerator<T>> generator_;
  Collector<T> out_;
  Timestamp emitted_ = kMinWatermark;
  Timestamp next_emit_ = kMaxWatermark;
};

template <typename T>
class SinkOperator final : public OneInputOperator<T> {
 public:
  SinkOperator(const OperatorSetup& setup, std::unique_ptr<SinkWriter<T>> writer)
      : OneInputOperator<T>(setup.runtime), writer_(std::move(writer)) {}

  void Consume(std::vector<T>& records, std::vector<Timestamp>&) override {
    absl::Status status;
    GuardUserCode(this->name(), [&] { status = writer_->Write(records); });
    if (!status.ok()) throw JobFailure(Annotate(status, this->name()));
  }
  void OnEndOfInput() override {
    absl::Status status;
    GuardUserCode(this->name(), [&] { status = writer_->Finish(); });
    if (!status.ok()) throw JobFailure(Annotate(status, this->name()));
  }
  void OnWatermark(Timestamp) override {}
  void Close() override {
    try {
      writer_->Close();
    } catch (...) {
    }
  }

 private:
  std::unique_ptr<SinkWriter<T>> writer_;
};

template <typename T>
class SourceOperator final : public SourceOperatorBase {
 public:
  SourceOperator(const OperatorSetup& setup, std::unique_ptr<SourceReader<T>> reader)
      : SourceOperatorBase(setup.runtime), reader_(std::move(reader)), out_(setup.batch_size) {
    WireCollector(out_, setup);
  }

  PollResult Poll(int max_records) override {
    absl::StatusOr<PollResult> result;
    GuardUserCode(name(), [&] { result = reader_->PollNext(out_, max_records); });
    out_.Flush();
    if (!result.ok()) throw JobFailure(Annotate(result.status(), name()));
    return *result;
  }
  // End of a bounded input: event time jumps to +infinity so every event-time window and timer
  // downstream fires (as Flink's sources do), then the end of input follows.
  void EndInput() override {
    out_.EmitWatermark(kMaxWatermark);
    out_.EndInput();
  }
  void Close() override {
    try {
      reader_->Close();
    } catch (...) {
    }
  }

 private:
  std::unique_ptr<SourceReader<T>> reader_;
  Collector<T> out_;
};

}  // namespace sluice::internal
