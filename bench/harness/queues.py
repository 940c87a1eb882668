"""The benchmarks' Redis dbs and Celery queues: flushed at the start and the end, queue lengths, and
what is left queued or unacknowledged once a part has finished."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from harness.progress import log

if TYPE_CHECKING:
    import redis


QUEUE = "default"  # where the benchmarks publish
QUEUE_KEYS = ("critical", "default", "low")  # every queue the workers consume


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


def queued(client: redis.Redis) -> int:
    """Messages waiting in every queue the workers consume."""
    return sum(queue_length(client, queue) for queue in QUEUE_KEYS)


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
    waiting = queued(client)
    if waiting:
        problems.append(queued_text.format(waiting))
    unacked = int(client.hlen("unacked"))
    if unacked:
        problems.append(unacked_text.format(unacked))
    return problems
