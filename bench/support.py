"""What the benchmark scripts share: progress logging, fresh databases, Celery worker subprocesses,
CPU readings from ``/proc``, Redis queue checks and the common parts of their reports.

The scripts run as ``python bench/X.py`` from the repository root, so this directory is on
``sys.path`` and they import it as ``support`` (as ``bench/persistence.py`` imports ``engine``).
Only the standard library is imported at module level: ``bench/engine.py`` uses this module too and
must start without smq, SQLAlchemy or Redis installed. Everything else is imported where it is used.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

ROOT = Path(__file__).resolve().parent.parent  # the repository: every subprocess runs there

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
MIB = 1024 * 1024

QUEUE = "default"  # where the benchmarks publish
QUEUE_KEYS = ("critical", "default", "low")  # every queue the workers consume
STALL_SECONDS = 60.0  # wait_for: nothing moved for this long: give up

# smq_executions' columns, in the order the bulk loaders write them.
EXECUTION_COLUMNS = (
    "id", "name", "state_machine_id", "version", "status", "input", "output", "error", "cause",
    "current_state", "cursor", "history_length", "start_time", "stop_time", "duration_ms", "updated_at",
    "source_execution_id", "source_state_name", "transformer",
)  # fmt: skip


def log(message: str) -> None:
    """Progress goes to stderr so --json output stays parseable."""
    print(message, file=sys.stderr, flush=True)


def load1() -> float:
    """The one-minute load average (the machine may be running other work)."""
    return round(os.getloadavg()[0], 2)


# ------------------------------------------------------------------ CPU and processes, from /proc


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU time of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def machine_busy_seconds() -> float:
    """CPU time spent on anything but idle/iowait, all CPUs together, since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def parent_pids() -> dict[int, int]:
    """pid -> parent pid, for every process we can see."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                found[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return found


def children_of(parents: set[int]) -> list[int]:
    """The pids whose parent is one of `parents` (e.g. a Celery worker's pool children)."""
    return [pid for pid, parent in parent_pids().items() if parent in parents]


@dataclass
class CpuUsage:
    """CPU seconds used between CpuMeter.start() and stop(): per group of processes, and for the whole
    machine, which also counts everything outside the groups."""

    wall: float = 0.0
    groups: dict[str, float] = field(default_factory=dict)
    machine: float = 0.0

    @property
    def rest(self) -> float:
        return self.machine - sum(self.groups.values())

    def per_item_ms(self, count: int) -> dict[str, float]:
        values = {**self.groups, "rest of the machine": self.rest, "whole machine": self.machine}
        return {name: round(seconds / count * 1000, 3) for name, seconds in values.items()}

    def percent_of_one_cpu(self) -> dict[str, float]:
        """Each group's and the whole machine's CPU as % of one CPU over the wall time (empty if none)."""
        values = {**self.groups, "whole machine": self.machine}
        return {name: seconds / self.wall * 100 for name, seconds in values.items()} if self.wall > 0 else {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall": round(self.wall, 3),
            **{name: round(value, 3) for name, value in self.groups.items()},
            "rest_of_the_machine": round(self.rest, 3),
            "whole_machine": round(self.machine, 3),
        }


class CpuMeter:
    """Snapshot per-process and machine CPU counters at start() and stop(). Each group is a function
    returning its pids, asked at both ends (a process that appears in between counts from its birth,
    one that ends in between is lost)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups
        self._start: dict[str, dict[int, float]] = {}
        self._machine = 0.0
        self._wall = 0.0

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {pid: process_cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()}

    def start(self) -> None:
        self._start = self._sample()
        self._machine, self._wall = machine_busy_seconds(), time.perf_counter()

    def stop(self) -> CpuUsage:
        wall, machine = time.perf_counter() - self._wall, machine_busy_seconds() - self._machine
        end = self._sample()
        groups = {
            name: sum(cpu - self._start[name].get(pid, 0.0) for pid, cpu in end[name].items())
            for name in self.groups
        }
        return CpuUsage(wall, groups, machine)


# ------------------------------------------------------------------ subprocesses


# Processes started through spawn_tracked, killed with their session at exit if still running.
_tracked: list[subprocess.Popen[bytes]] = []


@atexit.register
def _kill_tracked() -> None:
    """Last resort: whatever a bench started and did not stop is killed with its session."""
    for process in _tracked:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def spawn_tracked(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`spawn`, remembered so that the exit hook can stop it if nothing else does."""
    process = spawn(command, env, log_path)
    _tracked.append(process)
    return process


def spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `command` in the repository, in its own session (so it can be stopped with everything it
    started), stdin closed, stdout and stderr appended to `log_path`."""
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_processes(
    processes: Sequence[subprocess.Popen[bytes]], timeout: float = 20.0, label: str = "pid"
) -> list[int | None]:
    """SIGTERM (Celery's warm shutdown, the scheduler's clean stop) to each one still running, then wait
    for them all until one shared deadline; SIGKILL the session of any that lingers. Returns their exit
    codes (None for a killed one)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    codes: list[int | None] = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            log(f"{label} {process.pid} did not stop in {timeout:.0f}s: killing its session")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            codes.append(None)
    return codes


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def worker_command(name: str, concurrency: int = 1) -> list[str]:
    """Exactly how the benchmarks run a Celery worker: smq's app, every queue, `concurrency` prefork
    children."""
    return [
        sys.executable, "-m", "celery", "-A", "smq", "worker",
        "-Q", ",".join(QUEUE_KEYS), "-c", str(concurrency), "--pool", "prefork",
        "-n", f"{name}@%h", "-l", "WARNING",
    ]  # fmt: skip


class CeleryWorkers:
    """K `celery -A smq worker` processes (worker_command), named `<prefix><i>-<our pid>`, each in its
    own session with its log in `log_dir`. `spawner` starts one (spawn, or a wrapper that also records
    the process)."""

    def __init__(
        self,
        count: int,
        env: dict[str, str],
        log_dir: Path,
        prefix: str,
        spawner: Callable[[list[str], dict[str, str], Path], subprocess.Popen[bytes]] = spawn,
        concurrency: int = 1,
    ):
        self.count, self.env, self.log_dir = count, env, log_dir
        self.concurrency = concurrency
        self.names = [f"{prefix}{index}-{os.getpid()}" for index in range(1, count + 1)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self._spawn = spawner

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self) -> None:
        for name in self.names:
            self.processes.append(
                self._spawn(worker_command(name, self.concurrency), self.env, self.log_path(name))
            )

    def check_alive(self) -> None:
        """Raise if a worker has exited, with the end of its log."""
        for name, process in zip(self.names, self.processes, strict=True):
            if process.poll() is not None:
                raise RuntimeError(
                    f"worker {name} exited with {process.returncode}; its log ends with:\n"
                    f"{tail(self.log_path(name))}"
                )

    def wait_ready(self, app: Any, timeout: float = 90.0, check: Callable[[], None] | None = None) -> None:
        """Until every worker answers a control ping (its consumer is running); `check` is called on
        every round too."""
        deadline = time.monotonic() + timeout
        pending = set(self.names)
        while pending:
            self.check_alive()
            if check is not None:
                check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
            for reply in app.control.ping(timeout=1.0) or []:
                for hostname in reply:
                    pending.discard(hostname.split("@", 1)[0])

    def main_pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def child_pids(self) -> list[int]:
        """The pool children (what runs the tasks), from /proc."""
        return children_of(set(self.main_pids()))

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (warm shutdown) to each worker; SIGKILL its session if it lingers past `timeout`."""
        stop_processes(self.processes, timeout, "worker pid")
        self.processes = []


def wait_for(
    progress: Callable[[], int],
    target: int,
    label: str,
    alive: Callable[[], None],
    *,
    poll: float,
    quiet_until: float = 0.0,
    report_every: float = 5.0,
    indent: str = "  ",
) -> None:
    """Poll `progress()` until it reaches `target`, calling `alive()` (which raises if a process died)
    in between; fail if nothing moved for STALL_SECONDS, not counting the time before `quiet_until`
    (a wall time before which nothing is expected). Progress is logged every `report_every` seconds."""
    last, last_change, last_report = -1, time.monotonic(), 0.0
    while True:
        done = progress()
        now = time.monotonic()
        if done != last or time.time() < quiet_until:
            last, last_change = done, now
        if done >= target:
            return
        alive()
        if now - last_change > STALL_SECONDS:
            raise RuntimeError(f"{label}: stuck at {done:,}/{target:,} for {STALL_SECONDS:.0f}s")
        if now - last_report > report_every:
            log(f"{indent}{label}: {done:,}/{target:,}")
            last_report = now
        time.sleep(poll)


# ------------------------------------------------------------------ Redis


@contextlib.contextmanager
def flushed_redis(*clients: redis.Redis, keep: Callable[[], str | None] | None = None) -> Iterator[None]:
    """The benchmark's Redis databases, empty at the start and at the end. `keep`, asked at the end,
    says why to leave them as they are instead (None: flush them)."""
    import redis

    for client in clients:
        client.flushdb()
    try:
        yield
    finally:
        reason = keep() if keep is not None else None
        if reason:
            log(reason)
        else:
            for client in clients:
                try:
                    client.flushdb()
                except redis.RedisError as exc:
                    log(f"could not flush a Redis db at the end: {exc}")


def queue_length(client: redis.Redis, queue: str = QUEUE) -> int:
    """Messages waiting in a queue (kombu keeps one list per priority step; the base one is `queue`)."""
    return int(sum(client.llen(key) for key in client.scan_iter(match=f"{queue}*", count=1000)))


def delete_queues(client: redis.Redis) -> None:
    """Every queue the workers consume, with its priority steps."""
    for queue in QUEUE_KEYS:
        for key in list(client.scan_iter(match=f"{queue}*", count=1000)):
            client.delete(key)


def leftover_messages(
    client: redis.Redis,
    queued_text: str = "{} message(s) still queued",
    unacked_text: str = "{} message(s) unacknowledged",
) -> list[str]:
    """Anything still queued or delivered-but-unacknowledged in a broker db, as problems (none: empty),
    each counted into its `str.format` template."""
    problems = []
    queued = sum(queue_length(client, queue) for queue in QUEUE_KEYS)
    if queued:
        problems.append(queued_text.format(queued))
    unacked = int(client.hlen("unacked"))
    if unacked:
        problems.append(unacked_text.format(unacked))
    return problems


# ------------------------------------------------------------------ databases


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


def postgres_pids(repo: Any) -> Callable[[], list[int]]:
    """A function listing the PostgreSQL backends connected to `repo`'s database (for CpuMeter)."""
    from sqlalchemy import text

    def pids() -> list[int]:
        with repo.reader.connect() as connection:
            return list(
                connection.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                ).scalars()
            )

    return pids


