"""Execution inputs decoded once per process (SQLite): the same text for the same execution is the same
value; another text is decoded anew; small inputs are not kept; the budget drops the least recently
used."""

from __future__ import annotations

import json

from smq.repository.input_cache import SMALL, DecodedInputs


def _text(n: int, size: int = SMALL) -> str:
    return json.dumps({"n": n, "pad": "x" * size})


def test_a_large_input_is_decoded_once_and_checked_against_its_text() -> None:
    cache = DecodedInputs(budget=10 * SMALL)
    first = cache.value("e-1", _text(1))
    assert cache.value("e-1", _text(1)) is first  # the same text: the same value, not decoded again
    other = cache.value("e-1", _text(2))  # the same id with another text (never in smq): decoded anew
    assert other is not first and other["n"] == 2
    small = json.dumps({"n": 3})
    assert cache.value("e-2", small) == {"n": 3} and cache.value("e-2", small) is not cache.value(
        "e-2", small
    )
    assert cache.value("e-3", None) is None


def test_the_budget_drops_the_least_recently_used() -> None:
    cache = DecodedInputs(budget=int(2.5 * (SMALL + 30)))
    a = cache.value("a", _text(1))
    b = cache.value("b", _text(2))
    assert cache.value("a", _text(1)) is a  # a is now the most recent
    cache.value("c", _text(3))  # over budget: b goes
    assert cache.value("a", _text(1)) is a
    assert cache.value("b", _text(2)) is not b
    huge = "[" + ",".join(["1"] * (cache.budget)) + "]"
    assert cache.value("h", huge) is not cache.value("h", huge)  # above the whole budget: never kept
