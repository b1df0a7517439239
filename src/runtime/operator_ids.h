// Operator ids: the stable names under which checkpoints and savepoints keep each operator's
// state (Flink's OperatorID and StreamGraphHasherV2).
//
// An operator with a Uid("...") has the id murmur3-128(uid): it keeps its state however the job
// around it changes. Without one, the id is derived from the operator's place in the graph: the
// order in which a breadth-first walk from the sources (in the order they were added) reaches it,
// whether its input is keyed and its kind (StreamNode::kind: "Map", "Window", ...), combined with
// the ids of its inputs. So inserting or removing an operator upstream changes the ids of
// everything after it (its state then matches nothing and the restore is refused, rather than
// given to the wrong operator), while names, functions, parallelism and chaining do not enter the
// id. (Flink's hasher mixes in the chaining instead of the kind; without the kind, an operator
// inserted at a stateful operator's old place would take over that operator's id and state.)
//
// A node that follows another (the watermark operator of a source, the local phase of a two-phase
// window aggregation) takes its id from the followed node's uid when it has one and is its only
// follower (two local phases on one input derive theirs from their positions).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include <sluice/internal/graph.h>

namespace sluice::internal {

// MurmurHash3 x64 128-bit (seed 0) of `data`, as 16 bytes (h1 then h2, little-endian).
std::string Murmur3_128(absl::string_view data);

// The id of every node of `graph` (32 lowercase hex digits, by node id). InvalidArgument when a
// uid is empty or set on two operators, naming them.
absl::StatusOr<std::vector<std::string>> AssignOperatorIds(const StreamGraph& graph);

}  // namespace sluice::internal
