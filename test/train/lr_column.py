#!/usr/bin/python3
"""lr_column.py LOG.csv WANT.lrs: the lr column of a --log file against the
learning rates PyTorch's schedulers gave (tools/gen_fixtures.py), 1e-5 relative."""
import csv
import sys

got = [float(r["lr"]) for r in csv.DictReader(open(sys.argv[1]))]
want = [float(v) for v in open(sys.argv[2]).read().split()]
bad = [(i + 1, g, w) for i, (g, w) in enumerate(zip(got, want)) if abs(g - w) > 1e-5 * abs(w)]
for e, g, w in bad:
    print("epoch %d: lr %.9g, want %.9g" % (e, g, w))
print("%d epochs, %d of %d lrs as PyTorch's" % (len(got), len(want) - len(bad), len(want))
      if len(got) == len(want) else "%d epochs logged, %d expected" % (len(got), len(want)))
