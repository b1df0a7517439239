// Sluice: an embeddable stream processor with Flink's DataStream API. The umbrella header.
//
//   #include <sluice/sluice.h>
//
//   sluice::StreamEnvironment env;
//   env.FromSequence(1, 10).Map([](int64_t x) { return x * 2; })
//       .SinkTo(sluice::PrintSink<int64_t>());
//   return env.Execute("doubles").ok() ? 0 : 1;
#pragma once

#include <sluice/api/broadcast.h>
#include <sluice/api/concepts.h>
#include <sluice/api/data_stream.h>
#include <sluice/api/functions.h>
#include <sluice/api/interval_join.h>
#include <sluice/api/job_graph.h>
#include <sluice/api/job_handle.h>
#include <sluice/api/join.h>
#include <sluice/api/stream_environment.h>
#include <sluice/api/windowed_stream.h>
#include <sluice/connectors/collection_source.h>
#include <sluice/connectors/exactly_once_file_sink.h>
#include <sluice/connectors/file.h>
#include <sluice/connectors/sink.h>
#include <sluice/connectors/sinks.h>
#include <sluice/connectors/socket.h>
#include <sluice/connectors/source.h>
#include <sluice/connectors/two_phase_commit.h>
#include <sluice/core/collector.h>
#include <sluice/core/counters.h>
#include <sluice/core/format.h>
#include <sluice/core/key.h>
#include <sluice/core/log.h>
#include <sluice/core/output_tag.h>
#include <sluice/core/runtime_context.h>
#include <sluice/core/runtime_options.h>
#include <sluice/core/status.h>
