"""Exceptions that are not the workflow's failure leave the engine as they are, per run: never a global
switch (a worker's soft time limit must not change what an in-process run does in the same process)."""

from __future__ import annotations

from typing import Any

import pytest

from smq import HandlerRegistry, InfrastructureError, StateMachine

MACHINE = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "boom", "End": True}}}


class Interrupted(Exception):
    """Stands for an interruption of the process running the handler (a soft time limit)."""


def _raising(exc: BaseException) -> HandlerRegistry:
    registry = HandlerRegistry()

    def boom(payload: Any, ctx: Any) -> Any:
        raise exc

    registry.register("boom", boom)
    return registry


@pytest.mark.parametrize("timeout", [None, 5])  # inline, and on the watched thread of a TimeoutSeconds
def test_a_run_names_what_passes_through_and_other_runs_are_not_affected(timeout: int | None) -> None:
    definition = {
        **MACHINE,
        "States": {"T": {**MACHINE["States"]["T"], **({"TimeoutSeconds": timeout} if timeout else {})}},
    }
    machine = StateMachine.from_definition(definition)
    with pytest.raises(Interrupted):
        machine.run(
            {}, handlers=_raising(Interrupted("stop")), pass_through=(InfrastructureError, Interrupted)
        )
    failed = machine.run({}, handlers=_raising(Interrupted("stop")))  # the default: an ASL error
    assert (failed.status, failed.error, failed.cause) == ("FAILED", "Interrupted", "stop")


def test_infrastructure_errors_pass_through_by_default() -> None:
    machine = StateMachine.from_definition(MACHINE)
    with pytest.raises(InfrastructureError):
        machine.run({}, handlers=_raising(InfrastructureError("database down")))
