#!/usr/bin/python3
"""write_cifar.py DIR: a small CIFAR-10 binary tree (data_batch_1.bin and
_2.bin of 30 records, test_batch.bin of 20), and the same images as 4-D IDX
files (train.images/labels, N x 32 x 32 x 3, channels last: the layout
converted here independently of cnnc), and a bad batch of 3074 bytes."""
import os
import struct
import sys

import numpy as np

d = sys.argv[1]
rng = np.random.default_rng(3)
os.makedirs(os.path.join(d, "cifar"), exist_ok=True)
os.makedirs(os.path.join(d, "bad"), exist_ok=True)
train_px, train_lab = [], []
for name, n in (("data_batch_1.bin", 30), ("data_batch_2.bin", 30), ("test_batch.bin", 20)):
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    planes = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)    # channel-major, as CIFAR
    rec = np.concatenate([labels[:, None], planes.reshape(n, -1)], axis=1)
    open(os.path.join(d, "cifar", name), "wb").write(rec.tobytes())
    if name != "test_batch.bin":
        train_px.append(planes.transpose(0, 2, 3, 1))
        train_lab.append(labels)
px, lab = np.concatenate(train_px), np.concatenate(train_lab)
open(os.path.join(d, "train.images"), "wb").write(struct.pack(">IIIII", 0x804, len(px), 32, 32, 3) + px.tobytes())
open(os.path.join(d, "train.labels"), "wb").write(struct.pack(">II", 0x801, len(lab)) + lab.tobytes())
open(os.path.join(d, "bad", "data_batch_1.bin"), "wb").write(bytes(3074))
