#!/usr/bin/python3
"""bench/run --convs: every distinct 3x3 and 1x1 conv of ResNet-20, MobileNetV2
and ResNet-18, computed directly (cnnc --no-winograd), forward and forward +
backward, in GFLOP/s and as a share of the honest peak.

  convs.py CNNC PEAK_GFLOPS

Each conv is a model of its own (the network's input size, channels, stride,
padding and groups) at the network's batch: 64 for ResNet-20, 8 for the
224x224 networks. Forward: the inference program's images/s times the conv's
FLOPs (2 per multiply-add). Forward + backward: the training step, in which a
fixed 1x1 conv before the measured one makes it compute its input gradient as
a layer inside a network does (for a grouped conv, a 1x1 conv of the same
groups); the FLOPs counted are the measured conv's forward, d weight and d
input (3 times its forward) and the fixed conv's forward. Prints a markdown table, then the share of the convs' FLOPs (weighted
by how often each occurs) done at 85% of the peak or more.
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETS = [("resnet20", 64), ("mobilenet_v2", 8), ("resnet18", 8)]
LINE = re.compile(r"%(\S+) = (\S+) %([^\s,]+).*: (\d+)x(\d+)x(\d+)")


def attr(line, key, default=None):
    m = re.search(r"\b%s=(\S+)" % key, line)
    return m.group(1) if m else default


def convs(cnnc, net):
    """(H, W, C, M, k, stride, pad, groups) -> how often, of net's 1x1 and 3x3 convs"""
    ir = subprocess.run([cnnc, "--emit-ir", os.path.join(ROOT, "examples", net + ".cnn")],
                        capture_output=True, text=True, check=True).stdout
    shapes, found = {}, {}
    for line in ir.split("backward:")[0].splitlines():
        m = LINE.search(line)
        if not m:
            if "= input" in line:
                name = line.split()[0][1:]
                shapes[name] = tuple(int(x) for x in line.rsplit(":", 1)[1].split("#")[0].strip().split("x"))
            continue
        name, op, src = m.group(1), m.group(2), m.group(3)
        shapes[name] = tuple(int(m.group(i)) for i in (4, 5, 6))
        if op != "conv":
            continue
        k = attr(line, "size").split("x")
        if k[0] != k[1] or k[0] not in ("1", "3"):
            continue
        h, w, c = shapes[src]
        key = (h, w, c, shapes[name][2], int(k[0]), int(attr(line, "stride").split("x")[0]),
               int(attr(line, "pad").split("x")[0]), int(attr(line, "groups", "1")))
        found[key] = found.get(key, 0) + 1
    return found


def bench(cnnc, text, args, d):
    path = os.path.join(d, "c.cnn")
    open(path, "w").write(text)
    exe = os.path.join(d, "c")
    subprocess.run([cnnc, "-O2", "--no-winograd"] + args + [path, "-o", exe], check=True)
    out = subprocess.run([exe, "bench", "--threads", "1"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0]: float(line.split()[1]) for line in out.splitlines()}


def main(cnnc, peak):
    print("| network | conv | input | times | forward GFLOP/s | % of peak | fwd + bwd GFLOP/s | % of peak |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    total = good_f = good_t = 0
    with tempfile.TemporaryDirectory() as d:
        for net, batch in NETS:
            for (h, w, c, m, k, s, p, g), times in sorted(convs(cnnc, net).items()):
                oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
                flops = 2 * oh * ow * m * k * k * (c // g)
                conv = "conv %d size=%d stride=%d pad=%d groups=%d bias=false" % (m, k, s, p, g)
                fwd = bench(cnnc, "model c {\n    input %dx%dx%d\n    %s\n}\n" % (h, w, c, conv),
                            ["--inference-only", "--batch", str(batch)], d)
                # the fixed conv: 1x1 over all channels, or for a grouped conv one of the same groups
                trn = bench(cnnc, "model c {\n    input %dx%dx%d\n    conv %d size=1 groups=%d bias=false fixed\n"
                            "    %s\n}\ntrain { loss mse; optimizer sgd lr=0.0001; batch %d }\n"
                            % (h, w, c, c, g, conv, batch), [], d)
                f = fwd["infer_ips"] * flops / 1e9
                t = trn["train_ips"] * (3 * flops + 2 * h * w * c * (c // g)) / 1e9
                kind = "%dx%d%s%s, %d -> %d" % (k, k, " stride 2" if s == 2 else "", " depthwise" if g > 1 else "", c, m)
                print("| %s | %s | %dx%d | %d | %.1f | %.0f%% | %.1f | %.0f%% |"
                      % (net, kind, h, w, times, f, 100 * f / peak, t, 100 * t / peak), flush=True)
                total += times * flops
                good_f += times * flops * (f >= 0.85 * peak)
                good_t += times * flops * (t >= 0.85 * peak)
    print()
    print("of these convs' FLOPs, %.0f%% run at 85%% of the peak or more forward, %.0f%% forward + backward"
          % (100 * good_f / total, 100 * good_t / total))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
