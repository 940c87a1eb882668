"""The graph as Graphviz DOT and as Mermaid, for docs and reviews: the same model as the SVG, so a
Parallel's branches and a Map's item processor are clusters (DOT) or subgraphs (Mermaid), and with an
execution each state carries its outcome's colour."""

from __future__ import annotations

import json

from smq.graph.model import END, START, Graph, Node
from smq.graph.path import Outcome, PathOverlay

# Fill and stroke per outcome, the console's colours.
COLOURS = {
    Outcome.SUCCEEDED: ("#dcfce7", "#15803d"),
    Outcome.FAILED: ("#fee2e2", "#b91c1c"),
    Outcome.CAUGHT: ("#ffedd5", "#c2410c"),
    Outcome.RETRIED: ("#fef9c3", "#a16207"),
    Outcome.RUNNING: ("#dbeafe", "#1d4ed8"),
    Outcome.WAITING: ("#ede9fe", "#6d28d9"),
    Outcome.NOT_REACHED: ("#f8fafc", "#cbd2d9"),
}
EDGE_STYLE = {"catch": "dashed", "timeout": "dotted", "default": "dotted"}


def _ids(graph: Graph) -> dict[str, str]:
    """Short identifiers (n0, n1...): state names may hold any character."""
    return {node.id: f"n{index}" for index, node in enumerate(graph.walk())}


def _dot_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a double-quoted string with \" and \\ escaped


def render_dot(graph: Graph, overlay: PathOverlay | None = None) -> str:
    ids = _ids(graph)
    lines = [
        "digraph smq {",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=11];',
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10, color="#7b8794"];',
    ]
    _dot_level(graph, ids, overlay, lines, "  ")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_level(
    graph: Graph, ids: dict[str, str], overlay: PathOverlay | None, lines: list[str], pad: str
) -> None:
    for node in graph.nodes:
        lines.append(f"{pad}{ids[node.id]} [{_dot_node(node, overlay)}];")
        for index, child in enumerate(node.children):
            lines.append(f"{pad}subgraph cluster_{ids[node.id]}_{index} {{")
            lines.append(
                f'{pad}  label={_dot_string(f"{node.name}: {child.label}")}; style=dashed; color="#9aa5b1";'
            )
            _dot_level(child.graph, ids, overlay, lines, pad + "  ")
            lines.append(f"{pad}}}")
            lines.append(
                f"{pad}{ids[node.id]} -> {ids[child.graph.start_id]} [style=dashed, arrowhead=none];"
            )
    for edge in graph.edges:
        if edge.source not in ids or edge.target not in ids:
            continue
        attributes = []
        if edge.label:
            attributes.append(f"label={_dot_string(edge.label)}")
        if edge.kind in EDGE_STYLE:
            attributes.append(f"style={EDGE_STYLE[edge.kind]}")
        if edge.kind == "catch":
            attributes.append('color="#c2410c", fontcolor="#c2410c"')
        if overlay is not None and (edge.source, edge.target) in overlay.taken:
            attributes.append('penwidth=2.5, color="#1f2933"')
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"{pad}{ids[edge.source]} -> {ids[edge.target]}{suffix};")


def _dot_node(node: Node, overlay: PathOverlay | None) -> str:
    if node.type == START:
        return 'label="", shape=circle, width=0.2, style=filled, fillcolor="#52606d"'
    if node.type == END:
        return 'label="", shape=doublecircle, width=0.15, style=filled, fillcolor="#52606d"'
    label = f"{node.name}\n{node.type}" + (f" {node.detail}" if node.detail else "")
    attributes = [f"label={_dot_string(label)}"]
    if overlay is not None:
        fill, stroke = COLOURS[overlay.outcome(node.id)]
        attributes.append(f'fillcolor="{fill}", color="{stroke}"')
    return ", ".join(attributes)


def _mermaid_text(text: str) -> str:
    """Mermaid's quoted label: its own entity codes for what would end or break the label."""
    for raw, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("\n", " ")):
        text = text.replace(raw, code)
    return f'"{text}"'


def render_mermaid(graph: Graph, overlay: PathOverlay | None = None) -> str:
    ids = _ids(graph)
    lines = ["flowchart TD"]
    _mermaid_level(graph, ids, overlay, lines, "  ")
    if overlay is not None:
        for outcome, (fill, stroke) in COLOURS.items():
            lines.append(f"  classDef {outcome.value.replace('-', '_')} fill:{fill},stroke:{stroke}")
        for node in graph.walk():
            if not node.marker:
                lines.append(f"  class {ids[node.id]} {overlay.outcome(node.id).value.replace('-', '_')}")
    return "\n".join(lines) + "\n"


def _mermaid_level(
    graph: Graph, ids: dict[str, str], overlay: PathOverlay | None, lines: list[str], pad: str
) -> None:
    for node in graph.nodes:
        node_id = ids[node.id]
        if node.type == START:
            lines.append(f"{pad}{node_id}(( ))")
        elif node.type == END:
            lines.append(f"{pad}{node_id}((( )))")
        else:
            lines.append(f"{pad}{node_id}[{_mermaid_text(f'{node.name} · {node.type}')}]")
        for index, child in enumerate(node.children):
            lines.append(f"{pad}subgraph {node_id}_{index} [{_mermaid_text(f'{node.name}: {child.label}')}]")
            _mermaid_level(child.graph, ids, overlay, lines, pad + "  ")
            lines.append(f"{pad}end")
            lines.append(f"{pad}{node_id} -.-> {ids[child.graph.start_id]}")
    for edge in graph.edges:
        if edge.source not in ids or edge.target not in ids:
            continue
        arrow = "-.->" if edge.kind in EDGE_STYLE else "-->"
        if overlay is not None and (edge.source, edge.target) in overlay.taken:
            arrow = "==>"
        label = f"|{_mermaid_text(edge.label)}|" if edge.label else ""
        lines.append(f"{pad}{ids[edge.source]} {arrow}{label} {ids[edge.target]}")
