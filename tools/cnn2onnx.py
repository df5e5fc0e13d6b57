#!/usr/bin/python3
"""Exports a .cnn model and its weights as an ONNX model.

  cnn2onnx.py model.cnn [--weights W.cnnw] -o model.onnx [--opset 14] [--cnnc PATH]

The model is read as cnnc checked it (cnnc --emit-ir: every statement with
its inputs, resolved attributes and shape), so names, defaults and shapes are
the compiler's. The ONNX graph takes [N, C, H, W] float32 images (scaled to
[0, 1], as the program's), computes the model's inference (batch norms with
their running statistics, dropout as identity) and gives [N, outputs], or
[N, C, H, W] for a model that ends in a map. Each statement is a node of its
name (an act= or padmode=replicate adds one); tensors keep their .cnnw names
(conv1.weight ...), which are a PyTorch state_dict's. Weights come from
--weights; a model with trainable tensors needs them (`train --steps 1 --save
W` writes a file of any model). The file is checked with
onnx.checker.check_model(full_check=True) before it is written. Needs Python
3, numpy and python3-onnx.
"""
import argparse
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnnw  # noqa: E402

try:
    import onnx
    from onnx import helper, numpy_helper, TensorProto
except ImportError:
    sys.exit("cnn2onnx.py: needs python3-onnx (apt-get install python3-onnx)")


class Refused(Exception):
    pass


LINE = re.compile(r"^\s+%(\S+) = (\S+)(.*) : (\S+)(\s+#.*)?$")
ATTR = re.compile(r"(\w+)=\[([^\]]*)\]|(\w+)=(\S+)|(\w+)")


def parse_ir(text):
    """the forward statements of cnnc --emit-ir: (name, op, inputs, params, attrs, shape)"""
    nodes, on = [], False
    for line in text.splitlines():
        if line.strip() == "forward:":
            on = True
            continue
        if on and not line.startswith("    "):
            break
        if not on:
            continue
        m = LINE.match(line)
        if not m:
            raise Refused("cannot read cnnc's line: %s" % line.strip())
        name, op, rest, shape = m.group(1), m.group(2), m.group(3), m.group(4)
        inputs, params, attrs = [], [], {}
        refs = re.match(r"^((?:\s*[%@][^\s,]+,?)*)(.*)$", rest)
        for tok in re.findall(r"[%@][^\s,]+", refs.group(1)):
            (inputs if tok[0] == "%" else params).append(tok[1:])
        for m2 in ATTR.finditer(refs.group(2)):
            if m2.group(1):
                attrs[m2.group(1)] = [float(v) for v in m2.group(2).split()]
            elif m2.group(3):
                attrs[m2.group(3)] = m2.group(4)
            else:
                attrs[m2.group(5)] = True
        dims = [int(d) for d in shape.split("x")]
        nodes.append((name, op, inputs, params, attrs, dims))
    return nodes


def pair(v):
    h, w = v.split("x")
    return int(h), int(w)


