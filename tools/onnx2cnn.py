#!/usr/bin/python3
"""Converts an ONNX model to a .cnn model and its weights file.

  onnx2cnn.py model.onnx -o model.cnn [--weights model.cnnw] [--name NAME] [--cnnc PATH]

Reads the graph with Debian's python3-onnx (opsets up to 17), runs ONNX's shape
inference, and writes one .cnn statement per node (a Gemm after a map gets a
flatten before it). The initializers become the weights file's tensors, with
no transposes: ONNX's layouts are PyTorch's, which are .cnnw's. Each statement
is labelled with its node's name made readable (torch.onnx's scope
'/layer1/layer1.0/conv1/Conv' becomes layer1_0_conv1), so the tensors are
layer1_0_conv1.weight and the like.

The data input is the graph's one input that is not an initializer: batch
first, then channels, then up to two spatial dimensions ([N, C], [N, C, L] and
[N, C, H, W] become 1x1xC, 1xLxC and HxWxC, channels last as cnnc's programs
read them). A leading Sub and Div by per-channel constants (torchvision's
Normalize) become the input's mean= and std=.

What the language cannot say is refused, naming the node, its op and the
value that is not supported, and nothing is written: a converted model
computes what the ONNX graph computes, or there is none. The written model is
checked by cnnc (--emit-tensors) before it replaces anything. Needs Python 3,
numpy and python3-onnx.
"""
import argparse
import os
import re
import subprocess
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnnw  # noqa: E402

try:
    import onnx
    from onnx import numpy_helper
except ImportError:
    sys.exit("onnx2cnn.py: needs python3-onnx (apt-get install python3-onnx)")


class Refused(Exception):
    """The graph holds something the language cannot say; the message names it."""


def refuse(node, message):
    raise Refused("node '%s' (%s): %s" % (node.name or node.output[0], node.op_type, message))


def dims_list(v):
    return "[%s]" % " ".join(str(int(d)) for d in v)


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class Value:
    """An ONNX tensor as the model has it: the statement whose output it is,
    its ONNX dims (batch first) and whether cnnc holds it as a vector."""
    def __init__(self, label, dims, vector, pad=None):
        self.label, self.dims, self.vector = label, list(dims), vector
        self.pad = pad      # a Pad before a Conv: (mode, [ph, pw]), which the Conv takes

    @property
    def spatial(self):
        return len(self.dims) - 2


class Stmt:
    def __init__(self, label, op, args, inputs, arrays):
        self.label, self.op, self.args, self.inputs, self.arrays = label, op, args, inputs, arrays


# the input statement's name (every other statement is labelled)
RESERVED = {"input1"}

SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


def readable(name, op_type):
    """torch.onnx's '/layer1/layer1.0/conv1/Conv' as layer1_0_conv1: a scope
    that the next one repeats is dropped, and the op type at the end."""
    parts = [p for p in name.split("/") if p]
    parts = [p for i, p in enumerate(parts) if i + 1 == len(parts) or not parts[i + 1].startswith(p + ".")]
    if len(parts) > 1 and re.sub(r"_\d+$", "", parts[-1]) == op_type:
        parts = parts[:-1]
    label = re.sub(r"[^A-Za-z0-9]+", "_", "_".join(parts)).strip("_")
    if label and label[0].isdigit():
        label = "n" + label
    return label


