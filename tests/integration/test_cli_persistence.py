"""The `smq` commands that read and write the database, as real subprocesses on a private SQLite file.

SMQ_DATABASE_URL points every command at the test's own file; the tests also open that file in-process
to check what the commands recorded (and to seed data quickly, where the command is not the subject).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect

from smq import HandlerRegistry, Repository, StartRequest, start_execution
from smq.execution.batch import chained_name
from smq.repository.database import create_database_engine, current_revision, head_revision
from smq.repository.filters import ExecutionFilter, parse_filter

ROOT = Path(__file__).resolve().parents[2]

ORDERS = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {
            "Type": "Pass",
            "Parameters": {"n.$": "$.n", "double.$": "States.MathAdd($.n, $.n)"},
            "Next": "Check",
        },
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.double", "NumericGreaterThan": 100, "Next": "TooBig"}],
            "Default": "Done",
        },
        "TooBig": {"Type": "Fail", "Error": "Order.TooBig", "Cause": "double above 100"},
        "Done": {"Type": "Succeed"},
    },
}

ECHO = {"StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "Parameters": {"got.$": "$"}, "End": True}}}

EXECUTION_KEYS = {
    "execution_id",
    "name",
    "state_machine_id",
    "version",
    "status",
    "input",
    "output",
    "error",
    "cause",
    "start_time",
    "stop_time",
    "source_execution_id",
}
HISTORY_KEYS = {
    "sequence",
    "state_name",
    "state_type",
    "status",
    "input",
    "output",
    "error",
    "cause",
    "timestamp",
}


class Cli:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.database = tmp_path / "private.db"  # not ./smq.db, the default a lost setting would use
        self.url = f"sqlite:///{self.database}"

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SMQ_DATABASE_URL": self.url, "PYTHONPATH": str(ROOT)}
        env.pop("SMQ_HANDLERS", None)
        return subprocess.run(
            [sys.executable, "-m", "smq.cli", *args],
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    def ok(self, *args: str) -> Any:
        result = self(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return json.loads(result.stdout) if "--json" in args else result.stdout

    def parallel(self, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
        """Independent commands at once (each process spends most of its time importing)."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda args: self(*args), commands))

    def parallel_ok(self, *commands: tuple[str, ...]) -> list[Any]:
        results = []
        for args, result in zip(commands, self.parallel(*commands), strict=True):
            assert result.returncode == 0, (args, result.stdout, result.stderr)
            results.append(json.loads(result.stdout) if "--json" in args else result.stdout)
        return results

    def write(self, name: str, content: Any) -> str:
        path = self.tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        return str(path)

    def repository(self) -> Repository:
        return Repository.open(self.url)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    yield Cli(tmp_path)
    assert not (tmp_path / "smq.db").exists(), "a command ignored SMQ_DATABASE_URL"


def test_definitions_put_list_show(cli: Cli) -> None:
    first = cli.write("orders.json", ORDERS)
    changed = cli.write("orders2.yaml", "StartAt: Only\nStates:\n  Only:\n    Type: Succeed\n")

    assert cli.ok("definitions", "put", first, "--id", "orders", "--json") == {
        "state_machine_id": "orders",
        "version": 1,
    }
    assert cli.ok("definitions", "put", first, "--id", "orders").strip() == "orders version 1"
    assert cli.ok("definitions", "put", changed, "--id", "orders", "--json")["version"] == 2

    invalid_file = cli.write("bad.json", {"StartAt": "X", "States": {}})
    listed, latest, oldest, missing, invalid = cli.parallel(
        ("definitions", "list", "--json"),
        ("definitions", "show", "orders", "--json"),
        ("definitions", "show", "orders", "--version", "1", "--json"),
        ("definitions", "show", "orders", "--version", "9"),
        ("definitions", "put", invalid_file, "--id", "orders"),
    )
    assert listed.returncode == latest.returncode == oldest.returncode == 0
    assert [
        (d["state_machine_id"], d["latest_version"], d["versions"])
        for d in json.loads(listed.stdout)["definitions"]
    ] == [("orders", 2, 2)]
    shown = json.loads(latest.stdout)
    assert (shown["version"], shown["definition"]) == (
        2,
        {"StartAt": "Only", "States": {"Only": {"Type": "Succeed"}}},
    )
    assert json.loads(oldest.stdout)["definition"] == ORDERS
    assert (
        missing.returncode == 3 and "version 9" in missing.stderr and "orders" in missing.stderr
    )  # not found
    assert invalid.returncode == 2 and "bad.json" in invalid.stderr
    repository = cli.repository()
    assert repository.get_definition("orders").version == 2  # the invalid one added nothing
    repository.close()


