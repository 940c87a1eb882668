"""The `ask` callback handler the branch tests share: records each order's task token, so a test can
answer the iterations of a parked Map one by one."""

from __future__ import annotations

import threading
from typing import Any

from smq import HandlerRegistry


class Asker:
    """The `ask` callback handler: records each order's task token."""

    def __init__(self) -> None:
        self.tokens: dict[Any, str] = {}
        self.calls = 0
        self._lock = threading.Lock()
        self.registry = HandlerRegistry()
        self.registry.register("ask", self._ask)

    def _ask(self, payload: Any, ctx: Any) -> None:
        with self._lock:
            self.tokens[payload["order"]] = payload["token"]
            self.calls += 1
