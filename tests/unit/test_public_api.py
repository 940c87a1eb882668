"""The public API is pinned: a name added to or dropped from `smq` (or `smq.errors`) is a decision this
test makes visible, as temporalio's export tests do."""

from __future__ import annotations

import subprocess
import sys

import smq
import smq.errors

PUBLIC = {
    "StateMachine", "ExecutionResult", "Runtime", "VirtualClock", "Cursor", "Step", "HistoryEntry",
    "Status", "EntryStatus",
    "HandlerRegistry", "TaskContext", "default_registry", "handler",
    "SyncJob", "Running", "Succeeded", "Failed",
    "Repository", "ExecutionRecord", "ExecutionFilter", "ExecutionPage", "StartRequest", "start_execution", "resume_execution", "Operations",
    "Settings",
    "QueueClient", "QueuedStateMachine", "Enqueued", "enqueue_execution",
    "SmqError", "DefinitionError", "Problem", "StatesError", "TaskError", "TaskCancelled",
    "InfrastructureError", "UnknownResourceError", "NotFound", "NotAllowed", "EnqueueError", "SettingsError",
}  # fmt: skip


def test_smq_exports_exactly_the_public_names_and_each_resolves() -> None:
    assert set(smq.__all__) == PUBLIC
    assert len(smq.__all__) == len(PUBLIC)  # no name listed twice
    for name in smq.__all__:
        assert getattr(smq, name) is not None, name


def test_every_public_error_derives_from_smq_error() -> None:
    for name in smq.errors.__all__:
        error = getattr(smq.errors, name)
        assert isinstance(error, type) and issubclass(error, smq.SmqError), name
    exported_errors = {
        name for name in smq.__all__ if name.endswith("Error") or name in ("NotFound", "NotAllowed")
    }
    assert exported_errors <= set(smq.errors.__all__) | {"TaskCancelled"}


def test_importing_smq_loads_neither_the_database_nor_the_queue_layers() -> None:
    code = "import sys, smq; print(sorted(m for m in ('sqlalchemy', 'celery', 'redis') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
