#!/usr/bin/python3
"""write_idx.py DIR: IDX files for bad-idx.test, good and bad."""
import gzip
import os
import struct
import sys

d = sys.argv[1]


def write(name, data):
    open(os.path.join(d, name), "wb").write(data)


head4 = struct.pack(">IIIII", 0x804, 4, 7, 6, 2)
body = bytes(range(4 * 7 * 6 * 2 % 256)) * 2
body = (body * 10)[:4 * 7 * 6 * 2]
write("good.idx", head4 + body)
write("short.idx", head4 + body[:-10])
write("short.idx.gz", gzip.compress(head4 + body[:-10]))
write("long.idx", head4 + body + b"\0")
write("magic.idx", struct.pack(">IIIII", 0x808, 4, 7, 6, 2) + body)
write("size.idx", struct.pack(">IIIII", 0x804, 4, 8, 6, 2) + body + bytes(4 * 6 * 2))
write("huge.idx", struct.pack(">IIII", 0x803, 4000000000, 60000, 60000))
write("labels4.idx", struct.pack(">II", 0x801, 4) + bytes([0, 1, 2, 3]))
write("labels5.idx", struct.pack(">II", 0x801, 5) + bytes([0, 1, 2, 3, 0]))
