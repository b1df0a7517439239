#!/usr/bin/env bash
# The cost of 1 s checkpoints, measured on a noisy machine: N pairs of runs of query Q on E
# events, with and without checkpoints, alternating which runs first; prints each pair's ratio of
# wall seconds (checkpointed / not) and their median.
#   benchmarks/nexmark/ckpairs.sh q5 20000000 10
# B: the runner (default build/benchmarks/nexmark/sluice-nexmark); P: parallelism (1);
# CKDIR: the checkpoint directory, removed before each run (/tmp/nxck).
set -euo pipefail
q=$1; E=$2; N=${3:-10}; P=${P:-1}
B=${B:-build/benchmarks/nexmark/sluice-nexmark}
CKDIR=${CKDIR:-/tmp/nxck}
wall() { grep -o "wall [0-9.]*" | cut -d' ' -f2; }
run_none() { "$B" --query "$q" --events "$E" --parallelism "$P" | wall; }
run_ck() {
  rm -rf "$CKDIR"
  "$B" --query "$q" --events "$E" --parallelism "$P" --checkpoint-interval-ms 1000 \
    --checkpoint-dir "$CKDIR" | wall
}
source "$(dirname "$0")/pairs.sh"
pairs "$N" none run_none ck run_ck ratio b
