"""Your own handlers, as the containers load them: a module (or a .py file) that registers functions
with `@smq.handler`. docker-compose.yml mounts its directory at /handlers and SMQ_HANDLERS names it:

    SMQ_HANDLERS_DIR=./examples/own_handlers SMQ_HANDLERS=/handlers/greetings.py docker compose up -d

Several modules: SMQ_HANDLERS=/handlers/a.py,/handlers/b.py. A module that cannot be imported stops
the worker at start with its name, instead of failing every task later.
"""

from __future__ import annotations

from typing import Any

import smq


@smq.handler("greet")
def greet(payload: dict[str, Any], ctx: smq.TaskContext) -> dict[str, Any]:
    return {"greeting": f"Hello, {payload['name']}!"}
