"""Nested executions over a repository: the `NestedHost` a run gives its Tasks (smq.engine.nested).

A child is an ordinary execution, created like `smq start` creates one (same repository, same
uniqueness by name) and linked to the Task that started it (`smq_child_links`). Where it runs follows
where its parent runs: on the workers (`child_launch="queue"`, a worker's runs) it is enqueued on the
parent's queue; otherwise it runs here, at once, inside the parent's step.

A parent waiting for a child (`.sync`, `.sync:2`) waits on a durable timer between checks of the
child's status, holding no worker. When the child ends, whoever ends it fires that timer, so the
parent goes on at once (enqueued, or run here); the checks only matter if that was missed (a crash).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from smq.engine.cursor import AwsIdentity, Cursor
from smq.engine.errors import SmqError, StatesError
from smq.engine.handlers import TaskContext
from smq.engine.nested import ALREADY_EXISTS, DOES_NOT_EXIST, ChildRequest, ChildView, checks_child
from smq.execution.continuation import Continuation, Launcher
from smq.execution.runner import RunPlan, StartRequest, prepare_execution, resume_execution
from smq.repository.child_links import link_child
from smq.repository.models import WAITING
from smq.repository.records import NotFound
from smq.repository.recovery_queries import extend_handed_over
from smq.repository.repository import ExecutionRecord, Repository
from smq.repository.waits import WaitStore, Woken

log = logging.getLogger("smq.execution")

QUEUE = "queue"
LOCAL = "local"
_AWS_STATUS = {"WAITING": "RUNNING", "PAUSED": "RUNNING"}  # smq's statuses AWS does not have


def _identity(execution_arn: str | None) -> AwsIdentity:
    """The region and account of the parent's ARN, for its child's."""
    parts = (execution_arn or "").split(":")
    return AwsIdentity(parts[3], parts[4]) if len(parts) > 5 and parts[3] and parts[4] else AwsIdentity()


def child_view(record: ExecutionRecord) -> ChildView:
    """What a parent sees of `record` (DescribeExecution's fields)."""
    info = Cursor.from_dict(record.cursor).execution if record.cursor else None
    arn = info.execution_arn if info is not None else record.execution_id
    machine_arn = info.state_machine_arn if info is not None else record.state_machine_id
    return ChildView(
        execution_id=record.execution_id,
        execution_arn=arn,
        state_machine_arn=machine_arn,
        name=record.name,
        status=_AWS_STATUS.get(record.status, record.status),
        start=record.start_time.timestamp(),
        stop=record.stop_time.timestamp() if record.stop_time is not None else None,
        input=record.input,
        output=record.output,
        error=record.error,
        cause=record.cause,
    )


class ExecutionChildren:
    """Starts, reads and stops child executions for the runs of one process (see the module doc)."""

    def __init__(
        self,
        repository: Repository,
        plan: RunPlan,
        runtime_options: dict[str, Any],
        *,
        launch: str = LOCAL,
        arns: Mapping[str, str] | None = None,
        wake_grace: float = 300.0,
    ):
        if launch not in (LOCAL, QUEUE):
            raise ValueError(f"child_launch must be {LOCAL!r} or {QUEUE!r}, got {launch!r}")
        self.repository = repository
        self.plan = plan
        self.runtime_options = runtime_options
        self.launch = launch
        self.wake_grace = wake_grace  # an enqueued child is handed over: recovered only after this
        self.arns: Mapping[str, str] = dict(arns or {})
        # Parents whose child runs here, inside their step (they check it next: no timer to fire), and
        # the children that ended so (their first check needs no query).
        self._inline_parents: set[str] = set()
        self._ended_here: dict[str, ExecutionRecord] = {}

    # ------------------------------------------------------------------ NestedHost

    def start_child(self, request: ChildRequest, ctx: TaskContext, mode: str) -> ChildView:
        start = StartRequest(
            request.state_machine_id, request.input, request.name or str(uuid.uuid4()), request.version
        )
        queued = self.launch == QUEUE
        try:
            record, machine, created = prepare_execution(
                self.repository,
                start,
                handlers=self.plan.handlers,
                payload_limit=self.runtime_options.get("payload_limit"),
                queue=self.plan.queue if queued else None,
                lease_seconds=0 if queued else self.plan.lease_seconds,
                identity=_identity(ctx.execution_arn),
                parent_id=ctx.execution_id,
            )
        except NotFound:
            raise StatesError(
                DOES_NOT_EXIST, f"State Machine Does Not Exist: '{request.state_machine_arn}'"
            ) from None
        except SmqError as exc:
            raise StatesError(
                "States.TaskFailed", f"cannot start {request.state_machine_arn}: {exc}"
            ) from None
        if not created and record.input != request.input:
            raise StatesError(
                ALREADY_EXISTS, f"Execution Already Exists: '{child_view(record).execution_arn}'"
            )
        link_child(self.repository.engine, record.execution_id, ctx.execution_id, ctx.state_name, mode)
        if created and not record.finished:
            if queued:
                # Handed to the queue: the recovery scanner re-enqueues it if no worker takes it in time.
                extend_handed_over(
                    self.repository.engine, record.execution_id, now=datetime.now(UTC), grace=self.wake_grace
                )
                self._launcher().continue_executions(
                    [Continuation(record.state_machine_id, record.name, self.plan.queue or "default")]
                )
            else:
                self._inline_parents.add(ctx.execution_id)
                try:
                    record = self._run_here(record, claimed=True)
                finally:
                    self._inline_parents.discard(ctx.execution_id)
                if record.finished and mode in ("sync", "sync:2"):
                    self._ended_here[record.execution_id] = record
        return child_view(record)

    def child(self, execution_id: str) -> ChildView:
        ended = self._ended_here.pop(execution_id, None)
        return child_view(ended or self.repository.get_execution(execution_id))

    def stop_child(self, execution_id: str, cause: str) -> None:
        from smq.execution.control import stop_execution

        try:
            stop_execution(self.repository, execution_id, cause=cause, actor="smq (parent task)")
        except SmqError:
            return  # it has ended meanwhile: nothing to stop

    # ------------------------------------------------------------------ a child's end

    def child_ended(self, record: ExecutionRecord) -> None:
        """`record`, a child, has ended: wake its parent now if it waits for a check of it."""
        parent_id = _parent_id(record)
        if parent_id is None or parent_id in self._inline_parents:
            return
        woken = wake_parent(self.repository, record.execution_id, parent_id)
        if not woken:
            return  # running (it checks as it goes on), or not waiting for this child
        if self.launch == QUEUE:
            self._launcher().continue_executions(
                Continuation(w.state_machine_id, w.name, w.queue) for w in woken
            )
            return
        for wake in woken:
            self._run_here(self.repository.get_execution(wake.execution_id), claimed=False)

    # ------------------------------------------------------------------ helpers

    def _launcher(self) -> Launcher:
        from smq.distributed.launcher import QueueLauncher

        return QueueLauncher(self.repository)

    def _run_here(self, record: ExecutionRecord, *, claimed: bool) -> ExecutionRecord:
        plan = self.plan
        return resume_execution(
            self.repository,
            record,
            handlers=plan.handlers,
            queue=plan.queue,
            lease_seconds=plan.lease_seconds,
            checkpoints=plan.checkpoints,
            claimed=claimed,
            outage_budget=plan.outage_budget,
            observer=plan.observer,
            **self.runtime_options,
        )


def wake_parent(repository: Repository, child_id: str, parent_id: str) -> list[Woken]:
    """Fire the timer of the parent if it is parked checking on this child (never another timer of
    it: a Wait state's, or a check of another child); the executions woken."""
    try:
        parent = repository.get_execution(parent_id)
    except NotFound:
        return []
    if parent.status != WAITING or not checks_child(parent.cursor, child_id):
        return []
    return WaitStore(repository.engine).fire_timers_of(parent_id, parent.history_length)


def _parent_id(record: ExecutionRecord) -> str | None:
    execution = (record.cursor or {}).get("execution") or {}
    parent = execution.get("parent_id")
    return parent if isinstance(parent, str) else None


def with_children(repository: Repository, plan: RunPlan, runtime_options: dict[str, Any]) -> dict[str, Any]:
    """`runtime_options` with the host of nested executions (`host`), built from the options that
    choose it: `child_launch` ("local", the default, or "queue" on workers), `state_machine_arns`
    (SMQ_STATE_MACHINE_ARNS) and `wake_grace` (SMQ_WAKE_GRACE, for enqueued children). A host already there is kept (the runs it starts share it)."""
    if runtime_options.get("host") is not None:
        return runtime_options
    options = dict(runtime_options)
    launch = options.pop("child_launch", None) or LOCAL
    arns = options.pop("state_machine_arns", None)
    grace = options.pop("wake_grace", None) or 300.0
    options["host"] = ExecutionChildren(repository, plan, options, launch=launch, arns=arns, wake_grace=grace)
    return options


def notify_parent(repository: Repository, record: ExecutionRecord, launcher: Launcher) -> None:
    """A child ended outside a run (stopped by an operator): wake its parent if it waits on a check.
    A parent stopped so stops the children its `.sync` Tasks were waiting for (best effort, as AWS
    tries to stop the job of a stopped `.sync` Task)."""
    if record.status == "ABORTED":
        _stop_sync_children(repository, record)
    parent_id = _parent_id(record)
    if parent_id is None or not record.finished:
        return
    woken = wake_parent(repository, record.execution_id, parent_id)
    if woken:
        launcher.continue_executions(Continuation(w.state_machine_id, w.name, w.queue) for w in woken)


def ended_child(runtime_options: dict[str, Any], record: ExecutionRecord) -> None:
    """After a run ended `record`: if it is a child, its host wakes the parent (errors are logged: the
    parent's own checks still find the child's end)."""
    host = runtime_options.get("host")
    if not isinstance(host, ExecutionChildren) or _parent_id(record) is None:
        return
    try:
        host.child_ended(record)
    except Exception:
        log.warning(
            "could not wake the parent of %s now; its next check will", record.execution_id, exc_info=True
        )


def _stop_sync_children(repository: Repository, record: ExecutionRecord) -> None:
    from smq.execution.control import stop_execution
    from smq.repository.child_links import children_of

    for link in children_of(repository.engine, record.execution_id):
        if link.mode in ("sync", "sync:2") and link.status in ("RUNNING", "WAITING", "PAUSED"):
            try:
                stop_execution(
                    repository,
                    link.child_execution_id,
                    cause=f"its parent {record.state_machine_id}/{record.name} was stopped",
                    actor="smq (parent stopped)",
                )
            except SmqError:
                continue  # ended meanwhile
