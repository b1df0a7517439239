// Keyed state on both backends: every state type, TTL, namespaces, snapshots (same backend, the
// other backend, rescaled), and misuse. One suite, parameterized over HashMap and RocksDB.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sluice/internal/keyed_state_backend.h>
#include <sluice/state/keyed_state.h>
#include <sluice/window/window_functions.h>

#include "state/keyed_change_log.h"

namespace sluice::internal {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr int kMaxParallelism = 16;

std::string FreshDir(const std::string& name) {
  static int counter = 0;
  std::string dir = ::testing::TempDir() + "/keyed_state_test_" + name + "_" +
                    std::to_string(::getpid()) + "_" + std::to_string(counter++);
  std::filesystem::remove_all(dir);
  return dir;
}

// Average of int64 values: the accumulator is (sum, count).
class Average final : public AggregateFunction<int64_t, std::pair<int64_t, int64_t>, double> {
 public:
  std::pair<int64_t, int64_t> CreateAccumulator() override { return {0, 0}; }
  void Add(const int64_t& v, std::pair<int64_t, int64_t>& acc) override {
    acc.first += v;
    acc.second += 1;
  }
  double GetResult(const std::pair<int64_t, int64_t>& acc) override {
    return static_cast<double>(acc.first) / static_cast<double>(acc.second);
  }
  void Merge(const std::pair<int64_t, int64_t>& from, std::pair<int64_t, int64_t>& into) override {
    into.first += from.first;
    into.second += from.second;
  }
};

class KeyedStateTest : public ::testing::TestWithParam<StateBackendKind> {
 protected:
  void SetUp() override {
    options_.block_cache_bytes = 8 << 20;
    options_.write_buffer_budget_bytes = 8 << 20;
    resources_ = MakeRocksDbResources(options_);
    root_ = FreshDir(StateBackendName(GetParam()));
  }
  void TearDown() override {
    backends_.clear();
    std::filesystem::remove_all(root_);
  }

  // A backend for subtask `subtask` of `parallelism`, of `kind` (default: the parameter).
  KeyedStateBackend<std::string>* Make(int subtask = 0, int parallelism = 1,
                                       std::optional<StateBackendKind> kind = std::nullopt) {
    const StateBackendKind k = kind.value_or(GetParam());
    auto b = std::make_unique<KeyedStateBackend<std::string>>(
        k, "op", KeyGroupRange::ForSubtask(kMaxParallelism, parallelism, subtask), kMaxParallelism,
        &clock_);
    if (k == StateBackendKind::kRocksDb) {
      std::string path = root_ + "/db" + std::to_string(db_counter_++);
      b->set_rocksdb_opener(
          [this, path] { return RocksDbStore::Open(options_, resources_, path, &clock_); });
    }
    backends_.push_back(std::move(b));
    return backends_.back().get();
  }
  // Sets the current key (the string must outlive its use: keys_ keeps them).
  void Key(KeyedStateBackend<std::string>* b, const std::string& key) {
    keys_.push_back(std::make_unique<std::string>(key));
    b->SetCurrentKey(keys_.back().get());
  }

