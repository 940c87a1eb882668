"""smq's side of bench/engine.py: compile once with ``StateMachine.from_definition``, verify against
AWS's output, run back to back in memory, verify again (thousands of runs must not drift)."""

from __future__ import annotations

import time
from typing import Any

from harness.progress import log

from scenarios.engine.results import EngineResult, Measurement, Outcome, _mismatch
from scenarios.engine.workloads import Workload


def load_smq() -> Any | None:
    """Import smq.StateMachine lazily so the moto side can still be measured without it."""
    try:
        from smq import StateMachine
    except ImportError as exc:
        log(f"smq.StateMachine is not importable ({exc}); measuring moto only")
        return None
    return StateMachine


def _smq_states_entered(history: Any) -> int | None:
    """Count state visits in smq's history (one HistoryEntry per visit); None if unrecognised."""
    if not isinstance(history, list | tuple) or not all(hasattr(e, "state_name") for e in history):
        return None
    return len(history)


def verify_smq(machine: Any, workload: Workload) -> Outcome:
    """Run once and compare with what AWS returns, so the timed loop measures correct work."""
    result = machine.run(workload.input)
    if result.status != "SUCCEEDED":
        return Outcome(False, f"smq {result.status}: {result.error}: {result.cause}")
    if result.output != workload.expected_output:
        return Outcome(False, _mismatch("smq", result.output, workload.expected_output))
    entered = _smq_states_entered(result.history)
    if entered is not None and entered != workload.states_entered:
        return Outcome(False, f"smq entered {entered} states, expected {workload.states_entered}")
    return Outcome(True)


def measure_smq(machine: Any, workload: Workload, seconds: float) -> Measurement:
    """Run the compiled machine back to back for `seconds` after a short warm-up."""
    payload = workload.input
    warm_until = time.perf_counter() + min(0.2, seconds / 10)
    while time.perf_counter() < warm_until:
        machine.run(payload)

    executions = 0
    start = now = time.perf_counter()
    deadline = start + seconds
    while now < deadline:
        result = machine.run(payload)
        if result.status != "SUCCEEDED":
            raise RuntimeError(f"smq failed during timing: {result.status}: {result.error}: {result.cause}")
        executions += 1
        now = time.perf_counter()
    return Measurement(executions, now - start)


def run_smq(state_machine_cls: Any, workload: Workload, seconds: float) -> EngineResult:
    """Compile once, verify, time, verify again."""
    machine = state_machine_cls.from_definition(workload.definition())
    verified = verify_smq(machine, workload)
    timing = measure_smq(machine, workload, seconds)
    if verified.ok:
        # Thousands of runs later the answer must not have drifted (shared mutable state).
        verified = verify_smq(machine, workload)
    return EngineResult(verified, timing)
