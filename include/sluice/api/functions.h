// User function interfaces: process functions and their contexts.
//
// Most operators take plain lambdas (Map, Filter, FlatMap, KeyBy, Reduce). Process and keyed
// Process take either a lambda `(const In&, Context&, Collector<Out>&)` or a class derived from
// ProcessFunction / KeyedProcessFunction (with optional Open/Close). Every parallel subtask gets
// its own copy of the function object, so a function may keep per-subtask members without locks.
//
//   class Dedup : public sluice::KeyedProcessFunction<int64_t, Click, Click> {
//    public:
//     void ProcessElement(const Click& c, Context& ctx, sluice::Collector<Click>& out) override {
//       if (ctx.CurrentKey() != last_) out.Collect(c);
//       last_ = ctx.CurrentKey();
//     }
//    private:
//     int64_t last_ = -1;
//   };
#pragma once

#include <optional>
#include <utility>

#include <sluice/core/collector.h>
#include <sluice/core/output_tag.h>
#include <sluice/core/runtime_context.h>
#include <sluice/core/status.h>
#include <sluice/internal/side_outputs.h>

namespace sluice {

// Context of ProcessFunction::ProcessElement. Valid only during the call.
class ProcessContext {
 public:
  ProcessContext(const RuntimeContext* runtime, internal::SideOutputs* side)
      : runtime_(runtime), side_(side) {}

  // Emits `value` to the side output `tag`, with the current record's timestamp.
  template <typename S, typename V>
  void Output(const OutputTag<S>& tag, V&& value) {
    side_->Emit(tag, S(std::forward<V>(value)), timestamp_);
  }

  const RuntimeContext& runtime() const { return *runtime_; }

  // The event timestamp of the current record; kNoTimestamp when it has none.
  Timestamp timestamp() const { return timestamp_; }
  // The operator's current event time: the last watermark it received (kMinWatermark at first).
  Timestamp CurrentWatermark() const { return watermark_; }

  // --- Runtime side -------------------------------------------------------------------------------
  void SetTimestamp(Timestamp t) { timestamp_ = t; }
  void SetWatermark(Timestamp w) { watermark_ = w; }

 private:
  const RuntimeContext* runtime_;
  internal::SideOutputs* side_;
  Timestamp timestamp_ = kNoTimestamp;
  Timestamp watermark_ = kMinWatermark;
};

// Context of KeyedProcessFunction::ProcessElement: also knows the key of the current record.
template <typename K>
class KeyedProcessContext : public ProcessContext {
 public:
  using ProcessContext::ProcessContext;
  const K& CurrentKey() const { return *key_; }
  void SetCurrentKey(K key) { key_.emplace(std::move(key)); }

  // Keyed state (issue: state backends) and the timer service will be reachable from here.

 private:
  std::optional<K> key_;
};

template <typename In, typename Out>
class ProcessFunction {
 public:
  using InputType = In;
  using OutputType = Out;
  using Context = ProcessContext;
  virtual ~ProcessFunction() = default;
  virtual void Open(const RuntimeContext&) {}
  virtual void ProcessElement(const In& value, Context& ctx, Collector<Out>& out) = 0;
  virtual void Close() {}
};

template <typename K, typename In, typename Out>
class KeyedProcessFunction {
 public:
  using KeyType = K;
  using InputType = In;
  using OutputType = Out;
  using Context = KeyedProcessContext<K>;
  virtual ~KeyedProcessFunction() = default;
  virtual void Open(const RuntimeContext&) {}
  virtual void ProcessElement(const In& value, Context& ctx, Collector<Out>& out) = 0;
  virtual void Close() {}
};

}  // namespace sluice
