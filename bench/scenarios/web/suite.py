"""The console's benchmark: the data it loads, the page kinds it times, and their baselines
(bench/web.py runs it; see its docstring)."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness.database import copy_executions
from harness.figures import percentile
from harness.progress import log
from harness.servers import fresh_database
from sqlalchemy import insert, text

from scenarios.persistence.streaming import STREAM_MACHINE_ID, load_sqlite, synthetic_rows
from smq import Repository, Settings, StateMachine
from smq.graph.layout import layout_graph
from smq.graph.model import build_graph
from smq.graph.svg import render_svg
from smq.repository.queries import EXECUTION_PAGES
from smq.repository.tables import EXECUTIONS, HISTORY
from smq.web.app import create_app, settle_heap
from smq.web.config import WebConfig

LIST_GOAL_MS, EXECUTION_GOAL_MS, GRAPH_GOAL_MS = 200.0, 200.0, 100.0
LOOP_MACHINE = "web-bench-loop"
COLUMNS = "*"


def hundred_states() -> dict[str, Any]:
    """100 states: a chain of Tasks with Retry and Catch, a Choice that loops back, a Parallel of two
    branches and a Map, so every kind of edge and nesting is drawn."""
    states: dict[str, Any] = {}
    for index in range(90):
        name = f"Step{index:02d}"
        states[name] = {"Type": "Pass", "Next": f"Step{index + 1:02d}" if index < 89 else "Loop"}
        if index % 10 == 5:
            states[name] = {
                "Type": "Task",
                "Resource": "work",
                "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 2}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover"}],
                "Next": states[name]["Next"],
            }
    states["Loop"] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.n", "NumericLessThan": 5, "Next": "Step00"}],
        "Default": "Fan",
    }
    states["Fan"] = {
        "Type": "Parallel",
        "Branches": [
            {
                "StartAt": "A1",
                "States": {"A1": {"Type": "Pass", "Next": "A2"}, "A2": {"Type": "Pass", "End": True}},
            },
            {"StartAt": "B1", "States": {"B1": {"Type": "Pass", "End": True}}},
        ],
        "Next": "Each",
    }
    states["Each"] = {
        "Type": "Map",
        "ItemProcessor": {
            "StartAt": "M1",
            "States": {"M1": {"Type": "Pass", "Next": "M2"}, "M2": {"Type": "Pass", "End": True}},
        },
        "Next": "Done",
    }
    states["Recover"] = {"Type": "Pass", "Next": "Failed"}
    states["Failed"] = {"Type": "Fail", "Error": "Bench.Failed"}
    states["Done"] = {"Type": "Succeed"}
    return {"StartAt": "Step00", "States": states}


CPU: dict[int, list[float]] = {}  # id(wall samples) -> the same calls' CPU milliseconds


def timed(call: Callable[[], Any], repeat: int, warmup: int = 3) -> list[float]:
    """Wall milliseconds per call; the process's CPU milliseconds for the same calls go to CPU (all
    threads: the test client's and the server's), which other processes on the machine cannot inflate."""
    for _ in range(warmup):
        call()
    samples, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        samples.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    CPU[id(samples)] = cpu
    return samples


def p95(samples: list[float]) -> float:
    return percentile(sorted(samples), 0.95)


def summary(samples: list[float]) -> dict[str, float]:
    cpu = CPU.get(id(samples), samples)
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(p95(samples), 2),
        "cpu_p95_ms": round(p95(cpu), 2),
    }


def add_long_execution(repo: Repository, events: int) -> str:
    """One SUCCEEDED execution of the 100-state machine whose history has `events` rows."""
    definition = hundred_states()
    repo.put_definition(LOOP_MACHINE, definition)
    execution_id = str(uuid.uuid4())
    start = datetime(2026, 2, 1, tzinfo=UTC)
    chain = [f"Step{index:02d}" for index in range(90)] + ["Loop"]
    visits = [chain[i % len(chain)] for i in range(events - 1)] + ["Done"]
    with repo.engine.begin() as connection:
        connection.execute(
            insert(EXECUTIONS).values(
                id=execution_id,
                name="long-1",
                state_machine_id=LOOP_MACHINE,
                version=1,
                status="SUCCEEDED",
                input={"n": 0, "note": "x" * 80},
                output={"n": 5},
                current_state="Done",
                history_length=events,
                start_time=start,
                stop_time=start + timedelta(seconds=events / 100),
                duration_ms=events * 10,
                updated_at=start,
            )
        )
        connection.execute(
            insert(HISTORY),
            [
                {
                    "execution_id": execution_id,
                    "sequence": index + 1,
                    "state_name": name,
                    "state_type": "Choice" if name == "Loop" else "Succeed" if name == "Done" else "Pass",
                    "status": "SUCCEEDED",
                    "scope": "",
                    "attempt": 1,
                    "input": {"n": index // len(chain), "note": "x" * 80, "items": list(range(10))},
                    "output": {"n": index // len(chain), "note": "x" * 80, "items": list(range(10))},
                    "error": None,
                    "cause": None,
                    "entered_at": start + timedelta(milliseconds=10 * index),
                    "exited_at": start + timedelta(milliseconds=10 * index + 3),
                }
                for index, name in enumerate(visits)
            ],
        )
    return execution_id


@contextmanager
def backend_repository(backend: str, pg_url: str) -> Iterator[tuple[Repository, str]]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="smq-web-bench-") as directory:
            url = f"sqlite:///{Path(directory) / 'smq.db'}"
            repo = Repository.open(url, auto_upgrade=True)
            try:
                yield repo, url
            finally:
                repo.close()
        return
    with fresh_database(pg_url, f"smq_bench_web_{os.getpid()}") as url:
        repo = Repository.open(url)
        try:
            yield repo, url
        finally:
            repo.close()


def sql_baseline(
    repo: Repository, where: str, params: dict[str, Any], order: str = "DESC"
) -> Callable[[], Any]:
    """The same page as a plain SQL query: the rows the console shows, fetched, nothing else."""
    statement = text(
        f"SELECT {COLUMNS} FROM smq_executions WHERE {where or 'TRUE'} "
        f"ORDER BY start_time {order}, id {order} LIMIT 51"
    )

    def run() -> Any:
        with repo.reader.connect() as connection:
            return connection.execute(statement, params).all()

    return run


def deep_position(
    repo: Repository, where: str, params: dict[str, Any], fraction: float
) -> tuple[str, Any, str]:
    """A next_token as the list hands out, for the row `fraction` of the way through the matches."""
    with repo.reader.connect() as connection:
        total = connection.execute(
            text(f"SELECT count(*) FROM smq_executions WHERE {where or 'TRUE'}"), params
        ).scalar_one()
        row = connection.execute(
            text(
                f"SELECT start_time, id FROM smq_executions WHERE {where or 'TRUE'} "
                "ORDER BY start_time DESC, id DESC LIMIT 1 OFFSET :skip"
            ),
            {**params, "skip": int(total * fraction)},
        ).one()
    start = row.start_time if isinstance(row.start_time, datetime) else datetime.fromisoformat(row.start_time)
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start
    return EXECUTION_PAGES.encode([start, row.id], oldest_first=False), start, row.id


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    from starlette.testclient import TestClient

    results: dict[str, Any] = {"backend": backend, "rows": args.rows, "pages": []}
    with backend_repository(backend, args.pg_url) as (repo, url):
        repo.put_definition(STREAM_MACHINE_ID, hundred_states())
        log(f"{backend}: loading {args.rows:,} executions")
        started = time.perf_counter()
        (load_sqlite if backend == "sqlite" else copy_executions)(repo, synthetic_rows(args.rows))
        if backend == "postgresql":
            with repo.reader.connect() as connection:
                connection.execute(text("ANALYZE smq_executions"))
        results["load_seconds"] = round(time.perf_counter() - started, 1)
        long_id = add_long_execution(repo, 500)
        log(f"{backend}: loaded in {results['load_seconds']}s; measuring")
        app = create_app(repo, Settings(database_url=url), WebConfig())
        client = TestClient(app, base_url="http://127.0.0.1")
        settle_heap()  # as `smq web` does before it serves

        def page(path: str, marker: str) -> Callable[[], Any]:
            def get() -> Any:
                response = client.get(path)
                if response.status_code != 200 or marker not in response.text:
                    raise SystemExit(
                        f"{backend} {path}: {response.status_code}, expected {marker!r} in the page"
                    )
                return response

            return get

        machine = {"m": STREAM_MACHINE_ID}
        deep_all, _, _ = deep_position(repo, "", {}, 0.9)
        failed = {"s": "FAILED"}
        deep_machine_failed, _, _ = deep_position(
            repo, "state_machine_id = :m AND status = :s", {**machine, **failed}, 0.9
        )
        kinds = [
            ("list: first page", "/executions", "", {}, None),
            ("list: deep page (token at 90%)", f"/executions?token={deep_all}", "", {}, deep_all),
            ("list: status=FAILED", "/executions?status=FAILED", "status = :s", failed, None),
            (
                "list: machine+FAILED, deep",
                f"/executions?state_machine_id={STREAM_MACHINE_ID}&status=FAILED&token={deep_machine_failed}",
                "state_machine_id = :m AND status = :s",
                {**machine, **failed},
                deep_machine_failed,
            ),
            (
                "list: name_prefix=order-99",
                "/executions?name_prefix=order-99",
                "name LIKE :p",
                {"p": "order-99%"},
                None,
            ),
        ]
        for label, path, where, params, token in kinds:
            baseline_where, baseline_params = where, dict(params)
            if token is not None:
                _, start, last_id = _position_of(token)
                keyset = "(start_time, id) < (:t, :i)"  # a row value: one index range, as the list's
                baseline_where = f"{where} AND {keyset}" if where else keyset
                baseline_params.update(t=_bind_time(backend, start), i=last_id)
            served = timed(page(path, 'id="executions"'), args.repeat)
            plain = timed(sql_baseline(repo, baseline_where, baseline_params), args.repeat)
            rows = len(sql_baseline(repo, baseline_where, baseline_params)())
            results["pages"].append(_row(label, served, plain, "plain SQL, same rows", LIST_GOAL_MS, rows))
        # One execution of 500 events.
        served = timed(page(f"/executions/{long_id}", 'id="history"'), args.repeat)

        def plain_execution() -> Any:
            with repo.reader.connect() as connection:
                connection.execute(text("SELECT * FROM smq_executions WHERE id = :i"), {"i": long_id}).one()
                return connection.execute(
                    text("SELECT * FROM smq_history WHERE execution_id = :i ORDER BY sequence"),
                    {"i": long_id},
                ).all()

        plain = timed(plain_execution, args.repeat)
        results["pages"].append(
            _row(
                "execution of 500 events",
                served,
                plain,
                "plain SQL, execution + history",
                EXECUTION_GOAL_MS,
                500,
            )
        )
        client.close()
    return results


def _position_of(token: str) -> tuple[str, datetime, str]:
    start, execution_id = EXECUTION_PAGES.decode(token, oldest_first=False)
    return token, start, execution_id


def _bind_time(backend: str, moment: datetime) -> Any:
    """SQLite keeps naive UTC text (what smq's column type writes); PostgreSQL an aware timestamp."""
    if backend == "sqlite":
        return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return moment


def _row(
    label: str, served: list[float], plain: list[float], baseline: str, goal: float, rows: int
) -> dict[str, Any]:
    page_stats, base_stats = summary(served), summary(plain)
    return {
        "page": label,
        "rows": rows,
        **page_stats,
        "load1": round(os.getloadavg()[0], 2),
        "baseline": baseline,
        "baseline_p95_ms": base_stats["p95_ms"],
        "ratio_p95": round(page_stats["p95_ms"] / base_stats["p95_ms"], 1) if base_stats["p95_ms"] else None,
        "goal_ms": goal,
        "met": page_stats["p95_ms"] < goal,
    }


def graph_bench(repeat: int) -> dict[str, Any]:
    import smq.web.app  # noqa: F401 - the server's modules, loaded as `smq web` has them

    definition = hundred_states()
    settle_heap()  # as `smq web` does before it serves
    states = sum(1 for node in build_graph(definition).walk() if not node.marker)

    def draw() -> str:
        graph = build_graph(definition)
        return render_svg(graph, layout=layout_graph(graph), standalone=False)

    served = timed(draw, repeat)
    compile_only = timed(lambda: StateMachine.from_definition(definition), repeat)
    return _row(
        f"graph of {states} states (model+layout+SVG)",
        served,
        compile_only,
        "compiling the definition",
        GRAPH_GOAL_MS,
        states,
    )
