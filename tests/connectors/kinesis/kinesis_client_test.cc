// The pieces under the Kinesis connector: the JSON reader/writer, AWS Signature V4 (against the
// example AWS publishes), endpoint parsing, and the Kinesis API calls against kinesalite.
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include "connectors/kinesis/json.h"
#include "connectors/kinesis/kinesalite.h"
#include "connectors/kinesis/kinesis_client.h"
#include "connectors/kinesis/sigv4.h"
#include "connectors/test_util.h"

namespace sluice::kinesis_test {
namespace {

using kinesis_internal::Json;
using kinesis_internal::JsonWriter;
using kinesis_internal::KinesisClient;

TEST(KinesisJsonTest, ParsesNestedDocuments) {
  auto doc = Json::Parse(
      R"( {"a": [1, -2.5e3, true, false, null, "x\"\\\/\n\u00e9\ud83d\ude00"], "b": {"c": {}},
          "big": 49590338271490256608559692538361571095921575989136588898} )");
  ASSERT_TRUE(doc.ok()) << doc.status();
  const Json& a = (*doc)["a"];
  ASSERT_EQ(a.array().size(), 6u);
  EXPECT_EQ(a.array()[0].integer(), 1);
  EXPECT_EQ(a.array()[1].number(), -2500);
  EXPECT_TRUE(a.array()[2].boolean());
  EXPECT_FALSE(a.array()[3].boolean());
  EXPECT_TRUE(a.array()[4].is_null());
  EXPECT_EQ(a.array()[5].string(), "x\"\\/\n\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_TRUE((*doc)["b"]["c"].is_object());
  EXPECT_TRUE((*doc)["missing"]["deeper"].is_null());
  // Numbers keep their text: sequence-number-sized integers survive.
  EXPECT_EQ((*doc)["big"].string(), "49590338271490256608559692538361571095921575989136588898");
}

TEST(KinesisJsonTest, RejectsMalformedInputWithTheOffset) {
  EXPECT_EQ(Json::Parse("{\"a\": }").status().message(), "JSON at offset 6: unexpected character");
  EXPECT_EQ(Json::Parse("[1, 2").status().message(), "JSON at offset 5: expected ',' or ']'");
  EXPECT_EQ(Json::Parse("\"abc").status().message(), "JSON at offset 4: unterminated string");
  EXPECT_EQ(Json::Parse("{} x").status().message(),
            "JSON at offset 3: unexpected text after the value");
  EXPECT_EQ(Json::Parse("\"\\ud800\"").status().message(), "JSON at offset 7: unpaired surrogate");
  EXPECT_FALSE(Json::Parse("").ok());
  EXPECT_FALSE(Json::Parse("01x").ok());
}

TEST(KinesisJsonTest, WriterRoundTrips) {
  JsonWriter w;
  w.BeginObject();
  w.Field("s", "q\"b\\n\n\x01");
  w.Key("n");
  w.Int(-42);
  w.Key("arr");
  w.BeginArray();
  w.Bool(true);
  w.BeginObject();
  w.EndObject();
  w.Number(1.5);
  w.EndArray();
  w.EndObject();
  EXPECT_EQ(w.str(), R"({"s":"q\"b\\n\n\u0001","n":-42,"arr":[true,{},1.5]})");
  auto back = Json::Parse(w.str());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)["s"].string(), "q\"b\\n\n\x01");
  EXPECT_EQ((*back)["n"].integer(), -42);
  EXPECT_EQ((*back)["arr"].array()[2].number(), 1.5);
}

