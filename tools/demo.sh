#!/bin/bash
# The main job: install, build, compile examples/lenet5.cnn, train it on
# Fashion-MNIST (the train block's settings: 10 epochs of SGD), show the test
# accuracy and predict a few test images. EPOCHS=N shortens the training.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
data=/usr/share/datasets/fashion-mnist

echo; echo "== cnnc --shapes examples/lenet5.cnn"
build/compiler/cnnc --shapes examples/lenet5.cnn

echo; echo "== cnnc examples/lenet5.cnn -o build/lenet5"
build/compiler/cnnc examples/lenet5.cnn -o build/lenet5

echo; echo "== build/lenet5 train --data $data --save build/lenet5.cnnw --log build/lenet5.csv"
build/lenet5 train --data "$data" ${EPOCHS:+--epochs "$EPOCHS"} --save build/lenet5.cnnw \
    --log build/lenet5.csv

echo; echo "== build/lenet5 eval --weights build/lenet5.cnnw --data $data"
build/lenet5 eval --weights build/lenet5.cnnw --data "$data"

echo; echo "== build/lenet5 predict --weights build/lenet5.cnnw build/test{0,1,2}.pgm"
/usr/bin/python3 - <<'PY'
import gzip
names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
px = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()[16:]
lab = gzip.open("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").read()[8:]
for i in range(3):
    open("build/test%d.pgm" % i, "wb").write(b"P5\n28 28\n255\n" + px[i * 784:(i + 1) * 784])
    print("build/test%d.pgm is a %s (class %d)" % (i, names[lab[i]], lab[i]))
print("classes: " + ", ".join("%d %s" % (i, n) for i, n in enumerate(names)))
PY
build/lenet5 predict --weights build/lenet5.cnnw --top 3 build/test0.pgm build/test1.pgm build/test2.pgm

echo; echo "== what it learned: build/kernels.png, build/maps.png, build/curve.png"
build/lenet5 show kernels --weights build/lenet5.cnnw -o build/kernels.png > /dev/null
build/lenet5 show maps --weights build/lenet5.cnnw build/test0.pgm -o build/maps.png > /dev/null
build/lenet5 show curve build/lenet5.csv -o build/curve.png
ls -l build/kernels.png build/maps.png build/curve.png
