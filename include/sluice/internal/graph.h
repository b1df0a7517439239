// The logical stream graph that the typed API builds and the runtime compiles into tasks. Internal.
//
// Every typed piece of a job (operators, exchange writers, side-output collectors) is captured here
// as a factory closure created in a typed context, so the runtime that wires and schedules them is
// not a template. Factories run once per subtask when the job starts, never per record.
#pragma once

#include <sluice/internal/rocksdb_store.h>
#include <sluice/state/rocksdb_options.h>
#include <sluice/state/state.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <sluice/core/collector.h>
#include <sluice/core/runtime_context.h>
#include <sluice/internal/batch.h>
#include <sluice/time/clock.h>

namespace sluice::internal {

class TaskServices;

// How records of an edge are distributed over the subtasks of the consumer.
enum class Partitioning {
  kDefault,    // kForward when both sides have the same parallelism, else kRebalance (as Flink)
  kForward,    // subtask i → subtask i; requires equal parallelism
  kRebalance,  // round-robin per record
  kShuffle,    // uniformly random per record
  kBroadcast,  // every record to every subtask
  kHash,       // by key group of the record's key
};

const char* PartitioningName(Partitioning p);

// The producer side of a channel between two tasks. Implemented by the runtime. One producer
// thread at a time.
class OutputChannel {
 public:
  virtual ~OutputChannel() = default;
  virtual void PushBatch(std::unique_ptr<AnyBatch> batch) = 0;
  virtual void PushEndOfInput() = 0;
  virtual void PushWatermark(Timestamp watermark) = 0;
  // The producer became idle (true) or active again (false).
  virtual void PushWatermarkStatus(bool idle) = 0;
  // Checkpoint barrier `id`: every record pushed before it belongs to the checkpoint.
  virtual void PushBarrier(int64_t id) = 0;
  // True when the channel has room; when it has none, the producing task is woken once it has.
  virtual bool HasCapacity() = 0;
  // An empty batch the consumer is done with (same record type, capacity kept), or nullptr: the
  // producer fills it again instead of allocating.
  virtual std::unique_ptr<AnyBatch> TakeFreeBatch() { return nullptr; }
};

// Distributes one stream over the channels of an edge. Buffers a batch per channel.
class ExchangeWriterBase {
 public:
  virtual ~ExchangeWriterBase() = default;
  virtual BatchConsumerBase* consumer() = 0;
  // Pushes partially filled batches.
  virtual void FlushBuffers() = 0;
  virtual bool HasCapacity() = 0;
  // Pushes the buffered records, then checkpoint barrier `id`, into every channel.
  virtual void EmitBarrier(int64_t id) = 0;
};

struct WriterSetup {
  Partitioning partitioning;             // resolved: never kDefault
  std::vector<OutputChannel*> channels;  // one per consumer subtask (one for kForward)
  int batch_size;
  int max_parallelism;
  int producer_subtask;
  std::string consumer_name;  // the operator the edge feeds, for error messages
};

using WriterFactory = std::function<std::unique_ptr<ExchangeWriterBase>(const WriterSetup&)>;
using CollectorFactory = std::function<std::unique_ptr<CollectorBase>(size_t batch_size)>;

// One output of an operator instance: the main output (tag "") or a side output.
struct OutputSetup {
  std::string tag;
  CollectorFactory make_collector;  // side outputs only
  std::vector<BatchConsumerBase*> consumers;
};

class OperatorBase;

// How keyed operators of a job keep state (built by the Job from RuntimeOptions).
struct StateBackendSetup {
  StateBackendKind kind = StateBackendKind::kHashMap;
  RocksDbStateOptions rocksdb;
  std::shared_ptr<RocksDbResources> rocksdb_resources;
  std::string rocksdb_job_dir;  // unique per job; removed when the job ends
};

struct OperatorSetup {
  RuntimeContext runtime;
  const StateBackendSetup* state = nullptr;
  int node_id = 0;
  int batch_size = 1024;
  std::vector<OutputSetup> outputs;
  TaskServices* services = nullptr;
  const Clock* clock = nullptr;  // processing time
  int64_t auto_watermark_interval_ms = 200;

  // Consumers of the output `tag` ("" = main output). Empty when nobody consumes it.
  std::vector<BatchConsumerBase*> ConsumersOf(const std::string& tag) const {
    for (const auto& o : outputs) {
      if (o.tag == tag) return o.consumers;
    }
    return {};
  }
};

using OperatorFactory =
    std::function<absl::StatusOr<std::unique_ptr<OperatorBase>>(OperatorSetup&)>;

struct StreamNode {
  int id = 0;
  std::string name;
  // Set with Uid(): the operator's state is keyed by it in savepoints (runtime/operator_ids.h).
  std::optional<std::string> uid;
  // Set with UidHash(): the operator id itself (32 hex digits), to adopt state saved under an id
  // derived from a graph position (Flink's setUidHash).
  std::optional<std::string> uid_hash;
  // What the operator is, from its default name ("Map", "Window", "Keyed Process", "Source",
  // "Sink"): part of its derived id, unchanged by Name().
  std::string kind;
  int parallelism = 0;             // 0 = the environment's default
  int max_source_parallelism = 0;  // > 0 caps the parallelism (non-parallel sources, sinks)
  // >= 0: this node always has the parallelism of node `follows` (the watermark operator of a
  // source), and SetParallelism()/Name() on its stream apply to that node.
  int follows = -1;
  bool is_source = false;
  bool is_sink = false;
  bool bounded = true;      // sources only
  std::string output_path;  // sinks: Sink::OutputPath(), made absolute
  const std::type_info* output_type = nullptr;
  OperatorFactory make_operator;
  // Side outputs requested through GetSideOutput: tag id → collector factory.
  std::vector<std::pair<std::string, CollectorFactory>> side_outputs;
  const std::type_info* SideOutputType(const std::string& tag) const;
};

struct StreamEdge {
  int from = 0;
  std::string tag;  // "" = main output of `from`
  int to = 0;
  int gate = 0;  // input gate of `to` (0 for one-input operators)
  Partitioning partitioning = Partitioning::kDefault;
  WriterFactory make_writer;
};

struct StreamGraph {
  // Which job of its environment this graph describes; streams of an executed job are stale.
  uint64_t generation = 0;
  std::vector<StreamNode> nodes;
  std::vector<StreamEdge> edges;
  // Misuse detected while the job was described; Execute() reports the first one.
  std::vector<absl::Status> errors;
};

}  // namespace sluice::internal
