#!/usr/bin/python3
"""mpi_kill.py [--stop] CHECKPOINT PROGRAM MPIRUN... : runs the mpirun command
line, kills one of its ranks (PROGRAM's process started last) with SIGKILL
after a second and a half, or with --stop stops it (SIGSTOP: a rank that
hangs without dying), and checks that the whole job ends within 15 seconds
with a non-zero status and that CHECKPOINT holds the bytes it held before.
Prints the seconds taken and the job's last message (with --stop, the
program's own)."""
import os
import signal
import subprocess
import sys
import time

stop = sys.argv[1] == "--stop"
args = sys.argv[2:] if stop else sys.argv[1:]
checkpoint, prog, cmd = args[0], os.path.realpath(args[1]), args[2:]
what = "stopped" if stop else "killed"
before = open(checkpoint, "rb").read()
job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
time.sleep(1.5)


def ranks(pid):
    """the job's processes: mpirun's descendants running the program"""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open("/proc/%s/stat" % p).read().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    out.append(int(p))
                    out += ranks(int(p))
            except OSError:
                pass
    return out


def runs(pid):
    try:
        return os.path.realpath("/proc/%d/exe" % pid) == prog
    except OSError:
        return False


victims = [p for p in ranks(job.pid) if runs(p)]
if len(victims) < 2:
    sys.exit("mpi_kill.py: expected the job's ranks, found %s" % victims)
os.kill(max(victims), signal.SIGSTOP if stop else signal.SIGKILL)
t0 = time.time()
try:
    _, err = job.communicate(timeout=15)
except subprocess.TimeoutExpired:
    job.kill()
    for p in victims:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    sys.exit("mpi_kill.py: the job still runs 15 s after a rank was %s" % what)
if job.returncode == 0:
    sys.exit("mpi_kill.py: the job exited 0 after a rank was %s" % what)
if open(checkpoint, "rb").read() != before:
    sys.exit("mpi_kill.py: %s changed" % checkpoint)
print("the job stopped %.1f s after a rank was %s, exit status %d; %s intact"
      % (time.time() - t0, what, job.returncode, os.path.basename(checkpoint)))
lines = err.strip().splitlines()
if stop:
    print("\n".join(l for l in lines if "no answer" in l))
else:
    print(lines[-2] if len(lines) > 1 else err.strip())
