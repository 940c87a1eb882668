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
import sys

from harness.progress import log
from scenarios.engine.moto_engine import moto_step_functions, run_moto
from scenarios.engine.report import as_json, print_table
from scenarios.engine.results import EngineResult, Row
from scenarios.engine.smq_engine import load_smq, run_smq
from scenarios.engine.twin import TwinComparison, compare_twin
from scenarios.engine.workloads import JSONATA_TWIN, WORKLOADS


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
    state_machine_cls = load_smq()

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
