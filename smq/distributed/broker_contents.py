"""What the Redis broker holds right now: the backlog, the task ids it still has, whether it lost its data.

kombu keeps each queue as a Redis list of JSON envelopes (`headers.id` is the Celery task id), one list
per priority step (`queue`, `queue\\x06\\x163`, ...), and every message a worker has taken but not yet
acknowledged (ETA tasks included) in the `unacked` hash. A task id found in neither is gone from the
broker. smq also keeps one key of its own, the broker's epoch: Redis restarted empty, FLUSHALL or a new
server all remove it, which is how the scheduler knows the broker lost its data.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator

import redis

from smq.settings import QUEUES

EPOCH_KEY = "smq:broker:epoch"
UNACKED_KEY = "unacked"  # kombu's Redis transport: delivery tag -> [envelope, exchange, routing key]
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)  # kombu's default steps besides 0 (the plain queue name)
_PAGE = 1000


def queue_keys(queues: Iterable[str] = QUEUES) -> list[str]:
    """Every Redis list a queue's messages may sit in."""
    keys = []
    for queue in queues:
        keys.append(queue)
        keys.extend(f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS)
    return keys


def backlog(client: redis.Redis) -> int:
    """Messages queued or held unacknowledged: one round trip."""
    pipe = client.pipeline(transaction=False)
    for key in queue_keys():
        pipe.llen(key)
    pipe.hlen(UNACKED_KEY)
    return sum(int(n) for n in pipe.execute())


def held_task_ids(client: redis.Redis) -> set[str]:
    """Ids of every task the broker still holds, queued or unacknowledged. Reads the whole backlog, so
    callers ask only when the backlog is known to be small or something is known to be missing."""
    found: set[str] = set()
    for key in queue_keys():
        start = 0
        while True:
            page: list[bytes] = client.lrange(key, start, start + _PAGE - 1)  # type: ignore[assignment]
            found.update(_ids(page))
            if len(page) < _PAGE:
                break
            start += _PAGE
    for _tag, held in client.hscan_iter(UNACKED_KEY, count=_PAGE):
        try:
            task_id = json.loads(held)[0].get("headers", {}).get("id")
        except (ValueError, TypeError, IndexError, KeyError, AttributeError):
            continue
        if isinstance(task_id, str):
            found.add(task_id)
    return found


def _ids(raw_envelopes: Iterable[bytes | str]) -> Iterator[str]:
    for raw in raw_envelopes:
        try:
            task_id = json.loads(raw).get("headers", {}).get("id")
        except (ValueError, AttributeError):
            continue
        if isinstance(task_id, str):
            yield task_id


def lost_its_data(client: redis.Redis) -> bool:
    """True when smq's epoch key is gone (Redis restarted empty, flushed, or a new server), and sets a
    new one, so each loss is reported once."""
    if client.exists(EPOCH_KEY):
        return False
    return bool(client.set(EPOCH_KEY, uuid.uuid4().hex, nx=True))
