// SessionWindowOperator: event-time session windows with a static gap, the default trigger, no
// evictor and an incremental function (Reduce, Aggregate; optionally followed by a process
// function), on the HashMap backend. The general WindowOperator keeps a merging set per key, an
// entry per (key, window) and two timers per window; a session that grows renames its entry and
// moves its timer on every record. Here each key holds a small vector of its sessions (window,
// partial result, whether its end-of-window firing is pending), and the key has one place in a
// queue of due times, at a lower bound of its earliest due time (a firing or a cleanup): a
// session that grows touches one hash-map slot and pushes nothing; when the queue reaches a bound
// that is stale, the key is queued again at its true due time.
//
// Same results and rules as WindowOperator with EventTimeTrigger (Flink's WindowOperator with
// MergingWindowSet): windows that overlap or touch merge, their partial results merged in window
// order before the new record is added; a session fires when the watermark passes its max
// timestamp; a record late but within the allowed lateness fires its session at once; a session
// is cleaned up at max timestamp + allowed lateness; records whose session is late go to the
// late-data side output (or the dropped counter). Sessions of equal due time fire in the order
// their keys were queued (Flink specifies no order among timers of equal time).
//
// Checkpoints hold the same records as WindowOperator's (contents per (key, window), the merging
// sets, the event-time timers), so either operator restores the other's snapshots (the RocksDB
// backend runs WindowOperator).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"

#include <sluice/internal/window_operator.h>

namespace sluice::internal {

template <typename K, typename In, typename Out, typename KS, typename Assigner, typename Acc,
          typename WinFn>
class SessionWindowOperator final : public UserFunctionOperator<In, Out, WinFn> {
  using Base = UserFunctionOperator<In, Out, WinFn>;
  using W = TimeWindow;
  using State = typename Acc::State;
  using EntryKey = std::pair<K, W>;
  static constexpr Timestamp kNone = kMinWatermark;
  static constexpr bool kCheckpointable = FullySerializable<K> && ContentsCodec<Acc>::kSerializable;

 public:
  SessionWindowOperator(const OperatorSetup& setup, KS ks, Assigner assigner, Acc acc, WinFn fn,
                        WindowSettings<In> settings)
      : Base(setup, std::move(fn)),
        key_selector_(std::move(ks)),
        gap_(assigner.gap()),
        acc_(std::move(acc)),
        settings_(std::move(settings)),
        window_ctx_(&this->ctx_, &this->side_, setup.clock),
        state_(MakeKeyedStateBackend<K>(setup)) {
    this->ctx_.keyed_state = state_.get();
    window_ctx_.SetState(state_.get(), /*merging=*/true);
    if constexpr (kCheckpointable) {
      const int maxp = this->ctx_.max_parallelism;
      internal_.push_back(RegisterInternalState(
          *state_, kEntries, maxp, [this](InternalStateBuckets& b) { AddEntries(b); },
          ContentsCodec<Acc>::Format()));
      internal_.push_back(RegisterInternalState(
          *state_, kEventTimers, maxp, [this](InternalStateBuckets& b) { AddSessionTimers(b); }));
      // Kept for WindowOperator's layout: the event-time trigger registers no processing timers.
      internal_.push_back(
          RegisterInternalState(*state_, kProcessingTimers, maxp, [](InternalStateBuckets&) {}));
      internal_.push_back(RegisterInternalState(
          *state_, kMergingSets, maxp, [this](InternalStateBuckets& b) { AddMergingSets(b); }));
    }
  }
  KeyedStateBackend<K>& state() { return *state_; }

  void SnapshotState(int64_t, OperatorStateSnapshot& out) override {
    if constexpr (!FullySerializable<K>) {
      ThrowNotCheckpointable(this->name(), "the key type");
    } else if constexpr (!ContentsCodec<Acc>::kSerializable) {
      ThrowNotCheckpointable(this->name(), Acc::kStateRole);
    } else {
      taken_ = Taken{};  // a snapshot that failed midway left none behind
      SnapshotKeyedBackend(*state_, this->name(), out);
    }
  }
  absl::Status RestoreState(const OperatorStateRestore& in) override {
    SLUICE_RETURN_IF_ERROR(RestoreKeyedBackend(*state_, in));
    if constexpr (kCheckpointable) SLUICE_RETURN_IF_ERROR(RestoreSessions());
    return absl::OkStatus();
  }

