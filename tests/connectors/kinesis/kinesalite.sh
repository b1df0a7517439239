#!/usr/bin/env bash
# Installs kinesalite (a Kinesis Data Streams emulator, npm package) for the Kinesis connector
# tests into <dir>/node_modules, once. Run by the CTest test `kinesis_install_kinesalite`
# (tests/connectors/kinesis/CMakeLists.txt) and by every test binary that needs kinesalite
# (kinesalite.h), which wait for each other through a lock:
#
#   tests/connectors/kinesis/kinesalite.sh <build dir>/tests/connectors/kinesis/kinesalite
#
# Nothing is installed globally. Needs node and npm on PATH and the npm registry reachable.
set -euo pipefail
dir=${1:?usage: kinesalite.sh <install dir>}
version=3.3.3
mkdir -p "$dir"
cd "$dir"
# Several test binaries may start at once: one installs, the others wait for it.
exec 9>install.lock
flock 9
if [ -f node_modules/kinesalite/package.json ] &&
   grep -q "\"version\": \"$version\"" node_modules/kinesalite/package.json; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "kinesalite.sh: npm not found (install Node.js and npm)" >&2
  exit 1
fi
[ -f package.json ] || echo '{"name": "sluice-kinesis-test-peer", "private": true}' > package.json
npm install --no-audit --no-fund --no-save --loglevel=error "kinesalite@$version"
test -f node_modules/kinesalite/package.json
