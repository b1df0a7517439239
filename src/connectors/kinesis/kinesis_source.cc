// KinesisReaderCore: the non-template half of KinesisSource (include/sluice/connectors/kinesis.h).
//
// A reader-owned thread lists the stream's shards every shard_discovery_interval, keeps those of
// its subtask (FNV-1a hash of the shard id modulo the parallelism), and reads each shard whose
// parents are finished with GetShardIterator/GetRecords into a bounded queue of per-shard batches,
// waking the task after each push. Poll() (the task's thread) drains the queue and keeps the
// position of what it handed out: the checkpointed state.
//
// State format (text, one line per shard): "<shard id>\t<position>\n" where <position> is
// "A<seq>" (continue after that sequence number), "F" (finished), "T" (trim horizon),
// "S<unix ms>" (at timestamp: a shard started at LATEST and not read yet resumes at the time its
// reader first saw it, so nothing put while the job was down is lost) or "Q<seq>" (at sequence
// number).
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

#include <sluice/connectors/kinesis.h>
#include <sluice/core/status.h>

#include "connectors/kinesis/kinesis_client.h"

namespace sluice {

absl::Status KinesisSourceOptions::Validate() const {
  SLUICE_RETURN_IF_ERROR(connection.Validate());
  if (stream_name.empty()) {
    return absl::InvalidArgumentError("KinesisSourceOptions.stream_name is required");
  }
  if (records_per_request < 1 || records_per_request > 10000) {
    return absl::InvalidArgumentError(
        absl::StrCat("KinesisSourceOptions.records_per_request must be in [1, 10000], got ",
                     records_per_request));
  }
  if (poll_interval <= absl::ZeroDuration() || shard_discovery_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "KinesisSourceOptions: poll_interval and shard_discovery_interval must be > 0");
  }
  if (queue_capacity == 0) {
    return absl::InvalidArgumentError("KinesisSourceOptions.queue_capacity must be > 0");
  }
  return absl::OkStatus();
}

namespace internal {

// Finished shards per attempt of a job, shared by the readers of one KinesisSource so that a
// child shard waits for parents read by another subtask. The runtime creates the readers of an
// attempt in subtask order, so subtask 0 opens a new attempt and the others join it.
class KinesisSourceShared {
 public:
  int JoinAttempt(int subtask_index) {
    std::lock_guard<std::mutex> lock(mu_);
    if (subtask_index == 0) ++attempt_;
    return attempt_;
  }
  void Finished(int attempt, const std::string& shard) {
    std::lock_guard<std::mutex> lock(mu_);
    finished_[attempt].insert(shard);
  }
  bool IsFinished(int attempt, const std::string& shard) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = finished_.find(attempt);
    return it != finished_.end() && it->second.count(shard) > 0;
  }

 private:
  std::mutex mu_;
  int attempt_ = 0;
  std::map<int, std::set<std::string>> finished_;
};

std::shared_ptr<KinesisSourceShared> MakeKinesisSourceShared() {
  return std::make_shared<KinesisSourceShared>();
}

