"""The console's pages (GET only: nothing here changes anything)."""

from __future__ import annotations

import difflib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from smq.distributed.stats import collect_stats
from smq.engine.fanout import branch_progress
from smq.engine.status import Status
from smq.graph.path import Outcome, overlay_from_history
from smq.graph.svg import render_svg
from smq.repository.child_links import children_of, parent_of
from smq.repository.filters import (
    FILTER_KEYS,
    ExecutionFilter,
    FilterError,
    parse_filter,
    parse_timestamp_value,
)
from smq.repository.operator_actions import actions_of
from smq.repository.paging import InvalidPageToken
from smq.repository.queue_records import DeadLetters
from smq.repository.records import NotFound
from smq.repository.waits import WaitStore
from smq.settings import QUEUES
from smq.web import present
from smq.web.console import Console

PAGE_SIZES = (25, 50, 100, 200)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def not_found(request: Request, message: str) -> HTMLResponse:
    return console_of(request).render(
        request, "error.html", status_code=404, title="Not found", message=message
    )


# ---------------------------------------------------------------------------------------------- overview


def overview_context(console: Console) -> dict[str, Any]:
    now = datetime.now(UTC)
    hour = console.queries.counts_since(now - timedelta(hours=1))
    day = console.queries.counts_since(now - timedelta(days=1))
    stats = collect_stats(console.repository, console.settings.broker_url)
    machines = sorted(set(hour) | set(day))
    return {
        "now": now,
        "machines": machines,
        "hour": hour,
        "day": day,
        "stats": stats,
        "waits": console.queries.wait_counts(),
        "dead_total": sum(counts.get("dead", 0) for counts in stats["queues"].values()),
        "by_status": stats["executions"],
    }


def overview(request: Request) -> Response:
    console = console_of(request)
    return console.render(request, "overview.html", title="Overview", **overview_context(console))


def overview_live(request: Request) -> Response:
    """The overview's figures alone: what its page fetches every few seconds."""
    console = console_of(request)
    return console.render(request, "_overview_live.html", **overview_context(console))


# ---------------------------------------------------------------------------------------------- machines


def machines(request: Request) -> Response:
    console = console_of(request)
    rows = console.repository.list_definitions()
    return console.render(request, "machines.html", title="State machines", machines=rows)


def _version(request: Request, key: str) -> int | None:
    raw = request.query_params.get(key)
    if not raw:
        return None
    if not raw.isdigit():
        raise ValueError(f"{key}: {raw!r} is not a version number")
    return int(raw)


def machine(request: Request) -> Response:
    console = console_of(request)
    machine_id = request.path_params["machine_id"]
    try:
        record = console.repository.get_definition(machine_id, _version(request, "version"))
    except (NotFound, ValueError) as exc:
        return not_found(request, str(exc))
    graph, layout = console.graph(machine_id, record.version, record.definition)
    svg = render_svg(graph, standalone=False, layout=layout)
    versions = console.queries.versions(machine_id)
    return console.render(
        request,
        "machine.html",
        title=f"{machine_id} v{record.version}",
        record=record,
        svg=svg,
        versions=versions,
        definition_json=present.pretty_json(record.definition),
    )


def compare(request: Request) -> Response:
    console = console_of(request)
    machine_id = request.path_params["machine_id"]
    try:
        left = console.repository.get_definition(machine_id, _version(request, "left"))
        right = console.repository.get_definition(machine_id, _version(request, "right"))
    except (NotFound, ValueError) as exc:
        return not_found(request, str(exc))
    left_text = present.pretty_json(left.definition).splitlines()
    right_text = present.pretty_json(right.definition).splitlines()
    diff = list(
        difflib.unified_diff(left_text, right_text, f"v{left.version}", f"v{right.version}", lineterm="")
    )
    return console.render(
        request,
        "compare.html",
        title=f"{machine_id}: v{left.version} and v{right.version}",
        machine_id=machine_id,
        left=left,
        right=right,
        left_svg=_svg(console, left, "left"),
        right_svg=_svg(console, right, "right"),
        diff=diff,
        versions=console.queries.versions(machine_id),
    )


def _svg(console: Console, record: Any, id_prefix: str) -> str:
    graph, layout = console.graph(record.state_machine_id, record.version, record.definition)
    return render_svg(graph, standalone=False, id_prefix=id_prefix, layout=layout)