def test_start_query_and_inspect_executions(cli: Cli) -> None:
    cli.ok("definitions", "put", cli.write("orders.json", ORDERS), "--id", "orders")

    # Bulk: one execution per line, named prefix + line number; the 60 fails (exit 1).
    inputs = cli.write("inputs.jsonl", '{"n": 1}\n{"n": 2}\n\n{"n": 60}\n{"n": 3}\n')
    bulk_args = ("start", "orders", "--inputs", inputs, "--name-prefix", "p-", "--json")
    started, bulk = cli.parallel(
        ("start", "orders", "--input", '{"n": 21}', "--name", "single", "--json"), bulk_args
    )
    assert started.returncode == 0, started.stderr
    single = json.loads(started.stdout)
    assert single["name"] == "single" and single["execution_id"]
    assert (single["status"], single["output"]) == ("SUCCEEDED", {"n": 21, "double": 42})
    assert bulk.returncode == 1, bulk.stderr
    assert json.loads(bulk.stdout) == {
        "state_machine_id": "orders",
        "version": 1,
        "counts": {"SUCCEEDED": 3, "FAILED": 1},
    }
    repository = cli.repository()
    assert repository.count_executions() == 5
    again = cli(*bulk_args)
    assert again.returncode == 1 and json.loads(again.stdout)["counts"] == {"SUCCEEDED": 3, "FAILED": 1}

    list_filter = "state_machine_id=orders,name_prefix=p-"
    count, listed, finished, shown, entries, stats = cli.parallel_ok(
        ("executions", "count"),
        ("executions", "list", "--filter", list_filter, "--limit", "3", "--json"),
        ("executions", "count", "--filter", "status=SUCCEEDED|FAILED"),
        ("executions", "show", "orders/p-4", "--json"),
        ("executions", "history", single["execution_id"], "--json"),
        ("executions", "stats", "--json"),
    )
    assert count.strip() == "5"  # the second bulk start made nothing new
    assert finished.strip() == "5"

    # The JSON list is exactly the repository's records, newest first, one page of 3.
    page = repository.page_executions(parse_filter(list_filter), limit=3)
    assert listed == {"executions": [r.to_dict() for r in page.executions], "next_token": page.next_token}
    assert page.next_token is not None
    listed = listed["executions"]
    assert {e["name"] for e in listed} < {"p-1", "p-2", "p-4", "p-5"}
    for entry in [*listed, shown]:
        assert EXECUTION_KEYS <= set(entry), set(entry) ^ EXECUTION_KEYS
        assert entry["state_machine_id"] == "orders" and entry["version"] == 1
        assert entry["start_time"].endswith("Z") and entry["stop_time"].endswith("Z")
        assert entry["source_execution_id"] is None
    assert (shown["name"], shown["status"], shown["error"], shown["cause"]) == (
        "p-4",
        "FAILED",
        "Order.TooBig",
        "double above 100",
    )
    assert (shown["input"], shown["output"]) == ({"n": 60}, None)
    assert repository.find_execution("orders", "p-2").output == {"n": 2, "double": 4}

    assert entries["next_token"] is None
    entries = entries["history"]
    assert [e["sequence"] for e in entries] == [1, 2, 3]
    assert [(e["state_name"], e["state_type"], e["status"]) for e in entries] == [
        ("Prepare", "Pass", "SUCCEEDED"),
        ("Check", "Choice", "SUCCEEDED"),
        ("Done", "Succeed", "SUCCEEDED"),
    ]
    for entry in entries:
        assert HISTORY_KEYS <= set(entry)
        assert entry["timestamp"].endswith("Z") and entry["error"] is None
    assert entries[0]["input"] == {"n": 21} and entries[-1]["output"] == {"n": 21, "double": 42}

    assert {(r["state_machine_id"], r["status"], r["count"]) for r in stats} == {
        ("orders", "SUCCEEDED", 4),
        ("orders", "FAILED", 1),
    }
    for row in stats:
        assert 0 <= row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["mean_ms"] >= 0

    # What the commands reported is what the database holds.
    assert repository.count_executions(ExecutionFilter(state_machine_id="orders")) == 5
    assert repository.get_execution(single["execution_id"]).name == "single"
    repository.close()


def test_bad_filters_exit_two_naming_the_key(cli: Cli) -> None:
    cases = {
        "colour": ("executions", "list", "--filter", "colour=red", "--json"),
        "status": ("executions", "count", "--filter", "status=SUCCEEDED|NOPE"),
        "started_after": ("leader", "--local", "--filter", "started_after=yesterday", "--target", "b"),
    }
    for key, result in zip(cases, cli.parallel(*cases.values()), strict=True):
        assert result.returncode == 2, (key, result.stdout, result.stderr)
        assert "--filter" in result.stderr and key in result.stderr, result.stderr
        assert result.stdout == ""