class Converter:
    def __init__(self, model):
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception as e:      # noqa: BLE001 -- onnx raises several kinds
            raise Refused("shape inference failed: %s" % str(e).splitlines()[0])
        self.graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.consts = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.shapes = {}
        for vi in list(self.graph.value_info) + list(self.graph.output) + list(self.graph.input):
            t = vi.type.tensor_type
            if t.HasField("shape") and all(d.HasField("dim_value") or d.HasField("dim_param")
                                          for d in t.shape.dim):
                self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        self.values, self.stmts, self.labels = {}, [], set()
        self.input_stmt = None
        self.uses = {}
        for n in self.graph.node:
            for i in n.input:
                self.uses[i] = self.uses.get(i, 0) + 1
        for o in self.graph.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1

    # --- inputs of a node --------------------------------------------------

    def value(self, node, i):
        name = node.input[i]
        if name not in self.values:
            if name in self.consts:
                refuse(node, "input %d ('%s') is a constant, where the language needs a computed tensor"
                       % (i, name))
            refuse(node, "input '%s' is not computed by a node this model converts" % name)
        v = self.values[name]
        if v.pad and node.op_type != "Conv":
            refuse(node, "its input '%s' is a Pad's; a Pad is supported only before a Conv" % name)
        return v

    def map_value(self, node, i):
        v = self.value(node, i)
        if v.vector:
            refuse(node, "its input '%s' is a vector (%s); the op needs channels and spatial dimensions"
                   % (node.input[i], dims_list(v.dims)))
        return v

    def vector_value(self, node, i):
        """the input as a vector: a 1x1xC map (an [N, C] graph input) gets a flatten"""
        v = self.value(node, i)
        if v.vector:
            return v
        if len(v.dims) != 2:
            refuse(node, "its input '%s' is %s; the op needs [N, C]" % (node.input[i], dims_list(v.dims)))
        return self.emit(None, "flatten", [], [v], dims=v.dims, vector=True, label=v.label + "_flat")

    def const(self, node, i, optional=False):
        if i >= len(node.input) or not node.input[i]:
            if optional:
                return None
            refuse(node, "input %d is missing" % i)
        name = node.input[i]
        if name not in self.consts:
            refuse(node, "input %d ('%s') must be a constant (an initializer)" % (i, name))
        return self.consts[name]

    def out_dims(self, node, k=0):
        name = node.output[k]
        if name not in self.shapes:
            refuse(node, "the shape of its output '%s' is unknown after shape inference" % name)
        return self.shapes[name]

    # --- statements ---------------------------------------------------------

    def new_label(self, node, hint=None):
        base = hint or readable(node.name, node.op_type) or readable(node.output[0], node.op_type) \
            or node.op_type.lower()
        label, k = base, 1
        while label in self.labels or label in RESERVED:
            k += 1
            label = "%s_%d" % (base, k)
        self.labels.add(label)
        return label

    def emit(self, node, op, args, inputs, arrays=None, dims=None, vector=False, label=None):
        """a statement reading inputs (Values); its output becomes node's
        first output's Value (or, node None, a helper statement's)"""
        label = self.new_label(node, label)
        self.stmts.append(Stmt(label, op, args, inputs, arrays or {}))
        v = Value(label, dims if dims is not None else self.out_dims(node), vector)
        if node is not None:
            self.values[node.output[0]] = v
        return v

    def alias(self, node, v):
        self.values[node.output[0]] = v

    def only_output(self, node):
        for o in node.output[1:]:
            if o and self.uses.get(o):
                refuse(node, "its output '%s' is used; only the first output is supported" % o)

    # --- spatial attributes -------------------------------------------------

    def spatial_pair(self, node, v, values, name, fill=1):
        """an ONNX per-spatial-dim list as the language's H x W (1-D: fill x L)"""
        values = [int(x) for x in values]
        if len(values) != v.spatial:
            refuse(node, "%s %s does not fit a %d-D input" % (name, dims_list(values), v.spatial))
        return [fill] * (2 - len(values)) + values

    def pads(self, node, a, v, kernel, strides, dilations):
        """the symmetric padding per dimension, from pads= or auto_pad="""
        n = v.spatial
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            pads = [int(p) for p in a.get("pads", [0] * 2 * n)]
        elif auto == "VALID":
            pads = [0] * 2 * n
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = [], []
            for i in range(n):
                size = v.dims[2 + i]
                out = -(-size // strides[i])
                total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size, 0)
                small = total // 2
                begin.append(small if auto == "SAME_UPPER" else total - small)
                end.append(total - begin[-1])
            pads = begin + end
        else:
            refuse(node, "auto_pad %s is not supported" % auto)
        if len(pads) != 2 * n:
            refuse(node, "pads %s do not fit a %d-D input" % (dims_list(pads), n))
        if pads[:n] != pads[n:]:
            refuse(node, "asymmetric pads %s are not supported" % dims_list(pads))
        return pads[:n]


def hw(pair):
    return "%dx%d" % tuple(pair)


def num(x):
    """a float as the .cnn file writes it: the shortest text that reads back the same float32"""
    f = np.float32(x)
    for digits in range(6, 10):
        s = "%.*g" % (digits, f)
        if np.float32(s) == f:
            return s
    return repr(float(f))


# --- the ops: a handler per ONNX op type ------------------------------------

