#!/usr/bin/env bash
# Runs examples/kinesis_to_lake end to end on this machine, with nothing to set up beyond
# ./dev.sh build: installs kinesalite (a Kinesis emulator, npm) into the build tree if needed,
# starts it on 127.0.0.1, creates a one-shard stream "clicks", puts N synthetic clicks and an END
# record into it, runs the job to that END record, shows what it delivered, and stops kinesalite.
#
#   examples/kinesis_to_lake/run.sh [N]        N clicks, default 2000 (200 s of event time)
#
# Environment: BUILD_DIR (default <repo>/build; the example is built there if missing),
# OUTPUT_DIR (default a new directory under /tmp; must be empty), PARALLELISM (windows and sinks,
# default 2). Needs node and npm on PATH (./dev.sh installs them) and, on the first run, the npm
# registry.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${BUILD_DIR:-$repo/build}" && pwd)
clicks=${1:-2000}
out=${OUTPUT_DIR:-$(mktemp -d /tmp/kinesis_to_lake.XXXXXX)}
if [ -d "$out" ] && [ -n "$(ls -A "$out")" ]; then
  echo "run.sh: OUTPUT_DIR $out is not empty" >&2
  exit 2
fi

bin=$build/examples/kinesis_to_lake
if [ ! -x "$bin" ]; then
  echo "== building kinesis_to_lake in $build"
  cmake --build "$build" --target kinesis_to_lake
fi

if ! command -v node >/dev/null 2>&1; then
  echo "run.sh: node not found (./dev.sh build installs Node.js and npm)" >&2
  exit 1
fi
# The same kinesalite copy as the Kinesis connector tests (ctest -L kinesis).
kinesalite_dir=$build/tests/connectors/kinesis/kinesalite
"$repo/tests/connectors/kinesis/kinesalite.sh" "$kinesalite_dir" >&2

work=$(mktemp -d /tmp/kinesis_to_lake-run.XXXXXX)
kinesalite_pid=
cleanup() {
  exec 7>&- || true  # closes kinesalite's stdin: it exits
  if [ -n "$kinesalite_pid" ]; then
    kill "$kinesalite_pid" 2>/dev/null || true
    wait "$kinesalite_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The launcher binds 127.0.0.1 on a free port, prints "PORT <n>", and exits when its stdin
# closes: a fifo held open by this script, so kinesalite never outlives it.
mkfifo "$work/stdin"
node "$repo/tests/connectors/kinesis/kinesalite_launcher.js" "$kinesalite_dir" plain \
  <"$work/stdin" >"$work/port" 2>"$work/kinesalite.log" &
kinesalite_pid=$!
exec 7>"$work/stdin"
for _ in $(seq 600); do
  grep -q '^PORT ' "$work/port" && break
  if ! kill -0 "$kinesalite_pid" 2>/dev/null; then
    echo "run.sh: kinesalite did not start:" >&2
    cat "$work/kinesalite.log" >&2
    exit 1
  fi
  sleep 0.1
done
port=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$work/port")
[ -n "$port" ] || { echo "run.sh: kinesalite printed no port" >&2; exit 1; }
endpoint=http://127.0.0.1:$port
echo "== kinesalite on $endpoint"

# kinesalite accepts any credentials; never send real ones to it.
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_DEFAULT_REGION KINESIS_ENDPOINT

node "$here/create_stream.js" "$endpoint" clicks 1
echo "== producing"
"$bin" --produce "$clicks" --endpoint "$endpoint" --stream clicks
echo "== running the job (output in $out)"
"$bin" --endpoint "$endpoint" --stream clicks --output-dir "$out" --parallelism "${PARALLELISM:-2}"

echo "== delivered files"
(cd "$out" && find . -path ./.sluice-firehose -prune -o -path ./.checkpoints -prune -o -type f -print |
  sed 's|^\./||' | sort)
echo "== a few page-view results (one line per window firing; firing > 1: updated by a late click)"
find "$out/page-views" -name '*.gz' -print0 | sort -z | xargs -0 -r gzip -dc | sort | sed -n '1,8p'
echo "== a few clicks too late for their window"
if [ -d "$out/late-clicks" ]; then
  find "$out/late-clicks" -name '*.gz' -print0 | sort -z | xargs -0 -r gzip -dc | sort | sed -n '1,3p'
fi
