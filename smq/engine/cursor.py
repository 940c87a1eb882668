"""The resumable state of an execution, and what each step leaves in history.

A `Cursor` says where an execution is: the next state to run, its raw input, the workflow variables,
retry counters and, when a state is half done (a Wait that is waiting), what it had computed. It is
plain JSON, so it can be checkpointed to a database and resumed by any process.

A cursor whose `pending` has `"kind": "message"` or `"kind": "callback"` and no `"delivery"` is
PARKED: a Message state waiting for its message, or a callback Task (`.waitForTaskToken`) waiting for
its token. Nothing in this process can move it on; the driver returns WAITING. The layer above
resumes it by adding a delivery (`cursor.deliver({...})`, or setting `pending["delivery"]` in the JSON):

    pending {"kind": "message", "key": K, "value": V, "until": EPOCH | None}
        delivery {"kind": "message", "data": JSON}     -> the state's result
        delivery {"kind": "timeout"}                   -> TimeoutPath, else States.Timeout
    pending {"kind": "callback", "token": T, "until": EPOCH | None, "heartbeat": SECONDS | None,
             "started_at": EPOCH}
        delivery {"kind": "success", "output": JSON}   -> the task's result
        delivery {"kind": "failure", "error": E, "cause": C}
        delivery {"kind": "timeout"}                   -> States.Timeout
        delivery {"kind": "heartbeat_timeout"}         -> States.HeartbeatTimeout

A Parallel or Map state whose branches are paused has `pending` `{"kind": "fanout", ...}` and a
`not_before` (see `smq.engine.fanout`): not parked, it is resumed by time, like a Wait. So is a `.sync`
Task between two checks of its job, `{"kind": "poll", ...}` (see `smq.engine.sync`). In rows mode
(`smq.engine.branch_rows`) the branches' progress is in rows of their own and `pending` is a summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TypeGuard

from smq.engine.jsontext import compact
from smq.engine.status import EntryStatus, Status
from smq.engine.timestamps import format_timestamp

CURSOR_FORMAT = 1

PARKED_KINDS = frozenset({"message", "callback"})
DELIVERY_KINDS: dict[str, frozenset[str]] = {
    "message": frozenset({"message", "timeout"}),
    "callback": frozenset({"success", "failure", "timeout", "heartbeat_timeout"}),
}


FANOUT = "fanout"  # `pending` kind of a Parallel/Map state whose branches are paused (smq.engine.fanout)


def _awaits_delivery(pending: Any) -> TypeGuard[dict[str, Any]]:
    """A message/callback wait with no delivery yet."""
    return isinstance(pending, dict) and pending.get("kind") in PARKED_KINDS and "delivery" not in pending


def fanout_pending(pending: Any) -> dict[str, Any] | None:
    """`pending` when it is a Parallel/Map's parked branches (kind "fanout"), else None."""
    return pending if isinstance(pending, dict) and pending.get("kind") == FANOUT else None


def is_parked(pending: Any) -> bool:
    """Nothing can go on in-process: a message/callback wait with no delivery yet, or a Parallel/Map
    whose every paused branch is such a wait (a branch due on a timer, or with its delivery, can)."""
    if pending is None:  # the common case, asked after every state
        return False
    if _awaits_delivery(pending):
        return True
    fanout = fanout_pending(pending)
    if fanout is None:
        return False
    if fanout.get("rows"):
        # Rows mode (smq.engine.branch_rows): parked by the step that wrote its rows; read back from a
        # checkpoint it is run, and its READY rows say which branches go on.
        return "changes" in fanout
    paused = [
        job.get("cursor") or {} for job in _jobs(fanout).values() if job.get("status") == Status.WAITING
    ]
    return bool(paused) and all(
        cursor.get("not_before") is None and is_parked(cursor.get("pending")) for cursor in paused
    )


def _jobs(pending: dict[str, Any]) -> dict[str, dict[str, Any]]:
    jobs = pending.get("jobs")
    return jobs if isinstance(jobs, dict) else {}


