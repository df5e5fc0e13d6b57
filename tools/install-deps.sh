#!/bin/bash
# Installs, from Debian 12's own packages, everything cnnc needs to build,
# test and run its demo. Run as root; safe to run again.
set -euo pipefail
packages=(
    build-essential cmake flex bison       # the compiler and its grammar
    llvm-19-dev llvm-19-tools              # LLVM's C API; lit and FileCheck for the tests
    zlib1g-dev                             # gzip'd IDX files
    libpng-dev libjpeg62-turbo-dev         # the pictures of `show`; PNG and JPEG image folders
    python3 python3-numpy                  # lit, tools/cnnw.py, test helpers
    python3-onnx libonnx-testdata          # tools/onnx2cnn.py, cnn2onnx.py; ONNX's conformance tests
    clang libclang-rt-14-dev               # libFuzzer, for test/fuzz
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user   # running cross-compiled models
    openmpi-bin libopenmpi-dev             # cnnc --mpi: training under mpirun (optional to build)
    dataset-fashion-mnist                  # the demo's and the accuracy checks' data
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi
