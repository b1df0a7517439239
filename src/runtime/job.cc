#include "runtime/job.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

#include <sluice/core/key.h>
#include <sluice/core/log.h>

#include "checkpoint/checkpoint_storage.h"
#include "checkpoint/directory_lock.h"
#include "runtime/checkpoint_coordinator.h"
#include "runtime/operator_ids.h"
#include "state/keyed_change_log.h"

#include <sluice/core/status.h>

namespace sluice::internal {
namespace {

// Two sinks of one job writing the same path, or one inside the other's directory, would
// overwrite or mix each other's files: refused before anything runs, naming both.
absl::Status CheckSinkPaths(const StreamGraph& graph) {
  std::vector<std::pair<std::string, const StreamNode*>> paths;
  for (const StreamNode& n : graph.nodes) {
    if (n.is_sink && !n.output_path.empty()) paths.emplace_back(NormalizedPath(n.output_path), &n);
  }
  for (size_t i = 0; i < paths.size(); ++i) {
    for (size_t j = i + 1; j < paths.size(); ++j) {
      const std::string& a = paths[i].first;
      const std::string& b = paths[j].first;
      const bool same = a == b;
      const bool nested = absl::StartsWith(b, a + "/") || absl::StartsWith(a, b + "/");
      if (!same && !nested) continue;
      return absl::InvalidArgumentError(absl::StrCat(
          "sinks '", paths[i].second->name, "' and '", paths[j].second->name, "' both write ",
          same ? a : absl::StrCat(a, " and ", b, ", one inside the other"),
          ": each would overwrite or mix in the other's files; give each sink its own path"));
    }
  }
  return absl::OkStatus();
}

// True when a saved operator holds keyed or operator state (not only a watermark).
bool HoldsState(const checkpoint::OperatorState& os) {
  for (const checkpoint::SubtaskState& st : os.subtasks()) {
    if (!st.keyed_state().path().empty() || !st.operator_state().path().empty() ||
        st.keyed_changes_size() > 0 || st.rocksdb_files_size() > 0) {
      return true;
    }
  }
  return false;
}

// "operator 'Window' (uid "sums", id 0f3c...)" and what its id was derived from.
std::string DescribeSavedOperator(const checkpoint::OperatorState& os, uint32_t format_version) {
  if (!os.uid().empty()) {
    return absl::StrCat("operator '", os.operator_name(), "' (uid \"", os.uid(), "\")");
  }
  if (format_version < 4) {
    return absl::StrCat("operator '", os.operator_name(), "' (", os.operator_id(),
                        ": a savepoint of an older Sluice, matched by graph position and name)");
  }
  return absl::StrCat("operator '", os.operator_name(), "' (id ", os.operator_id(),
                      ", derived from its place in the graph: it had no Uid(); an operator was "
                      "added or removed before it, or it was removed)");
}

// The job as vertices (chains) and edges between them (JobHandle::Graph()).
JobGraph DescribePlan(const StreamGraph& graph, const std::map<int, std::vector<int>>& chains,
                      const std::vector<int>& parallelism,
                      const std::vector<Partitioning>& resolved, const std::vector<bool>& chained,
                      const std::vector<int>& chain_head,
                      const std::vector<std::string>& operator_ids) {
  JobGraph plan;
  std::map<int, int> vertex_of_head;
  for (const auto& [head, members] : chains) {
    JobGraph::Vertex v;
    v.id = operator_ids[static_cast<size_t>(head)];
    v.parallelism = parallelism[static_cast<size_t>(head)];
    std::vector<std::string> names;
    for (int m : members) {
      const StreamNode& n = graph.nodes[static_cast<size_t>(m)];
      v.operators.push_back(
          {m, n.name, n.kind, operator_ids[static_cast<size_t>(m)], n.uid.value_or("")});
      names.push_back(n.name);
    }
    v.name = absl::StrJoin(names, " -> ");
    vertex_of_head[head] = static_cast<int>(plan.vertices.size());
    plan.vertices.push_back(std::move(v));
  }
  for (size_t i = 0; i < graph.edges.size(); ++i) {
    if (chained[i]) continue;
    const StreamEdge& e = graph.edges[i];
    plan.edges.push_back({vertex_of_head.at(chain_head[static_cast<size_t>(e.from)]),
                          vertex_of_head.at(chain_head[static_cast<size_t>(e.to)]),
                          PartitioningName(resolved[i]), e.tag});
  }
  return plan;
}

int HardwareThreads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace

absl::StatusOr<std::shared_ptr<Job>> Job::Build(StreamGraph graph, const RuntimeOptions& options,
                                                std::string name) {
  std::shared_ptr<Job> job(new Job(std::move(name)));
  SLUICE_RETURN_IF_ERROR(job->Compile(std::move(graph), options));
  return job;
}

absl::Status Job::Compile(StreamGraph graph, const RuntimeOptions& options) {
  SLUICE_RETURN_IF_ERROR(options.Validate());
  clock_ = options.clock ? options.clock : std::make_shared<SystemClock>();
  if (!graph.errors.empty()) return graph.errors.front();
  state_.kind = options.state_backend;
  if (state_.kind == StateBackendKind::kRocksDb) {
    state_.rocksdb = options.rocksdb;
    state_.rocksdb_resources = MakeRocksDbResources(options.rocksdb);
    std::string base = options.rocksdb.local_dir;
    if (base.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      base = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/sluice-rocksdb");
    }
    static std::atomic<int> job_counter{0};
    state_.rocksdb_job_dir = absl::StrCat(base, "/job-", ::getpid(), "-", job_counter.fetch_add(1),
                                          "-", absl::ToUnixMicros(absl::Now()));
    // Working directories of jobs that died (kill -9) are removed; this job's is locked while it
    // runs, so no other job removes it.
    RemoveAbandonedDirectories(base, "job-");
    SLUICE_ASSIGN_OR_RETURN(
        rocksdb_dir_lock_,
        DirectoryLock::Acquire(state_.rocksdb_job_dir, "RocksDB working directory",
                               absl::StrCat("job '", name_, "'")));
  }
  if (graph.nodes.empty()) {
    return absl::FailedPreconditionError(
        "the job has no operators: add a source and a sink before Execute()");
  }
  bool has_sink = std::any_of(graph.nodes.begin(), graph.nodes.end(),
                              [](const StreamNode& n) { return n.is_sink; });
  if (!has_sink) {
    return absl::FailedPreconditionError(
        "the job has no sink: records would go nowhere; add one with SinkTo()");
  }
  SLUICE_RETURN_IF_ERROR(CheckSinkPaths(graph));
  SLUICE_ASSIGN_OR_RETURN(std::vector<std::string> operator_ids, AssignOperatorIds(graph));

  // Execution mode.
  bool all_bounded = true;
  const StreamNode* unbounded = nullptr;
  for (const StreamNode& n : graph.nodes) {
    if (n.is_source && !n.bounded) {
      all_bounded = false;
      if (unbounded == nullptr) unbounded = &n;
    }
  }
  bool batch_mode = options.execution_mode == ExecutionMode::kBatch ||
                    (options.execution_mode == ExecutionMode::kAutomatic && all_bounded);
  if (options.execution_mode == ExecutionMode::kBatch && !all_bounded) {
    return absl::InvalidArgumentError(
        absl::StrCat("execution mode BATCH needs bounded sources, but source '", unbounded->name,
                     "' is unbounded; use STREAMING or AUTOMATIC"));
  }

  // Parallelism of every node.
  const int default_parallelism =
      options.parallelism == 0 ? HardwareThreads() : options.parallelism;
  const size_t num_nodes = graph.nodes.size();
  std::vector<int> parallelism(num_nodes);
  std::vector<std::vector<const StreamEdge*>> in_edges(num_nodes), out_edges(num_nodes);
  for (const StreamEdge& e : graph.edges) {
    in_edges[static_cast<size_t>(e.to)].push_back(&e);
    out_edges[static_cast<size_t>(e.from)].push_back(&e);
  }
  for (const StreamNode& n : graph.nodes) {
    int p = n.parallelism > 0 ? n.parallelism : default_parallelism;
    if (n.max_source_parallelism > 0 && p > n.max_source_parallelism) {
      if (n.parallelism > 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "operator '", n.name, "' supports parallelism at most ", n.max_source_parallelism,
            ", but parallelism ", n.parallelism, " was set"));
      }
      p = n.max_source_parallelism;
    }
    bool keyed = std::any_of(
        in_edges[static_cast<size_t>(n.id)].begin(), in_edges[static_cast<size_t>(n.id)].end(),
        [](const StreamEdge* e) { return e->partitioning == Partitioning::kHash; });
    if (keyed && p > options.max_parallelism) {
      return absl::InvalidArgumentError(absl::StrCat(
          "keyed operator '", n.name, "' has parallelism ", p,
          " above max_parallelism (the number of key groups) ", options.max_parallelism));
    }
    if (!n.is_source && in_edges[static_cast<size_t>(n.id)].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("operator '", n.name, "' has no input (an empty union?)"));
    }
    if (n.follows >= 0) p = parallelism[static_cast<size_t>(n.follows)];
    parallelism[static_cast<size_t>(n.id)] = p;
  }

  // Resolve partitioning; decide which edges are chained (fused into one task).
  std::vector<Partitioning> resolved(graph.edges.size());
  std::vector<bool> chained(graph.edges.size(), false);
  std::vector<int> chain_head(num_nodes);
  for (size_t i = 0; i < num_nodes; ++i) chain_head[i] = static_cast<int>(i);
  for (size_t i = 0; i < graph.edges.size(); ++i) {
    const StreamEdge& e = graph.edges[i];
    int pf = parallelism[static_cast<size_t>(e.from)];
    int pt = parallelism[static_cast<size_t>(e.to)];
    Partitioning p = e.partitioning;
    if (p == Partitioning::kDefault)
      p = pf == pt ? Partitioning::kForward : Partitioning::kRebalance;
    if (p == Partitioning::kForward && pf != pt) {
      return absl::InvalidArgumentError(
          absl::StrCat("forward partitioning from '", graph.nodes[static_cast<size_t>(e.from)].name,
                       "' (parallelism ", pf, ") to '", graph.nodes[static_cast<size_t>(e.to)].name,
                       "' (parallelism ", pt, ") needs equal parallelism; use Rebalance()"));
    }
    resolved[i] = p;
  }
  // Node ids are a topological order: an edge always points to a younger node.
  for (size_t i = 0; i < graph.edges.size(); ++i) {
    const StreamEdge& e = graph.edges[i];
    if (resolved[i] == Partitioning::kForward && in_edges[static_cast<size_t>(e.to)].size() == 1 &&
        !graph.nodes[static_cast<size_t>(e.to)].is_source) {
      chained[i] = true;
      chain_head[static_cast<size_t>(e.to)] = chain_head[static_cast<size_t>(e.from)];
    }
  }

  // Tasks: one per (chain, subtask).
  const int workers = options.worker_threads == 0 ? HardwareThreads() : options.worker_threads;
  pool_.emplace(static_cast<size_t>(workers));
  std::map<int, std::vector<int>> chains;  // head → members in topological order
  for (size_t i = 0; i < num_nodes; ++i) chains[chain_head[i]].push_back(static_cast<int>(i));
  plan_ = DescribePlan(graph, chains, parallelism, resolved, chained, chain_head, operator_ids);
  std::vector<std::vector<Task*>> task_of(num_nodes);  // node → task per subtask
  for (auto& [head, members] : chains) {
    int p = parallelism[static_cast<size_t>(head)];
    std::vector<std::string> names;
    for (int m : members) names.push_back(graph.nodes[static_cast<size_t>(m)].name);
    std::string chain_name = absl::StrJoin(names, " -> ");
    for (int s = 0; s < p; ++s) {
      tasks_.push_back(std::make_unique<Task>(
          this, absl::StrCat(chain_name, " (", s + 1, "/", p, ")"), options.batch_size));
      for (int m : members) task_of[static_cast<size_t>(m)].push_back(tasks_.back().get());
    }
  }

  // Channels of every non-chained edge: channels[edge][producer subtask] = one per consumer.
  std::vector<std::vector<std::vector<Channel*>>> channels(graph.edges.size());
  for (size_t i = 0; i < graph.edges.size(); ++i) {
    if (chained[i]) continue;
    const StreamEdge& e = graph.edges[i];
    int pf = parallelism[static_cast<size_t>(e.from)];
    int pt = parallelism[static_cast<size_t>(e.to)];
    channels[i].resize(static_cast<size_t>(pf));
    for (int a = 0; a < pf; ++a) {
      for (int b = 0; b < pt; ++b) {
        if (resolved[i] == Partitioning::kForward && a != b) continue;
        Task* producer = task_of[static_cast<size_t>(e.from)][static_cast<size_t>(a)];
        Task* consumer = task_of[static_cast<size_t>(e.to)][static_cast<size_t>(b)];
        channels_.push_back(std::make_unique<Channel>(static_cast<size_t>(options.channel_capacity),
                                                      producer, consumer));
        channels[i][static_cast<size_t>(a)].push_back(channels_.back().get());
        consumer->AddInput(channels_.back().get(), e.gate);
      }
    }
  }

  // Operators, built downstream first so each knows the consumers of its outputs.
  for (auto& [head, members] : chains) {
    int p = parallelism[static_cast<size_t>(head)];
    for (int s = 0; s < p; ++s) {
      Task* task = task_of[static_cast<size_t>(head)][static_cast<size_t>(s)];
      std::map<int, std::unique_ptr<OperatorBase>> built;
      for (auto it = members.rbegin(); it != members.rend(); ++it) {
        const StreamNode& node = graph.nodes[static_cast<size_t>(*it)];
        OperatorSetup setup;
        setup.runtime = RuntimeContext{node.name,  task->name(), s, p, options.max_parallelism,
                                       batch_mode, &counters_};
        setup.runtime.node_id = node.id;
        setup.state = &state_;
        setup.node_id = node.id;
        setup.batch_size = options.batch_size;
        setup.services = task;
        setup.clock = clock_.get();
        setup.auto_watermark_interval_ms = ToMillis(options.auto_watermark_interval);
        for (const StreamEdge* e : out_edges[static_cast<size_t>(node.id)]) {
          size_t edge_index = static_cast<size_t>(e - graph.edges.data());
          BatchConsumerBase* consumer;
          if (chained[edge_index]) {
            consumer = built.at(e->to)->Input();
          } else {
            const auto& chans = channels[edge_index][static_cast<size_t>(s)];
            WriterSetup ws{resolved[edge_index],
                           std::vector<OutputChannel*>(chans.begin(), chans.end()),
                           options.batch_size,
                           options.max_parallelism,
                           s,
                           graph.nodes[static_cast<size_t>(e->to)].name};
            std::unique_ptr<ExchangeWriterBase> writer = e->make_writer(ws);
            consumer = writer->consumer();
            task->AddWriter(std::move(writer));
          }
          auto out = std::find_if(setup.outputs.begin(), setup.outputs.end(),
                                  [&](const OutputSetup& o) { return o.tag == e->tag; });
          if (out == setup.outputs.end()) {
            OutputSetup o;
            o.tag = e->tag;
            for (const auto& [tag, factory] : node.side_outputs) {
              if (tag == e->tag) o.make_collector = factory;
            }
            setup.outputs.push_back(std::move(o));
            out = setup.outputs.end() - 1;
          }
          out->consumers.push_back(consumer);
        }
        absl::StatusOr<std::unique_ptr<OperatorBase>> op = node.make_operator(setup);
        if (!op.ok()) return op.status();
        built[node.id] = std::move(*op);
      }
      for (int m : members) task->AddOperator(std::move(built[m]), m, s);
      task->SetExactlyOnce(options.checkpointing.mode == CheckpointingMode::kExactlyOnce);
    }
  }
  running_tasks_ = tasks_.size();

  // Checkpoints: resume from a checkpoint or savepoint, then the coordinator.
  int64_t first_checkpoint_id = 1;
  if (!options.restore_from.empty()) {
    SLUICE_ASSIGN_OR_RETURN(
        RestoredCheckpoint restored,
        CheckpointStorage::LoadFromPath(options.restore_from,
                                        options.checkpointing.fall_back_to_older_checkpoint
                                            ? OlderCheckpoints::kFallBack
                                            : OlderCheckpoints::kRefuse));
    if (!restored.skipped.empty()) {
      // The host allowed it; it must still be loud: sinks will produce committed output again.
      Log(LogSeverity::kWarning, name_,
          absl::StrCat("resuming from the older checkpoint ", restored.dir,
                       " because newer complete checkpoints are damaged (",
                       absl::StrJoin(restored.skipped, "; ",
                                     [](std::string* out, const absl::Status& s) {
                                       absl::StrAppend(out, s.message());
                                     }),
                       "): output that exactly-once sinks committed after checkpoint ",
                       restored.metadata.checkpoint_id(), " will be produced again"));
    }
    SLUICE_RETURN_IF_ERROR(Restore(graph, parallelism, operator_ids, options, restored));
    first_checkpoint_id = restored.metadata.checkpoint_id() + 1;
  }
  std::unique_ptr<CheckpointStorage> storage;
  if (!options.checkpointing.directory.empty()) {
    SLUICE_ASSIGN_OR_RETURN(storage, CheckpointStorage::Open({options.checkpointing.directory,
                                                              options.checkpointing.retained}));
    std::vector<int64_t> ids = storage->CompletedIds();
    if (!ids.empty()) first_checkpoint_id = std::max(first_checkpoint_id, ids.front() + 1);
  }
  std::vector<OperatorInfo> infos;
  for (const StreamNode& n : graph.nodes) {
    infos.push_back({n.id, n.name, parallelism[static_cast<size_t>(n.id)],
                     operator_ids[static_cast<size_t>(n.id)], n.uid.value_or("")});
  }
  std::vector<Task*> tasks;
  for (auto& t : tasks_) tasks.push_back(t.get());
  checkpoint_interval_ = options.checkpointing.interval;
  final_checkpoints_ = options.checkpointing.final_checkpoint &&
                       checkpoint_interval_ > absl::ZeroDuration() &&
                       !options.checkpointing.directory.empty();
  coordinator_ = std::make_unique<CheckpointCoordinator>(
      this, name_, options.checkpointing, std::move(storage), options.max_parallelism,
      std::move(infos), std::move(tasks), first_checkpoint_id);
  return absl::OkStatus();
}

