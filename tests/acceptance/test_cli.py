"""The `smq` command as users and scripts call it: real subprocesses, real files, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


DATABASE = {"url": ""}


@pytest.fixture(autouse=True)
def private_database(tmp_path: Path) -> None:
    """Every test records into its own SQLite file, never into the working tree."""
    DATABASE["url"] = f"sqlite:///{tmp_path / 'smq.db'}"


def smq(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMQ_DATABASE_URL": DATABASE["url"]}
    return subprocess.run(
        [sys.executable, "-m", "smq.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env
    )


def write(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


PASS_CHAIN = {
    "StartAt": "A",
    "States": {
        "A": {"Type": "Pass", "Parameters": {"doubled.$": "States.MathAdd($.n, $.n)"}, "Next": "B"},
        "B": {"Type": "Pass", "End": True},
    },
}


def test_run_json_prints_one_object_and_exits_zero(tmp_path: Path) -> None:
    definition = write(tmp_path, "chain.json", PASS_CHAIN)
    result = smq("run", str(definition), "--input", '{"n": 21}', "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert {k: body[k] for k in ("status", "output", "error", "cause")} == {
        "status": "SUCCEEDED",
        "output": {"doubled": 42},
        "error": None,
        "cause": None,
    }
    assert body["name"] and body["execution_id"]


def test_run_reads_input_from_a_file_and_yaml_definitions(tmp_path: Path) -> None:
    definition = write(
        tmp_path,
        "chain.yaml",
        "StartAt: A\nStates:\n  A:\n    Type: Pass\n    OutputPath: $.x\n    End: true\n",
    )
    inputs = write(tmp_path, "in.json", {"x": [1, 2]})
    result = smq("run", str(definition), "--input", f"@{inputs}", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["output"] == [1, 2]


def test_failed_execution_exits_one_with_error_and_cause(tmp_path: Path) -> None:
    definition = write(
        tmp_path,
        "fail.json",
        {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Order.Bad", "Cause": "no"}}},
    )
    result = smq("run", str(definition), "--json")
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert (body["status"], body["output"], body["error"], body["cause"]) == (
        "FAILED",
        None,
        "Order.Bad",
        "no",
    )


def test_human_output_shows_history_and_status(tmp_path: Path) -> None:
    definition = write(tmp_path, "chain.json", PASS_CHAIN)
    result = smq("run", str(definition), "--input", '{"n": 1}')
    assert result.returncode == 0, result.stderr
    assert "History" in result.stdout and "Status: SUCCEEDED" in result.stdout
    assert "│ A " in result.stdout and "│ B " in result.stdout
    assert "Execution: " in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "{not json"], "--input: not valid JSON"),
        (["--input", "@/nonexistent/in.json"], "--input: cannot read"),
        (
            ["--handlers", "no_such_module_xyz"],
            "--handlers: importing handler module 'no_such_module_xyz' failed",
        ),
    ],
)
def test_usage_errors_exit_two_and_name_the_argument(tmp_path: Path, args: list[str], message: str) -> None:
    definition = write(tmp_path, "chain.json", PASS_CHAIN)
    result = smq("run", str(definition), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_unregistered_resource_is_a_clear_error_before_running(tmp_path: Path) -> None:
    definition = write(
        tmp_path,
        "task.json",
        {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "charge-card", "End": True}}},
    )
    result = smq("run", str(definition))
    assert result.returncode == 2
    assert "States.T.Resource" in result.stderr and "'charge-card'" in result.stderr


def test_validate_reports_every_problem_with_its_location(tmp_path: Path) -> None:
    definition = write(
        tmp_path,
        "bad.json",
        {
            "StartAt": "CheckStock",
            "States": {
                "CheckStock": {
                    "Type": "Task",
                    "Resource": "check-stock",
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Refund"}],
                    "Next": "Done",
                },
                "Done": {"Type": "Succeed"},
                "Orphan": {"Type": "Pass", "End": True},
            },
        },
    )
    result = smq("validate", str(definition))
    assert result.returncode == 2
    assert "States.CheckStock.Catch[0].Next: no state named 'Refund'" in result.stderr
    assert "States.Orphan: unreachable" in result.stderr
    as_json = json.loads(smq("validate", str(definition), "--json").stdout)
    assert {p["where"] for p in as_json} == {"States.CheckStock.Catch[0].Next", "States.Orphan"}


def test_validate_accepts_every_example() -> None:
    for definition in sorted([*EXAMPLES.glob("*.json"), *EXAMPLES.glob("*.yaml")]):
        result = smq("validate", str(definition))
        assert result.returncode == 0, f"{definition.name}: {result.stderr}"


def test_validate_unreadable_definition_is_a_usage_error(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.json", "{ [ nope")
    result = smq("validate", str(broken))
    assert result.returncode == 2
    # Meant as JSON: the JSON error with its place, no YAML parser's report (issue 20).
    assert "not valid JSON" in result.stderr and "line 1, column 3" in result.stderr, result.stderr
    assert "YAML" not in result.stderr and "Traceback" not in result.stderr
    neither = write(tmp_path, "broken.yaml", "StartAt: [unclosed\n  - x: {")
    result = smq("validate", str(neither))
    assert result.returncode == 2 and "neither valid JSON" in result.stderr


def test_quick_start_example_runs_with_handlers_from_a_file() -> None:
    result = smq(
        "run",
        "examples/order_processing.yaml",
        "--handlers",
        "examples/handlers.py",
        "--input",
        "@examples/inputs/order.json",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["status"] == "SUCCEEDED"
    assert body["output"]["status"] == "CONFIRMED"


def test_run_of_an_execution_that_parks_says_where_it_waits_not_error_none() -> None:
    result = smq("run", str(EXAMPLES / "await_payment.json"), "--input", "{}")
    assert result.returncode == 1, result.stderr  # not SUCCEEDED (yet)
    assert "Status: WAITING" in result.stdout
    assert "Error:  None" not in result.stdout
    assert "In state AwaitPayment" in result.stdout and "smq executions show" in result.stdout


def test_stats_watch_without_a_terminal_prints_each_refresh(tmp_path: Path) -> None:
    """Piped (a log, `| tee`), `--watch` prints one plain snapshot after another instead of a live
    display that shows nothing until it stops."""
    import signal

    env = {key: value for key, value in os.environ.items() if not key.startswith("SMQ_")}
    env["SMQ_DATABASE_URL"] = DATABASE["url"]
    watching = subprocess.Popen(
        [sys.executable, "-m", "smq.cli", "stats", "--watch", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watching.stdout is not None
        seen: list[str] = []
        while sum(line.startswith("-- ") for line in seen) < 3:
            line = watching.stdout.readline()
            assert line, watching.stderr.read() if watching.stderr else ""
            seen.append(line)
        watching.send_signal(signal.SIGINT)
        assert watching.wait(timeout=10) == 0  # Ctrl-C ends it cleanly
    finally:
        watching.kill()
    text = "".join(seen)
    assert text.count("queues") >= 2 and "\x1b[" not in text  # whole tables, no terminal control codes
    assert "no broker configured" in text
