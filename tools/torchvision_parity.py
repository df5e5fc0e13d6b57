#!/usr/bin/python3
"""cnnc's examples/resnet18.cnn and mobilenet_v2.cnn against torchvision's models.

  torchvision_parity.py weights MODEL.cnn OUT.npz [--gain G] [--cnnc PATH]
      seeded weights for every tensor of the model (numpy only), under the
      model's tensor names: what tools/cnnw.py from-npz takes
  torchvision_parity.py variant ARCH SIZE OUT.cnn [--train "S; S; ..."]
      examples/ARCH.cnn with its input at SIZExSIZE and, with --train,
      that train block (the training-step fixtures' models)
  torchvision_parity.py fixture ARCH SIZE N DIR [--cnnc PATH]
      N random SIZExSIZE images and torchvision's outputs for them
      (DIR/ARCH-SIZE.in.f32, .out.f32), with the same weights loaded into
      torchvision's ARCH (resnet18 or mobilenet_v2) through its state_dict
  torchvision_parity.py compare ARCH SIZE N [--cnnc PATH]
      the above, then cnnc's program on the same images: the largest
      relative difference (needs python3-torch and python3-torchvision)

The weights are drawn per tensor from numpy's generator seeded with the
CRC-32 of its name, so the test suite makes the same ones without torch and
the fixtures hold only images and outputs (resnet18's weights are 47 MB).
The names map by one rule, the table below: a label of the examples is
torchvision's module path with '_' for '.' (layer2_0_downsample_1 is
layer2.0.downsample.1), its tensors keep their suffix. load_state_dict runs
with strict=True, num_batches_tracked included, so every name and shape is
checked both ways. Outputs are softmax probabilities (cnnc's models end in
softmax; torchvision's in logits).
"""
import argparse
import os
import re
import subprocess
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import cnnw  # noqa: E402

# our tensor name -> torchvision's: the module path's '_' become '.'
NAME_MAP = [("_", ".")]


def torch_name(name):
    module, suffix = name.rsplit(".", 1)
    for a, b in NAME_MAP:
        module = module.replace(a, b)
    return module + "." + suffix


def seeded(name, shape, gain=4):
    """A tensor's values: scaled so that activations stay near 1 through
    the whole network, batch norms' statistics plausible; the classifier
    (an fc weight) gain times wider, so that the probabilities spread."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    suffix = name.rsplit(".", 1)[1]
    if suffix == "running_mean":
        return rng.uniform(-0.1, 0.1, shape).astype(np.float32)
    if suffix == "running_var":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if len(shape) == 1 and suffix == "weight":      # a batch norm's gamma
        return rng.uniform(0.9, 1.3, shape).astype(np.float32)
    if len(shape) == 1:                             # a bias, beta
        return rng.uniform(-0.1, 0.1, shape).astype(np.float32)
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0, (gain if len(shape) == 2 else 1) * fan_in ** -0.5, shape).astype(np.float32)


def weights(model, cnnc, gain=4):
    return {n: seeded(n, shape, gain) for n, shape in cnnw.model_tensors(model, cnnc)}


def variant(arch, size, path, train=None):
    """examples/ARCH.cnn with its input at size x size and, given train (a
    train block's statements, ';' between them), that train block"""
    src = os.path.join(os.path.dirname(__file__), "..", "examples", arch + ".cnn")
    text = re.sub(r"input \d+x\d+x3", "input %dx%dx3" % (size, size), open(src).read(), count=1)
    if train is not None:
        block = "train {\n%s}" % "".join("    %s\n" % t.strip() for t in train.split(";"))
        text = re.sub(r"train \{.*?\n\}", lambda m: block, text, flags=re.S)
    open(path, "w").write(text)
    return path


def torch_outputs(arch, w, x):
    import torch
    import torchvision
    torch.backends.mkldnn.enabled = False
    net = getattr(torchvision.models, arch)()
    state = {torch_name(n): torch.tensor(v) for n, v in w.items()}
    for n in list(state):
        if n.endswith(".running_var"):
            state[n[:-len("running_var")] + "num_batches_tracked"] = torch.tensor(0)
    net.load_state_dict(state, strict=True)
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        t = (torch.tensor(x).permute(0, 3, 1, 2) - mean) / std
        return torch.softmax(net(t), dim=1).numpy()


def images(n, size):
    rng = np.random.default_rng(size * 1000 + n)
    return rng.uniform(0, 1, (n, size, size, 3)).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a_w = sub.add_parser("weights")
    a_w.add_argument("model")
    a_w.add_argument("out")
    a_w.add_argument("--gain", type=float, default=4, help="the classifier's scale (default 4)")
    a_v = sub.add_parser("variant")
    a_v.add_argument("arch")
    a_v.add_argument("size", type=int)
    a_v.add_argument("out")
    a_v.add_argument("--train", help="the train block's statements, ';' between them")
    for name in ("fixture", "compare"):
        p = sub.add_parser(name)
        p.add_argument("arch", choices=["resnet18", "mobilenet_v2"])
        p.add_argument("size", type=int)
        p.add_argument("n", type=int)
        if name == "fixture":
            p.add_argument("dir")
    for p in (a_w, sub.choices["fixture"], sub.choices["compare"]):
        p.add_argument("--cnnc", help="the cnnc to read the model's tensors with")
    a = ap.parse_args()
    if a.cmd == "variant":
        variant(a.arch, a.size, a.out, a.train)
        return
    cnnc = cnnw.find_cnnc(a.cnnc)
    if a.cmd == "weights":
        np.savez(a.out, **weights(a.model, cnnc, a.gain))
        return
    tmp = "/tmp/cnnc-parity-%d" % os.getpid()
    os.makedirs(tmp, exist_ok=True)
    model = variant(a.arch, a.size, os.path.join(tmp, "%s-%d.cnn" % (a.arch, a.size)))
    w = weights(model, cnnc)
    x = images(a.n, a.size)
    want = torch_outputs(a.arch, w, x)
    if a.cmd == "fixture":
        base = os.path.join(a.dir, "%s-%d" % (a.arch, a.size))
        x.astype("<f4").tofile(base + ".in.f32")
        want.astype("<f4").tofile(base + ".out.f32")
        print("%s: %d images, top probabilities %s" % (base, a.n, want.max(1)))
        return
    np.savez(os.path.join(tmp, "w.npz"), **w)
    prog, out = os.path.join(tmp, "m"), os.path.join(tmp, "y.f32")
    tools = os.path.dirname(__file__)
    subprocess.run([sys.executable, os.path.join(tools, "cnnw.py"), "from-npz", "--cnnc", " ".join(cnnc),
                    os.path.join(tmp, "w.npz"), model, "-o", os.path.join(tmp, "w.cnnw")], check=True)
    subprocess.run(cnnc + [model, "-o", prog], check=True)
    x.astype("<f4").tofile(os.path.join(tmp, "x.f32"))
    subprocess.run([prog, "infer", "--weights", os.path.join(tmp, "w.cnnw"), "--input",
                    os.path.join(tmp, "x.f32"), "--output", out], check=True)
    got = np.fromfile(out, dtype="<f4").reshape(want.shape)
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-30)
    print("%s at %dx%d, %d images: max |diff| %.3g, max relative %.3g, top-1 agree %s"
          % (a.arch, a.size, a.size, a.n, np.abs(got - want).max(), rel.max(),
             bool((got.argmax(1) == want.argmax(1)).all())))


if __name__ == "__main__":
    main()
