#!/usr/bin/env bash
# CTest smoke test of examples/kinesis_to_lake (kinesis_to_lake_smoke, label kinesis): runs run.sh
# for 300 clicks against the given build tree and compares everything delivered with the expected
# results. The generator is deterministic and the job's watermarks follow the records, so the exact
# lines are known: every window firing once (no duplicate, none missing: exactly once), with its
# views and distinct users, and the clicks too late for any window.
#
#   examples/kinesis_to_lake/smoke_test.sh <build dir>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: smoke_test.sh <build dir>}
out=$(mktemp -d /tmp/kinesis_to_lake-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT

BUILD_DIR=$build OUTPUT_DIR=$out/lake PARALLELISM=2 "$here/run.sh" 300 >"$out/run.log" 2>&1 || {
  cat "$out/run.log"
  echo "smoke_test.sh: run.sh failed" >&2
  exit 1
}

status=0
check() {  # check <prefix> <expected file>
  find "$out/lake/$1" -name '*.gz' -print0 | xargs -0 -r gzip -dc | sort >"$out/$1.txt"
  if ! diff -u "$here/$2" "$out/$1.txt"; then
    echo "smoke_test.sh: $1 differs from $2 (- expected, + delivered)" >&2
    status=1
  fi
}
check page-views expected_300_page_views.txt
check late-clicks expected_300_late_clicks.txt
# Everything was committed: no in-progress or pending file is left in the staging directory.
leftovers=$(find "$out/lake/.sluice-firehose" -type f | wc -l)
if [ "$leftovers" -ne 0 ]; then
  echo "smoke_test.sh: $leftovers uncommitted staging files left" >&2
  status=1
fi
[ "$status" -eq 0 ] || cat "$out/run.log"
exit "$status"
