"""Processes and probes for the distributed tier: celery workers, a private redis-server, the smq CLI.

Everything here runs real programs. Workers are started in their own session (process group), so a
test can SIGKILL a whole worker (main process and prefork children) and the teardown can always reap
what is left, even after a failure. Nothing here is mocked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parents[3]
HANDLERS = Path(__file__).with_name("handlers.py")
SMQ = str(Path(sys.executable).with_name("smq")) if Path(sys.executable).with_name("smq").exists() else "smq"

# Short limits so faults resolve within seconds: the visibility timeout (after which an unacknowledged
# message is delivered again) stays above the hard limit, and below 60 s the config sweeps every second.
FAST = {
    "SMQ_SOFT_TIME_LIMIT": "6",
    "SMQ_HARD_TIME_LIMIT": "8",
    "SMQ_VISIBILITY_TIMEOUT": "10",
    "SMQ_MAX_RETRIES": "2",
    "SMQ_RETRY_DELAYS": "0.1,0.2",
}
QUEUES = ("critical", "default", "low")
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def require_server(what: str, reason: str) -> None:
    """A missing server fails the test under CI and skips it elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required under CI: {reason}")
    pytest.skip(f"{what} not available: {reason}")


def smq_env(database_url: str, broker_url: str | None, **extra: str) -> dict[str, str]:
    """A clean environment: no inherited SMQ_* variable, then the test's database, broker and limits."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SMQ_")}
    env.update(FAST)
    env.update(
        SMQ_DATABASE_URL=database_url,
        SMQ_HANDLERS=str(HANDLERS),
        # Workers, schedulers and leaders serve metrics on one port (9191) by default: tests that want
        # them say so, each with a port of its own (tests/integration/distributed/test_metrics.py).
        SMQ_METRICS="off",
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
    )
    if broker_url:
        env["SMQ_BROKER_URL"] = broker_url
    env.update(extra)
    return env


def run_smq(
    args: list[str], env: dict[str, str], *, expect: int | None = 0, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the `smq` command; with `expect`, fail the test (showing its output) on another exit code."""
    started = time.monotonic()
    done = subprocess.run(
        [SMQ, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    print(f"[{time.monotonic() - started:5.1f}s] smq {' '.join(args)[:100]} -> {done.returncode}")
    if expect is not None and done.returncode != expect:
        pytest.fail(
            f"smq {' '.join(args)} exited {done.returncode}, expected {expect}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


def smq_here(args: list[str], env: dict[str, str], *, expect: int | None = 0) -> Any:
    """Run an `smq` command in this process (click's runner, the environment of `env`): for commands
    that only read or delete database rows, where a subprocess would cost seconds of imports each.
    Commands that publish to the broker run as subprocesses (`run_smq`): the Celery app reads its
    broker once, at import."""
    from click.testing import CliRunner

    from smq.cli import main

    overrides: dict[str, str | None] = {key: None for key in os.environ if key.startswith("SMQ_")}
    overrides.update({key: value for key, value in env.items() if key.startswith("SMQ_")})
    result = CliRunner().invoke(main, args, env=overrides, catch_exceptions=False)
    if expect is not None and result.exit_code != expect:
        pytest.fail(
            f"smq {' '.join(args)} (in process) exited {result.exit_code}, expected {expect}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def smq_json(args: list[str], env: dict[str, str], *, expect: int | None = 0) -> Any:
    done = run_smq([*args, "--json"], env, expect=expect)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"smq {' '.join(args)} --json printed no JSON:\n{done.stdout}\n{done.stderr}")


def client_app(broker_url: str) -> Celery:
    """A producer app configured like the workers (celeryconfig: queues, JSON) on the test's broker.

    It is never made the current app, so it cannot disturb anything else in the test process."""
    import celeryconfig

    app = Celery("smq-test-client", set_as_current=False)
    app.config_from_object(celeryconfig)
    app.conf.broker_url = broker_url
    return app


# ---------------------------------------------------------------------------------------------- workers


class Worker:
    """One `celery -A smq worker` (prefork) in its own process group, logging to files."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        logdir: Path,
        *,
        concurrency: int = 1,
        queues: str = ",".join(QUEUES),
    ) -> None:
        self.name = name
        self.env = {**env, "SMQ_TEST_WORKER": name}
        self.concurrency = concurrency
        self.queues = queues
        self.out_path = logdir / f"worker-{name}.out"
        self.err_path = logdir / f"worker-{name}.err"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exited_at: float | None = None

    def start(self) -> Worker:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "smq",
            "worker",
            "-Q",
            self.queues,
            "-c",
            str(self.concurrency),
            "--pool",
            "prefork",
            "-n",
            f"{self.name}@%h",
            "--loglevel=INFO",
        ]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=out, stderr=err, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "worker not started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def log(self) -> str:
        out = self.out_path.read_text(errors="replace") if self.out_path.exists() else ""
        return out + self.stderr()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_ready(self, timeout: float = 60) -> Worker:
        started = time.monotonic()
        ready = re.compile(rf"\b{re.escape(self.name)}@\S+ ready\.")
        deadline = time.monotonic() + timeout
        while not ready.search(self.stderr()):
            if not self.alive():
                pytest.fail(
                    f"worker {self.name} exited with {self.proc.returncode if self.proc else None} "
                    f"before it was ready:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"worker {self.name} not ready after {timeout}s:\n{self.tail()}")
            time.sleep(0.1)
        print(f"[{time.monotonic() - started:5.1f}s] worker {self.name} ready")
        return self

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.exited_at = self.exited_at or time.time()
        return code

    def terminate(self) -> None:
        """SIGTERM to the main process only: Celery's warm shutdown (running tasks finish)."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)

    def kill_group(self) -> None:
        """SIGKILL the whole process group: the main process and every pool child, at once."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.exited_at = self.exited_at or time.time()

    def stop(self, timeout: float = 15) -> None:
        """Terminate (warm shutdown), then kill whatever is left of the group."""
        self.terminate()
        if self.proc is not None:
            self.wait_exit(timeout)
        self.kill_group()

    def task_ids(self, event: str) -> set[str]:
        """Task ids of `execute_state_machine` lines (or its old name's) with `event` ("received", ...)."""
        pattern = re.compile(rf"execute_state_machine\[([0-9a-f-]{{36}})\] {event}")
        return set(pattern.findall(self.stderr()))


def stop_all(workers: Iterable[Worker], timeout: float = 15) -> None:
    """Stop several workers at once: SIGTERM to all, then wait, then kill each group."""
    workers = list(workers)
    for worker in workers:
        worker.terminate()
    deadline = time.monotonic() + timeout
    for worker in workers:
        if worker.proc is not None:
            worker.wait_exit(max(0.1, deadline - time.monotonic()))
        worker.kill_group()


# ---------------------------------------------------------------------------------------------- redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A private redis-server on a free port. Durable (the default): AOF with fsync on every write, so
    a SIGKILL loses nothing acknowledged. Not durable: memory only, for the tiers' scratch brokers."""

    def __init__(self, directory: Path, *, durable: bool = True) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            require_server("redis-server", "the binary is not on PATH")
        self.binary = str(binary)
        self.directory = directory
        self.durable = durable
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url_of_db(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self, timeout: float = 20) -> RedisServer:
        self.starts += 1
        log = open(self.directory / f"redis-{self.starts}.log", "wb")  # noqa: SIM115 - kept by Popen
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes" if self.durable else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server on port {self.port} exited with {self.proc.returncode}")
            try:
                client = self.client()
                try:
                    if client.ping():
                        return self
                finally:
                    client.close()
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {self.port} did not answer within {timeout}s")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def broker_backlog(broker_url: str) -> dict[str, int]:
    """Messages waiting per queue (LLEN) and delivered-but-unacknowledged ones (the `unacked` hash)."""
    client = redis.Redis.from_url(broker_url, socket_timeout=5)
    try:
        counts = {queue: int(client.llen(queue)) for queue in QUEUES}
        counts["unacked"] = int(client.hlen("unacked"))
        return counts
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------- waiting


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    workers: Iterable[Worker] = (),
    diagnose: Callable[[], str] | None = None,
    interval: float = 0.2,
) -> float:
    """Poll until `condition()`; fail with `diagnose()` on timeout, or at once if a worker died."""
    workers = list(workers)
    started = time.monotonic()
    while not condition():
        for worker in workers:
            if not worker.alive():
                pytest.fail(
                    f"worker {worker.name} exited ({worker.proc.returncode if worker.proc else None}) "
                    f"while waiting for {what}:\n{worker.tail()}\n{diagnose() if diagnose else ''}"
                )
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{diagnose() if diagnose else ''}")
        time.sleep(interval)
    print(f"[{time.monotonic() - started:5.1f}s] waited for {what}")
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------------- database


class Db:
    """Plain SQL on the test database: the assertions read the tables, not smq's own summaries."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(text(sql), params))

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def count(self, machine: str, *statuses: str) -> int:
        if statuses:
            return int(
                self.scalar(
                    "SELECT count(*) FROM smq_executions WHERE state_machine_id = :m AND status = ANY(:s)",
                    m=machine,
                    s=list(statuses),
                )
            )
        return int(self.scalar("SELECT count(*) FROM smq_executions WHERE state_machine_id = :m", m=machine))

    def finished(self, machine: str) -> int:
        return self.count(machine, *TERMINAL)

    def status_counts(self, machine: str) -> dict[str, int]:
        rows = self.rows(
            "SELECT status, count(*) FROM smq_executions WHERE state_machine_id = :m GROUP BY status",
            m=machine,
        )
        return {status: int(count) for status, count in rows}

    def dead_letters(self) -> list[Any]:
        return self.rows("SELECT * FROM smq_dead_letters ORDER BY failed_at, task_id")

    def describe(self, machine: str, broker_url: str | None = None) -> str:
        """What a timed-out wait reports: statuses, the executions not finished, the broker backlog."""
        stuck = self.rows(
            "SELECT name, status, current_state, history_length FROM smq_executions "
            "WHERE state_machine_id = :m AND status = 'RUNNING' ORDER BY name LIMIT 25",
            m=machine,
        )
        lines = [f"{machine}: {self.status_counts(machine)}"]
        lines += [
            f"  stuck: {row.name} {row.status} at {row.current_state} ({row.history_length} steps)"
            for row in stuck
        ]
        dead = self.dead_letters()
        lines.append(f"dead letters: {len(dead)}")
        lines += [
            f"  {row.task_id} {row.reason} {row.execution_name}: {row.error[:200]}" for row in dead[:10]
        ]
        if broker_url:
            try:
                lines.append(f"broker: {broker_backlog(broker_url)}")
            except redis.RedisError as exc:
                lines.append(f"broker unreachable: {exc}")
        return "\n".join(lines)

    def assert_each_state_once(self, machine: str, names: set[str], states: list[str]) -> None:
        """Exactly `names` exist for `machine`, all SUCCEEDED, and each recorded `states` once, in order."""
        executions = self.rows(
            "SELECT id, name, status FROM smq_executions WHERE state_machine_id = :m", m=machine
        )
        found = [row.name for row in executions]
        assert len(found) == len(names), f"{len(found)} executions of {machine}, expected {len(names)}"
        assert set(found) == names, f"unexpected names: {sorted(set(found) ^ names)[:10]}"
        not_succeeded = [(row.name, row.status) for row in executions if row.status != "SUCCEEDED"]
        assert not_succeeded == [], f"{len(not_succeeded)} not SUCCEEDED: {not_succeeded[:10]}"
        doubled = self.rows(
            "SELECT e.name, h.state_name, count(*) AS n FROM smq_history h JOIN smq_executions e "
            "ON e.id = h.execution_id WHERE e.state_machine_id = :m GROUP BY e.name, h.state_name "
            "HAVING count(*) > 1 ORDER BY e.name LIMIT 10",
            m=machine,
        )
        assert doubled == [], f"states recorded more than once: {[tuple(row) for row in doubled]}"
        paths: dict[str, list[str]] = {}
        for row in self.rows(
            "SELECT e.name, h.state_name FROM smq_history h JOIN smq_executions e ON e.id = h.execution_id "
            "WHERE e.state_machine_id = :m ORDER BY e.name, h.sequence",
            m=machine,
        ):
            paths.setdefault(row.name, []).append(row.state_name)
        wrong = {name: path for name, path in paths.items() if path != states}
        assert wrong == {}, f"{len(wrong)} executions with another history: {list(wrong.items())[:5]}"
        assert set(paths) == names, "executions without any history"


# ------------------------------------------------------------------ fixture bodies shared by the tiers


@contextmanager
def scratch_redis_db(url: str) -> Iterator[str]:
    """A Redis db the tests own (of a private server, or one the user named by SMQ_TEST_*REDIS_URL),
    emptied before and after: never a db of a server somebody else keeps data in."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        require_server("Redis", f"{url}: {type(exc).__name__}: {exc}")
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@contextmanager
def private_redis_server(tmp_path: Path, *, durable: bool = True) -> Iterator[RedisServer]:
    """A redis-server of its own (it may be killed and restarted), stopped on exit."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory, durable=durable)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def report_workers(workers: Iterable[Worker], lines: int = 60) -> None:
    """Each worker's exit code and log tail, printed: pytest shows them only for a failed test."""
    for worker in workers:
        print(f"---- worker {worker.name} (exit {worker.proc.returncode if worker.proc else None})")
        print(worker.tail(lines))


@contextmanager
def worker_factory(logdir: Path, teardown: Callable[[list[Worker]], None]) -> Iterator[Callable[..., Worker]]:
    """`start(name, env, concurrency=1, ready=True)`; `teardown` gets every worker started, even when
    the test failed."""
    started: list[Worker] = []

    def start(
        name: str,
        env: dict[str, str],
        *,
        concurrency: int = 1,
        ready: bool = True,
        queues: str = ",".join(QUEUES),
    ) -> Worker:
        worker = Worker(name, env, logdir, concurrency=concurrency, queues=queues)
        started.append(worker)
        worker.start()
        if ready:
            worker.wait_ready()
        return worker

    try:
        yield start
    finally:
        teardown(started)


# ------------------------------------------------------------------------- a private PostgreSQL


def _postgres_binaries() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


class PostgresServer:
    """A PostgreSQL server of one test (initdb in a temporary directory, a free port, trust auth), which
    the test may stop and start again: faults of the database, never of the shared server.

    PostgreSQL refuses to run as root; as root, its programs run as the `postgres` user."""

    def __init__(self) -> None:
        binaries = _postgres_binaries()
        if binaries is None:
            require_server("PostgreSQL", "pg_ctl/initdb are not installed")
        self.bin = binaries
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="smq-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            shutil.chown(self.directory, self.user)

    def _run(self, program: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / program), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> PostgresServer:
        result = self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        if result.returncode != 0:
            pytest.fail(f"initdb failed: {result.stderr[-2000:]}")
        return self.start()

    def start(self) -> PostgresServer:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory} -c fsync=off"
        result = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        if result.returncode != 0:
            pytest.fail(f"pg_ctl start failed: {result.stderr[-2000:]}\n{self.log_tail()}")
        return self

    def stop(self) -> None:
        """Fast shutdown: every open connection is cut, as when a database server goes away."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def destroy(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server.init()
    finally:
        server.destroy()
