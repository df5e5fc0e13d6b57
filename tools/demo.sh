#!/bin/bash
# The main job: install, build, then show what cnnc makes of LeNet-5.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
echo
echo "== cnnc --shapes examples/lenet5.cnn"
build/compiler/cnnc --shapes examples/lenet5.cnn