  void Consume(std::vector<In>& records, std::vector<Timestamp>& timestamps) override {
    GuardUserCode(this->name(), [&] {
      for (size_t i = 0; i < records.size(); ++i) ProcessElement(records[i], timestamps[i]);
    });
    this->FlushOutputs();
  }

  void OnWatermark(Timestamp watermark) override {
    this->watermark_ = watermark;
    GuardUserCode(this->name(), [&] { FireDue(watermark); });
    this->FlushOutputs();
    Base::OnWatermark(watermark);
  }

  // Tests: the sessions held (a key's windows), and the keys that hold some.
  size_t num_sessions() const {
    size_t n = 0;
    for (const auto& [key, ks] : keys_) n += ks.sessions.size();
    return n;
  }
  size_t num_keys() const { return keys_.size(); }

 private:
  struct Session {
    W window;
    std::optional<State> contents;
    // When the window was created or last merged, in the operator's order: the sequence number of
    // its timers in snapshots (the same state gives the same records).
    uint64_t seq = 0;
    bool pending = false;  // the end-of-window firing is due (EventTimeTrigger's timer)
    bool written = false;  // its record is in the previous snapshot (and not removed since)
  };
  struct KeySessions {
    absl::InlinedVector<Session, 1> sessions;  // by start; they never overlap or touch
    Timestamp queued = kNone;                  // the time of the key's live queue entry
    uint64_t queued_seq = 0;
    bool changed = false;  // a session changed since the previous snapshot (ChangedKeys)
  };
  struct Queued {
    Timestamp time;
    uint64_t seq;
    K key;
  };
  struct Later {
    bool operator()(const Queued& a, const Queued& b) const {
      return a.time != b.time ? a.time > b.time : a.seq > b.seq;
    }
  };

  Timestamp CleanupTime(const W& w) const {
    return SaturatingAdd(w.max_timestamp(), settings_.allowed_lateness_ms);
  }
  // When a session next needs the operator: its firing, else its cleanup (kMaxWatermark: never).
  Timestamp DueTime(const Session& s) const {
    return s.pending ? s.window.max_timestamp() : CleanupTime(s.window);
  }
  Timestamp NextDue(const KeySessions& ks) const {
    Timestamp due = kMaxWatermark;
    for (const Session& s : ks.sessions) due = std::min(due, DueTime(s));
    return due;
  }
  // Keeps the key's queue entry at or below its earliest due time.
  void Schedule(const K& key, KeySessions& ks, Timestamp due) {
    if (due == kMaxWatermark || (ks.queued != kNone && ks.queued <= due)) return;
    ks.queued = due;
    ks.queued_seq = seq_;
    queue_.push_back(Queued{due, seq_++, key});
    std::push_heap(queue_.begin(), queue_.end(), Later{});
  }

  // The session's window is gone (merged into another or cleaned up): if the previous snapshot
  // holds its record, the next one removes it (at most once per session and snapshot).
  void Retire(const K& key, Session& s) {
    if (s.written) [[unlikely]] {
      removed_.emplace_back(key, s.window);
      s.written = false;
    }
  }

  void ProcessElement(const In& value, Timestamp timestamp) {
    if (timestamp == kNoTimestamp) [[unlikely]] {
      throw std::invalid_argument(kNoTimestampInEventTimeWindow);
    }
    const Timestamp wm = this->watermark_;
    const W window{timestamp, timestamp + gap_};
    key_ = key_selector_(value);
    state_->SetCurrentKey(&*key_);
    auto [it, fresh] = keys_.try_emplace(*key_);
    KeySessions& ks = it->second;
    auto& sessions = ks.sessions;
    // The sessions the window overlaps or touches: a run [first, last] of the ordered sessions
    // (ordered by start and, as they are disjoint, by end). Most records fall in or extend the
    // key's latest session.
    constexpr size_t kNoHit = ~size_t{0};
    size_t first = kNoHit, last = kNoHit;
    for (size_t i = sessions.size(); i-- > 0;) {
      const W& sw = sessions[i].window;
      if (sw.Intersects(window)) {
        if (last == kNoHit) last = i;
        first = i;
      } else if (sw.end < window.start) {
        break;  // this and earlier sessions end before the window
      }
    }
    Session* target;
    if (first == kNoHit) {
      if (CleanupTime(window) <= wm) {  // a late new session: no window takes the record
        if (fresh) keys_.erase(it);
        if (SaturatingAdd(timestamp, settings_.allowed_lateness_ms) <= wm) {
          late_.Add(settings_, this->side_, value, timestamp);
        }
        return;
      }
      auto pos =
          std::lower_bound(sessions.begin(), sessions.end(), window,
                           [](const Session& s, const W& w) { return s.window.start < w.start; });
      target = &*sessions.insert(pos, Session{window, std::nullopt, session_seq_++, false, false});
    } else {
      W cover = window;
      for (size_t i = first; i <= last; ++i) cover = cover.Cover(sessions[i].window);
      if (first == last && cover == sessions[first].window) {
        target = &sessions[first];
      } else {
        // The members' partial results, in window order, into the first one's (what
        // WindowOperator does: merged in window order into the cover's empty contents).
        Session& head = sessions[first];
        Retire(*key_, head);
        for (size_t i = first + 1; i <= last; ++i) {
          Session& m = sessions[i];
          Retire(*key_, m);
          if (m.contents) acc_.Merge(head.contents, *m.contents);
        }
        sessions.erase(sessions.begin() + static_cast<std::ptrdiff_t>(first + 1),
                       sessions.begin() + static_cast<std::ptrdiff_t>(last + 1));
        target = &sessions[first];
        target->window = cover;
        target->seq = session_seq_++;
        target->pending = false;
      }
    }
    changes_.Mark(it->first, ks.changed);
    acc_.Add(target->contents, value, timestamp);
    const W w = target->window;
    if (w.max_timestamp() <= wm) {
      // Late within the allowed lateness: EventTimeTrigger fires on the element.
      Emit(w, target->contents);
    } else {
      target->pending = true;  // EventTimeTrigger's OnElement/OnMerge timer
    }
    Schedule(*key_, ks, DueTime(*target));
  }

