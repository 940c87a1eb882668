"""Bad messages: whatever lands on a queue that is not a task smq can run (raw text pushed with LPUSH, a
kombu envelope whose body is not JSON, pickle or another content type, headers Celery cannot read, an
unknown task, arguments that do not fit) leaves the worker running and lands in the dead letters once,
at once, with its raw text and a reason saying what is wrong. A good message behind them runs normally.
`smq dead list/show` display them; `smq dead retry` refuses them (nothing valid to replay).

The envelopes are written by hand, exactly as kombu's Redis transport stores a message, and pushed
onto the queue's list: the good marker is one too, so each bad one differs from a working message
only by its defect.
"""

from __future__ import annotations

import base64
import json
import pickle
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from smq import Repository
from smq.distributed.intake import RAW_LIMIT, raw_text
from smq.distributed.task_names import TASK_NAME
from tests.integration.distributed.harness import (
    QUEUES,
    Db,
    Worker,
    broker_backlog,
    client_app,
    run_smq,
    smq_env,
    smq_here,
    wait_until,
)

TASK = TASK_NAME
PASS = {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": True}}}


def _payload(name: str) -> dict[str, Any]:
    return {"state_machine_id": "PASS", "name": name}


def _body(args: list[Any], kwargs: dict[str, Any] | None = None) -> bytes:
    """A Celery protocol 2 body: [args, kwargs, embed]."""
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    return json.dumps([args, kwargs or {}, embed]).encode()


def _envelope(
    queue: str,
    body: bytes,
    *,
    task_id: str | None = None,
    content_type: str | None = "application/json",
    headers: Any = "celery",
) -> tuple[str, bytes]:
    """(task id, the queue item) of a message as kombu's Redis transport stores it; `headers`, unless
    "celery", replace Celery's (task name and id)."""
    task_id = task_id or str(uuid.uuid4())
    envelope: dict[str, Any] = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "headers": {"lang": "py", "task": TASK, "id": task_id, "retries": 0, "root_id": task_id}
        if headers == "celery"
        else headers,
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": queue, "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    if content_type is not None:
        envelope["content-type"] = content_type
    return task_id, json.dumps(envelope).encode()


def _push(broker_url: str, queue: str, *items: bytes) -> None:
    """LPUSH, as kombu publishes: the worker's BRPOP takes them in this order."""
    client = redis.Redis.from_url(broker_url, socket_timeout=5)
    try:
        for item in items:
            client.lpush(queue, item)
    finally:
        client.close()


def _wait_for_marker(db: Db, worker: Worker, broker_url: str, markers: int, letters: int) -> dict[str, Any]:
    wait_until(
        lambda: db.count("PASS", "SUCCEEDED") == markers and len(db.dead_letters()) >= letters,
        timeout=40,
        what=f"{markers} good message(s) and {letters} dead letter(s)",
        workers=[worker],
        diagnose=lambda: db.describe("PASS", broker_url) + "\n" + worker.tail(30),
    )
    time.sleep(1.5)  # a redelivery or a retry (backoff 0.1-0.2 s) would have landed by now
    assert worker.alive(), worker.tail(30)
    assert broker_backlog(broker_url) == {"critical": 0, "default": 0, "low": 0, "unacked": 0}
    return {row.task_id: row for row in db.dead_letters()}


def test_raw_items_that_are_not_kombu_messages_are_dead_lettered_on_every_queue(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker]
) -> None:
    repository.put_definition("PASS", PASS)
    env = smq_env(db.url, broker_url)
    worker = start_worker("w1", env)
    big = b"x" * (RAW_LIMIT + 4096)
    _, not_base64 = _envelope("default", b"")
    not_base64 = not_base64.replace(b'"body": ""', b'"body": "abc"')
    _, listed_headers = _envelope("low", _body([_payload("never-run")]), headers=[TASK])
    raws = {
        "critical": [b"not a kombu message {"],
        "default": [b"not a kombu message {", b"[1, 2]", b"{}", not_base64, b"\xff\xfe\x00 binary", big],
        "low": [b"not a kombu message {", b'{"properties": {"delivery_tag": "t"}}', listed_headers],
    }
    markers = {}
    for queue in QUEUES:
        markers[queue], marker = _envelope(queue, _body([_payload(f"after-{queue}")]))
        _push(broker_url, queue, *raws[queue], marker)
    expected = sum(len(items) for items in raws.values())
    letters = _wait_for_marker(db, worker, broker_url, markers=3, letters=expected)

    # One dead letter per raw item, on its queue, with its raw text; nothing else.
    found = sorted((row.queue, row.payload) for row in letters.values())
    assert found == sorted((queue, raw_text(item)) for queue, items in raws.items() for item in items)
    for row in letters.values():
        assert (row.reason, row.attempts, row.task_name) == ("malformed_envelope", 1, "-"), row
        assert row.error.startswith("not a kombu message") or "does not decode" in row.error, row.error
        assert row.state_machine_id is None and row.execution_name is None
    by_payload = {row.payload: row for row in letters.values()}
    assert "not JSON" in by_payload["not a kombu message {"].error
    assert "JSON list" in by_payload["[1, 2]"].error
    assert "delivery_tag" in by_payload["{}"].error
    assert "delivery_info" in by_payload[raw_text(raws["low"][1])].error
    assert "'base64'" in by_payload[raw_text(not_base64)].error
    assert "headers are not an object" in by_payload[raw_text(listed_headers)].error
    assert raw_text(b"\xff\xfe\x00 binary") == "\\xff\\xfe\\x00 binary"
    (capped,) = [row.payload for row in letters.values() if row.payload.startswith("xxx")]
    assert capped.startswith("x" * RAW_LIMIT) and capped.endswith(f"[{len(big)} bytes in all, cut]")
    assert worker.task_ids("succeeded") == set(markers.values())
    assert sorted(row.name for row in db.rows("SELECT name FROM smq_executions")) == [
        "after-critical",
        "after-default",
        "after-low",
    ]

    # smq dead list / show display them; smq dead retry refuses each, clearly, and keeps it.
    listed = json.loads(smq_here(["dead", "list", "--json"], env).stdout)["dead_letters"]
    assert {item["task_id"]: item["reason"] for item in listed} == {
        key: "malformed_envelope" for key in letters
    }
    table = smq_here(["dead", "list"], env).stdout
    assert table.count("malformed") == expected
    raw_id = by_payload["not a kombu message {"].task_id
    shown = smq_here(["dead", "show", raw_id], env).stdout
    assert "reason: malformed_envelope" in shown and 'payload: "not a kombu message {"' in shown
    refused = run_smq(["dead", "retry", raw_id, "--json"], env, expect=1)
    assert json.loads(refused.stdout)["retried"] == []
    (failure,) = json.loads(refused.stdout)["failed"]
    assert failure["task_id"] == raw_id
    assert "malformed_envelope" in failure["error"] and "nothing to replay" in failure["error"]
    assert "Traceback" not in refused.stderr
    assert raw_id in {row.task_id for row in db.dead_letters()}