  ManualClock clock_{1000};
  RocksDbStateOptions options_;
  std::shared_ptr<RocksDbResources> resources_;
  std::string root_;
  int db_counter_ = 0;
  std::vector<std::unique_ptr<KeyedStateBackend<std::string>>> backends_;
  std::vector<std::unique_ptr<std::string>> keys_;
};

TEST_P(KeyedStateTest, ValueStatePerKey) {
  auto* b = Make();
  StateAccess<VoidNamespace> access(b, &kNoNamespace, nullptr);
  ValueState<int64_t> count = access.GetState(ValueStateDescriptor<int64_t>("count"));
  Key(b, "a");
  EXPECT_EQ(count.Value(), std::nullopt);
  count.Update(1);
  Key(b, "b");
  EXPECT_EQ(count.Value(), std::nullopt);
  count.Update(10);
  Key(b, "a");
  EXPECT_EQ(count.Value(), 1);
  count.Update(2);
  EXPECT_EQ(count.Value(), 2);
  count.Clear();
  EXPECT_EQ(count.Value(), std::nullopt);
  Key(b, "b");
  EXPECT_EQ(count.Value(), 10);
  // The same name gives the same state.
  ValueState<int64_t> again = access.GetState(ValueStateDescriptor<int64_t>("count"));
  EXPECT_EQ(again.Value(), 10);
}

TEST_P(KeyedStateTest, ListState) {
  auto* b = Make();
  StateAccess<VoidNamespace> access(b, &kNoNamespace, nullptr);
  ListState<std::string> list = access.GetListState(ListStateDescriptor<std::string>("l"));
  Key(b, "k1");
  EXPECT_THAT(list.Get(), ElementsAre());
  list.Add("x");
  list.Add("y");
  list.AddAll({"z", "w"});
  Key(b, "k2");
  list.Add("other");
  Key(b, "k1");
  EXPECT_THAT(list.Get(), ElementsAre("x", "y", "z", "w"));
  list.Update({"only"});
  EXPECT_THAT(list.Get(), ElementsAre("only"));
  list.Update({});
  EXPECT_THAT(list.Get(), ElementsAre());
  Key(b, "k2");
  EXPECT_THAT(list.Get(), ElementsAre("other"));
  list.Clear();
  EXPECT_THAT(list.Get(), ElementsAre());
}

TEST_P(KeyedStateTest, MapState) {
  auto* b = Make();
  StateAccess<VoidNamespace> access(b, &kNoNamespace, nullptr);
  MapState<int32_t, std::string> map =
      access.GetMapState(MapStateDescriptor<int32_t, std::string>("m"));
  Key(b, "k");
  EXPECT_TRUE(map.IsEmpty());
  map.Put(3, "three");
  map.Put(1, "one");
  map.Put(2, "two");
  map.Put(2, "TWO");
  Key(b, "j");
  map.Put(1, "j-one");
  Key(b, "k");
  EXPECT_EQ(map.Get(2), "TWO");
  EXPECT_EQ(map.Get(4), std::nullopt);
  EXPECT_TRUE(map.Contains(1));
  EXPECT_FALSE(map.Contains(4));
  EXPECT_THAT(map.Entries(),
              UnorderedElementsAre(Pair(1, "one"), Pair(2, "TWO"), Pair(3, "three")));
  map.Remove(1);
  EXPECT_THAT(map.Entries(), UnorderedElementsAre(Pair(2, "TWO"), Pair(3, "three")));
  map.Clear();
  EXPECT_TRUE(map.IsEmpty());
  Key(b, "j");
  EXPECT_THAT(map.Entries(), ElementsAre(Pair(1, "j-one")));
}

TEST_P(KeyedStateTest, ReducingAndAggregatingState) {
  auto* b = Make();
  StateAccess<VoidNamespace> access(b, &kNoNamespace, nullptr);
  auto sum = access.GetReducingState(
      MakeReducingStateDescriptor<int64_t>("sum", [](int64_t a, int64_t x) { return a + x; }));
  AggregatingState<int64_t, double> avg =
      access.GetAggregatingState(AggregatingStateDescriptor<Average>("avg", Average{}));
  Key(b, "a");
  EXPECT_EQ(sum.Get(), std::nullopt);
  EXPECT_EQ(avg.Get(), std::nullopt);
  for (int64_t v : {1, 2, 6}) {
    sum.Add(v);
    avg.Add(v);
  }
  Key(b, "b");
  sum.Add(100);
  avg.Add(100);
  Key(b, "a");
  EXPECT_EQ(sum.Get(), 9);
  EXPECT_EQ(avg.Get(), 3.0);
  sum.Clear();
  avg.Clear();
  EXPECT_EQ(sum.Get(), std::nullopt);
  EXPECT_EQ(avg.Get(), std::nullopt);
  Key(b, "b");
  EXPECT_EQ(sum.Get(), 100);
  EXPECT_EQ(avg.Get(), 100.0);
}

TEST_P(KeyedStateTest, NamespacedStateIsPerWindow) {
  auto* b = Make();
  NamespaceSlot<TimeWindow> ns;
  StateAccess<TimeWindow> per_window(b, &ns, nullptr);
  StateAccess<VoidNamespace> global(b, &kNoNamespace, nullptr);
  ValueState<int64_t> fired = per_window.GetState(ValueStateDescriptor<int64_t>("fired"));
  ValueState<int64_t> total = global.GetState(ValueStateDescriptor<int64_t>("total"));
  TimeWindow w1{0, 10}, w2{10, 20};
  Key(b, "k");
  ns.current = &w1;
  fired.Update(1);
  total.Update(5);
  ns.current = &w2;
  EXPECT_EQ(fired.Value(), std::nullopt);
  fired.Update(7);
  EXPECT_EQ(total.Value(), 5);
  ns.current = &w1;
  EXPECT_EQ(fired.Value(), 1);
  fired.Clear();
  EXPECT_EQ(fired.Value(), std::nullopt);
  ns.current = &w2;
  EXPECT_EQ(fired.Value(), 7);
}

TEST_P(KeyedStateTest, ValueTtlOnCreateAndWrite) {
  auto* b = Make();
  StateAccess<VoidNamespace> access(b, &kNoNamespace, nullptr);
  ValueState<int64_t> v = access.GetState(
      ValueStateDescriptor<int64_t>("v").EnableTimeToLive({.ttl = absl::Milliseconds(100)}));
  Key(b, "k");
  v.Update(1);  // written at 1000, expires at 1100
  clock_.Set(1099);
  EXPECT_EQ(v.Value(), 1);  // a read does not extend it
  clock_.Set(1100);
  EXPECT_EQ(v.Value(), std::nullopt);
  v.Update(2);  // 1100 → 1200
  clock_.Set(1150);
  v.Update(3);  // rewritten: → 1250
  clock_.Set(1249);
  EXPECT_EQ(v.Value(), 3);
  clock_.Set(1250);
  EXPECT_EQ(v.Value(), std::nullopt);
}

TEST_P(KeyedStateTest, ValueTtlOnReadAndWrite) {
  auto* b = Make();
  StateAccess<VoidNamespace> access(b, &kNoNamespace, nullptr);
  ValueState<int64_t> v = access.GetState(ValueStateDescriptor<int64_t>("v").EnableTimeToLive(
      {.ttl = absl::Milliseconds(100),
       .update_type = StateTtlConfig::UpdateType::kOnReadAndWrite}));
  Key(b, "k");
  v.Update(1);  // 1000
  clock_.Set(1090);
  EXPECT_EQ(v.Value(), 1);  // read at 1090: now expires at 1190
  clock_.Set(1180);
  EXPECT_EQ(v.Value(), 1);  // → 1280
  clock_.Set(1280);
  EXPECT_EQ(v.Value(), std::nullopt);
}

TEST_P(KeyedStateTest, ListAndMapTtlPerElement) {
  auto* b = Make();
  StateAccess<VoidNamespace> access(b, &kNoNamespace, nullptr);
  StateTtlConfig ttl{.ttl = absl::Milliseconds(100)};
  ListState<int64_t> list =
      access.GetListState(ListStateDescriptor<int64_t>("l").EnableTimeToLive(ttl));
  MapState<std::string, int64_t> map =
      access.GetMapState(MapStateDescriptor<std::string, int64_t>("m").EnableTimeToLive(ttl));
  Key(b, "k");
  list.Add(1);      // 1000
  map.Put("a", 1);  // 1000
  clock_.Set(1050);
  list.Add(2);      // 1050
  map.Put("b", 2);  // 1050
  clock_.Set(1120);
  EXPECT_THAT(list.Get(), ElementsAre(2));
  EXPECT_EQ(map.Get("a"), std::nullopt);
  EXPECT_THAT(map.Entries(), ElementsAre(Pair("b", 2)));
  clock_.Set(1150);
  EXPECT_THAT(list.Get(), ElementsAre());
  EXPECT_TRUE(map.IsEmpty());
}

TEST_P(KeyedStateTest, ConflictingRegistrationFailsWithTheStateNamed) {
  auto* b = Make();
  StateAccess<VoidNamespace> access(b, &kNoNamespace, nullptr);
  access.GetState(ValueStateDescriptor<int64_t>("x"));
  try {
    access.GetListState(ListStateDescriptor<int64_t>("x"));
    FAIL() << "expected a failure";
  } catch (const JobFailure& f) {
    EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(f.status().message()),
                ::testing::HasSubstr("operator 'op': state 'x' is already registered as a "
                                     "ValueState"));
  }
  try {
    access.GetState(ValueStateDescriptor<std::string>("x"));
    FAIL() << "expected a failure";
  } catch (const JobFailure& f) {
    EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
  }
  try {
    access.GetState(ValueStateDescriptor<int64_t>("y").EnableTimeToLive({}));
    FAIL() << "expected a failure";
  } catch (const JobFailure& f) {
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(f.status().message()), ::testing::HasSubstr("StateTtlConfig.ttl"));
  }
}