  // Fires and cleans up, in time order, the sessions due at or before `watermark`.
  void FireDue(Timestamp watermark) {
    while (!queue_.empty() && queue_.front().time <= watermark) {
      std::pop_heap(queue_.begin(), queue_.end(), Later{});
      Queued q = std::move(queue_.back());
      queue_.pop_back();
      auto it = keys_.find(q.key);
      if (it == keys_.end() || it->second.queued_seq != q.seq) continue;  // stale
      KeySessions& ks = it->second;
      ks.queued = kNone;
      const Timestamp due = NextDue(ks);
      if (due > q.time) {  // a lower bound: the sessions grew since
        Schedule(q.key, ks, due);
        continue;
      }
      key_ = std::move(q.key);
      state_->SetCurrentKey(&*key_);
      // Its timers (a firing) or sessions (a cleanup) change: noted for the next snapshot.
      changes_.Mark(it->first, ks.changed);
      auto& sessions = ks.sessions;
      for (size_t i = 0; i < sessions.size();) {
        Session& s = sessions[i];
        const W w = s.window;
        if (s.pending && w.max_timestamp() == due) {
          s.pending = false;
          if (s.contents) Emit(w, s.contents);
        }
        if (!s.pending && CleanupTime(w) == due) {
          window_ctx_.Set(&w, this->watermark_);
          this->fn_.Clear(*key_, window_ctx_);
          Retire(*key_, s);
          sessions.erase(sessions.begin() + static_cast<std::ptrdiff_t>(i));
          continue;
        }
        ++i;
      }
      if (sessions.empty()) {
        keys_.erase(it);
        changes_.MarkErased(*key_);  // its merging set goes
      } else {
        Schedule(*key_, ks, NextDue(ks));
      }
    }
  }

  void Emit(const W& window, std::optional<State>& contents) {
    this->out_.SetTimestamp(window.max_timestamp());
    window_ctx_.Set(&window, this->watermark_);
    acc_.Fire(*contents, window,
              [&](auto values) { this->fn_.Apply(*key_, window_ctx_, values, this->out_); });
  }

  // --- Checkpoints: WindowOperator's records ------------------------------------------------------

