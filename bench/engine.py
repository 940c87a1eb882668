"""In-memory executions per second: smq's engine against moto's Step Functions interpreter.

Both engines run the same definitions (``bench/definitions/*.json``) on the same input, in
the same process. Each engine's output is checked against the output AWS Step Functions
gives for that input before any timing, because a speed ratio between engines that disagree
means nothing.

moto side: ``mock_aws(config={"stepfunctions": {"execute_state_machine": True}})`` selects
moto's port of LocalStack's ASL interpreter. Each execution is timed from StartExecution
until DescribeExecution (or the backend object) reports a terminal status, polling every
millisecond because moto runs executions on a worker thread. Every execution gets its own
state machine, created before the clock starts and deleted after it stops: moto 5.2.1
deep-copies the state machine on StartExecution, and that copy reaches earlier executions
whose live locks cannot be copied (getmoto/moto#10077), so reusing a state machine, or
keeping any that has run, makes the next StartExecution fail.

smq side: compile once with ``StateMachine.from_definition``, then call ``run`` in a loop.

JSONata twin: ``workflow12_jsonata.json`` is workflow12 written in JSONata (Arguments/Output,
Condition, ``{% %}`` expressions), checked against the same AWS output. smq runs it and the
JSONPath original back to back in the same process and reports both rates and their ratio
(goal: the twin at least half as fast as the original).

Usage::

    python bench/engine.py                 # table on stdout, progress on stderr
    python bench/engine.py --json          # machine-readable results
    python bench/engine.py --moto-client backend   # skip boto3 serialisation on the moto side
    python bench/engine.py --jsonata-only --seconds 2  # only the JSONata twin vs JSONPath (no moto)

Exit status: 0 when every workflow verified and met the goal, 1 when a goal was missed or
an output differed, 2 when smq could not be imported.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from harness.paths import DEFINITIONS
from harness.progress import log
from harness.report import rate_text

GOAL_RATIO = 100.0
GOAL_TWIN_RATIO = 0.5  # JSONata twin exec/s over the JSONPath original's, same run
REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/smq-bench"
POLL_INTERVAL_SECONDS = 0.001
MOTO_POLL_TIMEOUT_SECONDS = 120.0

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


# --------------------------------------------------------------------------- smq


def _load_smq() -> Any | None:
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


# -------------------------------------------------------------------------- moto


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


# ------------------------------------------------------------------------ report


def _goal_text(row: Row) -> str:
    if row.smq is None:
        return "no smq"
    if not row.valid:
        return "INVALID"
    return "met" if row.goal_met else "NOT met"


def print_table(rows: list[Row], moto_client: str) -> None:
    """Render the side-by-side table with rich; mismatch details follow it."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"smq vs moto ({moto_client}), in-memory executions/s", box=box.SIMPLE_HEAD)
    table.add_column("workflow", no_wrap=True)
    for column in ("smq exec/s", "smq trans/s", "moto exec/s", "moto n", "ratio"):
        table.add_column(column, justify="right", overflow="fold")
    table.add_column(f"goal >={GOAL_RATIO:g}x")
    for row in rows:
        smq_rate = None if row.smq is None else row.smq.timing.per_second
        ratio = row.ratio
        goal = _goal_text(row)
        table.add_row(
            row.workload.name,
            rate_text(smq_rate),
            rate_text(None if smq_rate is None else smq_rate * row.workload.states_entered),
            rate_text(row.moto.timing.per_second),
            str(row.moto.timing.executions),
            "n/a" if ratio is None else f"{ratio:,.0f}x",
            f"[green]{goal}[/]" if row.goal_met else f"[red]{goal}[/]",
        )
    Console().print(table)
    for row in rows:
        for result in (row.smq, row.moto):
            if result is not None and not result.verified.ok:
                print(f"{row.workload.name}: {result.verified.detail}")


def as_json(rows: list[Row], args: argparse.Namespace) -> dict[str, Any]:
    """Results plus enough context to compare runs from different machines."""
    from importlib.metadata import version

    return {
        "goal_ratio": GOAL_RATIO,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "moto": {"version": version("moto"), "client": args.moto_client},
        "settings": {
            "smq_seconds": args.seconds,
            "moto_seconds": args.moto_seconds,
            "moto_min_runs": args.moto_min_runs,
        },
        "results": [
            {
                "workflow": row.workload.name,
                "definition": f"bench/definitions/{row.workload.definition_file}",
                "states_entered_per_execution": row.workload.states_entered,
                "smq": None if row.smq is None else row.smq.as_dict(row.workload.states_entered),
                "moto": row.moto.as_dict(row.workload.states_entered),
                "ratio": None if row.ratio is None else round(row.ratio, 2),
                "goal_met": row.goal_met,
            }
            for row in rows
        ],
    }


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="smq timing per workflow (default 3)")
    parser.add_argument(
        "--moto-seconds", type=float, default=5.0, help="minimum moto execution time per workflow (default 5)"
    )
    parser.add_argument(
        "--moto-min-runs", type=int, default=3, help="minimum moto executions per workflow (default 3)"
    )
    parser.add_argument(
        "--moto-client",
        choices=("boto3", "backend"),
        default="boto3",
        help="drive moto through a boto3 client (default) or call its backend directly",
    )
    parser.add_argument(
        "--workflow",
        action="append",
        choices=[w.name for w in WORKLOADS],
        help="run only this workflow (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON instead of a table")
    parser.add_argument(
        "--jsonata-only",
        action="store_true",
        help="only compare the JSONata twin of workflow12 with its JSONPath original (no moto)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workloads = [w for w in WORKLOADS if not args.workflow or w.name in args.workflow]
    state_machine_cls = _load_smq()

    if state_machine_cls is None:
        return 2
    if args.jsonata_only:
        log(f"{JSONATA_TWIN.name}: smq, twin and original for {args.seconds:g}s each")
        twin = compare_twin(state_machine_cls, args.seconds)
        print(json.dumps(twin.as_dict(), indent=2) if args.json else twin.text())
        return 0 if twin.goal_met else 1

    rows: list[Row] = []
    with moto_step_functions(args.moto_client) as moto:
        for workload in workloads:
            log(f"{workload.name}: smq for {args.seconds:g}s")
            smq_result: EngineResult | None = run_smq(state_machine_cls, workload, args.seconds)
            log(f"{workload.name}: moto for >= {args.moto_seconds:g}s and >= {args.moto_min_runs} runs")
            moto_result = run_moto(moto, workload, args.moto_seconds, args.moto_min_runs)
            rows.append(Row(workload, smq_result, moto_result))

    twin_result: TwinComparison | None = None
    if not args.workflow or WORKLOADS[1].name in args.workflow:
        log(f"{JSONATA_TWIN.name}: smq, twin and original for {args.seconds:g}s each")
        twin_result = compare_twin(state_machine_cls, args.seconds)

    if args.json:
        report = as_json(rows, args)
        report["jsonata_twin"] = None if twin_result is None else twin_result.as_dict()
        print(json.dumps(report, indent=2))
    else:
        print_table(rows, args.moto_client)
        if twin_result is not None:
            print(twin_result.text())

    twin_ok = twin_result is None or twin_result.goal_met
    return 0 if all(row.goal_met for row in rows) and twin_ok else 1


if __name__ == "__main__":
    sys.exit(main())
