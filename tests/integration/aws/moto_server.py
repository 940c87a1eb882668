"""moto's server for the built-in AWS integrations' tests: one real HTTP server for the session (moto's
`ThreadedMotoServer` on a free loopback port; the `moto` fixture of tests/integration/conftest.py),
boto3 talking to it over HTTP. Nothing of boto3 is mocked in-process. Without moto's server
(`pip install 'moto[server]'`, in the test extra) the tests skip, and fail under CI.

Every test makes its own tables, queues, topics, buckets and functions, named uniquely.
"""

from __future__ import annotations

import json
import logging
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from smq import ExecutionResult, HandlerRegistry, StateMachine
from tests.integration.distributed.harness import require_server

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass
class Moto:
    """moto's server and boto3 clients for the test's own setup and checks."""

    url: str
    session: Any  # boto3.session.Session with test credentials

    def environment(self) -> dict[str, str]:
        """What a process needs to reach this server with boto3's own settings, and nothing else."""
        return {
            **CREDENTIALS,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_CONFIG_FILE": "/dev/null/no-aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null/no-aws-credentials",
        }

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.url)

    def registry(self, **options: Any) -> HandlerRegistry:
        """A registry with nothing but the built-in integrations, pointed at this server."""
        from smq.integrations.aws import AwsIntegrations

        registry = HandlerRegistry()
        registry.add_provider(AwsIntegrations(self.session, endpoint_url=self.url, **options))
        return registry

    def table(self, prefix: str = "orders", key: str = "pk") -> str:
        """A new DynamoDB table keyed by one string attribute; its name."""
        name = unique(prefix)
        self.client("dynamodb").create_table(
            TableName=name,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        return name

    def moto_api(self, path: str, body: dict[str, Any]) -> Any:
        """moto's own control API (configuration, queued Lambda results)."""
        request = urllib.request.Request(
            f"{self.url}/moto-api/{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()


@contextmanager
def moto_server() -> Iterator[Moto]:
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        require_server("moto's server and boto3 (the test extra)", str(exc))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    session = boto3.session.Session(
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    try:
        yield Moto(f"http://127.0.0.1:{port}", session)
    finally:
        server.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def one_task(resource: str, **fields: Any) -> StateMachine:
    """A machine of one Task state `T`, ending there unless `fields` say otherwise."""
    state = {"Type": "Task", "Resource": resource, **fields}
    if "Next" not in state:
        state["End"] = True
    return StateMachine.from_definition({"StartAt": "T", "States": {"T": state}})


def run(
    machine: StateMachine | dict[str, Any], registry: HandlerRegistry, input: Any = None
) -> ExecutionResult:
    sm = machine if isinstance(machine, StateMachine) else StateMachine.from_definition(machine)
    return sm.run({} if input is None else input, handlers=registry)


def assert_sdk_metadata(result: dict[str, Any]) -> None:
    """AWS's SdkHttpMetadata/SdkResponseMetadata, filled from the real HTTP response."""
    http = result["SdkHttpMetadata"]
    assert http["HttpStatusCode"] == 200
    assert set(http) == {"AllHttpHeaders", "HttpHeaders", "HttpStatusCode"}
    lowered = {name.lower(): value for name, value in http["HttpHeaders"].items()}
    assert result["SdkResponseMetadata"]["RequestId"] == lowered["x-amzn-requestid"]
    assert all(isinstance(values, list) and values for values in http["AllHttpHeaders"].values())
    assert list(http["HttpHeaders"]) == sorted(http["HttpHeaders"], key=str.lower)
    assert list(result) == sorted(result)  # AWS gives these results with their keys sorted
