"""``--py-spy``: where part 2's time goes in the pool children.

``py-spy record`` samples each pool child (wall clock, waits included) during part 2's first round;
the samples are split between ``execute_state_machine``, Celery's tracer around it and the pool
child's idle time, and the functions under ``execute_state_machine`` are ranked by inclusive time."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.paths import ROOT
from harness.report import simple_table

from scenarios.distributed.rig import TASK_FUNCTIONS


class PySpy:
    """`py-spy record` on each pool child while part 2 drains: wall-clock samples (--idle, so time spent
    waiting for PostgreSQL or Redis counts), aggregated by function."""

    RATE = 200

    def __init__(self, executable: str, pids: list[int], out_dir: Path):
        self.executable, self.pids, self.out_dir = executable, pids, out_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.outputs: list[Path] = []

    def start(self) -> None:
        for pid in self.pids:
            output = self.out_dir / f"py-spy-{pid}.txt"
            command = [
                self.executable, "record", "--pid", str(pid), "--rate", str(self.RATE), "--format", "raw",
                "--function", "--idle", "--nonblocking", "--output", str(output),
            ]  # fmt: skip
            log_file = open(self.out_dir / f"py-spy-{pid}.log", "wb")  # noqa: SIM115 (closed with the process)
            self.processes.append(subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT))
            self.outputs.append(output)
            log_file.close()
        time.sleep(1.0)  # let py-spy attach before the clock starts

    def stop(self, executions: int) -> dict[str, Any]:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return summarize_py_spy(self.outputs, self.RATE, executions)


def _short_frame(frame: str) -> str:
    """`func (/long/path/site-packages/pkg/mod.py:12)` -> `func (pkg/mod.py)`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarize_py_spy(paths: list[Path], rate: int, executions: int, top: int = 30) -> dict[str, Any]:
    """Samples in execute_state_machine vs in Celery's task tracer vs waiting for a task, and the
    functions under execute_state_machine by inclusive time (ms per execution, % of the task's time)."""
    total = traced = in_task = 0
    inclusive: dict[str, int] = {}
    for path in paths:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            stack, _, number = line.rpartition(" ")
            if not number.isdigit():
                continue
            samples = int(number)
            frames = stack.split(";")
            total += samples
            functions = [frame.partition(" (")[0].rsplit(".", 1)[-1] for frame in frames]  # qualname's tail
            if "trace_task" in functions:
                traced += samples
            start = next((i for i, f in enumerate(functions) if f in TASK_FUNCTIONS), None)
            if start is None:
                continue
            in_task += samples
            for key in {_short_frame(frame) for frame in frames[start:]}:
                inclusive[key] = inclusive.get(key, 0) + samples

    def ms(samples: int) -> float:
        return round(samples / rate / max(1, executions) * 1000, 3)

    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    return {
        "rate_hz": rate,
        "samples": total,
        "ms_per_execution": {
            "in Celery's tracer (the task and its bookkeeping)": ms(traced),
            "  in execute_state_machine": ms(in_task),
            "  in the tracer around the task": ms(traced - in_task),
            "idle in the pool child (waiting to be handed a task)": ms(total - traced),
        },
        "inclusive_under_execute_state_machine": [
            {
                "function": name,
                "ms_per_execution": ms(count),
                "share": round(count / in_task, 4) if in_task else 0,
            }
            for name, count in ranked
        ],
    }


def profile_table(profile: dict[str, Any], number: int) -> Any:
    """The py-spy summary of part 2's round `number`: where a pool child's wall time goes per execution."""
    table = simple_table(
        f"Part 2, round {number}, under py-spy ({profile['rate_hz']} Hz, wall clock incl. waits, pool children)",
        "where",
        ("ms / execution", "right"),
        ("% of execute_state_machine", "right"),
    )
    for name, value in profile["ms_per_execution"].items():
        table.add_row(f"[bold]{name}[/]", f"{value:.3f}", "")
    for row in profile["inclusive_under_execute_state_machine"]:
        table.add_row(f"  {row['function']}", f"{row['ms_per_execution']:.3f}", f"{row['share']:.1%}")
    return table
