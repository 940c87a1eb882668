"""Another client on bench/waiting.py's Redis dbs (a test run, another benchmark) would take its tasks
and have its own taken: the guard refuses to start then, aborts as soon as one appears while running,
and has the dbs left unflushed at the end after an intrusion (--force-redis skips it)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import redis
from harness.processes import parent_pids

START_CHECKS = 5  # the Redis dbs must be free of other clients this many times, a second apart


def check() -> None:
    """Raise if another client has appeared on the dbs `watch` was given (looked at every 2 s at most)."""
    if _guard is not None:
        _guard.check()


def _my_tree() -> set[int]:
    """This process and every process descended from it."""
    parents = parent_pids()
    tree, grew = {os.getpid()}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def _socket_owners(server_port: int) -> dict[int, int]:
    """Local port -> pid, for this host's TCP connections to `server_port`."""
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == server_port:
                    inodes[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    owners: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        owners[inodes[target[8:-1]]] = int(entry.name)
    return owners


def _cmdline(pid: int | None) -> str:
    if pid is None:
        return "(process not found)"
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    return "?"


class RedisGuard:
    """Another client on the benchmark's Redis dbs (a test run, another benchmark) would take its tasks
    and have its own taken: refuse to start then, and abort as soon as one appears while running. A
    client is ours when the process holding its socket is this script or one of its descendants (found
    through /proc); one that is not ours on two checks in a row is foreign. After an intrusion the dbs
    are left as they are at the end (not flushed under the other user's feet)."""

    def __init__(self, client: redis.Redis, dbs: tuple[int, ...], every: float = 2.0):
        self.client, self.dbs, self.every = client, dbs, every
        self.port = int(client.connection_pool.connection_kwargs.get("port", 6379))
        self.ours: set[str] = set()
        self.suspects: set[str] = set()
        self.intruded = False
        self._last = 0.0

    def foreign(self) -> dict[str, str]:
        """addr -> description, for the clients on our dbs that are not ours."""
        entries = [e for e in self.client.client_list() if int(e.get("db", -1)) in self.dbs]
        unknown = [e for e in entries if e["addr"] not in self.ours]
        if not unknown:
            return {}
        owners, tree = _socket_owners(self.port), _my_tree()
        found = {}
        for entry in unknown:
            pid = owners.get(int(entry["addr"].rsplit(":", 1)[1]))
            if pid in tree:
                self.ours.add(entry["addr"])
            else:
                found[entry["addr"]] = f"{entry['addr']} on db {entry['db']}: pid {pid} {_cmdline(pid)}"
        return found

    def check(self, *, at_start: bool = False) -> None:
        now = time.monotonic()
        if not at_start and now - self._last < self.every:
            return
        self._last = now
        found = self.foreign()
        confirmed = list(found.values()) if at_start else [t for a, t in found.items() if a in self.suspects]
        self.suspects = set(found)
        if confirmed:
            self.intruded = not at_start
            raise RuntimeError(
                f"Redis db(s) {', '.join(map(str, self.dbs))} {'are' if at_start else 'became'} used by "
                f"{len(confirmed)} other client(s): {'; '.join(confirmed[:4])}. The integration tests use "
                "dbs 11 and 12: if these are yours, choose other dbs with "
                "--redis-db/--record-db"
            )


_guard: RedisGuard | None = None  # set by watch: --force-redis leaves it None


def watch(client: redis.Redis, dbs: tuple[int, ...]) -> None:
    """Refuse to start if another client uses `dbs` (a test run may be between two tests: look for a
    few seconds); from then on `check` watches them."""
    global _guard
    _guard = RedisGuard(client, dbs)
    for _ in range(START_CHECKS):
        _guard.check(at_start=True)
        time.sleep(1.0)


def keep_reason() -> str | None:
    """Why flushed_redis must leave the dbs as they are at the end (another client used them)."""
    if _guard is not None and _guard.intruded:
        return "another client used the benchmark's Redis dbs: left as they are (not flushed)"
    return None