  // What a snapshot writes of the sessions, for its three change-tracked states: taken by the
  // first state the backend fills and dropped by the last (it fills them in registration order:
  // entries, timers, processing timers, merging sets). After the first snapshot: the keys whose
  // sessions changed since the previous one (grown, merged, fired, cleaned up), the keys gone
  // since, and the written sessions gone since. A full snapshot (the first, after tracking
  // stopped, or when more changed than there is) holds every key.
  struct Taken {
    bool ready = false;
    bool tracked = false;  // the records are change-tracked (canonical encodings)
    bool full = true;
    std::vector<const std::pair<const K, KeySessions>*> keys;
    std::vector<K> gone;
    std::shared_ptr<const std::vector<EntryKey>> removed;
  };
  void TakeChanges() {
    taken_ = Taken{};
    taken_.ready = true;
    taken_.tracked = kRocksKeyable<K>;
    auto removed = std::make_shared<std::vector<EntryKey>>(std::move(removed_));
    removed_ = {};
    std::vector<K> marked, erased_keys;
    taken_.full = !(kRocksKeyable<K> &&
                    changes_.TakeNoted(&marked, &erased_keys, keys_.size(), removed->size()));
    auto add_key = [&](std::pair<const K, KeySessions>& kv) {
      kv.second.changed = false;
      for (Session& s : kv.second.sessions) s.written = true;
      taken_.keys.push_back(&kv);
    };
    if (taken_.full) {
      removed->clear();  // a full snapshot replaces everything
      taken_.keys.reserve(keys_.size());
      for (auto& kv : keys_) add_key(kv);
    } else {
      if (marked.size() >= keys_.size() / 8) {
        for (auto& kv : keys_) {
          if (kv.second.changed) add_key(kv);
        }
      } else {
        for (const K& key : marked) {
          auto it = keys_.find(key);
          if (it != keys_.end() && it->second.changed) add_key(*it);
        }
      }
      for (K& key : erased_keys) {
        if (!keys_.contains(key)) taken_.gone.push_back(std::move(key));
      }
    }
    taken_.removed = std::move(removed);
  }
  // Before a state's records: tells its buckets whether they are all of them or the changes.
  void Track(InternalStateBuckets& b) const {
    if (taken_.tracked) b.TrackChanges(/*full=*/taken_.full);
  }

  // An entry: composite [key][window]; value [contents (optional)][u8 mask of trigger slots: 0]
  // [2 x 8 bytes: WindowOperator's registered-timer hints, none]. After the first snapshot only
  // the sessions of the keys changed since the previous one, and the windows gone since named.
  void AddEntries(InternalStateBuckets& b) {
    if (!taken_.ready) TakeChanges();
    Track(b);
    std::vector<std::pair<const K*, const Session*>> changed;
    for (const auto* kv : taken_.keys) {
      for (const Session& s : kv->second.sessions) changed.emplace_back(&kv->first, &s);
    }
    if constexpr (std::is_trivially_copyable_v<K> && FlatCopy<State>::kFlat) {
      auto copy = std::make_shared<EntriesCopy>();
      copy->entries.reserve(changed.size());
      copy->contents.ReserveFor(
          changed, [](const auto& x) -> const auto& { return x.second->contents; });
      for (const auto& [key, s] : changed) {
        copy->entries.emplace_back(*key, s->window);
        copy->contents.Add(s->contents);
      }
      b.Defer([copy, removed = taken_.removed](InternalStateBuckets& out) {
        std::string composite, value;
        std::optional<State> scratch;
        for (const EntryKey& ek : *removed) RemoveEntry(ek, &composite, out);
        for (size_t i = 0; i < copy->entries.size(); ++i) {
          EncodeEntry(copy->entries[i], copy->contents.Get(static_cast<uint32_t>(i), &scratch),
                      &composite, &value, out);
        }
      });
    } else {
      std::string composite, value;
      for (const EntryKey& ek : *taken_.removed) RemoveEntry(ek, &composite, b);
      for (const auto& [key, s] : changed) {
        EncodeEntry(EntryKey(*key, s->window), s->contents, &composite, &value, b);
      }
    }
  }
  struct EntriesCopy {
    std::vector<EntryKey> entries;
    FlatCopy<State> contents;  // by index of `entries`
  };
  static void EncodeEntry(const EntryKey& ek, const std::optional<State>& contents,
                          std::string* composite, std::string* value, InternalStateBuckets& b) {
    // WindowOperator holds no entry for a window without contents or trigger slots; an
    // incremental function's session always has contents.
    if (!contents) return;
    composite->clear();
    WriteRocksKeyPart(ek.first, composite);
    WriteRocksKeyPart(ek.second, composite);
    value->clear();
    WriteOptionalContents<Acc>(contents, value);
    value->push_back(0);  // no trigger slots
    PutFixed64(kNone, value);
    PutFixed64(kNone, value);
    b.Add(ek.first, *composite, *value);
  }
  static void RemoveEntry(const EntryKey& ek, std::string* composite, InternalStateBuckets& b) {
    composite->clear();
    WriteRocksKeyPart(ek.first, composite);
    WriteRocksKeyPart(ek.second, composite);
    b.Remove(ek.first, *composite);
  }