namespace {

// The event-time progress a new subtask of `os` resumes from: its own at the same parallelism,
// otherwise the minimum over the old subtasks (a subtask may get records of any of them); none
// when a subtask recorded none.
Timestamp RestoredWatermark(const checkpoint::OperatorState& os, int parallelism, int subtask) {
  Timestamp watermark = kMaxWatermark;
  bool any = false;
  for (const checkpoint::SubtaskState& st : os.subtasks()) {
    if (os.parallelism() == parallelism && st.subtask_index() != subtask) continue;
    if (!st.has_watermark()) return kMinWatermark;
    watermark = std::min<Timestamp>(watermark, st.watermark());
    any = true;
  }
  return any ? watermark : kMinWatermark;
}

}  // namespace

absl::StatusOr<std::string> Job::StageNativeFiles(const RestoredCheckpoint& restored,
                                                  const checkpoint::SubtaskState& st,
                                                  const std::string& what) {
  static std::atomic<int64_t> counter{0};
  const std::string base =
      state_.rocksdb_job_dir.empty()
          ? (std::filesystem::temp_directory_path() / "sluice-restore").string()
          : state_.rocksdb_job_dir + "/restore";
  const std::string dir =
      absl::StrCat(base, "/", ::getpid(), "-", counter.fetch_add(1), "-", st.subtask_index());
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat(what, ": cannot create ", dir, ": ", ec.message()));
  }
  std::string shared_names;
  for (const checkpoint::FileRef& ref : st.rocksdb_files()) {
    const std::string name = std::filesystem::path(ref.path()).filename().string();
    // Size and CRC are verified while reading: a corrupt file fails the restore here.
    SLUICE_ASSIGN_OR_RETURN(std::string bytes, restored.ReadFile(ref));
    std::ofstream out(dir + "/" + name, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) return absl::InternalError(absl::StrCat(what, ": cannot write ", dir, "/", name));
    constexpr std::string_view kShared = "shared/";
    if (ref.path().compare(0, kShared.size(), kShared) == 0) {
      absl::StrAppend(&shared_names, name, " ", ref.path().substr(kShared.size() + 8), "\n");
    }
  }
  std::ofstream(dir + "/" + kSharedNamesFile) << shared_names;
  return dir;
}

