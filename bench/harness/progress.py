"""Progress on stderr (so --json output stays parseable) and polling until a count is reached."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable


def log(message: str) -> None:
    """Progress goes to stderr so --json output stays parseable."""
    print(message, file=sys.stderr, flush=True)


def load1() -> float:
    """The one-minute load average (the machine may be running other work)."""
    return round(os.getloadavg()[0], 2)


STALL_SECONDS = 60.0  # wait_for: nothing moved for this long: give up


def wait_for(
    progress: Callable[[], int],
    target: int,
    label: str,
    alive: Callable[[], None],
    *,
    poll: float,
    quiet_until: float = 0.0,
    report_every: float = 5.0,
    indent: str = "  ",
) -> None:
    """Poll `progress()` until it reaches `target`, calling `alive()` (which raises if a process died)
    in between; fail if nothing moved for STALL_SECONDS, not counting the time before `quiet_until`
    (a wall time before which nothing is expected). Progress is logged every `report_every` seconds."""
    last, last_change, last_report = -1, time.monotonic(), 0.0
    while True:
        done = progress()
        now = time.monotonic()
        if done != last or time.time() < quiet_until:
            last, last_change = done, now
        if done >= target:
            return
        alive()
        if now - last_change > STALL_SECONDS:
            raise RuntimeError(f"{label}: stuck at {done:,}/{target:,} for {STALL_SECONDS:.0f}s")
        if now - last_report > report_every:
            log(f"{indent}{label}: {done:,}/{target:,}")
            last_report = now
        time.sleep(poll)
