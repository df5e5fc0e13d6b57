#!/usr/bin/python3
"""Converts cnnc weights files (.cnnw) to and from numpy .npz files.

  python3 tools/cnnw.py from-npz W.npz model.cnn -o W.cnnw
  python3 tools/cnnw.py to-npz W.cnnw -o W.npz

The npz keys are `<name>.weight` and `<name>.bias` (a batch norm's also
`<name>.running_mean`, `<name>.running_var` and, written by to-npz and ignored
by from-npz, `<name>.num_batches_tracked`), the keys of a PyTorch
state_dict whose modules carry the model's statement names; the arrays have
PyTorch's layouts (conv [out][in][kh][kw], fc [out][in]). from-npz checks every
key and shape against the model's tensors, which it asks cnnc for
(`cnnc --emit-tensors`: --cnnc PATH, $CNNC, PATH, or this checkout's build/).
Files are written atomically. Needs Python 3 and numpy only. The format is
described in docs/weights-format.md.
"""
import argparse
import io
import os
import shlex
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np

MAGIC = b"CNNW"
VERSION = 2      # reads 1 and 2 (skipping 2's sections); writes weights only, as version 1


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


def find_cnnc(given):
    """cnnc: --cnnc, else $CNNC, else on PATH, else this checkout's build."""
    here = os.path.dirname(os.path.abspath(__file__))
    for c in (given, os.environ.get("CNNC"), shutil.which("cnnc"),
              os.path.join(here, "..", "build", "compiler", "cnnc")):
        if c and (" " in c or os.access(c, os.X_OK)):
            return shlex.split(c)
    sys.exit("cnnw.py: cannot find cnnc (give --cnnc PATH, set CNNC, or put it on PATH)")


def model_tensors(cnn_path, cnnc):
    """The model's trainable tensors as (name, shape), in .cnnw order, from
    cnnc --emit-tensors: the compiler's own naming and shape rules."""
    r = subprocess.run(cnnc + ["--emit-tensors", cnn_path], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("cnnw.py: %s" % (r.stderr.strip() or "cnnc failed on %s" % cnn_path))
    out = []
    for line in r.stdout.splitlines():
        name, dims = line.split()
        out.append((name, tuple(int(d) for d in dims.split("x"))))
    return out


def dims_str(shape):
    return "x".join(str(d) for d in shape) or "a scalar"


def write_atomically(path, data):
    """As cnnc's writers do: a temporary file beside the target, fsync, rename
    (symbolic links followed; a device or FIFO written in place)."""
    target = os.path.realpath(path)
    if os.path.exists(target) and not os.path.isfile(target):
        with open(target, "wb") as f:
            f.write(data)
        return
    tmp = "%s.tmp%d" % (target, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_cnnw(path, tensors):
    out = bytearray(MAGIC)
    out += struct.pack("<IQII", 1, shape_hash(tensors), len(tensors), 0)
    for name, arr in tensors:
        out += struct.pack("<I", len(name)) + name.encode()
        out += struct.pack("<I", arr.ndim) + struct.pack("<%dI" % arr.ndim, *arr.shape)
        out += np.ascontiguousarray(arr, dtype="<f4").tobytes()
    out += struct.pack("<I", zlib.crc32(bytes(out)) & 0xFFFFFFFF)
    write_atomically(path, bytes(out))


def read_cnnw(path):
    data = open(path, "rb").read()
    if data[:4] != MAGIC:
        sys.exit("cnnw.py: %s: not a .cnnw weights file" % path)
    if struct.unpack("<I", data[-4:])[0] != zlib.crc32(data[:-4]) & 0xFFFFFFFF:
        sys.exit("cnnw.py: %s: corrupted (checksum mismatch)" % path)
    version, _, count, _ = struct.unpack_from("<IQII", data, 4)
    if not 1 <= version <= VERSION:
        sys.exit("cnnw.py: %s: version %d, expected 1 to %d" % (path, version, VERSION))
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


def fit(arrays, source, model, cnnc):
    """arrays (name -> array, a state_dict's keys) in model's .cnnw order,
    every name and shape checked against the model's tensors."""
    want = model_tensors(model, cnnc)
    names = [n for n, _ in want]
    ignored = [k for k in arrays if k.endswith(".num_batches_tracked")]
    missing = [n for n in names if n not in arrays]
    extra = [k for k in arrays if k not in names and k not in ignored]
    if missing or extra:
        sys.exit("cnnw.py: %s does not fit %s: missing %s, unexpected %s"
                 % (source, model, missing or "nothing", extra or "nothing"))
    for name, shape in want:
        if tuple(arrays[name].shape) != shape:
            sys.exit("cnnw.py: %s: '%s' is %s, but %s's %s is %s"
                     % (source, name, dims_str(arrays[name].shape), model, name, dims_str(shape)))
    return [(n, np.asarray(arrays[n], dtype=np.float32)) for n in names]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("from-npz")
    f.add_argument("npz")
    f.add_argument("model")
    f.add_argument("-o", required=True)
    f.add_argument("--cnnc", help="the cnnc to read the model's tensors with")
    t = sub.add_parser("to-npz")
    t.add_argument("cnnw")
    t.add_argument("-o", required=True)
    a = ap.parse_args()
    if a.cmd == "from-npz":
        npz = np.load(a.npz)
        write_cnnw(a.o, fit({k: npz[k] for k in npz.files}, a.npz, a.model, find_cnnc(a.cnnc)))
    else:
        if os.path.realpath(a.o) == os.path.realpath(a.cnnw):
            sys.exit("cnnw.py: the output '%s' is also an input" % a.o)
        tensors = read_cnnw(a.cnnw)
        arrays = {}
        for name, arr in tensors:
            arrays[name] = arr
            # a batch norm's step count, which PyTorch's state_dict holds: cnnc
            # does not count steps (with a momentum, PyTorch does not read it)
            if name.endswith(".running_var"):
                arrays[name[:-len("running_var")] + "num_batches_tracked"] = np.array(0, dtype=np.int64)
        tmp = io.BytesIO()
        np.savez(tmp, **arrays)
        write_atomically(a.o, tmp.getvalue())


if __name__ == "__main__":
    main()