absl::Status Job::Restore(const StreamGraph& graph, const std::vector<int>& parallelism,
                          const std::vector<std::string>& operator_ids,
                          const RuntimeOptions& options, const RestoredCheckpoint& restored) {
  const checkpoint::CheckpointMetadata& md = restored.metadata;
  const int max_parallelism = options.max_parallelism;
  const std::string what =
      absl::StrCat(md.savepoint() ? "savepoint " : "checkpoint ", restored.dir);
  std::map<std::string, int> node_of_id;
  for (size_t i = 0; i < operator_ids.size(); ++i)
    node_of_id[operator_ids[i]] = static_cast<int>(i);
  // The operator each saved state belongs to: the one with its id. Before format 4 ids were
  // "node-<graph position>": such a state goes to the node at that position if it has the name.
  std::map<int, const checkpoint::OperatorState*> by_node;
  for (const checkpoint::OperatorState& os : md.operators()) {
    int node = -1;
    if (auto it = node_of_id.find(os.operator_id()); it != node_of_id.end()) {
      node = it->second;
    } else if (md.format_version() < 4 && absl::StartsWith(os.operator_id(), "node-") &&
               absl::SimpleAtoi(os.operator_id().substr(5), &node)) {
      if (node < 0 || static_cast<size_t>(node) >= graph.nodes.size() ||
          graph.nodes[static_cast<size_t>(node)].name != os.operator_name()) {
        node = -1;
      }
    } else {
      node = -1;
    }
    if (node < 0) {
      if (!HoldsState(os)) continue;  // a stateless operator's watermark alone is not state
      const std::string whose = DescribeSavedOperator(os, md.format_version());
      if (!options.allow_non_restored_state) {
        return absl::FailedPreconditionError(absl::StrCat(
            what, " holds state of ", whose,
            " that matches no operator of this job. Set that Uid() on the operator that "
            "should take it (or UidHash(\"",
            os.operator_id(),
            "\") if the old job had no uid), or set RuntimeOptions::allow_non_restored_state "
            "to drop the state (docs/checkpointing.md \"Changing a job\")"));
      }
      Log(LogSeverity::kWarning, name_,
          absl::StrCat("dropping the state of ", whose, " from ", what,
                       ": it matches no operator of this job (allow_non_restored_state)"));
      continue;
    }
    if (!by_node.emplace(node, &os).second) {
      return absl::DataLossError(absl::StrCat(what, " holds two states of operator '",
                                              graph.nodes[static_cast<size_t>(node)].name, "' (",
                                              os.operator_id(), ")"));
    }
    if (os.max_parallelism() != max_parallelism) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, " was taken with max_parallelism ", os.max_parallelism(),
                       ", the job has ", max_parallelism, "; key groups cannot be redistributed"));
    }
  }
  // Files read once, shared by the new subtasks that need them.
  std::map<std::string, std::string> files;
  auto read = [&](const checkpoint::FileRef& ref) -> absl::StatusOr<const std::string*> {
    auto it = files.find(ref.path());
    if (it == files.end()) {
      SLUICE_ASSIGN_OR_RETURN(std::string bytes, restored.ReadFile(ref));
      it = files.emplace(ref.path(), std::move(bytes)).first;
    }
    return &it->second;
  };
  // Change logs resolved once, shared likewise (by the path of their last file).
  std::map<std::string, CanonicalKeyedState> resolved;
  auto resolve = [&](const checkpoint::SubtaskState& st, KeyGroupRange range,
                     const std::string& full) -> absl::StatusOr<const CanonicalKeyedState*> {
    const std::string& last = st.keyed_changes().empty()
                                  ? st.keyed_state().path()
                                  : st.keyed_changes().rbegin()->file().path();
    auto it = resolved.find(last);
    if (it != resolved.end()) return &it->second;
    std::vector<KeyedChangeLogFile> chain;
    chain.push_back({full,
                     {st.key_group_offsets().begin(), st.key_group_offsets().end()},
                     absl::StrCat(what, ": file ", st.keyed_state().path())});
    for (const checkpoint::KeyedStateChanges& c : st.keyed_changes()) {
      SLUICE_ASSIGN_OR_RETURN(const std::string* bytes, read(c.file()));
      chain.push_back({*bytes,
                       {c.key_group_offsets().begin(), c.key_group_offsets().end()},
                       absl::StrCat(what, ": file ", c.file().path())});
    }
    SLUICE_ASSIGN_OR_RETURN(CanonicalKeyedState state, ResolveKeyedChangeLog(range, chain));
    return &resolved.emplace(last, std::move(state)).first->second;
  };
  for (auto& task : tasks_) {
    for (size_t i = 0; i < task->operators().size(); ++i) {
      const auto [node, subtask] = task->operator_ids()[i];
      auto it = by_node.find(node);
      if (it == by_node.end()) continue;
      const checkpoint::OperatorState& os = *it->second;
      OperatorStateRestore in;
      in.checkpoint_id = md.checkpoint_id();
      in.old_parallelism = os.parallelism();
      const KeyGroupRange mine = KeyGroupRange::ForSubtask(
          max_parallelism, parallelism[static_cast<size_t>(node)], subtask);
      in.operator_states.resize(static_cast<size_t>(os.subtasks_size()));
      for (const checkpoint::SubtaskState& st : os.subtasks()) {
        if (st.subtask_index() < 0 || st.subtask_index() >= os.subtasks_size()) {
          return absl::DataLossError(absl::StrCat(what, ": bad subtask index"));
        }
        if (!st.operator_state().path().empty()) {
          SLUICE_ASSIGN_OR_RETURN(const std::string* bytes, read(st.operator_state()));
          in.operator_states[static_cast<size_t>(st.subtask_index())] = *bytes;
        }
        if (st.keyed_state().path().empty()) continue;
        if (st.key_groups().end() < mine.start || st.key_groups().start() > mine.end) continue;
        SLUICE_ASSIGN_OR_RETURN(const std::string* bytes, read(st.keyed_state()));
        OperatorStateRestore::Keyed k;
        k.key_groups = KeyGroupRange{st.key_groups().start(), st.key_groups().end()};
        if (IsKeyedChangeLog(*bytes)) {
          // An incremental checkpoint: the change log resolved into the canonical format.
          SLUICE_ASSIGN_OR_RETURN(const CanonicalKeyedState* resolved,
                                  resolve(st, k.key_groups, *bytes));
          k.bytes = resolved->bytes;
          k.offsets = resolved->offsets;
        } else {
          if (st.keyed_changes_size() > 0) {
            return absl::DataLossError(absl::StrCat(what, ": file ", st.keyed_state().path(),
                                                    " has changes but is no change log"));
          }
          k.bytes = *bytes;
          k.offsets.assign(st.key_group_offsets().begin(), st.key_group_offsets().end());
        }
        k.where = absl::StrCat(what, ": file ", st.keyed_state().path());
        if (st.backend() == kNativeRocksDbBackend) {
          SLUICE_ASSIGN_OR_RETURN(k.native_dir, StageNativeFiles(restored, st, what));
        }
        in.keyed.push_back(std::move(k));
      }
      SLUICE_RETURN_IF_ERROR(task->operators()[i]->RestoreState(in));
      task->operators()[i]->RestoreEventTimeProgress(
          RestoredWatermark(os, parallelism[static_cast<size_t>(node)], subtask));
    }
    task->RestoreInputWatermark(task->operators().front()->EventTimeProgress());
  }
  return absl::OkStatus();
}

