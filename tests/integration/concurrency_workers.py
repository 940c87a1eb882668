"""Functions run in child processes by the concurrency tests (must be importable by name)."""

from __future__ import annotations

import time
import traceback
from typing import Any

from smq import Repository, StartRequest, start_execution
from smq.engine.handlers import HandlerRegistry

FOUR_STATES = {
    "StartAt": "Receive",
    "States": {
        "Receive": {"Type": "Pass", "Parameters": {"n.$": "$.n", "worker.$": "$.worker"}, "Next": "Work"},
        "Work": {"Type": "Task", "Resource": "work", "ResultPath": "$.work", "Next": "Check"},
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.work.doubled", "NumericGreaterThanEquals": 0, "Next": "Done"}],
        },
        "Done": {"Type": "Succeed"},
    },
}


def registry() -> HandlerRegistry:
    handlers = HandlerRegistry()

    @handlers.handler("work")
    def work(payload: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.001)  # let the processes interleave their transactions
        return {"doubled": payload["n"] * 2}

    return handlers


def run_executions(url: str, worker: int, names: list[str], barrier_at: float) -> dict[str, Any]:
    """Start every name (some shared with other workers); report errors instead of raising."""
    repository = Repository.open(url, auto_upgrade=True)
    handlers = registry()
    while time.time() < barrier_at:  # start all processes at the same moment
        time.sleep(0.001)
    errors: list[str] = []
    statuses: dict[str, str] = {}
    for index, name in enumerate(names):
        try:
            record = start_execution(
                repository, StartRequest("four", {"n": index, "worker": worker}, name=name), handlers=handlers
            )
            statuses[name] = record.status
        except Exception:  # reported to the parent, which fails the test with it
            errors.append(traceback.format_exc())
    repository.close()
    return {"worker": worker, "errors": errors, "statuses": statuses}


def put_definitions(url: str, worker: int, barrier_at: float) -> list[int]:
    repository = Repository.open(url, auto_upgrade=True)
    while time.time() < barrier_at:
        time.sleep(0.001)
    versions = []
    for step in range(5):
        definition = {
            "StartAt": "P",
            "Comment": f"step {step}",
            "States": {"P": {"Type": "Pass", "End": True}},
        }
        versions.append(repository.put_definition("shared", definition).version)
    repository.close()
    return versions
