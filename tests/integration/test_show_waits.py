"""`smq executions show` of a Map parked on many callbacks: the first open waits as text, then how many
more; `--json` lists every one."""

from __future__ import annotations

from typing import Any

from smq import HandlerRegistry, Repository, StartRequest, start_execution
from smq.cli.executions import SHOWN_WAITS
from tests.integration.cli import Smq

ASK = {
    "Type": "Task",
    "Resource": "ask.waitForTaskToken",
    "Parameters": {"token.$": "$$.Task.Token"},
    "End": True,
}
MAP = {
    "StartAt": "Each",
    "States": {
        "Each": {"Type": "Map", "ItemProcessor": {"StartAt": "Ask", "States": {"Ask": ASK}}, "End": True}
    },
}


def test_show_prints_the_first_waits_and_counts_the_rest(repository: Repository, database_url: str) -> None:
    registry = HandlerRegistry()
    registry.register("ask", lambda payload, ctx: None)
    repository.put_definition("approvals", MAP)
    items: list[Any] = [{"line": n} for n in range(SHOWN_WAITS + 7)]
    record = start_execution(repository, StartRequest("approvals", items, name="many"), handlers=registry)
    assert record.status == "WAITING"
    smq = Smq(database_url)
    text = smq("executions", "show", "approvals/many").stdout
    assert text.count("waiting for  callback") == SHOWN_WAITS
    assert "... and 7 more (--json lists every one)" in text
    assert len(smq.json("executions", "show", "approvals/many")["waiting_for"]) == SHOWN_WAITS + 7
