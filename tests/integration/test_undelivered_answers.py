"""An answer is never lost (issue 22.2): one held for a branch that no longer waits when its execution
parks again is recorded UNDELIVERED on its wait, shown by `smq executions show`, and the command that
sent it says so.

Both branches of a Parallel wait for the same message, then fail; the Parallel's Catch goes on to a
Message state of its own. One message answers both: the first answer wakes the execution, the second
finds it running and is held. The continuation (in this process) runs the first branch, which fails
the Parallel; the held answer's branch is gone when the execution parks at `Later`."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from smq import Repository
from smq.cli import main
from smq.repository.waits import WaitStore

HEAR_THEN_FAIL = {
    "StartAt": "Hear",
    "States": {
        "Hear": {
            "Type": "Message",
            "CorrelationKey": "signal",
            "CorrelationValuePath": "$.ref",
            "Next": "No",
        },
        "No": {"Type": "Fail", "Error": "Refused", "Cause": "no"},
    },
}
BOTH_THEN_LATER = {
    "StartAt": "Both",
    "States": {
        "Both": {
            "Type": "Parallel",
            "Branches": [HEAR_THEN_FAIL, HEAR_THEN_FAIL],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Later"}],
            "End": True,
        },
        "Later": {"Type": "Message", "CorrelationKey": "later", "CorrelationValuePath": "$.ref", "End": True},
    },
}


def _smq(database_url: str, *args: str, expect: int = 0) -> str:
    env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("SMQ_")}
    env["SMQ_DATABASE_URL"] = database_url  # no broker: continuations run in this process
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False, prog_name="smq")
    assert result.exit_code == expect, (args, result.stdout, result.stderr)
    return result.stdout


def test_an_answer_held_for_a_branch_that_ended_is_recorded_shown_and_reported(
    repository: Repository, database_url: str
) -> None:
    repository.put_definition("ua-both", BOTH_THEN_LATER)
    from smq import StartRequest, start_execution

    parked = start_execution(repository, StartRequest("ua-both", {"ref": "a"}, name="u-1"))
    assert parked.status == "WAITING"

    sent = json.loads(
        _smq(
            database_url, "message", "send", "--key", "signal", "--value", "a", "--data", '{"n": 1}', "--json"
        )
    )
    # One answer resumed it; the other was held for it and then reached no waiting branch.
    assert sent["matched"] == 2
    assert sent["resumed"] == [parked.execution_id]
    assert sent["undelivered"] == [parked.execution_id]
    assert sent["held"] == []

    later = repository.get_execution(parked.execution_id)
    assert (later.status, later.current_state) == ("WAITING", "Later")
    store = WaitStore(repository.engine)
    [lost] = store.undelivered(parked.execution_id)
    assert lost["kind"] == "message" and lost["branch"] in ("0", "1")
    assert (lost["correlation_key"], lost["correlation_value"]) == ("signal", '"a"')
    assert lost["answer"] == {"kind": "message", "data": {"n": 1}}
    assert lost["resolution"] == "branch ended"
    assert [wait["correlation_key"] for wait in store.open_waits(parked.execution_id)] == ["later"]

    shown = json.loads(_smq(database_url, "executions", "show", parked.execution_id, "--json"))
    assert shown["undelivered"] == [lost]
    text = _smq(database_url, "executions", "show", parked.execution_id)
    assert f"undelivered  message answer branch={lost['branch']} correlation_key=signal" in text

    # The text form of the command says which execution an answer did not reach.
    second = start_execution(repository, StartRequest("ua-both", {"ref": "b"}, name="u-2"))
    out = _smq(database_url, "message", "send", "--key", "signal", "--value", "b")
    assert f"resumed {second.execution_id}" in out
    assert (
        f"undelivered (its branch no longer waits for it; see smq executions show) to {second.execution_id}"
        in out
    )


def test_the_web_console_shows_an_undelivered_answer(repository: Repository, database_url: str) -> None:
    from starlette.testclient import TestClient

    from smq import Settings, StartRequest, start_execution
    from smq.execution.continuation import LocalLauncher
    from smq.web.app import create_app
    from smq.web.config import WebConfig

    repository.put_definition("ua-web", BOTH_THEN_LATER)
    parked = start_execution(repository, StartRequest("ua-web", {"ref": "w"}, name="w-1"))
    _smq(database_url, "message", "send", "--key", "signal", "--value", "w")
    settings = Settings(database_url=database_url)
    app = create_app(repository, settings, WebConfig(users={}), launcher=LocalLauncher(repository, settings))
    page = TestClient(app, base_url="http://127.0.0.1").get(f"/executions/{parked.execution_id}")
    assert page.status_code == 200
    assert "Undelivered answers" in page.text and "branch ended" in page.text
    assert "signal = &#34;w&#34;" in page.text or 'signal = "w"' in page.text