TEST(KeyedStateMisuseTest, NoKeyedStateOutsideAKeyedStream) {
  const std::string op = "Map";
  StateAccess<VoidNamespace> access(nullptr, &kNoNamespace, &op);
  try {
    access.GetState(ValueStateDescriptor<int64_t>("count"));
    FAIL() << "expected a failure";
  } catch (const JobFailure& f) {
    EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(f.status().message(),
              "operator 'Map': state 'count': keyed state is only available in functions applied "
              "to a KeyedStream (KeyBy)");
  }
}

TEST(KeyedStateMisuseTest, RocksDbMapStateNeedsCanonicalUserKeys) {
  KeyedStateBackend<std::string> b(StateBackendKind::kRocksDb, "op",
                                   KeyGroupRange::ForSubtask(kMaxParallelism, 1, 0),
                                   kMaxParallelism, nullptr);
  StateAccess<VoidNamespace> access(&b, &kNoNamespace, nullptr);
  try {
    access.GetMapState(MapStateDescriptor<double, int64_t>("m"));
    FAIL() << "expected a failure";
  } catch (const JobFailure& f) {
    EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(f.status().message()), ::testing::HasSubstr("canonical"));
  }
}

TEST(KeyedStateHashMapTest, KeysWithoutStateCostNothing) {
  ManualClock clock(0);
  KeyedStateBackend<std::string> b(StateBackendKind::kHashMap, "op",
                                   KeyGroupRange::ForSubtask(kMaxParallelism, 1, 0),
                                   kMaxParallelism, &clock);
  StateAccess<VoidNamespace> access(&b, &kNoNamespace, nullptr);
  ValueState<int64_t> v = access.GetState(ValueStateDescriptor<int64_t>("v"));
  ListState<int64_t> l = access.GetListState(ListStateDescriptor<int64_t>("l"));
  std::vector<std::string> keys;
  for (int i = 0; i < 100; ++i) keys.push_back("key" + std::to_string(i));
  for (const std::string& k : keys) {
    b.SetCurrentKey(&k);
    EXPECT_EQ(v.Value(), std::nullopt);  // reads allocate nothing
  }
  EXPECT_EQ(b.num_keys(), 0u);
  for (const std::string& k : keys) {
    b.SetCurrentKey(&k);
    v.Update(1);
    l.Add(1);
  }
  EXPECT_EQ(b.num_keys(), 100u);
  for (const std::string& k : keys) {
    b.SetCurrentKey(&k);
    v.Clear();
  }
  EXPECT_EQ(b.num_keys(), 100u);  // the lists remain
  for (const std::string& k : keys) {
    b.SetCurrentKey(&k);
    l.Clear();
  }
  EXPECT_EQ(b.num_keys(), 0u);
  // Ids are reused and state does not leak between keys that reuse them.
  b.SetCurrentKey(&keys[5]);
  EXPECT_EQ(v.Value(), std::nullopt);
  EXPECT_THAT(l.Get(), ElementsAre());
}

// --- Snapshots ---------------------------------------------------------------------------------------

struct Contents {
  std::map<std::string, int64_t> values;
  std::map<std::string, std::vector<std::string>> lists;
  std::map<std::string, std::map<int32_t, std::string>> maps;
  std::map<std::string, int64_t> sums;
  std::map<std::string, std::vector<int64_t>> per_window;  // key → fired count in w1, w2
  bool operator==(const Contents&) const = default;
};

std::vector<std::string> TestKeys() {
  std::vector<std::string> keys;
  for (int i = 0; i < 40; ++i) keys.push_back("user-" + std::to_string(i));
  return keys;
}

