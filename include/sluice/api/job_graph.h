// JobGraph: what a running job is made of, as Flink's job plan (REST /jobs/<id>/plan) shows it:
// vertices — chains of operators that one task per subtask runs — with their parallelism, and the
// edges between them with how records are shipped.
//
//   sluice::JobGraph g = job->Graph();
//   for (const auto& v : g.vertices) std::cout << v.name << " x" << v.parallelism << "\n";
#pragma once

#include <string>
#include <vector>

namespace sluice {

struct JobGraph {
  struct Operator {
    int node = 0;      // index in the job's graph, in the order the job was described
    std::string name;  // as set with Name() or its default
    std::string kind;  // "Source", "Map", "Window", "Keyed Process", "Sink", ...
    std::string id;    // the operator id of its state in savepoints (32 hex digits)
    std::string uid;   // its Uid(), "" when none
  };
  // A chain of operators fused into one task per subtask (Flink's JobVertex).
  struct Vertex {
    std::string id;    // the id of its first operator
    std::string name;  // the operators' names joined with " -> ", as the task names show them
    int parallelism = 1;
    std::vector<Operator> operators;  // in the order records pass through them
  };
  // Records from one vertex to another (edges inside a chain are not listed).
  struct Edge {
    int from = 0;               // index in `vertices`
    int to = 0;                 // index in `vertices`
    std::string ship_strategy;  // "FORWARD", "REBALANCE", "SHUFFLE", "BROADCAST", "HASH"
    std::string side_output;    // the OutputTag id, "" for the main output
  };
  std::vector<Vertex> vertices;  // in topological order
  std::vector<Edge> edges;
};

}  // namespace sluice
