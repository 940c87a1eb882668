"""bench/engine.py's JSONata twin: workflow12 written in JSONata against its JSONPath original (the
baseline), both run by smq alternately in the same process; goal: the twin at least half as fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scenarios.engine.results import GOAL_TWIN_RATIO, EngineResult, Measurement
from scenarios.engine.smq_engine import run_smq
from scenarios.engine.workloads import JSONATA_TWIN, WORKLOADS


@dataclass
class TwinComparison:
    """The JSONata twin and its JSONPath original, measured back to back by smq."""

    jsonata: EngineResult
    jsonpath: EngineResult

    @property
    def ratio(self) -> float:
        original = self.jsonpath.timing.per_second
        return self.jsonata.timing.per_second / original if original else 0.0

    @property
    def goal_met(self) -> bool:
        return self.jsonata.verified.ok and self.jsonpath.verified.ok and self.ratio >= GOAL_TWIN_RATIO

    def as_dict(self) -> dict[str, Any]:
        return {
            "workflow": JSONATA_TWIN.name,
            "definition": f"bench/definitions/{JSONATA_TWIN.definition_file}",
            "jsonata": self.jsonata.as_dict(JSONATA_TWIN.states_entered),
            "jsonpath": self.jsonpath.as_dict(WORKLOADS[1].states_entered),
            "ratio": round(self.ratio, 3),
            "goal_ratio": GOAL_TWIN_RATIO,
            "goal_met": self.goal_met,
        }

    def text(self) -> str:
        verdict = "met" if self.goal_met else "NOT met"
        lines = [
            f"JSONata twin ({JSONATA_TWIN.name}): {self.jsonata.timing.per_second:,.0f} exec/s; "
            f"JSONPath original ({WORKLOADS[1].name}): {self.jsonpath.timing.per_second:,.0f} exec/s; "
            f"ratio {self.ratio:.2f} (goal >= {GOAL_TWIN_RATIO:g}: {verdict})"
        ]
        lines += [r.verified.detail for r in (self.jsonata, self.jsonpath) if not r.verified.ok]
        return "\n".join(lines)


def compare_twin(state_machine_cls: Any, seconds: float) -> TwinComparison:
    """Time the JSONPath original and its JSONata twin alternately, half the time each turn, so
    that both see the same machine load."""
    original: list[EngineResult] = []
    twin: list[EngineResult] = []
    for _ in range(2):
        original.append(run_smq(state_machine_cls, WORKLOADS[1], seconds / 2))
        twin.append(run_smq(state_machine_cls, JSONATA_TWIN, seconds / 2))
    return TwinComparison(_combined(twin), _combined(original))


def _combined(results: list[EngineResult]) -> EngineResult:
    timing = Measurement(sum(r.timing.executions for r in results), sum(r.timing.seconds for r in results))
    failed = [r.verified for r in results if not r.verified.ok]
    return EngineResult(failed[0] if failed else results[0].verified, timing)
