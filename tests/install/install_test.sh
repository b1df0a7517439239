#!/usr/bin/env bash
# Install Sluice, then build host applications against the installed package only (one consumer
# project, tests/install/consumer) and run them: examples/clickstream on sluice::sluice, and one
# program per connector library (sluice::firehose, sluice::kafka, sluice::kinesis).
#   SLUICE_BUILD_DIR, SLUICE_SOURCE_DIR: the build to install and its source tree.
#   SLUICE_INSTALL_TEST_JOBS: parallel compile jobs for the consumer (default 2).
set -euo pipefail
work=$(mktemp -d)
mock_pid=""
cleanup() {
  if [[ -n $mock_pid ]]; then
    kill "$mock_pid" 2>/dev/null || true
    wait "$mock_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
# expect NAME ACTUAL EXPECTED: the whole output, exactly.
expect() {
  if [[ $2 != "$3" ]]; then
    printf 'install_package: %s printed:\n%s\ninstead of:\n%s\n' "$1" "$2" "$3" >&2
    exit 1
  fi
}

prefix=$work/prefix
cmake --install "$SLUICE_BUILD_DIR" --prefix "$prefix" >/dev/null
# Internal runtime sources must not be installed; the public headers must be.
test -f "$prefix/include/sluice/sluice.h"
test -f "$prefix/include/sluice/connectors/firehose_sink.h"
test ! -e "$prefix/include/runtime"
test ! -e "$prefix/include/connectors"
# Installed headers include only the standard library, Abseil and each other: nothing from src/
# and nothing from a connector's own dependencies.
bad=$(grep -rhoE '^#include +[<"][^>"]+[>"]' "$prefix/include" |
      grep -vE '^#include +(<sluice/|"sluice/|<absl/|"absl/|<[a-z_0-9]+>)' || true)
if [[ -n $bad ]]; then
  printf 'install_package: installed headers include:\n%s\n' "$bad" >&2
  exit 1
fi
for lib in sluice sluice_firehose sluice_kafka sluice_kinesis; do
  if [[ -z $(find "$prefix" -name "lib$lib.a" -o -name "lib$lib.so") ]]; then
    echo "install_package: lib$lib is not installed" >&2
    exit 1
  fi
done

cmake -S "$SLUICE_SOURCE_DIR/tests/install/consumer" -B "$work/build" -G Ninja \
      -DCMAKE_PREFIX_PATH="$prefix" -DSLUICE_SOURCE_DIR="$SLUICE_SOURCE_DIR" \
      -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
# Built against the installed prefix only: the package found is the installed one, no include
# path points into the source tree or the build tree, and nothing refers to the build tree.
sluice_dir=$(sed -n 's/^sluice_DIR:PATH=//p' "$work/build/CMakeCache.txt")
if [[ $sluice_dir != "$prefix"/* ]]; then
  echo "install_package: the consumer found sluice in '$sluice_dir', not in $prefix" >&2
  exit 1
fi
if grep -oE '(-I|-isystem )[^ ]+' "$work/build/compile_commands.json" |
   grep -qF -e "$SLUICE_SOURCE_DIR" -e "$SLUICE_BUILD_DIR"; then
  echo "install_package: the consumer compiles with an include path into Sluice's tree" >&2
  exit 1
fi
if grep -rqF "$SLUICE_BUILD_DIR" "$work/build/build.ninja" "$work/build/CMakeFiles/rules.ninja"; then
  echo "install_package: the consumer refers to Sluice's build tree" >&2
  exit 1
fi
ninja -C "$work/build" -j "${SLUICE_INSTALL_TEST_JOBS:-2}" >/dev/null

# sluice::sluice: 600 generated clicks (30 s of event time): per-page windows and user sessions,
# computed by the installed library.
out=$(timeout 120 "$work/build/clickstream" --clicks 600 --rate 0 --parallelism 2)
echo "$out" | grep -q "/home     \[00:00:00, 00:00:30)"
echo "$out" | grep -q "clicks, pages:"

# sluice::firehose: 1000 lines through three sinks (plain, gzip, zstd) into $work/lake.
out=$(timeout 120 "$work/build/firehose_host" "$work/lake")
expect firehose_host "$out" "firehose: plain: 1 file delivered
firehose: gz: 1 file delivered
firehose: zst: 1 file delivered"
plain=$(find "$work/lake" -path "$work/lake/.sluice-firehose" -prune -o -name 'plain-*' -print)
gz=$(find "$work/lake" -path "$work/lake/.sluice-firehose" -prune -o -name 'gz-*.gz' -print)
zst=$(find "$work/lake" -path "$work/lake/.sluice-firehose" -prune -o -name 'zst-*.zst' -print)
expect "lines of $plain" "$(wc -l <"$plain")" 1000
cmp <(gzip -dc "$gz") "$plain"
if command -v zstd >/dev/null; then cmp <(zstd -qdc "$zst") "$plain"; fi

# sluice::kinesis: a sink job and a source job against a closed port fail with Unavailable.
out=$(timeout 120 "$work/build/kinesis_host")
expect kinesis_host "$out" "kinesis: sink failed with Unavailable: connection refused
kinesis: source failed with Unavailable: connection refused"

# sluice::kafka: 100 records written with KafkaSink and read back with KafkaSource, through
# librdkafka's mock cluster (a program of the consumer project that links librdkafka itself).
coproc mock { exec "$work/build/kafka_mock_cluster" sluice-install:1; }
mock_pid=$mock_PID
bootstrap=""
read -r -t 30 bootstrap <&"${mock[0]}" || true
if [[ -z $bootstrap ]]; then
  echo "install_package: kafka_mock_cluster did not start" >&2
  exit 1
fi
out=$(timeout 120 "$work/build/kafka_host" "$bootstrap" sluice-install)
expect kafka_host "$out" "kafka: sink wrote 101 records
kafka: source read 100 records back in order"

echo "install_package: built clickstream, firehose_host, kafka_host and kinesis_host against" \
     "$prefix and ran them"
