// RuntimeContext: what a running operator instance (a subtask) knows about itself.
//
//   class Enrich : public sluice::ProcessFunction<Click, Click> {
//     void Open(const sluice::RuntimeContext& ctx) override { shard_ = ctx.subtask_index; }
//     ...
//   };
#pragma once

#include <string>

#include <sluice/core/counters.h>

namespace sluice {

struct RuntimeContext {
  // Name of the operator, as set with Name() or its default ("Map", "Source: numbers", ...).
  std::string operator_name;
  // Name of the task (the chain of operators) this subtask runs in, with "(i/n)" appended.
  std::string task_name;
  int subtask_index = 0;  // [0, parallelism)
  int parallelism = 1;
  int max_parallelism = 128;
  // True when the job runs in ExecutionMode::kBatch (resolved, never kAutomatic).
  bool batch_mode = false;
  // The job's counters (never null inside a running job).
  Counters* counters = nullptr;
};

}  // namespace sluice
