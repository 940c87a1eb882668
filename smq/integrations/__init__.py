"""Built-in handlers for service integrations, installed into a HandlerRegistry at the edges (CLI,
worker boot) by the settings: they serve only what no handler registered by name answers.

The engine never imports these: it knows providers only as `smq.engine.handlers.HandlerProvider`.
"""

from __future__ import annotations

import importlib.util

from smq.engine.handlers import Handler, HandlerRegistry, strip_wait_for_token
from smq.engine.model import Machine
from smq.integrations.aws import AwsIntegrations
from smq.integrations.aws.catalog import INSTALL_HINT, builtin_gap, is_builtin, is_service_integration
from smq.settings import Settings, SettingsError


class Unavailable:
    """Serves nothing; says why the built-in AWS integrations did not serve a resource they would."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def handler_for(self, resource: str) -> Handler | None:
        return None

    def why_not(self, resource: str) -> str | None:
        return self.reason if is_builtin(resource) else builtin_gap(resource)


def boto3_installed() -> bool:
    return importlib.util.find_spec("boto3") is not None


def install_integrations(registry: HandlerRegistry, settings: Settings) -> str:
    """Add the built-in AWS integrations to `registry` as SMQ_AWS_INTEGRATIONS says (once), and say
    what was done, for the worker's start line."""
    if any(isinstance(provider, (AwsIntegrations, Unavailable)) for provider in registry.providers):
        return "aws integrations: installed already"
    mode = settings.aws_integrations
    if mode == "off":
        registry.add_provider(
            Unavailable("smq's built-in AWS integrations are off (SMQ_AWS_INTEGRATIONS=off)")
        )
        return "aws integrations: off"
    if boto3_installed():
        registry.add_provider(AwsIntegrations(default_region=settings.aws_identity.region))
        return "aws integrations: on"
    if mode == "on":
        raise SettingsError(f"SMQ_AWS_INTEGRATIONS=on needs boto3: {INSTALL_HINT}")
    registry.add_provider(Unavailable(f"smq's built-in AWS integrations serve it: {INSTALL_HINT}"))
    return f"aws integrations: not installed ({INSTALL_HINT})"


def resource_notes(machine: Machine, registry: HandlerRegistry) -> list[str]:
    """For `smq validate`: each AWS service integration (`arn:aws:states:::`) of the machine that the
    registry's built-ins do not serve, and why (an extra to install, a switch that is off, no such
    integration or API). Plain names and Lambda function ARNs are the user's handlers: not listed."""
    notes = []
    for state_name, task in machine.resources():
        base = strip_wait_for_token(task.resource)
        if not is_service_integration(base) or task.nested is not None:
            continue  # nested executions (states:startExecution) are smq's own
        providers = registry.providers
        if any(provider.handler_for(base) is not None for provider in providers):
            continue
        reasons = [reason for provider in providers if (reason := provider.why_not(base))]
        reason = "; ".join(dict.fromkeys(reasons)) or builtin_gap(base) or "no built-in integration serves it"
        if task.sync:
            reason += " (a .sync resource: a smq.SyncJob, which starts the job and checks on it)"
        notes.append(f"States.{state_name}.Resource: {base!r}: {reason}")
    return notes
