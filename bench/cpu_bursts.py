# A stand-in for an attached console that only burns CPU, for the control
# run of bench/attach.sh (BURSTS=1): it wakes every 333 ms and spins SPIN_MS
# (default 4: what a console's frame cost there) at nice NICE (default 10),
# and never talks to the relay. PERIOD_MS (default 333) tells a few long
# bursts from many short ones of the same CPU.
# Usage: cpu_bursts.py [SPIN_MS [NICE [PERIOD_MS]]]
import time, sys, os
spin = float(sys.argv[1]) / 1000 if len(sys.argv) > 1 else 0.004
period = float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 1 / 3
os.nice(int(sys.argv[2]) if len(sys.argv) > 2 else 10)
next_t = time.monotonic()
while True:
    next_t += period
    end = time.monotonic() + spin
    while time.monotonic() < end:
        pass
    time.sleep(max(0, next_t - time.monotonic()))
