"""smq: Amazon States Language workflows on your own infrastructure.

The public API is what this module exports; everything else may change between releases.
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from smq.distributed.client import Enqueued, QueueClient, enqueue_execution
    from smq.distributed.leader import QueuedStateMachine

# Distributed names load Celery on first use only, so `import smq` stays light for the engine.
_LAZY = {
    "Enqueued": "smq.distributed.client",
    "QueueClient": "smq.distributed.client",
    "enqueue_execution": "smq.distributed.client",
    "QueuedStateMachine": "smq.distributed.leader",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'smq' has no attribute {name!r}")


__all__ = [
    "Cursor",
    "DefinitionError",
    "Enqueued",
    "ExecutionResult",
    "HandlerRegistry",
    "HistoryEntry",
    "InfrastructureError",
    "QueueClient",
    "QueuedStateMachine",
    "Problem",
    "Runtime",
    "SmqError",
    "StateMachine",
    "StatesError",
    "Step",
    "TaskCancelled",
    "TaskContext",
    "TaskError",
    "UnknownResourceError",
    "VirtualClock",
    "default_registry",
    "enqueue_execution",
    "handler",
]

__version__ = "0.1.0"
