"""Subprocesses of a benchmark, each in its own session so it can be stopped with everything it
started, and what ``/proc`` says about processes (CPU time, parents)."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from harness.paths import ROOT
from harness.progress import log

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU time of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def machine_busy_seconds() -> float:
    """CPU time spent on anything but idle/iowait, all CPUs together, since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def status_bytes(key: str, pid: int | str = "self") -> int:
    """A size from /proc/PID/status (VmRSS, VmHWM, ...) in bytes; 0 if the process or the line is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def parent_pids() -> dict[int, int]:
    """pid -> parent pid, for every process we can see."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                found[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return found


def children_of(parents: set[int]) -> list[int]:
    """The pids whose parent is one of `parents` (e.g. a Celery worker's pool children)."""
    return [pid for pid, parent in parent_pids().items() if parent in parents]


# Processes started through spawn_tracked, killed with their session at exit if still running.
_tracked: list[subprocess.Popen[bytes]] = []


@atexit.register
def _kill_tracked() -> None:
    """Last resort: whatever a bench started and did not stop is killed with its session."""
    for process in _tracked:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def spawn_tracked(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`spawn`, remembered so that the exit hook can stop it if nothing else does."""
    process = spawn(command, env, log_path)
    _tracked.append(process)
    return process


def spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `command` in the repository, in its own session (so it can be stopped with everything it
    started), stdin closed, stdout and stderr appended to `log_path`."""
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_processes(
    processes: Sequence[subprocess.Popen[bytes]], timeout: float = 20.0, label: str = "pid"
) -> list[int | None]:
    """SIGTERM (Celery's warm shutdown, the scheduler's clean stop) to each one still running, then wait
    for them all until one shared deadline; SIGKILL the session of any that lingers. Returns their exit
    codes (None for a killed one)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    codes: list[int | None] = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            log(f"{label} {process.pid} did not stop in {timeout:.0f}s: killing its session")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            codes.append(None)
    return codes


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
