"""Per-call cost of smq's built-in AWS integrations against a bare boto3 call to the same server.

A `moto_server` subprocess on a free loopback port stands in for AWS (real HTTP; one process, so both
sides pay the same server). In this process, three ways to put one DynamoDB item, in interleaved rounds
so drift hits all alike:

- **bare**: `client.put_item(**request)`, a boto3 client made once: the baseline;
- **handler**: the built-in handler smq resolves for the resource, called directly (Parameters to the
  request by botocore's model, the call, the response and AWS's metadata back as JSON): the
  integration's own cost;
- **task**: a one-Task state machine run (`StateMachine.run`): what a workflow pays per Task, engine
  included (input and result cross as JSON, the result path, the history entry).

Both resources of PutItem are measured: the optimized `arn:aws:states:::dynamodb:putItem` (with
`SdkHttpMetadata`) and the generic `arn:aws:states:::aws-sdk:dynamodb:putItem`.

Usage::

    python bench/aws_integrations.py              # 500 calls of each, table on stdout
    python bench/aws_integrations.py --calls 2000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.processes import spawn_tracked, stop_processes
from harness.progress import log
from harness.servers import free_port

TABLE = "bench-orders"
RESOURCES = ("arn:aws:states:::dynamodb:putItem", "arn:aws:states:::aws-sdk:dynamodb:putItem")
ROUNDS = 20  # each way runs calls/ROUNDS calls per round, the three ways taking turns


def start_moto(workdir: Path) -> tuple[str, Any]:
    command = shutil.which("moto_server")
    if command is None:
        sys.exit("moto_server not found: pip install 'moto[server]'")
    port = free_port()
    process = spawn_tracked(
        [command, "-H", "127.0.0.1", "-p", str(port)], dict(os.environ), workdir / "moto.log"
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1).read()
            return url, process
        except OSError:
            time.sleep(0.1)
    sys.exit(f"moto_server did not answer on {url}: see {workdir / 'moto.log'}")


def per_call_ms(
    call: Callable[[int], Any], calls: int, wall: list[float], cpu: list[float], offset: int
) -> None:
    """Wall time per call, and this process's CPU time per call (the server's excluded: what the
    client side, boto3 and smq, costs)."""
    started, started_cpu = time.perf_counter(), time.process_time()
    for i in range(calls):
        call(offset + i)
    wall.append((time.perf_counter() - started) * 1000 / calls)
    cpu.append((time.process_time() - started_cpu) * 1000 / calls)


def measure(url: str, calls: int) -> list[dict[str, Any]]:
    import boto3

    from smq import HandlerRegistry, StateMachine, TaskContext
    from smq.integrations.aws import AwsIntegrations

    session = boto3.session.Session(
        aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    )
    client = session.client("dynamodb", endpoint_url=url)
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    registry = HandlerRegistry()
    registry.add_provider(AwsIntegrations(session, endpoint_url=url))
    ctx = TaskContext(
        execution_id="bench", execution_name="bench", state_name="Put", attempt=1, deadline=None
    )

    def request(i: int) -> dict[str, Any]:
        return {
            "TableName": TABLE,
            "Item": {"pk": {"S": f"o-{i}"}, "total": {"N": str(i)}, "state": {"S": "NEW"}},
        }

    rows = []
    for resource in RESOURCES:
        handler = registry.resolve(resource)
        machine = StateMachine.from_definition(
            {
                "StartAt": "Put",
                "States": {
                    "Put": {
                        "Type": "Task",
                        "Resource": resource,
                        "Parameters": {
                            "TableName": TABLE,
                            "Item": {
                                "pk": {"S.$": "$.pk"},
                                "total": {"N.$": "$.total"},
                                "state": {"S": "NEW"},
                            },
                        },
                        "End": True,
                    }
                },
            }
        )
        ways: dict[str, Callable[[int], Any]] = {
            "bare": lambda i: client.put_item(**request(i)),
            "handler": lambda i, handler=handler: handler(request(i), ctx),
            "task": lambda i, machine=machine: machine.run(
                {"pk": f"o-{i}", "total": str(i)}, handlers=registry
            ),
        }
        for way in ways.values():  # warm-up: clients made, models loaded, connections open
            for i in range(20):
                way(i)
        wall: dict[str, list[float]] = {name: [] for name in ways}
        cpu: dict[str, list[float]] = {name: [] for name in ways}
        per_round = max(1, calls // ROUNDS)
        for round_number in range(ROUNDS):
            for name, way in ways.items():
                per_call_ms(way, per_round, wall[name], cpu[name], round_number * per_round)
        done = machine.run({"pk": "check", "total": "1"}, handlers=registry)
        assert done.status == "SUCCEEDED", (done.error, done.cause)
        assert client.get_item(TableName=TABLE, Key={"pk": {"S": "check"}})["Item"]["total"] == {"N": "1"}
        row: dict[str, Any] = {"resource": resource, "calls": per_round * ROUNDS}
        for kind, samples in (("wall", wall), ("cpu", cpu)):
            medians = {name: statistics.median(values) for name, values in samples.items()}
            for name in ways:
                row[f"{kind}_{name}_ms"] = round(medians[name], 3)
            row[f"{kind}_handler_ratio"] = round(medians["handler"] / medians["bare"], 3)
            row[f"{kind}_task_ratio"] = round(medians["task"] / medians["bare"], 3)
        rows.append(row)
        log(f"{resource}: {rows[-1]}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="calls of each way per resource (default 500)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="smq-bench-aws-"))
    url, server = start_moto(workdir)
    try:
        rows = measure(url, args.calls)
    finally:
        stop_processes([server])
    if args.json:
        print(json.dumps({"python": platform.python_version(), "rows": rows}, indent=2))
        return
    print(
        f"ms per call, median of {ROUNDS} rounds (wall: the call as a workflow waits for it; cpu: this "
        f"process only, the server excluded); Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}"
    )
    header = f"{'resource':<42} {'':>4} {'bare':>7} {'handler':>8} {'ratio':>6} {'task':>7} {'ratio':>6}"
    print(header)
    for row in rows:
        for kind in ("wall", "cpu"):
            print(
                f"{row['resource'] if kind == 'wall' else '':<42} {kind:>4} {row[f'{kind}_bare_ms']:>7.3f} "
                f"{row[f'{kind}_handler_ms']:>8.3f} {row[f'{kind}_handler_ratio']:>6.2f} "
                f"{row[f'{kind}_task_ms']:>7.3f} {row[f'{kind}_task_ratio']:>6.2f}"
            )


if __name__ == "__main__":
    main()
