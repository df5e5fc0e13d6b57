#!/bin/bash
# Installs what is needed, builds cnnc twice (plain, and with AddressSanitizer
# + UndefinedBehaviorSanitizer) and runs the whole test suite on both builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

# the fuzzers, a short repeatable run of each (test/fuzz/run.sh SECONDS for longer)
bash test/fuzz/run.sh ci

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCNNC_SANITIZE=ON
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs"
