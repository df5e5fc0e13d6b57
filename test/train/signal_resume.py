#!/usr/bin/python3
"""signal_resume.py INT|TERM PROGRAM IMAGES LABELS DIR: a run stopped by the
signal saves a checkpoint at the step it was in; that checkpoint is the
weights of an uninterrupted run of as many steps, and resumed for 3 more it
is the weights of one of 3 more. Prints the status and what differs."""
import os
import re
import signal
import subprocess
import sys
import time

sig, prog, images, labels, out = sys.argv[1:6]
same = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "same_weights.py")]
train = [prog, "train", "--images", images, "--labels", labels, "--epochs", "1000"]


def run(*args):
    subprocess.run(train + list(args), stdout=subprocess.DEVNULL, check=True)


ck = os.path.join(out, "ck.cnnw")
p = subprocess.Popen(train + ["--save", ck], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
time.sleep(1.0)
p.send_signal(getattr(signal, "SIG" + sig))
err = p.communicate(timeout=30)[1]
print("status", p.returncode)
steps = int(re.search(r"interrupted at step (\d+)", err).group(1))
run("--steps", str(steps), "--save", os.path.join(out, "a.cnnw"))
subprocess.run(same + [ck, os.path.join(out, "a.cnnw")], check=True)
run("--resume", ck, "--steps", "3", "--save", ck)
run("--steps", str(steps + 3), "--save", os.path.join(out, "b.cnnw"))
subprocess.run(same + [ck, os.path.join(out, "b.cnnw")], check=True)
print("resumed after step", "N" if steps else 0, "same weights")
