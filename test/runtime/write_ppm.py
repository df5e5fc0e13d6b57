#!/usr/bin/python3
"""write_ppm.py in.f32 H W C out.ppm out.f32: the first image of in.f32,
rounded to 8 bits, as a PPM, and the same pixels (x/255) as float32."""
import sys
import numpy as np
x = np.fromfile(sys.argv[1], dtype="<f4")
h, w, c = (int(v) for v in sys.argv[2:5])
px = np.round(x[:h * w * c] * 255).astype(np.uint8)
open(sys.argv[5], "wb").write(b"P6\n%d %d\n255\n" % (w, h) + px.tobytes())
(px.astype(np.float32) / 255).astype("<f4").tofile(sys.argv[6])