class StateUser {
 public:
  explicit StateUser(KeyedStateStore* store)
      : ns_(), global_(store, &kNoNamespace, nullptr), window_(store, &ns_, nullptr) {
    value_ = global_.GetState(ValueStateDescriptor<int64_t>("value"));
    list_ = global_.GetListState(ListStateDescriptor<std::string>("list"));
    map_ = global_.GetMapState(MapStateDescriptor<int32_t, std::string>("map"));
    sum_ = global_.GetReducingState(
        MakeReducingStateDescriptor<int64_t>("sum", [](int64_t a, int64_t b) { return a + b; }));
    fired_ = window_.GetState(ValueStateDescriptor<int64_t>("fired"));
  }
  void Write(int i) {
    value_.Update(i);
    for (int j = 0; j <= i % 3; ++j) list_.Add("e" + std::to_string(j));
    if (i % 2 == 0) map_.Put(i, "v" + std::to_string(i));
    map_.Put(-1, "all");
    sum_.Add(i);
    sum_.Add(1);
    ns_.current = &w1_;
    fired_.Update(i);
    if (i % 4 == 0) {
      ns_.current = &w2_;
      fired_.Update(100 + i);
    }
  }
  void Read(const std::string& key, Contents* c) {
    if (auto v = value_.Value()) c->values[key] = *v;
    auto l = list_.Get();
    if (!l.empty()) c->lists[key] = l;
    for (auto& [k, v] : map_.Entries()) c->maps[key][k] = v;
    if (auto s = sum_.Get()) c->sums[key] = *s;
    ns_.current = &w1_;
    if (auto f = fired_.Value()) c->per_window[key].push_back(*f);
    ns_.current = &w2_;
    if (auto f = fired_.Value()) c->per_window[key].push_back(*f);
  }

 private:
  NamespaceSlot<TimeWindow> ns_;
  StateAccess<VoidNamespace> global_;
  StateAccess<TimeWindow> window_;
  TimeWindow w1_{0, 10}, w2_{10, 20};
  ValueState<int64_t> value_;
  ListState<std::string> list_;
  MapState<int32_t, std::string> map_;
  ReducingState<int64_t> sum_;
  ValueState<int64_t> fired_;
};

Contents Expected() {
  Contents c;
  auto keys = TestKeys();
  for (int i = 0; i < static_cast<int>(keys.size()); ++i) {
    const std::string& k = keys[static_cast<size_t>(i)];
    c.values[k] = i;
    for (int j = 0; j <= i % 3; ++j) c.lists[k].push_back("e" + std::to_string(j));
    if (i % 2 == 0) c.maps[k][i] = "v" + std::to_string(i);
    c.maps[k][-1] = "all";
    c.sums[k] = i + 1;
    c.per_window[k].push_back(i);
    if (i % 4 == 0) c.per_window[k].push_back(100 + i);
  }
  return c;
}

// Writes the test keys into backends of `parallelism` subtasks (each key to its owner), then
// snapshots them all.
std::vector<KeyedSnapshot> WriteAndSnapshot(
    KeyedStateTest* t, std::function<KeyedStateBackend<std::string>*(int, int)> make,
    int parallelism) {
  std::vector<KeyedStateBackend<std::string>*> backends;
  std::vector<std::unique_ptr<StateUser>> users;
  for (int s = 0; s < parallelism; ++s) {
    backends.push_back(make(s, parallelism));
    users.push_back(std::make_unique<StateUser>(backends.back()));
  }
  auto keys = TestKeys();
  for (int i = 0; i < static_cast<int>(keys.size()); ++i) {
    const std::string& k = keys[static_cast<size_t>(i)];
    int owner =
        OperatorIndexForKeyGroup(KeyGroupFor(k, kMaxParallelism), kMaxParallelism, parallelism);
    backends[static_cast<size_t>(owner)]->SetCurrentKey(&k);
    users[static_cast<size_t>(owner)]->Write(i);
  }
  std::vector<KeyedSnapshot> snaps;
  for (auto* b : backends) {
    absl::StatusOr<KeyedSnapshot> snap = b->Snapshot();
    EXPECT_TRUE(snap.ok()) << snap.status();
    snaps.push_back(std::move(*snap));
  }
  static_cast<void>(t);
  return snaps;
}

// Restores `snaps` into `parallelism` new backends and reads every test key back.
Contents RestoreAndRead(std::function<KeyedStateBackend<std::string>*(int, int)> make,
                        const std::vector<KeyedSnapshot>& snaps, int parallelism,
                        bool register_first) {
  Contents c;
  auto keys = TestKeys();
  std::vector<KeyedStateBackend<std::string>*> backends;
  std::vector<std::unique_ptr<StateUser>> users;
  for (int s = 0; s < parallelism; ++s) {
    auto* b = make(s, parallelism);
    if (register_first) users.push_back(std::make_unique<StateUser>(b));
    for (const KeyedSnapshot& snap : snaps) {
      absl::Status st = b->Restore(snap.bytes, snap.key_groups, snap.key_group_offsets, "snap");
      EXPECT_TRUE(st.ok()) << st;
    }
    if (!register_first) users.push_back(std::make_unique<StateUser>(b));
    backends.push_back(b);
  }
  for (const std::string& k : keys) {
    int owner =
        OperatorIndexForKeyGroup(KeyGroupFor(k, kMaxParallelism), kMaxParallelism, parallelism);
    backends[static_cast<size_t>(owner)]->SetCurrentKey(&k);
    users[static_cast<size_t>(owner)]->Read(k, &c);
  }
  return c;
}

TEST_P(KeyedStateTest, SnapshotRestoresIntoTheSameBackend) {
  auto make = [this](int s, int p) { return Make(s, p); };
  auto snaps = WriteAndSnapshot(this, make, 1);
  EXPECT_EQ(RestoreAndRead(make, snaps, 1, /*register_first=*/false), Expected());
  EXPECT_EQ(RestoreAndRead(make, snaps, 1, /*register_first=*/true), Expected());
}

TEST_P(KeyedStateTest, SnapshotRestoresIntoTheOtherBackend) {
  const StateBackendKind other = GetParam() == StateBackendKind::kHashMap
                                     ? StateBackendKind::kRocksDb
                                     : StateBackendKind::kHashMap;
  auto snaps = WriteAndSnapshot(
      this, [this](int s, int p) { return Make(s, p); }, 2);
  EXPECT_EQ(
      RestoreAndRead([this, other](int s, int p) { return Make(s, p, other); }, snaps, 2, false),
      Expected());
}