def do_conv(cv, node):
    x, w, b, a = cv.map_value(node, 0), cv.const(node, 1), cv.const(node, 2, optional=True), attrs(node)
    if w.ndim != x.spatial + 2:
        refuse(node, "weights of shape %s do not fit a %d-D input" % (dims_list(w.shape), x.spatial))
    kernel = list(w.shape[2:])
    if "kernel_shape" in a and list(a["kernel_shape"]) != kernel:
        refuse(node, "kernel_shape %s differs from the weights' %s" % (dims_list(a["kernel_shape"]), dims_list(kernel)))
    strides = [int(s) for s in a.get("strides", [1] * x.spatial)]
    dil = [int(d) for d in a.get("dilations", [1] * x.spatial)]
    pads = cv.pads(node, a, x, kernel, strides, dil)
    mode = "zero"
    if x.pad:
        mode, extra = x.pad
        if mode == "replicate" and any(pads):
            refuse(node, "pads %s after an edge Pad are not supported" % dims_list(pads))
        pads = [p + e for p, e in zip(pads, extra)]
    groups = int(a.get("group", 1))
    m = w.shape[0]
    if groups < 1 or x.dims[1] % groups or m % groups or w.shape[1] * groups != x.dims[1]:
        refuse(node, "weights of shape %s in %d group(s) do not fit an input of %d channels"
               % (dims_list(w.shape), groups, x.dims[1]))
    args = [str(m), "size=" + hw(cv.spatial_pair(node, x, kernel, "kernel_shape")),
            "stride=" + hw(cv.spatial_pair(node, x, strides, "strides")),
            "pad=" + hw(cv.spatial_pair(node, x, pads, "pads", fill=0))]
    if any(d != 1 for d in dil):
        args.append("dilation=" + hw(cv.spatial_pair(node, x, dil, "dilations")))
    if groups != 1:
        args.append("groups=%d" % groups)
    if mode == "replicate":
        args.append("padmode=replicate")
    arrays = {"weight": w.reshape((m, w.shape[1]) + tuple(cv.spatial_pair(node, x, kernel, "kernel_shape")))}
    if b is None:
        args.append("bias=false")
    else:
        arrays["bias"] = b.reshape(m)
    cv.emit(node, "conv", args, [x], arrays)


def do_pool(op):
    def handler(cv, node):
        x, a = cv.map_value(node, 0), attrs(node)
        cv.only_output(node)
        if int(a.get("storage_order", 0)) != 0:
            refuse(node, "storage_order 1 is not supported")
        kernel = [int(k) for k in a["kernel_shape"]]
        strides = [int(s) for s in a.get("strides", [1] * x.spatial)]
        dil = [int(d) for d in a.get("dilations", [1] * x.spatial)]
        if any(d != 1 for d in dil):
            refuse(node, "dilations %s are not supported in pools" % dims_list(dil))
        pads = cv.pads(node, a, x, kernel, strides, dil)
        if any(2 * p > k for p, k in zip(pads, kernel)):
            refuse(node, "pads %s more than half the window %s are not supported" % (dims_list(pads), dims_list(kernel)))
        args = [hw(cv.spatial_pair(node, x, kernel, "kernel_shape")),
                "stride=" + hw(cv.spatial_pair(node, x, strides, "strides")),
                "pad=" + hw(cv.spatial_pair(node, x, pads, "pads", fill=0))]
        if int(a.get("ceil_mode", 0)):
            # ONNX's ceil_mode keeps a last window that starts in the right
            # padding; PyTorch's (the language's) drops it
            for i in range(x.spatial):
                n, k, s, p = x.dims[2 + i], kernel[i], strides[i], pads[i]
                o = -(-(n + 2 * p - k) // s) + 1
                if (o - 1) * s >= n + p:
                    refuse(node, "ceil_mode with a last window that starts in the padding (dimension %d)" % i)
            args.append("ceil")
        if op == "avgpool" and int(a.get("count_include_pad", 0)):
            args.append("count_pad")
        cv.emit(node, op, args, [x])
    return handler


def do_global_pool(op):
    def handler(cv, node):
        x = cv.map_value(node, 0)
        cv.emit(node, op, [], [x], vector=True)
    return handler


def do_batchnorm(cv, node):
    x, a = cv.value(node, 0), attrs(node)
    cv.only_output(node)
    if int(a.get("training_mode", 0)):
        refuse(node, "training_mode 1 is not supported (export the model in eval mode)")
    scale, bias, mean, var = (cv.const(node, i) for i in range(1, 5))
    args = []
    eps = float(a.get("epsilon", 1e-5))
    if np.float32(eps) != np.float32(1e-5):
        args.append("eps=" + num(eps))
    momentum = 1 - float(a.get("momentum", 0.9))      # ONNX's weighs the old statistics
    if not (eps > 0 and 0 <= momentum <= 1):
        refuse(node, "epsilon %s, momentum %s are not supported" % (num(eps), num(1 - momentum)))
    if abs(momentum - 0.1) > 1e-7:
        args.append("momentum=" + num(momentum))
    c = x.dims[1]
    if any(t.size != c for t in (scale, bias, mean, var)):
        refuse(node, "its scale, bias, mean and variance must have %d values each" % c)
    arrays = {"weight": scale.reshape(c), "bias": bias.reshape(c),
              "running_mean": mean.reshape(c), "running_var": var.reshape(c)}
    cv.emit(node, "batchnorm", args, [x], arrays, vector=x.vector)


def do_act(op, check=None):
    """an element-wise op; check(cv, node, attrs) returns its positional
    arguments or refuses the attribute values the language does not have"""
    def handler(cv, node):
        x = cv.value(node, 0)
        args = check(cv, node, attrs(node)) if check else []
        cv.emit(node, op, args, [x], vector=x.vector)
    return handler


def near(a, b):
    return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))


