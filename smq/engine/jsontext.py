"""Compact JSON text (no spaces, UTF-8 kept as is), the form smq stores, sends and measures payloads in.

An execution encodes its data several times (each state's output against the payload limit, then the
row and history it is stored with), so this is on the hot path of every state. `json.dumps` builds a
new encoder object per call; here one C encoder is built once per form and reused: about four times
cheaper for the small documents most states pass around. Same output as
`json.dumps(value, separators=(",", ":"), ensure_ascii=False)`, same errors (TypeError for what JSON
cannot hold, ValueError for a circular reference).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

# The C accelerator's encoder factory (json.encoder's own, private in name; None without the C module).
c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder(default: Callable[[Any], Any]) -> Callable[[Any], str]:
    if c_make_encoder is None:
        encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=default)
        return encoder.encode
    # markers=None: no per-call bookkeeping of the containers being encoded. A circular structure then
    # ends in RecursionError, reported below as json's own ValueError.
    make = c_make_encoder(None, default, json.encoder.encode_basestring, None, ":", ",", False, False, True)

    def encode(value: Any) -> str:
        try:
            return "".join(make(value, 0))
        except RecursionError:
            raise ValueError("Circular reference detected (or nesting too deep to encode)") from None

    return encode


compact: Callable[[Any], str] = _encoder(_refuse)
"""The compact JSON text of `value`."""


def compact_encoder(converters: Mapping[type, Callable[[Any], Any]]) -> Callable[[Any], str]:
    """A `compact` that also encodes instances of the types in `converters`, each as its converter
    turns it into JSON (anything else JSON cannot hold is still a TypeError)."""

    def default(value: Any) -> Any:
        for kind, convert in converters.items():
            if isinstance(value, kind):
                return convert(value)
        return _refuse(value)

    return _encoder(default)
