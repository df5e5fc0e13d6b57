#!/usr/bin/python3
"""mpi_signal.py INT|TERM PROGRAM DATA DIR MPIRUN...: mpirun's job stopped by
the signal (sent to mpirun, which passes it to every rank) saves one
checkpoint at the step the ranks agreed on, reported once; that checkpoint
is the weights of an uninterrupted run of as many steps on as many
processes, bit for bit. Prints what it found."""
import os
import re
import signal
import subprocess
import sys
import time

sig, prog, data, out, mpirun = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
train = mpirun + [prog, "train", "--data", data, "--epochs", "50", "--threads", "1"]
ck, ref = os.path.join(out, "sig.cnnw"), os.path.join(out, "ref.cnnw")
p = subprocess.Popen(train + ["--save", ck], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
# once the first epoch's line is out, every rank is in its training loop
# with its handlers set (a fixed sleep was too short for ASan's ranks on a
# loaded machine: the signal came before the handlers)
for line in p.stdout:
    if line.startswith("epoch "):
        break
time.sleep(0.5)
p.send_signal(getattr(signal, "SIG" + sig))
err = p.communicate(timeout=120)[1]
found = re.findall(r"interrupted at step (\d+)", err)
if len(found) != 1:
    sys.exit("mpi_signal.py: %d 'interrupted' lines, expected 1:\n%s" % (len(found), err))
print("interrupted once, saved" if ("saved " + ck) in err else "not saved:\n" + err)
subprocess.run(train + ["--steps", found[0], "--save", ref], stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL, check=True)
same = open(ck, "rb").read() == open(ref, "rb").read()
print("the checkpoint is the run of %s steps: %s" % (found[0], "same bits" if same else "DIFFERENT"))
