#!/usr/bin/python3
"""Writes each model example of the contract (a Markdown file) to DIR/exN.cnn.

usage: contract_examples.py cnn-language.md DIR

A code block is a model example when a line of it starts with `model`. When
the contract is not there (a checkout without ../shared), DIR stays empty.
"""
import os
import re
import sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for f in os.listdir(out):
    os.remove(os.path.join(out, f))
if not os.path.exists(src):
    sys.exit(0)
blocks = re.findall(r"^```[^\n]*\n(.*?)^```", open(src, encoding="utf-8").read(), re.S | re.M)
n = 0
for b in blocks:
    if re.search(r"^\s*model\s", b, re.M):
        n += 1
        with open(os.path.join(out, "ex%d.cnn" % n), "w", encoding="utf-8") as f:
            f.write(b)
print("%d model examples" % n)
