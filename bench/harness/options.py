"""Command-line options the entry scripts share, with the same names, defaults and help everywhere:
the servers a bench may use, and where its results go (--json, --save; see report.emit_report)."""

from __future__ import annotations

import argparse

from harness.servers import DEFAULT_PG_URL, DEFAULT_REDIS_URL


def add_database_option(parser: argparse.ArgumentParser) -> None:
    """--pg-url: the PostgreSQL server (through one of its databases) where fresh databases are made."""
    parser.add_argument(
        "--pg-url", default=DEFAULT_PG_URL, help=f"an existing database to connect to ({DEFAULT_PG_URL})"
    )


def add_redis_option(parser: argparse.ArgumentParser) -> None:
    """--redis-url: a Redis server to use instead of a private one (see servers.redis_base_url)."""
    parser.add_argument(
        "--redis-url",
        default=None,
        help=f"a Redis server, no db, whose dbs the bench flushes (e.g. {DEFAULT_REDIS_URL}); default: one of its own",
    )


def add_output_options(
    parser: argparse.ArgumentParser, json_help: str = "print results as JSON instead of the table"
) -> None:
    """--json (the report as JSON on stdout instead of tables) and --save PATH (the JSON written too)."""
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument("--save", metavar="PATH", help="also write the JSON results to PATH")