  // A merging set: composite [key]; value [varint count][the key's windows, in start order]
  // (internal::AddMergingSets): of the changed keys, and the gone keys' named. The last of the
  // snapshot's states: the changes taken for it are dropped.
  void AddMergingSets(InternalStateBuckets& b) {
    if (!taken_.ready) TakeChanges();
    Track(b);
    std::string composite;
    for (const K& key : taken_.gone) {
      composite.clear();
      Serializer<K>::Write(key, &composite);
      b.Remove(key, composite);
    }
    internal::AddMergingSets<K, W>(
        b, taken_.keys, [](const auto&) { return nullptr; },
        [](const KeySessions& ks, std::vector<W>& out) {
          for (const Session& s : ks.sessions) out.push_back(s.window);
        });
    taken_ = Taken{};
  }

  // The timers WindowOperator would hold (the end-of-window timer of a pending session, or of one
  // whose cleanup is its end; the cleanup timer when it differs) of the changed keys' sessions;
  // those of the
  // sessions gone since the previous snapshot named, and a fired session's end-of-window timer
  // when its cleanup comes later.
  void AddSessionTimers(InternalStateBuckets& b) {
    if (!taken_.ready) TakeChanges();
    Track(b);
    struct Op {
      Timestamp time;
      uint64_t seq;  // kRemove: named for removal
      K key;
      W window;
    };
    static constexpr uint64_t kRemove = ~uint64_t{0};
    auto ops = std::make_shared<std::vector<Op>>();
    ops->reserve(taken_.removed->size() * 2 + taken_.keys.size() * 2);
    for (const auto& [key, w] : *taken_.removed) {
      const Timestamp end = w.max_timestamp(), cleanup = CleanupTime(w);
      ops->push_back(Op{end, kRemove, key, w});
      if (cleanup != end && cleanup != kMaxWatermark) ops->push_back(Op{cleanup, kRemove, key, w});
    }
    for (const auto* kv : taken_.keys) {
      for (const Session& s : kv->second.sessions) {
        const Timestamp end = s.window.max_timestamp(), cleanup = CleanupTime(s.window);
        const bool end_timer = s.pending || cleanup == end;
        if (end_timer || !taken_.full) {
          ops->push_back(Op{end, end_timer ? 2 * s.seq : kRemove, kv->first, s.window});
        }
        if (cleanup != end && cleanup != kMaxWatermark) {
          ops->push_back(Op{cleanup, 2 * s.seq + 1, kv->first, s.window});
        }
      }
    }
    auto encode = [ops](InternalStateBuckets& out) {
      std::string composite, value;
      for (const Op& op : *ops) {
        if (op.seq == kRemove) {
          RemoveTimer(op.time, op.key, op.window, &composite, out);
        } else {
          EncodeTimer(op.time, op.seq, op.key, op.window, &composite, &value, out);
        }
      }
    };
    if constexpr (std::is_trivially_copyable_v<K>) {
      b.Defer(std::move(encode));
    } else {
      encode(b);
    }
  }

  // Collects restored timers: a session's end-of-window timer means its firing is pending; the
  // session's sequence number is half its timers' smallest.
  struct RestoredTimers {
    bool pending = false;
    uint64_t seq = ~uint64_t{0};
  };
  struct TimerSink {
    using Key = K;
    using Namespace = W;
    absl::flat_hash_map<EntryKey, RestoredTimers>* timers;
    void Restore(Timestamp time, uint64_t seq, const K& key, const W& window) {
      RestoredTimers& t = (*timers)[EntryKey(key, window)];
      if (time == window.max_timestamp()) t.pending = true;
      t.seq = std::min(t.seq, seq / 2);
    }
  };

