"""No password in anything smq prints: the broker and database URLs, both with a password (a private
Redis that requires it; PostgreSQL on trust ignores it), are shown masked by `smq stats` (table and
--json), the scheduler's start-up line, `smq db upgrade`, CLI failures and a worker's boot error, and
appear nowhere in their output or logs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable

import redis
from sqlalchemy.engine import make_url

from tests.integration.distributed.harness import SMQ, Db, RedisServer, Worker, run_smq, smq_env

BROKER_SECRET = "br0ker-Secret-7"
DB_SECRET = "db-Secret-42"


def _with_password(url: str, password: str) -> str:
    return make_url(url).set(password=password).render_as_string(hide_password=False)


def _assert_clean(*outputs: str) -> None:
    for output in outputs:
        assert BROKER_SECRET not in output and DB_SECRET not in output, output


def _scheduler_start_up(env: dict[str, str], timeout: float = 60) -> str:
    """`smq scheduler`'s stderr up to its start-up line, then SIGTERM."""
    proc = subprocess.Popen([SMQ, "scheduler"], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("smq scheduler: polling"):
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rest = proc.communicate(timeout=30)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            rest = proc.communicate()[1]
    return "".join(lines) + (rest or "")


def test_urls_are_masked_in_every_output(
    db: Db, private_redis: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    client = private_redis.client()
    client.config_set("requirepass", BROKER_SECRET)
    client.close()
    broker_url = f"redis://:{BROKER_SECRET}@127.0.0.1:{private_redis.port}/0"
    database_url = _with_password(db.url, DB_SECRET)
    masked_broker = f"redis://:***@127.0.0.1:{private_redis.port}/0"
    masked_database = _with_password(db.url, DB_SECRET).replace(DB_SECRET, "***")
    env = smq_env(database_url, broker_url)

    stats = run_smq(["stats", "--json"], env)
    _assert_clean(stats.stdout, stats.stderr)
    snapshot = json.loads(stats.stdout)
    assert snapshot["broker"] == masked_broker
    assert snapshot["broker_error"] is None and snapshot["queues"]["default"]["pending"] == 0  # authenticated
    table = run_smq(["stats"], env)
    _assert_clean(table.stdout, table.stderr)

    # A broker that refuses the password: the error is shown, the password is not.
    wrong = smq_env(database_url, broker_url.replace(BROKER_SECRET, f"{BROKER_SECRET}-wrong"))
    refused_run = run_smq(["stats", "--json"], wrong, expect=5)  # the broker is unreachable: exit 5
    refused = json.loads(refused_run.stdout)
    assert refused["broker"] == masked_broker and refused["broker_error"]
    assert "smq stats: broker unreachable" in refused_run.stderr
    _assert_clean(json.dumps(refused), refused_run.stderr)

    upgraded = run_smq(["db", "upgrade"], env)
    assert upgraded.stdout.startswith(f"{masked_database}: at revision ")
    once = run_smq(["scheduler", "--once", "--json"], env)
    _assert_clean(upgraded.stdout, upgraded.stderr, once.stdout, once.stderr)

    start_up = _scheduler_start_up(env)
    assert f"(enqueue to {masked_broker})" in start_up, start_up
    _assert_clean(start_up)

    # Failures quote the URL: an unreachable database, a URL SQLAlchemy cannot parse.
    unreachable = _with_password("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", DB_SECRET)
    down = run_smq(["stats"], smq_env(unreachable, broker_url), expect=5)  # unreachable
    assert "cannot open the database postgresql+psycopg://postgres:***@127.0.0.1:1/nowhere" in down.stderr
    garbled = f"postgresql+psycopg://postgres:{DB_SECRET}@127.0.0.1:port/x"
    bad_url = run_smq(["executions", "list"], smq_env(garbled, broker_url), expect=2)
    assert "postgres:***@127.0.0.1:port/x" in bad_url.stderr, bad_url.stderr
    failed_upgrade = run_smq(["db", "upgrade"], smq_env(unreachable, broker_url), expect=5)
    assert "upgrade of postgresql+psycopg://postgres:***@127.0.0.1:1/nowhere failed" in failed_upgrade.stderr
    _assert_clean(down.stdout, down.stderr, bad_url.stdout, bad_url.stderr, failed_upgrade.stderr)

    # A worker that cannot use its database stops with a message naming it, masked.
    broken = start_worker("broken", smq_env(unreachable, broker_url), ready=False)
    assert broken.wait_exit(60) == 2, broken.tail()
    assert "cannot use the database postgresql+psycopg://postgres:***@127.0.0.1:1/nowhere" in broken.stderr()
    _assert_clean(broken.log())

    # A working worker's log (Celery's banner, smq's own lines, a dead-lettered bad message) is clean too.
    worker = start_worker("w1", env)
    redis_client = redis.Redis.from_url(broker_url, socket_timeout=5)
    redis_client.lpush("default", "not a message")
    redis_client.close()
    deadline = time.monotonic() + 30
    while not db.dead_letters() and time.monotonic() < deadline:
        time.sleep(0.2)
    (letter,) = db.dead_letters()
    assert letter.reason == "malformed_envelope" and worker.alive()
    assert ":**@127.0.0.1" in worker.log()  # Celery's own masking of the broker in its banner
    _assert_clean(worker.log())
