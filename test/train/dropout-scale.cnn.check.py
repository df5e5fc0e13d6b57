#!/usr/bin/python3
"""Counts the weights of dropout-scale.cnn's fc1 at 0, at 2/0.7 and elsewhere."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import cnnw  # noqa: E402

w = dict(cnnw.read_cnnw(sys.argv[1]))["fc1.weight"].ravel()
kept = 2 / 0.7
zero = sum(1 for v in w if v == 0)
scaled = sum(1 for v in w if abs(v - kept) <= 1e-6 * kept)
print("weights: %d at 0, %d at 2/0.7, %d other" % (zero, scaled, len(w) - zero - scaled))
