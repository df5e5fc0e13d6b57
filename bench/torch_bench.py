#!/usr/bin/python3
"""The PyTorch side of bench/run: the same networks, the same data, the same
settings and thread count, measured in the same way as cnnc's programs.

  torch_bench.py train-accuracy EPOCHS          LeNet-5 on Fashion-MNIST: test accuracy per epoch
  torch_bench.py speed MODEL THREADS            training and inference images/s, batch-1 latency

MODEL is lenet5 (Fashion-MNIST images) or vgg_small (synthetic 32x32x3 data).
Prints `key value` lines for bench/run to read.
"""
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"


def idx(name):
    d = gzip.open(os.path.join(DATA, name + ".gz")).read()
    magic = struct.unpack(">I", d[:4])[0]
    dims = struct.unpack(">%dI" % (magic & 0xFF), d[4:4 + 4 * (magic & 0xFF)])
    return np.frombuffer(d, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


class LeNet5(nn.Module):
    """examples/lenet5.cnn; the module names are the .cnn statement names."""
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class VGGSmall(nn.Module):
    """examples/vgg_small.cnn"""
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv4 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc1 = nn.Linear(4096, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = F.max_pool2d(F.relu(self.conv4(F.relu(self.conv3(x)))), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def train_accuracy(epochs):
    torch.manual_seed(1)
    torch.set_num_threads(1)
    xtr = torch.tensor(idx("train-images-idx3-ubyte"), dtype=torch.float32).unsqueeze(1) / 255
    ytr = torch.tensor(idx("train-labels-idx1-ubyte"), dtype=torch.long)
    xte = torch.tensor(idx("t10k-images-idx3-ubyte"), dtype=torch.float32).unsqueeze(1) / 255
    yte = torch.tensor(idx("t10k-labels-idx1-ubyte"), dtype=torch.long)
    model = LeNet5()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(xtr))
        model.train()
        for i in range(0, len(xtr), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(xtr[b]), ytr[b]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print("accuracy%d %.4f" % (epoch, acc), flush=True)


def timed(fn, min_seconds=2.0):
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        t = time.perf_counter() - t0
        if t >= min_seconds:
            return n / t


def speed(name, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if name == "lenet5":
        model, x = LeNet5(), torch.tensor(idx("train-images-idx3-ubyte")[:64],
                                          dtype=torch.float32).unsqueeze(1) / 255
    else:
        model, x = VGGSmall(), torch.rand(64, 3, 32, 32)
    y = torch.randint(0, 10, (64,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    print("train_ips %.1f" % (64 * timed(step)))
    model.eval()
    with torch.no_grad():
        print("infer_ips %.1f" % (64 * timed(lambda: torch.softmax(model(x), 1))))
        frozen = torch.jit.optimize_for_inference(torch.jit.script(model))
        print("infer_opt_ips %.1f" % (64 * timed(lambda: torch.softmax(frozen(x), 1))))
        one = x[:1].contiguous()
        lat = []
        for f in (model, frozen):
            for _ in range(200):
                f(one)
            ts = []
            for _ in range(2000):
                t0 = time.perf_counter()
                torch.softmax(f(one), 1)
                ts.append(time.perf_counter() - t0)
            lat.append(sorted(ts)[len(ts) // 2] * 1e6)
        print("latency_us %.1f" % lat[0])
        print("latency_opt_us %.1f" % lat[1])


if __name__ == "__main__":
    if sys.argv[1] == "train-accuracy":
        train_accuracy(int(sys.argv[2]))
    else:
        speed(sys.argv[2], int(sys.argv[3]))
