#!/bin/bash
# test/fuzz/run.sh [SECONDS]: builds the libFuzzer harnesses with clang (and
# ASan + UBSan) and runs each for SECONDS (default 60) from its committed seed
# corpus in test/fuzz/corpus/NAME. With SECONDS=ci each runs a fixed number of
# inputs from a fixed seed instead (about 20 s each), so that CI is repeatable. New inputs go to a scratch copy; a crash
# leaves its input in build-fuzz/crashes/ and fails the run, to be added to
# the regression tests. Prints each harness's execution count.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCNNC_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_cnn fuzz_cnnw fuzz_idx fuzz_pnm fuzz_cifar fuzz_image >/dev/null
mkdir -p build-fuzz/crashes
status=0
for name in cnn cnnw idx pnm cifar image; do
    work=build-fuzz/corpus-$name
    rm -rf "$work" && mkdir -p "$work" && cp test/fuzz/corpus/$name/* "$work"/
    if [ "$seconds" = ci ]; then
        limit="-seed=1 -runs=$(case $name in cnn) echo 150000;; cnnw) echo 2000000;; image) echo 20000;; *) echo 80000;; esac)"
    else
        limit="-max_total_time=$seconds"
    fi
    # shellcheck disable=SC2086
    if ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=64 build-fuzz/test/fuzz/fuzz_$name "$work" $limit \
         -max_len=65536 -timeout=10 -rss_limit_mb=2048 -artifact_prefix=build-fuzz/crashes/$name- \
         -print_final_stats=1 > build-fuzz/fuzz_$name.log 2>&1; then
        runs=$(awk '/stat::number_of_executed_units/ { print $2 }' build-fuzz/fuzz_$name.log)
        echo "fuzz_$name: $runs executions, no crash"
    else
        echo "fuzz_$name: FAILED, see build-fuzz/fuzz_$name.log and build-fuzz/crashes/"
        tail -20 build-fuzz/fuzz_$name.log
        status=1
    fi
done
exit $status
