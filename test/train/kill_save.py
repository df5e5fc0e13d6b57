#!/usr/bin/python3
"""kill_save.py PROGRAM IMAGES LABELS DIR KILLS: runs `PROGRAM train --save`,
which saves a ~1.6 MB checkpoint every few milliseconds, and kills it with
SIGKILL at a random moment, KILLS times; after each kill the checkpoint on
disk must be absent (killed before the first save) or a whole file that
`PROGRAM eval` loads. Prints how many kills found a checkpoint to check."""
import os
import random
import signal
import subprocess
import sys
import time

prog, images, labels, out, kills = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ckpt = os.path.join(out, "w.cnnw")
rng = random.Random(20261125)
checked = 0
for k in range(kills):
    p = subprocess.Popen([prog, "train", "--images", images, "--labels", labels, "--epochs", "100000",
                          "--save", ckpt, "--threads", "1"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.05, 0.4))
    p.send_signal(signal.SIGKILL)
    p.wait()
    if not os.path.exists(ckpt):
        continue
    r = subprocess.run([prog, "eval", "--weights", ckpt, "--images", images, "--labels", labels],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("kill %d: the checkpoint does not load: %s" % (k, r.stderr.strip()))
    checked += 1
print("%d kills, %d checkpoints checked, all whole" % (kills, checked))
sys.exit(0 if checked >= kills // 2 else 1)