TEST_P(KeyedStateTest, RescaleTwoToThreeAndFourToOne) {
  auto make = [this](int s, int p) { return Make(s, p); };
  auto two = WriteAndSnapshot(this, make, 2);
  EXPECT_EQ(RestoreAndRead(make, two, 3, false), Expected());
  auto four = WriteAndSnapshot(this, make, 4);
  EXPECT_EQ(RestoreAndRead(make, four, 1, true), Expected());
}

TEST_P(KeyedStateTest, SnapshotsLeaveExpiredEntriesOut) {
  auto* b = Make();
  StateAccess<VoidNamespace> access(b, &kNoNamespace, nullptr);
  StateTtlConfig ttl{.ttl = absl::Milliseconds(100)};
  ValueState<int64_t> v = access.GetState(ValueStateDescriptor<int64_t>("v").EnableTimeToLive(ttl));
  ListState<int64_t> l =
      access.GetListState(ListStateDescriptor<int64_t>("l").EnableTimeToLive(ttl));
  Key(b, "old");
  v.Update(1);
  l.Add(1);
  clock_.Set(1060);
  Key(b, "new");
  v.Update(2);
  l.Add(2);
  Key(b, "old");
  l.Add(3);          // 1060
  clock_.Set(1120);  // everything written at 1000 has expired
  absl::StatusOr<KeyedSnapshot> snap = b->Snapshot();
  ASSERT_TRUE(snap.ok()) << snap.status();

  auto* r = Make(0, 1, StateBackendKind::kHashMap);
  ASSERT_TRUE(r->Restore(snap->bytes, snap->key_groups, snap->key_group_offsets, "s").ok());
  StateAccess<VoidNamespace> ra(r, &kNoNamespace, nullptr);
  ValueState<int64_t> rv = ra.GetState(ValueStateDescriptor<int64_t>("v").EnableTimeToLive(ttl));
  ListState<int64_t> rl = ra.GetListState(ListStateDescriptor<int64_t>("l").EnableTimeToLive(ttl));
  EXPECT_EQ(r->num_keys(), 2u);  // "old" keeps its 1060 list element only
  Key(r, "old");
  EXPECT_EQ(rv.Value(), std::nullopt);
  EXPECT_THAT(rl.Get(), ElementsAre(3));
  Key(r, "new");
  EXPECT_EQ(rv.Value(), 2);
  EXPECT_THAT(rl.Get(), ElementsAre(2));
}

TEST_P(KeyedStateTest, CorruptOrMismatchedSnapshotsAreRejected) {
  auto snaps = WriteAndSnapshot(
      this, [this](int s, int p) { return Make(s, p); }, 1);
  const KeyedSnapshot& snap = snaps[0];
  {
    auto* b = Make();
    std::string bad = snap.bytes;
    bad[0] = 'X';
    absl::Status st = b->Restore(bad, snap.key_groups, snap.key_group_offsets, "chk-3/op-0");
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("chk-3/op-0"));
  }
  {
    auto* b = Make();
    std::string bad = snap.bytes;
    bad[4] = 9;  // format version 9
    absl::Status st = b->Restore(bad, snap.key_groups, snap.key_group_offsets, "s");
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("format version 9"));
  }
  {
    auto* b = Make();
    std::string truncated = snap.bytes.substr(0, snap.bytes.size() - 5);
    absl::Status st = b->Restore(truncated, snap.key_groups, snap.key_group_offsets, "s");
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  }
  {
    // Registered as another kind than what was restored.
    auto* b = Make();
    ASSERT_TRUE(b->Restore(snap.bytes, snap.key_groups, snap.key_group_offsets, "s").ok());
    StateAccess<VoidNamespace> access(b, &kNoNamespace, nullptr);
    try {
      access.GetListState(ListStateDescriptor<int64_t>("value"));
      FAIL() << "expected a failure";
    } catch (const JobFailure& f) {
      EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
      EXPECT_THAT(std::string(f.status().message()),
                  ::testing::HasSubstr("state 'value' was restored as a ValueState"));
    }
  }
}

// What a model of the state holds: value, list, map and per-namespace value per key.
struct Model {
  std::map<std::string, int64_t> values;
  std::map<std::string, std::vector<int64_t>> lists;
  std::map<std::string, std::map<int64_t, int64_t>> maps;
  std::map<std::string, std::map<int64_t, int64_t>> per_ns;  // namespace -> value
  bool operator==(const Model&) const = default;
};

struct ModelStates {
  explicit ModelStates(KeyedStateStore* b)
      : access(b, &kNoNamespace, nullptr), ns_access(b, &ns, nullptr) {
    value = access.GetState(ValueStateDescriptor<int64_t>("v"));
    list = access.GetListState(ListStateDescriptor<int64_t>("l"));
    map = access.GetMapState(MapStateDescriptor<int64_t, int64_t>("m"));
    per_ns = ns_access.GetState(ValueStateDescriptor<int64_t>("n"));
  }
  NamespaceSlot<int64_t> ns;
  StateAccess<VoidNamespace> access;
  StateAccess<int64_t> ns_access;
  ValueState<int64_t> value;
  ListState<int64_t> list;
  MapState<int64_t, int64_t> map;
  ValueState<int64_t> per_ns;
  int64_t namespaces[3] = {10, 20, 30};
};