def commit_latency_ms(repo: Any, backend: str = "postgresql", commits: int = 200) -> float:
    """Mean time of a one-row INSERT committed on its own (PostgreSQL: autocommit; SQLite: BEGIN
    IMMEDIATE ... COMMIT): the floor under every write transaction."""
    raw = repo.engine.raw_connection()
    try:
        connection: Any = raw.driver_connection
        connection.execute("CREATE TABLE smq_bench_commit_probe (x INTEGER)")
        if backend == "postgresql":
            connection.commit()
            connection.autocommit = True
        begin, end = ("BEGIN IMMEDIATE", "COMMIT") if backend == "sqlite" else ("", "")
        placeholder = "?" if backend == "sqlite" else "%s"
        start = time.perf_counter()
        for value in range(commits):
            if begin:
                connection.execute(begin)
            connection.execute(f"INSERT INTO smq_bench_commit_probe VALUES ({placeholder})", (value,))
            if end:
                connection.execute(end)
        elapsed = time.perf_counter() - start
        connection.execute("DROP TABLE smq_bench_commit_probe")
        if backend == "postgresql":
            connection.autocommit = False
        return elapsed / commits * 1000
    finally:
        raw.close()


def writes_per_execution(machine: Any, execution_input: Any, checkpoints: str | None = None) -> int:
    """Write transactions one persisted execution makes (`machine` is a compiled smq StateMachine).

    every-state: the RUNNING insert, then one checkpoint per step. boundaries (the default): a step
    that smq defers (side-effect free, leading into another) shares the next write, and an execution
    that starts side-effect free is inserted by its first write."""
    from smq.execution.checkpoints import EVERY_STATE, deferrable, starts_side_effect_free

    mode = checkpoints or os.environ.get("SMQ_CHECKPOINTS") or "boundaries"
    steps: list[Any] = []
    machine.run(execution_input, on_step=steps.append)
    if mode == EVERY_STATE:
        return 1 + len(steps)
    states = machine.machine.states
    insert = 0 if starts_side_effect_free(states, machine.machine.start_at) else 1
    return insert + sum(1 for step in steps if not deferrable(step, states))