# ---------------------------------------------------------------------------------------------- executions


def execution_filter(params: Any) -> ExecutionFilter:
    """Every `--filter` key as its own field (and `filter`, the CLI's text, for pasting); the same
    parser and the same errors as the CLI."""
    overrides: dict[str, Any] = {}
    for key in FILTER_KEYS:
        value = (params.get(key) or "").strip()
        if key == "status":
            chosen = [s for s in params.getlist("status") if s]
            if chosen:
                overrides["statuses"] = tuple(s.strip().upper() for s in chosen)
        elif not value:
            continue
        elif key in ("started_after", "started_before"):
            overrides[key] = parse_timestamp_value(key, value)
        else:
            overrides[key] = value
    text = (params.get("filter") or "").strip() or None
    flt = parse_filter(text)
    clashes = [key for key in overrides if getattr(flt, key) not in (None, ())]
    if clashes:
        raise FilterError(f"{clashes[0]}: given in the filter text and as a field")
    return parse_filter(text, **overrides)


def executions(request: Request) -> Response:
    console = console_of(request)
    params = request.query_params
    limit = (
        int(params["limit"])
        if params.get("limit", "").isdigit() and int(params["limit"]) in PAGE_SIZES
        else 50
    )
    oldest_first = params.get("order") == "oldest"
    error = None
    page = None
    try:
        flt = execution_filter(params)
        page = console.repository.page_executions(
            flt, limit=limit, page_token=params.get("token") or None, oldest_first=oldest_first
        )
    except (FilterError, InvalidPageToken) as exc:
        error = str(exc)
    kept = [(key, value) for key, value in params.multi_items() if key != "token" and value]
    next_url = None
    if page is not None and page.next_token:
        next_url = "/executions?" + urlencode([*kept, ("token", page.next_token)])
    return console.render(
        request,
        "executions.html",
        title="Executions",
        page=page,
        error=error,
        params=params,
        chosen_statuses=set(params.getlist("status")),
        filter_keys=FILTER_KEYS,
        machines=[row["state_machine_id"] for row in console.repository.list_definitions()],
        limit=limit,
        page_sizes=PAGE_SIZES,
        oldest_first=oldest_first,
        next_url=next_url,
        first_url="/executions?" + urlencode(kept),
        paged=bool(params.get("token")),
    )


def _execution(console: Console, reference: str) -> Any:
    try:
        return console.repository.get_execution(reference)
    except NotFound:
        return console.repository.resolve_execution(reference)


def execution(request: Request) -> Response:
    console = console_of(request)
    try:
        record = _execution(console, request.path_params["execution_id"])
    except NotFound as exc:
        return not_found(request, str(exc))
    repository = console.repository
    history = repository.history(record.execution_id)
    definition = repository.get_definition(record.state_machine_id, record.version).definition
    graph, layout = console.graph(record.state_machine_id, record.version, definition)
    overlay = overlay_from_history(graph, record, history)
    nodes = present.nodes_by_id(graph)
    rows = [(entry, present.node_of(nodes, entry.scope, entry.state_name)) for entry in history]
    notes = {}
    failed_node = None
    for entry, node_id in reversed(rows):
        if node_id is not None and entry.status == "FAILED" and overlay.outcome(node_id) == Outcome.FAILED:
            failed_node = (node_id, entry)
            notes[node_id] = present.short(entry.error, 40)
            break
    if failed_node is None and record.status in ("FAILED", "TIMED_OUT", "ABORTED") and record.current_state:
        notes[record.current_state] = present.short(record.error, 40)
    selected = request.query_params.get("state")
    base = f"/executions/{quote(record.execution_id)}"
    svg = render_svg(
        graph,
        overlay,
        link=lambda node: f"{base}?state={quote(node.id, safe='')}#state",
        notes=notes,
        selected=selected,
        standalone=False,
        layout=layout,
    )
    visits = [entry for entry, node_id in rows if selected is not None and node_id == selected]
    source = None
    if record.source_execution_id:
        try:
            source = repository.get_execution(record.source_execution_id)
        except NotFound:
            source = None
    waits = console.queries.open_waits(execution_id=record.execution_id)
    undelivered = WaitStore(repository.engine).undelivered(record.execution_id)
    return console.render(
        request,
        "execution.html",
        title=f"{record.state_machine_id}/{record.name}",
        record=record,
        svg=svg,
        history=rows,
        selected=selected,
        selected_node=nodes.get(selected) if selected else None,
        visits=visits,
        outcome=overlay.outcome(selected).value if selected else None,
        source=source,
        targets=repository.chained_targets(record.execution_id),
        parent=parent_of(repository.reader, record.execution_id),
        children=children_of(repository.reader, record.execution_id),
        iterations=sorted(overlay.iterations.items(), key=lambda item: _scope_key(item[0])),
        branches=branch_progress((record.cursor or {}).get("pending")),
        waits=waits,
        undelivered=undelivered,
        actions=actions_of(repository.reader, record.execution_id),
        failed=failed_node[1] if failed_node else None,
        finished=record.status in ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"),
        can_redrive=record.status in ("FAILED", "TIMED_OUT", "ABORTED"),
        can_stop=record.status in ("RUNNING", "WAITING", "PAUSED"),
        can_resume=record.status == Status.PAUSED,
        outcomes=[o.value for o in Outcome],
    )


