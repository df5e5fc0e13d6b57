#!/usr/bin/python3
"""fmnist_png.py IDX_DIR OUT: Fashion-MNIST as a torchvision ImageFolder tree
of 8-bit grey PNGs, OUT/train/CLASS/N.png and OUT/test/CLASS/N.png (CLASS
the label's name), for bench/run's image-folder row. Python's zlib only."""
import gzip
import os
import struct
import sys
import zlib

NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(pixels, h, w):
    rows = b"".join(b"\0" + pixels[r * w:(r + 1) * w] for r in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))


def main(src, out):
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = gzip.open(os.path.join(src, prefix + "-images-idx3-ubyte.gz")).read()
        labels = gzip.open(os.path.join(src, prefix + "-labels-idx1-ubyte.gz")).read()[8:]
        n, h, w = struct.unpack(">III", images[4:16])
        for name in NAMES:
            os.makedirs(os.path.join(out, split, name), exist_ok=True)
        for i in range(n):
            px = images[16 + i * h * w:16 + (i + 1) * h * w]
            with open(os.path.join(out, split, NAMES[labels[i]], "%05d.png" % i), "wb") as f:
                f.write(png(px, h, w))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