def positive_alpha(default):
    """LeakyRelu's and Elu's alpha, the language's positional value: > 0"""
    def check(cv, node, a):
        alpha = float(a.get("alpha", default))
        if alpha <= 0:
            refuse(node, "alpha %s is not supported (it must be > 0)" % num(alpha))
        return [num(alpha)]
    return check


def check_selu(cv, node, a):
    for name, want in (("alpha", SELU_ALPHA), ("gamma", SELU_GAMMA)):
        if name in a and not near(a[name], want):
            refuse(node, "%s %s is not supported (only SELU's %s)" % (name, num(a[name]), num(want)))
    return []


def check_hardsigmoid(cv, node, a):
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    if not (near(alpha, 1 / 6) and near(beta, 0.5)):
        refuse(node, "alpha %s beta %s are not supported (only PyTorch's hardsigmoid, alpha 1/6 beta 0.5)"
               % (num(alpha), num(beta)))
    return []


def check_gelu(cv, node, a):
    approx = a.get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    if approx != "none":
        refuse(node, "approximate '%s' is not supported (only the exact gelu, with erf)" % approx)
    return []


def do_clip(cv, node):
    x, a = cv.value(node, 0), attrs(node)
    if cv.opset < 11:
        lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
    else:
        lo = cv.const(node, 1, optional=True)
        hi = cv.const(node, 2, optional=True)
        lo = -np.inf if lo is None else float(lo)
        hi = np.inf if hi is None else float(hi)
    if lo == 0 and hi == 6:
        op = "relu6"
    elif lo == 0 and hi == np.inf:
        op = "relu"
    else:
        refuse(node, "bounds [%s %s] are not supported (only [0 6], relu6, and [0 inf], relu)" % (num(lo), num(hi)))
    cv.emit(node, op, [], [x], vector=x.vector)


def per_channel(node, k, dims, what):
    """k broadcast over a tensor of dims (batch first) as one value per
    channel, or refused"""
    try:
        full = np.broadcast_to(k, [1] + list(dims[1:])).reshape(dims[1], -1)
    except ValueError:
        refuse(node, "%s of shape %s is not one value per channel of %s" % (what, dims_list(k.shape), dims_list(dims)))
    if not np.all(full == full[:, :1]):
        refuse(node, "%s of shape %s varies within a channel; only one value per channel is supported"
               % (what, dims_list(k.shape)))
    return full[:, 0].astype(np.float32)


def do_prelu(cv, node):
    x, slope = cv.value(node, 0), cv.const(node, 1)
    if cv.opset < 7 and slope.ndim == 1 and slope.size == x.dims[1] and len(x.dims) > 2:
        slope = slope.reshape((-1,) + (1,) * (len(x.dims) - 2))     # PRelu-6: one slope per channel
    cv.emit(node, "prelu", [], [x], {"weight": per_channel(node, slope, x.dims, "a slope")}, vector=x.vector)


def fc(cv, node, x, weight, bias):
    units = weight.shape[0]
    width = int(np.prod(x.dims[1:]))
    if weight.ndim != 2 or weight.shape[1] != width:
        refuse(node, "weights of shape %s do not fit an input of %d values" % (dims_list(weight.shape), width))
    arrays = {"weight": weight}
    args = [str(units)]
    if bias is None:
        args.append("bias=false")
    else:
        arrays["bias"] = bias
    cv.emit(node, "fc", args, [x], arrays, vector=True)


def row_bias(node, c, units):
    """a bias that Gemm or Add broadcasts over [N, units]: one value per unit"""
    c = np.asarray(c, dtype=np.float32)
    if c.ndim == 2 and c.shape[0] != 1:
        refuse(node, "a bias of shape %s differs per batch row" % dims_list(c.shape))
    try:
        return np.broadcast_to(c.reshape(c.shape[-1:] if c.ndim else ()), (units,)).copy()
    except ValueError:
        refuse(node, "a bias of shape %s does not broadcast to [%d]" % (dims_list(c.shape), units))


def do_gemm(cv, node):
    a = attrs(node)
    if int(a.get("transA", 0)):
        refuse(node, "transA 1 is not supported (the batch is the first dimension)")
    x, b = cv.vector_value(node, 0), cv.const(node, 1)
    w = (b if int(a.get("transB", 0)) else b.T) * np.float32(a.get("alpha", 1.0))
    c = cv.const(node, 2, optional=True)
    bias = None if c is None else row_bias(node, c * np.float32(a.get("beta", 1.0)), w.shape[0])
    fc(cv, node, x, np.ascontiguousarray(w, dtype=np.float32), bias)


def do_matmul(cv, node):
    x = cv.value(node, 0)
    if len(x.dims) != 2:
        refuse(node, "an input of rank %d is not supported (only [N, K] times a constant [K, M])" % len(x.dims))
    b = cv.const(node, 1)
    if b.ndim != 2:
        refuse(node, "a constant of rank %d is not supported (only [K, M])" % b.ndim)
    fc(cv, node, cv.vector_value(node, 0), np.ascontiguousarray(b.T, dtype=np.float32), None)


