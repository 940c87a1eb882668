"""How every `smq ... list` prints: one keyset page at a time (`--limit`, `--next-token` from the page
before), newest first unless `--oldest-first`, or `--all` pages streamed.

Text mode prints a table, then the next page's option on stderr (`next page: --next-token T`), so
stdout stays the table. `--json` prints one object: the rows under the listing's name and
`next_token` (null on the last page), streamed row by row with `--all`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import click

from smq.cli.common import console

T = TypeVar("T")
ALL_PAGE_SIZE = 1000
FuncT = TypeVar("FuncT", bound=Callable[..., Any])


@dataclass(frozen=True)
class Paging:
    limit: int
    next_token: str | None
    oldest_first: bool
    every: bool


def paging_options(*, newest_first: bool = True) -> Callable[[FuncT], FuncT]:
    """--limit, --next-token, --oldest-first/--newest-first (the default: `newest_first`), --all; the
    command receives them as one `paging: Paging` argument."""

    def decorate(command: FuncT) -> FuncT:
        @functools.wraps(command)
        def wrapper(
            *args: Any, limit: int, next_token: str | None, oldest_first: bool, every: bool, **kwargs: Any
        ) -> Any:
            if every and next_token:
                raise click.UsageError("--all reads every page: do not combine with --next-token")
            return command(*args, paging=Paging(limit, next_token, oldest_first, every), **kwargs)

        options = [
            click.option(
                "--limit",
                type=click.IntRange(1, 10_000),
                default=50,
                show_default=True,
                help="Rows per page.",
            ),
            click.option(
                "--next-token",
                metavar="TOKEN",
                help="The next page: the token the page before printed (same filter and order).",
            ),
            click.option(
                "--oldest-first/--newest-first",
                default=not newest_first,
                help=f"Order (default: {'newest' if newest_first else 'oldest'} first).",
            ),
            click.option("--all", "every", is_flag=True, help="Every page, streamed (memory stays flat)."),
        ]
        decorated: Any = wrapper
        for option in reversed(options):
            decorated = option(decorated)
        return cast(FuncT, decorated)

    return decorate


def print_listing(
    name: str,
    fetch: Callable[[int, str | None], tuple[list[T], str | None]],
    paging: Paging,
    *,
    as_json: bool,
    to_json: Callable[[T], Any],
    table: Callable[[Sequence[T], bool], Any],
) -> None:
    """Print the listing `name`: JSON `{name: [...], "next_token": ...}` streamed row by row, or a
    table per page (the header on the first) and the next page's option on stderr."""
    if as_json:
        click.echo(f'{{"{name}": [', nl=False)
    first, token = True, paging.next_token
    while True:
        items, token = fetch(ALL_PAGE_SIZE if paging.every else paging.limit, token)
        if as_json:
            for item in items:
                text = json.dumps(to_json(item), ensure_ascii=False)
                click.echo(("" if first else ",") + "\n" + text, nl=False)
                first = False
        elif items or first:
            console().print(table(items, first))
            first = False
        if not paging.every or token is None:
            break
    if as_json:
        click.echo(f'\n], "next_token": {json.dumps(token)}}}')
    elif token is not None:
        click.echo(f"next page: --next-token {token}", err=True)
