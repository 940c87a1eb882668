"""Traces from a real worker (SMQ_TRACING=on) exported with OTLP over HTTP to a collector this test
runs: the Celery task's span (OpenTelemetry's Celery instrumentation) is the parent of the execution
run's span, states and SQL statements (its SQLAlchemy instrumentation) are inside it, and the run that
resumes a parked execution, delivered by another task, links to the run that parked it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from smq import Repository
from smq.distributed.task_names import TASK_NAME
from tests.integration.distributed.harness import Db, Worker, run_smq, smq_env, wait_until

MACHINE = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": "o-7", "ResultPath": "$.order", "Next": "AwaitPayment"},
        "AwaitPayment": {
            "Type": "Message",
            "CorrelationKey": "payment",
            "CorrelationValuePath": "$.order",
            "ResultPath": "$.payment",
            "Next": "Call",
        },
        "Call": {"Type": "Task", "Resource": "whoami", "ResultPath": "$.who", "End": True},
    },
}


class Collector:
    """An OTLP/HTTP trace endpoint: every span it is sent, as (name, span) with ids as hex."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    service = next(
                        (
                            a.value.string_value
                            for a in resource.resource.attributes
                            if a.key == "service.name"
                        ),
                        None,
                    )
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            collector.spans.append(
                                {
                                    "name": span.name,
                                    "service": service,
                                    "trace": span.trace_id.hex(),
                                    "id": span.span_id.hex(),
                                    "parent": span.parent_span_id.hex(),
                                    "links": [
                                        (link.trace_id.hex(), link.span_id.hex()) for link in span.links
                                    ],
                                    "attributes": {a.key: _value(a.value) for a in span.attributes},
                                }
                            )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def named(self, prefix: str) -> list[dict[str, Any]]:
        return [span for span in self.spans if span["name"].startswith(prefix)]


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_a_worker_traces_runs_states_and_sql_inside_the_celery_task(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker], collector: Collector
) -> None:
    repository.put_definition("TRACE", MACHINE)
    env = smq_env(db.url, broker_url)
    worker = start_worker(
        "w1",
        {
            **env,
            "SMQ_TRACING": "on",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
        concurrency=1,
    )
    run_smq(["start", "TRACE", "--name", "t-1", "--input", "{}"], env)
    wait_until(
        lambda: db.count("TRACE", "WAITING") == 1, timeout=30, what="the execution to park", workers=[worker]
    )
    run_smq(["message", "send", "--key", "payment", "--value", "o-7", "--data", json.dumps({"paid": 3})], env)
    wait_until(
        lambda: db.count("TRACE", "SUCCEEDED") == 1, timeout=30, what="the execution to end", workers=[worker]
    )
    wait_until(
        lambda: len(collector.named("execution TRACE")) == 2 and len(collector.named("state ")) == 3,
        timeout=20,
        what="both runs' spans at the collector",
        diagnose=lambda: (
            f"{[(span['name'], span['id'], span['parent'], span['attributes']) for span in collector.spans if not span['name'].startswith(('SELECT', 'UPDATE', 'INSERT', 'connect'))]}"
        ),
        workers=[worker],
    )
    spans = {span["id"]: span for span in collector.spans}
    first, second = sorted(
        collector.named("execution TRACE"),
        key=lambda span: span["attributes"]["smq.execution.status"] != "WAITING",
    )
    assert (first["attributes"]["smq.execution.status"], second["attributes"]["smq.execution.status"]) == (
        "WAITING",
        "SUCCEEDED",
    )
    assert first["service"] == "smq-worker"
    for run in (first, second):
        task = spans[run["parent"]]  # the Celery task's span, from OpenTelemetry's Celery instrumentation
        assert task["name"] == f"run/{TASK_NAME}" and task["trace"] == run["trace"]
        assert run["attributes"]["smq.execution.name"] == "t-1"
    # The resumed run (another task, another trace) links to the run that parked the execution.
    assert second["links"] == [(first["trace"], first["id"])]
    states = {span["name"]: span for span in collector.named("state ")}
    assert set(states) == {"state Prepare", "state AwaitPayment", "state Call"}
    assert states["state Prepare"]["parent"] == first["id"]
    assert states["state AwaitPayment"]["parent"] == states["state Call"]["parent"] == second["id"]
    assert states["state Call"]["attributes"]["smq.state.type"] == "Task"
    # SQL statements are spans too, inside the runs (the checkpoints among them).
    sql = [
        span
        for span in collector.spans
        if "db.system" in span["attributes"] or "db.system.name" in span["attributes"]
    ]
    assert any(span["parent"] in (first["id"], second["id"]) for span in sql), [span["name"] for span in sql][
        :20
    ]
