"""A payload is refused for a NUL character only when one is really there (issue 22, point 1): JSON text
spells a NUL `\\u0000`, and an escaped backslash followed by `u0000` looks the same to a substring test."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smq.execution.runner import InvalidPayload, check_payload

# Strings made of exactly what confuses a text search: backslashes, `u`, digits and NULs.
tricky = st.text(alphabet=st.sampled_from(["\\", "u", "0", "1", "\x00"]), max_size=12)
payloads = st.recursive(
    st.none() | st.integers() | tricky,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky, inner, max_size=3),
    max_leaves=8,
)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    if isinstance(value, dict):
        return any("\x00" in key or _has_nul(item) for key, item in value.items())
    return False


@given(payloads)
def test_a_payload_is_refused_exactly_when_a_string_or_key_holds_a_nul(value: Any) -> None:
    if _has_nul(value):
        with pytest.raises(InvalidPayload, match="NUL"):
            check_payload(value, None, "input")
    else:
        check_payload(value, None, "input")


@pytest.mark.parametrize(
    "value", [{"s": "\\u0000"}, {"path": "C:\\\\u0000\\x"}, ["\\\\\\u0000"], {"\\u0000": 1}]
)
def test_escaped_backslashes_before_u0000_are_no_nul(value: Any) -> None:
    check_payload(value, None, "input")


@pytest.mark.parametrize("value", [{"s": "a\x00b"}, {"k\x00": 1}, ["\\\x00"], {"s": "\\\\\x00"}])
def test_real_nuls_anywhere_are_refused(value: Any) -> None:
    with pytest.raises(InvalidPayload):
        check_payload(value, None, "input")
