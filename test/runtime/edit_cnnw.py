#!/usr/bin/python3
"""edit_cnnw.py IN OUT hash|first=K: a .cnnw file changed in one way, its
checksum recomputed, for bad-weights.test.

  hash     the shape hash field alone changed (tensors, names, shapes kept)
  first=K  only the first K tensors kept (the header's count and hash follow)
"""
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import cnnw  # noqa: E402

src, dst, how = sys.argv[1:4]
if how == "hash":
    d = bytearray(open(src, "rb").read())
    d[8:16] = struct.pack("<Q", struct.unpack("<Q", bytes(d[8:16]))[0] ^ 1)
    d[-4:] = struct.pack("<I", zlib.crc32(bytes(d[:-4])) & 0xFFFFFFFF)
    open(dst, "wb").write(bytes(d))
else:
    k = int(how.split("=")[1])
    cnnw.write_cnnw(dst, cnnw.read_cnnw(src)[:k])
