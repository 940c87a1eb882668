"""Leases: every process that runs an execution keeps a short lease on it, renewed in the background.

A RUNNING execution whose lease has expired belongs to a process that is gone (killed worker, lost
machine, lost message); the recovery scanner resumes it. A healthy long run keeps renewing, so it is
never recovered concurrently: the lease decides, never the start time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Engine, Table, update

from smq.repository.models import RUNNING, ExecutionRow

EXECUTIONS = cast(Table, ExecutionRow.__table__)
log = logging.getLogger("smq.leases")


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
        """Keep the lease renewed while the block runs. The first write comes within a third of the
        lease: until then the execution's fresh `updated_at` (it was just created, checkpointed, woken or
        claimed) keeps the scanner away, so a short execution costs no lease write at all."""
        with self._lock:
            self._held[execution_id] = self._held.get(execution_id, 0) + 1
            self._ensure_thread()
        try:
            yield
        finally:
            with self._lock:
                count = self._held.get(execution_id, 1) - 1
                if count <= 0:
                    self._held.pop(execution_id, None)
                else:
                    self._held[execution_id] = count

    def _write(self, execution_ids: list[str]) -> None:
        expires = datetime.now(UTC) + timedelta(seconds=self.seconds)
        with self.engine.begin() as connection:
            connection.execute(
                update(EXECUTIONS)
                .where(EXECUTIONS.c.id.in_(execution_ids), EXECUTIONS.c.status == RUNNING)
                .values(lease_owner=self.owner, lease_expires_at=expires)
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