class Builder:
    def __init__(self, tensors):
        self.nodes, self.inits, self.tensors = [], [], tensors
        self.count = 0

    def const(self, name, value, dtype=np.float32):
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def tensor(self, name, shape=None):
        if name not in self.tensors:
            raise Refused("the weights have no tensor '%s'" % name)
        v = self.tensors[name]
        return self.const(name, v if shape is None else v.reshape(shape))

    def node(self, op, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name


def act(b, kind, x, name, attrs):
    """an element-wise op of the language as ONNX nodes; the last is name"""
    if kind == "relu":
        return b.node("Relu", [x], name)
    if kind == "sigmoid":
        return b.node("Sigmoid", [x], name)
    if kind == "tanh":
        return b.node("Tanh", [x], name)
    if kind == "leaky_relu":
        return b.node("LeakyRelu", [x], name, alpha=float(attrs.get("alpha", 0.01)))
    if kind == "elu":
        return b.node("Elu", [x], name, alpha=float(attrs.get("alpha", 1.0)))
    if kind == "selu":
        return b.node("Selu", [x], name)
    if kind == "softplus":
        return b.node("Softplus", [x], name)
    if kind == "hardsigmoid":
        return b.node("HardSigmoid", [x], name, alpha=1 / 6, beta=0.5)
    if kind == "hardswish":
        return b.node("HardSwish", [x], name)
    if kind == "relu6":
        return b.node("Clip", [x, b.const(name + ".min", 0.0), b.const(name + ".max", 6.0)], name)
    if kind == "silu":
        s = b.node("Sigmoid", [x], name + "/sigmoid")
        return b.node("Mul", [x, s], name)
    if kind == "gelu":          # x * (1 + erf(x / sqrt 2)) * 0.5: onnx2cnn.py's pattern, PyTorch's export
        d = b.node("Div", [x, b.const(name + ".sqrt2", np.float32(2 ** 0.5))], name + "/div")
        e = b.node("Erf", [d], name + "/erf")
        a = b.node("Add", [e, b.const(name + ".one", np.float32(1))], name + "/add")
        m = b.node("Mul", [x, a], name + "/mul")
        return b.node("Mul", [m, b.const(name + ".half", np.float32(0.5))], name)
    raise Refused("statement '%s': %s has no ONNX form here" % (name, kind))


ACTS = {"relu", "sigmoid", "tanh", "leaky_relu", "elu", "selu", "softplus", "hardsigmoid", "hardswish",
        "relu6", "silu", "gelu"}


def window(attrs):
    kh, kw = pair(attrs["size"])
    sh, sw = pair(attrs["stride"])
    ph, pw = pair(attrs["pad"])
    return [kh, kw], [sh, sw], [ph, pw, ph, pw]


def check_ceil(name, attrs, in_dims):
    """PyTorch's (cnnc's) ceil_mode drops a last window that starts in the
    right padding; ONNX's keeps it: such a pool has no ONNX form"""
    (k, s, p) = window(attrs)
    for i in range(2):
        n = in_dims[i]
        o = -(-(n + 2 * p[i] - k[i]) // s[i]) + 1
        if (o - 1) * s[i] >= n + p[i]:
            raise Refused("statement '%s': ceil's last window starts in the padding, which ONNX's ceil_mode "
                          "keeps" % name)


def build(nodes, tensors):
    b = Builder(tensors)
    out, shapes = {}, {}
    names = {n[0] for n in nodes}
    for name, op, inputs, params, attrs, dims in nodes:
        shapes[name] = dims
        ins = [out[i] for i in inputs]
        if op == "input":
            x = "image"
            c = dims[2]
            if "mean" in attrs:
                x = b.node("Sub", [x, b.const(name + ".mean", np.reshape(attrs["mean"], (1, c, 1, 1)))], name + "/sub")
            if "std" in attrs:
                x = b.node("Div", [x, b.const(name + ".std", np.reshape(attrs["std"], (1, c, 1, 1)))], name + "/div")
            out[name] = x
            continue
        if op == "conv":
            k, s, p = window(attrs)
            x = ins[0]
            if attrs.get("padmode") == "replicate":
                pads = b.const(name + ".pads", [0, 0, p[0], p[1], 0, 0, p[2], p[3]], np.int64)
                x = b.node("Pad", [x, pads], name + "/pad", mode="edge")
                p = [0, 0, 0, 0]
            w = name + ".weight"
            if attrs.get("fixed"):
                m = int(attrs["kernels"])
                cin = shapes[inputs[0]][2] // int(attrs.get("groups", 1))
                b.const(w, np.reshape(attrs["weights"], (m, cin, k[0], k[1])))
                ws = [w]
            else:
                ws = [b.tensor(w)]
            if attrs.get("bias") == "true":
                ws.append(b.const(name + ".bias", np.zeros(int(attrs["kernels"]))) if attrs.get("fixed")
                          else b.tensor(name + ".bias"))
            dil = list(pair(attrs["dilation"])) if "dilation" in attrs else [1, 1]
            a = act_kind(attrs, name, names)
            y = b.node("Conv", [x] + ws, name, kernel_shape=k, strides=s, pads=p, dilations=dil,
                       group=int(attrs.get("groups", 1)))
            out[name] = y if a is None else act(b, a, y, name + "/" + a, {})
        elif op in ("maxpool", "avgpool"):
            k, s, p = window(attrs)
            extra = {}
            if attrs.get("ceil"):
                check_ceil(name, attrs, shapes[inputs[0]])
                extra["ceil_mode"] = 1
            if op == "avgpool":
                extra["count_include_pad"] = 1 if attrs.get("count_pad") else 0
            out[name] = b.node("MaxPool" if op == "maxpool" else "AveragePool", ins, name, kernel_shape=k,
                               strides=s, pads=p, **extra)
        elif op in ("globalavgpool", "globalmaxpool"):
            g = b.node("GlobalAveragePool" if op == "globalavgpool" else "GlobalMaxPool", ins, name + "/pool")
            out[name] = b.node("Flatten", [g], name, axis=1)
        elif op in ACTS:
            out[name] = act(b, op, ins[0], name, attrs)
        elif op == "batchnorm":
            c = dims[-1]
            if attrs.get("affine") == "true":
                gamma, beta = b.tensor(name + ".weight"), b.tensor(name + ".bias")
            else:
                gamma, beta = b.const(name + ".weight", np.ones(c)), b.const(name + ".bias", np.zeros(c))
            out[name] = b.node("BatchNormalization", [ins[0], gamma, beta, b.tensor(name + ".running_mean"),
                                                      b.tensor(name + ".running_var")], name,
                               epsilon=float(attrs.get("eps", 1e-5)), momentum=1 - float(attrs.get("momentum", 0.1)))
        elif op == "prelu":
            slope = b.tensor(name + ".weight", (-1,) if len(dims) == 1 else (-1, 1, 1))
            out[name] = b.node("PRelu", [ins[0], slope], name)
        elif op == "add":
            out[name] = b.node("Add" if len(ins) == 2 else "Sum", ins, name)
        elif op == "concat":
            out[name] = b.node("Concat", ins, name, axis=1)
        elif op == "flatten":
            out[name] = b.node("Flatten", ins, name, axis=1)
        elif op == "fc":
            ws = [b.tensor(name + ".weight")]
            if attrs.get("bias") == "true":
                ws.append(b.tensor(name + ".bias"))
            a = act_kind(attrs, name, names)
            y = b.node("Gemm", ins + ws, name, transB=1)
            out[name] = y if a is None else act(b, a, y, name + "/" + a, {})
        elif op == "dropout":
            out[name] = b.node("Identity", ins, name)     # inference: dropout does nothing
        elif op == "softmax":
            out[name] = b.node("Softmax", ins, name, axis=1)
        else:
            raise Refused("statement '%s': op %s has no ONNX form here" % (name, op))
    last = nodes[-1]
    return b, out[last[0]], last[5], nodes[0][5]


def act_kind(attrs, name, names):
    """a conv's or fc's act=, unless cnnc applies it as a statement of its
    own, NAME.ACT (the activations its kernels do not apply)"""
    a = attrs.get("act", "none")
    return None if a == "none" or "%s.%s" % (name, a) in names else a


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("-o", required=True, help="the .onnx file to write")
    ap.add_argument("--weights", help="the model's weights (.cnnw)")
    ap.add_argument("--opset", type=int, default=14, help="the ONNX opset (14 to 17; default 14)")
    ap.add_argument("--cnnc", help="the cnnc that reads the model (default: $CNNC, PATH, this checkout's build)")
    a = ap.parse_args()
    if not 14 <= a.opset <= 17:
        sys.exit("cnn2onnx.py: --opset %d: 14 to 17 are supported" % a.opset)
    if os.path.realpath(a.o) in {os.path.realpath(p) for p in (a.model, a.weights) if p}:
        sys.exit("cnn2onnx.py: the output '%s' is also an input" % a.o)
    cnnc = cnnw.find_cnnc(a.cnnc)
    r = subprocess.run(cnnc + ["--emit-ir", a.model], capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr.rstrip() or "cnn2onnx.py: cnnc failed on %s" % a.model)
    want = cnnw.model_tensors(a.model, cnnc)
    if a.weights:
        tensors = dict(cnnw.read_cnnw(a.weights))
        names = [n for n, _ in want]
        if list(tensors) != names or any(tensors[n].shape != s for n, s in want):
            sys.exit("cnn2onnx.py: %s: not the weights of %s (its tensors differ)" % (a.weights, a.model))
    elif want:
        sys.exit("cnn2onnx.py: %s has %d trainable tensors: give --weights W" % (a.model, len(want)))
    else:
        tensors = {}
    name = re.search(r"^graph (\S+) \{", r.stdout, re.M).group(1)
    try:
        b, y, out_dims, in_dims = build(parse_ir(r.stdout), tensors)
    except Refused as e:
        sys.exit("cnn2onnx.py: %s: %s" % (a.model, e))
    h, w, c = in_dims
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", c, h, w])
    yshape = ["N"] + ([out_dims[2], out_dims[0], out_dims[1]] if len(out_dims) == 3 else out_dims)
    b.nodes.append(helper.make_node("Identity", [y], ["output"], name="output"))
    g = helper.make_graph(b.nodes, name, [x], [helper.make_tensor_value_info("output", TensorProto.FLOAT, yshape)],
                          b.inits)
    m = helper.make_model(g, producer_name="cnnc", producer_version="cnn2onnx.py",
                          opset_imports=[helper.make_opsetid("", a.opset)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    cnnw.write_atomically(a.o, m.SerializeToString())


if __name__ == "__main__":
    main()
