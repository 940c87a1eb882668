"""What bench/engine.py measures per workload and engine: the verdict before timing, executions over
the time they took, and smq against moto side by side with the goal (smq at least 100x moto)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from scenarios.engine.workloads import Workload

GOAL_RATIO = 100.0
GOAL_TWIN_RATIO = 0.5  # JSONata twin exec/s over the JSONPath original's, same run


@dataclass
class Outcome:
    """One engine's verdict on a workload before timing."""

    ok: bool
    detail: str = ""


@dataclass
class Measurement:
    """Completed executions over the time they took."""

    executions: int = 0
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0


@dataclass
class EngineResult:
    """Verification and timing for one engine on one workload."""

    verified: Outcome
    timing: Measurement = field(default_factory=Measurement)

    def as_dict(self, states_entered: int) -> dict[str, Any]:
        rate = self.timing.per_second
        return {
            "output_ok": self.verified.ok,
            "detail": self.verified.detail,
            "executions": self.timing.executions,
            "seconds": round(self.timing.seconds, 4),
            "executions_per_second": round(rate, 3),
            "transitions_per_second": round(rate * states_entered, 3),
        }


@dataclass
class Row:
    """Side-by-side result for one workload."""

    workload: Workload
    smq: EngineResult | None
    moto: EngineResult

    @property
    def ratio(self) -> float | None:
        if self.smq is None or not self.moto.timing.per_second:
            return None
        return self.smq.timing.per_second / self.moto.timing.per_second

    @property
    def valid(self) -> bool:
        return self.smq is not None and self.smq.verified.ok and self.moto.verified.ok

    @property
    def goal_met(self) -> bool:
        ratio = self.ratio
        return self.valid and ratio is not None and ratio >= GOAL_RATIO


def _mismatch(engine: str, got: Any, expected: Any) -> str:
    return f"{engine} output {json.dumps(got, sort_keys=True)} != expected {json.dumps(expected, sort_keys=True)}"
