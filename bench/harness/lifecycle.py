"""What every entry script does around its run: SIGTERM/SIGHUP unwind through every `finally` (so the
servers and subprocesses are stopped), logs go to --log-dir or a temporary directory, an aborted run
still reports what it measured, and the clock and load averages frame the report."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.progress import log
from harness.report import load_average


class Interrupted(BaseException):
    """SIGTERM/SIGHUP: unwind through every `finally`, so the servers and processes are stopped."""


def _interrupt(signum: int, _frame: Any) -> None:
    for other in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(other, signal.SIG_IGN)  # let the cleanup finish
    raise Interrupted(f"interrupted by signal {signum}")


def stop_on_signals() -> None:
    """From now on SIGTERM and SIGHUP raise Interrupted in the main thread (once: then ignored)."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)


def work_directory(stack: contextlib.ExitStack, keep: str | None, prefix: str) -> Path:
    """Where a run's logs go: `keep` (--log-dir: created if needed, left in place), else a temporary
    directory removed when `stack` closes."""
    if keep:
        directory = Path(keep)
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))


@contextlib.contextmanager
def errors_recorded(errors: list[str], *also: type[BaseException]) -> Iterator[None]:
    """An exception (or one of `also`, e.g. Interrupted) ends the run but not the report: it is added
    to `errors` and its traceback logged, and what was measured before it is still reported."""
    caught: tuple[type[BaseException], ...] = (Exception, *also)
    try:
        yield
    except caught as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
        log(f"benchmark aborted:\n{traceback.format_exc()}")


@dataclass
class RunClock:
    """When a run started and the load averages then; `figures` closes the report with them."""

    started: float = field(default_factory=time.perf_counter)
    load_start: tuple[float, float, float] = field(default_factory=os.getloadavg)

    def figures(self) -> dict[str, Any]:
        """The report's load averages (at the start and now) and wall time so far."""
        return {
            "load_average": load_average(self.load_start),
            "wall_seconds": round(time.perf_counter() - self.started, 1),
        }
