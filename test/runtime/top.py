#!/usr/bin/python3
"""top.py out.f32 K TOP: the TOP classes of the first row, as predict prints them."""
import sys
import numpy as np
y = np.fromfile(sys.argv[1], dtype="<f4")[:int(sys.argv[2])]
order = sorted(range(len(y)), key=lambda i: (-y[i], i))[:int(sys.argv[3])]
print("ppm:" + "".join(" %d (%.4f)" % (i, y[i]) for i in order))