// `ops` random operations (updates, clears, adds, removals, reads) on `st`, the states of `b`, at
// random keys of `keys` (`key_ptr(i)`: a stable pointer to keys[i]), mirrored in `model`.
template <typename KeyPtr>
void MutateModel(KeyedStateBackend<std::string>& b, ModelStates& st, Model& model,
                 std::mt19937& rng, const std::vector<std::string>& keys, const KeyPtr& key_ptr,
                 int ops) {
  for (int op = 0; op < ops; ++op) {
    const size_t i = rng() % keys.size();
    const std::string& k = keys[i];
    b.SetCurrentKey(key_ptr(i));
    const int64_t x = static_cast<int64_t>(rng() % 1000);
    switch (rng() % 9) {
      case 0:
        st.value.Update(x);
        model.values[k] = x;
        break;
      case 1:
        st.value.Clear();
        model.values.erase(k);
        break;
      case 2:
        st.list.Add(x);
        model.lists[k].push_back(x);
        break;
      case 3:
        st.list.Clear();
        model.lists.erase(k);
        break;
      case 4:
        st.map.Put(x % 5, x);
        model.maps[k][x % 5] = x;
        break;
      case 5:
        st.map.Remove(x % 5);
        if (auto it = model.maps.find(k); it != model.maps.end()) {
          it->second.erase(x % 5);
          if (it->second.empty()) model.maps.erase(it);
        }
        break;
      case 6: {
        const int64_t n = st.namespaces[x % 3];
        st.ns.current = &n;
        st.per_ns.Update(x);
        model.per_ns[k][n] = x;
        break;
      }
      case 7: {
        const int64_t n = st.namespaces[x % 3];
        st.ns.current = &n;
        st.per_ns.Clear();
        if (auto it = model.per_ns.find(k); it != model.per_ns.end()) {
          it->second.erase(n);
          if (it->second.empty()) model.per_ns.erase(it);
        }
        break;
      }
      default:
        static_cast<void>(st.value.Value());
        break;  // a read only
    }
  }
}

// What backend `r` holds for `keys`, as a Model.
template <typename KeyPtr>
Model ReadModel(KeyedStateBackend<std::string>& r, const std::vector<std::string>& keys,
                const KeyPtr& key_ptr) {
  ModelStates rs(&r);
  Model got;
  for (size_t i = 0; i < keys.size(); ++i) {
    r.SetCurrentKey(key_ptr(i));
    const std::string& k = keys[i];
    if (auto v = rs.value.Value()) got.values[k] = *v;
    if (auto l = rs.list.Get(); !l.empty()) got.lists[k] = l;
    for (const auto& [mk, mv] : rs.map.Entries()) got.maps[k][mk] = mv;
    for (const int64_t& n : rs.namespaces) {
      rs.ns.current = &n;
      if (auto v = rs.per_ns.Value()) got.per_ns[k][n] = *v;
    }
  }
  return got;
}

// Checkpoints of the HashMap backend copy only the keys accessed since the previous one and
// merge them into the state kept from earlier snapshots, off the task thread; snapshots that are
// never written (an aborted checkpoint) still count. Every materialized snapshot must restore to
// exactly the state at its moment, on both backends.
TEST_P(KeyedStateTest, DeferredSnapshotsAreExactAcrossManyCheckpoints) {
  auto* b = Make();
  ModelStates st(b);
  Model model;
  std::mt19937 rng(7);
  std::vector<std::string> keys;
  for (int i = 0; i < 300; ++i) keys.push_back("key" + std::to_string(i));
  for (const std::string& k : keys) keys_.push_back(std::make_unique<std::string>(k));
  auto key_ptr = [&](size_t i) { return keys_[keys_.size() - keys.size() + i].get(); };

  auto mutate = [&](int ops) { MutateModel(*b, st, model, rng, keys, key_ptr, ops); };
  auto read_back = [&](const KeyedSnapshot& snap, StateBackendKind kind) {
    auto* r = Make(0, 1, kind);
    EXPECT_TRUE(r->Restore(snap.bytes, snap.key_groups, snap.key_group_offsets, "snap").ok());
    return ReadModel(*r, keys, key_ptr);
  };

  for (int round = 0; round < 12; ++round) {
    mutate(round == 0 ? 2000 : 150);
    absl::StatusOr<KeyedSnapshot> snap = b->Snapshot(/*deferred=*/true);
    ASSERT_TRUE(snap.ok()) << snap.status();
    if (round % 4 == 2) continue;  // aborted: never materialized
    const Model at_snapshot = model;
    mutate(100);  // processing goes on before the writer materializes the snapshot
    ASSERT_TRUE(MaterializeKeyedSnapshot(*snap).ok());
    EXPECT_EQ(read_back(*snap, GetParam()), at_snapshot) << "round " << round;
    EXPECT_EQ(
        read_back(*snap, GetParam() == StateBackendKind::kHashMap ? StateBackendKind::kRocksDb
                                                                  : StateBackendKind::kHashMap),
        at_snapshot)
        << "round " << round << " into the other backend";
  }
}

