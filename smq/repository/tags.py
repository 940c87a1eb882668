"""User tags of an execution: KEY -> VALUE text, kept with it, shown, and filterable (`tag.KEY=VALUE`).

Keys are 1-128 characters of letters, digits, spaces and `_ . : / + - @` (AWS's tag characters, less `=`
and `,`, which the filter syntax uses); values are text up to 256 characters; at most 50 tags.
"""

from __future__ import annotations

import json
import re
from typing import Any

from smq.engine.errors import SmqError

TAG_KEY = re.compile(r"^[A-Za-z0-9_.:/+\-@ ]{1,128}$")
MAX_TAGS = 50
MAX_VALUE = 256


class TagError(SmqError, ValueError):
    """A tag key or value smq cannot keep; the message names it."""


def check_tag_key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not TAG_KEY.match(key):
        raise TagError(f"{where}: tag key {key!r} must be 1-128 letters, digits, spaces or _ . : / + - @")
    return key


def tag_value(value: Any, key: str, where: str) -> str:
    """A value as kept: text as it is; a number or boolean as its JSON text (3, true)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float) and value == value:
        text = json.dumps(value)
    else:
        raise TagError(f"{where}: value of tag {key!r} must be text, a number or a boolean")
    if len(text) > MAX_VALUE or "\x00" in text:
        raise TagError(f"{where}: value of tag {key!r} is above {MAX_VALUE} characters or holds a NUL")
    return text


def check_tags(tags: Any, where: str) -> dict[str, str]:
    """A JSON object of tags, checked; TagError names `where` and the tag at fault."""
    if not isinstance(tags, dict):
        raise TagError(f"{where}: must be an object of KEY: VALUE, got {type(tags).__name__}")
    if len(tags) > MAX_TAGS:
        raise TagError(f"{where}: {len(tags)} tags, at most {MAX_TAGS}")
    return {check_tag_key(key, where): tag_value(value, key, where) for key, value in tags.items()}
