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
  torchvision_parity.py onnx ARCH SIZE OUT.onnx [--cnnc PATH]
      torch.onnx.export of torchvision's ARCH with those weights, its input's
      normalization and a softmax (batch norms kept), the initializers'
      values left out: the graph alone (the ONNX tests' fixtures)
  torchvision_parity.py fill-onnx GRAPH.onnx OUT.onnx
      that graph with its initializers drawn again (numpy and python3-onnx)
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


def our_name(name):
    """torch_name's inverse: layer1.0.conv1.weight is our layer1_0_conv1.weight"""
    module, suffix = name.rsplit(".", 1)
    for a, b in NAME_MAP:
        module = module.replace(b, a)
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


def torch_net(arch, w):
    """torchvision's ARCH with the weights w (our names) loaded, in eval
    mode, wrapped in the input's normalization and a softmax: what cnnc's
    examples compute"""
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
    # the instance's forward, so that the module names stay torchvision's
    inner = net.forward
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    net.forward = lambda x: torch.softmax(inner((x - mean) / std), dim=1)
    return net


def torch_outputs(arch, w, x):
    import torch
    with torch.no_grad():
        return torch_net(arch, w)(torch.tensor(x).permute(0, 3, 1, 2)).numpy()


def export_onnx(arch, w, size, out):
    """torch.onnx.export of the wrapped net (batch norms kept, not folded:
    TrainingMode.PRESERVE in eval mode), its initializers then emptied: the
    graph alone, which fill_onnx completes from the seeded generator"""
    import onnx
    import torch
    torch.onnx.export(torch_net(arch, w), torch.zeros(1, 3, size, size), out, opset_version=13,
                      training=torch.onnx.TrainingMode.PRESERVE, input_names=["image"],
                      output_names=["probabilities"], dynamic_axes={"image": {0: "N"}, "probabilities": {0: "N"}})
    m = onnx.load(out)
    for t in m.graph.initializer:
        t.ClearField("raw_data")
        t.ClearField("float_data")
    onnx.save(m, out)


def fill_onnx(graph, out):
    """the emptied initializers of export_onnx's graph drawn again, under
    our names (numpy and python3-onnx only)"""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(graph)
    for t in m.graph.initializer:
        v = seeded(our_name(t.name), tuple(t.dims))
        t.CopyFrom(numpy_helper.from_array(v, t.name))
    onnx.save(m, out)


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
    a_o = sub.add_parser("onnx")
    a_o.add_argument("arch", choices=["resnet18", "mobilenet_v2"])
    a_o.add_argument("size", type=int)
    a_o.add_argument("out")
    a_f = sub.add_parser("fill-onnx")
    a_f.add_argument("graph")
    a_f.add_argument("out")
    for name in ("fixture", "compare"):
        p = sub.add_parser(name)
        p.add_argument("arch", choices=["resnet18", "mobilenet_v2"])
        p.add_argument("size", type=int)
        p.add_argument("n", type=int)
        if name == "fixture":
            p.add_argument("dir")
    for p in (a_w, a_o, sub.choices["fixture"], sub.choices["compare"]):
        p.add_argument("--cnnc", help="the cnnc to read the model's tensors with")
    a = ap.parse_args()
    if a.cmd == "variant":
        variant(a.arch, a.size, a.out, a.train)
        return
    if a.cmd == "fill-onnx":
        fill_onnx(a.graph, a.out)
        return
    cnnc = cnnw.find_cnnc(a.cnnc)
    if a.cmd == "onnx":
        model = variant(a.arch, a.size, "/tmp/cnnc-parity-%d.cnn" % os.getpid())
        export_onnx(a.arch, weights(model, cnnc), a.size, a.out)
        os.unlink(model)
        return
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
