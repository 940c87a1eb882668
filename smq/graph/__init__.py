"""A state machine's graph: one model (`smq.graph.model`), an execution's path over it
(`smq.graph.path`), a layered layout (`smq.graph.layout`) and three renderers (SVG, DOT, Mermaid).

The console draws it, `smq definitions graph` writes it: both go through `render_graph`, so what a
review sees in a file is what an operator sees in the browser.
"""

from __future__ import annotations

from smq.graph.model import Edge, Graph, Node, build_graph
from smq.graph.path import Outcome, PathOverlay, overlay_from_history

__all__ = ["Edge", "Graph", "Node", "Outcome", "PathOverlay", "build_graph", "overlay_from_history"]
