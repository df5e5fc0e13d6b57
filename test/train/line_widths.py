#!/usr/bin/python3
"""line_widths.py FILE COLUMNS: whether every line a terminal would show (the
text between carriage returns and newlines, escape sequences removed) fits."""
import re
import sys

text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
cols = int(sys.argv[2])
text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
wide = [s for s in re.split(r"[\r\n]", text) if len(s) >= cols]
for s in wide[:3]:
    print("too wide (%d): %s" % (len(s), s))
print("every line fits in %d columns" % cols if not wide else "%d lines do not fit" % len(wide))
