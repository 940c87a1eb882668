"""How the console shows values: times, durations, JSON as text (pretty, escaped by the templates),
and the history row -> graph node mapping the detail page needs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from smq.graph.model import Graph
from smq.graph.path import scope_prefix


def when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def when_precise(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def duration(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def span_ms(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds() * 1000


def pretty_json(value: Any) -> str:
    """The whole value, indented: the template escapes it and the browser shows it as text."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def compact_json(value: Any) -> str:
    """One line, by the C encoder (`indent` would take the pure-Python one): for the history's 500
    rows, which the page's script turns into trees anyway."""
    return json.dumps(value, ensure_ascii=False, default=str)


def short(text: Any, limit: int = 80) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def node_of(graph_nodes: dict[str, Any], scope: str, state_name: str) -> str | None:
    """The graph node a history row belongs to (None for a scope the definition does not have)."""
    prefix = scope_prefix(scope, graph_nodes)
    return None if prefix is None else prefix + state_name


def nodes_by_id(graph: Graph) -> dict[str, Any]:
    return {node.id: node for node in graph.walk()}
