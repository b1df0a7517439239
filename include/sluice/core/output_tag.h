// OutputTag<T>: names a side output of an operator, as in Flink.
//
//   sluice::OutputTag<std::string> rejected("rejected");
//   auto main = stream.Process([&](const Order& o, sluice::ProcessContext& ctx,
//                                  sluice::Collector<Order>& out) {
//     if (o.amount < 0) ctx.Output(rejected, o.id); else out.Collect(o);
//   });
//   main.GetSideOutput(rejected).SinkTo(sluice::PrintSink<std::string>());
//
// Two tags with the same id denote the same side output; they must have the same type.
#pragma once

#include <string>
#include <utility>

namespace sluice {

template <typename T>
class OutputTag {
 public:
  using value_type = T;
  explicit OutputTag(std::string id) : id_(std::move(id)) {}
  const std::string& id() const { return id_; }

 private:
  std::string id_;
};

}  // namespace sluice
