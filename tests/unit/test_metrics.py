"""smq.observability.metrics on a registry of its own: what each hook counts, with bounded labels;
the settings that switch metrics and tracing; the observers' composition; a port that is taken."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from smq import ExecutionRecord, HistoryEntry, Settings, SettingsError, Step
from smq.execution.observer import NOOP, Observer, Observers, combine
from smq.execution.recovery import Recovered
from smq.observability.exposition import process_metrics, serve
from smq.observability.metrics import MAX_ERROR_NAMES, OTHER, BoundedNames, Metrics, wait_kind
from smq.repository.waits import Woken

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def record(
    status: str, *, machine: str = "orders", duration_ms: int | None = None, cursor: Any = None
) -> ExecutionRecord:
    return ExecutionRecord(
        execution_id="e-1",
        name="n-1",
        state_machine_id=machine,
        version=1,
        status=status,
        input={},
        output=None,
        error=None,
        cause=None,
        current_state="A",
        cursor=cursor,
        history_length=0,
        start_time=NOW,
        stop_time=None,
        updated_at=NOW,
        duration_ms=duration_ms,
        source_execution_id=None,
        source_state_name=None,
        transformer=None,
    )


def entry(state_type: str, status: str, error: str | None = None, seconds: float = 0.25) -> HistoryEntry:
    return HistoryEntry("S", state_type, status, {}, error=error, entered_at=100.0, exited_at=100.0 + seconds)


@pytest.fixture
def metrics() -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry), registry


def test_runs_count_starts_states_and_ends_by_state_machine_and_status(
    metrics: tuple[Metrics, CollectorRegistry],
) -> None:
    observer, registry = metrics
    value = registry.get_sample_value
    observer.started(record("RUNNING"))
    observer.step(
        record("RUNNING"),
        Step(
            [
                entry("Task", "RETRIED", "Payment.Declined"),
                entry("Task", "CAUGHT", "States.Timeout"),
                entry("Pass", "SUCCEEDED"),
            ]
        ),
    )
    observer.ended(record("FAILED", duration_ms=1500))
    observer.ended(record("WAITING", cursor={"pending": {"kind": "callback"}}), "a callback (task token)")
    assert value("smq_executions_started_total", {"state_machine": "orders"}) == 1
    assert value("smq_executions_finished_total", {"state_machine": "orders", "status": "FAILED"}) == 1
    assert value("smq_execution_duration_seconds_sum", {"state_machine": "orders", "status": "FAILED"}) == 1.5
    assert value("smq_executions_parked_total", {"state_machine": "orders", "waiting_for": "callback"}) == 1
    task = {"state_machine": "orders", "state_type": "Task"}
    assert value("smq_state_duration_seconds_count", task) == 2
    assert value("smq_state_duration_seconds_bucket", {**task, "le": "0.25"}) == 2
    assert value("smq_state_duration_seconds_bucket", {**task, "le": "0.1"}) == 0
    assert value("smq_state_retries_total", {**task, "error": "Payment.Declined"}) == 1
    assert value("smq_state_errors_total", {**task, "error": "States.Timeout"}) == 1
    assert value("smq_state_duration_seconds_count", {"state_machine": "orders", "state_type": "Pass"}) == 1


def test_scheduler_and_worker_hooks(metrics: tuple[Metrics, CollectorRegistry]) -> None:
    observer, registry = metrics
    value = registry.get_sample_value
    woken = [
        Woken("e-1", "orders", "n-1", "default", "timer", due_at=NOW - timedelta(seconds=2)),
        Woken("e-2", "orders", "n-2", "default", "timeout", due_at=NOW),
        Woken("e-3", "orders", "n-3", "default", "message"),  # answered, not due: no lag
    ]
    observer.timers_fired(woken, NOW)
    assert value("smq_timers_fired_total", {"resolution": "timer"}) == 1
    assert value("smq_timer_lag_seconds_count", {}) == 2 and value("smq_timer_lag_seconds_sum", {}) == 2
    observer.recovered(
        [
            Recovered("e-1", "orders", "n-1", "A", action, 1)
            for action in ("resume", "requeue", "fail", "exhausted")
        ]
    )
    assert value("smq_leases_taken_over_total", {"action": "resume"}) == 1
    observer.taken_over(record("RUNNING"), "vm:4026531836:4242")
    assert value("smq_leases_taken_over_total", {"action": "dead_process"}) == 1
    # An execution a recovery failed has finished, FAILED.
    assert value("smq_executions_finished_total", {"state_machine": "orders", "status": "FAILED"}) == 2
    observer.dead_lettered("retries_exhausted", "critical", "orders")
    observer.dead_lettered("unknown_task", "some-exchange-a-bad-message-named", None)
    assert value("smq_dead_letters_total", {"reason": "retries_exhausted", "queue": "critical"}) == 1
    assert value("smq_dead_letters_total", {"reason": "unknown_task", "queue": OTHER}) == 1
    assert value("smq_executions_finished_total", {"state_machine": "orders", "status": "FAILED"}) == 3
    observer.task_retried(ConnectionError("down"))
    assert value("smq_task_retries_total", {"error": "ConnectionError"}) == 1


def test_error_names_are_bounded_but_aws_names_always_kept() -> None:
    names = BoundedNames(limit=3)
    assert [names(f"E{i}") for i in range(5)] == ["E0", "E1", "E2", OTHER, OTHER]
    assert names("E1") == "E1" and names("States.TaskFailed") == "States.TaskFailed"
    assert names(None) == "none" and len(names("x" * 500)) <= 100
    assert MAX_ERROR_NAMES == BoundedNames().limit


def test_what_a_parked_execution_waits_for_is_one_of_four_labels() -> None:
    assert wait_kind({"pending": {"kind": "message"}}) == "message"
    assert wait_kind({"pending": {"kind": "fanout"}, "not_before": 1.0}) == "branches"
    assert wait_kind({"pending": None, "not_before": 5.0}) == "timer"
    assert wait_kind(None) == "timer"


def test_observers_combine_and_noop_is_left_out() -> None:
    seen: list[str] = []

    class Recording(Observer):
        def __init__(self, name: str) -> None:
            self.name = name

        def started(self, record: ExecutionRecord) -> None:
            seen.append(self.name)

    one = Recording("a")
    assert combine(None, NOOP) is NOOP and combine(one, None) is one
    both = combine(one, Recording("b"))
    assert isinstance(both, Observers)
    both.started(record("RUNNING"))
    with both.run(record("RUNNING")):
        pass
    assert seen == ["a", "b"]


def test_settings_switch_metrics_and_tracing_and_name_a_bad_value() -> None:
    default = Settings.from_env({})
    assert (default.metrics, default.metrics_port, default.metrics_dir, default.tracing) == (
        True,
        9191,
        None,
        False,
    )
    custom = Settings.from_env(
        {"SMQ_METRICS": "off", "SMQ_METRICS_PORT": "9300", "SMQ_METRICS_DIR": "/tmp/m", "SMQ_TRACING": "on"}
    )
    assert (custom.metrics, custom.metrics_port, custom.metrics_dir, custom.tracing) == (
        False,
        9300,
        "/tmp/m",
        True,
    )
    with pytest.raises(SettingsError, match="SMQ_METRICS_PORT"):
        Settings.from_env({"SMQ_METRICS_PORT": "70000"})
    with pytest.raises(SettingsError, match="SMQ_METRICS must be on or off"):
        Settings.from_env({"SMQ_METRICS": "maybe"})


def test_a_taken_port_costs_a_warning_not_the_process(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(metrics_port=port, metrics_address="127.0.0.1")
        with caplog.at_level(logging.WARNING, logger="smq.metrics"):
            assert serve(settings, CollectorRegistry(), "worker") is None
    assert f"metrics not served on 127.0.0.1:{port}" in caplog.text and "SMQ_METRICS_PORT" in caplog.text
    with process_metrics(Settings(metrics=False), "leader") as off:
        assert off is None