// Incremental checkpoints (HashMap): the same random mutations, every snapshot written in the
// change-log format — the changes since the previous written one, a full file when the position
// given is not the backend's (a written snapshot whose checkpoint did not complete) — and the
// chain since the last full file, resolved, restores exactly the state at the snapshot.
TEST(KeyedStateHashMapTest, ChangeLogChainsAreExactAcrossManyCheckpoints) {
  ManualClock clock(0);
  KeyedStateBackend<std::string> b(StateBackendKind::kHashMap, "op", KeyGroupRange{0, 7}, 8,
                                   &clock);
  ModelStates st(&b);
  Model model;
  std::mt19937 rng(11);
  std::vector<std::string> keys;
  for (int i = 0; i < 300; ++i) keys.push_back("key" + std::to_string(i));
  const auto key_ptr = [&](size_t i) { return &keys[i]; };
  auto mutate = [&](int ops) { MutateModel(b, st, model, rng, keys, key_ptr, ops); };
  auto read_back = [&](const CanonicalKeyedState& canonical) {
    KeyedStateBackend<std::string> r(StateBackendKind::kHashMap, "op", KeyGroupRange{0, 7}, 8,
                                     &clock);
    EXPECT_TRUE(r.Restore(canonical.bytes, KeyGroupRange{0, 7}, canonical.offsets, "chain").ok());
    return ReadModel(r, keys, key_ptr);
  };

  std::vector<KeyedSnapshot> chain;  // since the last full file
  KeyedChangeLogPosition written;    // the position after the last file of `chain`
  int fulls = 0;
  for (int round = 0; round < 14; ++round) {
    mutate(round == 0 ? 3000 : 60);
    absl::StatusOr<KeyedSnapshot> snap = b.Snapshot(/*deferred=*/true);
    ASSERT_TRUE(snap.ok()) << snap.status();
    if (round % 5 == 3) continue;  // aborted before it was written
    const Model at_snapshot = model;
    mutate(40);  // processing goes on before the writer materializes the snapshot
    snap->change_log = true;
    snap->changes_since = written;
    ASSERT_TRUE(MaterializeKeyedSnapshot(*snap).ok());
    const KeyedChangeLogPosition position = snap->position;
    if (round % 5 == 4) continue;                    // written, but its checkpoint did not complete
    const bool full = round == 0 || round % 5 == 0;  // after one that did not complete
    ASSERT_EQ(snap->format, full ? KeyedSnapshot::Format::kChangeLogFull
                                 : KeyedSnapshot::Format::kChangeLogChanges)
        << "round " << round;
    if (full) {
      chain.clear();
      ++fulls;
    } else {
      // 60 mutations of 300 keys: a file of changes holds a fraction of the state.
      EXPECT_LT(snap->bytes.size() * 2, chain.front().bytes.size()) << "round " << round;
    }
    chain.push_back(std::move(*snap));
    written = position;
    std::vector<KeyedChangeLogFile> files;
    for (size_t i = 0; i < chain.size(); ++i) {
      files.push_back({chain[i].bytes, chain[i].key_group_offsets, absl::StrCat("file ", i)});
    }
    absl::StatusOr<CanonicalKeyedState> canonical =
        ResolveKeyedChangeLog(KeyGroupRange{0, 7}, files);
    ASSERT_TRUE(canonical.ok()) << canonical.status();
    EXPECT_EQ(read_back(*canonical), at_snapshot) << "round " << round;
  }
  EXPECT_EQ(fulls, 3);
}

// A HashMap backend whose ValueState "v" holds i for each key i in [0, 10000).
struct TenThousandValues {
  TenThousandValues() {
    for (int64_t i = 0; i < 10000; ++i) {
      keys[static_cast<size_t>(i)] = i;
      b.SetCurrentKey(&keys[static_cast<size_t>(i)]);
      v.Update(i);
    }
  }
  ManualClock clock{0};
  KeyedStateBackend<int64_t> b{StateBackendKind::kHashMap, "op", KeyGroupRange{0, 15}, 16, &clock};
  StateAccess<VoidNamespace> access{&b, &kNoNamespace, nullptr};
  ValueState<int64_t> v = access.GetState(ValueStateDescriptor<int64_t>("v"));
  std::vector<int64_t> keys = std::vector<int64_t>(10000);
};

// A change-log file of one changed and one removed key among 10000 holds those two only, and a
// corrupt or misordered chain is refused naming the file.
TEST(KeyedStateHashMapTest, ChangeLogFilesHoldOnlyWhatChanged) {
  TenThousandValues t;
  ManualClock& clock = t.clock;
  KeyedStateBackend<int64_t>& b = t.b;
  ValueState<int64_t>& v = t.v;
  std::vector<int64_t>& keys = t.keys;
  absl::StatusOr<KeyedSnapshot> full = b.Snapshot(/*deferred=*/true);
  ASSERT_TRUE(full.ok());
  full->change_log = true;
  ASSERT_TRUE(MaterializeKeyedSnapshot(*full).ok());
  ASSERT_EQ(full->format, KeyedSnapshot::Format::kChangeLogFull);
  b.SetCurrentKey(&keys[3]);
  v.Update(-3);
  b.SetCurrentKey(&keys[9]);
  v.Clear();
  absl::StatusOr<KeyedSnapshot> changes = b.Snapshot(/*deferred=*/true);
  ASSERT_TRUE(changes.ok());
  changes->change_log = true;
  changes->changes_since = full->position;
  ASSERT_TRUE(MaterializeKeyedSnapshot(*changes).ok());
  ASSERT_EQ(changes->format, KeyedSnapshot::Format::kChangeLogChanges);
  // Header and 16 empty key groups (2 zero bytes each), then key 3 (tag, key, records: table
  // index, empty suffix, value) and key 9 (tag, key).
  // (magic, version, file kind, key format "int64", one state: name "v", kind, TTL, format
  // "int64", mode)
  const size_t header = 4 + 4 + 1 + 6 + 1 + 2 + 1 + 1 + 6 + 1;
  EXPECT_EQ(changes->bytes.size(), header + 16 * 2 + (1 + 9 + 1 + 1 + 1 + 9) + (1 + 9));

  std::vector<KeyedChangeLogFile> files = {{full->bytes, full->key_group_offsets, "file A"},
                                           {changes->bytes, changes->key_group_offsets, "file B"}};
  absl::StatusOr<CanonicalKeyedState> canonical = ResolveKeyedChangeLog({0, 15}, files);
  ASSERT_TRUE(canonical.ok()) << canonical.status();
  KeyedStateBackend<int64_t> r(StateBackendKind::kHashMap, "op", KeyGroupRange{0, 15}, 16, &clock);
  ASSERT_TRUE(r.Restore(canonical->bytes, {0, 15}, canonical->offsets, "chain").ok());
  StateAccess<VoidNamespace> raccess(&r, &kNoNamespace, nullptr);
  ValueState<int64_t> rv = raccess.GetState(ValueStateDescriptor<int64_t>("v"));
  for (int64_t i = 0; i < 10000; ++i) {
    r.SetCurrentKey(&keys[static_cast<size_t>(i)]);
    std::optional<int64_t> want = i == 9   ? std::nullopt
                                  : i == 3 ? std::optional<int64_t>(-3)
                                           : std::optional<int64_t>(i);
    ASSERT_EQ(rv.Value(), want) << i;
  }

  auto refused = [&](std::vector<KeyedChangeLogFile> chain) {
    absl::StatusOr<CanonicalKeyedState> got = ResolveKeyedChangeLog({0, 15}, chain);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
    return std::string(got.status().message());
  };
  EXPECT_EQ(refused({files[1]}),
            "file B: keyed state change log starts with a file of changes, not a full file");
  EXPECT_EQ(refused({files[0], files[0]}),
            "file A: keyed state change log has a full file after "
            "file A");
  std::string truncated = changes->bytes.substr(0, changes->bytes.size() - 1);
  EXPECT_EQ(refused({files[0], {truncated, changes->key_group_offsets, "file C"}}),
            "file C: keyed state change log is corrupt (truncated keys in key group 15)");
  std::string bad_magic = full->bytes;
  bad_magic[0] = 'X';
  EXPECT_EQ(refused({{bad_magic, full->key_group_offsets, "file D"}}),
            "file D: keyed state change log is corrupt (bad header)");
}