namespace {

using kinesis_internal::GetRecordsResult;
using kinesis_internal::KinesisClient;
using kinesis_internal::ShardInfo;

uint64_t Fnv1a(absl::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

class ReaderCoreImpl final : public KinesisReaderCore {
 public:
  ReaderCoreImpl(KinesisSourceOptions options, SourceContext ctx,
                 std::unique_ptr<KinesisClient> client, std::shared_ptr<KinesisSourceShared> shared)
      : options_(std::move(options)),
        ctx_(std::move(ctx)),
        client_(std::move(client)),
        shared_(std::move(shared)),
        attempt_(shared_->JoinAttempt(ctx_.subtask_index())) {}

  ~ReaderCoreImpl() override { Close(); }

  absl::StatusOr<PollResult> Poll(std::vector<KinesisShardBatch>& out, int max_records) override {
    out.clear();
    if (!started_) {
      started_ = true;
      thread_ = std::thread([this] { Run(); });
    }
    std::unique_lock<std::mutex> lock(mu_);
    int taken = 0;
    while (!queue_.empty() && taken < std::max(max_records, 1)) {
      KinesisShardBatch& front = queue_.front();
      const size_t room = static_cast<size_t>(std::max(max_records, 1) - taken);
      if (front.records.size() > room) {
        KinesisShardBatch part;
        part.shard_id = front.shard_id;
        part.records.assign(std::make_move_iterator(front.records.begin()),
                            std::make_move_iterator(front.records.begin() + room));
        front.records.erase(front.records.begin(), front.records.begin() + room);
        out.push_back(std::move(part));
      } else {
        out.push_back(std::move(front));
        queue_.pop_front();
      }
      KinesisShardBatch& b = out.back();
      taken += static_cast<int>(b.records.size());
      queued_records_ -= b.records.size();
      if (!b.records.empty()) positions_[b.shard_id] = "A" + b.records.back().sequence_number;
      if (b.finished) {
        positions_[b.shard_id] = "F";
        shared_->Finished(attempt_, b.shard_id);
      }
    }
    const bool more = !queue_.empty();
    const bool done = queue_.empty() && fetch_done_;
    absl::Status error = queue_.empty() ? error_ : absl::OkStatus();
    lock.unlock();
    space_cv_.notify_all();
    if (!error.ok()) return error;
    if (more || (!out.empty() && !done)) return PollResult::More();
    if (done) return out.empty() ? PollResult::End() : PollResult::More();
    // The fetching thread wakes the task when it pushes; the timeout is a safety net only.
    return PollResult::NothingUntil(absl::Seconds(1));
  }

  std::string Snapshot() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::string, std::string> all = start_tokens_;
    for (const auto& [shard, pos] : positions_) all[shard] = pos;
    std::string state;
    for (const auto& [shard, pos] : all) absl::StrAppend(&state, shard, "\t", pos, "\n");
    return state;
  }

  absl::Status Restore(std::string_view state) override {
    std::map<std::string, std::string> positions;
    SLUICE_RETURN_IF_ERROR(Parse(state, positions));
    Apply(positions);
    return absl::OkStatus();
  }

  absl::Status RestoreRescaled(const std::vector<std::string>& states) override {
    const uint64_t parallelism = static_cast<uint64_t>(std::max(ctx_.parallelism(), 1));
    std::map<std::string, std::string> mine;
    for (const std::string& state : states) {
      std::map<std::string, std::string> positions;
      SLUICE_RETURN_IF_ERROR(Parse(state, positions));
      for (auto& [shard, pos] : positions) {
        const bool owned =
            Fnv1a(shard) % parallelism == static_cast<uint64_t>(ctx_.subtask_index());
        if (!owned && pos != "F") continue;
        auto [it, inserted] = mine.emplace(shard, pos);
        // A shard appears once, except as finished in the states that learned it finished.
        if (!inserted && pos == "F") it->second = pos;
      }
    }
    Apply(mine);
    return absl::OkStatus();
  }

  void Close() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    space_cv_.notify_all();
    client_->Cancel();
    if (thread_.joinable()) thread_.join();
  }

 private:
  enum class ShardPhase { kWaiting, kReading, kFinished };
  struct Shard {
    ShardInfo info;
    ShardPhase phase = ShardPhase::kWaiting;
    std::string start;  // position token to start from (see the file comment)
    std::string iterator;
    std::string last_sequence;  // of the last record fetched
    absl::Time next_fetch = absl::InfinitePast();
    bool announced = false;  // a batch of it went to the reader (registering its split)
  };

