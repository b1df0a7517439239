// ExchangeWriter on one channel: whole batches pass without a copy, small ones are gathered, the
// order of records and timestamps is kept, and batches the consumer hands back are filled again.
// On several channels: each gets its records in order in batches of the batch size, whether they
// are written in place (trivially copyable records) or appended (others).
#include <sluice/internal/exchange.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice::internal {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

// A channel that keeps what it is given; TakeFreeBatch hands out the batches put in `free`.
template <typename T>
class BasicRecordingChannel final : public OutputChannel {
 public:
  void PushBatch(std::unique_ptr<AnyBatch> batch) override {
    shipped.push_back(std::unique_ptr<Batch<T>>(static_cast<Batch<T>*>(batch.release())));
  }
  void PushEndOfInput() override {}
  void PushWatermark(Timestamp) override {}
  void PushWatermarkStatus(bool) override {}
  void PushBarrier(int64_t) override {}
  bool HasCapacity() override { return true; }
  std::unique_ptr<AnyBatch> TakeFreeBatch() override {
    if (free.empty()) return nullptr;
    std::unique_ptr<AnyBatch> b = std::move(free.back());
    free.pop_back();
    return b;
  }

  std::vector<std::unique_ptr<Batch<T>>> shipped;
  std::vector<std::unique_ptr<AnyBatch>> free;
};
using RecordingChannel = BasicRecordingChannel<int64_t>;

WriterSetup OneChannel(RecordingChannel* channel, int batch_size) {
  return WriterSetup{.partitioning = Partitioning::kForward,
                     .channels = {channel},
                     .batch_size = batch_size,
                     .max_parallelism = 128,
                     .producer_subtask = 0,
                     .consumer_name = "sink"};
}

// Consumes records [from, to) with timestamps 10 * record, as an upstream collector would, and
// clears the vectors after (the BatchConsumer contract).
void Feed(ExchangeWriter<int64_t, ForwardSelector>& writer, std::vector<int64_t>& records,
          std::vector<Timestamp>& timestamps, int64_t from, int64_t to) {
  for (int64_t r = from; r < to; ++r) {
    records.push_back(r);
    timestamps.push_back(10 * r);
  }
  writer.Consume(records, timestamps);
  records.clear();
  timestamps.clear();
}

TEST(ExchangeWriterTest, OneChannelPassesBatchesAtLeastHalfFullWholeAndKeepsTheOrder) {
  RecordingChannel channel;
  ExchangeWriter<int64_t, ForwardSelector> writer(OneChannel(&channel, 8), ForwardSelector{});
  std::vector<int64_t> records;
  std::vector<Timestamp> timestamps;
  records.reserve(8);
  timestamps.reserve(8);
  Feed(writer, records, timestamps, 0, 3);    // gathered
  Feed(writer, records, timestamps, 3, 11);   // appended behind them: ships 0..7, keeps 8..10
  Feed(writer, records, timestamps, 11, 17);  // half full, but records wait: ships 8..15
  writer.FlushBuffers();                      // ships 16
  Feed(writer, records, timestamps, 20, 26);  // half full, nothing waits: passes whole
  // The caller got the writer's empty batch back, with its capacity.
  EXPECT_TRUE(records.empty());
  EXPECT_GE(records.capacity(), 8u);
  Feed(writer, records, timestamps, 30, 33);  // gathered again
  writer.FlushBuffers();

  std::vector<size_t> sizes;
  std::vector<int64_t> all;
  std::vector<Timestamp> all_timestamps;
  for (const auto& b : channel.shipped) {
    sizes.push_back(b->records.size());
    all.insert(all.end(), b->records.begin(), b->records.end());
    all_timestamps.insert(all_timestamps.end(), b->timestamps.begin(), b->timestamps.end());
  }
  EXPECT_THAT(sizes, ElementsAre(8, 8, 1, 6, 3));
  std::vector<int64_t> expected;
  std::vector<Timestamp> expected_timestamps;
  for (int64_t r : {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
                    13, 14, 15, 16, 20, 21, 22, 23, 24, 25, 30, 31, 32}) {
    expected.push_back(r);
    expected_timestamps.push_back(10 * r);
  }
  EXPECT_THAT(all, ElementsAreArray(expected));
  EXPECT_THAT(all_timestamps, ElementsAreArray(expected_timestamps));
}

