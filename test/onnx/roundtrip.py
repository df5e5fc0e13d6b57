#!/usr/bin/python3
"""cnn2onnx.py then onnx2cnn.py: the same model back.

  roundtrip.py CNNC WORKDIR MODEL.cnn ...

For each model: seeded weights for its tensors (tools/torchvision_parity.py's
generator), exported by cnn2onnx.py (which runs onnx.checker's full check),
imported again by onnx2cnn.py; the imported model must have the same tensors
under the same names and values, and its program must give the original's
outputs on random images within 1e-6 relative. Prints a line per model; exits
1 if any differs.
"""
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..", "..", "tools")
sys.path.insert(0, TOOLS)
import cnnw  # noqa: E402
import torchvision_parity  # noqa: E402


def sh(*args):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(" ".join(os.path.basename(a) for a in args[:2]) + ": " + (r.stderr.strip() or "failed"))
    return r.stdout


def check(cnnc, work, model):
    base = os.path.join(work, os.path.splitext(os.path.basename(model))[0])
    py = [sys.executable]
    tensors = cnnw.model_tensors(model, cnnc)
    w = {n: torchvision_parity.seeded(n, s, gain=1) for n, s in tensors}
    cnnw.write_cnnw(base + ".cnnw", [(n, w[n]) for n, _ in tensors])
    c = " ".join(cnnc)
    sh(*py, os.path.join(TOOLS, "cnn2onnx.py"), "--cnnc", c, model, "--weights", base + ".cnnw", "-o", base + ".onnx")
    sh(*py, os.path.join(TOOLS, "onnx2cnn.py"), "--cnnc", c, base + ".onnx", "-o", base + ".back.cnn",
       "--weights", base + ".back.cnnw")
    # ONNX has no fixed weights, nor batch norms without gamma and beta:
    # those come back as tensors, the others as they were
    back = dict(cnnw.read_cnnw(base + ".back.cnnw"))
    missing = [n for n, _ in tensors if n not in back]
    if missing:
        return "tensors %s are missing" % missing
    for n, _ in tensors:
        if not np.array_equal(back[n], w[n]):
            return "tensor %s differs" % n
    extra = len(back) - len(tensors)
    sh(*cnnc, model, "--inference-only", "-o", base + ".prog")
    sh(*cnnc, base + ".back.cnn", "--inference-only", "-o", base + ".back.prog")
    hwc = [int(d) for d in sh(*cnnc, "--shapes", model).split("input1", 1)[1].split()[1].split("x")]
    x = np.random.default_rng(7).uniform(0, 1, [3] + hwc).astype("<f4")
    x.tofile(base + ".x.f32")
    for prog, wts, y in ((base + ".prog", base + ".cnnw", base + ".y.f32"),
                         (base + ".back.prog", base + ".back.cnnw", base + ".back.y.f32")):
        sh(prog, "infer", "--weights", wts, "--input", base + ".x.f32", "--output", y)
    got, want = np.fromfile(base + ".back.y.f32", "<f4"), np.fromfile(base + ".y.f32", "<f4")
    if got.shape != want.shape or not np.all(np.abs(got - want) <= 1e-6 * np.abs(want) + 1e-8):
        return "outputs differ (largest difference %.3g)" % np.max(np.abs(got - want))
    onnx_nodes = len(__import__("onnx").load(base + ".onnx").graph.node)
    return "ok: %d tensors%s, %d ONNX nodes, %d outputs per image" % (
        len(tensors), " (and %d fixed or constant ones)" % extra if extra else "", onnx_nodes, want.size // 3)


def main():
    cnnc, work = sys.argv[1].split(), sys.argv[2]
    bad = 0
    for model in sys.argv[3:]:
        try:
            why = check(cnnc, work, model)
        except RuntimeError as e:
            why = str(e)
        bad += not why.startswith("ok")
        print("%s: %s" % (os.path.basename(model), why))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
