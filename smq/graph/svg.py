"""The graph as SVG, built with ElementTree so that every name, label and note is escaped as text:
a state named `<script>` is drawn as those characters, never run."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from importlib.resources import files

from smq.graph.layout import Layout, layout_graph, text_width
from smq.graph.model import END, Graph, Node
from smq.graph.path import PathOverlay

SVG_NS = "http://www.w3.org/2000/svg"
STYLE = files("smq.graph").joinpath("graph.css").read_text(encoding="utf-8")


def render_svg(
    graph: Graph,
    overlay: PathOverlay | None = None,
    *,
    link: Callable[[Node], str | None] | None = None,
    notes: dict[str, str] | None = None,
    selected: str | None = None,
    standalone: bool = True,
    id_prefix: str = "g",
    layout: Layout | None = None,
) -> str:
    """`standalone`: embed the stylesheet (a file on its own); the console serves it instead.
    `link(node)`: where choosing a node leads. `notes`: a short line under a node (a failed state's
    error). `id_prefix`: keeps ids apart when a page shows two graphs."""
    layout = layout or layout_graph(graph)
    classes = "smq-graph" + (" with-path" if overlay is not None else "")
    root = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "class": classes,
            "viewBox": f"0 0 {layout.width:.0f} {layout.height:.0f}",
            "width": f"{layout.width:.0f}",
            "height": f"{layout.height:.0f}",
            "role": "img",
        },
    )
    if standalone:
        ET.SubElement(root, "style").text = STYLE
    defs = ET.SubElement(root, "defs")
    marker = ET.SubElement(
        defs,
        "marker",
        {
            "id": f"{id_prefix}-arrow",
            "viewBox": "0 0 10 10",
            "refX": "10",
            "refY": "5",
            "markerWidth": "9",
            "markerHeight": "9",
            "markerUnits": "userSpaceOnUse",
            "orient": "auto-start-reverse",
        },
    )
    ET.SubElement(marker, "path", {"d": "M 0 0 L 10 5 L 0 10 z", "class": "arrow"})
    frames = ET.SubElement(root, "g", {"class": "frames"})
    nodes = ET.SubElement(root, "g", {"class": "nodes"})
    edges = ET.SubElement(root, "g", {"class": "edges"})
    all_nodes = list(graph.walk())
    for node in all_nodes:  # containers first: their nested graphs are drawn over them
        if node.children:
            _node(nodes, node, layout, overlay, link, notes, selected)
    for frame in layout.frames:
        box = frame.box
        ET.SubElement(frames, "rect", _box(box.x, box.y, box.w, box.h) | {"rx": "6", "class": "frame"})
        ET.SubElement(
            frames, "text", {"x": _n(box.x + 6), "y": _n(box.y + 12), "class": "frame-label"}
        ).text = frame.label
    for node in all_nodes:
        if not node.children:
            _node(nodes, node, layout, overlay, link, notes, selected)
    labels: list[tuple[float, float, float]] = []  # (x, y, width) of the labels placed so far
    width = layout.width
    for placed in layout.edges:
        if len(placed.points) < 2:
            continue
        edge = placed.edge
        taken = overlay is not None and (edge.source, edge.target) in overlay.taken
        group = ET.SubElement(edges, "g", {"class": f"edge kind-{edge.kind}" + (" taken" if taken else "")})
        ET.SubElement(
            group,
            "polyline",
            {
                "points": " ".join(f"{x:.1f},{y:.1f}" for x, y in placed.points),
                "marker-end": f"url(#{id_prefix}-arrow)",
            },
        )
        if edge.label:
            x, y = _free_spot(_along(placed.points, 0.6), text_width(edge.label) * 0.9, labels)
            width = max(width, x + text_width(edge.label) + 8)
            ET.SubElement(group, "text", {"x": _n(x), "y": _n(y), "class": "label"}).text = edge.label
    if width > layout.width:  # a label reaching past the right edge widens the picture
        root.set("viewBox", f"0 0 {width:.0f} {layout.height:.0f}")
        root.set("width", f"{width:.0f}")
    return ET.tostring(root, encoding="unicode")


def _node(
    parent: ET.Element,
    node: Node,
    layout: Layout,
    overlay: PathOverlay | None,
    link: Callable[[Node], str | None] | None,
    notes: dict[str, str] | None,
    selected: str | None,
) -> None:
    box = layout.boxes.get(node.id)
    if box is None:
        return
    if node.marker:
        group = ET.SubElement(parent, "g", {"class": "marker " + ("end" if node.type == END else "start")})
        ET.SubElement(group, "title").text = node.name
        ET.SubElement(group, "circle", {"cx": _n(box.cx), "cy": _n(box.cy), "r": _n(box.w / 2 - 2)})
        return
    classes = ["node", f"type-{node.type.lower()}"]
    if node.children:
        classes.append("container")
    title = f"{node.name} ({node.type})"
    if overlay is not None:
        outcome = overlay.outcome(node.id)
        classes.append(f"outcome-{outcome.value}")
        title += f": {outcome.value}"
    if node.id == selected:
        classes.append("selected")
    group = ET.SubElement(parent, "g", {"class": " ".join(classes), "data-state": node.id})
    target = link(node) if link is not None else None
    holder = ET.SubElement(group, "a", {"href": target}) if target else group
    note = (notes or {}).get(node.id)
    ET.SubElement(holder, "title").text = title + (f" - {note}" if note else "")
    ET.SubElement(holder, "rect", _box(box.x, box.y, box.w, box.h) | {"rx": "7"})
    if node.children:
        ET.SubElement(
            holder, "text", {"x": _n(box.x + 10), "y": _n(box.y + 17), "class": "name"}
        ).text = node.name
        ET.SubElement(holder, "text", {"x": _n(box.x + 10), "y": _n(box.y + 31), "class": "type"}).text = (
            node.type + (f"  {node.detail}" if node.detail else "")
        )
    else:
        ET.SubElement(
            holder, "text", {"x": _n(box.cx), "y": _n(box.y + 18), "class": "name", "text-anchor": "middle"}
        ).text = node.name
        kind = node.type + (f"  {node.detail}" if node.detail else "")
        if node.retry:
            kind += "  ↻"
        ET.SubElement(
            holder, "text", {"x": _n(box.cx), "y": _n(box.y + 33), "class": "type", "text-anchor": "middle"}
        ).text = kind
    if note:
        ET.SubElement(
            holder,
            "text",
            {"x": _n(box.cx), "y": _n(box.y + box.h + 13), "class": "note", "text-anchor": "middle"},
        ).text = note


def _along(points: list[tuple[float, float]], fraction: float) -> tuple[float, float]:
    """The point `fraction` of the way along a polyline."""
    lengths = [math.dist(a, b) for a, b in zip(points, points[1:], strict=False)]
    goal = sum(lengths) * fraction
    for (a, b), length in zip(zip(points, points[1:], strict=False), lengths, strict=True):
        if goal <= length and length > 0:
            t = goal / length
            return a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t
        goal -= length
    return points[-1]


def _free_spot(
    at: tuple[float, float], width: float, placed: list[tuple[float, float, float]]
) -> tuple[float, float]:
    """Where a label of `width` starting near `at` overlaps none placed before (moved down a line at
    a time, a few times at most); recorded as placed."""
    x, y = at[0] + 4, at[1] - 3
    for _ in range(6):
        if not any(abs(y - py) < 12 and x < px + pw and px < x + width for px, py, pw in placed):
            break
        y += 13
    placed.append((x, y, width))
    return x, y


def _box(x: float, y: float, w: float, h: float) -> dict[str, str]:
    return {"x": _n(x), "y": _n(y), "width": _n(w), "height": _n(h)}


def _n(value: float) -> str:
    return f"{value:.1f}"