def test_leader_chains_each_source_once(cli: Cli) -> None:
    repository = cli.repository()
    repository.put_definition("a", ECHO)
    repository.put_definition("b", ECHO)
    sources = [
        start_execution(repository, StartRequest("a", {"n": n}, name=f"a-{n}"), handlers=HandlerRegistry())
        for n in range(6)
    ]
    repository.close()

    args = (
        "leader",
        "--local",
        "--filter",
        "state_machine_id=a",
        "--target",
        "b",
        "--name-prefix",
        "p-",
        "--json",
    )
    first = cli.ok(*args)
    assert first == {
        "sources": 6,
        "processed": 6,
        "counts": {"SUCCEEDED": 6},
        "already_chained": 0,
        "stopped_early": False,
    }
    repository = cli.repository()
    chained = repository.list_executions(ExecutionFilter(state_machine_id="b"))
    assert sorted(r.name for r in chained) == sorted(chained_name("p-", s) for s in sources)
    for record in chained:
        source = next(s for s in sources if s.execution_id == record.source_execution_id)
        assert record.input == source.output and record.output == {"got": source.output}
    total = repository.count_executions()
    repository.close()

    second = cli.ok(*args)
    assert second["already_chained"] == 6 and second["counts"] == {"SUCCEEDED": 6}
    repository = cli.repository()
    assert repository.count_executions() == total == 12
    repository.close()


def test_db_upgrade_creates_the_schema_on_a_fresh_file(cli: Cli) -> None:
    assert not cli.database.exists()
    engine = create_database_engine(cli.url)
    head = head_revision(engine)
    output = cli.ok("db", "upgrade")
    assert f"at revision {head}" in output
    assert current_revision(engine) == head
    assert {"smq_definitions", "smq_executions", "smq_history", "smq_chain_links"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()


def test_run_records_an_execution_visible_in_queries(cli: Cli) -> None:
    definition = cli.write("doubler.json", ORDERS)
    ran = cli.ok("run", definition, "--input", '{"n": 4}', "--name", "first-run", "--json")
    assert (ran["status"], ran["output"], ran["name"]) == ("SUCCEEDED", {"n": 4, "double": 8}, "first-run")

    listed = cli.ok("executions", "list", "--filter", "state_machine_id=doubler", "--json")["executions"]
    assert [(e["execution_id"], e["name"], e["status"], e["output"]) for e in listed] == [
        (ran["execution_id"], "first-run", "SUCCEEDED", {"n": 4, "double": 8})
    ]
    repository = cli.repository()
    assert repository.get_definition("doubler").definition == ORDERS
    assert [h.state_name for h in repository.history(ran["execution_id"])] == ["Prepare", "Check", "Done"]
    repository.close()


def test_show_tells_how_far_the_branches_of_a_parked_map_got(cli: Cli) -> None:
    """A Map parked on its iterations' waits: `executions show` counts them by where they stand."""
    wait = {"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$", "End": True}}}
    machine = {
        "StartAt": "Each",
        "States": {"Each": {"Type": "Map", "MaxConcurrency": 2, "ItemProcessor": wait, "End": True}},
    }
    cli.ok("db", "upgrade")
    repository = cli.repository()
    try:
        repository.put_definition("fan", machine)
        parked = start_execution(
            repository, StartRequest("fan", [0, 600, 900, 30], name="f-1"), park_after=60
        )
    finally:
        repository.close()
    assert parked.status == "WAITING"
    shown = cli.ok("executions", "show", "fan/f-1", "--json")
    assert shown["branches"] == {
        "state": "Each",
        "count": 4,
        "succeeded": 1,
        "failed": 0,
        "waiting": 2,
        "not_started": 1,
    }
    assert [wait["kind"] for wait in shown["waiting_for"]] == ["timer"]


def test_start_chains_from_a_source_named_by_id_or_by_machine_and_name(cli: Cli) -> None:
    """`--source-execution` takes an id or STATE_MACHINE_ID/NAME (issue 20), and records the id."""
    cli.ok("definitions", "put", cli.write("orders.json", ORDERS), "--id", "orders")
    source = cli.ok("start", "orders", "--input", '{"n": 4}', "--name", "o-1", "--json")
    by_name = cli.ok("start", "orders", "--source-execution", "orders/o-1", "--name", "chained-1", "--json")
    by_id = cli.ok(
        "start", "orders", "--source-execution", source["execution_id"], "--name", "chained-2", "--json"
    )
    repository = cli.repository()
    for started in (by_name, by_id):
        record = repository.get_execution(started["execution_id"])
        assert record.source_execution_id == source["execution_id"]
        assert record.input == {"n": 4, "double": 8}  # the source's output
    repository.close()
    missing = cli("start", "orders", "--source-execution", "orders/nobody", "--name", "chained-3")
    assert missing.returncode == 3 and "orders/nobody" in missing.stderr, missing.stderr  # not found
