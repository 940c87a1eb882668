"""The functions Step Functions adds to JSONata ($partition, $range, $hash, $random, $uuid, $parse)
and the built-in it takes away ($eval).

They share their rules with the intrinsics they replace (`States.ArrayPartition`, `States.ArrayRange`,
`States.Hash`, `States.MathRandom`, `States.UUID`, `States.StringToJson`). A misuse raises
`FunctionError`, which the JSONata wrapper reports as States.QueryEvaluationError.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from typing import Any

from smq.engine import intrinsics
from smq.engine.errors import SmqError
from smq.engine.jsontext import compact


class FunctionError(SmqError):
    """A Step Functions JSONata function called with arguments it cannot take."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def _checked(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with the intrinsics' ValueError turned into this function's JSONata error."""

    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except FunctionError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            raise FunctionError("D3170", f"${name}: {exc}") from None

    return call


def _partition(array: Any, size: Any) -> list[list[Any]]:
    return intrinsics._array_partition(array, size)


def _range(start: Any, end: Any, step: Any) -> list[int]:
    return intrinsics._array_range(start, end, step)


def _hash(data: Any, algorithm: Any) -> str:
    if data is None:
        raise ValueError("the data to hash is missing")
    return intrinsics._hash(data, algorithm)


def _random(seed: Any = None) -> float:
    """A number in [0, 1); the same seed always gives the same number (AWS: "$random(seed)")."""
    if seed is None:
        return random.random()
    if isinstance(seed, bool) or not isinstance(seed, (int, float, str)):
        raise ValueError(f"the seed must be a number or a string, got {compact(seed)}")
    return random.Random(seed).random()


def _uuid() -> str:
    return str(uuid.uuid4())


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        raise ValueError("the argument must be a string of JSON text")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the argument is not JSON text: {exc}") from None


def _eval(*args: Any) -> Any:
    """Step Functions leaves `$eval` out (use `$parse`): calling it is calling a non-function."""
    raise FunctionError("T1006", "Attempted to invoke a non-function")


# name -> (implementation, JSONata signature or None)
FUNCTIONS: dict[str, tuple[Callable[..., Any], str | None]] = {
    "partition": (_checked("partition", _partition), "<an:a>"),
    "range": (_checked("range", _range), "<nnn:a<n>>"),
    "hash": (_checked("hash", _hash), "<x-s:s>"),
    "random": (_checked("random", _random), None),
    "uuid": (_checked("uuid", _uuid), "<:s>"),
    "parse": (_checked("parse", _parse), "<s-:x>"),
    "eval": (_eval, None),
}
