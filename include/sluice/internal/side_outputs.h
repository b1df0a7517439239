// The side outputs of one operator instance. Internal.
#pragma once

#include <memory>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <sluice/core/collector.h>
#include <sluice/core/output_tag.h>
#include <sluice/internal/graph.h>
#include <sluice/internal/job_failure.h>

namespace sluice::internal {

class SideOutputs {
 public:
  // Creates a collector for every side output that has consumers.
  void Init(const OperatorSetup& setup) {
    operator_name_ = setup.runtime.operator_name;
    for (const OutputSetup& o : setup.outputs) {
      if (o.tag.empty() || o.consumers.empty()) continue;
      std::unique_ptr<CollectorBase> c = o.make_collector(static_cast<size_t>(setup.batch_size));
      for (BatchConsumerBase* consumer : o.consumers) c->AddConsumer(consumer);
      const std::type_info* type = &c->record_type();
      entries_.push_back({o.tag, type, std::move(c)});
    }
  }

  // Emits `value` to side output `tag`; a side output nobody consumes discards it (as in Flink).
  // Throws JobFailure when the tag's type differs from the type GetSideOutput() asked for.
  template <typename S>
  void Emit(const OutputTag<S>& tag, S&& value, Timestamp timestamp) {
    for (auto& e : entries_) {
      if (e.tag == tag.id()) {
        if (*e.type != typeid(S)) [[unlikely]] {
          throw JobFailure(absl::InvalidArgumentError(
              absl::StrCat("operator '", operator_name_, "': side output '", tag.id(),
                           "' is emitted with another type than GetSideOutput() requested")));
        }
        static_cast<Collector<S>*>(e.collector.get())
            ->CollectWithTimestamp(std::move(value), timestamp);
        return;
      }
    }
  }

  void Flush() {
    for (auto& e : entries_) e.collector->Flush();
  }
  void EndInput() {
    for (auto& e : entries_) e.collector->EndInput();
  }
  void EmitWatermark(Timestamp watermark) {
    for (auto& e : entries_) e.collector->EmitWatermark(watermark);
  }
  void EmitWatermarkStatus(bool idle) {
    for (auto& e : entries_) e.collector->EmitWatermarkStatus(idle);
  }

 private:
  struct Entry {
    std::string tag;
    const std::type_info* type;
    std::unique_ptr<CollectorBase> collector;
  };
  std::string operator_name_;
  std::vector<Entry> entries_;
};

}  // namespace sluice::internal
