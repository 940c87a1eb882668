"""ASL error names and the exceptions the engine raises.

Two families: `DefinitionError` for a definition rejected before it runs (every problem listed, each
naming the state and field), and `StatesError` for an ASL error raised while running, which Retry and
Catch match by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
RUNTIME = "States.Runtime"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
BRANCH_FAILED = "States.BranchFailed"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
EXCEED_TOLERATED_FAILURE_THRESHOLD = "States.ExceedToleratedFailureThreshold"
ITEM_READER_FAILED = "States.ItemReaderFailed"
RESULT_WRITER_FAILED = "States.ResultWriterFailed"
PERMISSIONS = "States.Permissions"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"

PREDEFINED_ERRORS = frozenset(
    {
        ALL,
        TASK_FAILED,
        TIMEOUT,
        HEARTBEAT_TIMEOUT,
        RUNTIME,
        RESULT_PATH_MATCH_FAILURE,
        PARAMETER_PATH_FAILURE,
        INTRINSIC_FAILURE,
        BRANCH_FAILED,
        NO_CHOICE_MATCHED,
        EXCEED_TOLERATED_FAILURE_THRESHOLD,
        ITEM_READER_FAILED,
        RESULT_WRITER_FAILED,
        PERMISSIONS,
        DATA_LIMIT_EXCEEDED,
        QUERY_EVALUATION_ERROR,
    }
)

# Errors that no retrier or catcher can intercept, whatever it lists (AWS: terminal for the execution).
UNCATCHABLE = frozenset({RUNTIME, DATA_LIMIT_EXCEEDED})


class SmqError(Exception):
    """Base class of every error smq raises on purpose."""


class InfrastructureError(SmqError):
    """Something outside the workflow is down (a database, a service): not an ASL error.

    A handler raises it so that the execution is not failed: on a worker the task is retried from the
    execution's last checkpoint (and lands in the dead letters when retries run out); in-process, it
    propagates to the caller with the execution left RUNNING at its last checkpoint.
    """


# Exception types a handler may raise that pass through the engine untouched (never become ASL
# errors), unless a run says otherwise (`Runtime.pass_through`; the Celery task adds its soft limit).
PASS_THROUGH: tuple[type[BaseException], ...] = (InfrastructureError,)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition: where (`States.X.Field`) and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class DefinitionError(SmqError):
    """A definition that cannot run. Carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid state machine definition ({len(self.problems)} problem(s)):\n{lines}")


class StatesError(SmqError):
    """An ASL error raised while a state runs; Retry/Catch match on `error`."""

    def __init__(self, error: str | None, cause: str | None = None):
        # error is None only for a Fail state that names no error (AWS reports none either)
        self.error = error
        self.cause = cause
        super().__init__(f"{error}: {cause}" if cause else str(error))


class BranchesFailed(StatesError):
    """A Parallel or Map state failed because of its branches or iterations. `kept` records those that
    succeeded ({"count": N, "outputs": {"<index>": output}}): a redrive of the execution runs only the
    others again, as AWS's RedriveExecution does."""

    def __init__(self, error: str | None, cause: str | None, kept: dict[str, Any]):
        super().__init__(error, cause)
        self.kept = kept


class BranchesParked(Exception):  # noqa: N818 - a signal, not an error
    """Not an error: every branch or iteration of a Parallel or Map state has ended or is paused until
    a later moment (a long Wait, a retry back-off) or a delivery (a Message state, a callback task),
    and no other may start, so the state itself parks (`pending` records where each one stands; see
    `smq.engine.fanout`) until `not_before` (None: until a delivery)."""

    def __init__(self, pending: dict[str, Any], not_before: float | None):
        super().__init__(f"branches parked until {not_before}")
        self.pending = pending
        self.not_before = not_before


class UnknownResourceError(SmqError):
    """A Task names a resource that no registered handler answers to."""


def error_matches(error_equals: list[str] | tuple[str, ...], error: str | None) -> bool:
    """AWS matching rules for a retrier's or catcher's ErrorEquals against one raised error.

    Exact names match; States.ALL matches anything; States.TaskFailed matches anything except
    States.Timeout. States.Runtime and States.DataLimitExceeded are terminal: nothing matches them.
    """
    if error in UNCATCHABLE:
        return False
    for name in error_equals:
        if name == error or name == ALL:
            return True
        if name == TASK_FAILED and error != TIMEOUT:
            return True
    return False
