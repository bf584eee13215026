"""Logs the times a CPU of this machine stopped running anything at all: a benchmark helper.

Pinned to CPU and at real-time priority (SCHED_FIFO, so nothing else on the machine can hold
it off), it sleeps 5 ms at a time and appends a line `MONOTONIC_S GAP_MS CPU` to LOG for
every wake-up that came 20 ms or more late. A gap here means that CPU was stopped, e.g. a
virtual CPU whose host throttles it at the end of its CPU-quota period (docs/benchmarks.md,
"Freezes of the machine"): whatever ran there, a server thread and the requests it held or
the load generator, waited as long. Run one per CPU.

    python3 scripts/lib/freeze_canary.py LOG CPU
"""

import os
import sys
import time

SLEEP_S = 0.005
LATE_S = 0.020


def main() -> None:
    log = open(sys.argv[1], "a", buffering=1)
    cpu = int(sys.argv[2])
    os.sched_setaffinity(0, {cpu})
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (AttributeError, PermissionError, OSError):
        # Without real-time priority a busy machine can also delay the canary itself, so a gap
        # may be this machine's own scheduling rather than a freeze.
        print("freeze canary: no real-time priority (needs root); gaps may be scheduling",
              file=sys.stderr)
    parent = os.getppid()
    last = time.monotonic()
    # Ends with the benchmark that started it, even one killed before its clean-up ran.
    while os.getppid() == parent:
        time.sleep(SLEEP_S)
        now = time.monotonic()
        gap = now - last - SLEEP_S
        if gap >= LATE_S:
            log.write(f"{last:.4f} {gap * 1000:.1f} {cpu}\n")
        last = now


if __name__ == "__main__":
    main()
