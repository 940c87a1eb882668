"""An execution's path over its graph, from its history rows: which states ran and how each ended
(succeeded, failed, caught, retried, running, waiting, or not reached) and which edges it took.

History rows carry the state's name and its scope (`Outer[0]`, `Loop[3]/Inner[1]`); a scope is turned
into the node-id prefix of `smq.graph.model` by walking the graph (a Parallel keeps its branch index,
every Map iteration is drawn on the one item processor).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from smq.engine.status import EntryStatus, Status
from smq.graph.model import Graph, Node


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CAUGHT = "caught"
    RETRIED = "retried"
    RUNNING = "running"
    WAITING = "waiting"
    NOT_REACHED = "not-reached"


class Entry(Protocol):
    """What the path reads of a history row (`smq.repository.records.HistoryRecord`)."""

    @property
    def sequence(self) -> int: ...
    @property
    def state_name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def scope(self) -> str: ...


class Execution(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def current_state(self) -> str | None: ...


@dataclass
class PathOverlay:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    visits: dict[str, list[int]] = field(default_factory=dict)  # node id -> history sequence numbers
    taken: set[tuple[str, str]] = field(default_factory=set)  # (source id, target id)
    iterations: dict[str, str] = field(default_factory=dict)  # scope -> how its last state ended

    def outcome(self, node_id: str) -> Outcome:
        return self.outcomes.get(node_id, Outcome.NOT_REACHED)


def overlay_from_history(graph: Graph, execution: Execution, history: Iterable[Entry]) -> PathOverlay:
    overlay = PathOverlay()
    nodes = {node.id: node for node in graph.walk()}
    by_scope: dict[str, list[Entry]] = {}
    for entry in sorted(history, key=lambda e: e.sequence):
        by_scope.setdefault(entry.scope, []).append(entry)
    last_status: dict[str, list[str]] = {}  # node id -> last status of each scope's last visit
    retried: set[str] = set()
    for scope, entries in by_scope.items():
        prefix = scope_prefix(scope, nodes)
        if prefix is None:
            continue  # a history written for another version of the definition
        if scope:
            overlay.iterations[scope] = entries[-1].status
        previous: Entry | None = None
        last_of: dict[str, str] = {}
        for entry in entries:
            node_id = prefix + entry.state_name
            if node_id not in nodes:
                continue
            overlay.visits.setdefault(node_id, []).append(entry.sequence)
            last_of[node_id] = entry.status
            if entry.status == EntryStatus.RETRIED:
                retried.add(node_id)
            if previous is None:
                overlay.taken.add((prefix + "^start", node_id))
            elif not (previous.state_name == entry.state_name and previous.status == EntryStatus.RETRIED):
                overlay.taken.add((prefix + previous.state_name, node_id))
            previous = entry
        for node_id, status in last_of.items():
            last_status.setdefault(node_id, []).append(status)
        if previous is not None and previous.status in (EntryStatus.SUCCEEDED, EntryStatus.FAILED):
            end = (prefix + previous.state_name, prefix + "^end")
            if _ends(nodes.get(end[0]), previous.status):
                overlay.taken.add(end)
    for node_id, statuses in last_status.items():
        overlay.outcomes[node_id] = _outcome(statuses, node_id in retried)
    _current(overlay, nodes, execution, by_scope.get(""))
    return overlay


def scope_prefix(scope: str, nodes: dict[str, Node]) -> str | None:
    """`Outer[0]/Loop[3]` -> `Outer[0]/Loop[*]/`; None when the scope names no Parallel or Map."""
    prefix = ""
    if not scope:
        return prefix
    for segment in scope.split("/"):
        name, bracket, rest = segment.rpartition("[")
        if not bracket or not rest.endswith("]"):
            return None
        node = nodes.get(prefix + name)
        if node is None or node.type not in ("Parallel", "Map"):
            return None
        prefix += f"{name}[{rest[:-1] if node.type == 'Parallel' else '*'}]/"
    return prefix


def _ends(node: Node | None, status: str) -> bool:
    if node is None:
        return False
    if status == EntryStatus.FAILED:
        return node.type == "Fail"
    return True


def _outcome(statuses: list[str], was_retried: bool) -> Outcome:
    if EntryStatus.FAILED in statuses:
        return Outcome.FAILED
    if EntryStatus.CAUGHT in statuses or EntryStatus.TIMED_OUT in statuses:
        return Outcome.CAUGHT
    if was_retried:
        return Outcome.RETRIED
    return Outcome.SUCCEEDED


def _current(
    overlay: PathOverlay, nodes: dict[str, Node], execution: Execution, top: list[Any] | None
) -> None:
    """Where the execution is now: running or waiting there; where a stopped one stopped, failed."""
    state = execution.current_state
    if state is None or state not in nodes:
        return
    if execution.status in (Status.RUNNING, Status.WAITING, Status.PAUSED):
        overlay.outcomes[state] = Outcome.RUNNING if execution.status == Status.RUNNING else Outcome.WAITING
        if top and top[-1].state_name != state:
            overlay.taken.add((top[-1].state_name, state))
        elif not top:
            overlay.taken.add(("^start", state))
    elif execution.status in (Status.FAILED, Status.TIMED_OUT, Status.ABORTED):
        if Outcome.FAILED not in overlay.outcomes.values():
            overlay.outcomes[state] = Outcome.FAILED