// The worked example of the AWS documentation ("Create a signed AWS API request", IAM ListUsers,
// 2015-08-30T12:36:00Z, us-east-1) with its published intermediate and final values.
TEST(KinesisSigV4Test, MatchesTheAwsDocumentationExample) {
  kinesis_internal::SigV4Request r;
  r.method = "GET";
  r.path = "/";
  r.query = "Action=ListUsers&Version=2010-05-08";
  r.headers = {{"Host", "iam.amazonaws.com"},
               {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
               {"X-Amz-Date", "20150830T123600Z"}};
  std::string signed_headers;
  const std::string canonical = kinesis_internal::CanonicalRequest(r, &signed_headers);
  EXPECT_EQ(signed_headers, "content-type;host;x-amz-date");
  EXPECT_EQ(kinesis_internal::Sha256Hex(canonical),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
  EXPECT_EQ(kinesis_internal::Hex(kinesis_internal::SigningKey(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam")),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
  kinesis_internal::AwsCredentials creds{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                         ""};
  EXPECT_EQ(kinesis_internal::SigV4Authorization(r, creds, "us-east-1", "iam"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, "
            "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
  EXPECT_EQ(kinesis_internal::AmzDate(1440938160), "20150830T123600Z");
}

TEST(KinesisEndpointTest, ParsesUrlsAndResolvesTheEnvironment) {
  auto ep = kinesis_internal::HttpEndpoint::Parse("http://127.0.0.1:4567");
  ASSERT_TRUE(ep.ok());
  EXPECT_FALSE(ep->https);
  EXPECT_EQ(ep->HostHeader(), "127.0.0.1:4567");
  ep = kinesis_internal::HttpEndpoint::Parse("https://kinesis.eu-west-1.amazonaws.com");
  ASSERT_TRUE(ep.ok());
  EXPECT_TRUE(ep->https);
  EXPECT_EQ(ep->port, "443");
  EXPECT_EQ(ep->HostHeader(), "kinesis.eu-west-1.amazonaws.com");
  EXPECT_EQ(kinesis_internal::HttpEndpoint::Parse("ftp://x").status().message(),
            "endpoint 'ftp://x': must start with http:// or https://");
  EXPECT_EQ(kinesis_internal::HttpEndpoint::Parse("http://x:99999").status().message(),
            "endpoint 'http://x:99999': bad port");

  ::setenv("AWS_REGION", "eu-north-1", 1);
  ::setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "secretenv", 1);
  ::setenv("AWS_SESSION_TOKEN", "tokenenv", 1);
  auto c = kinesis_internal::ResolveConnection({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->region, "eu-north-1");
  EXPECT_EQ(c->endpoint.ToString(), "https://kinesis.eu-north-1.amazonaws.com:443");
  EXPECT_EQ(c->credentials.access_key_id, "AKIDENV");
  EXPECT_EQ(c->credentials.session_token, "tokenenv");
  ::unsetenv("AWS_REGION");
  ::setenv("AWS_DEFAULT_REGION", "ap-south-1", 1);
  c = kinesis_internal::ResolveConnection({});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->region, "ap-south-1");
  ::unsetenv("AWS_DEFAULT_REGION");
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::unsetenv("AWS_SESSION_TOKEN");
  EXPECT_EQ(
      kinesis_internal::ResolveConnection({.endpoint = "http://127.0.0.1:1"}).status().message(),
      "Kinesis: no AWS credentials: set KinesisConnectionOptions.access_key_id and "
      "secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
  EXPECT_EQ(kinesis_internal::ResolveConnection({}).status().message(),
            "Kinesis: no region: set KinesisConnectionOptions.region, AWS_REGION or "
            "AWS_DEFAULT_REGION (or an endpoint)");
}

class KinesisClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Kinesalite::Shared().ok()) << Kinesalite::Shared().error();
    auto c = KinesisClient::Create(Kinesalite::Shared().Connection());
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
  }
  std::unique_ptr<KinesisClient> client_;
};

TEST_F(KinesisClientTest, PutsListsAndReadsWithEveryIteratorType) {
  const std::string stream = UniqueStream("client");
  {
    absl::Status s = client_->CreateStream(stream, 1);
    ASSERT_TRUE(s.ok()) << s;
  }
  ASSERT_TRUE(client_->WaitForActive(stream, absl::Seconds(10)).ok());
  auto shards = client_->ListShards(stream);
  ASSERT_TRUE(shards.ok()) << shards.status();
  ASSERT_EQ(shards->size(), 1u);
  const std::string shard = (*shards)[0].shard_id;
  EXPECT_FALSE((*shards)[0].closed());

  std::vector<kinesis_internal::PutRecordsEntry> entries;
  for (int i = 0; i < 5; ++i) {
    entries.push_back({absl::StrCat("rec-", i, std::string(1, '\0'), "\xff"), "k", ""});
  }
  const absl::Time before = absl::Now();
  auto put = client_->PutRecords(stream, entries);
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_EQ(put->size(), 5u);
  for (const auto& r : *put) EXPECT_EQ(r.error_code, "");

  auto it = client_->GetShardIterator(stream, shard, "TRIM_HORIZON");
  ASSERT_TRUE(it.ok()) << it.status();
  auto got = client_->GetRecords(stream, shard, *it, 3);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->records.size(), 3u);
  EXPECT_EQ(got->records[0].data, absl::StrCat("rec-0", std::string(1, '\0'), "\xff"));
  EXPECT_EQ(got->records[0].partition_key, "k");
  EXPECT_EQ(got->records[0].sequence_number, (*put)[0].sequence_number);
  EXPECT_NEAR(static_cast<double>(got->records[0].arrival_ms),
              static_cast<double>(absl::ToUnixMillis(before)), 5000);
  EXPECT_FALSE(got->next_iterator.empty());
  auto rest = client_->GetRecords(stream, shard, got->next_iterator, 100);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->records.size(), 2u);
  EXPECT_EQ(rest->records[1].data.substr(0, 5), "rec-4");

  auto at =
      client_->GetShardIterator(stream, shard, "AT_SEQUENCE_NUMBER", (*put)[2].sequence_number);
  ASSERT_TRUE(at.ok()) << at.status();
  EXPECT_EQ(client_->GetRecords(stream, shard, *at, 100)->records.size(), 3u);
  auto after =
      client_->GetShardIterator(stream, shard, "AFTER_SEQUENCE_NUMBER", (*put)[2].sequence_number);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(client_->GetRecords(stream, shard, *after, 100)->records.size(), 2u);
  auto latest = client_->GetShardIterator(stream, shard, "LATEST");
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(client_->GetRecords(stream, shard, *latest, 100)->records.size(), 0u);
  auto ts = client_->GetShardIterator(stream, shard, "AT_TIMESTAMP", "",
                                      absl::FromUnixMillis(got->records[0].arrival_ms));
  ASSERT_TRUE(ts.ok()) << ts.status();
  EXPECT_EQ(client_->GetRecords(stream, shard, *ts, 100)->records.size(), 5u);
  EXPECT_TRUE(client_->DeleteStream(stream).ok());
}

TEST_F(KinesisClientTest, ErrorsNameTheCallTheStreamAndTheAwsError) {
  auto shards = client_->ListShards("no-such-stream");
  EXPECT_EQ(shards.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(shards.status().message(),
            "Kinesis ListShards on stream 'no-such-stream': ResourceNotFoundException: Stream "
            "no-such-stream under account 000000000000 not found.");
  auto it = client_->GetShardIterator("no-such-stream", "shardId-000000000000", "TRIM_HORIZON");
  EXPECT_EQ(it.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(it.status().message()),
              ::testing::StartsWith("Kinesis GetShardIterator on stream 'no-such-stream' shard "
                                    "'shardId-000000000000': ResourceNotFoundException: "));

  // Nothing listens: Unavailable after the configured attempts.
  KinesisConnectionOptions bad = Kinesalite::Shared().Connection();
  const int port = connectors_test::UnusedPort();
  bad.endpoint = absl::StrCat("http://127.0.0.1:", port);
  bad.max_attempts = 2;
  auto unreachable = KinesisClient::Create(bad);
  ASSERT_TRUE(unreachable.ok());
  auto r = (*unreachable)->ListShards("s");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(),
            absl::StrCat("Kinesis ListShards on stream 's': http://127.0.0.1:", port,
                         ": connecting failed: Connection refused (after 2 attempts)"));
}

// https:// through Beast + OpenSSL against kinesalite's TLS mode (a self-signed certificate):
// accepted with verify_tls = false, rejected by certificate verification otherwise.
TEST(KinesisTlsTest, HttpsEndpointsWorkAndVerifyCertificates) {
  Kinesalite& k = Kinesalite::SharedTls();
  ASSERT_TRUE(k.ok()) << k.error();
  KinesisConnectionOptions c = k.Connection();
  c.verify_tls = false;
  auto client = KinesisClient::Create(c);
  ASSERT_TRUE(client.ok());
  const std::string stream = UniqueStream("tls");
  ASSERT_TRUE((*client)->CreateStream(stream, 1).ok());
  ASSERT_TRUE((*client)->WaitForActive(stream, absl::Seconds(10)).ok());
  auto put = (*client)->PutRecords(stream, {{"over tls", "k", ""}});
  ASSERT_TRUE(put.ok()) << put.status();
  auto shards = (*client)->ListShards(stream);
  ASSERT_TRUE(shards.ok()) << shards.status();
  EXPECT_EQ(shards->size(), 1u);

  c.verify_tls = true;
  c.max_attempts = 1;
  auto verifying = KinesisClient::Create(c);
  ASSERT_TRUE(verifying.ok());
  auto rejected = (*verifying)->ListShards(stream);
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(rejected.status().message()),
              ::testing::HasSubstr(absl::StrCat(
                  "Kinesis ListShards on stream '", stream, "': https://127.0.0.1:", k.port(),
                  ": TLS handshake failed: certificate verify failed")));
}

}  // namespace
}  // namespace sluice::kinesis_test
