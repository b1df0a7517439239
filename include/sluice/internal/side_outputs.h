// The side outputs of one operator instance. Internal.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <sluice/core/collector.h>
#include <sluice/core/output_tag.h>
#include <sluice/core/status.h>
#include <sluice/internal/graph.h>

namespace sluice::internal {

class SideOutputs {
 public:
  // Creates a collector for every side output that has consumers.
  void Init(const OperatorSetup& setup) {
    for (const OutputSetup& o : setup.outputs) {
      if (o.tag.empty() || o.consumers.empty()) continue;
      std::unique_ptr<CollectorBase> c = o.make_collector(static_cast<size_t>(setup.batch_size));
      for (BatchConsumerBase* consumer : o.consumers) c->AddConsumer(consumer);
      entries_.push_back({o.tag, std::move(c)});
    }
  }

  // Emits `value` to side output `tag`; a side output nobody consumes discards it (as in Flink).
  template <typename S>
  void Emit(const OutputTag<S>& tag, S&& value) {
    for (auto& e : entries_) {
      if (e.tag == tag.id()) {
        SLUICE_CHECK(e.collector->record_type() == typeid(S));
        static_cast<Collector<S>*>(e.collector.get())->Collect(std::move(value));
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

 private:
  struct Entry {
    std::string tag;
    std::unique_ptr<CollectorBase> collector;
  };
  std::vector<Entry> entries_;
};

}  // namespace sluice::internal
