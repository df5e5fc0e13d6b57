#!/usr/bin/python3
"""doc_ops.py LANGUAGE.md < `cnnc --list-ops`: docs/language.md's op table
against the compiler's op table: every op documented, no op documented that
the compiler does not know, and every attribute of an op named in its row."""
import re
import sys

doc = open(sys.argv[1]).read()
table = doc[doc.index("\n## Ops\n"):]
table = table[:table.index("\n\n", table.index("|---"))]
rows = {}
for line in table.splitlines():
    if not line.startswith("| `"):
        continue
    first = line.split("|")[1]
    for word in re.findall(r"`([a-z_0-9]+)`", first):
        rows[word] = line
ops = {}
for line in sys.stdin:
    word, *params = line.split("#")[0].split()
    ops[word] = [p.strip("!") for p in params if not p.startswith("*")]   # the positional has its own column
bad = 0
for word, params in ops.items():
    if word not in rows:
        print("not documented in the op table: %s" % word)
        bad += 1
        continue
    for p in params:
        if "`%s`" % p not in rows[word]:
            print("%s: attribute '%s' not in its row" % (word, p))
            bad += 1
for word in rows:
    if word not in ops:
        print("documented but not an op: %s" % word)
        bad += 1
print("%d ops, %d problems" % (len(ops), bad))
sys.exit(1 if bad else 0)
