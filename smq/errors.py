"""Every error smq raises on purpose, in one place. All derive from `SmqError`, so `except SmqError`
catches what smq means to say and nothing else; each keeps the built-in base it had (`ValueError`,
`LookupError`) where callers may expect one.

Importing this module loads the persistence and queue layers; `import smq` does not (it exports
these names lazily).
"""

from __future__ import annotations

from smq.distributed.client import EnqueueError
from smq.distributed.payload import InvalidTaskPayload
from smq.distributed.queues import UnknownQueue
from smq.engine.errors import (
    DefinitionError,
    InfrastructureError,
    SmqError,
    StatesError,
    UnknownResourceError,
)
from smq.engine.handlers import TaskCancelled, TaskError
from smq.engine.templates import TemplateError
from smq.execution.control import NotAllowed
from smq.execution.recovery import PolicyError
from smq.execution.runner import ChainError, InvalidPayload, PayloadTooLarge
from smq.execution.transformers import UnknownTransformer
from smq.loading import HandlerImportError
from smq.repository.database import SchemaOutdated
from smq.repository.filters import FilterError
from smq.repository.paging import InvalidPageToken
from smq.repository.repository import CheckpointConflict, InvalidId, NotFound, StaleDefinition
from smq.repository.waits import TokenNotWaiting, UnknownToken
from smq.settings import SettingsError

__all__ = [
    "ChainError",
    "CheckpointConflict",
    "DefinitionError",
    "EnqueueError",
    "FilterError",
    "HandlerImportError",
    "InfrastructureError",
    "InvalidId",
    "InvalidPageToken",
    "InvalidPayload",
    "InvalidTaskPayload",
    "NotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PolicyError",
    "SchemaOutdated",
    "SettingsError",
    "SmqError",
    "StaleDefinition",
    "StatesError",
    "TaskCancelled",
    "TaskError",
    "TemplateError",
    "TokenNotWaiting",
    "UnknownQueue",
    "UnknownResourceError",
    "UnknownToken",
    "UnknownTransformer",
]