def test_bad_task_messages_are_dead_lettered_with_what_is_wrong(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker]
) -> None:
    repository.put_definition("PASS", PASS)
    env = smq_env(db.url, broker_url)
    worker = start_worker("w1", env)
    good = _body([_payload("never-run")])
    pickled = pickle.dumps(([_payload("pickled")], {}, {}), protocol=4)
    no_id = {"lang": "py", "task": TASK}
    cases: dict[str, tuple[bytes, dict[str, Any], str, str]] = {
        # key: (body, envelope options, reason, a text the error must contain)
        "not_json": (b"not json {", {}, "undecodable_body", "application/json"),
        "pickle": (
            pickled,
            {"content_type": "application/x-python-serialize"},
            "content_type_refused",
            "python-serialize",
        ),
        "unknown_type": (
            good,
            {"content_type": "application/x-unheard-of"},
            "content_type_refused",
            "unheard",
        ),
        "no_type": (good, {"content_type": None}, "content_type_refused", "JSON only"),
        "data_type": (good, {"content_type": "application/data"}, "content_type_refused", "JSON only"),
        "no_headers": (good, {"headers": {}}, "malformed_envelope", "no task name"),
        "null_headers": (good, {"headers": None}, "malformed_envelope", "no task name"),
        "no_id": (good, {"headers": no_id}, "malformed_envelope", "task id"),
        "list_task": (good, {"headers": {"task": [TASK], "id": "x"}}, "malformed_envelope", "TypeError"),
        "bad_eta": (good, {"headers": {**no_id, "id": "e", "eta": "soon"}}, "malformed_envelope", "soon"),
        "unknown_task": (good, {"headers": {"task": "smq.nope", "id": "n"}}, "unknown_task", "smq.nope"),
        "string_body": (b'"just text"', {}, "malformed_envelope", "JSON str"),
        "args_not_list": (b'[{"a": 1}, {}, {}]', {}, "invalid_arguments", "args: list"),
        "too_many": (_body([_payload("many"), "x", "y"]), {}, "invalid_arguments", "too many positional"),
        "too_few": (_body([]), {}, "invalid_arguments", "payload"),
        "unknown_kwarg": (_body([_payload("kw")], {"colour": "red"}), {}, "invalid_arguments", "colour"),
    }
    ids, items = {}, []
    for key, (body, options, _, _) in cases.items():
        headers = options.get("headers", "celery")
        if headers != "celery":
            options = {**options, "task_id": (headers or {}).get("id") or f"no-id-{key}"}
        ids[key], item = _envelope("default", body, **options)
        items.append(item)
    # Wrong argument counts from a real Celery client too (the report: retries_exhausted after one try).
    app = client_app(broker_url)
    try:
        _push(broker_url, "default", *items)
        ids["client_extra"] = app.send_task(TASK, args=[_payload("extra"), None, "x"], queue="default").id
        ids["client_none"] = app.send_task(TASK, args=[], queue="default").id
    finally:
        app.close()
    marker_id, marker = _envelope("default", _body([_payload("marker")]))
    _push(broker_url, "default", marker)
    letters = _wait_for_marker(db, worker, broker_url, markers=1, letters=len(ids))

    expected = {key: cases[key][2] for key in cases} | {"client_extra": "invalid_arguments"}
    expected["client_none"] = "invalid_arguments"
    idless = {"no_headers", "null_headers", "no_id"}
    by_key = {key: letters.get(ids[key]) for key in ids if key not in idless}
    missing = [key for key, row in by_key.items() if row is None]
    assert missing == [], f"no dead letter for {missing}: {sorted(letters)}"
    # Messages with no task id are recorded under a new one: found by their error, with their body.
    headerless = [row for row in letters.values() if row.error.endswith("no task name in its headers")]
    assert len(headerless) == 2 and all(row.payload == raw_text(good) for row in headerless)
    (no_id,) = [row for row in letters.values() if "task id None" in row.error]
    assert (no_id.reason, no_id.task_name, no_id.payload) == ("malformed_envelope", TASK, raw_text(good))
    assert {row.task_id for row in [*headerless, no_id]}.isdisjoint(ids.values())
    assert len(letters) == len(ids), sorted(row.error for row in letters.values())
    for key, row in by_key.items():
        assert row is not None
        assert (key, row.reason, row.attempts, row.queue) == (key, expected[key], 1, "default")
        if key in cases:
            body, _, _, text = cases[key]
            assert text in row.error, f"{key}: {row.error!r}"
            assert row.payload == raw_text(body), key
    assert "\\x80\\x04" in by_key["pickle"].payload  # the pickle kept as escaped text, NULs included
    assert by_key["unknown_task"].task_name == "smq.nope"
    assert by_key["client_extra"].task_name == TASK
    assert "too many positional" in by_key["client_extra"].error
    assert "missing a required argument: 'payload'" in by_key["client_none"].error
    # Never run, never retried: only the marker became an execution; nothing was received twice.
    assert [row.name for row in db.rows("SELECT name FROM smq_executions")] == ["marker"]
    assert worker.task_ids("succeeded") == {marker_id}
    assert "retries_exhausted" not in {row.reason for row in letters.values()}
    assert "Unrecoverable error" not in worker.log()

    # Each shows; none can be replayed.
    for key in ("pickle", "too_many", "unknown_task"):
        shown = smq_here(["dead", "show", ids[key]], env).stdout
        assert f"reason: {expected[key]}" in shown and f"payload: {json.dumps(by_key[key].payload)}" in shown
    refused = run_smq(["dead", "retry", "--all"], env, expect=1)
    assert f"0 retried, {len(ids)} failed" in refused.stdout
    assert refused.stderr.count("nothing to replay") == len(ids), refused.stderr
    assert len(db.dead_letters()) == len(ids)