def do_add(cv, node):
    names = list(node.input)
    if all(n in cv.values for n in names):
        vs = [cv.values[n] for n in names]
        for n, v in zip(names[1:], vs[1:]):
            if v.dims != vs[0].dims:
                refuse(node, "inputs of shapes %s and %s: broadcasting is not supported"
                       % (dims_list(vs[0].dims), dims_list(v.dims)))
        pos = vs[1].label if len(vs) == 2 else "[%s]" % " ".join(v.label for v in vs[1:])
        cv.emit(node, "add", [pos], vs, vector=vs[0].vector)
        return
    if node.op_type == "Add" and len(names) == 2:
        k = 0 if names[1] in cv.consts else 1       # the computed one
        if names[1 - k] in cv.consts and names[k] in cv.values:
            v = cv.values[names[k]]
            s = next((s for s in cv.stmts if s.label == v.label), None)
            # a constant added to an fc's (or conv's) output: its bias
            if s and s.op in ("fc", "conv") and "bias=false" in s.args and cv.uses.get(names[k]) == 1:
                c = cv.consts[names[1 - k]]
                units = v.dims[1]
                if s.op == "conv":
                    if c.ndim != len(v.dims) or any(d != 1 for i, d in enumerate(c.shape) if i != 1):
                        refuse(node, "a constant of shape %s is not a per-channel bias" % dims_list(c.shape))
                    c = c.reshape(-1)
                s.arrays["bias"] = row_bias(node, c, units)
                s.args.remove("bias=false")
                cv.alias(node, v)
                return
    refuse(node, "adding a constant is supported only as the bias of the Gemm, MatMul or Conv before it")


def do_concat(cv, node):
    vs = [cv.value(node, i) for i in range(len(node.input))]
    axis = int(attrs(node).get("axis", 1))
    rank = len(vs[0].dims)
    if axis < 0:
        axis += rank
    if axis != 1:
        refuse(node, "axis %d is not supported (only the channels, axis 1)" % int(attrs(node).get("axis", 1)))
    if len({v.vector for v in vs}) != 1:
        refuse(node, "inputs of different kinds (vectors and maps)")
    pos = vs[1].label if len(vs) == 2 else "[%s]" % " ".join(v.label for v in vs[1:])
    cv.emit(node, "concat", [pos], vs, vector=vs[0].vector)


def flatten_value(cv, node, x):
    if x.vector:
        cv.alias(node, x)
    else:
        cv.emit(node, "flatten", [], [x], vector=True)


def do_flatten(cv, node):
    x = cv.value(node, 0)
    axis = int(attrs(node).get("axis", 1))
    if axis < 0:
        axis += len(x.dims)
    if axis != 1:
        refuse(node, "axis %d is not supported (only 1: the batch stays the first dimension)"
               % int(attrs(node).get("axis", 1)))
    flatten_value(cv, node, x)


def do_reshape(cv, node):
    x = cv.value(node, 0)
    cv.const(node, 1)
    out = cv.out_dims(node)
    if out == x.dims:
        cv.alias(node, x)
    elif len(out) == 2 and out[0] == x.dims[0] and out[1] == int(np.prod(x.dims[1:])) and out[1] > 0:
        flatten_value(cv, node, x)
    else:
        refuse(node, "reshaping %s to %s is not supported (only the Reshape that flattens to [N, C*H*W])"
               % (dims_list(x.dims), dims_list(out)))


def do_dropout(cv, node):
    x = cv.value(node, 0)
    cv.only_output(node)
    a = attrs(node)
    ratio = a.get("ratio", 0.5) if cv.opset < 12 else cv.const(node, 1, optional=True)
    ratio = 0.5 if ratio is None else float(ratio)
    training = cv.const(node, 2, optional=True) if cv.opset >= 12 else None
    if training is not None and bool(training):
        refuse(node, "training_mode true is not supported (a converted model is in inference form)")
    if not 0 <= ratio < 1:
        refuse(node, "ratio %s is not supported (0 <= ratio < 1)" % num(ratio))
    if ratio == 0:
        cv.alias(node, x)
    else:
        cv.emit(node, "dropout", [num(ratio)], [x], vector=x.vector)


def do_identity(cv, node):
    if node.input[0] in cv.consts:
        cv.consts[node.output[0]] = cv.consts[node.input[0]]
    else:
        cv.alias(node, cv.value(node, 0))


def do_softmax(cv, node):
    x = cv.value(node, 0)
    axis = int(attrs(node).get("axis", 1 if cv.opset < 13 else -1))
    rank = len(x.dims)
    if (axis + rank if axis < 0 else axis) != 1 or rank != 2:
        refuse(node, "a softmax over axis %d of a rank-%d tensor is not supported (only over C of [N, C])"
               % (axis, rank))
    cv.emit(node, "softmax", [], [cv.vector_value(node, 0)], vector=True)