TEST(KeyedStateHashMapTest, ASnapshotCopiesOnlyTheKeysAccessedSinceThePreviousOne) {
  TenThousandValues t;
  ManualClock& clock = t.clock;
  KeyedStateBackend<int64_t>& b = t.b;
  ValueState<int64_t>& v = t.v;
  std::vector<int64_t>& keys = t.keys;
  ASSERT_TRUE(b.Snapshot().ok());
  EXPECT_EQ(b.last_snapshot_changed_keys(), 10000u);  // the first snapshot copies everything
  for (int64_t i : {3, 4, 5}) {
    b.SetCurrentKey(&keys[static_cast<size_t>(i)]);
    v.Update(-i);
  }
  b.SetCurrentKey(&keys[9]);
  v.Clear();  // removed
  absl::StatusOr<KeyedSnapshot> snap = b.Snapshot();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(b.last_snapshot_changed_keys(), 4u);
  // ... and the file still holds every key.
  KeyedStateBackend<int64_t> r(StateBackendKind::kHashMap, "op", KeyGroupRange{0, 15}, 16, &clock);
  ASSERT_TRUE(r.Restore(snap->bytes, snap->key_groups, snap->key_group_offsets, "snap").ok());
  StateAccess<VoidNamespace> raccess(&r, &kNoNamespace, nullptr);
  ValueState<int64_t> rv = raccess.GetState(ValueStateDescriptor<int64_t>("v"));
  for (int64_t i = 0; i < 10000; ++i) {
    r.SetCurrentKey(&keys[static_cast<size_t>(i)]);
    std::optional<int64_t> want = i == 9               ? std::nullopt
                                  : (i >= 3 && i <= 5) ? std::optional<int64_t>(-i)
                                                       : std::optional<int64_t>(i);
    ASSERT_EQ(rv.Value(), want) << i;
  }
  ASSERT_TRUE(b.Snapshot().ok());
  EXPECT_EQ(b.last_snapshot_changed_keys(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, KeyedStateTest,
                         ::testing::Values(StateBackendKind::kHashMap, StateBackendKind::kRocksDb),
                         [](const auto& info) {
                           return std::string(StateBackendName(info.param));
                         });

// The checkpoint writer's copy of a change-tracked internal state (arena-backed records):
// random upserts (shorter, equal and longer values), removals, re-inserts and full snapshots,
// compacting at every chance, give exactly the model's records.
TEST(InternalSnapshotShadowTest, AppliedChangesGiveExactlyTheRecords) {
  const KeyGroupRange range{0, 3};
  InternalSnapshotShadow shadow(range, /*min_compaction=*/0);
  std::vector<std::map<std::string, std::string>> model(4);
  std::mt19937_64 rng(7);
  auto text = [&](size_t n) {
    std::string t(n, ' ');
    for (char& c : t) c = static_cast<char>('a' + rng() % 26);
    return t;
  };
  for (int round = 0; round < 60; ++round) {
    SCOPED_TRACE(round);
    InternalKeyedState::Changes c;
    c.full = round == 0 || round % 17 == 0;
    c.records.assign(4, std::string());
    c.removed.assign(4, std::string());
    if (c.full) {
      for (auto& m : model) m.clear();
    }
    for (int i = 0; i < 200; ++i) {
      const size_t g = rng() % 4;
      const std::string key = absl::StrCat("key-", rng() % 50, "-", text(rng() % 30));
      const std::string short_key = absl::StrCat("k", rng() % 40);
      const std::string& k = rng() % 2 == 0 ? key : short_key;
      if (!c.full && rng() % 4 == 0) {
        PutLengthPrefixed(k, &c.removed[g]);
        model[g].erase(k);
      }
    }
    for (int i = 0; i < 150; ++i) {
      const size_t g = rng() % 4;
      const std::string k = absl::StrCat("k", rng() % 40);
      const std::string v = text(rng() % 24);
      PutVarint(1, &c.records[g]);
      PutLengthPrefixed(k, &c.records[g]);
      PutLengthPrefixed(v, &c.records[g]);
      model[g][k] = v;
    }
    const int64_t seq = shadow.Push(std::move(c));
    std::unique_lock<std::mutex> lock;
    ASSERT_TRUE(shadow.ApplyThrough(seq, &lock).ok());
    size_t bytes = 0;
    for (size_t g = 0; g < 4; ++g) {
      std::map<std::string, std::string> got;
      for (const auto& [k, v] : shadow.records()[g]) got.emplace(k, v);
      EXPECT_EQ(got, model[g]) << "key group " << g;
      for (const auto& [k, v] : model[g]) bytes += k.size() + v.size();
    }
    EXPECT_EQ(shadow.bytes(), bytes);
  }
}

}  // namespace
}  // namespace sluice::internal
