"""The graph of a definition: every state a node, every way out of a state an edge.

Edges: Next, Default, each Choice rule (labelled with its condition), each Catch (labelled with its
error names), a Message state's TimeoutPath. Parallel branches and a Map's item processor are nested
graphs inside their state's node. Node ids are paths, `Outer[0]/Inner` for a state of Parallel
`Outer`'s first branch and `Loop[*]/Inner` for one of Map `Loop`'s item processor, so the history's
scopes (`Outer[0]`, `Loop[3]`) find their nodes (`smq.graph.path`).

Built from the definition's JSON (validated by the caller), never from a compiled machine: the graph
shows what was written, conditions included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

START, END = "start", "end"  # the kinds of the two marker nodes of every graph
LABEL_LIMIT = 48

# Choice comparison operators, shortest readable form first.
_OPERATORS = {
    "Equals": "==",
    "GreaterThan": ">",
    "GreaterThanEquals": ">=",
    "LessThan": "<",
    "LessThanEquals": "<=",
    "Matches": "matches",
}
_CHECKS = ("IsPresent", "IsNull", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp")


@dataclass
class Edge:
    source: str
    target: str
    kind: str  # next, default, choice, catch, timeout, start, end
    label: str = ""


@dataclass
class Graph:
    """One level: its states, its start and end markers, the edges between them."""

    prefix: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    @property
    def start_id(self) -> str:
        return f"{self.prefix}^start"

    @property
    def end_id(self) -> str:
        return f"{self.prefix}^end"

    def walk(self) -> Iterator[Node]:
        """Every node, nested graphs' included, parents before their children."""
        for node in self.nodes:
            yield node
            for child in node.children:
                yield from child.graph.walk()

    def walk_edges(self) -> Iterator[Edge]:
        yield from self.edges
        for node in self.nodes:
            for child in node.children:
                yield from child.graph.walk_edges()


@dataclass
class SubGraph:
    label: str  # "branch 1", "item processor"
    graph: Graph


@dataclass
class Node:
    id: str
    name: str
    type: str  # the state's Type, or START / END for the markers
    detail: str = ""  # what it does in a few words: a Task's resource, a Wait's time
    retry: tuple[str, ...] = ()  # error names its Retry handles
    children: list[SubGraph] = field(default_factory=list)

    @property
    def marker(self) -> bool:
        return self.type in (START, END)


def build_graph(definition: dict[str, Any]) -> Graph:
    """The graph of a validated definition (a dict as stored: StartAt, States)."""
    return _level(definition, "")


def _level(machine: dict[str, Any], prefix: str) -> Graph:
    graph = Graph(prefix)
    graph.nodes.append(Node(graph.start_id, "Start", START))
    states: dict[str, Any] = machine.get("States") or {}
    graph.edges.append(Edge(graph.start_id, prefix + str(machine.get("StartAt")), "start"))
    ends = False
    for name, state in states.items():
        node_id = prefix + name
        node = Node(node_id, name, str(state.get("Type", "?")), _detail(state), _retried(state))
        node.children = _children(name, state, prefix)
        graph.nodes.append(node)
        for edge in _edges(node_id, state, prefix):
            graph.edges.append(edge)
        if state.get("End") is True or node.type in ("Succeed", "Fail"):
            graph.edges.append(Edge(node_id, graph.end_id, "end"))
            ends = True
    if ends:
        graph.nodes.append(Node(graph.end_id, "End", END))
    return graph


def _children(name: str, state: dict[str, Any], prefix: str) -> list[SubGraph]:
    if state.get("Type") == "Parallel":
        return [
            SubGraph(f"branch {index + 1}", _level(branch, f"{prefix}{name}[{index}]/"))
            for index, branch in enumerate(state.get("Branches") or [])
        ]
    if state.get("Type") == "Map":
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if isinstance(processor, dict):
            return [SubGraph("item processor", _level(processor, f"{prefix}{name}[*]/"))]
    return []


def _edges(node_id: str, state: dict[str, Any], prefix: str) -> Iterator[Edge]:
    if isinstance(state.get("Next"), str):
        yield Edge(node_id, prefix + state["Next"], "next")
    for rule in state.get("Choices") or []:
        if isinstance(rule, dict) and isinstance(rule.get("Next"), str):
            yield Edge(node_id, prefix + rule["Next"], "choice", shorten(rule_text(rule)))
    if isinstance(state.get("Default"), str):
        yield Edge(node_id, prefix + state["Default"], "default", "Default")
    for catcher in state.get("Catch") or []:
        if isinstance(catcher, dict) and isinstance(catcher.get("Next"), str):
            errors = ", ".join(str(e) for e in catcher.get("ErrorEquals") or [])
            yield Edge(node_id, prefix + catcher["Next"], "catch", shorten(f"catch {errors}"))
    if isinstance(state.get("TimeoutPath"), str):  # smq's Message state
        yield Edge(node_id, prefix + state["TimeoutPath"], "timeout", "timeout")


def _retried(state: dict[str, Any]) -> tuple[str, ...]:
    names: list[str] = []
    for retrier in state.get("Retry") or []:
        if isinstance(retrier, dict):
            names.extend(str(e) for e in retrier.get("ErrorEquals") or [])
    return tuple(dict.fromkeys(names))


def _detail(state: dict[str, Any]) -> str:
    kind = state.get("Type")
    if kind == "Task":
        return shorten(str(state.get("Resource", "")), 32)
    if kind == "Wait":
        for key in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath"):
            if key in state:
                return shorten(f"{key} {state[key]}", 32)
    if kind == "Message":
        return shorten(f"key {state.get('CorrelationKey', '')}", 32)
    if kind == "Fail" and isinstance(state.get("Error"), str):
        return shorten(state["Error"], 32)
    if kind == "Map" and state.get("MaxConcurrency"):
        return f"max concurrency {state['MaxConcurrency']}"
    return ""


def rule_text(rule: Any) -> str:
    """A Choice rule as one readable line: `$.total > 100`, `not($.vip == true)`, a JSONata condition."""
    if not isinstance(rule, dict):
        return json.dumps(rule)
    if "Condition" in rule:
        text = str(rule["Condition"])
        return text[2:-2].strip() if text.startswith("{%") and text.endswith("%}") else text
    for combinator, joiner in (("And", " and "), ("Or", " or ")):
        if isinstance(rule.get(combinator), list):
            return "(" + joiner.join(rule_text(part) for part in rule[combinator]) + ")"
    if isinstance(rule.get("Not"), dict):
        return f"not {rule_text(rule['Not'])}"
    variable = str(rule.get("Variable", "$"))
    for key, value in rule.items():
        if key in ("Variable", "Next", "Assign", "Output", "Comment"):
            continue
        for check in _CHECKS:
            if key == check:
                return f"{variable} {'is' if value else 'is not'} {check[2:].lower()}"
        stem = key.removesuffix("Path")
        for suffix, operator in sorted(_OPERATORS.items(), key=lambda item: -len(item[0])):
            if stem.endswith(suffix):  # longest first: LessThanEquals is not Equals
                shown = str(value) if key.endswith("Path") else json.dumps(value)
                return f"{variable} {operator} {shown}"
    return json.dumps({k: v for k, v in rule.items() if k != "Next"})


def shorten(text: str, limit: int = LABEL_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