def do_normalize(cv, node):
    """Sub then Div by per-channel constants, on the graph's input: the
    input's mean= and std= (torchvision's Normalize, as the language has it)"""
    x = cv.values.get(node.input[0])
    s = cv.input_stmt
    if x is None or s is None or x.label != s.label or node.input[1] not in cv.consts \
            or cv.uses.get(node.input[0]) != 1:
        refuse(node, "%s is supported only as the input's normalization, (x - mean) / std" % node.op_type)
    per = per_channel(node, cv.consts[node.input[1]], x.dims, "a constant")
    key = "mean" if node.op_type == "Sub" else "std"
    if key in s.arrays or (key == "mean" and "std" in s.arrays):
        refuse(node, "%s is supported only as the input's normalization, (x - mean) / std" % node.op_type)
    s.arrays[key] = per
    cv.alias(node, x)


def do_pad(cv, node):
    """a Pad of the spatial dimensions before a Conv: mode edge is the
    conv's padmode=replicate, zeros add to its pads"""
    x, a = cv.map_value(node, 0), attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = [int(p) for p in (a.get("pads", []) if cv.opset < 11 else cv.const(node, 1))]
    value = float(a.get("value", 0.0)) if cv.opset < 11 else cv.const(node, 2, optional=True)
    value = 0.0 if value is None else float(value)
    r = len(x.dims)
    if len(pads) != 2 * r or any(pads[i] for i in (0, 1, r, r + 1)):
        refuse(node, "pads %s: only the spatial dimensions may be padded" % dims_list(pads))
    begin, end = pads[2:r], pads[r + 2:]
    if begin != end or any(p < 0 for p in begin):
        refuse(node, "asymmetric pads %s are not supported" % dims_list(pads))
    users = [n for n in cv.graph.node if node.output[0] in n.input]
    if len(users) != 1 or users[0].op_type != "Conv":
        refuse(node, "a Pad is supported only before a Conv, which takes it")
    if mode == "edge":
        kind = "replicate"
    elif mode == "constant" and value == 0:
        kind = "zero"
    else:
        refuse(node, "mode %s%s is not supported (only edge, and constant 0)"
               % (mode, " value %s" % num(value) if mode == "constant" else ""))
    cv.values[node.output[0]] = Value(x.label, cv.out_dims(node), False,
                                      (kind, [0] * (2 - len(begin)) + [int(p) for p in begin]))


def do_constant(cv, node):
    a = attrs(node)
    if "value" not in a:
        refuse(node, "only a Constant with a tensor value is supported")
    cv.consts[node.output[0]] = numpy_helper.to_array(a["value"])


HANDLERS = {
    "Conv": do_conv,
    "MaxPool": do_pool("maxpool"), "AveragePool": do_pool("avgpool"),
    "GlobalAveragePool": do_global_pool("globalavgpool"), "GlobalMaxPool": do_global_pool("globalmaxpool"),
    "BatchNormalization": do_batchnorm,
    "Relu": do_act("relu"), "Sigmoid": do_act("sigmoid"), "Tanh": do_act("tanh"),
    "LeakyRelu": do_act("leaky_relu", positive_alpha(0.01)), "Elu": do_act("elu", positive_alpha(1.0)),
    "Selu": do_act("selu", check_selu), "Softplus": do_act("softplus"),
    "HardSigmoid": do_act("hardsigmoid", check_hardsigmoid), "HardSwish": do_act("hardswish"),
    "Gelu": do_act("gelu", check_gelu), "Silu": do_act("silu"),
    "Clip": do_clip, "PRelu": do_prelu,
    "Gemm": do_gemm, "MatMul": do_matmul, "Add": do_add, "Sum": do_add, "Concat": do_concat,
    "Flatten": do_flatten, "Reshape": do_reshape, "Dropout": do_dropout, "Identity": do_identity,
    "Softmax": do_softmax, "Pad": do_pad, "Sub": do_normalize, "Div": do_normalize, "Constant": do_constant,
}


# --- patterns: several ONNX nodes that are one op of the language ------------

def scalar(cv, name):
    v = cv.consts.get(name)
    return float(v) if v is not None and v.size == 1 else None


