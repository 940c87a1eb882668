"""Where things are: the repository (every subprocess runs there), the bench directory, its workflow
definitions and the handlers the bench workers load."""

from __future__ import annotations

from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent  # bench/
ROOT = BENCH.parent  # the repository: every subprocess runs there
DEFINITIONS = BENCH / "definitions"
HANDLERS_FILE = BENCH / "bench_handlers.py"  # SMQ_HANDLERS for the bench workers
