// Keyed operators snapshot their internal structures (timers, window contents, trigger state,
// merging sets, slices, interval-join buffers, reduce values) with their keyed state, and resume
// exactly after a restore, at the same or another parallelism.
//
// A small harness in the manner of Flink's KeyedOneInputStreamOperatorTestHarness builds the
// operator a DataStream transformation would (its node's make_operator), feeds records,
// watermarks and processing time, and captures the main output. For every operator: input A,
// snapshot, input B gives output X; fresh operators restored from the snapshot given input B give
// exactly X (per subtask at the same parallelism, as a multiset after rescaling 1->2, 2->3, 4->1).
#include <sluice/internal/co_process_operators.h>
#include <sluice/internal/operators.h>
#include <sluice/internal/snapshot_util.h>
#include <sluice/internal/timer_queue.h>
#include <sluice/internal/window_operator.h>
#include <sluice/sluice.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "state/keyed_change_log.h"

// A record: a key and a value. Not trivially copyable, so it needs its own serializer.
namespace sluice::snapshot_test {
struct Ev {
  std::string key;
  int64_t value = 0;
  bool operator==(const Ev&) const = default;
  friend std::ostream& operator<<(std::ostream& os, const Ev& e) {
    return os << "Ev{" << e.key << ", " << e.value << "}";
  }
};
// A type without a sluice::Serializer.
struct Opaque {
  std::string text;
  friend std::ostream& operator<<(std::ostream& os, const Opaque& o) { return os << o.text; }
};
// A key type without a sluice::Serializer.
struct OpaqueKey {
  std::string id;
  bool operator==(const OpaqueKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const OpaqueKey& k) {
    return H::combine(std::move(h), k.id);
  }
};
}  // namespace sluice::snapshot_test

template <>
struct sluice::Serializer<sluice::snapshot_test::Ev> {
  static void Write(const sluice::snapshot_test::Ev& e, std::string* out) {
    Serializer<std::string>::Write(e.key, out);
    Serializer<int64_t>::Write(e.value, out);
  }
  static bool Read(ByteReader& in, sluice::snapshot_test::Ev* e) {
    return Serializer<std::string>::Read(in, &e->key) && Serializer<int64_t>::Read(in, &e->value);
  }
};

