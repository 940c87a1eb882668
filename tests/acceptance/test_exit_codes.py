"""The exit codes are an interface: the README's table, `smq --help`, `smq.cli.exits` and what the
commands really return agree. Commands run in this process (click's runner) on a private SQLite file,
except where the Celery app must read its broker from a fresh environment (a subprocess)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from smq.cli import main
from smq.cli.exits import (
    EXIT_NOT_FOUND,
    EXIT_NOT_SUCCEEDED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    EXIT_WRONG_STATE,
    Unreachable,
    exit_code_for,
)

ROOT = Path(__file__).resolve().parents[2]
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
FAIL = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Order.Bad", "Cause": "always"}}}
AWAIT = {
    "StartAt": "M",
    "States": {"M": {"Type": "Message", "CorrelationKey": "k", "CorrelationValuePath": "$.ref", "End": True}},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Smq:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("SMQ_")}
        self.env["SMQ_DATABASE_URL"] = f"sqlite:///{tmp_path / 'smq.db'}"

    def __call__(self, *args: str, **env: str) -> Result:
        return CliRunner().invoke(
            main, list(args), env={**self.env, **env}, catch_exceptions=False, prog_name="smq"
        )

    def file(self, name: str, content: object) -> str:
        path = self.tmp_path / name
        path.write_text(json.dumps(content), encoding="utf-8")
        return str(path)


@pytest.fixture
def smq(tmp_path: Path) -> Smq:
    return Smq(tmp_path)


def readme_table() -> dict[int, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Exit codes") :]
    rows = re.findall(
        r"^\| (\d) \| ([^|]+) \|", section[: section.index("\n\n", section.index("| code"))], re.M
    )
    return {int(code): meaning.strip() for code, meaning in rows}


def test_the_readme_table_help_and_constants_agree() -> None:
    table = readme_table()
    constants = {
        EXIT_OK: "ok",
        EXIT_NOT_SUCCEEDED: "the execution did not succeed",
        EXIT_USAGE: "usage or validation",
        EXIT_NOT_FOUND: "not found",
        EXIT_WRONG_STATE: "wrong state for this action",
        EXIT_UNREACHABLE: "the database or the broker cannot be reached",
    }
    assert sorted(table) == sorted(constants) == [0, 1, 2, 3, 4, 5]
    for code, meaning in constants.items():
        assert table[code].startswith(meaning), (code, table[code])
    help_text = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    for phrase in (
        "0 ok",
        "1 the execution did not succeed",
        "2 usage",
        "3 not found",
        "4 wrong state",
        "5 database",
    ):
        assert phrase in help_text, phrase


def test_errors_map_to_their_codes_in_one_place() -> None:
    import redis
    import sqlalchemy.exc

    from smq.distributed.client import EnqueueError
    from smq.engine.errors import DefinitionError
    from smq.execution.control import NotAllowed
    from smq.execution.runner import SourceNotReady
    from smq.repository.filters import FilterError
    from smq.repository.records import CheckpointConflict, NotFound
    from smq.repository.retention import DefinitionInUse
    from smq.repository.waits import TokenNotWaiting, UnknownToken

    expected = {
        NotFound("x"): EXIT_NOT_FOUND,
        UnknownToken("x"): EXIT_NOT_FOUND,
        NotAllowed("x"): EXIT_WRONG_STATE,
        TokenNotWaiting("x"): EXIT_WRONG_STATE,
        CheckpointConflict("x"): EXIT_WRONG_STATE,
        SourceNotReady("x"): EXIT_WRONG_STATE,
        DefinitionInUse("x"): EXIT_WRONG_STATE,
        Unreachable("x"): EXIT_UNREACHABLE,
        EnqueueError("x"): EXIT_UNREACHABLE,
        sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("refused")): EXIT_UNREACHABLE,
        redis.exceptions.ConnectionError("refused"): EXIT_UNREACHABLE,
        ConnectionRefusedError("refused"): EXIT_UNREACHABLE,
        FilterError("x"): EXIT_USAGE,
        DefinitionError([]): EXIT_USAGE,
        sqlalchemy.exc.ArgumentError("bad URL"): EXIT_USAGE,
    }
    for error, code in expected.items():
        assert exit_code_for(error) == code, type(error).__name__
    assert exit_code_for(ValueError("a bug")) is None  # a traceback, not a made-up code


def test_each_code_as_the_commands_return_it(smq: Smq) -> None:
    # 0 and 1
    assert smq("definitions", "put", smq.file("pass.json", PASS), "--id", "pass").exit_code == EXIT_OK
    assert smq("definitions", "put", smq.file("fail.json", FAIL), "--id", "fail").exit_code == EXIT_OK
    assert smq("start", "pass", "--name", "p-1").exit_code == EXIT_OK
    failed = smq("start", "fail", "--name", "f-1")
    assert failed.exit_code == EXIT_NOT_SUCCEEDED and "Order.Bad" in failed.stderr
    nothing = smq("message", "send", "--key", "k", "--value", "nobody")
    assert nothing.exit_code == EXIT_NOT_SUCCEEDED and "no match" in nothing.stdout
    # 2
    bad_filter = smq("executions", "list", "--filter", "colour=red")
    assert bad_filter.exit_code == EXIT_USAGE and "colour" in bad_filter.stderr
    assert smq("start", "pass", "--input", "{nope").exit_code == EXIT_USAGE
    # 3
    for args in (
        ("executions", "show", "pass/nobody"),
        ("executions", "history", "no-such-id"),
        ("definitions", "show", "nope"),
        ("start", "nope"),
        ("redrive", "pass/nobody"),
        ("dead", "show", "no-such-task"),
        ("task", "success", "no-such-token"),
    ):
        result = smq(*args)
        assert result.exit_code == EXIT_NOT_FOUND, (args, result.output, result.stderr)
        assert result.stderr.startswith(f"smq {args[0]}"), result.stderr  # one line naming the command
    # 4
    for args in (("redrive", "pass/p-1"), ("executions", "stop", "pass/p-1")):
        result = smq(*args)
        assert result.exit_code == EXIT_WRONG_STATE and "SUCCEEDED" in result.stderr, (args, result.stderr)
    chained = smq("start", "pass", "--source-execution", "fail/f-1", "--name", "c-1")
    assert chained.exit_code == EXIT_WRONG_STATE and "FAILED" in chained.stderr
    # 5
    nowhere = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/smq"
    down = smq("executions", "list", SMQ_DATABASE_URL=nowhere)
    assert down.exit_code == EXIT_UNREACHABLE and "cannot open the database" in down.stderr
    no_broker = smq("stats", SMQ_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert no_broker.exit_code == EXIT_UNREACHABLE and "broker unreachable" in no_broker.stderr
    assert "queues" in no_broker.stdout  # what it could read is still shown


def test_redrive_exits_one_when_the_rerun_fails_again(smq: Smq) -> None:
    smq("definitions", "put", smq.file("fail.json", FAIL), "--id", "fail")
    assert smq("start", "fail", "--name", "f-1").exit_code == EXIT_NOT_SUCCEEDED
    again = smq("redrive", "fail/f-1", "--json")
    assert again.exit_code == EXIT_NOT_SUCCEEDED, again.output
    assert json.loads(again.stdout)["status"] == "FAILED"


def test_start_with_an_unreachable_broker_exits_five(smq: Smq) -> None:
    smq("definitions", "put", smq.file("pass.json", PASS), "--id", "pass")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMQ_")}
    env.update(
        SMQ_DATABASE_URL=str(smq.env["SMQ_DATABASE_URL"]), SMQ_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    done = subprocess.run(
        [sys.executable, "-m", "smq.cli", "start", "pass", "--name", "q-1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_UNREACHABLE, (done.stdout, done.stderr)
    assert done.stderr.startswith("smq start: cannot enqueue 'q-1'"), done.stderr


def test_start_wait_blocks_until_a_parked_execution_ends(smq: Smq, tmp_path: Path) -> None:
    """Run here, an execution that parks on a Message state ends when the message comes (answered by
    another process); `--wait` blocks until then and exits with its code."""
    smq("definitions", "put", smq.file("await.json", AWAIT), "--id", "await")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMQ_")}
    env["SMQ_DATABASE_URL"] = str(smq.env["SMQ_DATABASE_URL"])
    waiting = subprocess.Popen(
        [sys.executable, "-m", "smq.cli", "start", "await", "--input", '{"ref": "r-1"}', "--name", "a-1"]
        + ["--wait", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiting.stderr is not None
        line = waiting.stderr.readline()  # printed once it has parked
        assert "a-1 WAITING: waiting for its end" in line, line
        assert waiting.poll() is None  # still blocked
        answered = smq("message", "send", "--key", "k", "--value", "r-1", "--data", '{"paid": 1}')
        assert answered.exit_code == EXIT_OK, answered.output
        out, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == EXIT_OK, err
    assert json.loads(out)["status"] == "SUCCEEDED" and json.loads(out)["output"] == {"paid": 1}
    short = smq("start", "await", "--input", '{"ref": "r-2"}', "--name", "a-2", "--wait", "--timeout", "0.3")
    assert short.exit_code == EXIT_NOT_SUCCEEDED and "still WAITING after 0.3s" in short.stderr
