"""The workflows the engine and persistence benchmarks run: each definition (bench/definitions), its
input, what AWS Step Functions returns for that input, and the states it enters (the unit of state
transitions per second). workflow12's JSONata twin gives the same output from the same input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from harness.paths import DEFINITIONS

ORDER_INPUT: dict[str, Any] = {
    "order": {"id": "A-17", "customer": "ada", "priority": "high"},
    "items": [{"sku": f"sku-{i}", "qty": i + 1} for i in range(10)],
}


@dataclass(frozen=True)
class Workload:
    """A definition, its input, and what AWS Step Functions returns for that input."""

    name: str
    definition_file: str
    input: Any
    expected_output: Any
    # States entered per execution, counting Map iterations and Parallel branches:
    # the unit for state transitions per second.
    states_entered: int

    def definition(self) -> dict[str, Any]:
        """Load the definition from bench/definitions."""
        return json.loads((DEFINITIONS / self.definition_file).read_text())


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        name="pass3",
        definition_file="pass3.json",
        input={"name": "bench"},
        expected_output={"name": "bench", "step": 1},
        states_entered=3,
    ),
    Workload(
        name="workflow12",
        definition_file="workflow12.json",
        input=ORDER_INPUT,
        expected_output={
            "orderId": "A-17",
            "lane": "express",
            "label": "Order A-17 for ada via express",
            "lineCount": 10,
            "notify": {"to": "ada", "subject": "Order A-17 for ada via express"},
            "lines": [f"{i + 1} x sku-{i} (express)" for i in range(10)],
        },
        # Init, Route, Expedite, Label, PriceLines, 10 x (Describe, Keep), Fanout,
        # CountLines, Notify, Check, Summarize, Shape, Done.
        states_entered=32,
    ),
)


# workflow12 in JSONata: same input, same AWS output, same states entered. Run by smq only.
JSONATA_TWIN = Workload(
    name="workflow12-jsonata",
    definition_file="workflow12_jsonata.json",
    input=ORDER_INPUT,
    expected_output=WORKLOADS[1].expected_output,
    states_entered=WORKLOADS[1].states_entered,
)
