"""The self-healing soak's faults (one per run; ``none`` is the baseline every other row is read
against), the state machine every run executes, and the bad messages the ``bad-messages`` fault puts
in the queue."""

from __future__ import annotations

import base64
import json
import pickle
import uuid

from harness.paths import DEFINITIONS

DEFINITION_FILE = DEFINITIONS / "fault_soak.json"
MACHINE = "fault-soak"
PREFIX = "soak-"
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
MID_BATCH = 0.25  # a mid-batch fault strikes once this share of the executions has finished
PG_DOWN_SECONDS = 10.0
GOAL_AFTER_REDIS_BACK = 60.0
LINGER_SECONDS = 5.0
BAD_MESSAGES = 2  # garbage, and a kombu envelope with a pickle body

FAULTS: dict[str, str] = {
    "none": "none (baseline)",
    "pool-kill": "SIGKILL of every pool child mid-batch",
    "worker-kill": "SIGKILL of a whole worker mid-batch, a replacement started",
    "redis-restart": "Redis SIGKILLed mid-batch, restarted on its AOF",
    "redis-empty": "Redis restarted EMPTY mid-batch (AOF removed)",
    "redis-empty-early": "Redis emptied right after `smq start`",
    "purge": "`celery -A smq purge -f` mid-batch",
    "pg-stop": f"PostgreSQL stopped {PG_DOWN_SECONDS:.0f} s mid-batch",
    "start-kill": "`smq start` SIGKILLed half-way through its fan-out",
    "bad-messages": "garbage + a pickle envelope put next in the queue mid-batch",
}
REDIS_EMPTIED = ("redis-empty", "redis-empty-early")


def bad_envelopes() -> list[str]:
    """Raw garbage, then a kombu envelope of smq's task whose body claims to be a pickle (its body is a
    harmless pickled tuple: nothing here may ever be unpickled by a worker)."""
    task_id = str(uuid.uuid4())
    body = base64.b64encode(pickle.dumps(((), {}, {}), protocol=2)).decode()
    envelope = {
        "body": body,
        "content-encoding": "binary",
        "content-type": "application/x-python-serialize",
        "headers": {
            "lang": "py", "task": "execute_state_machine", "id": task_id, "root_id": task_id,
            "parent_id": None, "group": None, "retries": 0, "argsrepr": "()", "kwargsrepr": "{}",
            "origin": "bench/faults.py",
        },
        "properties": {
            "correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": "default"}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        },
    }  # fmt: skip
    return ["not a kombu message {", json.dumps(envelope)]
