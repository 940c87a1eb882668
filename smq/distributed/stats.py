"""What is queued, running and dead, read from Redis and the database (Flower shows neither dead letters
nor queued messages, so smq reports both).

Per queue: `pending` messages waiting in the Redis list, `active` messages delivered to a worker and not
yet acknowledged (running, or prefetched), `scheduled` delivered messages held until their ETA (retry
backoff, scheduled starts), `dead` dead letters in the database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import redis

from smq.repository.queue_records import DeadLetters
from smq.repository.repository import Repository
from smq.settings import QUEUES, redact

# kombu's Redis transport keeps one list per priority step: `queue`, then `queue\x06\x16<step>`.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED = "unacked"


def _queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


def _eta(message: dict[str, Any]) -> datetime | None:
    text = (message.get("headers") or {}).get("eta")
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def queue_stats(broker_url: str) -> dict[str, dict[str, int]]:
    """pending / active / scheduled per queue, straight from the broker's keys."""
    client = redis.Redis.from_url(broker_url, socket_timeout=10)
    try:
        stats = {queue: {"pending": 0, "active": 0, "scheduled": 0} for queue in QUEUES}
        pipe = client.pipeline()
        for queue in QUEUES:
            for key in _queue_keys(queue):
                pipe.llen(key)
        lengths = iter(pipe.execute())
        for queue in QUEUES:
            stats[queue]["pending"] = sum(next(lengths) for _ in PRIORITY_STEPS)
        now = datetime.now(UTC)
        for _, raw in client.hscan_iter(UNACKED, count=1000):
            try:
                message, _exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            if routing_key not in stats:
                continue
            eta = _eta(message)
            stats[routing_key]["scheduled" if eta is not None and eta > now else "active"] += 1
        return stats
    finally:
        client.close()


def oldest_sent_at(broker_url: str) -> dict[str, float | None]:
    """Per queue, when its oldest waiting message was published (its `smq_sent_at` header, Unix time),
    or None for an empty queue or a message without it. kombu pushes on the left and workers pop on
    the right: the oldest is the last item of each list."""
    client = redis.Redis.from_url(broker_url, socket_timeout=10)
    try:
        pipe = client.pipeline()
        for queue in QUEUES:
            for key in _queue_keys(queue):
                pipe.lindex(key, -1)
        items = iter(pipe.execute())
        oldest: dict[str, float | None] = {}
        for queue in QUEUES:
            times = [_sent_at(next(items)) for _ in PRIORITY_STEPS]
            known = [moment for moment in times if moment is not None]
            oldest[queue] = min(known) if known else None
        return oldest
    finally:
        client.close()


def _sent_at(raw: Any) -> float | None:
    if raw is None:
        return None
    try:
        sent = json.loads(raw)["headers"]["smq_sent_at"]
    except (ValueError, TypeError, KeyError):
        return None
    return float(sent) if isinstance(sent, int | float) else None


def collect_stats(repository: Repository, broker_url: str | None) -> dict[str, Any]:
    """Queues (when a broker is configured), dead letters per queue, executions by status."""
    dead = DeadLetters(repository.engine).count_by_queue()
    queues: dict[str, dict[str, int]] = {queue: {} for queue in QUEUES}
    broker_error = None
    if broker_url:
        try:
            queues = queue_stats(broker_url)
        except redis.RedisError as exc:
            broker_error = redact(f"{type(exc).__name__}: {exc}")
    for queue in set(QUEUES) | set(dead):
        queues.setdefault(queue, {})["dead"] = dead.get(queue, 0)
    return {
        "time": datetime.now(UTC).isoformat(),
        "broker": redact(broker_url) if broker_url else None,
        "broker_error": broker_error,
        "queues": queues,
        "executions": repository.count_by_status(),
    }
