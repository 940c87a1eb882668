"""Leases: every process that runs an execution keeps a short lease on it, renewed in the background.

A RUNNING execution whose lease has expired belongs to a process that is gone (killed worker, lost
machine, lost message); the recovery scanner resumes it. A healthy long run keeps renewing, so it is
never recovered concurrently: the lease decides, never the start time.

The lease is also what keeps one execution to one runner: it is taken with the execution's first
write (its insert), or `claim`ed before a stored execution is resumed, so a second delivery of the
same execution (a duplicate message, a re-published continuation) never runs the state in progress
again while its holder is alive.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import NamedTuple, cast

from sqlalchemy import Engine

from smq.repository.leases import let_go_of_lease, renew_leases, take_lease
from smq.repository.models import RUNNING

log = logging.getLogger("smq.leases")

__all__ = [
    "ExecutionHeld",
    "LeaseKeeper",
    "claim",
    "lease_keeper",
    "let_go_if_idle",
    "local_owner",
    "process_owner",
    "running_here",
]

# Executions being run in this process right now, by any thread (the lease owner is the process, so
# the database alone cannot tell two threads of one process apart).
_running: dict[str, int] = {}
_running_lock = threading.Lock()


def running_here(execution_id: str) -> bool:
    with _running_lock:
        return execution_id in _running


@cache
def _pid_namespace() -> str:
    """This process's pid namespace (the inode of /proc/self/ns/pid), "-" where there is none to read.
    Two containers may share a hostname (a fixed `hostname:` in compose) and both have a pid 7: the
    namespace tells their processes apart, so one never judges the other's pids."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def local_owner(pid: int) -> str:
    """The lease owner name of process `pid` of this host and pid namespace: `host:namespace:pid`."""
    return f"{socket.gethostname()}:{_pid_namespace()}:{pid}"


_owner: tuple[int, str] = (0, "")


def process_owner() -> str:
    """This process's lease owner name (computed once per pid: a forked child gets its own)."""
    global _owner
    pid, owner = _owner
    if pid != os.getpid():
        pid = os.getpid()
        _owner = (pid, owner := local_owner(pid))
    return owner


class ExecutionHeld(Exception):
    """Another live process holds the execution's lease: it is running it now. Running it here as well
    would repeat its current state's side effects; whoever got this checks again once the lease would
    have expired (the holder finishes it, or dies and lets go)."""

    def __init__(self, execution_id: str, owner: str, expires_at: datetime):
        super().__init__(
            f"execution {execution_id} is being run by {owner} (lease until {expires_at.isoformat()})"
        )
        self.execution_id = execution_id
        self.owner = owner
        self.expires_at = expires_at

    def seconds_left(self) -> float:
        return max(0.0, (self.expires_at - datetime.now(UTC)).total_seconds())


def _local_owner_is_dead(owner: str) -> bool:
    """A lease of a process on this host, in this pid namespace, that no longer exists (a killed pool
    child): free at once. Any other owner (another host or container, an unknown format) holds until
    its lease expires.

    Owners written before smq named the pid namespace read `host:pid`. Only a process of an older smq
    writes that form, so after an upgrade such a lease is taken at once when `pid` is no process here
    (the older worker that held it was stopped for the upgrade) instead of stranding its execution
    until the lease expires. The one case this misjudges is an older smq still running in another
    container under the same fixed hostname (smq's compose gives every container its own)."""
    parts = owner.rsplit(":", 2)
    if len(parts) == 2 and parts[0] == socket.gethostname() and parts[1].isdigit():
        parts = [parts[0], _pid_namespace(), parts[1]]
    if len(parts) != 3:
        return False
    host, namespace, pid = parts
    if host != socket.gethostname() or namespace != _pid_namespace() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def let_go_if_idle(engine: Engine, execution_id: str) -> None:
    """Let go of this process's lease on an execution whose run stopped with an exception, unless
    another thread here still runs it. Best effort: with the database down the lease simply expires."""
    if running_here(execution_id):
        return
    try:
        let_go_of_lease(engine, execution_id, process_owner())
    except Exception as exc:  # the database may be what failed; the lease then expires on its own
        log.debug("could not let go of the lease on %s: %s", execution_id, exc)


