"""One typed settings object, read from the environment (`SMQ_*`).

Everything configurable lives here so that the CLI, workers and tests agree on names and defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from smq.engine.runtime import DEFAULT_MAX_TRANSITIONS, DEFAULT_MAX_WORKERS, DEFAULT_PAYLOAD_LIMIT


class SettingsError(ValueError):
    """An SMQ_* variable holds a value smq cannot use; the message names the variable."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _list(env: dict[str, str], name: str) -> list[str]:
    return [item.strip() for item in env.get(name, "").split(",") if item.strip()]


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///smq.db"
    broker_url: str | None = None
    handlers: list[str] = field(default_factory=list)
    payload_limit: int = DEFAULT_PAYLOAD_LIMIT
    max_transitions: int = DEFAULT_MAX_TRANSITIONS
    max_workers: int = DEFAULT_MAX_WORKERS

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        return cls(
            database_url=env.get("SMQ_DATABASE_URL") or cls.database_url,
            broker_url=env.get("SMQ_BROKER_URL") or None,
            handlers=_list(env, "SMQ_HANDLERS"),
            payload_limit=_int(env, "SMQ_PAYLOAD_LIMIT", DEFAULT_PAYLOAD_LIMIT, minimum=1),
            max_transitions=_int(env, "SMQ_MAX_TRANSITIONS", DEFAULT_MAX_TRANSITIONS, minimum=1),
            max_workers=_int(env, "SMQ_MAX_WORKERS", DEFAULT_MAX_WORKERS, minimum=1),
        )
