#!/usr/bin/python3
"""write_maps.py PREFIX N HxWxC CLASSES: N random images of any channel count as
IDX (PREFIX.images, PREFIX.labels), from a fixed seed, for the examples whose
input is no photograph (resnet_block's 32x32x16)."""
import random
import struct
import sys

prefix, n, shape, classes = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
h, w, c = (int(v) for v in shape.split("x"))
rng = random.Random(7)
head = struct.pack(">IIIII", 0x804, n, h, w, c) if c > 1 else struct.pack(">IIII", 0x803, n, h, w)
open(prefix + ".images", "wb").write(head + bytes(rng.randrange(256) for _ in range(n * h * w * c)))
open(prefix + ".labels", "wb").write(struct.pack(">II", 0x801, n) + bytes(rng.randrange(classes) for _ in range(n)))
