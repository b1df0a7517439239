#!/usr/bin/env bash
# The speed-up of parallelism 2 over parallelism 1, measured on a noisy machine: N pairs of runs
# of query Q on E events at p=1 and p=2, alternating which runs first; prints each pair's speed-up
# (wall seconds at p=1 / at p=2) and their median.
#   benchmarks/nexmark/p2pairs.sh q7 20000000 10
# B: the runner (default build/benchmarks/nexmark/sluice-nexmark).
set -euo pipefail
q=$1; E=$2; N=${3:-10}
B=${B:-build/benchmarks/nexmark/sluice-nexmark}
wall() { grep -o "wall [0-9.]*" | cut -d' ' -f2; }
run() { "$B" --query "$q" --events "$E" --parallelism "$1" | wall; }
run1() { run 1; }
run2() { run 2; }
source "$(dirname "$0")/pairs.sh"
pairs "$N" p1 run1 p2 run2 speed-up a
