#!/usr/bin/python3
"""best_epoch.py LOG.csv EVAL.txt: whether the best val_accuracy of the log
(the first epoch that reached it) is what eval prints for --save-best's weights."""
import csv
import re
import sys

rows = list(csv.DictReader(open(sys.argv[1])))
best = max(float(r["val_accuracy"]) for r in rows)
got = float(re.search(r"test accuracy: ([0-9.]+)%", open(sys.argv[2]).read()).group(1)) / 100
print("the best epoch's val accuracy is eval's" if abs(got - best) < 1e-4
      else "best val accuracy %.4f, eval of the best weights %.4f" % (best, got))
