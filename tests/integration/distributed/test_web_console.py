"""The console in a real browser: `smq web` (a subprocess) over PostgreSQL executions that real
workers ran, driven by Playwright on the system's chromium. An operator filters FAILED executions,
opens one and sees the failed state highlighted with its cause, retries a dead letter and sees it run,
redrives the failed execution and sees its new status. Every page is checked for a script from a
payload having run (none may). Screenshots go to SMQ_TEST_SCREENSHOTS or the test's tmp dir."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from smq import Repository
from smq.web.config import hash_password
from tests.integration.distributed.harness import (
    HANDLERS,
    ROOT,
    SMQ,
    Db,
    Worker,
    free_port,
    require_server,
    run_smq,
    smq_env,
    wait_until,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>"
CHARGE = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Next": "Charge"},
        "Charge": {"Type": "Task", "Resource": "reject-while-flag", "ResultPath": "$.charge", "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}
FLAKY = {
    "StartAt": "Before",
    "States": {
        "Before": {"Type": "Pass", "Next": "Flaky"},
        "Flaky": {"Type": "Task", "Resource": "infra-while-flag", "ResultPath": "$.flaky", "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}


def _chromium() -> Any:
    if not Path(CHROMIUM).exists():
        require_server("chromium", f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # the test extra installs it
        require_server("playwright", str(exc))
    return sync_playwright


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("SMQ_TEST_SCREENSHOTS") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {directory}")
    return directory


@pytest.fixture
def console(db: Db, broker_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`smq web` on a free port, with one user, stopped at the end."""
    port = free_port()
    env = smq_env(
        db.url,
        broker_url,
        SMQ_WEB_USERS=f"alice:{hash_password('correct horse')}",
        SMQ_WEB_SECRET="a-test-secret-of-some-length",
    )
    log = open(tmp_path / "web.log", "wb")  # noqa: SIM115 - kept by Popen
    proc = subprocess.Popen(
        [SMQ, "web", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"smq web exited {proc.returncode}:\n{(tmp_path / 'web.log').read_text()}")
        try:
            with urllib.request.urlopen(url + "/machines", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_until(up, timeout=30, what="smq web to answer")
        yield {"url": url, "env": env}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        print((tmp_path / "web.log").read_text()[-2000:])


def test_an_operator_in_a_browser(
    db: Db,
    repository: Repository,
    broker_url: str,
    start_worker: Callable[..., Worker],
    console: dict[str, Any],
    screenshots: Path,
    tmp_path: Path,
) -> None:
    sync_playwright = _chromium()
    from playwright.sync_api import expect

    examples = ROOT / "examples"
    env = smq_env(
        db.url, broker_url, SMQ_MAX_RETRIES="1", SMQ_HANDLERS=f"{HANDLERS},{examples / 'handlers.py'}"
    )
    worker = start_worker("w1", env, concurrency=2)
    repository.put_definition("charge", CHARGE)
    repository.put_definition("flaky", FLAKY)
    run_smq(["definitions", "put", str(examples / "order_processing.yaml"), "--id", "orders"], env)
    run_smq(["definitions", "put", str(examples / "shipping.yaml"), "--id", "shipping"], env)
    declined, outage = tmp_path / "declined.flag", tmp_path / "outage.flag"
    declined.write_text("on")
    outage.write_text("on")
    # Real executions on the worker: orders (a few fail on purpose), one declined charge whose input
    # and cause hold HTML, and one task whose infrastructure keeps failing: a dead letter.
    run_smq(
        ["start", "orders", "--inputs", str(examples / "inputs" / "orders.jsonl"), "--name-prefix", "order-"],
        env,
    )
    payload = json.dumps({"flag": str(declined), "note": XSS})
    run_smq(["start", "charge", "--input", payload, "--name", "charge-1"], env)
    run_smq(
        ["start", "flaky", "--input", json.dumps({"flag": str(outage), "html": XSS}), "--name", "flaky-1"],
        env,
    )
    wait_until(
        lambda: db.finished("orders") == 20 and db.finished("charge") == 1 and len(db.dead_letters()) == 1,
        timeout=60,
        what="the executions to end and the dead letter to land",
        workers=[worker],
        diagnose=lambda: db.describe("flaky", broker_url) + "\n" + worker.tail(10),
    )
    run_smq(
        [
            "leader",
            "--filter",
            "state_machine_id=orders,status=SUCCEEDED",
            "--target",
            "shipping",
            "--name-prefix",
            "ship-",
        ],
        env,
    )
    wait_until(
        lambda: db.finished("shipping") == db.count("orders", "SUCCEEDED"),
        timeout=60,
        what="shipping",
        workers=[worker],
    )
    charge = repository.find_execution("charge", "charge-1")
    assert charge is not None and charge.status == "FAILED"

    url = console["url"]
    pages_seen: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

        def settled(name: str, *, full: bool = False) -> None:
            """The page has loaded its script; nothing from a payload ran; a screenshot."""
            page.wait_for_load_state("load")
            pages_seen.append(page.url)
            assert page.evaluate("window.__pwned") is None, f"a payload's script ran on {page.url}"
            page.screenshot(path=str(screenshots / f"{name}.png"), full_page=full)

        try:
            page.goto(url + "/")
            assert page.locator("#count-dead").inner_text() == "1"
            settled("overview")
            page.goto(url + "/executions")
            page.locator("#filters input[name=status][value=FAILED]").check()
            page.locator("#apply-filter").click()
            page.wait_for_url("**/executions?*status=FAILED*")
            statuses = page.locator("#executions tbody td:nth-child(3)").all_inner_texts()
            assert statuses and set(statuses) == {"FAILED"}, statuses
            settled("executions-failed")

            page.locator("#executions a", has_text="charge-1").click()
            page.wait_for_selector("#execution-graph")
            banner = page.locator("#execution-error").inner_text()
            assert "Card.Declined" in banner and "Charge" in banner and XSS in banner  # the cause, as text
            failed_node = page.locator('#execution-graph g.outcome-failed[data-state="Charge"]')
            assert failed_node.count() == 1
            assert page.locator('#execution-graph g.outcome-succeeded[data-state="Prepare"]').count() == 1
            assert page.locator('#execution-graph g.outcome-not-reached[data-state="Done"]').count() == 1
            assert XSS in page.locator("#execution-input").inner_text()
            settled("execution-failed")
            failed_node.locator("a").click()
            page.wait_for_selector("#state")
            assert XSS in page.locator("#state .cause").first.inner_text()
            settled("execution-failed-state")

            page.goto(url + "/executions?state_machine_id=orders&status=SUCCEEDED")
            page.locator("#executions tbody a").first.click()
            page.wait_for_selector("#execution-graph")
            settled("execution-path", full=True)

            page.goto(url + "/login?next=/dead")
            page.fill("input[name=user]", "alice")
            page.fill("input[name=password]", "correct horse")
            page.locator("#sign-in").click()
            page.wait_for_url("**/dead")
            assert page.locator("#read-only-banner").count() == 0
            settled("dead-letters")
            page.locator("#dead-letters tbody a").first.click()
            page.wait_for_selector("#dead-payload", state="attached")
            assert XSS in (page.locator("#dead-payload").text_content() or "")  # shown as text
            settled("dead-letter")
            outage.unlink()  # the infrastructure is back: the retried task can run
            page.locator("#action-retry").click()
            page.locator("#confirm").click()
            page.wait_for_url("**/executions/*")
            expect(page.locator("#execution-status")).to_have_text("SUCCEEDED", timeout=30_000)  # it follows
            assert "dead_letter_retry" in page.locator("#operator-actions").inner_text()
            settled("dead-letter-retried")

            declined.unlink()  # the card is good now: a redrive succeeds
            page.goto(url + f"/executions/{charge.execution_id}")
            page.locator("#action-redrive").click()
            page.locator("#confirm").click()
            page.wait_for_url(f"**/executions/{charge.execution_id}")
            expect(page.locator("#execution-status")).to_have_text("SUCCEEDED", timeout=30_000)  # it follows
            assert page.locator('#execution-graph g.outcome-succeeded[data-state="Done"]').count() == 1
            actions = page.locator("#operator-actions").inner_text()
            assert "redrive" in actions and "web:alice" in actions
            settled("execution-redriven")
        finally:
            browser.close()
    assert dialogs == [], f"a payload opened a dialog: {dialogs}"
    assert repository.get_execution(charge.execution_id).status == "SUCCEEDED"
    assert db.dead_letters() == []
    print(f"checked {len(pages_seen)} pages; screenshots in {screenshots}")
