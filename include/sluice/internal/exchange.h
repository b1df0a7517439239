// Exchange writers: the typed end of an edge between two tasks. They pick a channel per record
// (inline, no virtual call per record) and ship full batches. Internal.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <sluice/core/key.h>
#include <sluice/core/status.h>
#include <sluice/internal/batch.h>
#include <sluice/internal/graph.h>
#include <sluice/internal/job_failure.h>

namespace sluice::internal {

template <typename T, typename Selector>
class ExchangeWriter final : public ExchangeWriterBase, public BatchConsumer<T> {
 public:
  ExchangeWriter(const WriterSetup& setup, Selector selector)
      : channels_(setup.channels),
        batch_size_(static_cast<size_t>(setup.batch_size)),
        selector_(std::move(selector)),
        consumer_name_(setup.consumer_name) {
    SLUICE_CHECK(!channels_.empty());
    buffers_.resize(channels_.size());
    fill_.assign(channels_.size(), 0);
    for (size_t c = 0; c < buffers_.size(); ++c) buffers_[c] = NewBatch(c);
  }

  BatchConsumerBase* consumer() override { return this; }

  void Consume(std::vector<T>& records, std::vector<Timestamp>& timestamps) override {
    const size_t n = channels_.size();
    const size_t count = records.size();
    if constexpr (Selector::kBroadcast) {
      for (size_t c = 0; c + 1 < n; ++c) {
        for (size_t i = 0; i < count; ++i) Append(c, T(records[i]), timestamps[i]);
      }
      for (size_t i = 0; i < count; ++i) Append(n - 1, std::move(records[i]), timestamps[i]);
    } else {
      if (n == 1) {
        // One channel: a batch at least half full goes on as it is (the vectors are swapped, so
        // the caller keeps reserved, empty ones), smaller ones are gathered.
        Batch<T>& b = *buffers_[0];
        if (Buffered(0) == 0 && 2 * count >= batch_size_) {
          b.records.swap(records);
          b.timestamps.swap(timestamps);
          records.clear();  // (kInPlace: the writer's batch was sized to the batch size)
          timestamps.clear();
          if constexpr (kInPlace) fill_[0] = b.records.size();
          Ship(0);
          return;
        }
        for (size_t i = 0; i < count; ++i) Append(0, std::move(records[i]), timestamps[i]);
        return;
      }
      if constexpr (Selector::kRunsUserCode) {
        try {
          for (size_t i = 0; i < count; ++i) {
            Append(selector_.Select(records[i], n), std::move(records[i]), timestamps[i]);
          }
        } catch (...) {
          RethrowAsJobFailure("key selector of", consumer_name_);
        }
      } else {
        for (size_t i = 0; i < count; ++i) {
          Append(selector_.Select(records[i], n), std::move(records[i]), timestamps[i]);
        }
      }
    }
  }

  // Watermarks go to every channel, after the records buffered before them.
  void OnWatermark(Timestamp watermark) override {
    FlushBuffers();
    for (auto* ch : channels_) ch->PushWatermark(watermark);
  }

  // Idleness goes to every channel too, after the records buffered before it.
  void OnWatermarkStatus(bool idle) override {
    FlushBuffers();
    for (auto* ch : channels_) ch->PushWatermarkStatus(idle);
  }

  void OnEndOfInput() override {
    FlushBuffers();
    for (auto* ch : channels_) ch->PushEndOfInput();
  }

  void EmitBarrier(int64_t id) override {
    FlushBuffers();
    for (auto* ch : channels_) ch->PushBarrier(id);
  }

  void FlushBuffers() override {
    for (size_t c = 0; c < channels_.size(); ++c) {
      if (Buffered(c) > 0) Ship(c);
    }
  }

  bool HasCapacity() override {
    bool ok = true;
    for (auto* ch : channels_) ok = ch->HasCapacity() && ok;
    return ok;
  }

 private:
  // Trivially copyable records are written in place: a channel's batch is sized to the batch size
  // while it fills (fill_ counts its records) and cut to size when shipped, so a record costs two
  // stores instead of two push_backs (the keyed exchange's per-record path). A recycled batch
  // keeps its size (AnyBatch::Recycle): a full one is not filled with default values again.
  static constexpr bool kInPlace = kWrittenInPlace<T>;

  std::unique_ptr<Batch<T>> NewBatch(size_t c) {
    // A batch the channel's consumer is done with, else a new one.
    std::unique_ptr<Batch<T>> b;
    if (std::unique_ptr<AnyBatch> free = channels_[c]->TakeFreeBatch()) {
      b.reset(static_cast<Batch<T>*>(free.release()));
    } else {
      b = std::make_unique<Batch<T>>();
      b->records.reserve(batch_size_);
      b->timestamps.reserve(batch_size_);
    }
    if constexpr (kInPlace) {
      b->records.resize(batch_size_);
      b->timestamps.resize(batch_size_);
    }
    return b;
  }
  size_t Buffered(size_t c) const {
    if constexpr (kInPlace) {
      return fill_[c];
    } else {
      return buffers_[c]->records.size();
    }
  }
  void Append(size_t c, T&& r, Timestamp timestamp) {
    Batch<T>& b = *buffers_[c];
    if constexpr (kInPlace) {
      size_t& k = fill_[c];
      b.records[k] = r;
      b.timestamps[k] = timestamp;
      if (++k >= batch_size_) Ship(c);
    } else {
      b.records.push_back(std::move(r));
      b.timestamps.push_back(timestamp);
      if (b.records.size() >= batch_size_) Ship(c);
    }
  }
  void Ship(size_t c) {
    if constexpr (kInPlace) {
      buffers_[c]->records.resize(fill_[c]);
      buffers_[c]->timestamps.resize(fill_[c]);
      fill_[c] = 0;
    }
    channels_[c]->PushBatch(std::move(buffers_[c]));
    buffers_[c] = NewBatch(c);
  }

