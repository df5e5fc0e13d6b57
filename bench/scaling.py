#!/usr/bin/python3
"""The data-parallel efficiency model of docs/scaling.md, from measured figures.

  scaling.py NAME:PARAMS:SECONDS_PER_IMAGE:SYNCS ...

For each model (its parameter count, one thread's training time per image,
measured, and the batch norms' exchanges a step: 3 a batch norm, two in the
forward pass and one in the backward) and each link, prints the efficiency at
8, 64 and 512 processes of a step of 64 images a process (weak scaling: the
global batch grows with the processes): the compute time T_c = 64 t over the
step time T_c + T_bn + T_ar. A ring allreduce of the S bytes of float32
gradients takes T_ar = 2 (N - 1) / N * S / B + 2 (N - 1) a (B the link's
bandwidth, a its per-message latency); each batch norm exchange, a few
hundred bytes, 2 (N - 1) a, on the step's critical path. In brackets the
same with the gradients' sums overlapped with the backward pass:
max(T_c, T_ar) + the last bucket's share, T_bn unchanged.
"""
import sys

LINKS = [("10 Gbit/s", 10e9 / 8, 20e-6), ("100 Gbit/s", 100e9 / 8, 5e-6)]
RANKS = [8, 64, 512]
PER_RANK = 64
BUCKETS = 8                 # the overlapped case: the last of 8 buckets waits for the backward pass


def allreduce(n, size, bandwidth, latency):
    return 2 * (n - 1) / n * size / bandwidth + 2 * (n - 1) * latency


def main():
    print("| model | gradient | batch norm exchanges | step of 64, 1 thread | link | " +
          " | ".join("%d ranks" % n for n in RANKS) + " |")
    print("|---|---:|---:|---:|---|" + "---:|" * len(RANKS))
    for arg in sys.argv[1:]:
        name, params, per_image, syncs = arg.split(":")
        size = 4 * int(params)
        tc = PER_RANK * float(per_image)
        for link, bw, lat in LINKS:
            cells = []
            for n in RANKS:
                tar = allreduce(n, size, bw, lat)
                tbn = int(syncs) * 2 * (n - 1) * lat
                plain = tc / (tc + tbn + tar)
                overlap = tc / (max(tc, tar) + tbn + tar / BUCKETS)
                cells.append("%.0f%% (%.0f%%)" % (100 * plain, 100 * overlap))
            print("| %s | %.2f MB | %s | %.1f ms | %s | %s |" % (name, size / 1e6, syncs, tc * 1e3, link,
                                                             " | ".join(cells)))


if __name__ == "__main__":
    main()