def copy_executions(repo: Any, rows: Iterable[tuple[Any, ...]]) -> None:
    """Bulk-load rows (in EXECUTION_COLUMNS order) into PostgreSQL's smq_executions: COPY ... FROM
    STDIN on the raw psycopg connection, then ANALYZE."""
    raw = repo.engine.raw_connection()
    try:
        connection: Any = raw.driver_connection
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY smq_executions ({', '.join(EXECUTION_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            connection.commit()
            cursor.execute("ANALYZE smq_executions")
            connection.commit()
    finally:
        raw.close()


# ------------------------------------------------------------------ reports


def rate_text(rate: float | None) -> str:
    """A rate for a table: whole numbers from 100 up, two decimals below, "n/a" for none."""
    if rate is None:
        return "n/a"
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:,.2f}"


def load_average(load_start: Sequence[float]) -> dict[str, list[float]]:
    """The 1/5/15-minute load averages at the start (given) and now, for a JSON report."""
    return {
        "start": [round(v, 2) for v in load_start],
        "end": [round(v, 2) for v in os.getloadavg()],
    }


def load_line(report: dict[str, Any]) -> str:
    """The start of a report's closing line: load averages, CPUs and total time."""
    load = report["load_average"]
    return (
        f"load average (1/5/15 min) at start {load['start']}, at end {load['end']} on {report['cpus']} CPUs; "
        f"total {report['wall_seconds']:.0f}s"
    )


def console(width: int) -> Any:
    """A rich Console: the terminal's width on a terminal, `width` columns otherwise (a pipe, a file)."""
    from rich.console import Console

    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=width)


def emit_report(
    report: dict[str, Any], save: str | None, as_json: bool, print_tables: Callable[[], None]
) -> None:
    """Write the JSON report to `save` if given; then print it as JSON, or call `print_tables`."""
    if save:
        with open(save, "w") as out:
            json.dump(report, out, indent=2)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_tables()


# ------------------------------------------------------------------ private servers (bench/faults.py)


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


def source_state() -> dict[str, Any]:
    """Which smq was measured: HEAD and whether smq/ had uncommitted changes."""

    def git(*command: str) -> str:
        try:
            return subprocess.run(
                ["git", *command], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "smq").splitlines()]
    return {"head": git("rev-parse", "HEAD"), "smq_uncommitted": changed}


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
