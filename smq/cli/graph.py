"""`smq definitions graph ID|FILE [--execution EID] --format svg|dot|mermaid`: the console's graph
for docs and reviews, with the path an execution took when one is named."""

from __future__ import annotations

from pathlib import Path

import click

from smq.cli.common import fail, load_definition_or_exit, load_settings, open_repository
from smq.engine.errors import DefinitionError
from smq.engine.machine import StateMachine
from smq.graph.render import FORMATS, render_graph
from smq.repository.records import NotFound


@click.command("graph")
@click.argument("source", metavar="ID|FILE")
@click.option(
    "--version", type=click.IntRange(min=1), help="Version of a stored definition (default: latest)."
)
@click.option("--execution", "execution_ref", metavar="EID", help="Draw the path this execution took.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="svg",
    show_default=True,
    help="svg (a picture), dot (Graphviz) or mermaid (for Markdown).",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write here (default: stdout).")
def graph(source: str, version: int | None, execution_ref: str | None, fmt: str, output: str | None) -> None:
    """Draw a definition (a stored ID, or a FILE) as SVG, Graphviz DOT or Mermaid: every state, Next,
    Default, Choice and Catch edges, Parallel branches and Map item processors nested. With
    --execution, each state is coloured by how it ended there and the path taken is drawn bold."""
    from_file = Path(source).is_file()
    repository = open_repository(load_settings()) if execution_ref or not from_file else None
    execution = None
    history = []
    if repository is not None and execution_ref:
        try:
            execution = repository.resolve_execution(execution_ref)
            history = repository.history(execution.execution_id)
        except NotFound as exc:
            fail(f"--execution: {exc}")
    if from_file:
        definition = load_definition_or_exit(source)
        try:
            StateMachine.from_definition(definition)
        except DefinitionError as exc:
            fail(f"{source}: {exc}")
    else:
        assert repository is not None
        if execution is not None and version is None:
            if execution.state_machine_id != source:
                fail(
                    f"--execution: {execution_ref} is an execution of {execution.state_machine_id!r}, not {source!r}"
                )
            version = execution.version
        try:
            definition = repository.get_definition(source, version).definition
        except NotFound as exc:
            fail(f"ID|FILE: {exc} (and no file named {source!r})")
    text = render_graph(definition, fmt, execution=execution, history=history)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=not text.endswith("\n"))
