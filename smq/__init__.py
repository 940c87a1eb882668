"""smq: Amazon States Language workflows on your own infrastructure.

The public API is what this module exports (pinned by tests/unit/test_public_api.py); everything else
may change between releases. Every name loads on first use, so
`import smq` (and `smq --help`) stays light: the engine, persistence and queue layers load when used.
"""

from typing import TYPE_CHECKING, Any

from smq.version import __version__ as __version__

if TYPE_CHECKING:
    from smq.distributed.client import Enqueued, QueueClient, enqueue_execution
    from smq.distributed.leader import QueuedStateMachine
    from smq.engine.cursor import Cursor, HistoryEntry, Step
    from smq.engine.errors import (
        DefinitionError,
        InfrastructureError,
        Problem,
        SmqError,
        StatesError,
        UnknownResourceError,
    )
    from smq.engine.handlers import (
        HandlerRegistry,
        TaskCancelled,
        TaskContext,
        TaskError,
        default_registry,
        handler,
    )
    from smq.engine.machine import ExecutionResult, StateMachine
    from smq.engine.runtime import Runtime, VirtualClock
    from smq.engine.status import EntryStatus, Status
    from smq.engine.sync import Failed, Running, Succeeded, SyncJob
    from smq.errors import EnqueueError, NotAllowed, NotFound, SettingsError
    from smq.execution.operations import Operations
    from smq.execution.runner import StartRequest, resume_execution, start_execution
    from smq.repository.filters import ExecutionFilter
    from smq.repository.paging import ExecutionPage
    from smq.repository.repository import ExecutionRecord, Repository
    from smq.settings import Settings

# Name -> module, loaded on first use (so `smq --help` and `import smq` load nothing they do not show).
_LAZY = {
    # defining and running machines in memory
    "StateMachine": "smq.engine.machine",
    "ExecutionResult": "smq.engine.machine",
    "Runtime": "smq.engine.runtime",
    "VirtualClock": "smq.engine.runtime",
    "Cursor": "smq.engine.cursor",
    "Step": "smq.engine.cursor",
    "HistoryEntry": "smq.engine.cursor",
    "Status": "smq.engine.status",
    "EntryStatus": "smq.engine.status",
    "HandlerRegistry": "smq.engine.handlers",
    "TaskCancelled": "smq.engine.handlers",
    "TaskContext": "smq.engine.handlers",
    "TaskError": "smq.engine.handlers",
    "default_registry": "smq.engine.handlers",
    "handler": "smq.engine.handlers",
    "SyncJob": "smq.engine.sync",
    "Running": "smq.engine.sync",
    "Succeeded": "smq.engine.sync",
    "Failed": "smq.engine.sync",
    "DefinitionError": "smq.engine.errors",
    "InfrastructureError": "smq.engine.errors",
    "Problem": "smq.engine.errors",
    "SmqError": "smq.engine.errors",
    "StatesError": "smq.engine.errors",
    "UnknownResourceError": "smq.engine.errors",
    # persistence: the repository, starting and resuming recorded executions, operator actions
    "Repository": "smq.repository.repository",
    "ExecutionRecord": "smq.repository.repository",
    "ExecutionFilter": "smq.repository.filters",
    "ExecutionPage": "smq.repository.paging",
    "StartRequest": "smq.execution.runner",
    "start_execution": "smq.execution.runner",
    "resume_execution": "smq.execution.runner",
    "Operations": "smq.execution.operations",
    "Settings": "smq.settings",
    # queues (Celery)
    "Enqueued": "smq.distributed.client",
    "QueueClient": "smq.distributed.client",
    "enqueue_execution": "smq.distributed.client",
    "QueuedStateMachine": "smq.distributed.leader",
    # errors of those layers (all of them: smq.errors)
    "EnqueueError": "smq.errors",
    "NotAllowed": "smq.errors",
    "NotFound": "smq.errors",
    "SettingsError": "smq.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'smq' has no attribute {name!r}")


__all__ = [
    # defining and running machines in memory
    "StateMachine",
    "ExecutionResult",
    "Runtime",
    "VirtualClock",
    "Cursor",
    "Step",
    "HistoryEntry",
    "Status",
    "EntryStatus",
    # Task handlers
    "HandlerRegistry",
    "TaskContext",
    "default_registry",
    "handler",
    # `.sync` jobs (start, then checked until they end)
    "SyncJob",
    "Running",
    "Succeeded",
    "Failed",
    # persistence
    "Repository",
    "ExecutionRecord",
    "ExecutionFilter",
    "ExecutionPage",
    "StartRequest",
    "start_execution",
    "resume_execution",
    "Operations",
    "Settings",
    # queues
    "QueueClient",
    "QueuedStateMachine",
    "Enqueued",
    "enqueue_execution",
    # errors (every one: smq.errors)
    "SmqError",
    "DefinitionError",
    "Problem",
    "StatesError",
    "TaskError",
    "TaskCancelled",
    "InfrastructureError",
    "UnknownResourceError",
    "NotFound",
    "NotAllowed",
    "EnqueueError",
    "SettingsError",
]