def branch_waits(pending: Any, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every message/callback wait, with no delivery yet, of the branches of a parked Parallel/Map
    (nested ones included), as (path, that branch's pending). A path names the branch through each
    level's job index: "2" is job 2, "2/0" job 0 of the fan-out job 2 is paused in."""
    found: list[tuple[str, dict[str, Any]]] = []
    fanout = fanout_pending(pending)
    if fanout is None:
        return found
    for index, job in _jobs(fanout).items():
        inner = (job.get("cursor") or {}).get("pending") if job.get("status") == Status.WAITING else None
        path = f"{prefix}{index}"
        if _awaits_delivery(inner):
            found.append((path, inner))
        else:
            found.extend(branch_waits(inner, f"{path}/"))
    return found


def deliver_at(cursor: dict[str, Any], path: str, delivery: dict[str, Any]) -> dict[str, Any] | None:
    """`cursor` (a cursor's JSON) with `delivery` set on the wait of the branch at `path` (see
    `branch_waits`), or None when that branch no longer waits for a delivery. Copies what it changes."""
    pending = cursor.get("pending")
    if not path:
        if not _awaits_delivery(pending):
            return None
        check_delivery(pending["kind"], delivery)
        return {**cursor, "pending": {**pending, "delivery": delivery}}
    head, _, rest = path.partition("/")
    fanout = fanout_pending(pending)
    if fanout is None:
        return None
    job = _jobs(fanout).get(head)
    if not job or job.get("status") != Status.WAITING or not isinstance(job.get("cursor"), dict):
        return None
    inner = deliver_at(job["cursor"], rest, delivery)
    if inner is None:
        return None
    jobs = {**_jobs(fanout), head: {**job, "cursor": inner}}
    # Runnable now: the answered branch goes on at once, the others park again on their own times.
    return {**cursor, "pending": {**fanout, "jobs": jobs}, "not_before": None}


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else format_timestamp(datetime.fromtimestamp(epoch, UTC))


@dataclass(frozen=True)
class AwsIdentity:
    """The region and account that `$$.Execution.Id` and `$$.StateMachine.Id` are ARNs in, as AWS
    gives them (definitions read and parse them); smq's own commands keep taking smq's ids."""

    region: str = "us-east-1"
    account: str = "000000000000"


@dataclass(frozen=True)
class ExecutionInfo:
    """Who this execution is; the `$$.Execution` and `$$.StateMachine` parts of the Context object."""

    id: str
    name: str
    input: Any
    start_time: float
    state_machine_id: str
    state_machine_name: str
    role_arn: str = "arn:aws:iam::000000000000:role/smq"
    redrive_count: int = 0
    region: str = AwsIdentity.region
    account: str = AwsIdentity.account
    # The execution whose Task started this one (`states:startExecution`): told when this one ends.
    parent_id: str | None = None

    @property
    def state_machine_arn(self) -> str:
        """The state machine's id when it is an ARN already, else one in this region and account."""
        if self.state_machine_id.startswith("arn:") and ":stateMachine:" in self.state_machine_id:
            return self.state_machine_id
        return f"arn:aws:states:{self.region}:{self.account}:stateMachine:{self.state_machine_name}"

    @property
    def execution_arn(self) -> str:
        """`arn:...:execution:<state machine name>:<execution name>`, beside the state machine's ARN."""
        machine = self.state_machine_arn
        return machine.replace(":stateMachine:", ":execution:", 1) + f":{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "input": self.input,
            "start_time": self.start_time,
            "state_machine_id": self.state_machine_id,
            "state_machine_name": self.state_machine_name,
            "role_arn": self.role_arn,
            "redrive_count": self.redrive_count,
            "region": self.region,
            "account": self.account,
            **({"parent_id": self.parent_id} if self.parent_id is not None else {}),
        }

    def execution_context(self) -> dict[str, Any]:
        return {
            "Id": self.execution_arn,
            "Input": self.input,
            "StartTime": iso(self.start_time),
            "Name": self.name,
            "RoleArn": self.role_arn,
            "RedriveCount": self.redrive_count,
        }

    def state_machine_context(self) -> dict[str, Any]:
        return {"Id": self.state_machine_arn, "Name": self.state_machine_name}


@dataclass(frozen=True)
class Cursor:
    """Where an execution stands between two steps. JSON round-trips exactly."""

    execution: ExecutionInfo
    state: str
    input: Any
    variables: dict[str, Any] = field(default_factory=dict)
    retry_counts: tuple[int, ...] = ()
    attempt: int = 1
    pending: dict[str, Any] | None = None
    not_before: float | None = None
    transitions: int = 0
    entered_at: float | None = None  # when the current state was first entered (kept across retries/waits)
    # A redriven Parallel or Map state: the branches or iterations that succeeded before it failed
    # ({"count": N, "outputs": {"<index>": output}}), not run again. Cleared once the state is left.
    kept_results: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Shallow on purpose: JSON values inside are shared, never copied (nothing mutates them)."""
        data = {
            "format": CURSOR_FORMAT,
            "execution": self.execution.to_dict(),
            "state": self.state,
            "input": self.input,
            "variables": self.variables,
            "retry_counts": list(self.retry_counts),
            "attempt": self.attempt,
            "pending": self.pending,
            "not_before": self.not_before,
            "transitions": self.transitions,
            "entered_at": self.entered_at,
        }
        if self.kept_results is not None:
            data["kept_results"] = self.kept_results
        return data

    def to_json(self) -> str:
        return compact(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cursor:
        data = dict(data)
        fmt = data.pop("format", CURSOR_FORMAT)
        if fmt != CURSOR_FORMAT:
            raise ValueError(f"unsupported cursor format {fmt!r} (this smq reads format {CURSOR_FORMAT})")
        data["execution"] = ExecutionInfo(**data["execution"])
        data["retry_counts"] = tuple(data.get("retry_counts", ()))
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Cursor:
        return cls.from_dict(json.loads(text))

    def moved(self, **changes: Any) -> Cursor:
        """This cursor with `changes` (as dataclasses.replace, which costs several times more: this runs
        after every state). Cursor has no __post_init__ to skip."""
        if not _CURSOR_FIELDS.issuperset(changes):
            raise TypeError(f"Cursor has no field(s) {', '.join(sorted(set(changes) - _CURSOR_FIELDS))}")
        copy = object.__new__(Cursor)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy

    @property
    def parked(self) -> bool:
        """Waiting for a message or a callback (see the module docstring); resume with `deliver()`."""
        return is_parked(self.pending)

    def deliver(self, delivery: dict[str, Any], branch: str = "") -> Cursor:
        """This parked cursor with `delivery` set: resuming it finishes the waiting state (with
        `branch`, the wait of that branch of a parked Parallel/Map: see `branch_waits`).

        Raises ValueError when nothing waits there or the delivery does not fit what it waits for.
        """
        delivered = deliver_at(self.to_dict(), branch, delivery)
        if delivered is None:
            where = f"branch {branch!r} of the state" if branch else "the state"
            raise ValueError(f"{where} at {self.state!r} is not waiting for a delivery")
        return Cursor.from_dict(delivered)


def check_delivery(kind: str, delivery: Any) -> None:
    """ValueError unless `delivery` is one of the shapes a `kind` wait accepts (module docstring)."""
    allowed = DELIVERY_KINDS[kind]
    if not isinstance(delivery, dict) or delivery.get("kind") not in allowed:
        got = delivery.get("kind") if isinstance(delivery, dict) else type(delivery).__name__
        raise ValueError(f"a {kind} wait takes a delivery of kind {', '.join(sorted(allowed))}; got {got!r}")
    required = {"message": ("data",), "success": ("output",)}.get(delivery["kind"], ())
    for key in required:
        if key not in delivery:
            raise ValueError(f"a {delivery['kind']!r} delivery needs {key!r}")


# History entry statuses (smq.engine.status.EntryStatus).
SUCCEEDED, FAILED, RETRIED = EntryStatus.SUCCEEDED, EntryStatus.FAILED, EntryStatus.RETRIED
CAUGHT, TIMED_OUT = EntryStatus.CAUGHT, EntryStatus.TIMED_OUT


_CURSOR_FIELDS = frozenset(spec.name for spec in fields(Cursor))


@dataclass(slots=True)
class HistoryEntry:
    """One visit of one state: what it got, and what it produced or raised."""

    state_name: str
    state_type: str
    status: str
    input: Any
    output: Any = None
    error: str | None = None
    cause: str | None = None
    entered_at: float = 0.0
    exited_at: float = 0.0
    attempt: int = 1
    scope: str = ""  # "" at the top level; "Map[3]" or "Parallel[1]" paths inside sub-machines
    sequence: int = 0

    @property
    def name(self) -> str:
        return self.state_name

    @property
    def type(self) -> str:
        return self.state_type

    def to_dict(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "state_name": self.state_name,
            "state_type": self.state_type,
            "status": self.status,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "cause": self.cause,
            "attempt": self.attempt,
            "scope": self.scope,
            "entered_at": iso(self.entered_at),
            "timestamp": iso(self.exited_at),
        }


@dataclass
class Step:
    """What running one state produced: the next cursor, or the end of the execution."""

    entries: list[HistoryEntry]
    cursor: Cursor | None = None  # the next position when the execution goes on
    status: str | None = None  # final status when it ends here
    output: Any = None
    error: str | None = None
    cause: str | None = None
    # A Parallel or Map state that failed for good: its cursor with the results a redrive keeps
    # (`Cursor.kept_results`), recorded as the execution's position instead of the plain one.
    failed_at: Cursor | None = None

    @property
    def finished(self) -> bool:
        return self.cursor is None