void Job::AcknowledgeCheckpoint(int64_t id, std::vector<SubtaskSnapshot> snapshots, bool ended) {
  coordinator_->Acknowledge(id, std::move(snapshots), ended);
}

bool Job::IsSavepoint(int64_t id) const {
  return coordinator_ != nullptr && coordinator_->IsSavepoint(id);
}

void Job::DeclineCheckpoint(int64_t id, absl::Status why) {
  coordinator_->Decline(id, std::move(why));
}

absl::StatusOr<std::string> Job::TriggerSavepoint(const std::string& dir) {
  if (IsDone())
    return absl::FailedPreconditionError("the job has ended: no savepoint can be taken");
  return coordinator_->TriggerSavepoint(dir);
}

int64_t Job::CompletedCheckpoints() const { return coordinator_ ? coordinator_->completed() : 0; }

Job::~Job() {
  bool started;
  {
    std::lock_guard<std::mutex> lock(mu_);
    started = started_;
  }
  if (started) {
    // Normally a no-op: JobHandle cancels and waits before it lets go of the job.
    Cancel();
    (void)Wait();
  } else {
    // Build() failed or the job was never started: no worker ever touched the tasks.
    for (auto& t : tasks_) t->CloseUnstarted();
  }
  if (clock_listener_ >= 0) clock_->RemoveListener(clock_listener_);
  if (coordinator_) coordinator_->Stop();
  JoinPool();
  // Tasks own timers bound to the pool's services: destroy them while the pool still exists.
  tasks_.clear();
  // The operators (and their RocksDB instances) are gone: remove the job's working directory.
  if (!state_.rocksdb_job_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(state_.rocksdb_job_dir, ec);
  }
  channels_.clear();
}

