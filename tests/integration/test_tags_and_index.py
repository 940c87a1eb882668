"""The payload's `index` and user tags, on SQLite and PostgreSQL: kept on the execution (through either
backend's insert), shown, and filterable with `tag.KEY=VALUE`; `smq start --tag/--index` and bulk
starts set them; `smq leader --limit` chains at most N sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smq import HandlerRegistry
from smq.execution.runner import StartRequest, start_execution
from smq.repository.filters import FilterError, parse_filter
from smq.repository.repository import Repository
from tests.integration.cli import Smq

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def test_index_and_tags_are_kept_shown_and_filterable(repository: Repository) -> None:
    repository.put_definition("orders", PASS)
    tagged = [
        ("o-1", 0, {"team": "billing", "region": "eu"}),
        ("o-2", 1, {"team": "billing", "region": "us"}),
        ("o-3", 2, {"team": "shipping"}),
        ("o-4", None, None),
    ]
    for name, index, tags in tagged:
        start_execution(
            repository,
            StartRequest("orders", {}, name=name, index=index, tags=tags),
            handlers=HandlerRegistry(),
        )
    one = repository.find_execution("orders", "o-2")
    assert one is not None and (one.index, one.tags) == (1, {"team": "billing", "region": "us"})
    assert one.to_dict()["index"] == 1 and one.to_dict()["tags"] == {"team": "billing", "region": "us"}
    plain = repository.find_execution("orders", "o-4")
    assert plain is not None and (plain.index, plain.to_dict()["tags"]) == (None, {})

    def names(text: str) -> list[str]:
        page = repository.page_executions(parse_filter(text), oldest_first=True)
        return [record.name for record in page.executions]

    assert names("tag.team=billing") == ["o-1", "o-2"]
    assert names("tag.team=billing,tag.region=us") == ["o-2"]
    assert names("state_machine_id=orders,tag.team=shipping") == ["o-3"]
    assert names("tag.team=nobody") == []
    assert repository.count_executions(parse_filter("tag.region=eu")) == 1
    for bad in ("tag.=x", "tag.a,b=x", "tag.team="):
        with pytest.raises(FilterError, match="tag"):
            parse_filter(bad)


def test_start_tags_index_and_leader_limit(repository: Repository, database_url: str, tmp_path: Path) -> None:
    smq = Smq(database_url)
    repository.put_definition("orders", PASS)
    repository.put_definition("ship", PASS)
    smq("start", "orders", "--name", "single", "--index", "5", "--tag", "team=billing", "--tag", "rush=yes")
    shown = smq("executions", "show", "orders/single").stdout
    assert "index        5" in shown and "tags         rush=yes, team=billing" in shown
    body = json.loads(smq("executions", "show", "orders/single", "--json").stdout)
    assert (body["index"], body["tags"]) == (5, {"team": "billing", "rush": "yes"})
    assert "--tag" in smq("start", "orders", "--tag", "no-equals-sign", expect=2).stderr

    inputs = tmp_path / "batch.jsonl"
    inputs.write_text('{"n": 1}\n\n{"n": 2}\n{"n": 3}\n', encoding="utf-8")
    smq("start", "orders", "--inputs", str(inputs), "--name-prefix", "b-", "--tag", "batch=7")
    listed = json.loads(
        smq("executions", "list", "--filter", "tag.batch=7", "--oldest-first", "--json").stdout
    )["executions"]
    # A bulk start runs its lines concurrently: their start times may tie or cross, so compare as a set.
    assert sorted((e["name"], e["index"]) for e in listed) == [("b-1", 0), ("b-3", 1), ("b-4", 2)]

    limited = json.loads(
        smq(
            "leader", "--local", "--filter", "tag.batch=7", "--target", "ship", "--limit", "2", "--json"
        ).stdout
    )
    assert (limited["sources"], limited["processed"]) == (2, 2)
    more = json.loads(
        smq(
            "leader", "--local", "--filter", "tag.batch=7,not_chained_into=ship", "--target", "ship",
            "--limit", "2", "--json",
        ).stdout
    )  # fmt: skip
    assert (more["sources"], more["processed"]) == (1, 1)
    assert repository.count_executions(parse_filter("state_machine_id=ship")) == 3
