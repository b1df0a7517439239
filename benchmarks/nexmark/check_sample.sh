#!/usr/bin/env bash
# Checks sluice-nexmark and nexmark_cost by hand against a Nexmark sample from elsewhere: a
# directory with an event file events.csv and the expected result of some queries in
# expected/qN.csv (the formats of docs/nexmark.md), compared as multisets of lines.
#
#   benchmarks/nexmark/check_sample.sh SAMPLE_DIR [build dir]      (default build/)
#   QUERIES="q5 q9" benchmarks/nexmark/check_sample.sh SAMPLE_DIR  (only these queries)
#
# For each query with an expected file: the COST program, and the engine at parallelism 1 and 2
# on HashMap and (stateful queries) at 2 on RocksDB. One line per run; exits 1 if any differ.
set -uo pipefail
if [ $# -lt 1 ] || [ ! -f "$1/events.csv" ]; then
  sed -n '2,10p' "$0"
  [ $# -ge 1 ] && echo "check_sample.sh: no events.csv in $1"
  exit 2
fi
sample=$1
build=${2:-build}
B=$build/benchmarks/nexmark/sluice-nexmark
C=$build/benchmarks/nexmark/nexmark_cost
for bin in "$B" "$C"; do
  [ -x "$bin" ] || { echo "check_sample.sh: $bin is missing (ninja -C $build sluice-nexmark nexmark_cost)"; exit 2; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# run NAME EXPECTED COMMAND...: runs COMMAND (which writes $tmp/out.csv) and compares.
run() {
  local name=$1 expected=$2
  shift 2
  if ! "$@" > "$tmp/log" 2>&1; then
    echo "FAIL  $name: $(tail -1 "$tmp/log")"
    failed=1
    return
  fi
  if diff <(LC_ALL=C sort "$expected") <(LC_ALL=C sort "$tmp/out.csv") > "$tmp/diff"; then
    echo "ok    $name ($(wc -l < "$tmp/out.csv") lines)"
  else
    echo "DIFF  $name: $(grep -c '^<' "$tmp/diff") expected line(s) missing," \
         "$(grep -c '^>' "$tmp/diff") unexpected; the first ones:"
    grep '^[<>]' "$tmp/diff" | head -6 | sed 's/^</    missing:   /; s/^>/    unexpected:/'
    failed=1
  fi
}

for q in ${QUERIES:-q0 q1 q2 q3 q4 q5 q7 q8 q9 q11}; do
  expected=$sample/expected/$q.csv
  if [ ! -f "$expected" ]; then
    echo "skip  $q (no expected/$q.csv)"
    continue
  fi
  in=(--query "$q" --input "$sample/events.csv" --output "$tmp/out.csv")
  run "$q COST" "$expected" "$C" "${in[@]}"
  run "$q p=1 hashmap" "$expected" "$B" "${in[@]}" --parallelism 1
  run "$q p=2 hashmap" "$expected" "$B" "${in[@]}" --parallelism 2
  case $q in
    q0|q1|q2) ;;
    *) run "$q p=2 rocksdb" "$expected" "$B" "${in[@]}" --parallelism 2 --state-backend rocksdb ;;
  esac
done
exit $failed
