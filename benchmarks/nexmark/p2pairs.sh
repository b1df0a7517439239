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
ratios=()
for i in $(seq "$N"); do
  if [ $((i % 2)) = 1 ]; then a=$(run 1); b=$(run 2); else b=$(run 2); a=$(run 1); fi
  r=$(echo "scale=4; $a / $b" | bc)
  ratios+=("$r")
  echo "pair $i: p1 $a p2 $b speed-up $r"
done
printf "%s\n" "${ratios[@]}" | sort -n | awk '{a[NR] = $1}
  END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2;
       print "median speed-up", m, "min", a[1], "max", a[NR]}'