  std::vector<OutputChannel*> channels_;
  std::vector<std::unique_ptr<Batch<T>>> buffers_;
  std::vector<size_t> fill_;  // kInPlace: the records in each channel's batch
  size_t batch_size_;
  Selector selector_;
  std::string consumer_name_;
};

struct ForwardSelector {
  static constexpr bool kBroadcast = false;
  static constexpr bool kRunsUserCode = false;
  template <typename T>
  size_t Select(const T&, size_t) {
    return 0;
  }
};

struct RebalanceSelector {
  static constexpr bool kBroadcast = false;
  static constexpr bool kRunsUserCode = false;
  size_t next;
  template <typename T>
  size_t Select(const T&, size_t n) {
    size_t c = next;
    next = next + 1 == n ? 0 : next + 1;
    return c;
  }
};

struct ShuffleSelector {
  static constexpr bool kBroadcast = false;
  static constexpr bool kRunsUserCode = false;
  uint64_t state;
  template <typename T>
  size_t Select(const T&, size_t n) {
    // xorshift64*: cheap, and seeded per producer so runs are reproducible.
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return static_cast<size_t>((state * 0x2545F4914F6CDD1DULL) % n);
  }
};

struct BroadcastSelector {
  static constexpr bool kBroadcast = true;
  static constexpr bool kRunsUserCode = false;
  template <typename T>
  size_t Select(const T&, size_t) {
    return 0;
  }
};

// Key -> key group -> channel, without a division per record when the maximum parallelism is a
// power of two (the default 128): the group is the hash's low bits and the channel comes from a
// table of the groups' subtasks (OperatorIndexForKeyGroup).
template <typename KeySelector>
struct HashSelector {
  static constexpr bool kBroadcast = false;
  static constexpr bool kRunsUserCode = true;
  HashSelector(KeySelector ks, int max_parallelism, size_t channels)
      : key_selector(std::move(ks)),
        max_parallelism(max_parallelism),
        mask((max_parallelism & (max_parallelism - 1)) == 0
                 ? static_cast<uint64_t>(max_parallelism) - 1
                 : 0) {
    channel_of_group.resize(static_cast<size_t>(max_parallelism));
    for (int g = 0; g < max_parallelism; ++g) {
      channel_of_group[static_cast<size_t>(g)] = static_cast<uint32_t>(
          OperatorIndexForKeyGroup(g, max_parallelism, static_cast<int>(channels)));
    }
  }
  KeySelector key_selector;
  int max_parallelism;
  uint64_t mask;  // max_parallelism - 1 when it is a power of two, else 0
  std::vector<uint32_t> channel_of_group;
  template <typename T>
  size_t Select(const T& r, size_t) {
    const uint64_t hash = StableHash(key_selector(r));
    const uint64_t group =
        mask != 0 ? hash & mask : static_cast<uint64_t>(KeyGroupForHash(hash, max_parallelism));
    return channel_of_group[group];
  }
};

// A writer for every partitioning but kHash.
template <typename T>
std::unique_ptr<ExchangeWriterBase> MakeWriter(const WriterSetup& setup) {
  switch (setup.partitioning) {
    case Partitioning::kRebalance:
      return std::make_unique<ExchangeWriter<T, RebalanceSelector>>(
          setup,
          RebalanceSelector{static_cast<size_t>(setup.producer_subtask) % setup.channels.size()});
    case Partitioning::kShuffle:
      return std::make_unique<ExchangeWriter<T, ShuffleSelector>>(
          setup, ShuffleSelector{0x9E3779B97F4A7C15ULL * (setup.producer_subtask + 1)});
    case Partitioning::kBroadcast:
      return std::make_unique<ExchangeWriter<T, BroadcastSelector>>(setup, BroadcastSelector{});
    case Partitioning::kForward:
    default:
      SLUICE_CHECK(setup.channels.size() == 1);
      return std::make_unique<ExchangeWriter<T, ForwardSelector>>(setup, ForwardSelector{});
  }
}

template <typename T, typename KeySelector>
std::unique_ptr<ExchangeWriterBase> MakeHashWriter(const WriterSetup& setup, KeySelector ks) {
  return std::make_unique<ExchangeWriter<T, HashSelector<KeySelector>>>(
      setup,
      HashSelector<KeySelector>(std::move(ks), setup.max_parallelism, setup.channels.size()));
}

}  // namespace sluice::internal
