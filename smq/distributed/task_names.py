"""The names `execute_state_machine` answers to on the wire.

The design names the task `execute_state_machine`, so a service that publishes by name reaches it.
smq registered it as `smq.execute_state_machine` before; messages already queued (or published by
older clients) under that name still run: the worker registers the same task under both names, and
clients publish the design's name.
"""

from __future__ import annotations

TASK_NAME = "execute_state_machine"
LEGACY_TASK_NAMES = ("smq.execute_state_machine",)
TASK_NAMES = (TASK_NAME, *LEGACY_TASK_NAMES)
