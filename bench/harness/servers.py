"""The servers a benchmark runs against: a fresh PostgreSQL database next to a given one, a private
redis-server or PostgreSQL cluster of its own (bench/faults.py kills and restarts them), and the Redis
a bench uses when none is given. No bench touches a server that may hold somebody's data unless told to."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from harness.processes import stop_processes, tail

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"  # --pg-url
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"  # shown as an example: by default a bench runs its own


@contextlib.contextmanager
def fresh_database(admin_url: str, name: str, *, migrate: bool = True) -> Iterator[str]:
    """A new PostgreSQL database `name` next to `admin_url`'s (dropped first if it exists); its URL.
    With `migrate`, smq's schema is created with ``smq.repository.database.upgrade``. Dropped
    afterwards, connections and all."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        if migrate:
            from smq.repository.database import create_database_engine, upgrade

            engine = create_database_engine(url)
            try:
                upgrade(engine)
            finally:
                engine.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """A redis-server of the benchmark's own on a free port, configured as docker-compose.yml runs it
    (append-only file, fsync every second, no eviction), with its data in `directory`. It can be
    SIGKILLed and started again on the same port and directory, with its AOF (`kill`, `start`) or
    without (`kill`, `remove_data`, `start`)."""

    def __init__(self, directory: Path):
        import shutil

        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self.binary, self.directory, self.port = binary, directory, free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 20.0) -> float:
        """Start it and wait until it answers PING (with its data loaded); returns that wall time."""
        import redis

        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
            "--save", "", "--daemonize", "no",
        ]  # fmt: skip
        with open(self.directory / "redis.log", "ab") as out:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {self.process.returncode}: {tail(self.directory / 'redis.log')}"
                    )
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return time.time()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} not answering after {timeout:.0f}s")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: whatever was not yet in the AOF is lost, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def remove_data(self) -> None:
        """Delete the AOF (and any RDB): the next start is an empty Redis."""
        import shutil

        for path in self.directory.iterdir():
            if path.name.startswith("appendonly") or path.suffix == ".rdb":
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def stop(self) -> None:
        if self.process is not None:
            stop_processes([self.process], 10.0, "redis-server pid")
            self.process = None


def _postgres_bin() -> Path:
    import shutil

    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not versions:
        raise RuntimeError("PostgreSQL's pg_ctl/initdb are not installed")
    return versions[-1].parent


class PrivatePostgres:
    """A PostgreSQL cluster of the benchmark's own: initdb in a temporary directory, a free port on
    127.0.0.1, trust authentication. It may be stopped (`pg_ctl stop -m fast`: every connection cut)
    and started again. PostgreSQL refuses to run as root, so as root its programs run as `postgres`
    (through runuser). `destroy` stops it and removes its files."""

    def __init__(self) -> None:
        import shutil
        import tempfile

        self.bin = _postgres_bin()
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="smq-bench-pg-"))
        self.data, self.log_path = self.directory / "data", self.directory / "server.log"
        self.as_user = "postgres" if os.geteuid() == 0 else None
        if self.as_user:
            shutil.chown(self.directory, self.as_user)

    def _run(self, program: str, *args: str, timeout: float = 120.0) -> None:
        command = [str(self.bin / program), *args]
        if self.as_user:
            command = ["runuser", "-u", self.as_user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed: {done.stderr[-1500:]}\n{tail(self.log_path)}"
            )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> PrivatePostgres:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        return self

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        import shutil

        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def redis_base_url(given: str | None, work_dir: Path) -> Iterator[str]:
    """The Redis server a bench uses, without a db: the one given (`--redis-url`, whose dbs the bench
    flushes), else a redis-server of its own on a free port, stopped at the end. By default no bench
    touches a server that may hold somebody's data."""
    if given:
        yield given.rstrip("/")
        return
    server = PrivateRedis(work_dir / "redis")
    server.start()
    try:
        yield f"redis://127.0.0.1:{server.port}"
    finally:
        server.stop()