def _scope_key(scope: str) -> list[Any]:
    """`Map[10]` after `Map[9]`."""
    key: list[Any] = []
    for segment in scope.split("/"):
        name, _, index = segment.rpartition("[")
        key.append((name, int(index[:-1]) if index[:-1].isdigit() else 0))
    return key


def execution_state(request: Request) -> Response:
    """What the execution page polls while the execution is not finished."""
    console = console_of(request)
    try:
        record = _execution(console, request.path_params["execution_id"])
    except NotFound as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    return JSONResponse(
        {
            "status": record.status,
            "history_length": record.history_length,
            "current_state": record.current_state,
        }
    )


# ---------------------------------------------------------------------------------------------- dead letters

DEAD_LETTER_PAGE = 100  # the newest first, a page at a time (keyset pages, as `smq dead list`)


def dead_letters(request: Request) -> Response:
    console = console_of(request)
    queue = request.query_params.get("queue") or None
    if queue is not None and queue not in QUEUES:
        queue = None
    token = request.query_params.get("token") or None
    error = None
    try:
        letters, next_token = DeadLetters(console.repository.reader).page(
            queue=queue, limit=DEAD_LETTER_PAGE, page_token=token
        )
    except InvalidPageToken as exc:
        letters, next_token, error = [], None, str(exc)
    kept = [("queue", queue)] if queue else []
    return console.render(
        request,
        "dead.html",
        title="Dead letters",
        letters=letters,
        queue=queue,
        queues=QUEUES,
        total=console.queries.dead_letter_count(),
        error=error,
        paged=token is not None,
        first_url="/dead?" + urlencode(kept),
        next_url="/dead?" + urlencode([*kept, ("token", next_token)]) if next_token else None,
    )


def dead_letter(request: Request) -> Response:
    console = console_of(request)
    letter = DeadLetters(console.repository.reader).get(request.path_params["task_id"])
    if letter is None:
        return not_found(request, f"no dead letter with task id {request.path_params['task_id']!r}")
    found = None
    if letter.state_machine_id and letter.execution_name:
        found = console.repository.find_execution(letter.state_machine_id, letter.execution_name)
    return console.render(
        request,
        "dead_letter.html",
        title=f"Dead letter {letter.task_id}",
        letter=letter,
        execution=found,
        payload_json=present.pretty_json(letter.payload),
    )


# ---------------------------------------------------------------------------------------------- waiting


def waiting(request: Request) -> Response:
    console = console_of(request)
    kind = request.query_params.get("kind") or None
    waits = console.queries.open_waits(kind=kind, limit=500)
    return console.render(
        request,
        "waiting.html",
        title="Waiting",
        waits=waits,
        kind=kind,
        counts=console.queries.wait_counts(),
        now=datetime.now(UTC),
    )


def definition_json(request: Request) -> Response:
    """A stored definition as JSON (for a download link)."""
    console = console_of(request)
    try:
        record = console.repository.get_definition(
            request.path_params["machine_id"], _version(request, "version")
        )
    except (NotFound, ValueError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    return Response(json.dumps(record.definition, indent=2), media_type="application/json")
