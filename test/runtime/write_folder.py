#!/usr/bin/python3
"""write_folder.py DIR: ImageFolder trees for image-folder.test, written with
the standard library only (zlib for PNG; the PGM/PPM by hand), and the same
images as IDX files, so that training on either can be compared:

  DIR/ok/{train,test}/{cat,dog}/  8x8 images: PNG grey, PNG RGB, PPM, PGM
  DIR/ok.images, ok.labels        the train split as 8x8x1 IDX, in the
                                  folder's order (classes sorted, files sorted)
  DIR/big/train/a/x.pgm           16x12: another size (for --resize)
  DIR/noclass/train/              empty
  DIR/noimages/train/a/           empty
  DIR/broken/train/a/x.png        a truncated PNG; DIR/badjpeg/train/a/x.jpg junk
  DIR/huge, DIR/hugepgm           a PNG and a PGM whose headers claim 60000x60000
"""
import os
import struct
import sys
import zlib

d = sys.argv[1]


def png(path, w, h, rows, colour):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + bytes(r) for r in rows)
    head = struct.pack(">IIBBBBB", w, h, 8, 2 if colour else 0, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw))
                           + chunk(b"IEND", b""))


def mk(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


grey_for_idx = []      # (label, 64 grey bytes) of the train split, in the folder's order
for split in ("train", "test"):
    for label, cls in enumerate(("cat", "dog")):
        files = []
        for k in range(3):
            g = [[(x * 29 + y * 7 + k * 50 + label * 90) % 256 for x in range(8)] for y in range(8)]
            files.append(("a%d.png" % k, g, "png-grey"))
        # a colour PNG whose three channels are equal: its luma is that grey exactly
        g = [[(x * 13 + y * 31 + label * 40) % 256 for x in range(8)] for y in range(8)]
        files.append(("b.png", g, "png-rgb"))
        g2 = [[(x * 5 + y * 3 + label * 60) % 256 for x in range(8)] for y in range(8)]
        files.append(("c.pgm", g2, "pgm"))
        for name, g, kind in sorted(files):
            path = mk(os.path.join(d, "ok", split, cls, name))
            if kind == "png-grey":
                png(path, 8, 8, g, False)
            elif kind == "png-rgb":
                png(path, 8, 8, [[v for p in r for v in (p, p, p)] for r in g], True)
            else:
                open(path, "wb").write(b"P5\n8 8\n255\n" + bytes(v for r in g for v in r))
            if split == "train":
                grey_for_idx.append((label, bytes(v for r in g for v in r)))
n = len(grey_for_idx)
open(os.path.join(d, "ok.images"), "wb").write(struct.pack(">IIII", 0x803, n, 8, 8) + b"".join(p for _, p in grey_for_idx))
open(os.path.join(d, "ok.labels"), "wb").write(struct.pack(">II", 0x801, n) + bytes(l for l, _ in grey_for_idx))
open(mk(os.path.join(d, "big", "train", "a", "x.pgm")), "wb").write(b"P5\n16 12\n255\n" + bytes(range(192)))
os.makedirs(os.path.join(d, "noclass", "train"), exist_ok=True)
os.makedirs(os.path.join(d, "noimages", "train", "a"), exist_ok=True)
png(mk(os.path.join(d, "broken", "train", "a", "x.png")), 8, 8, [[0] * 8] * 8, False)
data = open(os.path.join(d, "broken", "train", "a", "x.png"), "rb").read()
open(os.path.join(d, "broken", "train", "a", "x.png"), "wb").write(data[:40])
open(mk(os.path.join(d, "badjpeg", "train", "a", "x.jpg")), "wb").write(b"\xff\xd8\xff\xe0junk" * 10)
# headers that claim 60000 x 60000 pixels, over a few bytes
png(mk(os.path.join(d, "huge", "train", "a", "x.png")), 60000, 60000, [[0] * 8] * 8, False)
open(mk(os.path.join(d, "hugepgm", "train", "a", "x.pgm")), "wb").write(b"P5\n60000 60000\n255\n" + bytes(64))
