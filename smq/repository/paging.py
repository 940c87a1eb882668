"""Keyset pages of executions for people and consoles: newest first by default, each page carrying an
opaque token for the next one.

Why keyset and not OFFSET: a page after a token starts at an index position (`start_time, id`), so
page 5,000 of a million executions costs what page 1 costs, and rows inserted meanwhile never shift
a page. The token names the order it was made for, so it cannot be replayed the other way round.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from smq.engine.errors import SmqError
from smq.repository.records import ExecutionRecord


class InvalidPageToken(SmqError, ValueError):
    """A page token this listing did not hand out (mangled, or made for the other order)."""


@dataclass(frozen=True)
class PagePosition:
    """Where the previous page ended, in the listing's order."""

    start_time: datetime
    execution_id: str
    oldest_first: bool


@dataclass(frozen=True)
class ExecutionPage:
    """One page of executions and the token of the next page (None on the last)."""

    executions: list[ExecutionRecord]
    next_token: str | None


def encode_token(position: PagePosition) -> str:
    text = json.dumps(
        [position.start_time.isoformat(), position.execution_id, "asc" if position.oldest_first else "desc"],
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_token(token: str, *, oldest_first: bool) -> PagePosition:
    """The position a token names; InvalidPageToken if it is not one of ours or was made for the other
    order."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        start, execution_id, order = json.loads(raw)
        position = PagePosition(datetime.fromisoformat(start), str(execution_id), order == "asc")
        if order not in ("asc", "desc") or position.start_time.tzinfo is None:
            raise ValueError(order)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidPageToken(f"page token {token!r}: not a token this listing handed out") from exc
    if position.oldest_first != oldest_first:
        wanted = "oldest first" if oldest_first else "newest first"
        raise InvalidPageToken(f"page token {token!r}: made for the other order, not {wanted}")
    return position
