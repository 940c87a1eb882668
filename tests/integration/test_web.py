"""The console in process (Starlette's test client), over real executions on SQLite and PostgreSQL:
every page renders, filters and pages like the CLI, actions need a signed-in user and the session's
CSRF token, each action is recorded with the execution, and no payload is ever rendered as HTML."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from smq import HandlerRegistry, Repository, Settings, StartRequest, TaskError, start_execution
from smq.errors import SettingsError
from smq.execution.continuation import LocalLauncher
from smq.repository.operator_actions import actions_of
from smq.repository.queue_records import DeadLetters
from smq.web.app import create_app
from smq.web.config import WebConfig, hash_password, verify_password

XSS = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>"
FLAKY = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Next": "Charge"},
        "Charge": {"Type": "Task", "Resource": "charge", "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}
AWAIT = {
    "StartAt": "Await",
    "States": {
        "Await": {
            "Type": "Message",
            "CorrelationKey": "order",
            "CorrelationValuePath": "$.order",
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}
CALLBACK = {
    "StartAt": "Ask",
    "States": {"Ask": {"Type": "Task", "Resource": "ask.waitForTaskToken", "End": True}},
}


class Switch:
    fail = True


@pytest.fixture
def registry() -> HandlerRegistry:
    handlers = HandlerRegistry()

    @handlers.handler("charge")
    def charge(payload: Any, ctx: Any) -> Any:
        if Switch.fail:
            raise TaskError("Card.Declined", f"declined: {XSS}")
        return {"charged": True}

    @handlers.handler("ask")
    def ask(payload: Any, ctx: Any) -> Any:
        return None

    Switch.fail = True
    return handlers


def _start(repository: Repository, registry: HandlerRegistry, machine: str, name: str, payload: Any) -> Any:
    return start_execution(repository, StartRequest(machine, payload, name), handlers=registry)


def _client(
    repository: Repository, registry: HandlerRegistry, users: dict[str, str] | None = None
) -> TestClient:
    settings = Settings(database_url="unused")
    app = create_app(
        repository,
        settings,
        WebConfig(users=users or {}),
        launcher=LocalLauncher(repository, settings, handlers=registry),
    )
    return TestClient(app, base_url="http://127.0.0.1")


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the form"
    return found.group(1)


def _sign_in(client: TestClient, user: str = "alice", password: str = "s3cret-pass") -> None:
    page = client.get("/login")
    response = client.post(
        "/login", data={"csrf": _csrf(page.text), "user": user, "password": password}, follow_redirects=False
    )
    assert response.status_code == 303, response.text


@pytest.fixture
def users() -> dict[str, str]:
    return {"alice": hash_password("s3cret-pass")}


@pytest.fixture
def world(repository: Repository, registry: HandlerRegistry) -> Iterator[dict[str, Any]]:
    repository.put_definition("flaky", FLAKY)
    repository.put_definition("await", AWAIT)
    repository.put_definition("callback", CALLBACK)
    failed = _start(repository, registry, "flaky", "bad-1", {"note": XSS})
    ok = []
    Switch.fail = False
    for index in range(5):
        ok.append(_start(repository, registry, "flaky", f"ok-{index}", {"n": index}))
    Switch.fail = True
    waiting = _start(repository, registry, "await", "w-1", {"order": "o-1"})
    asking = _start(repository, registry, "callback", "c-1", {})
    assert failed.status == "FAILED" and waiting.status == "WAITING" and asking.status == "WAITING"
    yield {"failed": failed, "ok": ok, "waiting": waiting, "asking": asking}


def test_pages_render_and_escape_every_payload(
    repository: Repository, registry: HandlerRegistry, world: Any
) -> None:
    client = _client(repository, registry)
    failed = world["failed"]
    for url in (
        "/",
        "/fragments/overview",
        "/machines",
        "/machines/flaky",
        "/executions",
        "/dead",
        "/waiting",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert url.startswith("/fragments") or "read-only-banner" in response.text, url
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    page = client.get(f"/executions/{failed.execution_id}")
    assert page.status_code == 200
    assert "<script>window.__pwned" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page.text  # shown, as text
    assert re.search(r'class="node type-task outcome-failed" data-state="Charge"', page.text)
    assert "Card.Declined" in page.text
    state = client.get(f"/executions/{failed.execution_id}", params={"state": "Charge"})
    assert 'id="state"' in state.text and "declined: &lt;script&gt;" in state.text
    overview = client.get("/").text
    assert re.search(r'id="count-failed">1<', overview) and re.search(r'id="count-waiting">2<', overview)
    waiting = client.get("/waiting").text
    assert "await/w-1" in waiting and "callback/c-1" in waiting
    token_rows = repository.reader.connect().exec_driver_sql(
        "SELECT token FROM smq_waits WHERE token IS NOT NULL"
    )
    for (token,) in token_rows:
        assert token not in waiting, "a callback token is a secret: never shown"


def test_executions_filter_and_pages_like_the_cli(
    repository: Repository, registry: HandlerRegistry, world: Any
) -> None:
    client = _client(repository, registry)
    failed_only = client.get("/executions", params={"status": "FAILED"}).text
    assert "bad-1" in failed_only and "ok-1" not in failed_only
    by_text = client.get("/executions", params={"filter": "state_machine_id=flaky,name_prefix=ok-"}).text
    assert "ok-3" in by_text and "bad-1" not in by_text
    wrong = client.get("/executions", params={"filter": "colour=red"}).text
    assert "unknown filter key &#39;colour&#39;" in wrong
    when = client.get("/executions", params={"started_after": "yesterday"}).text
    assert "started_after: &#39;yesterday&#39; is not an ISO-8601 time" in when
    first = client.get("/executions", params={"state_machine_id": "flaky", "limit": "25"})
    names = re.findall(r">(ok-\d|bad-1)</a>", first.text)
    assert names == ["ok-4", "ok-3", "ok-2", "ok-1", "ok-0", "bad-1"]  # newest first
    pages: list[str] = []
    url: str | None = "/executions?state_machine_id=flaky&limit=25&order=oldest"
    seen = client.get(url).text
    pages += re.findall(r">(ok-\d|bad-1)</a>", seen)
    assert pages == ["bad-1", "ok-0", "ok-1", "ok-2", "ok-3", "ok-4"]
    forged = client.get("/executions", params={"token": "not-a-token"}).text
    assert "not a token this listing handed out" in forged


def test_keyset_next_page(repository: Repository, registry: HandlerRegistry, world: Any) -> None:
    client = _client(repository, registry)
    Switch.fail = False
    names = {f"more-{index:02d}" for index in range(30)}
    for name in sorted(names):
        _start(repository, registry, "flaky", name, {})
    page = client.get("/executions", params={"name_prefix": "more-", "limit": "25"}).text
    first = re.findall(r">(more-\d\d)</a>", page)
    link = re.search(r'href="(/executions\?[^"]+)" id="next-page"', page)
    assert len(first) == 25 and link is not None
    second_page = client.get(link.group(1).replace("&amp;", "&")).text
    second = re.findall(r">(more-\d\d)</a>", second_page)
    assert len(second) == 5 and set(first) | set(second) == names
    assert 'id="next-page"' not in second_page and "First page" in second_page


def test_actions_need_a_user_and_the_csrf_token(
    repository: Repository, registry: HandlerRegistry, world: Any, users: dict[str, str]
) -> None:
    failed = world["failed"]
    read_only = _client(repository, registry)
    confirm = read_only.get(f"/executions/{failed.execution_id}/redrive")
    assert confirm.status_code == 200 and 'id="confirm"' not in confirm.text and "read-only" in confirm.text
    refused = read_only.post(f"/executions/{failed.execution_id}/redrive", data={"csrf": "x"})
    assert refused.status_code == 403
    client = _client(repository, registry, users)
    assert 'id="confirm"' not in client.get(f"/executions/{failed.execution_id}/redrive").text  # signed out
    page = client.get("/login")
    wrong = client.post("/login", data={"csrf": _csrf(page.text), "user": "alice", "password": "nope"})
    assert wrong.status_code == 401 and "wrong user or password" in wrong.text
    no_csrf = client.post("/login", data={"user": "alice", "password": "s3cret-pass"})
    assert no_csrf.status_code == 403
    _sign_in(client)
    confirm = client.get(f"/executions/{failed.execution_id}/redrive")
    assert 'id="confirm"' in confirm.text
    forged = client.post(f"/executions/{failed.execution_id}/redrive", data={"csrf": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert repository.get_execution(failed.execution_id).status == "FAILED"  # nothing happened
    assert actions_of(repository.reader, failed.execution_id) == []
    Switch.fail = False
    done = client.post(
        f"/executions/{failed.execution_id}/redrive",
        data={"csrf": _csrf(confirm.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == f"/executions/{failed.execution_id}"
    assert repository.get_execution(failed.execution_id).status == "SUCCEEDED"  # ran here, no broker
    (action,) = actions_of(repository.reader, failed.execution_id)
    assert (action.action, action.actor, action.detail["from"]) == ("redrive", "web:alice", "FAILED")
    shown = client.get(f"/executions/{failed.execution_id}").text
    assert "redriven: now SUCCEEDED" in shown and "web:alice" in shown
    again = client.post(f"/executions/{failed.execution_id}/redrive", data={"csrf": _csrf(confirm.text)})
    assert again.status_code == 409 and "only FAILED, TIMED_OUT, ABORTED" in again.text


def test_answers_and_stop_from_the_console(
    repository: Repository, registry: HandlerRegistry, world: Any, users: dict[str, str]
) -> None:
    client = _client(repository, registry, users)
    _sign_in(client)
    waiting, asking = world["waiting"], world["asking"]
    page = client.get(f"/executions/{waiting.execution_id}").text
    answer = re.search(r'href="(/waiting/answer/message\?wait=[^"]+)"', page)
    assert answer, "the waiting execution offers to send its message"
    form = client.get(answer.group(1).replace("&amp;", "&"))
    sent = client.post(
        answer.group(1).replace("&amp;", "&"),
        data={"csrf": _csrf(form.text), "data": '{"paid": 12}', "wait": "ignored"},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    done = repository.get_execution(waiting.execution_id)
    assert (done.status, done.output) == ("SUCCEEDED", {"paid": 12})
    assert [a.action for a in actions_of(repository.reader, waiting.execution_id)] == ["message"]
    # The callback: stop it with an error and a cause of our own.
    stop_page = client.get(f"/executions/{asking.execution_id}/stop")
    stopped = client.post(
        f"/executions/{asking.execution_id}/stop",
        data={"csrf": _csrf(stop_page.text), "error": "Ops.Cancelled", "cause": "customer <b>left</b>"},
        follow_redirects=False,
    )
    assert stopped.status_code == 303
    record = repository.get_execution(asking.execution_id)
    assert (record.status, record.error, record.cause) == ("ABORTED", "Ops.Cancelled", "customer <b>left</b>")
    (action,) = actions_of(repository.reader, asking.execution_id)
    assert action.action == "stop" and action.detail["cause"] == "customer <b>left</b>"
    assert "customer &lt;b&gt;left&lt;/b&gt;" in client.get(f"/executions/{asking.execution_id}").text
    bad_json = client.post(
        "/waiting/message", data={"csrf": _csrf(stop_page.text), "key": "k", "value": "v", "data": "{"}
    )
    assert bad_json.status_code == 409 and "data: not valid JSON" in bad_json.text


def test_dead_letters_shown_escaped_and_purged_with_a_record(
    repository: Repository, registry: HandlerRegistry, world: Any, users: dict[str, str]
) -> None:
    ok = world["ok"][0]
    store = DeadLetters(repository.engine)
    store.record(
        task_id="t-1",
        task_name="smq.execute_state_machine",
        queue="default",
        reason="retries_exhausted",
        payload={"state_machine_id": "flaky", "name": ok.name, "input": {"html": XSS}},
        error=f"InfrastructureError: {XSS}",
        traceback="Traceback (most recent call last):\n  ...",
        attempts=4,
    )
    client = _client(repository, registry, users)
    listing = client.get("/dead").text
    assert "t-1" in listing and "<script>window" not in listing
    detail = client.get("/dead/t-1").text
    assert "&lt;img src=x onerror=window.__pwned=2&gt;" in detail and "<img src=x" not in detail
    _sign_in(client)
    retry = client.get("/dead/t-1/retry")
    refused = client.post("/dead/t-1/retry", data={"csrf": _csrf(retry.text)})
    assert refused.status_code == 409 and "SMQ_BROKER_URL" in refused.text  # no broker: nothing to publish to
    purged = client.post("/dead/t-1/purge", data={"csrf": _csrf(retry.text)}, follow_redirects=False)
    assert purged.status_code == 303 and store.get("t-1") is None
    assert [a.action for a in actions_of(repository.reader, ok.execution_id)] == ["dead_letter_purge"]


def test_machines_versions_side_by_side(repository: Repository, registry: HandlerRegistry) -> None:
    repository.put_definition("m", FLAKY)
    changed = {
        **FLAKY,
        "States": {**FLAKY["States"], "Prepare": {"Type": "Pass", "Comment": "<b>new</b>", "Next": "Charge"}},
    }
    repository.put_definition("m", changed)
    client = _client(repository, registry)
    page = client.get("/machines/m/compare", params={"left": "1", "right": "2"}).text
    assert page.count("<svg") == 2 and 'id="left-arrow"' in page and 'id="right-arrow"' in page
    assert '<span class="added">+' in page and "&lt;b&gt;new&lt;/b&gt;" in page
    assert client.get("/machines/m", params={"version": "9"}).status_code == 404
    assert client.get("/machines/nope").status_code == 404


def test_web_config_from_the_environment() -> None:
    stored = hash_password("pw")
    assert verify_password(stored, "pw") and not verify_password(stored, "pW")
    config = WebConfig.from_env({"SMQ_WEB_USERS": f"ann:{stored}", "SMQ_WEB_SECRET": "x" * 20})
    assert not config.read_only and config.authenticate("ann", "pw") and not config.authenticate("bob", "pw")
    assert WebConfig.from_env({}).read_only
    for env, message in (
        ({"SMQ_WEB_USERS": "ann"}, "NAME:HASH"),
        ({"SMQ_WEB_USERS": "ann:plaintext"}, "user 'ann'"),
        ({"SMQ_WEB_USERS": f"ann:{stored},ann:{stored}"}, "twice"),
        ({"SMQ_WEB_SECRET": "short"}, "SMQ_WEB_SECRET"),
    ):
        with pytest.raises(SettingsError, match=message):
            WebConfig.from_env(env)


def test_the_cli_records_its_actions_too(
    repository: Repository, registry: HandlerRegistry, world: Any, database_url: str
) -> None:
    from click.testing import CliRunner

    from smq import Operations
    from smq.cli import main
    from smq.repository.operator_actions import default_actor

    Switch.fail = False
    settings = Settings(database_url=database_url)
    launcher = LocalLauncher(repository, settings, handlers=registry)
    final, _ = Operations(repository, settings, launcher=launcher).redrive(world["failed"].execution_id)
    assert final.status == "SUCCEEDED"
    (action,) = actions_of(repository.reader, final.execution_id)
    assert (action.action, action.actor) == ("redrive", default_actor())
    asking = world["asking"]
    result = CliRunner().invoke(
        main,
        ["executions", "stop", asking.execution_id, "--cause", "no longer needed"],
        env={"SMQ_DATABASE_URL": database_url},
    )
    assert result.exit_code == 0, result.output
    (stop,) = actions_of(repository.reader, asking.execution_id)
    assert (stop.action, stop.actor, stop.detail["cause"], stop.detail["from"]) == (
        "stop",
        default_actor(),
        "no longer needed",
        "WAITING",
    )


def test_dead_letters_page_through_every_letter(
    repository: Repository, registry: HandlerRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every dead letter is reachable, newest first, a page at a time (not only the newest few)."""
    monkeypatch.setattr("smq.web.pages.DEAD_LETTER_PAGE", 3)
    store = DeadLetters(repository.engine)
    for i in range(7):
        store.record(
            task_id=f"p-{i}",
            task_name="execute_state_machine",
            queue="low" if i == 6 else "default",
            reason="rejected",
            payload=None,
            error="InvalidPayload: bad",
            traceback=None,
            attempts=1,
        )
    client = _client(repository, registry, {})
    seen: list[str] = []
    url: str | None = "/dead?queue=default"
    while url is not None:
        page = client.get(url)
        assert page.status_code == 200
        seen += re.findall(r'<a href="/dead/(p-\d)">', page.text)
        found = re.search(r'<a href="([^"]+)" id="next-page">', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert sorted(seen) == [f"p-{i}" for i in range(6)] and len(seen) == 6  # each once, low's left out
    bad = client.get("/dead?token=nonsense")
    assert bad.status_code == 200 and 'class="error"' in bad.text
