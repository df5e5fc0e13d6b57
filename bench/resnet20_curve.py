#!/usr/bin/python3
"""ResNet-20's first epoch, cnnc against PyTorch at equal settings.

  /usr/bin/python3 bench/resnet20_curve.py [IMAGES] [THREADS]

Data: the first IMAGES (10000) Fashion-MNIST training images, padded to
32x32 and repeated into 3 channels (no 32x32x3 data set is packaged for
Debian), written as IDX. Both sides start from the same weights (torchvision's
ResNet init: Kaiming normal convs, batch norms 1 and 0) and train one epoch
of examples/resnet20.cnn's train block: SGD lr 0.1, momentum 0.9, weight
decay 5e-4, batch 128, random crops (padding 4) and flips, shuffled. Their
random streams differ (shuffling, crops), so the curves agree in law, not
step for step. Prints the mean loss over the epoch so far at every tenth of
it, for both, and the seconds each took. Needs python3-torch and a built
cnnc (build/compiler/cnnc).
"""
import gzip
import os
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import cnnw  # noqa: E402
import gen_fixtures as G  # noqa: E402

torch.backends.mkldnn.enabled = False
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
THREADS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
BATCH, LR, MOM, WD = 128, 0.1, 0.9, 5e-4
CNNC = os.path.join(HERE, "..", "build", "compiler", "cnnc")
OUT = "/tmp/cnnc-resnet20-curve"
os.makedirs(OUT, exist_ok=True)


def fmnist_32x32x3(n):
    raw = gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").read()
    im = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    lab = np.frombuffer(gzip.open("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz").read(),
                        np.uint8, offset=8)[:n]
    im = np.pad(im, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(im[..., None], 3, axis=3), lab


def checkpoints(steps):
    return sorted({max(1, steps * k // 10) for k in range(1, 11)})


def main():
    images, labels = fmnist_32x32x3(N)
    G.write_idx(os.path.join(OUT, "data"), np.ascontiguousarray(images), np.ascontiguousarray(labels))
    layers = G.example_layers("resnet20")
    _, weights, _, logits = G.build(layers, (32, 32, 3), np.random.default_rng(0))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, t in weights:
            if t.dim() == 4:
                torch.nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")
            elif name.endswith("running_var") or (t.dim() == 1 and name.endswith(".weight") and "fc" not in name):
                t.fill_(1)
            elif t.dim() == 1 and "fc" not in name:
                t.zero_()
    cnnw.write_cnnw(os.path.join(OUT, "init.cnnw"), [(n, t.detach().numpy()) for n, t in weights])
    steps = (N + BATCH - 1) // BATCH
    marks = checkpoints(steps)

    # PyTorch
    torch.set_num_threads(THREADS)
    params = [t for _, t in weights if t.requires_grad]
    opt = torch.optim.SGD(params, lr=LR, momentum=MOM, weight_decay=WD)
    G.BN_TRAINING[0] = True
    rng = np.random.default_rng(1)
    order = rng.permutation(N)
    torch_curve, total, t0 = {}, 0.0, time.time()
    for s in range(steps):
        idx = order[s * BATCH:(s + 1) * BATCH]
        x = np.pad(images[idx], ((0, 0), (4, 4), (4, 4), (0, 0)))
        crops = np.empty((len(idx), 32, 32, 3), np.uint8)
        for i in range(len(idx)):
            dy, dx = rng.integers(0, 9, 2)
            crops[i] = x[i, dy:dy + 32, dx:dx + 32]
            if rng.random() < 0.5:
                crops[i] = crops[i, :, ::-1]
        xt = torch.tensor(crops, dtype=torch.float32).permute(0, 3, 1, 2) / 255
        opt.zero_grad()
        loss = F.cross_entropy(logits(xt), torch.tensor(labels[idx], dtype=torch.long))
        loss.backward()
        opt.step()
        total += loss.item()
        if s + 1 in marks:
            torch_curve[s + 1] = total / (s + 1)
    torch_secs = time.time() - t0

    # cnnc: the mean so far after k steps is what `train --steps k` reports
    prog = os.path.join(OUT, "resnet20")
    subprocess.run([CNNC, os.path.join(HERE, "..", "examples", "resnet20.cnn"), "-o", prog], check=True)
    cnnc_curve, cnnc_secs = {}, 0.0
    for k in marks:
        t0 = time.time()
        r = subprocess.run([prog, "train", "--images", os.path.join(OUT, "data.images"), "--labels",
                            os.path.join(OUT, "data.labels"), "--weights", os.path.join(OUT, "init.cnnw"),
                            "--steps", str(k), "--threads", str(THREADS)], capture_output=True, text=True, check=True)
        cnnc_curve[k] = float(r.stdout.split("loss")[1].split()[0])
        if k == marks[-1]:
            cnnc_secs = time.time() - t0
    print("resnet20, first epoch of %d images (%d steps of %d), %d threads" % (N, steps, BATCH, THREADS))
    print("%6s %12s %12s" % ("step", "cnnc", "pytorch"))
    for k in marks:
        print("%6d %12.4f %12.4f" % (k, cnnc_curve[k], torch_curve[k]))
    print("seconds for the epoch: cnnc %.1f, pytorch %.1f" % (cnnc_secs, torch_secs))


if __name__ == "__main__":
    main()
