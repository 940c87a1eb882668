"""The Python calls behind `smq message send`, `smq task ...`, `smq redrive`, `smq executions stop` and
`smq executions resume`, and behind the console's buttons.

Each changes the database in one transaction, then continues what became RUNNING again: enqueued for
the workers when a broker is configured (SMQ_BROKER_URL), run in this process otherwise. Each is
recorded with the execution's history as an operator action, with who did it (`actor`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from smq.engine.handlers import HandlerRegistry, default_registry
from smq.execution.children import notify_parent
from smq.execution.continuation import Continuation, ContinuationSummary, Launcher, woken_continuations
from smq.execution.control import redrive_execution, resume_paused, stop_execution
from smq.launching import launcher_for
from smq.repository.operator_actions import OperatorAction, default_actor, record_actions
from smq.repository.repository import ExecutionRecord, Repository
from smq.repository.waits import UNDELIVERED, WaitStore, Woken
from smq.settings import Settings


@dataclass
class Resumed:
    """Which executions a message or callback answer resumed, and how they were continued."""

    executions: list[Woken] = field(default_factory=list)
    continued: ContinuationSummary = field(default_factory=ContinuationSummary)

    @property
    def matched(self) -> bool:
        return bool(self.executions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "matched": len(self.executions),
            "resumed": list(dict.fromkeys(w.execution_id for w in self.executions if not w.held)),
            "held": list(
                dict.fromkeys(w.execution_id for w in self.executions if w.held and not w.undelivered)
            ),
            # Its branch no longer waited for the answer: recorded (UNDELIVERED), shown by executions show.
            "undelivered": list(dict.fromkeys(w.execution_id for w in self.executions if w.undelivered)),
            "continuations": self.continued.to_dict(),
        }


class Operations:
    """Bound to one repository and one configuration; `handlers` run in-process continuations."""

    def __init__(
        self,
        repository: Repository,
        settings: Settings,
        *,
        handlers: HandlerRegistry | None = None,
        launcher: Launcher | None = None,
        actor: str | None = None,
    ):
        """`settings`: read from the environment by the caller (the CLI, a service's start-up).
        `launcher`: where continuations go on (default: the one the settings call for). `actor`: who
        acts, as recorded with each execution's history (default: `user@host` of this process)."""
        self.repository = repository
        self.actor = actor or default_actor()
        self.settings = settings
        self.handlers = handlers if handlers is not None else default_registry
        self.launcher = launcher or launcher_for(repository, settings, handlers=self.handlers)
        self.waits = WaitStore(repository.engine, wake_grace_seconds=self.settings.wake_grace)

    def _continue(self, items: list[Continuation]) -> ContinuationSummary:
        return self.launcher.continue_executions(items)

    def _resumed(self, woken: list[Woken], action: str, **detail: Any) -> Resumed:
        """Record the answer with each execution it reached, then continue those it woke."""
        shown = {key: value for key, value in detail.items() if value is not None}
        record_actions(
            self.repository.engine,
            (
                OperatorAction(w.execution_id, action, self.actor, {**shown, "resolution": w.resolution})
                for w in dict((w.execution_id, w) for w in woken).values()
            ),
        )
        items = woken_continuations(woken)
        continued = self._continue(items)
        # A held answer is applied when its execution parks again: when that happened here (in-process
        # continuations), say if it reached no branch after all.
        woken = [
            replace(w, undelivered=True)
            if w.held and w.wait_id and self.waits.wait_status(w.wait_id) == UNDELIVERED
            else w
            for w in woken
        ]
        return Resumed(woken, continued)

    def send_message(self, key: str, value: Any, data: Any = None) -> Resumed:
        """Resume every execution parked on a Message state waiting for (key, value); `data` is the
        state's result. No match is answered (`matched` False) and the message is recorded."""
        woken = self.waits.send_message(key, value, {} if data is None else data)
        return self._resumed(woken, "message", key=key, value=value)

    def task_success(self, token: str, output: Any = None) -> Resumed:
        delivery = {"kind": "success", "output": {} if output is None else output}
        return self._resumed([self.waits.complete_callback(token, delivery)], "task_success")

    def task_failure(self, token: str, error: str = "States.TaskFailed", cause: str | None = None) -> Resumed:
        delivery = {"kind": "failure", "error": error, "cause": cause}
        woken = self.waits.complete_callback(token, delivery)
        return self._resumed([woken], "task_failure", error=error, cause=cause)

    def task_heartbeat(self, token: str) -> None:
        self.waits.heartbeat(token)

    def redrive(
        self, reference: str, queue: str | None = None
    ) -> tuple[ExecutionRecord, ContinuationSummary]:
        """Restart a FAILED, TIMED_OUT or ABORTED execution from the state that failed, on `queue` (default:
        the queue it ran from)."""
        record = redrive_execution(
            self.repository, reference, grace=self.settings.wake_grace, queue=queue, actor=self.actor
        )
        return self._continue_restarted(record)

    def resume(self, reference: str, queue: str | None = None) -> tuple[ExecutionRecord, ContinuationSummary]:
        """Resume a PAUSED execution from its last checkpoint, on `queue` (default: the queue it ran from)."""
        record = resume_paused(
            self.repository, reference, grace=self.settings.wake_grace, queue=queue, actor=self.actor
        )
        return self._continue_restarted(record)

    def stop(
        self, reference: str, error: str = "States.Aborted", cause: str | None = None
    ) -> ExecutionRecord:
        """Abort a RUNNING, WAITING or PAUSED execution with `error` and `cause`; its waits are cancelled."""
        record = stop_execution(self.repository, reference, error=error, cause=cause, actor=self.actor)
        notify_parent(self.repository, record, self.launcher)  # a nested child: its parent goes on
        return record

    def _continue_restarted(self, record: ExecutionRecord) -> tuple[ExecutionRecord, ContinuationSummary]:
        item = Continuation(record.state_machine_id, record.name, record.queue or "default")
        continued = self._continue([item])
        return self.repository.get_execution(record.execution_id), continued
