#!/usr/bin/python3
"""Converts cnnc weights files (.cnnw) to and from numpy .npz files.

  python3 tools/cnnw.py from-npz W.npz model.cnn -o W.cnnw
  python3 tools/cnnw.py to-npz W.cnnw -o W.npz

The npz keys are `<name>.weight` and `<name>.bias`, the keys of a PyTorch
state_dict whose modules carry the model's statement names; the arrays have
PyTorch's layouts (conv [out][in][kh][kw], fc [out][in]). Needs Python 3 and
numpy only. The format is described in docs/weights-format.md.
"""
import argparse
import re
import struct
import sys
import zlib

import numpy as np

MAGIC = b"CNNW"
VERSION = 1


def shape_hash(tensors):
    """FNV-1a 64 over each tensor's name, NUL, rank and dims (u32 little-endian)."""
    h = 1469598103934665603
    def fnv(data):
        nonlocal h
        for b in data:
            h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    for name, arr in tensors:
        fnv(name.encode() + b"\0")
        fnv(struct.pack("<I", arr.ndim))
        for d in arr.shape:
            fnv(struct.pack("<I", d))
    return h


def statements(text):
    """The model block's statements as (label, op, items) tuples."""
    text = re.sub(r"#[^\n]*", "", text)
    m = re.search(r"\bmodel\s+\w+\s*\{", text)
    if not m:
        sys.exit("cnnw.py: no model block found")
    body, depth, out, cur = text[m.end():], 0, [], ""
    for ch in body:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if depth == 0 and ch in "\n;}":
            if cur.strip():
                out.append(cur.strip())
            cur = ""
            if ch == "}":
                break
        else:
            cur += ch
    stmts = []
    for s in out:
        label = None
        lm = re.match(r"(\w+)\s*:\s*(.*)", s, re.S)
        if lm:
            label, s = lm.group(1), lm.group(2)
        op, _, rest = s.partition(" ")
        stmts.append((label, op, rest))
    return stmts


def tensor_names(cnn_path):
    """Trainable tensor names in file order: conv and fc weights, then biases."""
    counts, names = {}, []
    for label, op, rest in statements(open(cnn_path, encoding="utf-8").read()):
        counts[op] = counts.get(op, 0) + 1
        name = label or "%s%d" % (op, counts[op])
        if op not in ("conv", "fc"):
            continue
        if op == "conv" and re.search(r"(^|\s)fixed(\s|$)", rest):
            continue
        names.append(name + ".weight")
        if not re.search(r"\bbias\s*=\s*false\b", rest):
            names.append(name + ".bias")
    return names


def write_cnnw(path, tensors):
    out = bytearray(MAGIC)
    out += struct.pack("<IQII", VERSION, shape_hash(tensors), len(tensors), 0)
    for name, arr in tensors:
        out += struct.pack("<I", len(name)) + name.encode()
        out += struct.pack("<I", arr.ndim) + struct.pack("<%dI" % arr.ndim, *arr.shape)
        out += np.ascontiguousarray(arr, dtype="<f4").tobytes()
    out += struct.pack("<I", zlib.crc32(bytes(out)) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(out)


def read_cnnw(path):
    data = open(path, "rb").read()
    if data[:4] != MAGIC:
        sys.exit("cnnw.py: %s: not a .cnnw weights file" % path)
    if struct.unpack("<I", data[-4:])[0] != zlib.crc32(data[:-4]) & 0xFFFFFFFF:
        sys.exit("cnnw.py: %s: corrupted (checksum mismatch)" % path)
    version, _, count, _ = struct.unpack_from("<IQII", data, 4)
    if version != VERSION:
        sys.exit("cnnw.py: %s: version %d, expected %d" % (path, version, VERSION))
    pos, tensors = 24, []
    for _ in range(count):
        (n,) = struct.unpack_from("<I", data, pos)
        name = data[pos + 4:pos + 4 + n].decode()
        pos += 4 + n
        (rank,) = struct.unpack_from("<I", data, pos)
        dims = struct.unpack_from("<%dI" % rank, data, pos + 4)
        pos += 4 + 4 * rank
        size = int(np.prod(dims)) if dims else 1
        arr = np.frombuffer(data, dtype="<f4", count=size, offset=pos).reshape(dims)
        pos += 4 * size
        tensors.append((name, arr.astype(np.float32)))
    return tensors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("from-npz")
    f.add_argument("npz")
    f.add_argument("model")
    f.add_argument("-o", required=True)
    t = sub.add_parser("to-npz")
    t.add_argument("cnnw")
    t.add_argument("-o", required=True)
    a = ap.parse_args()
    if a.cmd == "from-npz":
        npz = np.load(a.npz)
        names = tensor_names(a.model)
        missing = [n for n in names if n not in npz.files]
        extra = [k for k in npz.files if k not in names]
        if missing or extra:
            sys.exit("cnnw.py: %s does not fit %s: missing %s, unexpected %s"
                     % (a.npz, a.model, missing or "nothing", extra or "nothing"))
        write_cnnw(a.o, [(n, np.asarray(npz[n], dtype=np.float32)) for n in names])
    else:
        np.savez(a.o, **dict(read_cnnw(a.cnnw)))


if __name__ == "__main__":
    main()
