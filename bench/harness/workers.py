"""Celery workers as the benchmarks run them: `celery -A smq worker` subprocesses, each in its own
session, started, pinged until ready, and stopped by pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.processes import children_of, spawn, stop_processes, tail
from harness.queues import QUEUE_KEYS


def worker_command(name: str, concurrency: int = 1) -> list[str]:
    """Exactly how the benchmarks run a Celery worker: smq's app, every queue, `concurrency` prefork
    children."""
    return [
        sys.executable, "-m", "celery", "-A", "smq", "worker",
        "-Q", ",".join(QUEUE_KEYS), "-c", str(concurrency), "--pool", "prefork",
        "-n", f"{name}@%h", "-l", "WARNING",
    ]  # fmt: skip


class CeleryWorkers:
    """K `celery -A smq worker` processes (worker_command), named `<prefix><i>-<our pid>`, each in its
    own session with its log in `log_dir`. `spawner` starts one (spawn, or a wrapper that also records
    the process)."""

    def __init__(
        self,
        count: int,
        env: dict[str, str],
        log_dir: Path,
        prefix: str,
        spawner: Callable[[list[str], dict[str, str], Path], subprocess.Popen[bytes]] = spawn,
        concurrency: int = 1,
    ):
        self.count, self.env, self.log_dir = count, env, log_dir
        self.concurrency = concurrency
        self.names = [f"{prefix}{index}-{os.getpid()}" for index in range(1, count + 1)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self._spawn = spawner

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self) -> None:
        for name in self.names:
            self.processes.append(
                self._spawn(worker_command(name, self.concurrency), self.env, self.log_path(name))
            )

    def check_alive(self) -> None:
        """Raise if a worker has exited, with the end of its log."""
        for name, process in zip(self.names, self.processes, strict=True):
            if process.poll() is not None:
                raise RuntimeError(
                    f"worker {name} exited with {process.returncode}; its log ends with:\n"
                    f"{tail(self.log_path(name))}"
                )

    def wait_ready(self, app: Any, timeout: float = 90.0, check: Callable[[], None] | None = None) -> None:
        """Until every worker answers a control ping (its consumer is running); `check` is called on
        every round too."""
        deadline = time.monotonic() + timeout
        pending = set(self.names)
        while pending:
            self.check_alive()
            if check is not None:
                check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
            for reply in app.control.ping(timeout=1.0) or []:
                for hostname in reply:
                    pending.discard(hostname.split("@", 1)[0])

    def main_pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def child_pids(self) -> list[int]:
        """The pool children (what runs the tasks), from /proc."""
        return children_of(set(self.main_pids()))

    def pids(self) -> list[int]:
        """The workers' main processes still running, and their pool children."""
        mains = [process.pid for process in self.processes if process.poll() is None]
        return mains + children_of(set(mains))

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (warm shutdown) to each worker; SIGKILL its session if it lingers past `timeout`."""
        stop_processes(self.processes, timeout, "worker pid")
        self.processes = []
