#!/usr/bin/env bash
# Sluice's one entry point for a fresh Debian 12 machine.
#
#   ./dev.sh demo    install what is missing, build, run the flagship example (examples/clickstream)
#   ./dev.sh test    install what is missing, build, run the whole test suite, then the
#                    runtime, integration and connector tests again under ThreadSanitizer
#   ./dev.sh build   install what is missing and build (build/)
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(g++ cmake ninja-build libboost-dev libabsl-dev librocksdb-dev libprotobuf-dev
          protobuf-compiler libgtest-dev libgmock-dev libbenchmark-dev librdkafka-dev
          libssl-dev zlib1g-dev libzstd-dev)
JOBS=${JOBS:-$(nproc)}

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # Node.js and npm run kinesalite, the Kinesis peer of the connector tests (any recent Node.js
  # will do; Debian's is used when the machine has none).
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build() {  # build DIR [cmake args...] [-- ninja targets...]
  local dir=$1; shift
  local args=() targets=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
  [ $# -gt 0 ] && shift && targets=("$@")
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${args[@]}" >/dev/null
  ninja -C "$dir" -j "$JOBS" "${targets[@]}"
}

case "${1:-}" in
  demo)
    install_packages
    # Only the library and the example (the test suite is ./dev.sh test's to build).
    build build -DSLUICE_BUILD_BENCHMARKS=ON -- clickstream
    echo "== running examples/clickstream"
    ./build/examples/clickstream
    ;;
  test)
    install_packages
    # A build of its own, compiled for compile time (-O1, no debug info: the heavy templates
    # compile about twice as fast); the micro-benchmarks are not tests (the Nexmark suite, which
    # the tests use, is built).
    build build-test -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -DNDEBUG" -DSLUICE_BUILD_BENCHMARKS=OFF
    ctest --test-dir build-test --output-on-failure -j "$JOBS" --timeout 600
    echo "== runtime, integration, connector, event-time and checkpoint tests under ThreadSanitizer"
    build build-tsan -DSLUICE_SANITIZE=thread -DSLUICE_BUILD_EXAMPLES=OFF -DSLUICE_BUILD_BENCHMARKS=OFF \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g -DNDEBUG" \
      -- runtime_test integration_test connectors_file_test connectors_socket_test time_test \
         checkpoint_job_test final_checkpoint_test
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp" \
      ctest --test-dir build-tsan -L 'runtime|integration|connectors|time|state' --output-on-failure -j "$JOBS" --timeout 900
    ;;
  build)
    install_packages
    build build -DSLUICE_BUILD_BENCHMARKS=ON
    ;;
  *)
    sed -n '2,8p' "$0"
    exit 2
    ;;
esac
