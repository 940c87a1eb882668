"""The baseline of bench/engine.py: moto's port of LocalStack's ASL interpreter, in-process.

Each execution is timed from StartExecution until its status is terminal (polled every millisecond:
moto runs executions on a worker thread), on a state machine of its own created before the clock
starts and deleted after it stops (moto deep-copies the state machine on StartExecution, and a copy
that reaches earlier executions' live locks fails: getmoto/moto#10077)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from scenarios.engine.results import EngineResult, Measurement, Outcome, _mismatch
from scenarios.engine.workloads import Workload

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/smq-bench"
POLL_INTERVAL_SECONDS = 0.001
MOTO_POLL_TIMEOUT_SECONDS = 120.0


@dataclass
class MotoExecution:
    """What one moto execution returned and how long it took to finish."""

    status: str
    output: Any
    error: str | None
    cause: str | None
    seconds: float
    states_entered: int | None = None


class MotoStepFunctions:
    """moto's ASL interpreter inside an in-process mock, driven through boto3 or its backend."""

    def __init__(self, client_kind: str) -> None:
        import boto3
        from moto.core import DEFAULT_ACCOUNT_ID

        self._client = boto3.client("stepfunctions", region_name=REGION)
        self._client_kind = client_kind
        self._backend: Any = None
        if client_kind == "backend":
            from moto.stepfunctions.parser.models import stepfunctions_parser_backends

            self._backend = stepfunctions_parser_backends[DEFAULT_ACCOUNT_ID][REGION]

    def execute(self, definition: str, payload: str, with_history: bool = False) -> MotoExecution:
        """Time one execution on a fresh state machine; setup and teardown are untimed."""
        arn = self._client.create_state_machine(
            name=f"bench-{uuid.uuid4().hex}", definition=definition, roleArn=ROLE_ARN
        )["stateMachineArn"]
        try:
            start = time.perf_counter()
            execution_arn = self._start_and_wait(arn, payload)
            elapsed = time.perf_counter() - start
            # Describe again outside the clock: moto sets the status a moment before the output.
            described = self._client.describe_execution(executionArn=execution_arn)
            entered = self._states_entered(execution_arn) if with_history else None
        finally:
            self._client.delete_state_machine(stateMachineArn=arn)
        raw_output = described.get("output")
        return MotoExecution(
            status=described["status"],
            output=json.loads(raw_output) if raw_output is not None else None,
            error=described.get("error"),
            cause=described.get("cause"),
            seconds=elapsed,
            states_entered=entered,
        )

    def _start_and_wait(self, arn: str, payload: str) -> str:
        """StartExecution, then poll every millisecond until the status is terminal."""
        name = uuid.uuid4().hex  # moto does not generate a name, and names must be unique
        give_up = time.perf_counter() + MOTO_POLL_TIMEOUT_SECONDS
        if self._backend is not None:
            execution = self._backend.start_execution(arn, name, payload)
            while execution.exec_status in (None, "RUNNING"):
                self._check_timeout(give_up)
                time.sleep(POLL_INTERVAL_SECONDS)
            return str(execution.exec_arn)
        execution_arn = self._client.start_execution(stateMachineArn=arn, name=name, input=payload)[
            "executionArn"
        ]
        while self._client.describe_execution(executionArn=execution_arn)["status"] == "RUNNING":
            self._check_timeout(give_up)
            time.sleep(POLL_INTERVAL_SECONDS)
        return str(execution_arn)

    @staticmethod
    def _check_timeout(give_up: float) -> None:
        if time.perf_counter() > give_up:
            raise TimeoutError(f"moto execution still RUNNING after {MOTO_POLL_TIMEOUT_SECONDS}s")

    def _states_entered(self, execution_arn: str) -> int:
        paginator = self._client.get_paginator("get_execution_history")
        return sum(
            event["type"].endswith("StateEntered")
            for page in paginator.paginate(executionArn=execution_arn)
            for event in page["events"]
        )


@contextmanager
def moto_step_functions(client_kind: str) -> Iterator[MotoStepFunctions]:
    """Start moto's mock with its real interpreter enabled, for the duration of the block."""
    from moto import mock_aws

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield MotoStepFunctions(client_kind)


def verify_moto(moto: MotoStepFunctions, definition: str, payload: str, workload: Workload) -> Outcome:
    """Run once (also moto's warm-up) and compare with what AWS returns."""
    run = moto.execute(definition, payload, with_history=True)
    if run.status != "SUCCEEDED":
        return Outcome(False, f"moto {run.status}: {run.error}: {run.cause}")
    if run.output != workload.expected_output:
        return Outcome(False, _mismatch("moto", run.output, workload.expected_output))
    if run.states_entered != workload.states_entered:
        return Outcome(False, f"moto entered {run.states_entered} states, expected {workload.states_entered}")
    return Outcome(True)


def measure_moto(
    moto: MotoStepFunctions, definition: str, payload: str, seconds: float, min_runs: int
) -> Measurement:
    """Sum per-execution times until both `seconds` and `min_runs` are reached."""
    timing = Measurement()
    while timing.seconds < seconds or timing.executions < min_runs:
        run = moto.execute(definition, payload)
        if run.status != "SUCCEEDED":
            raise RuntimeError(f"moto execution failed during timing: {run.status}: {run.error}")
        timing.executions += 1
        timing.seconds += run.seconds
    return timing


def run_moto(moto: MotoStepFunctions, workload: Workload, seconds: float, min_runs: int) -> EngineResult:
    """Verify, then time, the same definition and input smq gets."""
    definition = json.dumps(workload.definition())
    payload = json.dumps(workload.input)
    verified = verify_moto(moto, definition, payload, workload)
    return EngineResult(verified, measure_moto(moto, definition, payload, seconds, min_runs))
