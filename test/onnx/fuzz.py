#!/usr/bin/python3
"""Mutated ONNX files through onnx2cnn.py: a model or one line, never a traceback.

  fuzz.py CNNC WORKDIR SEED COUNT MODEL.onnx ...

Each round takes one of the models and flips bytes, cuts it short, or
repeats a piece of it, then runs onnx2cnn.py's main in this process. It must
end with exit 0 (and a .cnn file) or exit 1 with a message of one line
starting 'onnx2cnn.py: '; an uncaught exception, a message of several lines,
or an output left after a refusal is a failure. Prints the counts.
"""
import contextlib
import io
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import onnx  # noqa: E402
import onnx2cnn  # noqa: E402


def mutate_graph(rng, data):
    """a change that stays a well-formed protobuf: an attribute's values, a
    node's inputs or op, a tensor's or the input's dims"""
    m = onnx.load_from_string(data)
    g = m.graph
    kind = rng.randrange(5)
    n = rng.choice(g.node) if g.node else None
    if kind == 0 and n is not None and n.attribute:
        a = rng.choice(n.attribute)
        if a.ints:
            del a.ints[:]
            a.ints.extend(rng.randint(-2, 9) for _ in range(rng.randint(0, 5)))
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = rng.choice([0.0, -1.0, 1e30, float("nan"), rng.uniform(-3, 3)])
        else:
            a.i = rng.randint(-2, 9)
    elif kind == 1 and n is not None and n.attribute:
        del n.attribute[rng.randrange(len(n.attribute))]
    elif kind == 2 and n is not None:
        if n.input and rng.random() < 0.5:
            del n.input[rng.randrange(len(n.input))]
        else:
            n.input.append(rng.choice([i.name for i in g.input] + [o for x in g.node for o in x.output]))
    elif kind == 3 and g.initializer:
        t = rng.choice(g.initializer)
        if t.dims:
            t.dims[rng.randrange(len(t.dims))] = rng.randint(0, 9)
    else:
        d = g.input[0].type.tensor_type.shape.dim
        if d:
            d[rng.randrange(len(d))].dim_value = rng.randint(0, 40)
    return m.SerializeToString()


def mutate(rng, data):
    if rng.random() < 0.6:
        return mutate_graph(rng, data)
    data = bytearray(data)
    kind = rng.randrange(3)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:
        data = data[:rng.randrange(len(data))]
    else:
        i, j = sorted(rng.randrange(len(data)) for _ in range(2))
        data[i:i] = data[i:j]
    return bytes(data)


def main():
    cnnc, work, seed, count, models = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
    rng = random.Random(seed)
    seeds = [open(m, "rb").read() for m in models]
    counts, bad = {}, 0
    for i in range(count):
        path, out = os.path.join(work, "m.onnx"), os.path.join(work, "m.cnn")
        if os.path.exists(out):
            os.unlink(out)
        open(path, "wb").write(mutate(rng, rng.choice(seeds)))
        sys.argv = ["onnx2cnn.py", "--cnnc", cnnc, path, "-o", out]
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                onnx2cnn.main()
            code = 0
        except SystemExit as e:
            code = e.code
        except Exception as e:      # noqa: BLE001 -- what this test looks for
            print("round %d: %s: %s" % (i, type(e).__name__, e))
            bad += 1
            continue
        msg = str(code) if isinstance(code, str) else err.getvalue().strip()
        if code == 0 and os.path.exists(out):
            counts["converted"] = counts.get("converted", 0) + 1
        elif code and msg.startswith("onnx2cnn.py: ") and "\n" not in msg and not os.path.exists(out):
            kind = "malformed" if "a malformed graph" in msg else "refused"
            counts[kind] = counts.get(kind, 0) + 1
        else:
            print("round %d: exit %r, message %r" % (i, code, msg))
            bad += 1
    print("%d rounds: %s; %d failures" % (count, ", ".join("%d %s" % (v, k) for k, v in sorted(counts.items())), bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
