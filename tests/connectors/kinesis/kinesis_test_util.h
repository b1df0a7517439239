// Stream helpers for the Kinesis tests: create, put (in PutRecords batches), put an end marker
// into every open shard, read a whole stream back.
#pragma once

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

#include "connectors/kinesis/kinesalite.h"
#include "connectors/kinesis/kinesis_client.h"

namespace sluice::kinesis_test {

using kinesis_internal::KinesisClient;
using kinesis_internal::PutRecordsEntry;
using kinesis_internal::ShardInfo;

inline std::unique_ptr<KinesisClient> NewClient() {
  auto c = KinesisClient::Create(Kinesalite::Shared().Connection());
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

inline void CreateStream(KinesisClient& client, const std::string& stream, int shards) {
  absl::Status s = client.CreateStream(stream, shards);
  ASSERT_TRUE(s.ok()) << s;
  s = client.WaitForActive(stream, absl::Seconds(20));
  ASSERT_TRUE(s.ok()) << s;
}

// Puts `values[i]` with partition key `keys[i]`, in order, 500 per call.
inline void Put(KinesisClient& client, const std::string& stream,
                const std::vector<std::string>& values, const std::vector<std::string>& keys) {
  std::vector<PutRecordsEntry> batch;
  for (size_t i = 0; i <= values.size(); ++i) {
    if (i == values.size() || batch.size() == 500) {
      if (batch.empty()) break;
      auto r = client.PutRecords(stream, batch);
      ASSERT_TRUE(r.ok()) << r.status();
      for (const auto& e : *r) ASSERT_EQ(e.error_code, "");
      batch.clear();
    }
    if (i < values.size()) batch.push_back({values[i], keys[i], ""});
  }
}

inline std::vector<ShardInfo> Shards(KinesisClient& client, const std::string& stream) {
  auto shards = client.ListShards(stream);
  EXPECT_TRUE(shards.ok()) << shards.status();
  return shards.ok() ? *shards : std::vector<ShardInfo>();
}

// Puts `marker` into every open shard (ExplicitHashKey = the shard's first hash key).
inline void PutEndMarkers(KinesisClient& client, const std::string& stream,
                          const std::string& marker = "END") {
  for (const ShardInfo& s : Shards(client, stream)) {
    if (s.closed()) continue;
    auto r = client.PutRecords(stream, {{marker, "end", s.starting_hash_key}});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ((*r)[0].error_code, "");
    ASSERT_EQ((*r)[0].shard_id, s.shard_id);
  }
}

// Every record of every shard, shard by shard.
inline std::vector<std::string> ReadAll(KinesisClient& client, const std::string& stream) {
  std::vector<std::string> out;
  for (const ShardInfo& s : Shards(client, stream)) {
    auto it = client.GetShardIterator(stream, s.shard_id, "TRIM_HORIZON");
    EXPECT_TRUE(it.ok()) << it.status();
    if (!it.ok()) return out;
    std::string iterator = *it;
    while (!iterator.empty()) {
      auto r = client.GetRecords(stream, s.shard_id, iterator, 10000);
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) return out;
      for (auto& rec : r->records) out.push_back(rec.data);
      if (r->records.empty()) break;
      iterator = r->next_iterator;
    }
  }
  return out;
}

}  // namespace sluice::kinesis_test
