#!/usr/bin/python3
"""signal_train.py INT|TERM PROGRAM IMAGES LABELS SAVE: trains, sends the
signal after a second, prints what the program said on stderr and its status."""
import signal
import subprocess
import sys
import time

sig, prog, images, labels, save = sys.argv[1:6]
p = subprocess.Popen([prog, "train", "--images", images, "--labels", labels, "--epochs", "100000",
                      "--save", save], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
time.sleep(1.0)
p.send_signal(getattr(signal, "SIG" + sig))
err = p.communicate(timeout=30)[1]
print(err.strip())
print("status", p.returncode)
