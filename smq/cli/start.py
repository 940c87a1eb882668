"""`smq start`: start one execution of a stored machine, or one per line of a JSONL file."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from smq.cli.common import (
    EXIT_NOT_SUCCEEDED,
    EXIT_OK,
    UsageError,
    console,
    echo_json,
    error_console,
    fail,
    handlers_option,
    json_option,
    load_handlers,
    load_settings,
    open_repository,
    parse_json_argument,
    print_enqueue_summary,
    progress_bar,
    requeue_unstarted_option,
)
from smq.cli.run import result_json
from smq.engine.errors import SmqError
from smq.engine.handlers import default_registry
from smq.engine.status import Status
from smq.execution.runner import StartRequest, start_execution
from smq.launching import enqueues
from smq.repository.repository import ExecutionRecord, Repository
from smq.settings import QUEUES

if TYPE_CHECKING:
    from smq.distributed.client import QueueClient


def read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """Every line parsed up front, so a bad line stops the command before anything starts."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"--inputs: cannot read {path}: {exc.strerror}") from None
    parsed = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            parsed.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise UsageError(f"--inputs: {path}:{number}: not valid JSON ({exc.msg})") from None
    return parsed


@click.command()
@click.argument("state_machine_id")
@click.option("--input", "input_text", metavar="JSON|@FILE", help="Execution input (default {}).")
@click.option(
    "--inputs", "inputs_file", type=click.Path(dir_okay=False), help="JSONL file: one execution per line."
)
@click.option("--name", help="Execution name (single start). Re-using a name returns that execution.")
@click.option("--name-prefix", help="Bulk start: names are PREFIX + line number (default: FILE stem + '-').")
@click.option("--version", type=click.IntRange(min=1), help="Definition version (default: latest).")
@click.option(
    "--source-execution",
    "source_execution_id",
    metavar="EID",
    help="Chain: take the input from this execution (an id or STATE_MACHINE_ID/NAME).",
)
@click.option("--source-state", "source_state_name", help="Chain from the last output of this state.")
@click.option("--transformer", help="Chain through this registered input transformer.")
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=4, show_default=True, help="Bulk start workers."
)
@click.option(
    "--queue",
    type=click.Choice(QUEUES),
    default="default",
    show_default=True,
    help="Queue to enqueue on (when SMQ_BROKER_URL is set).",
)
@click.option("--local", is_flag=True, help="Run in this process even when SMQ_BROKER_URL is set.")
@requeue_unstarted_option
@handlers_option
@json_option
def start(
    state_machine_id: str,
    input_text: str | None,
    inputs_file: str | None,
    name: str | None,
    name_prefix: str | None,
    version: int | None,
    source_execution_id: str | None,
    source_state_name: str | None,
    transformer: str | None,
    concurrency: int,
    queue: str,
    local: bool,
    requeue_unstarted: bool,
    handler_modules: tuple[str, ...],
    as_json: bool,
) -> None:
    """Start executions of a stored state machine.

    With SMQ_BROKER_URL set they are enqueued for the workers (names are deterministic, so re-running
    enqueues nothing twice); with --local, or without a broker, they run in this process."""
    settings = load_settings()
    distributed = enqueues(settings, local=local)
    if not distributed:
        load_handlers(settings, handler_modules)
    if requeue_unstarted and (inputs_file is None or not distributed):
        raise UsageError("--requeue-unstarted applies to --inputs in distributed mode (SMQ_BROKER_URL)")
    if inputs_file is not None:
        if input_text is not None or name is not None or source_execution_id is not None:
            raise UsageError(
                "--inputs starts one execution per line: do not combine with --input, --name or --source-execution"
            )
        if distributed:
            bulk_enqueue(
                state_machine_id,
                Path(inputs_file),
                name_prefix,
                version,
                queue,
                as_json,
                settings,
                requeue_unstarted=requeue_unstarted,
            )
        else:
            bulk_start(
                state_machine_id, Path(inputs_file), name_prefix, version, concurrency, as_json, settings
            )
        return
    if name_prefix is not None:
        raise UsageError("--name-prefix applies to --inputs")
    if (source_state_name or transformer) and not source_execution_id:
        raise UsageError("--source-state and --transformer need --source-execution")
    execution_input = parse_json_argument(input_text, "--input")
    repository = open_repository(settings)
    if source_execution_id is not None:
        # An id or STATE_MACHINE_ID/NAME, as everywhere else: what is recorded and sent is the id.
        try:
            source_execution_id = repository.resolve_execution(source_execution_id).execution_id
        except SmqError as exc:
            fail(f"smq start {state_machine_id}: --source-execution: {exc}", EXIT_NOT_SUCCEEDED)
    if distributed:
        payload = {
            "state_machine_id": state_machine_id,
            "name": name,
            "version": version,
            "input": execution_input,
            "source_execution_id": source_execution_id,
            "source_state_name": source_state_name,
            "transformer": transformer,
        }
        enqueue_one(repository, payload, queue, as_json)
        return
    request = StartRequest(
        state_machine_id,
        execution_input,
        name=name,
        version=version,
        source_execution_id=source_execution_id,
        source_state_name=source_state_name,
        transformer=transformer,
    )
    try:
        record = _start_here(repository, request, settings)
    except SmqError as exc:
        fail(f"smq start {state_machine_id}: {exc}")
    if as_json:
        echo_json(result_json(record))
    else:
        click.echo(f"{record.execution_id} {record.name} {record.status}")
        if record.error is not None:
            click.echo(f"  {record.error}: {record.cause}", err=True)
        elif record.status == Status.WAITING:
            click.echo("  parked: `smq executions show` says what it waits for", err=True)
    sys.exit(EXIT_OK if record.status == Status.SUCCEEDED else EXIT_NOT_SUCCEEDED)