def fuse_patterns(cv, nodes):
    """x * sigmoid(x) (silu), x * hardsigmoid(x) (hardswish) and the erf form
    of gelu, x * (1 + erf(x / sqrt 2)) * 0.5, as one node each"""
    made = {n.output[0]: n for n in nodes}
    consumers = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in nodes:
        if n.op_type == "Constant":
            do_constant(cv, n)
    gone, fused = set(), {}

    def only_use(name):
        return cv.uses.get(name) == 1

    def other(n, name):
        return n.input[1] if n.input[0] == name else n.input[0]

    for mul in nodes:
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        for k in (0, 1):
            x, g = mul.input[1 - k], made.get(mul.input[k])
            if g is None or not g.input or not only_use(g.output[0]) or g.input[0] != x:
                continue
            if g.op_type == "Sigmoid":
                fused[mul.output[0]] = ("Silu", x, mul)
                gone.add(id(g))
            elif g.op_type == "HardSigmoid" and check_hardsigmoid_ok(g):
                fused[mul.output[0]] = ("HardSwish", x, mul)
                gone.add(id(g))
    for erf in nodes:
        if erf.op_type != "Erf":
            continue
        div = made.get(erf.input[0])
        if div is None or not only_use(div.output[0]):
            continue
        x = div.input[0]
        d = scalar(cv, div.input[1])
        if not ((div.op_type == "Div" and d and near(d, 2 ** 0.5)) or
                (div.op_type == "Mul" and d and near(d, 2 ** -0.5))):
            continue
        adds = consumers.get(erf.output[0], [])
        if len(adds) != 1 or adds[0].op_type != "Add" or scalar(cv, other(adds[0], erf.output[0])) != 1.0:
            continue
        add = adds[0]
        muls = consumers.get(add.output[0], [])
        if len(muls) != 1 or muls[0].op_type != "Mul":
            continue
        m1 = muls[0]
        if other(m1, add.output[0]) == x:          # (x * (1 + erf)) * 0.5
            halves = consumers.get(m1.output[0], [])
            if len(halves) == 1 and halves[0].op_type == "Mul" and \
                    scalar(cv, other(halves[0], m1.output[0])) == 0.5:
                fused[halves[0].output[0]] = ("Gelu", x, halves[0])
                gone.update({id(div), id(erf), id(add), id(m1)})
        else:                                       # (x * 0.5) * (1 + erf)
            h = made.get(other(m1, add.output[0]))
            if h is not None and h.op_type == "Mul" and only_use(h.output[0]) and x in h.input and \
                    scalar(cv, other(h, x)) == 0.5:
                fused[m1.output[0]] = ("Gelu", x, m1)
                gone.update({id(div), id(erf), id(add), id(h)})
    out = []
    for n in nodes:
        if id(n) in gone or n.op_type == "Constant":
            continue
        if n.output[0] in fused:
            op, x, last = fused[n.output[0]]
            n = onnx.helper.make_node(op, [x], [last.output[0]], name=last.name)
        out.append(n)
    return out


def check_hardsigmoid_ok(node):
    a = attrs(node)
    return near(a.get("alpha", 0.2), 1 / 6) and near(a.get("beta", 0.5), 0.5)


def live_nodes(graph, nodes):
    """the nodes the graph's outputs depend on, in the graph's order"""
    made = {o: n for n in nodes for o in n.output}
    need, seen = [o.name for o in graph.output], set()
    while need:
        n = made.get(need.pop())
        if n is not None and id(n) not in seen:
            seen.add(id(n))
            need.extend(n.input)
    return [n for n in nodes if id(n) in seen]


def convert(model, name):
    """the .cnn text and the tensors (name -> array) of an ONNX model"""
    cv = Converter(model)
    g = cv.graph
    if len(g.output) != 1:
        raise Refused("the graph has %d outputs; a model has one" % len(g.output))
    inputs = [i for i in g.input if i.name not in cv.consts]
    if len(inputs) != 1:
        raise Refused("the graph has %d inputs that are not initializers (%s); a model has one"
                      % (len(inputs), " ".join("'%s'" % i.name for i in inputs) or "none"))
    inp = inputs[0]
    if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise Refused("input '%s' is %s; only float32 inputs are supported"
                      % (inp.name, onnx.TensorProto.DataType.Name(inp.type.tensor_type.elem_type)))
    dims = cv.shapes.get(inp.name)
    if dims is None or not 2 <= len(dims) <= 4 or any(d <= 0 for d in dims[1:]):
        raise Refused("input '%s' has shape %s; only [N, C], [N, C, L] and [N, C, H, W] with known C, L, H, W"
                      " are supported" % (inp.name, dims_list(dims or [])))
    cv.input_name = inp.name
    cv.input_stmt = Stmt("input1", "input", [], [], {})
    cv.stmts.append(cv.input_stmt)
    cv.values[inp.name] = Value("input1", dims, False)
    spatial = dims[2:]
    cv.input_hwc = [1] * (2 - len(spatial)) + spatial + [dims[1]]
    for node in live_nodes(g, fuse_patterns(cv, list(g.node))):
        handler = HANDLERS.get(node.op_type)
        if handler is None or node.domain not in ("", "ai.onnx"):
            refuse(node, "op %s is not supported" % node.op_type)
        handler(cv, node)
    out = g.output[0].name
    if out not in cv.values:
        raise Refused("the graph's output '%s' is a constant" % out)
    if cv.values[out].label != cv.stmts[-1].label:
        raise Refused("the graph's output '%s' is not its last node's" % out)
    for s in cv.stmts[:-1]:
        if s.op == "softmax":
            raise Refused("'%s': a softmax is supported only as the model's last node" % s.label)
    return write_cnn(cv, name, model)