  absl::Status RestoreSessions() {
    absl::flat_hash_map<EntryKey, std::optional<State>> contents;
    SLUICE_RETURN_IF_ERROR(RestoreInternal<K>(
        *state_, kEntries, this->ctx_, [&](K& key, ByteReader& rest, ByteReader& value) {
          W window{};
          std::optional<State> c;
          uint8_t mask = 0;
          Timestamp hints[2];
          if (!Serializer<W>::Read(rest, &window) || !rest.empty() ||
              !ReadOptionalContents<Acc>(value, &c) || !value.ReadRaw(&mask, 1)) {
            return false;
          }
          // Trigger slots of another trigger are read and dropped (EventTimeTrigger keeps none).
          for (int i = 0; i < kMaxTriggerStateSlots; ++i) {
            int64_t v;
            if ((mask & (1u << i)) != 0 && !value.ReadRaw(&v, sizeof v)) return false;
          }
          if (!value.ReadRaw(&hints[0], sizeof(Timestamp)) ||
              !value.ReadRaw(&hints[1], sizeof(Timestamp)) || !value.empty()) {
            return false;
          }
          contents.insert_or_assign(EntryKey(std::move(key), window), std::move(c));
          return true;
        }));
    absl::flat_hash_map<EntryKey, RestoredTimers> timers;
    TimerSink sink{&timers};
    SLUICE_RETURN_IF_ERROR(RestoreTimers(*state_, kEventTimers, this->ctx_, sink));
    (void)state_->TakeRestoredInternal(kProcessingTimers);  // none are registered by this trigger
    SLUICE_RETURN_IF_ERROR(RestoreInternal<K>(
        *state_, kMergingSets, this->ctx_, [&](K& key, ByteReader& rest, ByteReader& value) {
          uint64_t n = 0;
          if (!rest.empty() || !value.ReadVarint(&n) || n > value.remaining()) return false;
          KeySessions& ks = keys_[key];
          for (uint64_t i = 0; i < n; ++i) {
            Session s;
            if (!Serializer<W>::Read(value, &s.window)) return false;
            if (auto c = contents.find(EntryKey(key, s.window)); c != contents.end()) {
              s.contents = std::move(c->second);
              contents.erase(c);
            }
            if (auto t = timers.find(EntryKey(key, s.window)); t != timers.end()) {
              s.pending = t->second.pending;
              s.seq = t->second.seq;
              session_seq_ = std::max(session_seq_, s.seq + 1);
            }
            ks.sessions.push_back(std::move(s));
          }
          if (!value.empty()) return false;
          std::sort(ks.sessions.begin(), ks.sessions.end(),
                    [](const Session& a, const Session& b) { return a.window < b.window; });
          return true;
        }));
    if (!contents.empty()) {
      const auto& [ek, c] = *contents.begin();
      return absl::DataLossError(
          absl::StrCat("operator '", this->name(), "': restored internal state '", kEntries,
                       "' holds contents of a window that is not in its key's merging set ('",
                       kMergingSets, "'): ", ek.second.start, "..", ek.second.end));
    }
    // Queued in the order of the restored timers (their sequence numbers), not of the hash map:
    // keys due at the same time fire in the order they did before the snapshot.
    std::vector<std::pair<uint64_t, std::pair<const K, KeySessions>*>> order;
    order.reserve(keys_.size());
    for (auto& kv : keys_) {
      uint64_t first = ~uint64_t{0};
      for (const Session& s : kv.second.sessions) first = std::min(first, s.seq);
      order.emplace_back(first, &kv);
    }
    std::sort(order.begin(), order.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [seq, kv] : order) Schedule(kv->first, kv->second, NextDue(kv->second));
    return absl::OkStatus();
  }

  static constexpr const char* kEntries = "_window_contents";
  static constexpr const char* kEventTimers = "_event_timers";
  static constexpr const char* kProcessingTimers = "_processing_timers";
  static constexpr const char* kMergingSets = "_merging_windows";

  KS key_selector_;
  int64_t gap_;
  Acc acc_;
  WindowSettings<In> settings_;
  WindowContext<W> window_ctx_;
  std::optional<K> key_;  // the key being processed
  std::unique_ptr<KeyedStateBackend<K>> state_;
  absl::flat_hash_map<K, KeySessions> keys_;
  std::vector<Queued> queue_;  // a min-heap by (time, seq) under Later; stale entries skipped
  uint64_t seq_ = 0;
  uint64_t session_seq_ = 0;
  ChangedKeys<K> changes_;         // keys whose sessions changed, for snapshots
  std::vector<EntryKey> removed_;  // written sessions gone since the previous snapshot
  Taken taken_;                    // during a snapshot
  LateRecords<In> late_{this->ctx_};
  std::vector<std::unique_ptr<InternalStateBuckets>> internal_;  // the above in state_'s snapshots
};

// True when SessionWindowOperator can run a window: event-time session windows with a static
// gap, the default trigger, no evictor, an incremental function.
template <typename Assigner, typename Trig, typename Contents>
inline constexpr bool kSessionSpecialisable = false;
template <typename Trig, typename Contents>
requires std::is_same_v<Trig, EventTimeTrigger>
inline constexpr bool
    kSessionSpecialisable<SessionWindows<TimeDomain::kEventTime, std::nullptr_t>, Trig, Contents> =
        !std::is_same_v<Contents, ListContents<typename Contents::Result>>;

}  // namespace sluice::internal
