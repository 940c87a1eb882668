"""What a nested workflow costs: a `states:startExecution.sync:2` call against the same work done by a
plain Task, persisted runs in one process, pairs interleaved.

The baseline (``plain``) runs ``--executions`` N executions of a one-Task machine whose handler doubles
``n``. The nested round (``nested``) runs N executions of a one-Task machine calling
``arn:aws:states:::states:startExecution.sync:2`` on a child machine whose one Pass state doubles
``n``: each parent creates a child execution (its own row, its history, its link), runs it here to its
end, checks it and takes its DescribeExecution as its result. Both go through ``start_execution`` on
the same database (SQLite in a temporary directory by default; ``--database-url`` for another, e.g. a
scratch PostgreSQL database), the order alternating from pair to pair. Executions/s = N / the wall
time of the round; the figure reported is the median over ``--pairs`` P of the paired ratios
nested/plain (how many nested calls per plain Task call the same time buys; 1/ratio is what one
nested call costs in plain Task calls). No goal: a nested call is two executions, and is expected to
cost about two and a half plain ones on SQLite (two executions, a link, a check).

Verified: every execution SUCCEEDED with the expected output, and every parent has exactly one child.

    python bench/nested.py                 # table
    python bench/nested.py --json          # machine-readable
    python bench/nested.py --executions 300 --pairs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.options import add_output_options
from harness.progress import log
from harness.report import emit_report

CHILD = {
    "StartAt": "Double",
    "States": {
        "Double": {"Type": "Pass", "Parameters": {"twice.$": "States.MathAdd($.n, $.n)"}, "End": True}
    },
}
NESTED = {
    "StartAt": "Call",
    "States": {
        "Call": {
            "Type": "Task",
            "Resource": "arn:aws:states:::states:startExecution.sync:2",
            "Parameters": {"StateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:child",
                           "Input": {"n.$": "$.n"}},
            "ResultSelector": {"twice.$": "$.Output.twice"},
            "End": True,
        }
    },
}  # fmt: skip
PLAIN = {
    "StartAt": "Call",
    "States": {
        "Call": {"Type": "Task", "Resource": "bench-double", "Parameters": {"n.$": "$.n"}, "End": True}
    },
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--executions", type=int, default=500, help="N per round (default 500)")
    parser.add_argument(
        "--pairs", type=int, default=5, help="nested/plain pairs, median reported (default 5)"
    )
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    add_output_options(parser)
    args = parser.parse_args(argv)
    if args.executions < 1 or args.pairs < 1:
        parser.error("--executions and --pairs must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smq-bench-nested-") as directory:
        url = args.database_url or f"sqlite:///{Path(directory) / 'bench.db'}"
        results = measure(args, url)
    emit_report(results, args.save, args.json, lambda: report(results))
    return 0 if not results["errors"] else 1


def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    from smq.engine.handlers import HandlerRegistry
    from smq.execution.runner import StartRequest, start_execution
    from smq.repository.child_links import children_of
    from smq.repository.repository import Repository

    repository = Repository.open(url, auto_upgrade=True)
    repository.put_definition("child", CHILD)
    repository.put_definition("nested", NESTED)
    repository.put_definition("plain", PLAIN)
    handlers = HandlerRegistry()
    handlers.register("bench-double", lambda payload: {"twice": payload["n"] * 2})
    errors: list[str] = []
    run_id = time.strftime("%H%M%S")

    def round_of(machine: str, label: str) -> float:
        """Executions per wall second."""
        started = time.perf_counter()
        for index in range(args.executions):
            record = start_execution(
                repository,
                StartRequest(machine, {"n": index}, name=f"{run_id}-{label}-{index}"),
                handlers=handlers,
            )
            if record.status != "SUCCEEDED" or record.output != {"twice": 2 * index}:
                errors.append(f"{machine} {label}-{index}: {record.status} {record.output}")
        return args.executions / (time.perf_counter() - started)

    round_of("nested", "warm-nested")
    round_of("plain", "warm-plain")
    pairs = []
    for number in range(1, args.pairs + 1):
        order = ("plain", "nested") if number % 2 else ("nested", "plain")
        rates = {machine: round_of(machine, f"p{number}-{machine}") for machine in order}
        pairs.append({"pair": number, "plain": round(rates["plain"], 1), "nested": round(rates["nested"], 1),
                      "ratio": round(rates["nested"] / rates["plain"], 4)})  # fmt: skip
        log(f"pair {number}: plain {rates['plain']:.0f}/s, nested {rates['nested']:.0f}/s")
    sample = repository.find_execution("nested", f"{run_id}-p1-nested-0")
    if sample is None or len(children_of(repository.engine, sample.execution_id)) != 1:
        errors.append("a nested execution does not have exactly one child")
    repository.close()
    median = statistics.median(pair["ratio"] for pair in pairs)
    return {
        "database": url.split(":", 1)[0],
        "executions_per_round": args.executions,
        "pairs": pairs,
        "median_nested_over_plain": round(median, 4),
        "plain_median_per_second": round(statistics.median(pair["plain"] for pair in pairs), 1),
        "nested_median_per_second": round(statistics.median(pair["nested"] for pair in pairs), 1),
        "errors": errors,
    }


def report(results: dict[str, Any]) -> None:
    print(
        f"nested .sync:2 call vs a plain Task doing the same work, {results['executions_per_round']} "
        f"executions per round, {results['database']}, in this process"
    )
    print(f"{'pair':>4}  {'plain /s':>9}  {'nested /s':>9}  {'nested/plain':>12}")
    for pair in results["pairs"]:
        print(f"{pair['pair']:>4}  {pair['plain']:>9.0f}  {pair['nested']:>9.0f}  {pair['ratio']:>12.3f}")
    ratio = results["median_nested_over_plain"]
    print(f"median nested/plain {ratio:.3f}: one nested call costs {1 / ratio:.2f} plain Task executions")
    for error in results["errors"]:
        print(f"error: {error}")


if __name__ == "__main__":
    sys.exit(main())
