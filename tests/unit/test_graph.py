"""The graph model, its layered layout, an execution's path over it, and the three renderers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import pytest

from smq import HandlerRegistry, StateMachine, TaskError, VirtualClock
from smq.graph.layout import Box, layout_graph
from smq.graph.model import build_graph, rule_text
from smq.graph.path import Outcome, overlay_from_history, scope_prefix
from smq.graph.render import render_graph
from smq.graph.svg import render_svg
from smq.graph.text_formats import render_dot, render_mermaid

T0 = 1_735_732_800.0  # 2025-01-01T12:00:00Z
SVG = "{http://www.w3.org/2000/svg}"

DEFINITION: dict[str, Any] = {
    "StartAt": "Check",
    "States": {
        "Check": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"},
                {
                    "And": [
                        {"Variable": "$.vip", "BooleanEquals": True},
                        {"Variable": "$.n", "IsPresent": True},
                    ],
                    "Next": "Fan",
                },
            ],
            "Default": "Items",
        },
        "Big": {
            "Type": "Task",
            "Resource": "big",
            "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "MaxAttempts": 3}],
            "Catch": [{"ErrorEquals": ["Boom", "States.Timeout"], "Next": "Recover"}],
            "Next": "Done",
        },
        "Recover": {"Type": "Pass", "Next": "Done"},
        "Fan": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}},
                {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "b", "End": True}}},
            ],
            "Next": "Done",
        },
        "Items": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {
                "StartAt": "Each",
                "States": {"Each": {"Type": "Task", "Resource": "each", "End": True}},
            },
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}


def _edges(graph: Any) -> set[tuple[str, str, str, str]]:
    return {(e.source, e.target, e.kind, e.label) for e in graph.walk_edges()}


def test_every_state_and_every_edge_with_labels_and_nested_graphs() -> None:
    graph = build_graph(DEFINITION)
    states = {node.id: node.type for node in graph.walk() if not node.marker}
    assert states == {
        "Check": "Choice",
        "Big": "Task",
        "Recover": "Pass",
        "Fan": "Parallel",
        "Fan[0]/A": "Pass",
        "Fan[1]/B": "Task",
        "Items": "Map",
        "Items[*]/Each": "Task",
        "Done": "Succeed",
    }
    edges = _edges(graph)
    assert ("^start", "Check", "start", "") in edges
    assert ("Check", "Big", "choice", "$.n > 10") in edges
    assert ("Check", "Fan", "choice", "($.vip == true and $.n is present)") in edges
    assert ("Check", "Items", "default", "Default") in edges
    assert ("Big", "Recover", "catch", "catch Boom, States.Timeout") in edges
    assert ("Big", "Done", "next", "") in edges
    assert ("Done", "^end", "end", "") in edges
    assert ("Fan[1]/^start", "Fan[1]/B", "start", "") in edges
    assert ("Items[*]/Each", "Items[*]/^end", "end", "") in edges
    nodes = {node.id: node for node in graph.walk()}
    assert nodes["Big"].retry == ("Flaky",) and nodes["Big"].detail == "big"
    assert [child.label for child in nodes["Fan"].children] == ["branch 1", "branch 2"]
    assert [child.label for child in nodes["Items"].children] == ["item processor"]


def test_rule_text_reads_like_the_rule() -> None:
    assert rule_text({"Not": {"Variable": "$.s", "StringEquals": "x"}, "Next": "A"}) == 'not $.s == "x"'
    assert rule_text({"Variable": "$.a", "NumericLessThanEqualsPath": "$.b", "Next": "A"}) == "$.a <= $.b"
    assert rule_text({"Condition": "{% $states.input.n > 1 %}", "Next": "A"}) == "$states.input.n > 1"
    assert rule_text({"Or": [{"Variable": "$.x", "IsNull": False}], "Next": "A"}) == "($.x is not null)"


def _overlaps(a: Box, b: Box) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def test_layout_layers_top_down_without_overlaps_and_nests_inside_containers() -> None:
    graph = build_graph(DEFINITION)
    layout = layout_graph(graph)
    boxes = layout.boxes
    assert set(boxes) == {node.id for node in graph.walk()}
    top_level = [node.id for node in graph.nodes]
    for index, first in enumerate(top_level):
        for second in top_level[index + 1 :]:
            assert not _overlaps(boxes[first], boxes[second]), (first, second)
    assert boxes["^start"].cy < boxes["Check"].cy < boxes["Big"].cy < boxes["Done"].cy < boxes["^end"].cy
    for container, inner in (("Fan", "Fan[0]/A"), ("Fan", "Fan[1]/B"), ("Items", "Items[*]/Each")):
        outer, box = boxes[container], boxes[inner]
        assert outer.x <= box.x and box.x + box.w <= outer.x + outer.w, inner
        assert outer.y <= box.y and box.y + box.h <= outer.y + outer.h, inner
    assert not _overlaps(boxes["Fan[0]/A"], boxes["Fan[1]/B"])  # branches side by side
    for node_id, box in boxes.items():
        assert (
            0 <= box.x and box.x + box.w <= layout.width and 0 <= box.y and box.y + box.h <= layout.height
        ), node_id
    for placed in layout.edges:  # every edge starts on its source's border and ends on its target's
        (x0, y0), (x1, y1) = placed.points[0], placed.points[-1]
        source, target = boxes[placed.edge.source], boxes[placed.edge.target]
        assert source.x - 1 <= x0 <= source.x + source.w + 1 and source.y - 1 <= y0 <= source.y + source.h + 1
        assert target.x - 1 <= x1 <= target.x + target.w + 1 and target.y - 1 <= y1 <= target.y + target.h + 1


def test_layout_of_loops_and_self_loops() -> None:
    looping = {
        "StartAt": "Poll",
        "States": {
            "Poll": {"Type": "Pass", "Next": "Ready"},
            "Ready": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.done", "BooleanEquals": True, "Next": "End"}],
                "Default": "Poll",
            },
            "End": {"Type": "Succeed"},
        },
    }
    layout = layout_graph(build_graph(looping))
    back = [p for p in layout.edges if (p.edge.source, p.edge.target) == ("Ready", "Poll")]
    assert len(back) == 1 and len(back[0].points) >= 2
    assert layout.boxes["Poll"].cy < layout.boxes["Ready"].cy < layout.boxes["End"].cy


@dataclass
class _Entry:
    sequence: int
    state_name: str
    status: str
    scope: str
    attempt: int = 1


@dataclass
class _Execution:
    status: str
    current_state: str | None


def _ran(
    definition: dict[str, Any], payload: Any, registry: HandlerRegistry
) -> tuple[_Execution, list[_Entry]]:
    """Run it for real in the engine; the history as the repository would hand it out."""
    clock = VirtualClock(T0)  # Retry's back-off passes in virtual time
    result = StateMachine.from_definition(definition).run(
        payload, handlers=registry, clock=clock.now, sleep=clock.sleep
    )
    entries = [
        _Entry(i + 1, e.state_name, e.status, e.scope, e.attempt) for i, e in enumerate(result.history)
    ]
    current = result.cursor.state if result.cursor is not None else None
    return _Execution(result.status, current), entries


def _registry(fail_big: str | None = None, flaky_times: int = 0) -> HandlerRegistry:
    registry = HandlerRegistry()
    calls = {"big": 0}

    @registry.handler("big")
    def big(payload: Any, ctx: Any) -> Any:
        calls["big"] += 1
        if calls["big"] <= flaky_times:
            raise TaskError("Flaky", "try again")
        if fail_big:
            raise TaskError(fail_big, f"{fail_big} on purpose")
        return {}

    for resource in ("b", "each"):
        registry.handler(resource)(lambda payload, ctx: {})
    return registry


def test_path_of_a_retried_state_and_the_choice_taken() -> None:
    graph = build_graph(DEFINITION)
    execution, history = _ran(DEFINITION, {"n": 11}, _registry(flaky_times=2))
    overlay = overlay_from_history(graph, execution, history)
    assert overlay.outcome("Check") == Outcome.SUCCEEDED
    assert overlay.outcome("Big") == Outcome.RETRIED
    assert overlay.outcome("Done") == Outcome.SUCCEEDED
    assert overlay.outcome("Fan") == Outcome.NOT_REACHED and overlay.outcome("Recover") == Outcome.NOT_REACHED
    assert {("^start", "Check"), ("Check", "Big"), ("Big", "Done"), ("Done", "^end")} <= overlay.taken
    assert ("Check", "Fan") not in overlay.taken and ("Big", "Big") not in overlay.taken
    assert len(overlay.visits["Big"]) == 3


def test_path_of_a_caught_failure_and_of_an_uncaught_one() -> None:
    graph = build_graph(DEFINITION)
    execution, history = _ran(DEFINITION, {"n": 11}, _registry(fail_big="Boom"))
    overlay = overlay_from_history(graph, execution, history)
    assert overlay.outcome("Big") == Outcome.CAUGHT and overlay.outcome("Recover") == Outcome.SUCCEEDED
    assert ("Big", "Recover") in overlay.taken
    execution, history = _ran(DEFINITION, {"n": 11}, _registry(fail_big="Other"))
    assert execution.status == "FAILED"
    overlay = overlay_from_history(graph, execution, history)
    assert overlay.outcome("Big") == Outcome.FAILED and overlay.outcome("Done") == Outcome.NOT_REACHED


def test_path_inside_parallel_branches_and_map_iterations() -> None:
    graph = build_graph(DEFINITION)
    execution, history = _ran(DEFINITION, {"n": 1, "vip": True}, _registry())
    overlay = overlay_from_history(graph, execution, history)
    assert overlay.outcome("Fan[0]/A") == overlay.outcome("Fan[1]/B") == Outcome.SUCCEEDED
    assert ("Fan[1]/^start", "Fan[1]/B") in overlay.taken and ("Fan[1]/B", "Fan[1]/^end") in overlay.taken
    assert overlay.iterations == {"Fan[0]": "SUCCEEDED", "Fan[1]": "SUCCEEDED"}
    execution, history = _ran(DEFINITION, {"n": 1, "vip": False, "items": [1, 2, 3]}, _registry())
    overlay = overlay_from_history(graph, execution, history)
    assert overlay.outcome("Items[*]/Each") == Outcome.SUCCEEDED and len(overlay.visits["Items[*]/Each"]) == 3
    assert set(overlay.iterations) == {"Items[0]", "Items[1]", "Items[2]"}


def test_running_and_waiting_states_and_unknown_scopes() -> None:
    graph = build_graph(DEFINITION)
    history = [_Entry(1, "Check", "SUCCEEDED", "")]
    overlay = overlay_from_history(graph, _Execution("RUNNING", "Big"), history)
    assert overlay.outcome("Big") == Outcome.RUNNING and ("Check", "Big") in overlay.taken
    overlay = overlay_from_history(graph, _Execution("WAITING", "Items"), history)
    assert overlay.outcome("Items") == Outcome.WAITING
    nodes = {node.id: node for node in graph.walk()}
    assert scope_prefix("Fan[1]", nodes) == "Fan[1]/" and scope_prefix("Items[7]", nodes) == "Items[*]/"
    assert scope_prefix("Big[0]", nodes) is None and scope_prefix("Gone[0]", nodes) is None


HOSTILE = "<script>alert(1)</script>\"&'"


def test_every_renderer_escapes_names_and_labels() -> None:
    definition = {
        "StartAt": HOSTILE,
        "States": {
            HOSTILE: {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.x", "StringEquals": "<img src=x onerror=alert(1)>", "Next": "End"}
                ],
                "Default": "End",
            },
            "End": {"Type": "Succeed"},
        },
    }
    graph = build_graph(definition)
    svg = render_svg(graph)
    root = ET.fromstring(svg)  # well-formed, whatever the names hold
    assert root.find(f"{SVG}script") is None and "<script>" not in svg and "<img" not in svg
    texts = [element.text for element in root.iter(f"{SVG}text")]
    assert HOSTILE in texts and '$.x == "<img src=x onerror=alert(1)>"' in texts
    dot = render_dot(graph)
    assert '"<script>alert(1)</script>\\"&\'\\nChoice"' in dot
    mermaid = render_mermaid(graph)
    assert "#lt;script#gt;alert(1)#lt;/script#gt;#quot;&'" in mermaid and "<script>" not in mermaid


def test_render_graph_with_an_execution_colours_every_format() -> None:
    execution, history = _ran(DEFINITION, {"n": 11}, _registry(fail_big="Other"))
    svg = render_graph(DEFINITION, "svg", execution=execution, history=history)
    root = ET.fromstring(svg)
    classes = {g.get("data-state"): g.get("class") for g in root.iter(f"{SVG}g") if g.get("data-state")}
    assert "outcome-failed" in classes["Big"] and "outcome-not-reached" in classes["Done"]
    assert "outcome-succeeded" in classes["Check"]
    assert 'fillcolor="#fee2e2", color="#b91c1c"' in render_graph(
        DEFINITION, "dot", execution=execution, history=history
    )
    mermaid = render_graph(DEFINITION, "mermaid", execution=execution, history=history)
    big = next(line for line in mermaid.splitlines() if "Big · Task" in line).split("[")[0].strip()
    assert f"class {big} failed" in mermaid
    with pytest.raises(ValueError, match="format"):
        render_graph(DEFINITION, "png")
