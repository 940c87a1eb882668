"""boto3 clients, one per service, made on first use with boto3's own configuration chain.

Credentials, region, retries and endpoints come from where boto3 reads them (environment, shared
config and credentials files, instance roles): `AWS_ENDPOINT_URL` points every service at LocalStack
or moto, `AWS_ENDPOINT_URL_<SERVICE>` (`AWS_ENDPOINT_URL_DYNAMODB`) one service. Without a region
anywhere, smq's own (`SMQ_AWS_REGION`, the region of its ARNs) is used.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.model import ServiceModel

# Where the response's headers are kept, as the server sent them (botocore lower-cases its own copy).
RAW_HEADERS = "SmqRawHeaders"


class AwsClients:
    """A client per service for this process (clients are thread-safe, making them is not)."""

    def __init__(
        self,
        session: boto3.session.Session | None = None,
        *,
        default_region: str = "us-east-1",
        endpoint_url: str | None = None,
        config: Config | None = None,
    ) -> None:
        self._session = session
        self._default_region = default_region
        self._endpoint_url = endpoint_url
        self._config = config
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._pid = os.getpid()

    def client(self, service: str) -> Any:
        """The boto3 client of `service` (its boto3 name: "dynamodb", "stepfunctions")."""
        with self._lock:
            if self._pid != os.getpid():  # a forked worker process: connections are not shared
                self._clients.clear()
                self._pid = os.getpid()
            client = self._clients.get(service)
            if client is None:
                client = self._make(service)
                self._clients[service] = client
            return client

    def service_model(self, service: str) -> ServiceModel:
        return self.client(service).meta.service_model

    def _make(self, service: str) -> Any:
        session = self._session or boto3.session.Session()
        self._session = session
        region = session.region_name or self._default_region
        options: dict[str, Any] = {"region_name": region, "config": self._config}
        if self._endpoint_url:
            options["endpoint_url"] = self._endpoint_url
        client = session.client(service, **options)
        client.meta.events.register("after-call", _keep_raw_headers)
        return client


def _keep_raw_headers(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
    """AWS's optimized integrations return the HTTP headers as received (`SdkHttpMetadata`)."""
    metadata = parsed.setdefault("ResponseMetadata", {})
    metadata[RAW_HEADERS] = list(http_response.headers.items())
