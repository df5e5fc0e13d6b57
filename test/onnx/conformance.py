#!/usr/bin/python3
"""ONNX's own backend test data, converted by tools/onnx2cnn.py and run by cnnc.

  conformance.py CNNC WORKDIR [DATA ...]

DATA are folders of ONNX backend tests (default: Debian's libonnx-testdata,
node/ and pytorch-converted/ under /usr/include/onnx/backend/test/data). A
test is a model.onnx and test_data_set_*/input_*.pb, output_0.pb. A test is
of a supported op when every node's op type is one onnx2cnn.py converts. Its
first input is the data; the others (a Conv's weights, a PRelu's slope, a
Clip's bounds) are its constants and become initializers, as an exported
model has them. The test then either converts and cnnc's program gives the
expected outputs within 1e-4 relative (PASS), or the converter refuses it
with a message naming the node (REFUSED), or it fails (FAIL: a wrong output,
a converted model cnnc rejects, a crash). Prints a line per test and the
counts; exits 1 if any failed.
"""
import glob
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import cnnw  # noqa: E402
import onnx2cnn  # noqa: E402

DATA = "/usr/include/onnx/backend/test/data"
SUPPORTED = set(onnx2cnn.HANDLERS) | {"Mul", "Erf"}     # Mul, Erf: as the parts of silu, gelu


def to_hwc(a):
    """ONNX's [N, C, ...] as cnnc's channels-last images"""
    if a.ndim <= 2:
        return a
    return np.moveaxis(a, 1, -1)


def close(got, want, rtol=1e-4):
    return got.shape == want.shape and bool(np.all(np.abs(got - want) <= rtol * np.abs(want) + rtol * 1e-2))


def run(cnnc, work, test):
    model = onnx.load(os.path.join(test, "model.onnx"))
    ops = {n.op_type for n in model.graph.node}
    if not ops <= SUPPORTED:
        return "OTHER", "ops %s" % " ".join(sorted(ops - SUPPORTED))
    sets = sorted(glob.glob(os.path.join(test, "test_data_set_*")))
    inits = {t.name for t in model.graph.initializer}
    data = [i for i in model.graph.input if i.name not in inits]
    for k, inp in enumerate(data[1:], 1):
        t = onnx.TensorProto()
        t.ParseFromString(open(os.path.join(sets[0], "input_%d.pb" % k), "rb").read())
        t.name = inp.name
        model.graph.initializer.append(t)
    try:
        text, tensors = onnx2cnn.convert(model, "m")
    except onnx2cnn.Refused as e:
        return "REFUSED", str(e)
    d = os.path.join(work, os.path.basename(test))
    os.makedirs(d, exist_ok=True)
    cnn = os.path.join(d, "m.cnn")
    open(cnn, "w").write(text)
    r = subprocess.run(cnnc + [cnn, "--inference-only", "-o", os.path.join(d, "prog")],
                       capture_output=True, text=True)
    if r.returncode:
        return "FAIL", "cnnc: " + r.stderr.strip().splitlines()[0]
    cnnw.write_cnnw(os.path.join(d, "w.cnnw"), cnnw.fit(tensors, test, cnn, cnnc))
    for s in sets:
        x = numpy_helper.to_array(onnx.load_tensor(os.path.join(s, "input_0.pb")))
        want = to_hwc(numpy_helper.to_array(onnx.load_tensor(os.path.join(s, "output_0.pb"))))
        to_hwc(x).astype("<f4").tofile(os.path.join(d, "x.f32"))
        r = subprocess.run([os.path.join(d, "prog"), "infer", "--weights", os.path.join(d, "w.cnnw"),
                            "--input", os.path.join(d, "x.f32"), "--output", os.path.join(d, "y.f32")],
                           capture_output=True, text=True)
        if r.returncode:
            return "FAIL", "infer: " + r.stderr.strip()
        got = np.fromfile(os.path.join(d, "y.f32"), dtype="<f4")
        if not close(got, want.reshape(-1).astype(np.float32)):
            diff = np.max(np.abs(got - want.reshape(-1))) if got.size == want.size else float("nan")
            return "FAIL", "%s: largest difference %.3g (%d floats, expected %d)" % (
                os.path.basename(s), diff, got.size, want.size)
    return "PASS", "%d data set%s" % (len(sets), "" if len(sets) == 1 else "s")


def main():
    cnnc, work = sys.argv[1].split(), sys.argv[2]
    folders = sys.argv[3:] or [os.path.join(DATA, "node"), os.path.join(DATA, "pytorch-converted")]
    tests = sorted(t for f in folders for t in glob.glob(os.path.join(f, "*"))
                   if os.path.exists(os.path.join(t, "model.onnx")))
    counts = {}
    for t in tests:
        try:
            status, why = run(cnnc, work, t)
        except Exception as e:      # noqa: BLE001 -- a crash of the converter is a failure
            status, why = "FAIL", "%s: %s" % (type(e).__name__, e)
        counts[status] = counts.get(status, 0) + 1
        if status != "OTHER":
            print("%-7s %s/%s: %s" % (status, os.path.basename(os.path.dirname(t)), os.path.basename(t), why))
    supported = counts.get("PASS", 0) + counts.get("REFUSED", 0) + counts.get("FAIL", 0)
    print("%d passed, %d refused by name, %d failed, of %d tests of supported ops; %d tests in the data set"
          % (counts.get("PASS", 0), counts.get("REFUSED", 0), counts.get("FAIL", 0), supported, len(tests)))
    sys.exit(1 if counts.get("FAIL") else 0)


if __name__ == "__main__":
    main()
