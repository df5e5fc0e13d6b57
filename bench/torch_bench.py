#!/usr/bin/python3
"""The PyTorch side of bench/run: the same networks, the same data, the same
settings and thread count, measured in the same way as cnnc's programs.

  torch_bench.py train-accuracy EPOCHS          LeNet-5 on Fashion-MNIST: test accuracy per epoch
  torch_bench.py speed MODEL THREADS            training and inference images/s, batch-1 latency
  torch_bench.py infer-speed MODEL THREADS      inference images/s and batch-1 latency only
  torch_bench.py train-memory MODEL             peak RSS of a training process, 1 thread
  torch_bench.py resnet-accuracy EPOCHS THREADS examples/fmnist_resnet.cnn on Fashion-MNIST with
                                                its train block, torchvision's transforms

MODEL is lenet5 (Fashion-MNIST images), vgg_small or resnet20 (random 32x32x3
data, batch 64), mobilenet_v2 or resnet18 (torchvision's, random 224x224x3,
batch 8).
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


class Block(nn.Module):
    """torchvision's BasicBlock: two 3x3 convs with batch norms, a projection
    (1x1 conv + batch norm) where the size or the width changes"""
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet20(nn.Module):
    """examples/resnet20.cnn: a 3x3 stem of 16, three stages of three basic
    blocks (16, 32, 64 channels, projection shortcuts where the size halves),
    global average pool, fc 10"""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.stages(F.relu(self.bn(self.conv(x)))).mean((2, 3)))


class FmnistResNet(nn.Module):
    """examples/fmnist_resnet.cnn; the init is cnnc's: He-uniform convs and fc
    (kaiming_uniform_, relu gain), zero biases, batch norms 1 and 0"""
    def __init__(self, widths=(24, 48, 96)):
        super().__init__()
        self.conv = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        self.stages = nn.Sequential(Block(widths[0], widths[0], 1), Block(widths[0], widths[1], 2),
                                    Block(widths[1], widths[2], 2))
        self.fc = nn.Linear(widths[2], 10)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.fc(self.stages(F.relu(self.bn(self.conv(x)))).mean((2, 3)))


def resnet_accuracy(epochs, threads):
    """the train block of examples/fmnist_resnet.cnn: SGD lr 0.1, Nesterov
    momentum 0.9, weight decay 5e-4, batch 128, CosineAnnealingLR over the
    epochs, RandomCrop(28, padding=2) and RandomHorizontalFlip per image in a
    DataLoader (as a PyTorch user writes it), the test set after each epoch.
    The seconds include reading the data, as cnnc's run does."""
    import torchvision.transforms as T
    t0 = time.perf_counter()
    torch.manual_seed(1)
    torch.set_num_threads(threads)
    norm = T.Normalize([0.2860], [0.3530])
    aug = T.Compose([T.RandomCrop(28, padding=2), T.RandomHorizontalFlip(), norm])

    class Images(torch.utils.data.Dataset):
        def __init__(self, images, labels, transform):
            self.x = torch.tensor(idx(images)).unsqueeze(1)
            self.y = torch.tensor(idx(labels), dtype=torch.long)
            self.transform = transform

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.transform(self.x[i].float() / 255), self.y[i]
    train = torch.utils.data.DataLoader(Images("train-images-idx3-ubyte", "train-labels-idx1-ubyte", aug),
                                        batch_size=128, shuffle=True)
    test = Images("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", norm)
    xte = norm(test.x.float() / 255)
    model = FmnistResNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in train:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            acc = sum((model(xte[i:i + 1000]).argmax(1) == test.y[i:i + 1000]).sum().item()
                      for i in range(0, len(xte), 1000)) / len(xte)
        print("accuracy%d %.4f" % (epoch, acc), flush=True)
        print("seconds%d %.1f" % (epoch, time.perf_counter() - t0), flush=True)


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


def median_latency(f, one, seconds=2.0):
    """the median of 2000 single-image calls, or of those that fit in the
    time (at least 10), after 200 calls or a tenth of the time: as cnnc's
    bench command"""
    t0 = time.perf_counter()
    for _ in range(200):
        f(one)
        if time.perf_counter() - t0 >= seconds / 10:
            break
    ts, t0 = [], time.perf_counter()
    while len(ts) < 2000 and (len(ts) < 10 or time.perf_counter() - t0 < seconds):
        t = time.perf_counter()
        torch.softmax(f(one), 1)
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2] * 1e6


def network(name):
    """the model and its batch of inputs: 64 for the CIFAR-sized ones, 8 of
    224x224x3 for torchvision's ImageNet networks (inference only)"""
    if name == "lenet5":
        return LeNet5(), torch.tensor(idx("train-images-idx3-ubyte")[:64],
                                      dtype=torch.float32).unsqueeze(1) / 255
    if name in ("mobilenet_v2", "resnet18"):
        import torchvision
        return getattr(torchvision.models, name)(), torch.rand(8, 3, 224, 224)
    return {"vgg_small": VGGSmall, "resnet20": ResNet20}[name](), torch.rand(64, 3, 32, 32)


def speed(name, threads, train=True):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, x = network(name)
    n = len(x)
    y = torch.randint(0, 10, (n,))
    if train:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        print("train_ips %.1f" % (n * timed(step)))
    model.eval()
    with torch.no_grad():
        print("infer_ips %.1f" % (n * timed(lambda: torch.softmax(model(x), 1))))
        frozen = torch.jit.optimize_for_inference(torch.jit.script(model))
        print("infer_opt_ips %.1f" % (n * timed(lambda: torch.softmax(frozen(x), 1))))
        one = x[:1].contiguous()
        print("latency_us %.1f" % median_latency(model, one))
        print("latency_opt_us %.1f" % median_latency(frozen, one))


def train_memory(name, steps=20):
    """the peak resident memory (KiB) of a process that trains the model for
    some steps at batch 64 on one thread, and of the same process before the
    model was made (the interpreter and the libraries)"""
    import resource
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.set_num_threads(1)
    model, x = network(name)
    y = torch.randint(0, 10, (len(x),))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    print("train_rss_kib %d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print("base_rss_kib %d" % base)


if __name__ == "__main__":
    if sys.argv[1] == "train-accuracy":
        train_accuracy(int(sys.argv[2]))
    elif sys.argv[1] == "resnet-accuracy":
        resnet_accuracy(int(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "train-memory":
        train_memory(sys.argv[2])
    elif sys.argv[1] == "infer-speed":
        speed(sys.argv[2], int(sys.argv[3]), train=False)
    else:
        speed(sys.argv[2], int(sys.argv[3]))
