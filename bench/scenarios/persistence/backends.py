"""The two backends bench/persistence.py measures: a migrated SQLite file in a temporary directory, and
a fresh PostgreSQL database next to --pg-url's; each removed afterwards."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from harness.servers import fresh_database

from smq import Repository

BACKENDS = ("sqlite", "postgresql")


@contextmanager
def sqlite_repository() -> Iterator[Repository]:
    """A migrated SQLite file in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="smq-bench-") as directory:
        repo = Repository.open(f"sqlite:///{directory}/bench.db")
        try:
            yield repo
        finally:
            repo.close()


@contextmanager
def postgresql_repository(admin_url: str) -> Iterator[Repository]:
    """A fresh PostgreSQL database created next to `admin_url`'s, migrated, dropped afterwards."""
    with fresh_database(admin_url, f"smq_bench_{os.getpid()}", migrate=False) as url:
        repo = Repository.open(url, auto_upgrade=True)
        try:
            yield repo
        finally:
            repo.close()


def open_backend(backend: str, args: argparse.Namespace) -> AbstractContextManager[Repository]:
    """The context manager that provides a repository on `backend`."""
    return sqlite_repository() if backend == "sqlite" else postgresql_repository(args.pg_url)