def _start_here(repository: Repository, request: StartRequest, settings: Any) -> ExecutionRecord:
    """Run the execution `request` names in this process, with the settings' limits and lease."""
    return start_execution(
        repository,
        request,
        handlers=default_registry,
        payload_limit=settings.payload_limit,
        identity=settings.aws_identity,
        lease_seconds=settings.lease_seconds,
        checkpoints=settings.checkpoints,
    )


def bulk_start(
    state_machine_id: str,
    path: Path,
    name_prefix: str | None,
    version: int | None,
    concurrency: int,
    as_json: bool,
    settings: Any,
) -> None:
    lines = read_jsonl(path)
    prefix = f"{path.stem}-" if name_prefix is None else name_prefix
    repository = open_repository(settings)
    try:
        machine, resolved_version = repository.state_machine(state_machine_id, version)
        machine.check_handlers(default_registry)
    except SmqError as exc:
        fail(f"smq start {state_machine_id}: {exc}")
    counts: dict[str, int] = {}

    def one(item: tuple[int, Any]) -> str:
        number, execution_input = item
        request = StartRequest(
            state_machine_id, execution_input, name=f"{prefix}{number}", version=resolved_version
        )
        try:
            return _start_here(repository, request, settings).status
        except SmqError as exc:
            error_console().print(f"line {number}: {exc}")
            return "ERROR"

    progress = progress_bar("starting", hidden=as_json)
    with progress, ThreadPoolExecutor(max_workers=concurrency) as pool:
        task = progress.add_task("start", total=len(lines))
        for status in pool.map(one, lines):
            counts[status] = counts.get(status, 0) + 1
            progress.advance(task)
    if as_json:
        echo_json({"state_machine_id": state_machine_id, "version": resolved_version, "counts": counts})
    else:
        table = Table(
            title=f"{state_machine_id} v{resolved_version}: {len(lines)} execution(s)", show_edge=False
        )
        table.add_column("status")
        table.add_column("count", justify="right")
        for status, count in sorted(counts.items()):
            table.add_row(status, str(count))
        console().print(table)
    sys.exit(EXIT_OK if set(counts) <= {Status.SUCCEEDED} else EXIT_NOT_SUCCEEDED)


def _enqueue_client(repository: Repository, state_machine_id: str, version: int | None) -> QueueClient:
    from smq.distributed.client import QueueClient

    try:
        repository.state_machine(state_machine_id, version)  # fail here, not on every worker
    except SmqError as exc:
        fail(f"smq start {state_machine_id}: {exc}")
    return QueueClient(repository)


def enqueue_one(repository: Repository, payload: dict[str, Any], queue: str, as_json: bool) -> None:
    client = _enqueue_client(repository, payload["state_machine_id"], payload["version"])
    try:
        sent = client.enqueue({key: value for key, value in payload.items() if value is not None}, queue)
    except (SmqError, ValueError) as exc:
        fail(f"smq start {payload['state_machine_id']}: {exc}")
    # The execution's reference (STATE_MACHINE_ID/NAME) is what every other command takes; the task id
    # is Celery's (Flower, the dead letters).
    execution = f"{payload['state_machine_id']}/{sent.name}"
    if as_json:
        echo_json(
            {
                "execution": execution,
                "task_id": sent.task_id,
                "name": sent.name,
                "queue": sent.queue,
                "skipped": sent.skipped,
            }
        )
    elif sent.skipped:
        click.echo(f"{execution}: already enqueued or run, nothing enqueued")
    else:
        click.echo(f"{execution} enqueued on {sent.queue} (task {sent.task_id})")


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Stream (line number, value) of a JSONL file already checked by `check_jsonl`."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield number, json.loads(line)


def check_jsonl(path: Path) -> int:
    """Validate every line before anything is enqueued, without keeping them; returns the count."""
    count = 0
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UsageError(f"--inputs: {path}:{number}: not valid JSON ({exc.msg})") from None
                count += 1
    except OSError as exc:
        raise UsageError(f"--inputs: cannot read {path}: {exc.strerror}") from None
    return count


def bulk_enqueue(
    state_machine_id: str,
    path: Path,
    name_prefix: str | None,
    version: int | None,
    queue: str,
    as_json: bool,
    settings: Any,
    *,
    requeue_unstarted: bool = False,
) -> None:
    total = check_jsonl(path)
    prefix = f"{path.stem}-" if name_prefix is None else name_prefix
    repository = open_repository(settings)
    client = _enqueue_client(repository, state_machine_id, version)
    payloads = (
        {
            "state_machine_id": state_machine_id,
            "name": f"{prefix}{number}",
            "input": value,
            **({"version": version} if version is not None else {}),
        }
        for number, value in iter_jsonl(path)
    )
    progress = progress_bar(f"enqueueing on {queue}", hidden=as_json)
    with progress:
        task = progress.add_task("enqueue", total=total)
        try:
            summary = client.enqueue_many(
                payloads,
                queue,
                on_chunk=lambda done, _summary: progress.advance(task, done),
                requeue_unstarted=requeue_unstarted,
            )
        except (SmqError, ValueError) as exc:
            fail(f"smq start {state_machine_id}: {exc}")
    if as_json:
        echo_json({"state_machine_id": state_machine_id, "queue": queue, "lines": total, **summary.to_dict()})
    else:
        print_enqueue_summary(
            f"{state_machine_id}: {total} line(s) → queue {queue}",
            summary,
            "skipped (queued, running or run)",
        )
    sys.exit(EXIT_NOT_SUCCEEDED if summary.failed else EXIT_OK)
