#!/usr/bin/python3
"""nan.py make IN.f32 OUT.f32 | check OUT.f32 N: inputs with NaN, and what must
come out. `make` copies the fixture's images with image 0 all NaN and one NaN
pixel in the middle of image 1; `check` (N outputs per image) says whether
image 0's outputs are all NaN and how many of image 1's are."""
import sys

import numpy as np

if sys.argv[1] == "make":
    x = np.fromfile(sys.argv[2], dtype="<f4")
    per = x.size // int(sys.argv[4])
    x = x.reshape(-1, per)
    x[0, :] = np.nan
    x[1, per // 2] = np.nan
    x.astype("<f4").tofile(sys.argv[3])
else:
    y = np.fromfile(sys.argv[2], dtype="<f4").reshape(-1, int(sys.argv[3]))
    print("image 0: %s" % ("all NaN" if np.isnan(y[0]).all() else "%d of %d NaN" % (np.isnan(y[0]).sum(), y.shape[1])))
    print("image 1: %d of %d NaN" % (np.isnan(y[1]).sum(), y.shape[1]))
