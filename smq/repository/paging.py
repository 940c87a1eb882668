"""Keyset pages for people and consoles: newest first by default, each page carrying an opaque token
for the next one. One mechanism for every listing (executions, definitions, dead letters, history).

Why keyset and not OFFSET: a page after a token starts at an index position (e.g. `start_time, id`),
so page 5,000 of a million rows costs what page 1 costs, and rows inserted meanwhile never shift a
page. The token names its listing and the order it was made for, so it cannot be replayed on another
listing or the other way round.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, tuple_

from smq.engine.errors import SmqError
from smq.repository.models import UTCDateTime
from smq.repository.records import ExecutionRecord


class InvalidPageToken(SmqError, ValueError):
    """A page token this listing did not hand out (mangled, made for another listing or the other
    order)."""


@dataclass(frozen=True)
class ExecutionPage:
    """One page of executions and the token of the next page (None on the last)."""

    executions: list[ExecutionRecord]
    next_token: str | None


@dataclass(frozen=True)
class Keyset:
    """How one listing is paged: `columns` are its order (unique together, the trailing columns of an
    index, so a page is an index range), `listing` names it in its tokens."""

    listing: str
    columns: tuple[Any, ...]

    def page(
        self,
        connection: Connection,
        query: Select[Any],
        *,
        limit: int,
        page_token: str | None,
        oldest_first: bool,
    ) -> tuple[list[Any], str | None]:
        """The rows of one page of `query` (filters applied, no order) and the next page's token."""
        if limit < 1:
            raise ValueError(f"limit: must be >= 1, got {limit}")
        if page_token is not None:
            key, last = tuple_(*self.columns), tuple_(*self.decode(page_token, oldest_first))
            query = query.where(key > last if oldest_first else key < last)
        order = self.columns if oldest_first else tuple(column.desc() for column in self.columns)
        rows = connection.execute(query.order_by(*order).limit(limit + 1)).all()
        if len(rows) <= limit:
            return list(rows), None
        last_row = rows[limit - 1]
        return list(rows[:limit]), self.encode([last_row._mapping[c] for c in self.columns], oldest_first)

    def encode(self, values: Sequence[Any], oldest_first: bool) -> str:
        plain = [value.isoformat() if isinstance(value, datetime) else value for value in values]
        text = json.dumps([self.listing, "asc" if oldest_first else "desc", plain], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def decode(self, token: str, oldest_first: bool) -> list[Any]:
        """The key a token names; InvalidPageToken if it is not one of this listing's, or was made for
        the other order."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            listing, order, plain = json.loads(raw)
            if order not in ("asc", "desc") or not isinstance(plain, list):
                raise ValueError(order)
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise InvalidPageToken(f"page token {token!r}: not a token this listing handed out") from exc
        if listing != self.listing:
            raise InvalidPageToken(
                f"page token {token!r}: made for the {listing} listing, not {self.listing}"
            )
        if (order == "asc") != oldest_first:
            wanted = "oldest first" if oldest_first else "newest first"
            raise InvalidPageToken(f"page token {token!r}: made for the other order, not {wanted}")
        try:
            return [self._value(column, value) for column, value in zip(self.columns, plain, strict=True)]
        except (ValueError, TypeError) as exc:
            raise InvalidPageToken(f"page token {token!r}: not a token this listing handed out") from exc

    @staticmethod
    def _value(column: Any, value: Any) -> Any:
        if isinstance(column.type, UTCDateTime):
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                raise ValueError("naive time")
            return moment
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise TypeError(type(value).__name__)
        return value
