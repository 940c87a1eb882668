"""Load and judge the AWS-recorded conformance corpus (../shared/conformance), as its README says."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smq import DefinitionError, StateMachine
from smq.engine.runtime import AWS_PAYLOAD_LIMIT, VirtualClock

CORPUS = Path(
    os.environ.get("SMQ_CONFORMANCE_DIR", Path(__file__).resolve().parents[2] / "shared" / "conformance")
)
ANY = "__ANY__"
# The corpus computed time-dependent inputs from this instant; run the clock from there.
CORPUS_EPOCH = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@dataclass
class Case:
    id: str
    tags: list[str]
    definition: dict[str, Any]
    input: Any
    expected: dict[str, Any]


def load_cases(path: Path | None = None) -> list[Case]:
    files = [path] if path else sorted((CORPUS).glob("*.jsonl"))
    cases = []
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                cases.append(Case(**json.loads(line)))
    return cases


def json_equal(expected: Any, actual: Any) -> bool:
    if expected == ANY:
        return True
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return float(expected) == float(actual)
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(json_equal(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(json_equal(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return type(expected) is type(actual) and expected == actual


def judge(case: Case) -> str | None:
    """None when smq agrees with AWS; otherwise what differs."""
    try:
        machine = StateMachine.from_definition(case.definition, id="conformance", name="conformance-machine")
    except DefinitionError as exc:
        return f"rejected the definition: {exc}"
    clock = VirtualClock(CORPUS_EPOCH)
    result = machine.run(case.input, clock=clock.now, sleep=clock.sleep, payload_limit=AWS_PAYLOAD_LIMIT)
    expected = case.expected
    if result.status != expected["status"]:
        return f"status {result.status} ({result.error}: {result.cause}), expected {expected['status']} {expected.get('error') or ''}"
    if result.status == "SUCCEEDED" and not json_equal(expected["output"], result.output):
        return f"output {json.dumps(result.output)} != expected {json.dumps(expected['output'])}"
    if result.status == "FAILED" and result.error != expected["error"]:
        return f"error {result.error!r} ({result.cause}), expected {expected['error']!r}"
    return None
