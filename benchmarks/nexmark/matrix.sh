#!/usr/bin/env bash
# The Nexmark figures matrix of docs/benchmarks.md: every query at parallelism 1 and 2 on the
# HashMap backend, with 1 s checkpoints, on RocksDB, and the COST program where there is one.
# Prints one markdown row per query (events/s per core = events / CPU seconds of the process;
# p=2 also events/s). One run per cell: on a shared machine, repeat and take medians.
#
#   benchmarks/nexmark/matrix.sh [build dir]      (default build/, from ./dev.sh build)
#   QUERIES="q5 q7" benchmarks/nexmark/matrix.sh   (only these rows)
set -euo pipefail
build=${1:-build}
B=$build/benchmarks/nexmark/sluice-nexmark
C=$build/benchmarks/nexmark/nexmark_cost
ckpt=$(mktemp -d)
trap 'rm -rf "$ckpt"' EXIT

per_core() { sed -nE 's/.* ([0-9]+) events\/s per core.*/\1/p'; }
wall() { sed -nE 's/.*wall [0-9.]+ s, ([0-9]+) events\/s,.*/\1/p'; }
m() { awk -v x="$1" 'BEGIN { if (x == "") print "-"; else if (x >= 1e6) printf "%.2f M", x / 1e6; else printf "%.0f K", x / 1e3 }'; }

echo "| query | events | p=1 per core | p=2 events/s | p=2 per core | p=1 ckpt 1 s per core | p=2 ckpt 1 s per core | RocksDB p=1 per core (events) | RocksDB p=2 per core | COST |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for q in ${QUERIES:-q0 q1 q2 q3 q4 q5 q7 q8 q9 q11 q12 q13 q14 q15 q16 q17 q18 q19 q20 q21 q22}; do
  case $q in q0|q1|q2|q13|q14|q21|q22) n=10000000; nr=2000000 ;; *) n=5000000; nr=500000 ;; esac
  p1=$($B --query $q --events $n --parallelism 1 2>&1 | per_core)
  out2=$($B --query $q --events $n --parallelism 2 2>&1)
  p2w=$(echo "$out2" | wall); p2=$(echo "$out2" | per_core)
  rm -rf "$ckpt"/*; c1=$($B --query $q --events $n --parallelism 1 --checkpoint-interval-ms 1000 --checkpoint-dir "$ckpt/a" 2>&1 | per_core)
  rm -rf "$ckpt"/*; c2=$($B --query $q --events $n --parallelism 2 --checkpoint-interval-ms 1000 --checkpoint-dir "$ckpt/b" 2>&1 | per_core)
  r1=$($B --query $q --events $nr --parallelism 1 --state-backend rocksdb 2>&1 | per_core)
  r2=$($B --query $q --events $nr --parallelism 2 --state-backend rocksdb 2>&1 | per_core)
  cost=""
  case $q in q0|q1|q2|q3|q4|q5|q7|q8|q9|q11) cost=$($C --query $q --events $n 2>&1 | sed -nE 's/.*wall [0-9.]+ s, ([0-9]+) events\/s.*/\1/p') ;; esac
  echo "| $q | $((n / 1000000)) M | $(m "$p1") | $(m "$p2w") | $(m "$p2") | $(m "$c1") | $(m "$c2") | $(m "$r1") ($((nr / 1000)) K) | $(m "$r2") | $(m "$cost") |"
done
