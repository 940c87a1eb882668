"""Input transformers: named functions that reshape a source's output into a chained input.

Names, not callables, travel in requests, so the same request can cross a queue and run on a worker
that registered the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smq.engine.errors import SmqError

Transformer = Callable[[Any], Any]

_transformers: dict[str, Transformer] = {}


class UnknownTransformer(SmqError, LookupError):
    """No transformer is registered under that name."""


def transformer(name: str | None = None) -> Callable[[Transformer], Transformer]:
    """Register `fn(source_output) -> chained_input` under `name` (default: the function's name)."""

    def decorate(fn: Transformer) -> Transformer:
        _transformers[name or fn.__name__] = fn
        return fn

    return decorate


def get_transformer(name: str) -> Transformer:
    try:
        return _transformers[name]
    except KeyError:
        known = ", ".join(sorted(_transformers)) or "none registered"
        raise UnknownTransformer(f"no input transformer named {name!r} (known: {known})") from None


def apply_transformer(name: str | None, value: Any) -> Any:
    return value if name is None else get_transformer(name)(value)
