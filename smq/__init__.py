"""smq: Amazon States Language workflows on your own infrastructure.

The public API is what this module exports; everything else may change between releases.
"""

from smq.engine.cursor import Cursor, HistoryEntry, Step
from smq.engine.errors import DefinitionError, Problem, SmqError, StatesError, UnknownResourceError
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

__all__ = [
    "Cursor",
    "DefinitionError",
    "ExecutionResult",
    "HandlerRegistry",
    "HistoryEntry",
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
    "handler",
]

__version__ = "0.1.0"
