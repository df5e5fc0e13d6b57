#!/usr/bin/python3
"""cnnw_floats.py W.cnnw OUT.f32: a weights file's tensors, one after the
other, as the raw floats of an object's params (the header's order)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import cnnw  # noqa: E402

np.concatenate([a.ravel() for _, a in cnnw.read_cnnw(sys.argv[1])]).astype("<f4").tofile(sys.argv[2])