class Claimed(NamedTuple):
    """A lease taken: by whom, until when, and from which dead process of this host (None: it was free)."""

    owner: str
    expires_at: datetime
    taken_from: str | None = None


def claim(engine: Engine, execution_id: str, seconds: float) -> Claimed | None:
    """Take the lease of a RUNNING execution found in the database before running it, so that two
    deliveries of one execution (a duplicate message, a recovery re-publish) never run it at once.

    Free to take: nobody's (handed to the queue), the scanner's or the dead letters' hold, this
    process's own (unless another of its threads runs it), an expired lease, or one of a dead process
    on this host. Raises ExecutionHeld when a live process holds it. Returns the lease taken, or None
    when the execution is no longer RUNNING (nothing to run)."""
    owner = process_owner()
    dead = None
    if running_here(execution_id):
        raise ExecutionHeld(execution_id, owner, datetime.now(UTC) + timedelta(seconds=seconds))
    for _attempt in range(2):
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=seconds)
        found = take_lease(engine, execution_id, owner, now=now, until=expires)
        if found.taken:
            return Claimed(owner, expires, dead)
        if found.status != RUNNING:
            return None
        holder = cast(str, found.owner)
        if not _local_owner_is_dead(holder):
            raise ExecutionHeld(execution_id, holder, cast(datetime, found.expires_at))
        let_go_of_lease(engine, execution_id, holder)  # the dead process's lease, then take it
        dead = holder
    raise ExecutionHeld(execution_id, "another process", datetime.now(UTC))


class LeaseKeeper:
    """Holds and renews the leases of the executions running in this process (one renewal thread)."""

    def __init__(self, engine: Engine, seconds: float):
        self.engine = engine
        self.seconds = seconds
        self.owner = process_owner()
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @contextmanager
    def hold(self, execution_id: str) -> Iterator[None]:
        """Keep the lease renewed while the block runs, and mark the execution as running in this
        process. The lease was taken by the execution's insert or by `claim`; the first renewal comes
        within a third of it, so a short execution costs no lease write at all."""
        with self._lock:
            _count(self._held, None, execution_id, +1)
            self._ensure_thread()
        _count(_running, _running_lock, execution_id, +1)
        try:
            yield
        finally:
            _count(_running, _running_lock, execution_id, -1)
            with self._lock:
                _count(self._held, None, execution_id, -1)

    def _write(self, execution_ids: list[str]) -> None:
        renew_leases(
            self.engine, execution_ids, self.owner, datetime.now(UTC) + timedelta(seconds=self.seconds)
        )

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive() or self.owner != process_owner():
            self.owner = process_owner()  # a forked child renews under its own name
            self._stop.clear()
            self._thread = threading.Thread(target=self._renew_forever, name="smq-leases", daemon=True)
            self._thread.start()

    def _renew_forever(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            with self._lock:
                held = list(self._held)
            if not held:
                continue
            try:
                self._write(held)
            except Exception:  # the database is down: the lease may lapse; recovery then takes over
                log.warning("could not renew %d lease(s)", len(held), exc_info=True)


def _count(counts: dict[str, int], lock: threading.Lock | None, key: str, step: int) -> None:
    """Add `step` to a reference count, dropping the key at zero."""
    with lock or nullcontext():
        value = counts.get(key, 0) + step
        if value <= 0:
            counts.pop(key, None)
        else:
            counts[key] = value


_keepers: dict[tuple[int, int], LeaseKeeper] = {}
_keepers_lock = threading.Lock()


def lease_keeper(engine: Engine, seconds: float) -> LeaseKeeper:
    """The keeper of this process for `engine` (a forked child gets its own)."""
    key = (os.getpid(), id(engine))
    with _keepers_lock:
        keeper = _keepers.get(key)
        if keeper is None:
            keeper = _keepers[key] = LeaseKeeper(engine, seconds)
        return keeper
