"""Queue names and weighted consumption for kombu's Redis transport.

kombu's Redis transport issues one BRPOP over all queue keys and Redis serves the first non-empty key,
so the key order *is* the priority. `WeightedCycle` re-draws that order before every BRPOP as a
weighted random permutation: with a backlog in every queue, the first key is `critical` 6 times in 10,
`default` 3 and `low` 1 (the defaults), which is the consumption ratio. Message priorities are never
used: on Redis they override queue order.

kombu instantiates the cycle class itself, with no arguments, so the weights come from the Celery
configuration of the app in use (`smq_queue_weights`, `smq_queue_order` in celeryconfig.py).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from smq.engine.errors import SmqError
from smq.settings import DEFAULT_QUEUE_WEIGHTS, QUEUES


class UnknownQueue(SmqError, ValueError):
    """A queue name that is not critical, default or low."""


def check_queue(queue: str) -> str:
    if queue not in QUEUES:
        raise UnknownQueue(f"unknown queue {queue!r}: use one of {', '.join(QUEUES)}")
    return queue


def weighted_order(queues: list[Any], weights: dict[str, int], rng: random.Random) -> list[Any]:
    """A random permutation where each next queue is drawn with probability proportional to its weight."""
    remaining = list(queues)
    order = []
    while remaining:
        total = sum(weights.get(str(queue), 1) for queue in remaining)
        pick = rng.uniform(0, total)
        for index, queue in enumerate(remaining):
            pick -= weights.get(str(queue), 1)
            if pick <= 0 or index == len(remaining) - 1:
                order.append(remaining.pop(index))
                break
    return order


def _configured() -> tuple[dict[str, int], str]:
    from celery import current_app

    conf = current_app.conf
    return dict(conf.get("smq_queue_weights") or DEFAULT_QUEUE_WEIGHTS), conf.get(
        "smq_queue_order"
    ) or "weighted"


class WeightedCycle:
    """kombu cycle interface (`update`, `consume`, `rotate`) with weighted or strict queue order."""

    def __init__(self, it: Iterable[Any] | None = None) -> None:
        self.items: list[Any] = list(it) if it is not None else []
        self.weights, self.order = _configured()
        self.rng = random.Random()

    def update(self, it: Iterable[Any]) -> None:
        self.items[:] = it

    def consume(self, n: int) -> list[Any]:
        if self.order == "strict":
            ranked = sorted(self.items, key=lambda queue: -self.weights.get(str(queue), 0))
            return ranked[:n]
        return weighted_order(self.items, self.weights, self.rng)[:n]

    def rotate(self, last_used: Any) -> None:
        """Nothing to rotate: every `consume` draws a fresh order."""
