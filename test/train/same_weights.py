#!/usr/bin/python3
"""same_weights.py A.cnnw B.cnnw: exits 1 unless every tensor of A is B's, bit for bit."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import cnnw  # noqa: E402

a, b = cnnw.read_cnnw(sys.argv[1]), cnnw.read_cnnw(sys.argv[2])
bad = [n for (n, x), (_, y) in zip(a, b) if x.tobytes() != y.tobytes()]
if len(a) != len(b) or bad:
    sys.exit("same_weights.py: %s and %s differ in %s" % (sys.argv[1], sys.argv[2], ", ".join(bad) or "tensors"))
