#!/usr/bin/env bash
# Install Sluice, then build and run a host application against the installed package.
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$SLUICE_BUILD_DIR" --prefix "$work/prefix" >/dev/null
# Internal runtime sources must not be installed; the public headers must be.
test -f "$work/prefix/include/sluice/sluice.h"
test ! -e "$work/prefix/include/runtime"
cmake -S "$SLUICE_SOURCE_DIR/tests/install/consumer" -B "$work/build" -G Ninja \
      -DCMAKE_PREFIX_PATH="$work/prefix" -DSLUICE_SOURCE_DIR="$SLUICE_SOURCE_DIR" >/dev/null
ninja -C "$work/build" >/dev/null
out=$("$work/build/clickstream" --clicks 600 --rate 0 --parallelism 2)
# 600 generated clicks (30 s of event time): per-page windows and user sessions, computed by the
# installed library.
echo "$out" | grep -q "/home     \[00:00:00, 00:00:30)"
echo "$out" | grep -q "clicks, pages:"
echo "install_package: built and ran clickstream against $work/prefix"
