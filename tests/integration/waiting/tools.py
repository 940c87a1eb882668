"""Commands run as subprocesses by the tests, in the environment of a deployment (SMQ_DATABASE_URL,
SMQ_BROKER_URL): smq's Celery app reads its broker once, at import, so whatever publishes
continuations for the workers must run in a process started with the test's broker.

    python -m tests.integration.waiting.tools send MESSAGES.json [--threads N]
        Operations.send_message for every {"key", "value", "data"} of the file, from N threads at
        once; prints one JSON list, in the file's order, of Resumed.to_dict().
    python -m tests.integration.waiting.tools fire EPOCH
        WaitStore.fire_due(now=EPOCH), then the continuations of what woke (what Dispatcher.tick does,
        with a `now` of the test's choosing); prints {"woken": [...], "continuations": {...}}.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from smq import Operations, Repository, Settings
from smq.execution.continuation import Continuation
from smq.launching import continue_executions
from smq.repository.waits import WaitStore


def send(path: str, threads: int) -> list[dict[str, Any]]:
    settings = Settings.from_env()
    repository = Repository.open(settings.database_url)
    operations = Operations(repository, settings)
    with open(path, encoding="utf-8") as handle:
        messages = json.load(handle)

    def one(message: dict[str, Any]) -> dict[str, Any]:
        return operations.send_message(message["key"], message["value"], message["data"]).to_dict()

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(one, messages))
    finally:
        repository.close()


def fire(at: float) -> dict[str, Any]:
    settings = Settings.from_env()
    repository = Repository.open(settings.database_url)
    try:
        woken = WaitStore(repository.engine, wake_grace_seconds=settings.wake_grace).fire_due(
            now=datetime.fromtimestamp(at, UTC)
        )
        items = [Continuation(w.state_machine_id, w.name, w.queue) for w in woken]
        continued = continue_executions(repository, items, settings)
        return {
            "woken": [{"execution_id": w.execution_id, "resolution": w.resolution} for w in woken],
            "continuations": continued.to_dict(),
        }
    finally:
        repository.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tools")
    commands = parser.add_subparsers(dest="command", required=True)
    sender = commands.add_parser("send")
    sender.add_argument("path")
    sender.add_argument("--threads", type=int, default=8)
    firing = commands.add_parser("fire")
    firing.add_argument("at", type=float)
    args = parser.parse_args(argv)
    result = send(args.path, args.threads) if args.command == "send" else fire(args.at)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