def write_cnn(cv, name, model):
    lines = ["# Converted from ONNX by tools/onnx2cnn.py (producer: %s %s, opset %d)."
             % (model.producer_name or "unknown", model.producer_version, cv.opset),
             "model %s {" % name]
    tensors = {}
    prev = None
    for s in cv.stmts:
        if s.op == "input":
            line = "input " + "x".join(str(d) for d in cv.input_hwc)
            for key in ("mean", "std"):
                if key in s.arrays:
                    line += " %s=[%s]" % (key, " ".join(num(v) for v in s.arrays[key]))
        else:
            line = "%s: %s" % (s.label, " ".join([s.op] + s.args))
            if s.inputs and s.inputs[0].label != prev:
                line += " from=%s" % s.inputs[0].label
            for suffix, arr in s.arrays.items():
                tensors["%s.%s" % (s.label, suffix)] = np.ascontiguousarray(arr, dtype=np.float32)
        lines.append("    " + line)
        prev = s.label
    lines.append("}")
    return "\n".join(lines) + "\n", tensors


def model_name(path, graph_name):
    n = re.sub(r"[^A-Za-z0-9_]+", "_", os.path.splitext(os.path.basename(path))[0]).strip("_")
    if not n or n[0].isdigit():
        n = "m" + n
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("onnx")
    ap.add_argument("-o", required=True, help="the .cnn file to write")
    ap.add_argument("--weights", help="the .cnnw file to write the initializers to")
    ap.add_argument("--name", help="the model's name (default: the output's base name)")
    ap.add_argument("--cnnc", help="the cnnc that checks the model (default: $CNNC, PATH, this checkout's build)")
    a = ap.parse_args()
    outs = [os.path.realpath(p) for p in (a.o, a.weights) if p]
    if os.path.realpath(a.onnx) in outs or len(set(outs)) != len(outs):
        sys.exit("onnx2cnn.py: an output is also an input or the other output")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = onnx.load(a.onnx)
        if not model.HasField("graph"):
            sys.exit("onnx2cnn.py: %s: not an ONNX model (no graph)" % a.onnx)
    except OSError as e:
        sys.exit("onnx2cnn.py: %s: %s" % (a.onnx, e.strerror))
    except Exception as e:      # noqa: BLE001 -- protobuf's DecodeError and others
        sys.exit("onnx2cnn.py: %s: not an ONNX model (%s)" % (a.onnx, str(e).splitlines()[0] if str(e) else
                                                              type(e).__name__))
    try:
        text, tensors = convert(model, a.name or model_name(a.o, model.graph.name))
    except Refused as e:
        sys.exit("onnx2cnn.py: %s: %s" % (a.onnx, e))
    except Exception as e:      # noqa: BLE001 -- a malformed graph: a missing attribute, a bad tensor
        sys.exit("onnx2cnn.py: %s: a malformed graph (%s: %s)" % (a.onnx, type(e).__name__,
                                                                  str(e).splitlines()[0] if str(e) else ""))
    # checked by cnnc before anything is replaced
    target = os.path.realpath(a.o)
    tmp = "%s.tmp%d.cnn" % (target, os.getpid())
    try:
        with open(tmp, "w") as f:
            f.write(text)
        want = checked_tensors(cnnw.find_cnnc(a.cnnc), tmp, a.o)
    except Refused as e:
        sys.exit("onnx2cnn.py: %s: %s" % (a.onnx, e))
    finally:
        os.unlink(tmp)
    for name, shape in want:
        if name not in tensors or tuple(tensors[name].shape) != shape:
            sys.exit("onnx2cnn.py: %s: the tensor '%s' is %s, where the model needs %s" % (
                a.onnx, name, dims_list(tensors[name].shape) if name in tensors else "missing",
                dims_list(shape)))
    if a.weights:
        cnnw.write_cnnw(a.weights, [(n, tensors[n]) for n, _ in want])
    cnnw.write_atomically(a.o, text.encode())


def checked_tensors(cnnc, path, shown):
    """the model's tensors as cnnc names them, or its first error, refused"""
    r = subprocess.run(cnnc + ["--emit-tensors", path], capture_output=True, text=True)
    if r.returncode:
        lines = r.stderr.strip().splitlines() or ["cnnc failed"]
        first = next((line for line in lines if "error:" in line), lines[0])
        raise Refused("cnnc refuses the converted model: %s" % first.replace(path, shown))
    return [(name, tuple(int(d) for d in dims.split("x"))) for name, dims in
            (line.split() for line in r.stdout.splitlines())]


if __name__ == "__main__":
    main()
