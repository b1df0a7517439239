// Socket connectors through real jobs against a loopback server run by the test.
#include <sluice/connectors/socket.h>

#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include <sluice/sluice.h>

#include "connectors/test_util.h"

namespace sluice {
namespace {

using connectors_test::LocalServer;
using connectors_test::UnusedPort;
using connectors_test::WaitUntil;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// --- SocketTextSource ----------------------------------------------------------------------------

TEST(SocketTextSourceTest, LinesSplitAcrossWritesAndEndWhenThePeerCloses) {
  LocalServer server;
  CollectSink<std::string> sink;
  std::thread peer([&] {
    ASSERT_TRUE(server.Accept());
    ASSERT_TRUE(server.Send("hello\nwor"));
    // Only once the job has emitted "hello" (so it has read the first write) does the rest of
    // "world" follow: the line is certainly split across two reads.
    ASSERT_TRUE(WaitUntil([&] { return sink.size() >= 1; }));
    ASSERT_TRUE(server.Send("ld\r\n\nlast without newline"));
    server.CloseConnection();
  });

  StreamEnvironment env({.parallelism = 2});
  SocketTextSource source("127.0.0.1", server.port());
  EXPECT_FALSE(source.IsBounded());
  EXPECT_EQ(source.MaxParallelism(), 1);
  env.FromSource(std::move(source)).SinkTo(sink).SetParallelism(1);
  absl::Status status = env.Execute();
  peer.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(), ElementsAre("hello", "world", "", "last without newline"));
}

TEST(SocketTextSourceTest, ManyLinesInABurstArriveInOrder) {
  LocalServer server;
  std::vector<std::string> expected;
  std::string data;
  for (int i = 0; i < 50000; ++i) {
    expected.push_back(absl::StrCat("record ", i, std::string(static_cast<size_t>(i % 50), '.')));
    absl::StrAppend(&data, expected.back(), "\n");
  }
  std::thread peer([&] {
    ASSERT_TRUE(server.Accept());
    ASSERT_TRUE(server.Send(data));  // about 2.6 MB: more than the reader buffers at once
    server.CloseConnection();
  });
  StreamEnvironment env({.parallelism = 1});
  CollectSink<std::string> sink;
  env.FromSource(SocketTextSource("127.0.0.1", server.port())).SinkTo(sink);
  absl::Status status = env.Execute();
  peer.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(sink.values(), expected);
}

TEST(SocketTextSourceTest, OtherDelimiterKeepsCarriageReturns) {
  LocalServer server;
  std::thread peer([&] {
    ASSERT_TRUE(server.Accept());
    ASSERT_TRUE(server.Send("a\r|b\n|c|"));
    server.CloseConnection();
  });
  StreamEnvironment env({.parallelism = 1});
  CollectSink<std::string> sink;
  env.FromSource(SocketTextSource("127.0.0.1", server.port(), {.delimiter = '|'})).SinkTo(sink);
  absl::Status status = env.Execute();
  peer.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(), ElementsAre("a\r", "b\n", "c"));
}

TEST(SocketTextSourceTest, ResolvesHostNames) {
  // "localhost" may resolve to ::1 before 127.0.0.1, where the server listens: the source tries
  // each address in turn.
  LocalServer server;
  std::thread peer([&] {
    ASSERT_TRUE(server.Accept());
    ASSERT_TRUE(server.Send("via\nname\n"));
    server.CloseConnection();
  });
  StreamEnvironment env({.parallelism = 1});
  CollectSink<std::string> sink;
  env.FromSource(SocketTextSource("localhost", server.port())).SinkTo(sink);
  absl::Status status = env.Execute();
  peer.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(sink.values(), ElementsAre("via", "name"));
}

TEST(SocketTextSourceTest, RefusedConnectionIsUnavailableNamingHostAndPort) {
  int port = UnusedPort();
  StreamEnvironment env({.parallelism = 1});
  CollectSink<std::string> sink;
  env.FromSource(SocketTextSource("127.0.0.1", port)).SinkTo(sink);
  absl::Status status = env.Execute();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("127.0.0.1:", port)));
}

TEST(SocketTextSourceTest, BadPortIsInvalidArgument) {
  StreamEnvironment env({.parallelism = 1});
  CollectSink<std::string> sink;
  env.FromSource(SocketTextSource("127.0.0.1", 70000)).SinkTo(sink);
  absl::Status status = env.Execute();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("127.0.0.1:70000"));
}

TEST(SocketTextSourceTest, OverlongLineFailsTheJob) {
  LocalServer server;
  std::thread peer([&] {
    ASSERT_TRUE(server.Accept());
    ASSERT_TRUE(server.Send("short\n" + std::string(100, 'x')));
    // Keep the connection open: the job must fail on the line, not end on the close.
    server.ReceiveAll(absl::Seconds(5));
  });
  StreamEnvironment env({.parallelism = 1});
  CollectSink<std::string> sink;
  env.FromSource(SocketTextSource("127.0.0.1", server.port(), {.max_line_bytes = 10})).SinkTo(sink);
  absl::Status status = env.Execute();
  peer.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("127.0.0.1:", server.port())));
  EXPECT_THAT(sink.values(), ElementsAre("short"));
}