namespace sluice::snapshot_test {
namespace {

using internal::JoinSide;
using internal::OperatorBase;
using internal::OperatorFactory;
using internal::OperatorSetup;
using internal::OperatorStateRestore;
using internal::OperatorStateSnapshot;
using ::testing::HasSubstr;

constexpr int kMaxParallelism = 16;
constexpr Timestamp kStartTime = 1000;

std::string ByKey(const Ev& e) { return e.key; }

std::string FreshDir(const std::string& what) {
  static std::atomic<int> counter{0};
  std::string dir = (std::filesystem::temp_directory_path() /
                     absl::StrCat("sluice-opsnap-", ::getpid(), "-", what, "-", counter++))
                        .string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Captures the main output of an operator subtask as "value@timestamp" lines.
template <typename T>
class Capture final : public internal::BatchConsumer<T> {
 public:
  void Consume(std::vector<T>& records, std::vector<Timestamp>& timestamps) override {
    for (size_t i = 0; i < records.size(); ++i) {
      std::ostringstream line;
      line << records[i] << "@" << timestamps[i];
      lines.push_back(line.str());
    }
  }
  void OnEndOfInput() override {}
  void OnWatermark(Timestamp) override {}
  std::vector<std::string> lines;
};

// Where the keyed operators of a test keep their state.
struct Backend {
  StateBackendKind kind = StateBackendKind::kHashMap;
  std::shared_ptr<internal::RocksDbResources> resources;
  std::string root;
  int runs = 0;
};

// The subtasks of one operator at one parallelism, driven by the test thread.
template <typename Out>
class Harness {
 public:
  Harness(const OperatorFactory& make, int parallelism, Backend& backend, Timestamp now)
      : parallelism_(parallelism), clock_(now) {
    state_.kind = backend.kind;
    if (backend.kind == StateBackendKind::kRocksDb) {
      state_.rocksdb.block_cache_bytes = 8 << 20;
      state_.rocksdb.write_buffer_budget_bytes = 8 << 20;
      state_.rocksdb_resources = backend.resources;
      state_.rocksdb_job_dir = absl::StrCat(backend.root, "/run-", backend.runs++);
    }
    for (int s = 0; s < parallelism; ++s) {
      auto sub = std::make_unique<Subtask>();
      OperatorSetup setup;
      setup.runtime = RuntimeContext{"op",
                                     absl::StrCat("task (", s + 1, "/", parallelism, ")"),
                                     s,
                                     parallelism,
                                     kMaxParallelism,
                                     false,
                                     &counters_};
      setup.state = &state_;
      setup.node_id = 7;
      setup.batch_size = 4;
      setup.clock = &clock_;
      internal::OutputSetup main;
      main.consumers.push_back(&sub->out);
      setup.outputs.push_back(std::move(main));
      absl::StatusOr<std::unique_ptr<OperatorBase>> op = make(setup);
      EXPECT_TRUE(op.ok()) << op.status();
      sub->op = std::move(*op);
      subtasks_.push_back(std::move(sub));
    }
  }
  ~Harness() {
    for (auto& s : subtasks_) {
      if (s->opened) s->op->Close();
    }
  }

  // Restores every subtask from the snapshots of all `old` subtasks.
  absl::Status Restore(const std::vector<OperatorStateSnapshot>& old) {
    for (auto& s : subtasks_) {
      OperatorStateRestore in;
      in.checkpoint_id = 1;
      in.old_parallelism = static_cast<int>(old.size());
      for (size_t j = 0; j < old.size(); ++j) {
        if (!old[j].keyed) continue;
        in.keyed.push_back({old[j].keyed->bytes, old[j].keyed->key_groups,
                            old[j].keyed->key_group_offsets, absl::StrCat("subtask ", j),
                            CopyNative(*old[j].keyed)});
        in.operator_states.push_back(old[j].operator_state);
      }
      SLUICE_RETURN_IF_ERROR(s->op->RestoreState(in));
    }
    return absl::OkStatus();
  }
  void Open() {
    for (auto& s : subtasks_) {
      s->op->Open();
      s->opened = true;
    }
  }
  // A native RocksDB snapshot is consumed by a restore: each restore gets its own copy of the
  // files (the checkpoint storage plays this part in a job).
  static std::string CopyNative(const internal::KeyedSnapshot& snap) {
    if (snap.native_dir.empty()) return std::string();
    static int copies = 0;
    const std::string dir = absl::StrCat(snap.native_dir, "-restore-", copies++);
    std::filesystem::copy(snap.native_dir, dir, std::filesystem::copy_options::recursive);
    return dir;
  }

  // The synchronous part of every subtask's snapshot; unless `materialize` is false, also the
  // checkpoint writer's part (Materialize).
  std::vector<OperatorStateSnapshot> Snapshot(bool materialize = true) {
    std::vector<OperatorStateSnapshot> out(subtasks_.size());
    for (size_t i = 0; i < subtasks_.size(); ++i) subtasks_[i]->op->SnapshotState(1, out[i]);
    if (materialize) Materialize(out);
    return out;
  }
  // The checkpoint writer's part of snapshots (asynchronous in a job).
  static void Materialize(std::vector<OperatorStateSnapshot>& snapshots) {
    for (OperatorStateSnapshot& s : snapshots) {
      if (s.keyed) EXPECT_TRUE(internal::MaterializeKeyedSnapshot(*s.keyed).ok());
    }
  }

  // A record of `key` on input `gate`, to the subtask that owns the key's key group.
  template <typename T, typename K>
  void Send(const K& key, T value, Timestamp ts, int gate = 0) {
    const int s =
        OperatorIndexForKeyGroup(KeyGroupFor(key, kMaxParallelism), kMaxParallelism, parallelism_);
    internal::Batch<T> batch;
    batch.records.push_back(std::move(value));
    batch.timestamps.push_back(ts);
    subtasks_[static_cast<size_t>(s)]->op->ProcessBatch(gate, batch);
  }
  void Rec(const std::string& key, int64_t value, Timestamp ts, int gate = 0) {
    Send(key, Ev{key, value}, ts, gate);
  }
  // Every subtask's input gates reach `watermark`.
  void Watermark(Timestamp watermark) {
    for (auto& s : subtasks_) {
      for (int g = 0; g < s->op->num_gates(); ++g) s->op->ProcessWatermark(g, watermark);
    }
  }
  // Processing time moves to `now`; due processing-time callbacks run.
  void ProcessingTime(Timestamp now) {
    clock_.Set(now);
    for (auto& s : subtasks_) {
      if (s->op->NextProcessingDeadline() <= now) s->op->OnProcessingTime(now);
    }
  }

  Timestamp now() const { return clock_.NowMillis(); }
  std::vector<std::vector<std::string>> Outputs() const {
    std::vector<std::vector<std::string>> out;
    for (const auto& s : subtasks_) out.push_back(s->out.lines);
    return out;
  }
  void ClearOutputs() {
    for (auto& s : subtasks_) s->out.lines.clear();
  }
  OperatorBase& op(int subtask = 0) { return *subtasks_[static_cast<size_t>(subtask)]->op; }

 private:
  struct Subtask {
    Capture<Out> out;
    std::unique_ptr<OperatorBase> op;
    bool opened = false;
  };
  int parallelism_;
  ManualClock clock_;
  Counters counters_;
  internal::StateBackendSetup state_;
  std::vector<std::unique_ptr<Subtask>> subtasks_;
};

std::vector<std::string> Union(const std::vector<std::vector<std::string>>& outputs) {
  std::vector<std::string> all;
  for (const auto& o : outputs) all.insert(all.end(), o.begin(), o.end());
  std::sort(all.begin(), all.end());
  return all;
}

// The factory of the operator that produced `stream` (what the job would build).
template <typename T>
OperatorFactory FactoryOf(StreamEnvironment& env, const DataStream<T>& stream) {
  return env.graph().nodes[static_cast<size_t>(stream.ports()[0].node)].make_operator;
}

class OperatorSnapshotTest : public ::testing::TestWithParam<StateBackendKind> {
 protected:
  void SetUp() override {
    backend_.kind = GetParam();
    if (backend_.kind == StateBackendKind::kRocksDb) {
      RocksDbStateOptions options;
      options.block_cache_bytes = 8 << 20;
      options.write_buffer_budget_bytes = 8 << 20;
      backend_.resources = internal::MakeRocksDbResources(options);
    }
    backend_.root = FreshDir(StateBackendName(GetParam()));
  }
  void TearDown() override { std::filesystem::remove_all(backend_.root); }

  // The slicing window operator rebuilds the order in which the keys of one window fire from its
  // slices, not from the snapshot (Flink keeps no order among timers of equal time either).
  bool restored_ties_unordered_ = false;

  // Each subtask's lines with every run of lines of the same output timestamp ("...@T") sorted.
  static std::vector<std::vector<std::string>> TiesSorted(std::vector<std::vector<std::string>> v) {
    auto time_of = [](const std::string& line) { return line.substr(line.rfind('@') + 1); };
    for (auto& lines : v) {
      for (size_t i = 0; i < lines.size();) {
        size_t j = i + 1;
        while (j < lines.size() && time_of(lines[j]) == time_of(lines[i])) ++j;
        std::sort(lines.begin() + static_cast<std::ptrdiff_t>(i),
                  lines.begin() + static_cast<std::ptrdiff_t>(j));
        i = j;
      }
    }
    return v;
  }

  // B's output (per subtask) after the `before` inputs, run without a checkpoint; with `records`,
  // also every subtask's snapshot records (RecordsOf) after the `before` inputs.
  template <typename Out>
  std::vector<std::vector<std::string>> Uninterrupted(
      const OperatorFactory& make, int parallelism,
      const std::vector<std::function<void(Harness<Out>&)>>& before,
      const std::function<void(Harness<Out>&)>& b, std::vector<std::vector<std::string>>* records) {
    Harness<Out> ref(make, parallelism, backend_, kStartTime);
    ref.Open();
    for (const auto& input : before) input(ref);
    if (records != nullptr) {
      for (const OperatorStateSnapshot& s : ref.Snapshot()) {
        records->push_back(s.keyed ? RecordsOf(*s.keyed) : std::vector<std::string>{});
      }
    }
    ref.ClearOutputs();
    b(ref);
    return ref.Outputs();
  }

  // Input A, snapshot, input B: B's output must be the same from operators restored from the
  // snapshot — exactly per subtask at the same parallelism (with `restored_ties_unordered_`: up
  // to the order among outputs of the same timestamp), as a multiset after rescaling.
  template <typename Out>
  void CheckRestore(const OperatorFactory& make, const std::function<void(Harness<Out>&)>& a,
                    const std::function<void(Harness<Out>&)>& b, int parallelism,
                    std::vector<int> rescaled) {
    SCOPED_TRACE(absl::StrCat("parallelism ", parallelism));
    const std::vector<std::vector<std::string>> expected =
        Uninterrupted<Out>(make, parallelism, {a}, b, /*records=*/nullptr);
    ASSERT_FALSE(Union(expected).empty()) << "input B produced nothing: the test checks nothing";

    std::vector<OperatorStateSnapshot> snapshot;
    Timestamp now = kStartTime;
    {
      // A snapshot does not change what the operator does next.
      Harness<Out> run(make, parallelism, backend_, kStartTime);
      run.Open();
      run.Snapshot();  // so the next one holds the changes since (change tracking)
      a(run);
      snapshot = run.Snapshot(/*materialize=*/false);
      now = run.now();
      run.ClearOutputs();
      b(run);
      EXPECT_EQ(run.Outputs(), expected) << "after taking a snapshot";
      // As in a job, the checkpoint writer encodes the snapshot after the operator went on: what
      // it encodes later (flat copies) must be the state as of the snapshot.
      Harness<Out>::Materialize(snapshot);
    }
    CheckResumes<Out>(make, snapshot, now, b, expected, parallelism, rescaled);
    {
      // Without the snapshot B gives something else: the state matters.
      Harness<Out> fresh(make, parallelism, backend_, now);
      fresh.Open();
      b(fresh);
      EXPECT_NE(Union(fresh.Outputs()), Union(expected)) << "the state made no difference";
    }
  }

  // Operators restored from `snapshot` at `parallelism`, given input B, give `expected` exactly
  // (with `restored_ties_unordered_`: up to the order among outputs of the same timestamp), and
  // at each parallelism of `rescaled` the same as a multiset.
  template <typename Out>
  void CheckResumes(const OperatorFactory& make, const std::vector<OperatorStateSnapshot>& snapshot,
                    Timestamp now, const std::function<void(Harness<Out>&)>& b,
                    const std::vector<std::vector<std::string>>& expected, int parallelism,
                    const std::vector<int>& rescaled) {
    {
      Harness<Out> restored(make, parallelism, backend_, now);
      absl::Status st = restored.Restore(snapshot);
      ASSERT_TRUE(st.ok()) << st;
      restored.Open();
      b(restored);
      if (restored_ties_unordered_) {
        EXPECT_EQ(TiesSorted(restored.Outputs()), TiesSorted(expected))
            << "restored at the same parallelism";
      } else {
        EXPECT_EQ(restored.Outputs(), expected) << "restored at the same parallelism";
      }
    }
    for (int p : rescaled) {
      SCOPED_TRACE(absl::StrCat("rescaled to ", p));
      Harness<Out> restored(make, p, backend_, now);
      absl::Status st = restored.Restore(snapshot);
      ASSERT_TRUE(st.ok()) << st;
      restored.Open();
      b(restored);
      EXPECT_EQ(Union(restored.Outputs()), Union(expected));
    }
  }

  // 1 (and 1 -> 2), 2 -> 3, 4 -> 1.
  template <typename Out>
  void CheckAll(const OperatorFactory& make, const std::function<void(Harness<Out>&)>& a,
                const std::function<void(Harness<Out>&)>& b) {
    CheckRestore<Out>(make, a, b, 1, {2});
    CheckRestore<Out>(make, a, b, 2, {3});
    CheckRestore<Out>(make, a, b, 4, {1});
  }

  // Every record of a keyed snapshot, as "state key-group composite value" (bytes in hex), sorted.
  static std::vector<std::string> RecordsOf(const internal::KeyedSnapshot& s) {
    std::vector<std::string> out;
    ByteReader header(s.bytes);
    std::string_view magic;
    uint32_t version = 0;
    uint64_t n = 0;
    std::string_view key_format;
    EXPECT_TRUE(header.ReadBytes(4, &magic) && header.ReadRaw(&version, sizeof version) &&
                version == internal::kKeyedSnapshotVersion &&
                header.ReadLengthPrefixed(&key_format) && header.ReadVarint(&n));
    std::vector<std::string> names;
    for (uint64_t i = 0; i < n; ++i) {
      std::string_view name, format;
      uint8_t kind = 0;
      uint64_t ttl = 0;
      EXPECT_TRUE(header.ReadLengthPrefixed(&name) && header.ReadRaw(&kind, 1) &&
                  header.ReadVarint(&ttl) && header.ReadLengthPrefixed(&format));
      names.emplace_back(name);
    }
    for (size_t g = 0; g < s.key_group_offsets.size(); ++g) {
      ByteReader in(std::string_view(s.bytes).substr(s.key_group_offsets[g]));
      uint64_t index = 0;
      std::string_view composite, value;
      while (in.ReadVarint(&index) && index != 0) {
        EXPECT_TRUE(index <= names.size() && in.ReadLengthPrefixed(&composite) &&
                    in.ReadLengthPrefixed(&value));
        out.push_back(absl::StrCat(
            names[index - 1], " ", s.key_groups.start + g, " ",
            absl::BytesToHexString(absl::string_view(composite.data(), composite.size())), " ",
            absl::BytesToHexString(absl::string_view(value.data(), value.size()))));
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // Change tracking: the input in phases with a snapshot before the first and after each (the
  // second after one never materialized: an aborted checkpoint; the last materialized only after
  // the operator went on with input B) must give exactly the records of one snapshot of the same
  // state taken at the end, and operators restored from it must give B's output exactly (at the
  // same parallelism, and as a multiset at `rescaled`).
  template <typename Out>
  void CheckChangeTracking(const OperatorFactory& make,
                           const std::vector<std::function<void(Harness<Out>&)>>& phases,
                           const std::function<void(Harness<Out>&)>& b, int parallelism,
                           int rescaled) {
    SCOPED_TRACE(absl::StrCat("parallelism ", parallelism));
    std::vector<std::vector<std::string>> expected_records;
    const std::vector<std::vector<std::string>> expected =
        Uninterrupted<Out>(make, parallelism, phases, b, &expected_records);
    ASSERT_FALSE(Union(expected).empty()) << "input B produced nothing: the test checks nothing";
    std::vector<OperatorStateSnapshot> last;
    Timestamp now = kStartTime;
    {
      Harness<Out> run(make, parallelism, backend_, kStartTime);
      run.Open();
      run.Snapshot();
      for (size_t i = 0; i < phases.size(); ++i) {
        phases[i](run);
        if (i + 1 < phases.size()) run.Snapshot(/*materialize=*/i != 0);
      }
      last = run.Snapshot(/*materialize=*/false);
      now = run.now();
      run.ClearOutputs();
      b(run);
      EXPECT_EQ(run.Outputs(), expected) << "after taking the snapshots";
      Harness<Out>::Materialize(last);
    }
    ASSERT_EQ(last.size(), expected_records.size());
    for (size_t i = 0; i < last.size(); ++i) {
      if (last[i].keyed) {
        EXPECT_EQ(RecordsOf(*last[i].keyed), expected_records[i]) << "subtask " << i;
      }
    }
    CheckResumes<Out>(make, last, now, b, expected, parallelism, {rescaled});
    CheckChangeLog<Out>(make, phases, b, expected, expected_records, parallelism, rescaled);
  }

  // Materializes `snapshots` in the change-log format, with changes since `since` (per subtask;
  // none: full); returns each subtask's position after it and expects the format `expected`.
  static std::vector<internal::KeyedChangeLogPosition> MaterializeChangeLog(
      std::vector<OperatorStateSnapshot>& snapshots,
      const std::vector<internal::KeyedChangeLogPosition>& since,
      internal::KeyedSnapshot::Format expected) {
    std::vector<internal::KeyedChangeLogPosition> positions;
    for (size_t i = 0; i < snapshots.size(); ++i) {
      EXPECT_TRUE(snapshots[i].keyed.has_value());
      if (!snapshots[i].keyed) return positions;
      internal::KeyedSnapshot& k = *snapshots[i].keyed;
      k.change_log = true;
      if (!since.empty()) k.changes_since = since[i];
      EXPECT_TRUE(internal::MaterializeKeyedSnapshot(k).ok());
      EXPECT_EQ(static_cast<int>(k.format), static_cast<int>(expected)) << "subtask " << i;
      positions.push_back(k.position);
    }
    return positions;
  }

  // Incremental checkpoints: the same phases with every snapshot written as a change-log file —
  // full at first, then the changes since the previous one that was written (one snapshot is never
  // materialized: its changes must be in the next file); a stale position gives a full file. Each
  // subtask's chain, resolved, must hold exactly the records of one snapshot of the same state,
  // and operators restored from it must give B's output (same parallelism and `rescaled`).
  template <typename Out>
  void CheckChangeLog(const OperatorFactory& make,
                      const std::vector<std::function<void(Harness<Out>&)>>& phases,
                      const std::function<void(Harness<Out>&)>& b,
                      const std::vector<std::vector<std::string>>& expected,
                      const std::vector<std::vector<std::string>>& expected_records,
                      int parallelism, int rescaled) {
    if (backend_.kind != StateBackendKind::kHashMap) return;  // RocksDB: native files
    SCOPED_TRACE("change log");
    using Format = internal::KeyedSnapshot::Format;
    std::vector<std::vector<OperatorStateSnapshot>> files;  // every file written, in order
    Timestamp now = kStartTime;
    {
      Harness<Out> run(make, parallelism, backend_, kStartTime);
      run.Open();
      files.push_back(run.Snapshot(/*materialize=*/false));
      std::vector<internal::KeyedChangeLogPosition> at =
          MaterializeChangeLog(files.back(), {}, Format::kChangeLogFull);
      for (size_t i = 0; i < phases.size(); ++i) {
        phases[i](run);
        if (i == 0 && phases.size() > 1) {
          run.Snapshot(/*materialize=*/false);  // aborted before it was written
          continue;
        }
        files.push_back(run.Snapshot(/*materialize=*/false));
        if (i + 1 == phases.size()) break;  // materialized after input B
        at = MaterializeChangeLog(files.back(), at, Format::kChangeLogChanges);
      }
      now = run.now();
      run.ClearOutputs();
      b(run);
      EXPECT_EQ(run.Outputs(), expected) << "after taking the snapshots";
      MaterializeChangeLog(files.back(), at, Format::kChangeLogChanges);
      // The backends moved on from `at`: a file of changes since it would miss what changed.
      std::vector<OperatorStateSnapshot> stale = run.Snapshot(/*materialize=*/false);
      MaterializeChangeLog(stale, at, Format::kChangeLogFull);
    }
    std::vector<OperatorStateSnapshot> resolved = files.back();
    for (size_t i = 0; i < resolved.size(); ++i) {
      SCOPED_TRACE(absl::StrCat("subtask ", i));
      ASSERT_TRUE(resolved[i].keyed.has_value());
      std::vector<internal::KeyedChangeLogFile> chain;
      for (size_t f = 0; f < files.size(); ++f) {
        const internal::KeyedSnapshot& k = *files[f][i].keyed;
        chain.push_back({k.bytes, k.key_group_offsets, absl::StrCat("file ", f)});
      }
      absl::StatusOr<internal::CanonicalKeyedState> canonical =
          internal::ResolveKeyedChangeLog(resolved[i].keyed->key_groups, chain);
      ASSERT_TRUE(canonical.ok()) << canonical.status();
      internal::KeyedSnapshot& k = *resolved[i].keyed;
      k.bytes = canonical->bytes;
      k.key_group_offsets = canonical->offsets;
      k.format = Format::kCanonical;
      EXPECT_EQ(RecordsOf(k), expected_records[i]);
    }
    CheckResumes<Out>(make, resolved, now, b, expected, parallelism, {rescaled});
  }

  template <typename Out>
  void CheckChangeTrackingAll(const OperatorFactory& make,
                              const std::vector<std::function<void(Harness<Out>&)>>& phases,
                              const std::function<void(Harness<Out>&)>& b) {
    CheckChangeTracking<Out>(make, phases, b, 1, 2);
    CheckChangeTracking<Out>(make, phases, b, 3, 1);
  }

  template <typename Out>
  std::string SnapshotError(const OperatorFactory& make,
                            const std::function<void(Harness<Out>&)>& a) {
    Harness<Out> run(make, 1, backend_, kStartTime);
    run.Open();
    a(run);
    try {
      run.Snapshot();
    } catch (const internal::JobFailure& f) {
      EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition) << f.status();
      return std::string(f.status().message());
    }
    ADD_FAILURE() << "the snapshot did not fail";
    return "";
  }

  StreamEnvironment env_;
  Backend backend_;
};

// --- Keyed process: timers and keyed state ---------------------------------------------------------

// Per record: counts the key's records (ValueState); value >= 0 registers an event-time timer at
// ts + value and a processing-time timer 100 ms later; value < 0 deletes the event-time timer at
// ts - value. A timer reports its time, domain and the key's count.
struct TimerFunction {
  void ProcessElement(const Ev& e, KeyedProcessContext<std::string>& ctx,
                      Collector<std::string>& out) {
    ValueState<int64_t> count = ctx.runtime().GetState(ValueStateDescriptor<int64_t>("count"));
    const int64_t n = count.Value().value_or(0) + 1;
    count.Update(n);
    if (e.value >= 0) {
      ctx.RegisterEventTimeTimer(ctx.timestamp() + e.value);
      ctx.RegisterProcessingTimeTimer(ctx.CurrentProcessingTime() + 100);
    } else {
      ctx.DeleteEventTimeTimer(ctx.timestamp() - e.value);
    }
    out.Collect(absl::StrCat(e.key, " record ", n));
  }
  void OnTimer(Timestamp time, KeyedProcessContext<std::string>& ctx, Collector<std::string>& out) {
    ValueState<int64_t> count = ctx.runtime().GetState(ValueStateDescriptor<int64_t>("count"));
    out.Collect(absl::StrCat(ctx.CurrentKey(), " timer ", time,
                             ctx.time_domain() == TimeDomain::kEventTime ? " event" : " processing",
                             " count ", count.Value().value_or(0)));
  }
};

TEST_P(OperatorSnapshotTest, KeyedProcessTimers) {
  auto stream =
      env_.FromCollection(std::vector<Ev>{}).KeyBy(ByKey).Process<std::string>(TimerFunction{});
  auto a = [](Harness<std::string>& r) {
    r.Watermark(0);
    // Event-time timers at 15, tied: they fire in registration order.
    for (const char* k : {"a", "b", "c", "d", "e", "f"}) r.Rec(k, 10, 5);
    r.Rec("a", 20, 6);   // 26
    r.Rec("b", 3, 7);    // 10: fires in A
    r.Rec("c", 30, 8);   // 38
    r.Rec("c", -30, 8);  // deletes 38: never fires
    r.Rec("d", 30, 9);   // 39
    r.Watermark(12);
    r.ProcessingTime(kStartTime + 50);
    r.Rec("e", 0, 12);  // processing-time timer at 1150
  };
  auto b = [](Harness<std::string>& r) {
    r.Watermark(12);
    r.Rec("f", 3, 14);  // 17
    r.Watermark(16);
    r.ProcessingTime(kStartTime + 100);  // the timers of A's first records
    r.Rec("a", 1, 20);                   // 21
    r.Watermark(40);
    r.ProcessingTime(kStartTime + 200);
    r.Watermark(kMaxWatermark);
  };
  CheckAll<std::string>(FactoryOf(env_, stream), a, b);
}

// --- Keyed reduce ---------------------------------------------------------------------------------

TEST_P(OperatorSnapshotTest, KeyedReduce) {
  auto stream =
      env_.FromCollection(std::vector<Ev>{}).KeyBy(ByKey).Reduce([](const Ev& x, const Ev& y) {
        return Ev{x.key, x.value * 2 + y.value};
      });
  auto a = [](Harness<Ev>& r) {
    for (int i = 0; i < 20; ++i) r.Rec(absl::StrCat("k", i % 7), i, 100 + i);
  };
  auto b = [](Harness<Ev>& r) {
    for (int i = 0; i < 10; ++i) r.Rec(absl::StrCat("k", i % 9), 50 + i, 200 + i);
  };
  CheckAll<Ev>(FactoryOf(env_, stream), a, b);
}

// --- Windows --------------------------------------------------------------------------------------

// Reports every firing: key, window, values in order, watermark seen.
struct ListWindow {
  template <typename W>
  void operator()(const std::string& key, WindowContext<W>& ctx, std::span<const Ev> elements,
                  Collector<std::string>& out) const {
    std::string values;
    for (const Ev& e : elements) absl::StrAppend(&values, values.empty() ? "" : ",", e.value);
    if constexpr (std::is_same_v<W, TimeWindow>) {
      out.Collect(absl::StrCat(key, " [", ctx.window().start, ",", ctx.window().end, ") {", values,
                               "} wm ", ctx.CurrentWatermark()));
    } else {
      out.Collect(absl::StrCat(key, " global {", values, "}"));
    }
  }
};

TEST_P(OperatorSnapshotTest, TumblingWindowWithAllowedLatenessRefiresAfterRestore) {
  auto stream = env_.FromCollection(std::vector<Ev>{})
                    .KeyBy(ByKey)
                    .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
                    .AllowedLateness(absl::Milliseconds(10))
                    .Process<std::string>(ListWindow{});
  auto a = [](Harness<std::string>& r) {
    r.Rec("a", 1, 1);
    r.Rec("b", 2, 3);
    r.Rec("a", 3, 8);
    r.Rec("c", 4, 12);
    r.Watermark(11);  // [0,10) fires; kept until 19
    r.Rec("a", 5, 15);
  };
  auto b = [](Harness<std::string>& r) {
    r.Watermark(11);
    r.Rec("a", 6, 4);  // late within the lateness: [0,10) fires again with 1,3,6
    r.Rec("b", 7, 9);
    r.Rec("c", 8, 17);
    r.Watermark(20);   // [10,20) fires, [0,10) cleaned up
    r.Rec("a", 9, 5);  // too late: dropped
    r.Watermark(kMaxWatermark);
  };
  CheckAll<std::string>(FactoryOf(env_, stream), a, b);
}

TEST_P(OperatorSnapshotTest, SlidingWindowReduceSlices) {
  auto stream =
      env_.FromCollection(std::vector<Ev>{})
          .KeyBy(ByKey)
          .Window(SlidingEventTimeWindows::Of(absl::Milliseconds(30), absl::Milliseconds(10)))
          .AllowedLateness(absl::Milliseconds(5))
          .Reduce([](const Ev& x, const Ev& y) {
            return Ev{x.key, x.value + y.value};
          });
  auto a = [](Harness<Ev>& r) {
    for (int i = 0; i < 30; ++i) r.Rec(absl::StrCat("k", i % 5), i, i * 2);
    r.Watermark(21);  // [-20,10) and [-10,20) fire
  };
  restored_ties_unordered_ = true;
  auto b = [](Harness<Ev>& r) {
    r.Watermark(21);
    r.Rec("k1", 100, 22);
    r.Rec("k2", 200, 18);  // late within the lateness: [-10,20) fires again at once
    for (int i = 0; i < 10; ++i) r.Rec(absl::StrCat("k", i % 6), 1000 + i, 40 + i);
    r.Watermark(45);
    r.Watermark(kMaxWatermark);
  };
  CheckAll<Ev>(FactoryOf(env_, stream), a, b);
}

TEST_P(OperatorSnapshotTest, SessionWindowsMergeAcrossTheSnapshot) {
  auto stream = env_.FromCollection(std::vector<Ev>{})
                    .KeyBy(ByKey)
                    .Window(EventTimeSessionWindows::WithGap(absl::Milliseconds(10)))
                    .Process<std::string>(ListWindow{});
  auto a = [](Harness<std::string>& r) {
    r.Rec("a", 1, 0);   // [0,10)
    r.Rec("a", 2, 20);  // [20,30)
    r.Rec("b", 3, 5);   // [5,15)
    r.Rec("c", 4, 40);  // [40,50)
    r.Watermark(2);
  };
  auto b = [](Harness<std::string>& r) {
    r.Watermark(2);
    r.Rec("a", 5, 10);  // [10,20) joins both: [0,30)
    r.Rec("b", 6, 14);  // [5,24)
    r.Rec("c", 7, 62);  // a new session [62,72)
    r.Watermark(35);
    r.Watermark(kMaxWatermark);
  };
  CheckAll<std::string>(FactoryOf(env_, stream), a, b);
}

struct SumAggregate : AggregateFunction<Ev, int64_t, int64_t> {
  int64_t CreateAccumulator() override { return 0; }
  void Add(const Ev& e, int64_t& acc) override { acc += e.value; }
  int64_t GetResult(const int64_t& acc) override { return acc; }
  void Merge(const int64_t& from, int64_t& into) override { into += from; }
};

TEST_P(OperatorSnapshotTest, CountWindowKeepsTriggerCounts) {
  auto stream =
      env_.FromCollection(std::vector<Ev>{}).KeyBy(ByKey).CountWindow(3).Aggregate(SumAggregate{});
  auto a = [](Harness<int64_t>& r) {
    for (int i = 0; i < 10; ++i) r.Rec(absl::StrCat("k", i % 4), i + 1, kNoTimestamp);
  };
  auto b = [](Harness<int64_t>& r) {
    for (int i = 0; i < 10; ++i) r.Rec(absl::StrCat("k", i % 4), 100 * (i + 1), kNoTimestamp);
  };
  CheckAll<int64_t>(FactoryOf(env_, stream), a, b);
}

TEST_P(OperatorSnapshotTest, SlidingCountWindowWithEvictor) {
  auto stream = env_.FromCollection(std::vector<Ev>{})
                    .KeyBy(ByKey)
                    .CountWindow(4, 2)
                    .Process<std::string>(ListWindow{});
  auto a = [](Harness<std::string>& r) {
    for (int i = 0; i < 9; ++i) r.Rec(absl::StrCat("k", i % 2), i + 1, kNoTimestamp);
  };
  auto b = [](Harness<std::string>& r) {
    for (int i = 0; i < 7; ++i) r.Rec(absl::StrCat("k", i % 3), 10 * (i + 1), kNoTimestamp);
  };
  CheckAll<std::string>(FactoryOf(env_, stream), a, b);
}

// --- Flat state: copied at the snapshot, encoded later ------------------------------------------

// Keys, windows and contents without heap buffers are copied flat by the snapshot and encoded on
// the checkpoint writer's thread (CheckRestore materializes after the operator went on).
struct IntEv {
  int64_t key = 0;
  int64_t value = 0;
};
int64_t IntKey(const IntEv& e) { return e.key; }

struct IntSum : AggregateFunction<IntEv, int64_t, int64_t> {
  int64_t CreateAccumulator() override { return 0; }
  void Add(const IntEv& e, int64_t& acc) override { acc += e.value; }
  int64_t GetResult(const int64_t& acc) override { return acc; }
  void Merge(const int64_t& from, int64_t& into) override { into += from; }
};
// The two largest values seen (a vector accumulator of trivially copyable elements).
struct TopTwo : AggregateFunction<IntEv, std::vector<int64_t>, std::vector<int64_t>> {
  std::vector<int64_t> CreateAccumulator() override { return {}; }
  void Add(const IntEv& e, std::vector<int64_t>& acc) override { Push(e.value, acc); }
  std::vector<int64_t> GetResult(const std::vector<int64_t>& acc) override { return acc; }
  void Merge(const std::vector<int64_t>& from, std::vector<int64_t>& into) override {
    for (int64_t v : from) Push(v, into);
  }
  static void Push(int64_t v, std::vector<int64_t>& acc) {
    acc.push_back(v);
    std::sort(acc.begin(), acc.end(), std::greater<>());
    if (acc.size() > 2) acc.resize(2);
  }
};
template <typename T>
std::string Describe(int64_t key, const TimeWindow& w, const T& v) {
  if constexpr (std::is_same_v<T, int64_t>) {
    return absl::StrCat(key, " [", w.start, ",", w.end, ") ", v);
  } else {
    return absl::StrCat(key, " [", w.start, ",", w.end, ") ", absl::StrJoin(v, ","));
  }
}

// The flat-state streams of the tests below: keys, windows and contents without heap buffers.
// Tumbling 10 ms windows listing their values.
DataStream<std::string> FlatListWindows(StreamEnvironment& env, absl::Duration lateness) {
  return env.FromCollection(std::vector<IntEv>{})
      .KeyBy(IntKey)
      .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
      .AllowedLateness(lateness)
      .Process<std::string>([](const int64_t& key, WindowContext<TimeWindow>& ctx,
                               std::span<const IntEv> elements, Collector<std::string>& out) {
        std::vector<int64_t> values;
        for (const IntEv& e : elements) values.push_back(e.value);
        out.Collect(Describe(key, ctx.window(), values));
      });
}
// Sums per window of `assigner`: session windows with a 10 ms gap, or sliding 30 ms windows every
// 10 ms (int64 slices).
template <typename Assigner>
DataStream<std::string> Sums(StreamEnvironment& env, Assigner assigner) {
  return env.FromCollection(std::vector<IntEv>{})
      .KeyBy(IntKey)
      .Window(assigner)
      .Aggregate(IntSum{}, [](const int64_t& key, WindowContext<TimeWindow>& ctx,
                              std::span<const int64_t> sum, Collector<std::string>& out) {
        out.Collect(Describe(key, ctx.window(), sum[0]));
      });
}
DataStream<std::string> SessionSums(StreamEnvironment& env) {
  return Sums(env, EventTimeSessionWindows::WithGap(absl::Milliseconds(10)));
}
DataStream<std::string> SlidingSums(StreamEnvironment& env) {
  return Sums(env, SlidingEventTimeWindows::Of(absl::Milliseconds(30), absl::Milliseconds(10)));
}
// The two largest values in sliding 30 ms windows every 10 ms (vector slices).
DataStream<std::string> SlidingTopTwo(StreamEnvironment& env) {
  return env.FromCollection(std::vector<IntEv>{})
      .KeyBy(IntKey)
      .Window(SlidingEventTimeWindows::Of(absl::Milliseconds(30), absl::Milliseconds(10)))
      .Aggregate(TopTwo{},
                 [](const int64_t& key, WindowContext<TimeWindow>& ctx,
                    std::span<const std::vector<int64_t>> best, Collector<std::string>& out) {
                   out.Collect(Describe(key, ctx.window(), best[0]));
                 });
}

// Session sums with a 20 ms allowed lateness, in the session operator (HashMap backend) or, with
// `general`, in the general window operator.
DataStream<std::string> LateSessionSums(StreamEnvironment& env, bool general) {
  auto windowed = env.FromCollection(std::vector<IntEv>{})
                      .KeyBy(IntKey)
                      .Window(EventTimeSessionWindows::WithGap(absl::Milliseconds(10)))
                      .AllowedLateness(absl::Milliseconds(20));
  auto emit = [](const int64_t& key, WindowContext<TimeWindow>& ctx, std::span<const int64_t> sum,
                 Collector<std::string>& out) { out.Collect(Describe(key, ctx.window(), sum[0])); };
  return general ? windowed.WithoutSliceSharing().Aggregate(IntSum{}, emit)
                 : windowed.Aggregate(IntSum{}, emit);
}

// The session operator writes WindowOperator's records (the same contents, merging sets and
// timers; only WindowOperator's registered-timer hints and the timers' sequence numbers differ),
// and each operator resumes exactly from the other's snapshot: fired sessions within the lateness
// stay fired, pending ones fire, late records bridge restored sessions.
TEST_P(OperatorSnapshotTest, SessionOperatorAndWindowOperatorRestoreEachOther) {
  auto special = FactoryOf(env_, LateSessionSums(env_, false));
  auto general = FactoryOf(env_, LateSessionSums(env_, true));
  auto a = [](Harness<std::string>& r) {
    r.Send(int64_t{1}, IntEv{1, 1}, 0);   // [0,10)
    r.Send(int64_t{1}, IntEv{1, 2}, 20);  // [20,30)
    r.Send(int64_t{2}, IntEv{2, 3}, 5);   // [5,15)
    r.Send(int64_t{3}, IntEv{3, 4}, 40);  // [40,50)
    r.Send(int64_t{1}, IntEv{1, 5}, 2);   // [0,12)
    r.Watermark(12);                      // key 1's [0,12) fires, stays until 31
  };
  auto b = [](Harness<std::string>& r) {
    r.Watermark(12);
    r.Send(int64_t{1}, IntEv{1, 6}, 8);    // [0,18): pending again
    r.Send(int64_t{1}, IntEv{1, 7}, 10);   // bridges [0,18) and [20,30): [0,30)
    r.Send(int64_t{2}, IntEv{2, 8}, 3);    // [3,15)
    r.Send(int64_t{3}, IntEv{3, 9}, 44);   // [40,54)
    r.Watermark(16);                       // key 2 fires
    r.Send(int64_t{2}, IntEv{2, 10}, 1);   // late within the lateness: [1,15) fires at once
    r.Watermark(40);                       // key 1 fires; key 2's session is cleaned up at 34
    r.Send(int64_t{2}, IntEv{2, 11}, 0);   // late: dropped
    r.Send(int64_t{4}, IntEv{4, 12}, 41);  // [41,51)
    r.Watermark(kMaxWatermark);
  };
  restored_ties_unordered_ = true;
  for (int parallelism : {1, 2}) {
    SCOPED_TRACE(absl::StrCat("parallelism ", parallelism));
    const std::vector<std::vector<std::string>> expected =
        Uninterrupted<std::string>(general, parallelism, {a}, b, nullptr);
    EXPECT_EQ(Union(expected),
              Union(Uninterrupted<std::string>(special, parallelism, {a}, b, nullptr)));
    std::vector<std::vector<std::string>> records[2];
    std::vector<OperatorStateSnapshot> snapshots[2];
    int i = 0;
    for (const OperatorFactory* make : {&special, &general}) {
      Harness<std::string> run(*make, parallelism, backend_, kStartTime);
      run.Open();
      a(run);
      snapshots[i] = run.Snapshot();
      for (const OperatorStateSnapshot& s : snapshots[i]) {
        std::vector<std::string> lines;
        for (std::string line : RecordsOf(*s.keyed)) {
          if (absl::StartsWith(line, "_window_contents ")) line.resize(line.size() - 32);
          if (absl::StartsWith(line, "_event_timers ")) line.resize(line.rfind(' '));
          lines.push_back(line);
        }
        std::sort(lines.begin(), lines.end());
        records[i].push_back(lines);
      }
      ++i;
    }
    if (GetParam() == StateBackendKind::kHashMap) {  // RocksDB runs WindowOperator for both
      EXPECT_EQ(records[0], records[1]);
      size_t n = 0;
      for (const auto& lines : records[0]) n += lines.size();
      EXPECT_EQ(n, 14u);  // 4 sessions (contents), 3 merging sets, 7 timers
    }
    CheckResumes<std::string>(general, snapshots[0], kStartTime, b, expected, parallelism, {3});
    CheckResumes<std::string>(special, snapshots[1], kStartTime, b, expected, parallelism, {1});
  }
}

TEST_P(OperatorSnapshotTest, SessionWindowsOfFlatStateMergeAcrossTheSnapshot) {
  auto stream = SessionSums(env_);
  auto a = [](Harness<std::string>& r) {
    r.Send(int64_t{1}, IntEv{1, 1}, 0);   // [0,10)
    r.Send(int64_t{1}, IntEv{1, 2}, 20);  // [20,30)
    r.Send(int64_t{2}, IntEv{2, 3}, 5);   // [5,15)
    r.Send(int64_t{3}, IntEv{3, 4}, 40);  // [40,50)
    r.Watermark(2);
  };
  auto b = [](Harness<std::string>& r) {
    r.Watermark(2);
    r.Send(int64_t{1}, IntEv{1, 5}, 10);  // [10,20) joins both: [0,30)
    r.Send(int64_t{2}, IntEv{2, 6}, 14);  // [5,24)
    r.Send(int64_t{3}, IntEv{3, 7}, 62);  // a new session [62,72)
    r.Send(int64_t{4}, IntEv{4, 8}, 63);
    r.Watermark(35);
    r.Watermark(kMaxWatermark);
  };
  CheckAll<std::string>(FactoryOf(env_, stream), a, b);
}

TEST_P(OperatorSnapshotTest, ListWindowsOfFlatRecordsResumeExactly) {
  auto stream = FlatListWindows(env_, absl::ZeroDuration());
  auto a = [](Harness<std::string>& r) {
    for (int i = 0; i < 12; ++i) r.Send(int64_t{i % 3}, IntEv{i % 3, i}, i * 2);
    r.Watermark(9);
  };
  auto b = [](Harness<std::string>& r) {
    r.Watermark(9);
    for (int i = 0; i < 8; ++i) r.Send(int64_t{i % 4}, IntEv{i % 4, 100 + i}, 15 + i);
    r.Watermark(kMaxWatermark);
  };
  CheckAll<std::string>(FactoryOf(env_, stream), a, b);
}

TEST_P(OperatorSnapshotTest, SlidingWindowsOfFlatSlicesResumeExactly) {
  auto top = SlidingTopTwo(env_);
  auto sums = SlidingSums(env_);
  auto a = [](Harness<std::string>& r) {
    for (int i = 0; i < 15; ++i) r.Send(int64_t{i % 4}, IntEv{i % 4, (i * 37) % 23}, i * 3);
    r.Watermark(25);
  };
  auto b = [](Harness<std::string>& r) {
    r.Watermark(25);
    for (int i = 0; i < 10; ++i) r.Send(int64_t{i % 5}, IntEv{i % 5, 50 + i}, 26 + i * 2);
    r.Watermark(kMaxWatermark);
  };
  restored_ties_unordered_ = true;  // the slicing operator (see above)
  CheckAll<std::string>(FactoryOf(env_, top), a, b);
  CheckAll<std::string>(FactoryOf(env_, sums), a, b);
}

// --- Change tracking: snapshots after the first hold only what changed ------------------------

TEST_P(OperatorSnapshotTest, ChangeTrackedListWindowsHoldExactlyTheState) {
  auto stream = env_.FromCollection(std::vector<Ev>{})
                    .KeyBy(ByKey)
                    .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
                    .AllowedLateness(absl::Milliseconds(10))
                    .Process<std::string>(ListWindow{});
  std::vector<std::function<void(Harness<std::string>&)>> phases = {
      [](Harness<std::string>& r) {
        r.Rec("a", 1, 1);
        r.Rec("b", 2, 3);
        r.Rec("a", 3, 8);
        r.Rec("c", 4, 12);
      },
      [](Harness<std::string>& r) {
        r.Rec("a", 5, 4);  // a window of an earlier snapshot grows
        r.Rec("d", 6, 15);
        r.Watermark(11);  // [0,10) fires, kept until 19
      },
      [](Harness<std::string>& r) {
        r.Rec("a", 7, 5);  // late within the lateness: fires again
        r.Rec("c", 8, 17);
        r.Watermark(20);  // [0,10) cleaned up: removed from the state
      },
      [](Harness<std::string>& r) {
        r.Rec("e", 9, 25);
        r.Rec("c", 10, 22);
        r.Watermark(21);
      },
  };
  auto b = [](Harness<std::string>& r) {
    r.Watermark(21);
    r.Rec("a", 11, 26);
    r.Rec("c", 12, 19);  // late within the lateness of [10,20)
    r.Watermark(30);
    r.Watermark(kMaxWatermark);
  };
  CheckChangeTrackingAll<std::string>(FactoryOf(env_, stream), phases, b);
}

TEST_P(OperatorSnapshotTest, ChangeTrackedFlatListWindowsHoldExactlyTheState) {
  auto stream = FlatListWindows(env_, absl::Milliseconds(10));
  auto send = [](Harness<std::string>& r, int64_t key, int64_t value, Timestamp ts) {
    r.Send(key, IntEv{key, value}, ts);
  };
  std::vector<std::function<void(Harness<std::string>&)>> phases = {
      [&](Harness<std::string>& r) {
        for (int i = 0; i < 40; ++i) send(r, i, i, 30 + i % 10);
      },
      // One change among many entries: found by key (not by a pass over the map).
      [&](Harness<std::string>& r) { send(r, 3, 99, 34); },
      [&](Harness<std::string>& r) {
        for (int i = 0; i < 12; ++i) send(r, i % 3, i, i);
      },
      [&](Harness<std::string>& r) {
        for (int i = 0; i < 6; ++i) send(r, i % 4, 100 + i, 2 * i + 3);
        r.Watermark(11);
      },
      [&](Harness<std::string>& r) {
        send(r, 1, 200, 5);  // late within the lateness
        send(r, 5, 201, 17);
        r.Watermark(20);
      },
      [&](Harness<std::string>& r) {
        for (int i = 0; i < 5; ++i) send(r, i, 300 + i, 21 + i);
      },
  };
  auto b = [&](Harness<std::string>& r) {
    r.Watermark(20);
    send(r, 2, 400, 18);
    send(r, 7, 401, 33);
    r.Watermark(kMaxWatermark);
  };
  CheckChangeTrackingAll<std::string>(FactoryOf(env_, stream), phases, b);
}

TEST_P(OperatorSnapshotTest, ChangeTrackedSessionWindowsHoldExactlyTheState) {
  auto lists = env_.FromCollection(std::vector<Ev>{})
                   .KeyBy(ByKey)
                   .Window(EventTimeSessionWindows::WithGap(absl::Milliseconds(10)))
                   .Process<std::string>(ListWindow{});
  std::vector<std::function<void(Harness<std::string>&)>> phases = {
      [](Harness<std::string>& r) {
        r.Rec("a", 1, 0);   // [0,10)
        r.Rec("a", 2, 20);  // [20,30)
        r.Rec("b", 3, 5);   // [5,15)
        r.Rec("c", 4, 40);  // [40,50)
      },
      [](Harness<std::string>& r) {
        r.Rec("a", 5, 10);  // joins both: [0,30), the windows of the last snapshot merged away
        r.Rec("b", 6, 14);  // [5,24)
        r.Watermark(2);
      },
      [](Harness<std::string>& r) {
        r.Rec("c", 7, 45);  // [40,55)
        r.Rec("d", 8, 3);   // [3,13)
        r.Watermark(26);    // b's and d's sessions fire and go
      },
      [](Harness<std::string>& r) {
        r.Rec("a", 9, 28);  // [0,38)
        r.Watermark(27);
      },
  };
  auto b = [](Harness<std::string>& r) {
    r.Watermark(27);
    r.Rec("a", 10, 35);
    r.Rec("c", 11, 60);
    r.Watermark(kMaxWatermark);
  };
  CheckChangeTrackingAll<std::string>(FactoryOf(env_, lists), phases, b);

  auto sums = SessionSums(env_);
  std::vector<std::function<void(Harness<std::string>&)>> flat_phases = {
      [](Harness<std::string>& r) {
        for (int i = 0; i < 8; ++i) r.Send(int64_t{i % 3}, IntEv{i % 3, i}, i * 9);
      },
      [](Harness<std::string>& r) {
        for (int i = 0; i < 8; ++i) r.Send(int64_t{i % 4}, IntEv{i % 4, 10 + i}, i * 9 + 4);
        r.Watermark(30);
      },
      [](Harness<std::string>& r) {
        r.Send(int64_t{5}, IntEv{5, 50}, 70);
        r.Watermark(60);
      },
      [](Harness<std::string>& r) {
        r.Send(int64_t{1}, IntEv{1, 60}, 75);
      },
  };
  auto flat_b = [](Harness<std::string>& r) {
    r.Watermark(60);
    r.Send(int64_t{1}, IntEv{1, 70}, 84);
    r.Send(int64_t{6}, IntEv{6, 80}, 90);
    r.Watermark(kMaxWatermark);
  };
  CheckChangeTrackingAll<std::string>(FactoryOf(env_, sums), flat_phases, flat_b);
}

// The session operator's timers and merging sets are change-tracked as its sessions are: with
// an allowed lateness a fired session keeps its cleanup timer only (its end-of-window timer is
// named for removal), a cleaned-up key's merging set is named for removal, and a snapshot that
// changed more than the state holds (every session gone) is full again.
TEST_P(OperatorSnapshotTest, ChangeTrackedSessionTimersAndMergingSetsHoldExactlyTheState) {
  auto send = [](Harness<std::string>& r, int64_t key, int64_t value, Timestamp ts) {
    r.Send(key, IntEv{key, value}, ts);
  };
  std::vector<std::function<void(Harness<std::string>&)>> phases = {
      [&](Harness<std::string>& r) {
        for (int i = 0; i < 10; ++i) send(r, i, i, 5 * i);  // [5i, 5i+10) per key
        send(r, 1, 20, 30);                                 // key 1: [5,15) and [30,40)
      },
      [&](Harness<std::string>& r) {
        r.Watermark(16);  // keys 0 and 1's first sessions fire, kept until 35
      },
      [&](Harness<std::string>& r) {
        send(r, 1, 21, 12);  // late within the lateness: [5,22) fires at once
        send(r, 1, 22, 25);  // bridges [5,22) and [30,40): [5,40), pending again
        send(r, 9, 23, 47);  // [45,57)
      },
      [&](Harness<std::string>& r) {
        r.Watermark(40);  // keys 0, 2, 3 fire; 0 is cleaned up (at 29): its merging set goes
      },
      [&](Harness<std::string>& r) {
        send(r, 11, 24, 60);  // a new key
        r.Watermark(44);      // key 1's [5,40) fires
      },
  };
  auto b = [&](Harness<std::string>& r) {
    r.Watermark(44);
    send(r, 1, 30, 39);  // late within the lateness of [5,40): fires again
    send(r, 5, 31, 30);  // extends key 5's [25,35) to [25,40)
    r.Watermark(90);     // every session fires; all but the latest are cleaned up
    send(r, 11, 32, 62);
    r.Watermark(kMaxWatermark);
  };
  CheckChangeTrackingAll<std::string>(FactoryOf(env_, LateSessionSums(env_, false)), phases, b);
  CheckChangeTrackingAll<std::string>(FactoryOf(env_, LateSessionSums(env_, true)), phases, b);
}

TEST_P(OperatorSnapshotTest, ChangeTrackedSlicesHoldExactlyTheState) {
  restored_ties_unordered_ = true;
  auto sums = SlidingSums(env_);
  auto top = SlidingTopTwo(env_);
  std::vector<std::function<void(Harness<std::string>&)>> phases = {
      [](Harness<std::string>& r) {
        for (int i = 0; i < 40; ++i) r.Send(int64_t{i + 10}, IntEv{i + 10, i}, 60 + i % 12);
      },
      // One change among many slices: found by key (not by a pass over the map).
      [](Harness<std::string>& r) {
        r.Send(int64_t{12}, IntEv{12, 7}, 65);
      },
      [](Harness<std::string>& r) {
        for (int i = 0; i < 10; ++i) r.Send(int64_t{i % 4}, IntEv{i % 4, (i * 37) % 23}, i * 3);
      },
      [](Harness<std::string>& r) {
        for (int i = 10; i < 20; ++i) r.Send(int64_t{i % 4}, IntEv{i % 4, (i * 37) % 23}, i * 3);
        r.Watermark(25);
      },
      [](Harness<std::string>& r) {
        for (int i = 20; i < 30; ++i) r.Send(int64_t{i % 5}, IntEv{i % 5, (i * 37) % 23}, i * 3);
        r.Watermark(45);  // the first slices are cleaned up
      },
      [](Harness<std::string>& r) {
        for (int i = 30; i < 34; ++i) r.Send(int64_t{i % 3}, IntEv{i % 3, i}, i * 3);
      },
  };
  auto b = [](Harness<std::string>& r) {
    r.Watermark(45);
    for (int i = 0; i < 6; ++i) r.Send(int64_t{i % 6}, IntEv{i % 6, 100 + i}, 95 + i);
    r.Watermark(kMaxWatermark);
  };
  CheckChangeTrackingAll<std::string>(FactoryOf(env_, sums), phases, b);
  CheckChangeTrackingAll<std::string>(FactoryOf(env_, top), phases, b);

  auto reduce =
      env_.FromCollection(std::vector<Ev>{})
          .KeyBy(ByKey)
          .Window(SlidingEventTimeWindows::Of(absl::Milliseconds(30), absl::Milliseconds(10)))
          .AllowedLateness(absl::Milliseconds(5))
          .Reduce([](const Ev& x, const Ev& y) {
            return Ev{x.key, x.value + y.value};
          });
  std::vector<std::function<void(Harness<Ev>&)>> ev_phases = {
      [](Harness<Ev>& r) {
        for (int i = 0; i < 12; ++i) r.Rec(absl::StrCat("k", i % 5), i, i * 2);
      },
      [](Harness<Ev>& r) {
        for (int i = 12; i < 24; ++i) r.Rec(absl::StrCat("k", i % 5), i, i * 2);
        r.Watermark(21);
      },
      [](Harness<Ev>& r) {
        r.Rec("k2", 200, 18);  // late within the lateness
        for (int i = 24; i < 30; ++i) r.Rec(absl::StrCat("k", i % 7), i, i * 2);
        r.Watermark(41);
      },
      [](Harness<Ev>& r) { r.Rec("k1", 300, 50); },
  };
  auto ev_b = [](Harness<Ev>& r) {
    r.Watermark(41);
    for (int i = 0; i < 6; ++i) r.Rec(absl::StrCat("k", i), 1000 + i, 60 + i);
    r.Watermark(kMaxWatermark);
  };
  CheckChangeTrackingAll<Ev>(FactoryOf(env_, reduce), ev_phases, ev_b);
}

TEST_P(OperatorSnapshotTest, ChangeTrackedTriggerStateHoldsExactlyTheState) {
  auto stream =
      env_.FromCollection(std::vector<Ev>{}).KeyBy(ByKey).CountWindow(3).Aggregate(SumAggregate{});
  auto phase = [](int from) {
    return [from](Harness<int64_t>& r) {
      for (int i = from; i < from + 5; ++i) {
        r.Rec(absl::StrCat("k", i % 4), i + 1, kNoTimestamp);
      }
    };
  };
  std::vector<std::function<void(Harness<int64_t>&)>> phases = {phase(0), phase(5), phase(10),
                                                                phase(15)};
  auto b = [](Harness<int64_t>& r) {
    for (int i = 0; i < 10; ++i) r.Rec(absl::StrCat("k", i % 5), 100 * (i + 1), kNoTimestamp);
  };
  CheckChangeTrackingAll<int64_t>(FactoryOf(env_, stream), phases, b);
}

TEST_P(OperatorSnapshotTest, EvictingTimeWindow) {
  auto stream = env_.FromCollection(std::vector<Ev>{})
                    .KeyBy(ByKey)
                    .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
                    .Evictor(TimeEvictor::Of(absl::Milliseconds(4)))
                    .Aggregate(SumAggregate{});
  auto a = [](Harness<int64_t>& r) {
    r.Rec("a", 1, 1);
    r.Rec("a", 2, 7);
    r.Rec("b", 3, 3);
    r.Rec("a", 4, 12);
    r.Watermark(5);
  };
  auto b = [](Harness<int64_t>& r) {
    r.Watermark(5);
    r.Rec("a", 10, 8);
    r.Rec("b", 20, 9);
    r.Watermark(10);
    r.Rec("a", 30, 19);
    r.Watermark(kMaxWatermark);
  };
  CheckAll<int64_t>(FactoryOf(env_, stream), a, b);
}

// Numbers the firings of each window (WindowState) and counts the windows a key fired
// (GlobalState); Clear() frees the per-window state.
struct NumberFirings {
  void operator()(const std::string& key, WindowContext<TimeWindow>& ctx,
                  std::span<const Ev> elements, Collector<std::string>& out) const {
    ValueState<int64_t> firing =
        ctx.WindowState().GetState(ValueStateDescriptor<int64_t>("firing"));
    ValueState<int64_t> windows =
        ctx.GlobalState().GetState(ValueStateDescriptor<int64_t>("windows"));
    const int64_t n = firing.Value().value_or(0) + 1;
    firing.Update(n);
    int64_t w = windows.Value().value_or(0);
    if (n == 1) windows.Update(++w);
    int64_t sum = 0;
    for (const Ev& e : elements) sum += e.value;
    out.Collect(
        absl::StrCat(key, " [", ctx.window().start, ") sum ", sum, " firing ", n, " windows ", w));
  }
};
struct NumberFiringsWithClear : NumberFirings {
  void Clear(const std::string&, WindowContext<TimeWindow>& ctx) const {
    ctx.WindowState().GetState(ValueStateDescriptor<int64_t>("firing")).Clear();
  }
};

TEST_P(OperatorSnapshotTest, WindowFunctionStateAndContinuousTrigger) {
  auto stream = env_.FromCollection(std::vector<Ev>{})
                    .KeyBy(ByKey)
                    .Window(TumblingEventTimeWindows::Of(absl::Milliseconds(100)))
                    .Trigger(ContinuousEventTimeTrigger::Of(absl::Milliseconds(20)))
                    .AllowedLateness(absl::Milliseconds(50))
                    .Process<std::string>(NumberFiringsWithClear{});
  auto a = [](Harness<std::string>& r) {
    r.Rec("a", 1, 5);
    r.Rec("b", 2, 10);
    r.Rec("a", 3, 30);
    r.Watermark(25);  // first continuous firing
    r.Rec("b", 4, 110);
  };
  auto b = [](Harness<std::string>& r) {
    r.Watermark(25);
    r.Rec("a", 5, 50);
    r.Watermark(70);
    r.Watermark(100);   // window end
    r.Rec("a", 6, 60);  // late within lateness
    r.Watermark(160);
    r.Watermark(kMaxWatermark);
  };
  CheckAll<std::string>(FactoryOf(env_, stream), a, b);
}

TEST_P(OperatorSnapshotTest, ProcessingTimeWindow) {
  auto stream = env_.FromCollection(std::vector<Ev>{})
                    .KeyBy(ByKey)
                    .Window(TumblingProcessingTimeWindows::Of(absl::Milliseconds(100)))
                    .Process<std::string>(ListWindow{});
  auto a = [](Harness<std::string>& r) {
    r.ProcessingTime(1010);
    r.Rec("a", 1, kNoTimestamp);
    r.Rec("b", 2, kNoTimestamp);
    r.ProcessingTime(1120);  // [1000,1100) fires
    r.Rec("a", 3, kNoTimestamp);
    r.Rec("c", 4, kNoTimestamp);
  };
  auto b = [](Harness<std::string>& r) {
    r.Rec("a", 5, kNoTimestamp);
    r.ProcessingTime(1250);
    r.Rec("b", 6, kNoTimestamp);
    r.ProcessingTime(1300);
  };
  CheckAll<std::string>(FactoryOf(env_, stream), a, b);
}

TEST_P(OperatorSnapshotTest, WindowAll) {
  auto stream = env_.FromCollection(std::vector<Ev>{})
                    .WindowAll(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
                    .Aggregate(SumAggregate{});
  auto a = [](Harness<int64_t>& r) {
    r.Send(internal::AllKey{}, Ev{"x", 1}, 1);
    r.Send(internal::AllKey{}, Ev{"y", 2}, 12);
    r.Watermark(10);
  };
  auto b = [](Harness<int64_t>& r) {
    r.Watermark(10);
    r.Send(internal::AllKey{}, Ev{"z", 3}, 15);
    r.Watermark(kMaxWatermark);
  };
  // One subtask: WindowAll never runs in parallel.
  CheckRestore<int64_t>(FactoryOf(env_, stream), a, b, 1, {});
}

// --- Two-input operators --------------------------------------------------------------------------

void JoinInputA(Harness<std::string>& r);
void JoinInputB(Harness<std::string>& r);
struct JoinPairs {
  void operator()(const Ev& l, const Ev& r, Collector<std::string>& out) const {
    out.Collect(absl::StrCat(l.key, " ", l.value, "+", r.value));
  }
};

TEST_P(OperatorSnapshotTest, IntervalJoinBuffersAndCleanup) {
  auto left = env_.FromCollection(std::vector<Ev>{}).KeyBy(ByKey);
  auto right = env_.FromCollection(std::vector<Ev>{}).KeyBy(ByKey);
  auto stream = left.IntervalJoin(right)
                    .Between(absl::Milliseconds(-5), absl::Milliseconds(10))
                    .Process<std::string>(JoinPairs{});
  CheckAll<std::string>(FactoryOf(env_, stream), JoinInputA, JoinInputB);
}

// Left records at t join right records in [t - 5, t + 10]; gate 0 is the left input.
void JoinInputA(Harness<std::string>& r) {
  r.Rec("a", 1, 10, 0);
  r.Rec("a", 2, 12, 1);  // joins 1
  r.Rec("b", 3, 20, 0);
  r.Rec("a", 4, 30, 0);
  r.Rec("b", 5, 40, 1);  // left partners in [30, 45]: none
  r.Rec("c", 6, 5, 1);
  r.Watermark(8);
}
void JoinInputB(Harness<std::string>& r) {
  r.Watermark(8);
  r.Rec("a", 7, 15, 1);   // left partners in [5, 20]: 1
  r.Rec("b", 8, 35, 0);   // right partners in [30, 45]: 5
  r.Rec("c", 9, 9, 0);    // right partners in [4, 19]: 6
  r.Watermark(25);        // cleans up left 1 (at 20), rights 2 (17), 7 (20), 6 (10)
  r.Rec("a", 10, 26, 1);  // left partners in [16, 31]: 4
  r.Rec("a", 11, 27, 0);  // right partners in [22, 37]: 10
  r.Rec("a", 12, 1, 0);   // late: dropped
  r.Watermark(kMaxWatermark);
}

// The buffers and cleanup timers themselves come back (cleanup never changes the output).
TEST_P(OperatorSnapshotTest, IntervalJoinRestoresBuffersAndCleanupTimers) {
  using Op = internal::IntervalJoinOperator<std::string, Ev, Ev, std::string, decltype(&ByKey),
                                            decltype(&ByKey), JoinPairs>;
  internal::IntervalJoinSpec<Ev, Ev> spec;
  spec.bounds = {-5, 10};
  OperatorFactory make = [spec](OperatorSetup& s) {
    return absl::StatusOr<std::unique_ptr<OperatorBase>>(
        std::make_unique<Op>(s, &ByKey, &ByKey, spec, JoinPairs{}));
  };
  Harness<std::string> run(make, 1, backend_, kStartTime);
  run.Open();
  JoinInputA(run);
  std::vector<OperatorStateSnapshot> snapshot = run.Snapshot();
  const auto& before = dynamic_cast<Op&>(run.op());
  ASSERT_EQ(before.num_cleanup_timers(), 6u);
  for (int p : {1, 2}) {
    Harness<std::string> restored(make, p, backend_, kStartTime);
    absl::Status st = restored.Restore(snapshot);
    ASSERT_TRUE(st.ok()) << st;
    size_t timers = 0, keys = 0, left = 0, right = 0;
    for (int s = 0; s < p; ++s) {
      const auto& after = dynamic_cast<Op&>(restored.op(s));
      timers += after.num_cleanup_timers();
      keys += after.buffers().num_keys();
      left += after.buffers().left_elements();
      right += after.buffers().right_elements();
      for (const char* k : {"a", "b", "c"}) {
        if (after.buffers().num_keys() == 0) continue;
        for (JoinSide side : {JoinSide::kLeft, JoinSide::kRight}) {
          std::vector<Timestamp> got = after.buffers().Timestamps(k, side);
          if (!got.empty()) {
            EXPECT_EQ(got, before.buffers().Timestamps(k, side)) << k;
          }
        }
      }
    }
    EXPECT_EQ(timers, before.num_cleanup_timers());
    EXPECT_EQ(keys, before.buffers().num_keys());
    EXPECT_EQ(left, before.buffers().left_elements());
    EXPECT_EQ(right, before.buffers().right_elements());
    // And they are cleaned up by the same watermark.
    restored.Open();
    restored.Watermark(kMaxWatermark);
    for (int s = 0; s < p; ++s) {
      const auto& after = dynamic_cast<Op&>(restored.op(s));
      EXPECT_EQ(after.num_cleanup_timers(), 0u);
      EXPECT_EQ(after.buffers().num_keys(), 0u);
    }
  }
}

// Records of input 1 register event-time timers, records of input 2 processing-time timers; both
// count in ListState what the key saw.
struct CoTimers {
  void ProcessElement1(const Ev& e, KeyedProcessContext<std::string>& ctx,
                       Collector<std::string>& out) {
    Seen(ctx, e.value);
    ctx.RegisterEventTimeTimer(ctx.timestamp() + 10);
    out.Collect(absl::StrCat(e.key, " first ", e.value));
  }
  void ProcessElement2(const Ev& e, KeyedProcessContext<std::string>& ctx,
                       Collector<std::string>& out) {
    Seen(ctx, e.value);
    ctx.RegisterProcessingTimeTimer(ctx.CurrentProcessingTime() + 50);
    if (e.value < 0) ctx.DeleteEventTimeTimer(-e.value);
    out.Collect(absl::StrCat(e.key, " second ", e.value));
  }
  void OnTimer(Timestamp time, KeyedProcessContext<std::string>& ctx, Collector<std::string>& out) {
    std::string seen;
    for (int64_t v : ctx.runtime().GetListState(ListStateDescriptor<int64_t>("seen")).Get()) {
      absl::StrAppend(&seen, " ", v);
    }
    out.Collect(absl::StrCat(ctx.CurrentKey(), " timer ", time,
                             ctx.time_domain() == TimeDomain::kEventTime ? " event" : " processing",
                             seen));
  }
  static void Seen(KeyedProcessContext<std::string>& ctx, int64_t v) {
    ctx.runtime().GetListState(ListStateDescriptor<int64_t>("seen")).Add(v);
  }
};

TEST_P(OperatorSnapshotTest, KeyedCoProcessTimers) {
  auto first = env_.FromCollection(std::vector<Ev>{}).KeyBy(ByKey);
  auto second = env_.FromCollection(std::vector<Ev>{}).KeyBy(ByKey);
  auto stream = first.Connect(second).Process<std::string>(CoTimers{});
  auto a = [](Harness<std::string>& r) {
    r.Watermark(0);
    r.Rec("a", 1, 5, 0);    // event timer 15
    r.Rec("b", 2, 6, 0);    // 16
    r.Rec("c", 3, 7, 0);    // 17
    r.Rec("a", 4, 0, 1);    // processing timer 1050
    r.Rec("c", -17, 0, 1);  // deletes c's 17
    r.ProcessingTime(1020);
    r.Rec("b", 5, 0, 1);  // 1070
  };
  auto b = [](Harness<std::string>& r) {
    r.Rec("d", 6, 8, 0);  // 18
    r.Watermark(16);
    r.ProcessingTime(1060);
    r.Watermark(30);
    r.ProcessingTime(1100);
  };
  CheckAll<std::string>(FactoryOf(env_, stream), a, b);
}

// --- What cannot be checkpointed fails the snapshot, not the build -----------------------------------

struct OpaqueAggregate : AggregateFunction<Ev, Opaque, std::string> {
  Opaque CreateAccumulator() override { return {}; }
  void Add(const Ev& e, Opaque& acc) override { acc.text += e.key; }
  std::string GetResult(const Opaque& acc) override { return acc.text; }
  void Merge(const Opaque& from, Opaque& into) override { into.text += from.text; }
};

TEST_P(OperatorSnapshotTest, AccumulatorWithoutSerializerFailsTheSnapshot) {
  auto stream = env_.FromCollection(std::vector<Ev>{})
                    .KeyBy(ByKey)
                    .Window(EventTimeSessionWindows::WithGap(absl::Milliseconds(10)))
                    .Aggregate(OpaqueAggregate{});
  std::string error = SnapshotError<std::string>(FactoryOf(env_, stream),
                                                 [](Harness<std::string>& r) { r.Rec("a", 1, 1); });
  EXPECT_THAT(error, HasSubstr("operator 'op'"));
  EXPECT_THAT(error, HasSubstr("checkpointing needs a sluice::Serializer for the window's "
                               "accumulator type"));
  // The same window slices (sliding windows): the same error.
  auto sliced =
      env_.FromCollection(std::vector<Ev>{})
          .KeyBy(ByKey)
          .Window(SlidingEventTimeWindows::Of(absl::Milliseconds(10), absl::Milliseconds(5)))
          .Aggregate(OpaqueAggregate{});
  EXPECT_THAT(SnapshotError<std::string>(FactoryOf(env_, sliced),
                                         [](Harness<std::string>& r) { r.Rec("a", 1, 1); }),
              HasSubstr("accumulator type"));
}

TEST_P(OperatorSnapshotTest, RecordsWithoutSerializerFailTheSnapshot) {
  auto opaque = env_.FromCollection(std::vector<Opaque>{});
  auto keyed = opaque.KeyBy([](const Opaque& o) { return o.text; });
  auto window = keyed.Window(TumblingEventTimeWindows::Of(absl::Milliseconds(10)))
                    .Process<std::string>([](const std::string& k, WindowContext<TimeWindow>&,
                                             std::span<const Opaque>,
                                             Collector<std::string>& out) { out.Collect(k); });
  auto feed = [](auto& r) { r.Send(std::string("a"), Opaque{"a"}, 1); };
  EXPECT_THAT(SnapshotError<std::string>(FactoryOf(env_, window), feed),
              HasSubstr("the window's element type"));
  auto reduce =
      keyed.Reduce([](const Opaque& x, const Opaque& y) { return Opaque{x.text + y.text}; });
  EXPECT_THAT(SnapshotError<Opaque>(FactoryOf(env_, reduce), feed),
              HasSubstr("the reduced value type"));
  auto join = keyed.IntervalJoin(env_.FromCollection(std::vector<Ev>{}).KeyBy(ByKey))
                  .Between(absl::Milliseconds(-1), absl::Milliseconds(1))
                  .Process([](const Opaque& l, const Ev&, Collector<std::string>& out) {
                    out.Collect(l.text);
                  });
  EXPECT_THAT(SnapshotError<std::string>(FactoryOf(env_, join), feed),
              HasSubstr("the first (left) input's record type"));
}

TEST_P(OperatorSnapshotTest, KeyWithoutSerializerFailsTheSnapshot) {
  auto stream = env_.FromCollection(std::vector<Ev>{})
                    .KeyBy([](const Ev& e) { return OpaqueKey{e.key}; })
                    .Process<std::string>([](const Ev& e, KeyedProcessContext<OpaqueKey>& ctx,
                                             Collector<std::string>& out) {
                      ctx.RegisterEventTimeTimer(10);
                      out.Collect(e.key);
                    });
  std::string error = SnapshotError<std::string>(FactoryOf(env_, stream), [](auto& r) {
    r.Send(OpaqueKey{"a"}, Ev{"a", 1}, 1);
  });
  EXPECT_THAT(error, HasSubstr("operator 'op': checkpointing needs a sluice::Serializer for the "
                               "key type"));
}

INSTANTIATE_TEST_SUITE_P(Backends, OperatorSnapshotTest,
                         ::testing::Values(StateBackendKind::kHashMap, StateBackendKind::kRocksDb),
                         [](const auto& info) {
                           return std::string(StateBackendName(info.param));
                         });

// --- TimerQueue --------------------------------------------------------------------------------------

TEST(TimerQueueSnapshotTest, RestoredQueueFiresInTheSameOrder) {
  internal::TimerQueue<std::string, internal::VoidNamespace> q;
  q.Register(10, "c", {});
  q.Register(10, "a", {});
  q.Register(5, "z", {});
  q.Register(10, "b", {});
  q.Delete(10, "a", {});
  q.Register(10, "a", {});  // registered again: now after b
  q.Register(10, "d", {});
  q.Delete(10, "d", {});  // deleted: not restored
  internal::TimerQueue<std::string, internal::VoidNamespace> restored;
  q.ForEachWithSequence(
      [&](Timestamp t, uint64_t seq, const std::string& k, const internal::VoidNamespace& ns) {
        restored.Restore(t, seq, k, ns);
      });
  restored.Register(10, "e", {});  // after every restored timer of time 10
  q.Register(10, "e", {});
  auto drain = [](auto& queue) {
    std::vector<std::string> fired;
    typename std::remove_reference_t<decltype(queue)>::Timer t;
    while (queue.PopDue(100, &t)) fired.push_back(absl::StrCat(t.key, "@", t.time));
    return fired;
  };
  const std::vector<std::string> expected = {"z@5", "c@10", "b@10", "a@10", "e@10"};
  EXPECT_EQ(drain(q), expected);
  EXPECT_EQ(drain(restored), expected);
}

// Internal-state records are encoded once, as snapshot records under the state's index, per key
// group; TakeKeyGroup hands them over and WriteKeyGroup decodes the same records.
TEST(InternalStateBucketsTest, EncodesSnapshotRecordsOncePerKeyGroup) {
  constexpr int kMaxParallelism = 8;
  const KeyGroupRange range{0, kMaxParallelism - 1};
  const std::vector<std::string> keys = {"apple", "pear", "plum", "fig", "kiwi"};
  internal::InternalStateBuckets buckets(range, kMaxParallelism, [&](auto& b) {
    for (const std::string& k : keys) {
      std::string composite;
      Serializer<std::string>::Write(k, &composite);
      composite.append("#ns");
      b.Add(k, composite, absl::StrCat("v-", k));
    }
  });
  buckets.PrepareSnapshot(/*state_index=*/3);
  for (int kg = 0; kg < kMaxParallelism; ++kg) {
    std::string expected;
    for (const std::string& k : keys) {
      if (KeyGroupFor(k, kMaxParallelism) != kg) continue;
      std::string composite;
      Serializer<std::string>::Write(k, &composite);
      composite.append("#ns");
      internal::PutSnapshotRecord(3, composite, {}, absl::StrCat("v-", k), &expected);
    }
    std::string taken;
    ASSERT_TRUE(buckets.TakeKeyGroup(kg, &taken));
    EXPECT_EQ(taken, expected) << "key group " << kg;
  }
  // Taken: nothing is left until the next snapshot.
  std::string again;
  EXPECT_TRUE(buckets.TakeKeyGroup(0, &again));
  EXPECT_EQ(again, "");

  buckets.PrepareSnapshot(/*state_index=*/0);
  std::vector<std::string> emitted;
  for (int kg = 0; kg < kMaxParallelism; ++kg) {
    buckets.WriteKeyGroup(kg, [&](std::string_view composite, std::string_view value) {
      ByteReader in(composite);
      std::string key;
      ASSERT_TRUE(Serializer<std::string>::Read(in, &key));
      EXPECT_EQ(in.rest(), "#ns");
      EXPECT_EQ(KeyGroupFor(key, kMaxParallelism), kg);
      emitted.push_back(absl::StrCat(key, "=", std::string(value)));
    });
  }
  std::sort(emitted.begin(), emitted.end());
  EXPECT_THAT(emitted, ::testing::ElementsAre("apple=v-apple", "fig=v-fig", "kiwi=v-kiwi",
                                              "pear=v-pear", "plum=v-plum"));
}

// Snapshots of maps whose values own buffers prefetch them ahead; every element is visited once,
// in the map's order, whatever its size against the prefetch distance.
TEST(InternalStateBucketsTest, ForEachPrefetchedVisitsEveryElementInOrder) {
  for (int n : {0, 1, 15, 16, 17, 100}) {
    absl::flat_hash_map<int, std::optional<std::vector<int>>> m;
    for (int i = 0; i < n; ++i) {
      if (i % 3 == 0) {
        m[i] = std::nullopt;
      } else {
        m[i] = std::vector<int>(static_cast<size_t>(i % 5), i);
      }
    }
    std::vector<int> plain, prefetched;
    for (const auto& [k, v] : m) plain.push_back(k);
    internal::ForEachPrefetched(
        m, [](const auto& kv) { return internal::HeapDataOf(kv.second); },
        [&](const auto& kv) { prefetched.push_back(kv.first); });
    EXPECT_EQ(prefetched, plain) << n;
  }
  static_assert(std::is_same_v<decltype(internal::HeapDataOf(int64_t{1})), std::nullptr_t>);
  static_assert(
      std::is_same_v<decltype(internal::HeapDataOf(std::optional<int64_t>{})), std::nullptr_t>);
  const std::vector<int> empty;
  EXPECT_EQ(internal::HeapDataOf(empty), nullptr);
  const std::vector<int> one = {7};
  EXPECT_EQ(internal::HeapDataOf(one), static_cast<const void*>(one.data()));
}

// A fill may hand over an encoder working on a copy: the snapshot then holds the state as of the
// snapshot, even when the operator changes it before the checkpoint writer encodes the copy; the
// records encoded at once and the deferred ones all restore.
TEST(InternalStateBucketsTest, DeferredRecordsHoldTheStateAsOfTheSnapshot) {
  constexpr int kMaxParallelism = 8;
  const KeyGroupRange range{0, kMaxParallelism - 1};
  ManualClock clock;
  auto encode = [](int64_t key, int64_t count, internal::InternalStateBuckets& b) {
    std::string composite, value;
    Serializer<int64_t>::Write(key, &composite);
    PutVarint(static_cast<uint64_t>(count), &value);
    b.Add(key, composite, value);
  };
  std::map<int64_t, int64_t> counts = {{1, 10}, {2, 20}, {3, 30}, {11, 110}};
  internal::KeyedStateBackend<int64_t> backend(StateBackendKind::kHashMap, "op", range,
                                               kMaxParallelism, &clock);
  auto buckets = internal::RegisterInternalState(
      backend, "_counts", kMaxParallelism, [&](internal::InternalStateBuckets& b) {
        encode(1, counts.at(1), b);  // at once
        auto copy = std::make_shared<std::map<int64_t, int64_t>>(counts);
        b.Defer([copy, encode](internal::InternalStateBuckets& out) {
          for (const auto& [key, count] : *copy) {
            if (key != 1) encode(key, count, out);
          }
        });
      });
  absl::StatusOr<internal::KeyedSnapshot> snap = backend.Snapshot(/*deferred=*/true);
  ASSERT_TRUE(snap.ok()) << snap.status();
  counts[2] = 99;  // after the snapshot: not in it
  counts[4] = 40;
  counts.erase(3);
  ASSERT_TRUE(internal::MaterializeKeyedSnapshot(*snap).ok());

  internal::KeyedStateBackend<int64_t> restored(StateBackendKind::kHashMap, "op", range,
                                                kMaxParallelism, &clock);
  ASSERT_TRUE(
      restored.Restore(snap->bytes, snap->key_groups, snap->key_group_offsets, "snap").ok());
  std::map<int64_t, int64_t> got;
  for (const internal::RestoredRecord& r : restored.TakeRestoredInternal("_counts")) {
    ByteReader composite(r.composite), value(r.value);
    int64_t key = 0;
    uint64_t count = 0;
    ASSERT_TRUE(Serializer<int64_t>::Read(composite, &key));
    ASSERT_TRUE(value.ReadVarint(&count));
    EXPECT_EQ(r.key_group, KeyGroupFor(key, kMaxParallelism));
    EXPECT_TRUE(got.emplace(key, static_cast<int64_t>(count)).second) << "twice: " << key;
  }
  EXPECT_EQ(got, (std::map<int64_t, int64_t>{{1, 10}, {2, 20}, {3, 30}, {11, 110}}));
}

// Flat copies of window contents: trivially copyable values as they are; vectors of trivially
// copyable elements in one arena, rebuilt exactly (also empty and absent ones).
// ChangedKeys: the first snapshot is full; later ones give exactly the entries marked since
// (each once) and the keys erased since; too many noted keys stop tracking until a full snapshot.
TEST(InternalStateBucketsTest, ChangedKeysGiveWhatChangedSinceTheLastSnapshot) {
  struct Value {
    int64_t v = 0;
    bool changed = false;
  };
  using Map = absl::flat_hash_map<int64_t, Value>;
  Map map;
  internal::ChangedKeys<int64_t> changes(/*max_noted=*/4);
  internal::InternalStateBuckets b(KeyGroupRange{0, kMaxParallelism - 1}, kMaxParallelism, nullptr);
  auto flag = [](Value& v) -> bool& { return v.changed; };
  auto set = [&](int64_t k, int64_t v) {
    auto it = map.try_emplace(k).first;
    changes.Mark(it->first, it->second.changed);
    it->second.v = v;
  };
  auto erase = [&](int64_t k) {
    if (map.erase(k) > 0) changes.MarkErased(k);
  };
  struct Taken {
    bool tracked;
    std::vector<std::pair<int64_t, int64_t>> changed;
    std::vector<int64_t> removed;
  };
  auto take = [&] {
    std::vector<const Map::value_type*> changed;
    Taken t{false, {}, {}};
    t.tracked = changes.Take(b, map, flag, &changed, &t.removed);
    for (const auto* kv : changed) t.changed.emplace_back(kv->first, kv->second.v);
    std::sort(t.changed.begin(), t.changed.end());
    std::sort(t.removed.begin(), t.removed.end());
    return t;
  };
  using P = std::pair<int64_t, int64_t>;
  for (int64_t k = 0; k < 40; ++k) set(k, k);  // not tracked yet: nothing noted
  EXPECT_FALSE(take().tracked);                // full
  set(3, 30);
  set(3, 31);  // noted once
  set(50, 5);
  erase(7);
  erase(50);
  set(50, 6);  // erased and inserted again: removed, then changed
  Taken t = take();
  EXPECT_TRUE(t.tracked);
  EXPECT_EQ(t.changed, (std::vector<P>{{3, 31}, {50, 6}}));
  EXPECT_EQ(t.removed, (std::vector<int64_t>{7, 50}));
  t = take();
  EXPECT_TRUE(t.tracked);
  EXPECT_TRUE(t.changed.empty());
  EXPECT_TRUE(t.removed.empty());
  for (int64_t k = 10; k < 15; ++k) set(k, 100 + k);  // a fifth noted key: tracking stops
  set(20, 1);
  EXPECT_FALSE(take().tracked);  // full again, every flag cleared
  set(12, 7);
  t = take();
  EXPECT_TRUE(t.tracked);
  EXPECT_EQ(t.changed, (std::vector<P>{{12, 7}}));
  EXPECT_TRUE(t.removed.empty());
}

// When more was noted than the map holds (most of it erased), the snapshot is full again: fewer
// records than the changes. MarkErased with the map's size stops noting as soon as that is so.
TEST(InternalStateBucketsTest, ChangedKeysTakeAFullSnapshotWhenMoreChangedThanThereIs) {
  struct Value {
    int64_t v = 0;
    bool changed = false;
  };
  using Map = absl::flat_hash_map<int64_t, Value>;
  for (bool sized : {false, true}) {
    SCOPED_TRACE(sized ? "MarkErased with the map's size" : "MarkErased");
    Map map;
    internal::ChangedKeys<int64_t> changes;
    internal::InternalStateBuckets b(KeyGroupRange{0, kMaxParallelism - 1}, kMaxParallelism,
                                     nullptr);
    auto flag = [](Value& v) -> bool& { return v.changed; };
    auto set = [&](int64_t k, int64_t v) {
      auto it = map.try_emplace(k).first;
      changes.Mark(it->first, it->second.changed);
      it->second.v = v;
    };
    auto erase = [&](int64_t k) {
      if (map.erase(k) == 0) return;
      if (sized) {
        changes.MarkErased(k, map.size());
      } else {
        changes.MarkErased(k);
      }
    };
    auto take = [&](std::vector<int64_t>* changed, std::vector<int64_t>* removed) {
      std::vector<const Map::value_type*> c;
      removed->clear();
      const bool tracked = changes.Take(b, map, flag, &c, removed);
      changed->clear();
      for (const auto* kv : c) changed->push_back(kv->first);
      std::sort(changed->begin(), changed->end());
      std::sort(removed->begin(), removed->end());
      return tracked;
    };
    std::vector<int64_t> changed, removed;
    for (int64_t k = 0; k < 10; ++k) set(k, k);
    EXPECT_FALSE(take(&changed, &removed));  // the first: full
    for (int64_t k = 0; k < 4; ++k) erase(k);
    set(4, 40);  // 5 noted, 6 held: the changes
    EXPECT_TRUE(take(&changed, &removed));
    EXPECT_EQ(changed, (std::vector<int64_t>{4}));
    EXPECT_EQ(removed, (std::vector<int64_t>{0, 1, 2, 3}));
    for (int64_t k = 4; k < 9; ++k) erase(k);  // 5 noted, 1 held: full (every record: key 9)
    EXPECT_FALSE(take(&changed, &removed));
    EXPECT_TRUE(removed.empty());
    set(9, 90);
    set(20, 2);  // 2 noted, 2 held: the changes again
    EXPECT_TRUE(take(&changed, &removed));
    EXPECT_EQ(changed, (std::vector<int64_t>{9, 20}));
    EXPECT_TRUE(removed.empty());
    for (auto& [k, v] : map) EXPECT_FALSE(v.changed) << k;
  }
}

TEST(InternalStateBucketsTest, FlatCopiesGiveBackEveryValue) {
  static_assert(internal::FlatCopy<int64_t>::kFlat);
  static_assert(internal::FlatCopy<std::vector<int64_t>>::kFlat);
  static_assert(!internal::FlatCopy<std::string>::kFlat);
  static_assert(!internal::FlatCopy<std::vector<std::string>>::kFlat);

  internal::FlatCopy<int64_t> counts;
  const std::vector<std::optional<int64_t>> count_values = {7, std::nullopt, -3};
  for (const auto& v : count_values) counts.Add(v);
  std::optional<int64_t> unused;
  for (uint32_t i = 0; i < count_values.size(); ++i) {
    EXPECT_EQ(counts.Get(i, &unused), count_values[i]) << i;
  }

  internal::FlatCopy<std::vector<int64_t>> lists;
  const std::vector<std::optional<std::vector<int64_t>>> list_values = {
      std::vector<int64_t>{1, 2, 3}, std::nullopt, std::vector<int64_t>{}, std::vector<int64_t>{4},
      std::vector<int64_t>{5, 6}};
  for (const auto& v : list_values) lists.Add(v);
  std::optional<std::vector<int64_t>> scratch;
  for (uint32_t i = 0; i < list_values.size(); ++i) {
    EXPECT_EQ(lists.Get(i, &scratch), list_values[i]) << i;
  }
  EXPECT_EQ(lists.arena, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
}

}  // namespace
}  // namespace sluice::snapshot_test
