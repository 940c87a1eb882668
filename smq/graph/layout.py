"""Where every node and edge of a graph goes: a layered (Sugiyama) layout by grandalf, level by level.

grandalf (pure Python, no system binaries; graphviz's `dot` is not on every host) lays out one level:
layers top to bottom, crossings reduced, long edges routed through dummy points. A Parallel or Map
node holds its nested graphs, so those are laid out first and the node is drawn as large as they need;
then everything is moved to absolute positions. Sizes are estimated from text length (no font metrics
on a server): 7 px per character of a 12 px sans-serif font.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from grandalf.graphs import Edge as GEdge
from grandalf.graphs import Graph as GGraph
from grandalf.graphs import Vertex
from grandalf.layouts import SugiyamaLayout
from grandalf.routing import EdgeViewer, route_with_lines

from smq.graph.model import Edge, Graph, Node

CHAR_WIDTH = 7.0
NODE_HEIGHT = 44.0
MARKER = 22.0
PAD = 14.0  # inside a container, around its nested graphs
HEADER = 40.0  # a container's title band
GAP = 24.0  # between two nested graphs side by side, and between components
MARGIN = 12.0

Point = tuple[float, float]


@dataclass
class Box:
    x: float  # top-left corner
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass
class Frame:
    """A nested graph's frame inside its Parallel or Map node."""

    box: Box
    label: str


@dataclass
class Placed:
    edge: Edge
    points: list[Point]


@dataclass
class Layout:
    width: float = 0.0
    height: float = 0.0
    boxes: dict[str, Box] = field(default_factory=dict)
    edges: list[Placed] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)

    def shifted(self, dx: float, dy: float) -> Layout:
        return Layout(
            self.width,
            self.height,
            {key: Box(b.x + dx, b.y + dy, b.w, b.h) for key, b in self.boxes.items()},
            [Placed(p.edge, [(x + dx, y + dy) for x, y in p.points]) for p in self.edges],
            [Frame(Box(f.box.x + dx, f.box.y + dy, f.box.w, f.box.h), f.label) for f in self.frames],
        )

    def grown(self, margin: float) -> Layout:
        """Room for `margin` on every side (after `shifted(margin, margin)`)."""
        self.width += 2 * margin
        self.height += 2 * margin
        return self

    def absorb(self, other: Layout) -> None:
        self.boxes.update(other.boxes)
        self.edges.extend(other.edges)
        self.frames.extend(other.frames)


class _View:
    """What grandalf reads and writes on a vertex: its size, then its centre."""

    def __init__(self, w: float, h: float) -> None:
        self.w, self.h = w, h
        self.xy: Point = (0.0, 0.0)


def text_width(text: str) -> float:
    return len(text) * CHAR_WIDTH


def node_size(node: Node) -> tuple[float, float]:
    if node.marker:
        return MARKER, MARKER
    words = max(text_width(node.name), text_width(node.type + ("  " + node.detail if node.detail else "")))
    return max(96.0, words + 28.0), NODE_HEIGHT


def layout_graph(graph: Graph) -> Layout:
    """The whole graph, nested graphs inside their nodes, in absolute coordinates from (0, 0)."""
    return _level(graph).shifted(MARGIN, MARGIN).grown(MARGIN)


def _level(graph: Graph) -> Layout:
    inner: dict[str, list[Layout]] = {}
    sizes: dict[str, tuple[float, float]] = {}
    for node in graph.nodes:
        if node.children:
            inner[node.id] = [_level(child.graph) for child in node.children]
            width = sum(part.width for part in inner[node.id]) + GAP * (len(inner[node.id]) - 1)
            width = max(width + 2 * PAD, text_width(node.name) + 40.0)
            height = HEADER + max(part.height for part in inner[node.id]) + PAD
            sizes[node.id] = (width, height)
        else:
            sizes[node.id] = node_size(node)
    placed = _place(graph, sizes)
    for node in graph.nodes:
        if node.id not in inner:
            continue
        box = placed.boxes[node.id]
        x = box.x + PAD
        for child, part in zip(node.children, inner[node.id], strict=True):
            top = box.y + HEADER
            placed.frames.append(Frame(Box(x - 6, top - 16, part.width + 12, part.height + 20), child.label))
            placed.absorb(part.shifted(x, top))
            x += part.width + GAP
    return placed


def _place(graph: Graph, sizes: dict[str, tuple[float, float]]) -> Layout:
    """One level by grandalf: node centres, then edges as polylines clipped to the boxes."""
    vertices = {node.id: Vertex(node.id) for node in graph.nodes}
    for node_id, vertex in vertices.items():
        vertex.view = _View(*sizes[node_id])
    merged: dict[tuple[str, str], list[Edge]] = {}
    for edge in graph.edges:
        if edge.source in vertices and edge.target in vertices:
            merged.setdefault((edge.source, edge.target), []).append(edge)
    g_edges: dict[tuple[str, str], GEdge] = {}
    for source, target in merged:
        if source != target:
            g_edge = GEdge(vertices[source], vertices[target])
            g_edge.view = EdgeViewer()
            g_edges[(source, target)] = g_edge
    ggraph = GGraph(list(vertices.values()), list(g_edges.values()))
    result = Layout()
    offset = 0.0
    for component in ggraph.C:
        sugiyama = SugiyamaLayout(component)
        sugiyama.xspace, sugiyama.yspace = 36, 44
        sugiyama.route_edge = route_with_lines
        roots = [v for v in component.sV if v.data.endswith("^start")] or None
        sugiyama.init_all(roots=roots)
        sugiyama.draw()  # grandalf's default: 1.5 ordering rounds (3 cost twice as much, drew the same)
        left = min(v.view.xy[0] - v.view.w / 2 for v in component.sV)
        top = min(v.view.xy[1] - v.view.h / 2 for v in component.sV)
        right = max(v.view.xy[0] + v.view.w / 2 for v in component.sV)
        bottom = max(v.view.xy[1] + v.view.h / 2 for v in component.sV)
        dx, dy = offset - left, -top
        for v in component.sV:
            (cx, cy), w, h = v.view.xy, v.view.w, v.view.h
            result.boxes[v.data] = Box(cx - w / 2 + dx, cy - h / 2 + dy, w, h)
        for (source, target), g_edge in g_edges.items():
            if g_edge.v[0] in component.sV:
                points = [(x + dx, y + dy) for x, y in getattr(g_edge.view, "_pts", [])]
                for edge in merged[(source, target)]:
                    result.edges.append(Placed(edge, points))
        offset += right - left + GAP
        result.height = max(result.height, bottom - top)
    result.width = max(0.0, offset - GAP)
    for (source, target), edges in merged.items():
        if source == target:  # a state that goes on to itself: a loop on its right side
            box = result.boxes[source]
            right, mid = box.x + box.w, box.cy
            loop = [(right, mid - 8), (right + 22, mid - 8), (right + 22, mid + 8), (right, mid + 8)]
            result.edges.extend(Placed(edge, loop) for edge in edges)
    return result
