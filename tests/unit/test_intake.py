"""The pieces of bad-message intake and URL masking that need no server: the raw text a dead letter keeps,
the kombu-envelope check of smq's Redis transport, `redact`."""

from __future__ import annotations

import base64
import json
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kombu.transport.virtual import Channel as VirtualChannel
from kombu.transport.virtual import Message

from smq.distributed.intake import MALFORMED_ENVELOPE, BadMessage, envelope, raw_text
from smq.settings import redact

# ------------------------------------------------------------------------------------------- raw text


def _allowed(text: str) -> bool:
    """No control character but tab and newlines, nothing that is not encodable UTF-8."""
    text.encode("utf-8")  # raises on a lone surrogate
    return all(char in "\t\n\r" or unicodedata.category(char) != "Cc" for char in text)


@given(raw=st.binary(max_size=300) | st.text(max_size=300), limit=st.integers(min_value=1, max_value=200))
def test_raw_text_is_storable_printable_and_capped(raw: bytes | str, limit: int) -> None:
    text = raw_text(raw, limit)
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    assert _allowed(text)
    assert json.loads(json.dumps(text)) == text
    whole = raw_text(raw, limit=10**6)
    if text == whole:
        assert len(text) <= limit
    else:
        note = f"... [{len(data)} bytes in all, cut]"
        assert text.endswith(note) and len(text) <= len(note) + limit
        # What is kept is the start of the message, as far as the byte cap left each character whole.
        kept = text[: -len(note)]
        assert whole.startswith(kept[: max(0, len(kept) - 16)])


@given(st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), max_size=200))
def test_raw_text_of_printable_utf8_is_the_text_itself(text: str) -> None:
    assert raw_text(text.encode()) == text == raw_text(text)


def test_raw_text_escapes_what_is_not_printable_utf8() -> None:
    assert raw_text(b"\x80\x04\x00ok\xff\n\x1b[31m") == "\\x80\\x04\\x00ok\\xff\n\\x1b[31m"
    assert raw_text(None) == ""
    assert raw_text(b"x" * 10, limit=4) == "xxxx... [10 bytes in all, cut]"


# ------------------------------------------------------------------------------------------- envelope


class _Codecs:
    """What a kombu message needs of its channel: kombu's own body decoding."""

    codecs = VirtualChannel.codecs
    decode_body = VirtualChannel.decode_body


CHANNEL = _Codecs()


def _kombu_message(task_id: str = "t1") -> dict[str, Any]:
    return {
        "body": base64.b64encode(b'[[{"state_machine_id": "M", "name": "n"}], {}, {}]').decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": "execute_state_machine", "id": task_id},
        "properties": {
            "correlation_id": task_id,
            "delivery_info": {"exchange": "default", "routing_key": "default"},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": "d1",
        },
    }


def test_a_kombu_message_passes_unchanged() -> None:
    message = _kombu_message()
    assert envelope(json.dumps(message).encode(), CHANNEL.decode_body) == message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
# Where a kombu message can be broken: each field deleted or replaced by any JSON value.
FIELDS = [
    ("body",),
    ("content-type",),
    ("headers",),
    ("properties",),
    ("properties", "delivery_tag"),
    ("properties", "delivery_info"),
    ("properties", "delivery_info", "exchange"),
    ("properties", "delivery_info", "routing_key"),
    ("properties", "body_encoding"),
]


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    message: Any = _kombu_message()
    for path in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
        parent = message
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            if draw(st.booleans()):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(JSON)
    if draw(st.integers(0, 9)) == 0:  # now and then, the whole item replaced or cut short
        return draw(
            st.binary(max_size=40) | st.just(json.dumps(message)[: draw(st.integers(0, 60))].encode())
        )
    return json.dumps(message).encode()


@settings(max_examples=400)
@given(damaged())
def test_what_the_envelope_check_passes_kombu_can_deliver_and_the_rest_is_a_bad_message(item: bytes) -> None:
    """Never any other exception: it would reach the worker's event loop and end the worker."""
    try:
        message = envelope(item, CHANNEL.decode_body)
    except BadMessage as bad:
        assert bad.reason == MALFORMED_ENVELOPE and str(bad)
        return
    delivered = Message(message, channel=CHANNEL)  # what kombu's Redis channel builds of it...
    info = delivered.delivery_info  # ...and what its QoS records for redelivery
    assert isinstance(delivered.delivery_tag, str) and {"exchange", "routing_key"} <= set(info)


# ------------------------------------------------------------------------------------------- redact

SECRET = st.text(
    alphabet=st.characters(codec="ascii", exclude_categories=("Cc",), exclude_characters=" '\"<>"),
    min_size=1,
    max_size=20,
)


@given(password=SECRET)
def test_redact_masks_the_password_of_a_url_wherever_it_is(password: str) -> None:
    cases = {
        f"redis://:{password}@127.0.0.1:6379/0": "redis://:***@127.0.0.1:6379/0",
        f"postgresql+psycopg://smq:{password}@db:5432/smq": "postgresql+psycopg://smq:***@db:5432/smq",
        f"cannot open 'mysql://u:{password}@h/d': refused": "cannot open 'mysql://u:***@h/d': refused",
        f"postgresql://h/d?sslmode=require&password={password}": "postgresql://h/d?sslmode=require&password=***",
    }
    if set(password) & set("&;#"):  # a query value holding these would be percent-encoded
        cases.popitem()
    for text, masked in cases.items():
        assert redact(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "sqlite:///smq.db",
        "redis://127.0.0.1:6379/0",
        "redis://user@host/0",  # a user name only: nothing secret
        "no URL here: user:password@host",
        "postgresql+psycopg://postgres@127.0.0.1:5432/smq?sslmode=disable",
    ],
)
def test_redact_leaves_what_holds_no_password(text: str) -> None:
    assert redact(text) == text


# kombu 5.7.0's Channel._brpop_read, its comments and blank lines left out: smq's worker Channel
# re-implements it with one step added (the envelope check), so a kombu that changes it must be read.
KOMBU_BRPOP_READ_SHA256 = "f7e4afb7bac8b1748a2df0567202d4a3cce41c31809a6cdc5ff54f78805d6e9f"


def test_kombus_brpop_read_is_the_one_smqs_channel_copies() -> None:
    import hashlib
    import inspect
    import re

    import kombu
    from kombu.transport import redis as kombu_redis

    lines = (
        re.sub(r"\s+#.*$", "", line).strip()
        for line in inspect.getsource(kombu_redis.Channel._brpop_read).splitlines()
    )
    code = "\n".join(line for line in lines if line and not line.startswith("#"))
    assert hashlib.sha256(code.encode()).hexdigest() == KOMBU_BRPOP_READ_SHA256, (
        f"kombu {kombu.__version__} changed Channel._brpop_read: bring smq.distributed.intake.Channel."
        "_brpop_read in line with it, then record the new digest here"
    )
