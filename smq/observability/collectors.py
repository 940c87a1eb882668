"""Gauges read when Prometheus scrapes the scheduler: what is waiting, in the broker and the database.

Counters say what happened; these say what is there now: each queue's messages (pending, delivered
and running, scheduled for later) and how long its oldest message has waited, the open waits by kind
(messages, callback task tokens, timers), the timers due and not fired yet with the oldest one's lag,
and the dead letters kept. One scrape costs a few Redis reads and three indexed counts. A source that
cannot be read (database or broker down) is reported by `smq_metrics_source_up` = 0, and the scrape
still answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from smq.distributed.stats import oldest_sent_at, queue_stats
from smq.repository.queue_records import DeadLetters
from smq.repository.repository import Repository
from smq.repository.waits import WaitStore
from smq.settings import QUEUES

log = logging.getLogger("smq.metrics")

WAIT_KINDS = ("timer", "message", "callback")
SOURCE_UP = "smq_metrics_source_up"
QUEUE_MESSAGES = "smq_queue_messages"
QUEUE_AGE = "smq_queue_oldest_message_age_seconds"
WAITS_OPEN = "smq_waits_open"
WAITS_DUE = "smq_waits_due"
WAITS_DUE_OLDEST = "smq_waits_due_oldest_seconds"
DEAD_LETTERS_KEPT = "smq_dead_letters_kept"
# The gauge families a scrape of the scheduler adds (the dashboard's queries name only these and
# smq.observability.metrics's).
FAMILIES = (SOURCE_UP, QUEUE_MESSAGES, QUEUE_AGE, WAITS_OPEN, WAITS_DUE, WAITS_DUE_OLDEST, DEAD_LETTERS_KEPT)


class BacklogCollector(Collector):
    """The scheduler's scrape-time gauges (see the module docstring)."""

    def __init__(self, repository: Repository, broker_url: str | None) -> None:
        self.repository = repository
        self.broker_url = broker_url

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily(SOURCE_UP, "Whether this scrape could read the source.", labels=["source"])
        if self.broker_url:
            try:
                yield from self._queues(self.broker_url)
                up.add_metric(["broker"], 1)
            except Exception as exc:
                log.warning("metrics: cannot read the broker: %s", exc)
                up.add_metric(["broker"], 0)
        try:
            yield from self._database()
            up.add_metric(["database"], 1)
        except Exception as exc:
            log.warning("metrics: cannot read the database: %s", exc)
            up.add_metric(["database"], 0)
        yield up

    def _queues(self, broker_url: str) -> Iterator[Any]:
        stats = queue_stats(broker_url)
        oldest = oldest_sent_at(broker_url)
        messages = GaugeMetricFamily(
            QUEUE_MESSAGES,
            "Messages of each queue: pending (waiting), active (delivered, running), scheduled (held until their ETA).",
            labels=["queue", "state"],
        )
        age = GaugeMetricFamily(
            QUEUE_AGE,
            "How long the oldest pending message of each queue has waited (0: none waits).",
            labels=["queue"],
        )
        now = time.time()
        for queue in QUEUES:
            for state, count in stats[queue].items():
                messages.add_metric([queue, state], count)
            sent = oldest[queue]
            age.add_metric([queue], max(0.0, now - sent) if sent is not None else 0.0)
        yield messages
        yield age

    def _database(self) -> Iterator[Any]:
        now = datetime.now(UTC)
        summary = WaitStore(self.repository.engine).summary(now)
        waits = GaugeMetricFamily(
            WAITS_OPEN,
            "Open waits of parked executions, by kind (message, callback task token, timer).",
            labels=["kind"],
        )
        due = GaugeMetricFamily(
            WAITS_DUE,
            "Open waits due by now and not fired yet (the scheduler's backlog).",
            labels=["kind"],
        )
        lag = GaugeMetricFamily(
            WAITS_DUE_OLDEST,
            "How long ago the oldest due wait not fired yet was due (0: none).",
            labels=["kind"],
        )
        for kind in WAIT_KINDS:
            count, overdue, oldest = summary.get(kind, (0, 0, None))
            waits.add_metric([kind], count)
            due.add_metric([kind], overdue)
            lag.add_metric([kind], max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
        yield waits
        yield due
        yield lag
        dead = GaugeMetricFamily(
            DEAD_LETTERS_KEPT, "Dead letters in the database, by queue.", labels=["queue"]
        )
        for queue, count in sorted(DeadLetters(self.repository.engine).count_by_queue().items()):
            dead.add_metric([queue], count)
        yield dead