TEST(ExchangeWriterTest, FillsTheBatchesItsChannelHandsBack) {
  RecordingChannel channel;
  ExchangeWriter<int64_t, ForwardSelector> writer(OneChannel(&channel, 4), ForwardSelector{});
  std::vector<int64_t> records;
  std::vector<Timestamp> timestamps;
  Feed(writer, records, timestamps, 0, 1);
  writer.FlushBuffers();  // ships the first batch; the writer takes a new one (none is free)
  ASSERT_EQ(channel.shipped.size(), 1u);
  // The consumer is done with it: emptied, it goes back.
  std::unique_ptr<Batch<int64_t>> used = std::move(channel.shipped[0]);
  channel.shipped.clear();
  Batch<int64_t>* used_ptr = used.get();
  used->Recycle();
  channel.free.push_back(std::move(used));
  Feed(writer, records, timestamps, 1, 2);
  writer.FlushBuffers();  // ships the batch taken before; takes the free one
  Feed(writer, records, timestamps, 2, 4);
  writer.FlushBuffers();
  ASSERT_EQ(channel.shipped.size(), 2u);
  EXPECT_NE(channel.shipped[0].get(), used_ptr);
  EXPECT_EQ(channel.shipped[1].get(), used_ptr);
  EXPECT_THAT(channel.shipped[0]->records, ElementsAre(1));
  EXPECT_THAT(channel.shipped[1]->records, ElementsAre(2, 3));
  EXPECT_THAT(channel.shipped[1]->timestamps, ElementsAre(20, 30));
}

// Records 0..7 round robin over two channels in batches of 3, then a flush: the same batches
// whether the records are written in place (int64_t) or appended (std::string).
template <typename T>
void CheckTwoChannels(T (*make)(int64_t)) {
  BasicRecordingChannel<T> a, b;
  ExchangeWriter<T, RebalanceSelector> writer(WriterSetup{.partitioning = Partitioning::kRebalance,
                                                          .channels = {&a, &b},
                                                          .batch_size = 3,
                                                          .max_parallelism = 128,
                                                          .producer_subtask = 0,
                                                          .consumer_name = "sink"},
                                              RebalanceSelector{0});
  std::vector<T> records;
  std::vector<Timestamp> timestamps;
  for (int64_t r = 0; r < 8; ++r) {
    records.push_back(make(r));
    timestamps.push_back(10 * r);
    if (r == 4 || r == 7) {  // two input batches: 0..4 and 5..7
      writer.Consume(records, timestamps);
      records.clear();
      timestamps.clear();
    }
  }
  ASSERT_EQ(a.shipped.size(), 1u);  // 0 2 4
  ASSERT_EQ(b.shipped.size(), 1u);  // 1 3 5
  writer.FlushBuffers();
  ASSERT_EQ(a.shipped.size(), 2u);
  ASSERT_EQ(b.shipped.size(), 2u);
  EXPECT_THAT(a.shipped[0]->records, ElementsAre(make(0), make(2), make(4)));
  EXPECT_THAT(a.shipped[0]->timestamps, ElementsAre(0, 20, 40));
  EXPECT_THAT(a.shipped[1]->records, ElementsAre(make(6)));
  EXPECT_THAT(a.shipped[1]->timestamps, ElementsAre(60));
  EXPECT_THAT(b.shipped[0]->records, ElementsAre(make(1), make(3), make(5)));
  EXPECT_THAT(b.shipped[0]->timestamps, ElementsAre(10, 30, 50));
  EXPECT_THAT(b.shipped[1]->records, ElementsAre(make(7)));
  EXPECT_THAT(b.shipped[1]->timestamps, ElementsAre(70));
  writer.FlushBuffers();  // nothing buffered: nothing shipped
  EXPECT_EQ(a.shipped.size(), 2u);
  EXPECT_EQ(b.shipped.size(), 2u);
}

TEST(ExchangeWriterTest, SeveralChannelsGetTheirRecordsInOrderInBatches) {
  CheckTwoChannels<int64_t>([](int64_t r) { return r; });
  CheckTwoChannels<std::string>([](int64_t r) { return "record " + std::to_string(r); });
}

}  // namespace
}  // namespace sluice::internal
