"""One entry point for the three formats: `render_graph(definition, fmt, execution=..., history=...)`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from smq.graph.model import build_graph
from smq.graph.path import Entry, Execution, overlay_from_history
from smq.graph.svg import render_svg
from smq.graph.text_formats import render_dot, render_mermaid

FORMATS = ("svg", "dot", "mermaid")


def render_graph(
    definition: dict[str, Any],
    fmt: str,
    *,
    execution: Execution | None = None,
    history: Iterable[Entry] = (),
) -> str:
    """The definition's graph in `fmt`; with `execution` (and its history) the path it took."""
    if fmt not in FORMATS:
        raise ValueError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    graph = build_graph(definition)
    overlay = overlay_from_history(graph, execution, history) if execution is not None else None
    if fmt == "svg":
        return render_svg(graph, overlay)
    if fmt == "dot":
        return render_dot(graph, overlay)
    return render_mermaid(graph, overlay)
