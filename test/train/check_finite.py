#!/usr/bin/python3
"""check_finite.py W.cnnw: exits 1, naming the tensor, if any value is NaN or infinite."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import cnnw  # noqa: E402

bad = [n for n, a in cnnw.read_cnnw(sys.argv[1]) if not np.isfinite(a).all()]
if bad:
    sys.exit("check_finite.py: not finite: " + ", ".join(bad))