TEST(SocketTextSourceTest, CancellingAnIdleSourceEndsTheJob) {
  LocalServer server;
  StreamEnvironment env({.parallelism = 1});
  CollectSink<std::string> sink;
  env.FromSource(SocketTextSource("127.0.0.1", server.port())).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(server.Accept());
  ASSERT_TRUE(server.Send("one\n"));
  ASSERT_TRUE(WaitUntil([&] { return sink.size() == 1; }));
  // The reader now waits for data that never comes; the peer keeps the connection open.

  absl::Time start = absl::Now();
  job->Cancel();
  ASSERT_TRUE(job->WaitFor(absl::Seconds(5)));
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(sink.values(), ElementsAre("one"));
  // The source closed its socket: the peer sees end of stream.
  EXPECT_EQ(server.ReceiveAll(absl::Seconds(5)), "");
  std::cerr << "cancel took " << absl::FormatDuration(took) << "\n";
}

TEST(SocketTextSourceTest, CancellingWhileConnectingEndsTheJob) {
  // Cancelled right after the start, before or while the source connects (the server never
  // accepts): nothing may block the job's end.
  LocalServer server;
  StreamEnvironment env({.parallelism = 1});
  CollectSink<std::string> sink;
  env.FromSource(SocketTextSource("127.0.0.1", server.port())).SinkTo(sink);
  absl::StatusOr<JobHandle> job = env.ExecuteAsync();
  ASSERT_TRUE(job.ok()) << job.status();
  job->Cancel();
  ASSERT_TRUE(job->WaitFor(absl::Seconds(5)));
  EXPECT_EQ(job->Wait().code(), absl::StatusCode::kCancelled);
}

// --- SocketSink ----------------------------------------------------------------------------------

TEST(SocketSinkTest, WritesEachRecordAsALine) {
  LocalServer server;
  std::string received;
  std::thread peer([&] {
    ASSERT_TRUE(server.Accept());
    received = server.ReceiveAll();
  });
  StreamEnvironment env({.parallelism = 1});
  env.FromCollection(std::vector<std::string>{"alpha", "", "gamma delta"})
      .SinkTo(SocketSink<std::string>("127.0.0.1", server.port()));
  absl::Status status = env.Execute();
  peer.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(received, "alpha\n\ngamma delta\n");
}

TEST(SocketSinkTest, FormatFunctionAndManyRecords) {
  LocalServer server;
  std::string received;
  std::thread peer([&] {
    ASSERT_TRUE(server.Accept());
    received = server.ReceiveAll();
  });
  StreamEnvironment env({.parallelism = 1});
  env.FromSequence(1, 20000).SinkTo(SocketSink<int64_t>(
      "127.0.0.1", server.port(), [](const int64_t& x) { return absl::StrCat("n=", x); }));
  absl::Status status = env.Execute();
  peer.join();
  ASSERT_TRUE(status.ok()) << status;
  std::string expected;
  for (int i = 1; i <= 20000; ++i) absl::StrAppend(&expected, "n=", i, "\n");
  EXPECT_EQ(received, expected);
}

TEST(SocketSinkTest, ResolvesHostNames) {
  LocalServer server;
  std::string received;
  std::thread peer([&] {
    ASSERT_TRUE(server.Accept());
    received = server.ReceiveAll();
  });
  StreamEnvironment env({.parallelism = 1});
  env.FromSequence(1, 3).SinkTo(SocketSink<int64_t>("localhost", server.port()));
  absl::Status status = env.Execute();
  peer.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(received, "1\n2\n3\n");
}

TEST(SocketSinkTest, RefusedConnectionIsUnavailableNamingHostAndPort) {
  int port = UnusedPort();
  StreamEnvironment env({.parallelism = 1});
  env.FromSequence(1, 3).SinkTo(SocketSink<int64_t>("127.0.0.1", port));
  absl::Status status = env.Execute();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("127.0.0.1:", port)));
}

TEST(SocketRoundTripTest, SinkOfOneJobFeedsSourceOfAnother) {
  // Job A reads lines from a peer; job B writes them to the same test server afterwards.
  LocalServer in, out;
  std::string received;
  std::thread feeder([&] {
    ASSERT_TRUE(in.Accept());
    ASSERT_TRUE(in.Send("x\ny\nz\n"));
    in.CloseConnection();
  });
  std::thread collector([&] {
    ASSERT_TRUE(out.Accept());
    received = out.ReceiveAll();
  });
  StreamEnvironment env({.parallelism = 1});
  env.FromSource(SocketTextSource("127.0.0.1", in.port()))
      .Map([](const std::string& s) { return s + s; })
      .SinkTo(SocketSink<std::string>("127.0.0.1", out.port()));
  absl::Status status = env.Execute();
  feeder.join();
  collector.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(received, "xx\nyy\nzz\n");
}

}  // namespace
}  // namespace sluice
