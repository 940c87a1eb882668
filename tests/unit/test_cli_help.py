"""`smq --help` is quick and complete: it imports none of the heavy layers (the import set is tested,
not the time), lists every command with the first line of its own help, names the environment
variables, and every option of every command says what it does."""

from __future__ import annotations

import subprocess
import sys

import click

from smq.cli import COMMANDS, main

HEAVY = ("alembic", "celery", "kombu", "sqlalchemy", "redis", "psycopg", "rich", "jlens", "yaml")


def loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list


def test_help_imports_no_database_queue_or_engine_layer() -> None:
    run_help = "from smq.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert loaded_after(run_help) == []
    assert loaded_after("import smq, smq.cli") == []


def every_command(group: click.Group, path: str = "smq") -> list[tuple[str, click.Command]]:
    found = []
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, name
        found.append((f"{path} {name}", command))
        if isinstance(command, click.Group):
            found.extend(every_command(command, f"{path} {name}"))
    return found


def test_the_listed_help_is_the_start_of_each_commands_own() -> None:
    context = click.Context(main)
    for name, (_, _, line) in COMMANDS.items():
        command = main.get_command(context, name)
        assert command is not None and command.help is not None, name
        first_paragraph = " ".join(command.help.split("\n\n")[0].split())
        assert first_paragraph.startswith(line), name


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{path} {param.opts[0]}"
        for path, command in every_command(main)
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert missing == []


def test_top_level_help_names_the_environment_and_the_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smq.cli", "--help"], capture_output=True, text=True, check=True
    )
    for variable in ("SMQ_DATABASE_URL", "SMQ_BROKER_URL", "SMQ_HANDLERS", "SMQ_RETENTION"):
        assert variable in done.stdout, variable
    for name in COMMANDS:
        assert f"\n  {name} " in done.stdout, name


def test_every_command_that_prints_data_takes_json() -> None:
    leaves = [
        (path, command) for path, command in every_command(main) if not isinstance(command, click.Group)
    ]
    assert len(leaves) > 25
    without = [
        path for path, command in leaves if "--json" not in {o for p in command.params for o in p.opts}
    ]
    # These print no data: one serves the console, the other writes a picture (svg, dot, mermaid).
    assert sorted(without) == ["smq definitions graph", "smq web"]
