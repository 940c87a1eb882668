"""The built-in AWS integrations as a HandlerProvider: asked for a resource only when no handler
registered by name answers it, so a handler of your own always wins."""

from __future__ import annotations

import threading
from typing import Any

from smq.engine.handlers import Handler
from smq.integrations.aws.catalog import (
    OPTIMIZED,
    builtin_gap,
    integration_path,
    is_builtin,
    is_lambda_function,
    sdk_resource,
)


class AwsIntegrations:
    """`registry.add_provider(AwsIntegrations())`. boto3 is imported, and clients made, on first need;
    `session`, `endpoint_url` and `config` replace boto3's defaults (its environment and files)."""

    def __init__(
        self,
        session: Any = None,
        *,
        default_region: str = "us-east-1",
        endpoint_url: str | None = None,
        config: Any = None,
    ) -> None:
        self._options: dict[str, Any] = {
            "session": session,
            "default_region": default_region,
            "endpoint_url": endpoint_url,
            "config": config,
        }
        self._lock = threading.Lock()
        self._handlers: dict[str, Handler | None] = {}
        self._clients: Any = None
        self._directory: Any = None

    def handler_for(self, resource: str) -> Handler | None:
        if not is_builtin(resource):
            return None
        with self._lock:
            if resource not in self._handlers:
                self._handlers[resource] = self._build(resource)
            return self._handlers[resource]

    def why_not(self, resource: str) -> str | None:
        sdk = sdk_resource(resource)
        if sdk is not None:
            from smq.integrations.aws.sdk import UnknownApi

            try:
                self.directory().api(sdk)
            except UnknownApi as exc:
                return str(exc)
            return None
        return builtin_gap(resource)

    def clients(self) -> Any:
        """The boto3 clients (smq.integrations.aws.clients.AwsClients) this provider calls with."""
        if self._clients is None:
            from smq.integrations.aws.clients import AwsClients

            self._clients = AwsClients(**self._options)
        return self._clients

    def directory(self) -> Any:
        """The aws-sdk services and APIs boto3 knows (smq.integrations.aws.sdk.ServiceDirectory)."""
        if self._directory is None:
            from smq.integrations.aws.sdk import ServiceDirectory

            self._directory = ServiceDirectory()
        return self._directory

    def _build(self, resource: str) -> Handler | None:
        from smq.integrations.aws import awslambda, eventbridge, optimized, sdk

        path = integration_path(resource)
        if path == "lambda:invoke":
            return awslambda.invoke_handler(self.clients())
        if path == "events:putEvents":
            return eventbridge.put_events_handler(self.clients())
        if path in OPTIMIZED:
            service, operation = OPTIMIZED[path]
            return optimized.optimized_handler(self.clients(), service, operation)
        if is_lambda_function(resource):
            return awslambda.function_handler(self.clients(), resource)
        found = sdk_resource(resource)
        if found is None:
            return None
        try:
            api = self.directory().api(found)
        except sdk.UnknownApi:
            return None
        return sdk.sdk_handler(api, self.clients())
