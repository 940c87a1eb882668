"""CPU seconds used by groups of processes and by the whole machine between two moments, from
``/proc``: what a throughput costs, beside the throughput."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.processes import machine_busy_seconds, process_cpu_seconds


@dataclass
class CpuUsage:
    """CPU seconds used between CpuMeter.start() and stop(): per group of processes, and for the whole
    machine, which also counts everything outside the groups."""

    wall: float = 0.0
    groups: dict[str, float] = field(default_factory=dict)
    machine: float = 0.0

    @property
    def rest(self) -> float:
        return self.machine - sum(self.groups.values())

    def per_item_ms(self, count: int) -> dict[str, float]:
        values = {**self.groups, "rest of the machine": self.rest, "whole machine": self.machine}
        return {name: round(seconds / count * 1000, 3) for name, seconds in values.items()}

    def percent_of_one_cpu(self) -> dict[str, float]:
        """Each group's and the whole machine's CPU as % of one CPU over the wall time (empty if none)."""
        values = {**self.groups, "whole machine": self.machine}
        return {name: seconds / self.wall * 100 for name, seconds in values.items()} if self.wall > 0 else {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall": round(self.wall, 3),
            **{name: round(value, 3) for name, value in self.groups.items()},
            "rest_of_the_machine": round(self.rest, 3),
            "whole_machine": round(self.machine, 3),
        }


class CpuMeter:
    """Snapshot per-process and machine CPU counters at start() and stop(). Each group is a function
    returning its pids, asked at both ends (a process that appears in between counts from its birth,
    one that ends in between is lost)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups
        self._start: dict[str, dict[int, float]] = {}
        self._machine = 0.0
        self._wall = 0.0

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {pid: process_cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()}

    def start(self) -> None:
        self._start = self._sample()
        self._machine, self._wall = machine_busy_seconds(), time.perf_counter()

    def stop(self) -> CpuUsage:
        wall, machine = time.perf_counter() - self._wall, machine_busy_seconds() - self._machine
        end = self._sample()
        groups = {
            name: sum(cpu - self._start[name].get(pid, 0.0) for pid, cpu in end[name].items())
            for name in self.groups
        }
        return CpuUsage(wall, groups, machine)
