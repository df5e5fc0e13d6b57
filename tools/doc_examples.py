#!/usr/bin/python3
"""Writes each model example of the project's Markdown files to DIR.

usage: doc_examples.py DIR FILE.md ...

A fenced code block is a model example when a line of it starts with
`model`; it is written as DIR/<file>-<n>.cnn. Exits 1 when no file holds an
example, so that a test built on it cannot pass by checking nothing.
"""
import os
import re
import sys

out, sources = sys.argv[1], sys.argv[2:]
os.makedirs(out, exist_ok=True)
for f in os.listdir(out):
    os.remove(os.path.join(out, f))
n = 0
for src in sources:
    text = open(src, encoding="utf-8").read()
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    k = 0
    for b in blocks:
        if re.search(r"^\s*model\s", b, re.M):
            k += 1
            name = "%s-%d.cnn" % (os.path.splitext(os.path.basename(src))[0], k)
            with open(os.path.join(out, name), "w", encoding="utf-8") as f:
                f.write(b)
    n += k
print("%d model examples" % n)
sys.exit(0 if n else 1)