  // Parses a state of Snapshot(): "<shard>\t<position>" lines.
  absl::Status Parse(std::string_view state_view, std::map<std::string, std::string>& out) const {
    const absl::string_view state(state_view.data(), state_view.size());
    for (absl::string_view line : absl::StrSplit(state, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits('\t', 1));
      if (parts.size() != 2 || parts[0].empty() || parts[1].empty() ||
          absl::string_view("AFTSQ").find(parts[1][0]) == absl::string_view::npos) {
        return absl::DataLossError(absl::StrCat("Kinesis source of stream '", options_.stream_name,
                                                "': unreadable checkpointed position '", line,
                                                "'"));
      }
      out[std::string(parts[0])] = std::string(parts[1]);
    }
    return absl::OkStatus();
  }
  void Apply(const std::map<std::string, std::string>& positions) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [shard, pos] : positions) {
      positions_[shard] = pos;
      if (pos == "F") shared_->Finished(attempt_, shard);
    }
    restored_ = true;
  }

  std::string Context(const std::string& shard) const {
    return absl::StrCat("stream '", options_.stream_name, "' shard '", shard, "'");
  }

  void Fail(absl::Status status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (error_.ok()) error_ = std::move(status);
    }
    ctx_.Wake();
  }

  // The thread: discovery, then round-robin fetching of the readable shards.
  void Run() {
    absl::Time next_discovery = absl::InfinitePast();
    bool first_listing = true;
    bool confirmed_end = false;
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) return;
      }
      // A shard read to SHARD_END has children by now: list them before anything else (and
      // before deciding that every shard is finished).
      if (absl::Now() >= next_discovery || rediscover_) {
        rediscover_ = false;
        absl::Status s = Discover(first_listing);
        if (!s.ok()) {
          if (!client_->cancelled()) Fail(std::move(s));
          return;
        }
        first_listing = false;
        next_discovery = absl::Now() + options_.shard_discovery_interval;
      }
      UpdateReadable();
      if (!AllFinished()) confirmed_end = false;
      if (options_.is_end_of_stream && AllFinished()) {
        // List once more first: a shard of this reader may have appeared since.
        if (!confirmed_end) {
          confirmed_end = true;
          rediscover_ = true;
          continue;
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          fetch_done_ = true;
        }
        ctx_.Wake();
        return;
      }
      bool fetched = false;
      for (auto& [id, shard] : shards_) {
        if (shard.phase != ShardPhase::kReading || shard.next_fetch > absl::Now()) continue;
        if (!WaitForSpace()) return;
        absl::Status s = Fetch(shard);
        if (!s.ok()) {
          if (!client_->cancelled()) Fail(std::move(s));
          return;
        }
        fetched = true;
      }
      if (fetched) continue;
      // Nothing due: sleep until the next fetch, the next discovery, or a parent check.
      absl::Time wake = next_discovery;
      bool waiting = false;
      for (const auto& [id, shard] : shards_) {
        if (shard.phase == ShardPhase::kReading) wake = std::min(wake, shard.next_fetch);
        if (shard.phase == ShardPhase::kWaiting) waiting = true;
      }
      if (waiting) wake = std::min(wake, absl::Now() + options_.poll_interval);
      const absl::Duration d = std::max(wake - absl::Now(), absl::Milliseconds(1));
      if (!client_->SleepFor(d)) return;
    }
  }

  // Every shard of the stream is finished: this reader's by this reader, the others by theirs
  // (a reader without shards now may get children of other readers' shards later).
  bool AllFinished() const {
    for (const auto& [id, shard] : shards_) {
      if (shard.phase != ShardPhase::kFinished) return false;
    }
    for (const std::string& id : listed_) {
      if (shards_.count(id) == 0 && !shared_->IsFinished(attempt_, id)) return false;
    }
    return true;
  }

  bool WaitForSpace() {
    std::unique_lock<std::mutex> lock(mu_);
    space_cv_.wait(lock, [&] { return stop_ || queued_records_ < options_.queue_capacity; });
    return !stop_;
  }

  absl::Status Discover(bool first_listing) {
    SLUICE_ASSIGN_OR_RETURN(std::vector<ShardInfo> listed,
                            client_->ListShards(options_.stream_name));
    listed_.clear();
    for (const ShardInfo& info : listed) listed_.insert(info.shard_id);
    const uint64_t parallelism = static_cast<uint64_t>(std::max(ctx_.parallelism(), 1));
    for (const ShardInfo& info : listed) {
      if (Fnv1a(info.shard_id) % parallelism != static_cast<uint64_t>(ctx_.subtask_index())) {
        continue;
      }
      auto it = shards_.find(info.shard_id);
      if (it != shards_.end()) {
        it->second.info = info;  // e.g. closed since the previous listing
        continue;
      }
      Shard shard;
      shard.info = info;
      std::string restored_position;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto p = positions_.find(info.shard_id);
        if (p != positions_.end()) restored_position = p->second;
      }
      if (!restored_position.empty()) {
        shard.start = restored_position;
      } else if (restored_ || !first_listing) {
        shard.start = "T";  // a shard created since: from its first record
      } else {
        switch (options_.initial_position) {
          case KinesisStartingPosition::kTrimHorizon:
            shard.start = "T";
            break;
          case KinesisStartingPosition::kLatest:
            shard.start = absl::StrCat("S", absl::ToUnixMillis(absl::Now()));
            shard.iterator.clear();
            latest_.insert(info.shard_id);
            break;
          case KinesisStartingPosition::kAtTimestamp:
            shard.start = absl::StrCat("S", absl::ToUnixMillis(options_.start_timestamp));
            break;
          case KinesisStartingPosition::kAtSequenceNumber: {
            auto s = options_.start_sequence_numbers.find(info.shard_id);
            shard.start = s == options_.start_sequence_numbers.end() ? "T" : "Q" + s->second;
            break;
          }
        }
      }
      if (shard.start == "F") shard.phase = ShardPhase::kFinished;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (shard.start != "F") start_tokens_[info.shard_id] = shard.start;
      }
      shards_.emplace(info.shard_id, std::move(shard));
    }
    return absl::OkStatus();
  }

  bool ParentDone(const std::string& parent) {
    if (parent.empty() || listed_.count(parent) == 0) return true;  // none, or expired
    auto it = shards_.find(parent);
    if (it != shards_.end()) return it->second.phase == ShardPhase::kFinished;
    return shared_->IsFinished(attempt_, parent);  // read by another subtask
  }

  void UpdateReadable() {
    for (auto& [id, shard] : shards_) {
      if (shard.phase != ShardPhase::kWaiting) continue;
      if (ParentDone(shard.info.parent_shard_id) &&
          ParentDone(shard.info.adjacent_parent_shard_id)) {
        shard.phase = ShardPhase::kReading;
      }
    }
  }

  absl::Status NewIterator(Shard& shard) {
    const std::string& stream = options_.stream_name;
    const std::string& id = shard.info.shard_id;
    absl::StatusOr<std::string> it;
    if (!shard.last_sequence.empty()) {
      it = client_->GetShardIterator(stream, id, "AFTER_SEQUENCE_NUMBER", shard.last_sequence);
    } else if (latest_.count(id) > 0) {
      it = client_->GetShardIterator(stream, id, "LATEST");
      latest_.erase(id);
    } else if (shard.start[0] == 'A') {
      it = client_->GetShardIterator(stream, id, "AFTER_SEQUENCE_NUMBER", shard.start.substr(1));
    } else if (shard.start[0] == 'Q') {
      it = client_->GetShardIterator(stream, id, "AT_SEQUENCE_NUMBER", shard.start.substr(1));
    } else if (shard.start[0] == 'S') {
      int64_t ms = 0;
      if (!absl::SimpleAtoi(shard.start.substr(1), &ms)) {
        return absl::DataLossError(
            absl::StrCat("Kinesis source: bad position for ", Context(id), ": ", shard.start));
      }
      it = client_->GetShardIterator(stream, id, "AT_TIMESTAMP", "", absl::FromUnixMillis(ms));
    } else {
      it = client_->GetShardIterator(stream, id, "TRIM_HORIZON");
    }
    if (!it.ok()) return it.status();
    shard.iterator = std::move(*it);
    return absl::OkStatus();
  }

  absl::Status Fetch(Shard& shard) {
    if (shard.iterator.empty()) SLUICE_RETURN_IF_ERROR(NewIterator(shard));
    absl::StatusOr<GetRecordsResult> result = client_->GetRecords(
        options_.stream_name, shard.info.shard_id, shard.iterator, options_.records_per_request);
    if (!result.ok() && absl::IsFailedPrecondition(result.status())) {
      // ExpiredIteratorException (an iterator lives 5 minutes): get a fresh one and go on.
      SLUICE_RETURN_IF_ERROR(NewIterator(shard));
      result = client_->GetRecords(options_.stream_name, shard.info.shard_id, shard.iterator,
                                   options_.records_per_request);
    }
    if (!result.ok()) return result.status();
    KinesisShardBatch batch;
    batch.shard_id = shard.info.shard_id;
    const size_t fetched = result->records.size();
    for (KinesisRawRecord& r : result->records) {
      if (options_.is_end_of_stream && options_.is_end_of_stream(std::string_view(r.data))) {
        batch.finished = true;
        break;
      }
      batch.records.push_back(std::move(r));
    }
    if (!batch.records.empty()) shard.last_sequence = batch.records.back().sequence_number;
    shard.iterator = result->next_iterator;
    if (shard.iterator.empty()) {  // SHARD_END
      batch.finished = true;
      rediscover_ = true;
    }
    if (batch.finished) shard.phase = ShardPhase::kFinished;
    shard.next_fetch = fetched >= static_cast<size_t>(options_.records_per_request)
                           ? absl::InfinitePast()
                           : absl::Now() + options_.poll_interval;
    // The first fetch of a shard is handed on even when empty: it registers the shard's split, so
    // an empty shard holds the watermark back (until it has records or goes idle), as in Flink.
    if (batch.records.empty() && !batch.finished && shard.announced) return absl::OkStatus();
    shard.announced = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queued_records_ += batch.records.size();
      queue_.push_back(std::move(batch));
    }
    ctx_.Wake();
    return absl::OkStatus();
  }

  const KinesisSourceOptions options_;
  const SourceContext ctx_;
  std::unique_ptr<KinesisClient> client_;
  std::shared_ptr<KinesisSourceShared> shared_;
  const int attempt_;
  bool started_ = false;
  std::thread thread_;

  // Fetching thread only.
  std::map<std::string, Shard> shards_;
  std::set<std::string> listed_;
  std::set<std::string> latest_;  // shards to open at LATEST (first iterator only)
  bool rediscover_ = false;       // a shard reached SHARD_END since the last listing

  std::mutex mu_;
  std::condition_variable space_cv_;
  std::deque<KinesisShardBatch> queue_;              // guarded by mu_
  size_t queued_records_ = 0;                        // guarded by mu_
  std::map<std::string, std::string> positions_;     // handed out (or restored); guarded by mu_
  std::map<std::string, std::string> start_tokens_;  // assigned shards' starts; guarded by mu_
  absl::Status error_;                               // guarded by mu_
  bool fetch_done_ = false;                          // guarded by mu_
  bool stop_ = false;                                // guarded by mu_
  bool restored_ = false;                            // set before the thread starts
};

}  // namespace

absl::StatusOr<std::unique_ptr<KinesisReaderCore>> KinesisReaderCore::Create(
    const KinesisSourceOptions& options, const SourceContext& ctx,
    std::shared_ptr<KinesisSourceShared> shared) {
  SLUICE_RETURN_IF_ERROR(options.Validate());
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<KinesisClient> client,
                          KinesisClient::Create(options.connection));
  if (shared == nullptr) shared = MakeKinesisSourceShared();
  return std::unique_ptr<KinesisReaderCore>(
      new ReaderCoreImpl(options, ctx, std::move(client), std::move(shared)));
}

}  // namespace internal
}  // namespace sluice
