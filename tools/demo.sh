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
echo
echo "== cnnc examples/lenet5.cnn -o build/lenet5"
build/compiler/cnnc examples/lenet5.cnn -o build/lenet5
build/lenet5 --help || true
echo
echo "== three Fashion-MNIST test images as PGM (build/test*.pgm), for predict once training lands"
/usr/bin/python3 - <<'PY'
import gzip, struct
d = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()
for i in range(3):
    px = d[16 + i * 784:16 + (i + 1) * 784]
    open("build/test%d.pgm" % i, "wb").write(b"P5\n28 28\n255\n" + px)
PY
build/compiler/cnnc -c examples/lenet5.cnn -o build/lenet5.o
echo "(build/lenet5.o and build/lenet5.h are ready to embed; see examples/embed/)"
