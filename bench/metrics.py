"""What Prometheus metrics cost an execution: persisted runs with SMQ_METRICS on against the same runs
with it off, in one process, pairs interleaved.

Each pair runs ``--executions`` N executions of ``definitions/pass3.json`` (3 Pass states: the
per-execution overhead floor, where metrics weigh the most) through ``start_execution`` on a SQLite
database in a temporary directory, once with the runner's observer off (``NOOP``: what a worker with
SMQ_METRICS=off runs) and once with ``smq.observability.metrics.Metrics`` (a worker's: prometheus-client
in multiprocess mode, every value an mmap'ed file, as in a prefork pool process), the order
alternating from pair to pair. Executions/s = N / the CPU time this process spent in the loop (SQLite
runs in it; CPU time, not wall time, so that other work on a shared machine moves the figure less;
the wall-time rates are shown too); the figure judged is the median over ``--pairs`` P (default 5) of
the paired ratios on/off. Goal: >= 0.90: metrics cost at most a tenth of the cheapest execution smq
persists (about 350 us of CPU here); an execution on a worker costs several times more (Celery, Redis,
PostgreSQL: about 2 ms of CPU over its processes), where the same hooks weigh a few percent at most
(`bench/distributed.py --metrics on|off`).

Then the hooks alone: the observer calls one pass3 execution makes (started, 3 steps, ended), timed
``--hook-calls`` times, in microseconds per execution.

Verified: every execution SUCCEEDED, and the metrics counted exactly the executions started and
finished, and 3 Pass visits each, in the rounds with metrics on.

    python bench/metrics.py                 # table
    python bench/metrics.py --json          # machine-readable
    python bench/metrics.py --executions 500 --pairs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.options import add_output_options
from harness.progress import log
from harness.report import emit_report

from smq.observability.exposition import use_multiprocess_dir
from smq.settings import Settings

ROOT = Path(__file__).resolve().parent

GOAL = 0.90


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--executions", type=int, default=2_000, help="N per round (default 2,000)")
    parser.add_argument("--pairs", type=int, default=5, help="on/off pairs, median judged (default 5)")
    parser.add_argument(
        "--hook-calls", type=int, default=20_000, help="timed hook sequences (default 20,000)"
    )
    add_output_options(parser)
    args = parser.parse_args(argv)
    if args.executions < 1 or args.pairs < 1 or args.hook_calls < 1:
        parser.error("--executions, --pairs and --hook-calls must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smq-bench-metrics-") as directory:
        # As a worker does before its pool forks: prometheus-client's multiprocess mode, files here.
        use_multiprocess_dir(Settings(metrics_dir=str(Path(directory) / "metrics")))
        results = measure(args, Path(directory))
    emit_report(results, args.save, args.json, lambda: report(results))
    return 0 if results["goal_met"] and not results["errors"] else 1


def measure(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from smq.engine.cursor import HistoryEntry, Step
    from smq.execution.observer import NOOP, Observer
    from smq.execution.runner import StartRequest, start_execution
    from smq.observability.metrics import Metrics
    from smq.repository.repository import Repository

    repository = Repository.open(f"sqlite:///{directory / 'bench.db'}")
    definition = json.loads((ROOT / "definitions" / "pass3.json").read_text())
    repository.put_definition("pass3", definition)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    errors: list[str] = []

    def round_of(observer: Observer, label: str) -> tuple[float, float]:
        """(executions per CPU second, per wall second)."""
        started, cpu = time.perf_counter(), time.process_time()
        for index in range(args.executions):
            record = start_execution(
                repository,
                StartRequest("pass3", {"name": index}, name=f"{label}-{index}"),
                observer=observer,
                lease_seconds=0,
            )
            if record.status != "SUCCEEDED":
                errors.append(f"{label}-{index}: {record.status}")
        return (
            args.executions / (time.process_time() - cpu),
            args.executions / (time.perf_counter() - started),
        )

    round_of(NOOP, "warm")
    pairs = []
    for number in range(1, args.pairs + 1):
        order = ("off", "on") if number % 2 else ("on", "off")
        rates = {mode: round_of(metrics if mode == "on" else NOOP, f"p{number}-{mode}") for mode in order}
        (off, off_wall), (on, on_wall) = rates["off"], rates["on"]
        pairs.append({"pair": number, "off": round(off, 1), "on": round(on, 1), "ratio": round(on / off, 4),
                      "off_wall": round(off_wall, 1), "on_wall": round(on_wall, 1)})  # fmt: skip
        log(f"pair {number}: off {off:.0f}/s, on {on:.0f}/s (per CPU second)")

    counted = args.executions * args.pairs
    checks = {
        "smq_executions_started_total": registry.get_sample_value(
            "smq_executions_started_total", {"state_machine": "pass3"}
        ),
        "smq_executions_finished_total": registry.get_sample_value(
            "smq_executions_finished_total", {"state_machine": "pass3", "status": "SUCCEEDED"}
        ),
        "smq_state_duration_seconds_count": registry.get_sample_value(
            "smq_state_duration_seconds_count", {"state_machine": "pass3", "state_type": "Pass"}
        ),
    }
    expected = {name: counted * (3 if name.startswith("smq_state") else 1) for name in checks}
    for name, value in checks.items():
        if value != expected[name]:
            errors.append(f"{name} is {value}, expected {expected[name]}")

    # The hooks alone: what one pass3 execution's observer calls cost.
    record = repository.find_execution("pass3", "warm-0")
    assert record is not None
    entries = [
        HistoryEntry(name, "Pass", "SUCCEEDED", {}, entered_at=1.0, exited_at=1.00005) for name in "ABC"
    ]
    steps = [Step([entry]) for entry in entries]
    started = time.perf_counter()
    for _ in range(args.hook_calls):
        metrics.started(record)
        for step in steps:
            metrics.step(record, step)
        metrics.ended(record)
    hook_us = (time.perf_counter() - started) / args.hook_calls * 1e6
    repository.close()
    median = statistics.median(pair["ratio"] for pair in pairs)
    return {
        "executions_per_round": args.executions,
        "pairs": pairs,
        "median_on_over_off": round(median, 4),
        "off_median_per_second": round(statistics.median(pair["off"] for pair in pairs), 1),
        "on_median_per_second": round(statistics.median(pair["on"] for pair in pairs), 1),
        "hooks_us_per_execution": round(hook_us, 2),
        "goal": GOAL,
        "goal_met": median >= GOAL,
        "errors": errors,
    }


def report(results: dict[str, Any]) -> None:
    print(
        f"pass3 executions on SQLite, {results['executions_per_round']} per round; metrics in multiprocess mode"
    )
    print(f"{'pair':>4}  {'off /cpu-s':>10}  {'on /cpu-s':>10}  {'on/off':>7}  {'off /s':>7}  {'on /s':>7}")
    for pair in results["pairs"]:
        print(
            f"{pair['pair']:>4}  {pair['off']:>10.0f}  {pair['on']:>10.0f}  {pair['ratio']:>7.3f}  "
            f"{pair['off_wall']:>7.0f}  {pair['on_wall']:>7.0f}"
        )
    print(
        f"median on/off {results['median_on_over_off']:.3f} (goal >= {results['goal']}: "
        f"{'met' if results['goal_met'] else 'NOT met'}); the hooks alone: "
        f"{results['hooks_us_per_execution']:.1f} us per execution"
    )
    for error in results["errors"]:
        print(f"error: {error}")


if __name__ == "__main__":
    sys.exit(main())
