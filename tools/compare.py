#!/usr/bin/python3
"""Compares two float32 files within a relative tolerance, as llm.c's check_tensor.

  compare.py got.f32 want.f32 [rtol]
  compare.py got.cnnw want.cnnw [rtol]     (every tensor, in file order)

|got - want| <= rtol * |want| + rtol * 1e-2 (a floor for values near zero).
Prints the first mismatches and the largest difference; exits 1 on mismatch.
"""
import os
import sys

import numpy as np

def load(path):
    if path.endswith(".cnnw"):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import cnnw
        return np.concatenate([a.ravel() for _, a in cnnw.read_cnnw(path)])
    return np.fromfile(path, dtype="<f4")


got, want = load(sys.argv[1]), load(sys.argv[2])
rtol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
if got.shape != want.shape:
    sys.exit("compare.py: %d floats, expected %d" % (got.size, want.size))
diff = np.abs(got.astype(np.float64) - want)
bad = np.nonzero(diff > rtol * np.abs(want) + rtol * 1e-2)[0]
for i in bad[:5]:
    print("mismatch at %d: got %.8g, want %.8g" % (i, got[i], want[i]))
print("%d floats, max difference %.3g, %d mismatches" % (got.size, diff.max(), bad.size))
sys.exit(1 if bad.size else 0)