void Job::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    started_ = true;
  }
  // A manual clock wakes every task when it moves, so due processing-time callbacks run.
  if (clock_->IsManual()) clock_listener_ = clock_->AddListener([this] { WakeAll(); });
  for (auto& t : tasks_) t->Start();
  if (checkpoint_interval_ > absl::ZeroDuration()) coordinator_->Start();
}

void Job::Fail(absl::Status status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (status_.ok()) status_ = std::move(status);
  }
  cancelled_.store(true, std::memory_order_release);
  WakeAll();
}

void Job::Cancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return;
    if (status_.ok())
      status_ = absl::CancelledError(absl::StrCat("job '", name_, "' was cancelled"));
  }
  cancelled_.store(true, std::memory_order_release);
  WakeAll();
}

void Job::WakeAll() {
  for (auto& t : tasks_) t->Wake();
}

void Job::TaskFinished() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--running_tasks_ == 0) {
    done_ = true;
    done_cv_.notify_all();
  }
}

bool Job::IsDone() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

bool Job::WaitFor(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  auto done = [this] { return done_; };
  // Beyond a century the deadline would overflow the clock: treat it as no limit.
  if (timeout >= absl::Hours(24 * 365 * 100)) {
    done_cv_.wait(lock, done);
    return true;
  }
  if (timeout <= absl::ZeroDuration()) return done_;
  return done_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), done);
}

absl::Status Job::Wait() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return done_; });
  }
  if (coordinator_) coordinator_->Stop();
  JoinPool();
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void Job::JoinPool() {
  std::lock_guard<std::mutex> lock(join_mu_);
  if (joined_ || !pool_) return;
  // Every task has finished (or was never started): nothing queued is needed any more.
  pool_->stop();
  pool_->join();
  joined_ = true;
}

size_t Job::MaxChannelOccupancy() const {
  size_t max = 0;
  for (const auto& c : channels_) max = std::max(max, c->high_watermark());
  return max;
}

}  // namespace sluice::internal
