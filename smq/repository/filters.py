"""`ExecutionFilter`: which executions a query, a batch or the leader works on.

The CLI writes filters the same way everywhere: `--filter KEY=VALUE[,KEY=VALUE...]`, with several
statuses separated by `|`, and `tag.NAME=VALUE` for a user tag (several: all must match). `parse_filter` turns that text into an ExecutionFilter or raises
FilterError naming the key or value at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from smq.engine.errors import SmqError
from smq.repository.models import STATUSES
from smq.repository.tags import TagError, check_tag_key

TAG_PREFIX = "tag."


class FilterError(SmqError, ValueError):
    """A filter key or value smq does not understand."""


@dataclass(frozen=True)
class ExecutionFilter:
    state_machine_id: str | None = None
    statuses: tuple[str, ...] = ()
    name_prefix: str | None = None
    name_contains: str | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None
    current_state: str | None = None
    source_execution_id: str | None = None
    not_chained_into: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # (key, value): the execution has every one of these tags
    limit: int | None = None
    offset: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for status in self.statuses:
            if status not in STATUSES:
                raise FilterError(f"status: unknown status {status!r} (known: {', '.join(STATUSES)})")
        for name in ("started_after", "started_before"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise FilterError(f"{name}: needs a timezone (e.g. 2026-01-31T00:00:00Z)")
        if self.limit is not None and self.limit < 0:
            raise FilterError(f"limit: must be >= 0, got {self.limit}")
        if self.offset < 0:
            raise FilterError(f"offset: must be >= 0, got {self.offset}")


FILTER_KEYS = (
    "state_machine_id",
    "status",
    "name_prefix",
    "name_contains",
    "started_after",
    "started_before",
    "current_state",
    "source_execution_id",
    "not_chained_into",
)


def parse_timestamp_value(key: str, value: str) -> datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(f"{key}: {value!r} is not an ISO-8601 time (e.g. 2026-01-31T12:00:00Z)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_filter(text: str | None, **overrides: Any) -> ExecutionFilter:
    """`state_machine_id=orders,status=FAILED|TIMED_OUT,started_after=2026-01-01T00:00:00Z`."""
    values: dict[str, Any] = {}
    tags: list[tuple[str, str]] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep:
            raise FilterError(f"{part!r}: expected KEY=VALUE (keys: {', '.join(FILTER_KEYS)})")
        if key.startswith(TAG_PREFIX):
            tag = key[len(TAG_PREFIX) :]
            try:
                check_tag_key(tag, "tag")
            except TagError as exc:
                raise FilterError(f"{key}: {exc}") from None
            if not value.strip():
                raise FilterError(f"{key}: empty value")
            tags.append((tag, value.strip()))
            continue
        if key not in FILTER_KEYS:
            raise FilterError(f"unknown filter key {key!r} (keys: {', '.join(FILTER_KEYS)}, tag.NAME)")
        if key in values or (key == "status" and "statuses" in values):
            raise FilterError(f"{key}: given twice")
        value = value.strip()
        if not value:
            raise FilterError(f"{key}: empty value")
        if key == "status":
            values["statuses"] = tuple(s.strip().upper() for s in value.split("|") if s.strip())
        elif key in ("started_after", "started_before"):
            values[key] = parse_timestamp_value(key, value)
        else:
            values[key] = value
    if tags:
        values["tags"] = tuple(tags)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ExecutionFilter(**values)
