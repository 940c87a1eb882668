"""`smq web`: the console, served by uvicorn from the same database and broker settings as the CLI."""

from __future__ import annotations

import click

from smq.cli.common import UsageError, handlers_option, settings_and_repository
from smq.settings import SettingsError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface)."
)
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to serve on."
)
@click.option(
    "--hash-password",
    "hash_for",
    metavar="USER",
    help="Ask for USER's password and print USER:HASH for SMQ_WEB_USERS, then exit.",
)
@handlers_option
def web(host: str, port: int, hash_for: str | None, handler_modules: tuple[str, ...]) -> None:
    """The web console: executions, their graphs and history, dead letters, waits, and actions.

    Read-only unless SMQ_WEB_USERS names who may act (`name:HASH,...`, each HASH from
    --hash-password); SMQ_WEB_SECRET signs sessions (default: random per start)."""
    from smq.web.config import USER_NAME, WebConfig, hash_password

    if hash_for is not None:
        if not USER_NAME.fullmatch(hash_for):
            raise UsageError("--hash-password: USER may hold letters, digits, '_', '.', '@' and '-' only")
        password = click.prompt("password", hide_input=True, confirmation_prompt=True, err=True)
        click.echo(f"{hash_for}:{hash_password(password)}")
        return
    try:
        config = WebConfig.from_env()
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    settings, repository = settings_and_repository(handler_modules)

    import uvicorn

    from smq.web.app import create_app, settle_heap

    app = create_app(repository, settings, config)
    settle_heap()
    access = "read-only (no SMQ_WEB_USERS)" if config.read_only else f"{len(config.users)} user(s) may act"
    click.echo(f"smq web: http://{host}:{port}/ - {access}", err=True)
    if host not in LOOPBACK:
        click.echo(f"smq web: listening on {host}, not only this machine: put it behind HTTPS", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
