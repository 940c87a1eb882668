"""Prometheus metrics from real processes: two prefork workers (two pool processes each, summed by the
multiprocess mode) and `smq scheduler`, each scraped on its own port while a batch runs and after it.
The counters must agree with the database as `smq executions count` reads it: executions started and
finished by status, state visits by type, Task retries, parks and the timers that woke them, dead
letters; the scheduler's gauges show a queue no worker reads (depth and age of its oldest message)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from smq import Repository
from smq.distributed.task_names import TASK_NAME
from tests.integration.distributed.harness import (
    SMQ,
    Db,
    Worker,
    client_app,
    free_port,
    run_smq,
    smq_env,
    smq_here,
    wait_until,
)
from tests.integration.waiting.support import Scheduler

MACHINE_ID = "METRICS"
MACHINE = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Next": "Call"},
        # InfrastructureError on the first `fail` calls: the Celery task is retried from the checkpoint.
        "Call": {"Type": "Task", "Resource": "infra-first-calls", "ResultPath": "$.call", "Next": "Nap"},
        "Nap": {"Type": "Task", "Resource": "nap", "ResultPath": "$.nap", "Next": "Decide"},
        "Decide": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.reject", "BooleanEquals": True, "Next": "Reject"},
                {"Variable": "$.wait", "BooleanEquals": True, "Next": "Later"},
            ],
            "Default": "Done",
        },
        # Longer than SMQ_PARK_AFTER: parks on a durable timer, which the scheduler fires.
        "Later": {"Type": "Wait", "Seconds": 3, "Next": "Done"},
        "Reject": {"Type": "Fail", "Error": "Order.Rejected", "Cause": "rejected on purpose"},
        "Done": {"Type": "Succeed"},
    },
}
TOTAL, RETRIED, REJECTED, WAITING = 24, 3, 5, 4


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape of /metrics, parsed by prometheus-client: {(sample name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, found), value in samples.items() if sample == name and wanted <= set(found))


def summed(scrapes: list[dict], name: str, **labels: str) -> float:
    return sum(total(samples, name, **labels) for samples in scrapes)


def reachable(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


@pytest.fixture
def scheduler_process(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Scheduler]]:
    started: list[Scheduler] = []

    def start(env: dict[str, str]) -> Scheduler:
        process = Scheduler(env, tmp_path)
        started.append(process)
        process.start()
        process.wait_polling()
        return process

    yield start
    for process in started:
        print(process.log()[-3000:])
        process.stop()


def test_scrapes_of_workers_and_scheduler_match_the_database(
    db: Db,
    repository: Repository,
    broker_url: str,
    start_worker: Callable[..., Worker],
    scheduler_process: Callable[[dict[str, str]], Scheduler],
    tmp_path: Path,
) -> None:
    repository.put_definition(MACHINE_ID, MACHINE)
    # A short lease: a retried delivery taken by another pool process waits for the first one's lease to
    # run out (the process that raised the infrastructure error still holds it).
    base = smq_env(db.url, broker_url, SMQ_PARK_AFTER="1", SMQ_LEASE_SECONDS="3")
    ports = {"w1": free_port(), "w2": free_port(), "scheduler": free_port()}
    metrics = {"SMQ_METRICS": "on", "SMQ_METRICS_ADDRESS": "127.0.0.1"}
    workers = [
        # No worker reads `low`: what is published there stays, for the scheduler's queue gauges.
        start_worker(
            name,
            {**base, **metrics, "SMQ_METRICS_PORT": str(ports[name]), **extra},
            concurrency=2,
            queues="critical,default",
        )
        for name, extra in (("w1", {"SMQ_METRICS_DIR": str(tmp_path / "w1-metrics")}), ("w2", {}))
    ]
    scheduler = scheduler_process({**base, **metrics, "SMQ_METRICS_PORT": str(ports["scheduler"])})
    wait_until(
        lambda: all(reachable(port) for port in ports.values()), timeout=20, what="three metrics endpoints"
    )

    calls = tmp_path / "calls"
    inputs = tmp_path / "inputs.jsonl"
    with inputs.open("w") as lines:
        for index in range(TOTAL):
            item = {
                "calls": str(calls),
                "fail": 1 if index < RETRIED else 0,
                "ms": 150,
                "reject": RETRIED <= index < RETRIED + REJECTED,
                "wait": TOTAL - WAITING <= index,
            }
            lines.write(json.dumps(item) + "\n")
    run_smq(["start", MACHINE_ID, "--name", "on-low", "--queue", "low", "--input", "{}"], base)
    # A payload that is not an execution: rejected into the dead letters by whichever worker takes it.
    client_app(broker_url).send_task(TASK_NAME, args=[{"not": "a payload"}], queue="critical")
    # The batch is published while the endpoints are scraped, and runs on: its parked executions wait
    # 3 s for their timer after the others have ended.
    publisher = subprocess.Popen(
        [SMQ, "start", MACHINE_ID, "--inputs", str(inputs), "--name-prefix", "m-", "--queue", "default"],
        env=base,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker_ports = [ports["w1"], ports["w2"], ports["scheduler"]]
    scraped, midway = 0, 0
    deadline = time.monotonic() + 90
    while publisher.poll() is None or db.finished(MACHINE_ID) < TOTAL:
        scrapes = [scrape(port) for port in worker_ports]
        counts = db.status_counts(MACHINE_ID)  # read after the scrape: a counter counts a committed end
        for status in ("SUCCEEDED", "FAILED"):
            assert summed(scrapes, "smq_executions_finished_total", status=status) <= counts.get(status, 0)
        assert summed(scrapes, "smq_executions_started_total") <= sum(counts.values())
        ended = summed(scrapes, "smq_executions_finished_total")
        scraped += 1
        midway += 0 < ended < TOTAL
        assert time.monotonic() < deadline, db.describe(MACHINE_ID, broker_url)
        for worker in workers:
            assert worker.alive(), worker.tail()
        time.sleep(0.1)
    assert publisher.returncode == 0, publisher.stderr.read() if publisher.stderr else ""
    assert midway >= 1, f"no scrape saw the batch part done ({scraped} scrapes)"

    def settled() -> bool:
        scrapes = [scrape(port) for port in worker_ports]
        return summed(scrapes, "smq_executions_finished_total") == TOTAL

    wait_until(settled, timeout=10, what="the counters to catch up with the database", workers=workers)
    scrapes = [scrape(port) for port in worker_ports]
    worker_scrapes, scheduler_scrape = scrapes[:2], scrapes[2]

    # As `smq executions count` says, by status.
    for status, expected in (("SUCCEEDED", TOTAL - REJECTED), ("FAILED", REJECTED)):
        counted = smq_here(
            ["executions", "count", "--filter", f"state_machine_id={MACHINE_ID},status={status}"], base
        )
        assert int(counted.stdout) == expected
        assert (
            summed(scrapes, "smq_executions_finished_total", state_machine=MACHINE_ID, status=status)
            == expected
        )
        assert summed(worker_scrapes, "smq_execution_duration_seconds_count", status=status) == expected
    everything = smq_here(["executions", "count", "--filter", f"state_machine_id={MACHINE_ID}"], base)
    assert (
        summed(scrapes, "smq_executions_started_total", state_machine=MACHINE_ID)
        == int(everything.stdout)
        == TOTAL
    )
    # Both workers ran executions, each summing its two pool processes.
    assert all(total(samples, "smq_executions_started_total") > 0 for samples in worker_scrapes)

    # Every state visit recorded in the history was observed once, by type.
    visits = {
        row.state_type: int(row.n)
        for row in db.rows(
            "SELECT h.state_type, count(*) AS n FROM smq_history h JOIN smq_executions e ON e.id = h.execution_id "
            "WHERE e.state_machine_id = :m GROUP BY h.state_type",
            m=MACHINE_ID,
        )
    }
    assert visits["Wait"] == WAITING and visits["Fail"] == REJECTED
    for state_type, count in visits.items():
        assert summed(worker_scrapes, "smq_state_duration_seconds_count", state_type=state_type) == count, (
            state_type
        )
    assert (
        summed(worker_scrapes, "smq_state_errors_total", state_type="Fail", error="Order.Rejected")
        == REJECTED
    )
    assert summed(worker_scrapes, "smq_task_retries_total", error="InfrastructureError") == RETRIED

    # Parked on a timer, woken by the scheduler, which says how late it fired them.
    assert summed(worker_scrapes, "smq_executions_parked_total", waiting_for="timer") == WAITING
    assert total(scheduler_scrape, "smq_timers_fired_total", resolution="timer") == WAITING
    assert total(scheduler_scrape, "smq_timer_lag_seconds_count") == WAITING
    assert total(scheduler_scrape, "smq_waits_open", kind="timer") == 0

    dead = db.dead_letters()
    assert [row.reason for row in dead] == ["invalid_payload"]
    assert summed(worker_scrapes, "smq_dead_letters_total", reason="invalid_payload", queue="critical") == 1
    assert total(scheduler_scrape, "smq_dead_letters_kept", queue="critical") == 1

    # The queue nobody reads: one message, waiting since it was published.
    assert total(scheduler_scrape, "smq_queue_messages", queue="low", state="pending") == 1
    assert total(scheduler_scrape, "smq_queue_oldest_message_age_seconds", queue="low") > 0
    assert total(scheduler_scrape, "smq_queue_messages", queue="default", state="pending") == 0
    assert total(scheduler_scrape, "smq_metrics_source_up", source="broker") == 1
    assert total(scheduler_scrape, "smq_metrics_source_up", source="database") == 1
    assert scheduler.alive()


def test_a_leader_counts_its_sources_by_outcome_chunk_by_chunk(
    repository: Repository, broker_url: str
) -> None:
    from prometheus_client import CollectorRegistry

    from smq import QueueClient, StartRequest, start_execution
    from smq.distributed.leader import fan_out
    from smq.observability.metrics import LeaderProgress, Metrics
    from smq.repository.filters import parse_filter

    repository.put_definition("SRC", {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    repository.put_definition("TGT", {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": True}}})
    for index in range(7):
        start_execution(repository, StartRequest("SRC", {"n": index}, name=f"s-{index}"))
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    client = QueueClient(repository, app=client_app(broker_url))
    sources = parse_filter("state_machine_id=SRC,status=SUCCEEDED")
    chunks: list[float | None] = []

    def on_chunk(done: int, summary: object) -> None:
        progress(done, summary)
        chunks.append(
            registry.get_sample_value("smq_leader_sources_total", {"target": "TGT", "outcome": "enqueued"})
        )

    progress = LeaderProgress(metrics, "TGT", 7)
    first = fan_out(client, "TGT", sources, chunk_size=3, on_chunk=on_chunk)
    assert first.enqueued == 7 and chunks == [3.0, 6.0, 7.0]  # counted as each chunk is published
    progress = LeaderProgress(metrics, "TGT", 7)
    again = fan_out(client, "TGT", sources, chunk_size=3, on_chunk=on_chunk)
    assert again.skipped == 7
    value = registry.get_sample_value
    assert value("smq_leader_sources_total", {"target": "TGT", "outcome": "enqueued"}) == 7
    assert value("smq_leader_sources_total", {"target": "TGT", "outcome": "skipped"}) == 7
    assert value("smq_leader_sources_total", {"target": "TGT", "outcome": "failed"}) is None
    assert value("smq_leader_sources_matched", {"target": "TGT"}) == 7
    assert time.time() - (value("smq_leader_last_progress_time_seconds", {"target": "TGT"}) or 0) < 60
