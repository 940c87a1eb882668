"""`smq start`: start one execution of a stored machine, or one per line of a JSONL file."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.table import Table

from smq.cli.common import (
    EXIT_NOT_SUCCEEDED,
    EXIT_OK,
    UsageError,
    console,
    echo_json,
    error_console,
    handlers_option,
    json_option,
    load_handlers,
    load_settings,
    open_repository,
    parse_json_argument,
    parse_tags,
    print_enqueue_summary,
    progress_bar,
    requeue_unstarted_option,
    tag_option,
)
from smq.cli.run import result_json
from smq.engine.errors import SmqError
from smq.engine.handlers import default_registry
from smq.engine.status import FINAL_STATUSES, Status
from smq.execution.runner import StartRequest, start_execution
from smq.launching import enqueues
from smq.repository.repository import ExecutionRecord, NotFound, Repository
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
    "--index",
    type=click.IntRange(min=0),
    help="Its position in a batch, kept and shown (bulk: each line's, from 0).",
)
@tag_option
@click.option(
    "--source-execution",
    "source_execution_id",
    metavar="EID",
    help="Chain: take the input from this execution (an id or STATE_MACHINE_ID/NAME).",
)
@click.option("--source-state", "source_state_name", help="Chain from the last output of this state.")
@click.option("--transformer", help="Chain through this registered input transformer.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="--inputs run here (no broker, or --local): executions at once (threads).",
)
@click.option(
    "--queue",
    type=click.Choice(QUEUES),
    default="default",
    show_default=True,
    help="Queue to enqueue on (when SMQ_BROKER_URL is set).",
)
@click.option("--local", is_flag=True, help="Run in this process even when SMQ_BROKER_URL is set.")
@click.option(
    "--wait",
    is_flag=True,
    help="Block until the execution (every one, with --inputs) ends, enqueued, parked or run here, and "
    "exit with its code: 0 all SUCCEEDED, 1 otherwise.",
)
@click.option(
    "--timeout",
    "wait_timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="With --wait: stop waiting after SECONDS (exit 1, the execution goes on).",
)
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
    index: int | None,
    tag_pairs: tuple[str, ...],
    source_execution_id: str | None,
    source_state_name: str | None,
    transformer: str | None,
    concurrency: int,
    queue: str,
    local: bool,
    wait: bool,
    wait_timeout: float | None,
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
    tags = parse_tags(tag_pairs)
    if wait_timeout is not None and not wait:
        raise UsageError("--timeout applies to --wait")
    if requeue_unstarted and (inputs_file is None or not distributed):
        raise UsageError("--requeue-unstarted applies to --inputs in distributed mode (SMQ_BROKER_URL)")
    if inputs_file is not None:
        if input_text is not None or name is not None or source_execution_id is not None or index is not None:
            raise UsageError(
                "--inputs starts one execution per line: do not combine with --input, --name, --index or "
                "--source-execution"
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
                wait=wait,
                wait_timeout=wait_timeout,
                tags=tags,
            )
        else:
            bulk_start(
                state_machine_id,
                Path(inputs_file),
                name_prefix,
                version,
                concurrency,
                as_json,
                settings,
                wait=wait,
                wait_timeout=wait_timeout,
                tags=tags,
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
        source_execution_id = repository.resolve_execution(source_execution_id).execution_id
    if distributed:
        payload = {
            "state_machine_id": state_machine_id,
            "name": name,
            "version": version,
            "input": execution_input,
            "source_execution_id": source_execution_id,
            "source_state_name": source_state_name,
            "transformer": transformer,
            "index": index,
            "tags": tags,
        }
        execution_name = enqueue_one(repository, payload, queue, as_json, quiet=wait and as_json)
        if wait:
            report_end(await_end(repository, state_machine_id, execution_name, wait_timeout), as_json)
        return
    request = StartRequest(
        state_machine_id,
        execution_input,
        name=name,
        version=version,
        source_execution_id=source_execution_id,
        source_state_name=source_state_name,
        transformer=transformer,
        index=index,
        tags=tags,
    )
    record = _start_here(repository, request, settings)
    if wait and record.status not in FINAL_STATUSES:
        # Parked (a message, a callback): it ends when answered, in whichever process answers it.
        click.echo(f"{record.execution_id} {record.name} {record.status}: waiting for its end", err=True)
        record = await_end(repository, record.state_machine_id, record.name, wait_timeout)
    report_end(record, as_json)


def report_end(record: ExecutionRecord, as_json: bool) -> NoReturn:
    """Print where an execution stands and exit with its code: 0 SUCCEEDED, 1 anything else."""
    if as_json:
        echo_json(result_json(record))
    else:
        click.echo(f"{record.execution_id} {record.name} {record.status}")
        if record.error is not None:
            click.echo(f"  {record.error}: {record.cause}", err=True)
        elif record.status == Status.WAITING:
            click.echo("  parked: `smq executions show` says what it waits for", err=True)
    sys.exit(EXIT_OK if record.status == Status.SUCCEEDED else EXIT_NOT_SUCCEEDED)


def await_end(
    repository: Repository, state_machine_id: str, name: str, timeout: float | None
) -> ExecutionRecord:
    """Poll the execution until its status is final (or `timeout` passes: then it is returned as it
    stands). Polling the database works the same for a worker, a parked execution and this process;
    the interval grows from 0.1 s to 1 s, so a long wait costs one cheap read a second."""
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = 0.1
    while True:
        record = repository.find_execution(state_machine_id, name)
        if record is not None and record.status in FINAL_STATUSES:
            return record
        if deadline is not None and time.monotonic() >= deadline:
            if record is None:
                raise NotFound(f"{state_machine_id}/{name} has not started within {timeout:g}s")
            click.echo(f"{state_machine_id}/{name}: still {record.status} after {timeout:g}s", err=True)
            return record
        time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))
        interval = min(1.0, interval * 1.5)


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
        state_machine_arns=settings.state_machine_arns,
    )


def bulk_start(
    state_machine_id: str,
    path: Path,
    name_prefix: str | None,
    version: int | None,
    concurrency: int,
    as_json: bool,
    settings: Any,
    *,
    wait: bool = False,
    wait_timeout: float | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    lines = read_jsonl(path)
    prefix = f"{path.stem}-" if name_prefix is None else name_prefix
    repository = open_repository(settings)
    machine, resolved_version = repository.state_machine(state_machine_id, version)
    machine.check_handlers(default_registry)
    counts: dict[str, int] = {}

    positions = {number: position for position, (number, _) in enumerate(lines)}

    def one(item: tuple[int, Any]) -> str:
        number, execution_input = item
        request = StartRequest(
            state_machine_id,
            execution_input,
            name=f"{prefix}{number}",
            version=resolved_version,
            index=positions[number],
            tags=tags,
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
    if wait and not set(counts) <= FINAL_STATUSES | {"ERROR"}:  # some parked: wait for their answers
        names = [f"{prefix}{number}" for number, _ in lines]
        report_batch(
            state_machine_id,
            await_batch(repository, state_machine_id, names, wait_timeout, as_json),
            len(names),
            as_json,
        )
    if as_json:
        echo_json({"state_machine_id": state_machine_id, "version": resolved_version, "counts": counts})
    else:
        print_counts(f"{state_machine_id} v{resolved_version}: {len(lines)} execution(s)", counts)
    sys.exit(EXIT_OK if set(counts) <= {Status.SUCCEEDED} else EXIT_NOT_SUCCEEDED)


def _enqueue_client(repository: Repository, state_machine_id: str, version: int | None) -> QueueClient:
    from smq.distributed.client import QueueClient

    repository.state_machine(state_machine_id, version)  # fail here, not on every worker
    return QueueClient(repository)


def enqueue_one(
    repository: Repository, payload: dict[str, Any], queue: str, as_json: bool, *, quiet: bool = False
) -> str:
    """Enqueue one execution and say so (unless `quiet`: --wait --json prints only its end); returns
    its name."""
    client = _enqueue_client(repository, payload["state_machine_id"], payload["version"])
    sent = client.enqueue({key: value for key, value in payload.items() if value is not None}, queue)
    # The execution's reference (STATE_MACHINE_ID/NAME) is what every other command takes; the task id
    # is Celery's (Flower, the dead letters).
    execution = f"{payload['state_machine_id']}/{sent.name}"
    if quiet:
        pass
    elif as_json:
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
    return sent.name


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
    wait: bool = False,
    wait_timeout: float | None = None,
    tags: dict[str, str] | None = None,
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
            "index": position,
            **({"version": version} if version is not None else {}),
            **({"tags": tags} if tags else {}),
        }
        for position, (number, value) in enumerate(iter_jsonl(path))
    )
    progress = progress_bar(f"enqueueing on {queue}", hidden=as_json)
    with progress:
        task = progress.add_task("enqueue", total=total)
        summary = client.enqueue_many(
            payloads,
            queue,
            on_chunk=lambda done, _summary: progress.advance(task, done),
            requeue_unstarted=requeue_unstarted,
        )
    if as_json:
        echo_json({"state_machine_id": state_machine_id, "queue": queue, "lines": total, **summary.to_dict()})
    else:
        print_enqueue_summary(
            f"{state_machine_id}: {total} line(s) → queue {queue}",
            summary,
            "skipped (queued, running or run)",
        )
    if summary.failed:
        sys.exit(EXIT_NOT_SUCCEEDED)
    if wait:
        names = [f"{prefix}{number}" for number, _ in iter_jsonl(path)]
        report_batch(
            state_machine_id,
            await_batch(repository, state_machine_id, names, wait_timeout, as_json),
            len(names),
            as_json,
        )
    sys.exit(EXIT_OK)


def await_batch(
    repository: Repository, state_machine_id: str, names: list[str], timeout: float | None, hidden: bool
) -> dict[str, int]:
    """Poll until every named execution has ended (or `timeout` passes), a progress bar on stderr;
    returns the executions per status."""
    deadline = None if timeout is None else time.monotonic() + timeout
    progress = progress_bar("running", hidden=hidden)
    with progress:
        task = progress.add_task("run", total=len(names))
        while True:
            counts = repository.status_counts_of(state_machine_id, names)
            ended = sum(count for status, count in counts.items() if status in FINAL_STATUSES)
            progress.update(task, completed=ended)
            if ended >= len(names) or (deadline is not None and time.monotonic() >= deadline):
                return counts
            time.sleep(0.5)


def report_batch(state_machine_id: str, counts: dict[str, int], total: int, as_json: bool) -> NoReturn:
    """The executions of a batch per status, and exit 0 only when all `total` SUCCEEDED."""
    if as_json:
        echo_json({"state_machine_id": state_machine_id, "executions": total, "counts": counts})
    else:
        print_counts(f"{state_machine_id}: {total} execution(s)", counts)
    sys.exit(EXIT_OK if counts.get(Status.SUCCEEDED, 0) == total else EXIT_NOT_SUCCEEDED)


def print_counts(title: str, counts: dict[str, int]) -> None:
    table = Table(title=title, show_edge=False)
    table.add_column("status")
    table.add_column("count", justify="right")
    for status, count in sorted(counts.items()):
        table.add_row(status, str(count))
    console().print(table)
