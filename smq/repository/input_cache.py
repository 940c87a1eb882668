"""Execution inputs decoded once per process.

An execution's input never changes, yet it is read with the execution every time the execution is
resumed: a Map of thousands of items parked on callbacks is read on every answer, and decoding its
input each time made an answer cost more the bigger the Map (issue 22.3). Reading a whole execution
record, its input comes as JSON text and is decoded through this cache: the same text for the same
execution is the same value (shared, as every JSON value in smq is: handlers get copies, nothing
mutates it).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

SMALL = 4096  # characters: decoding is cheaper than keeping it
BUDGET = 4_000_000  # characters of input text kept per process, the least recently used dropped first


class DecodedInputs:
    """Least-recently-used decoded inputs by execution id, checked against their text."""

    def __init__(self, budget: int = BUDGET) -> None:
        self.budget = budget
        self._items: OrderedDict[str, tuple[str, Any]] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def value(self, execution_id: str, text: str | None) -> Any:
        if text is None:
            return None
        if len(text) < SMALL or len(text) > self.budget:
            return json.loads(text)
        with self._lock:
            found = self._items.get(execution_id)
            if found is not None and found[0] == text:
                self._items.move_to_end(execution_id)
                return found[1]
        value = json.loads(text)
        with self._lock:
            old = self._items.pop(execution_id, None)
            if old is not None:
                self._chars -= len(old[0])
            self._items[execution_id] = (text, value)
            self._chars += len(text)
            while self._chars > self.budget:
                _, (dropped, _) = self._items.popitem(last=False)
                self._chars -= len(dropped)
        return value


INPUTS = DecodedInputs()
