"""The README's first command runs smq's main job on the embedded default: `examples/quickstart.sh`
registers the example machines, runs 20 orders (8 fail on purpose), chains `shipping` over the 12 that
succeeded in a local batch, and shows the summary. Run here as a user would (the `smq` command, no
broker), on an SQLite file of the test's own; a second run must create nothing new."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from smq import ExecutionFilter, Repository

ROOT = Path(__file__).resolve().parents[2]


def _quickstart(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SMQ_")}
    env.update(SMQ_DATABASE_URL=database_url, COLUMNS="200")
    return subprocess.run(
        ["sh", str(ROOT / "examples" / "quickstart.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _counts(repository: Repository) -> dict[tuple[str, str], int]:
    return {
        (machine, status): repository.count_executions(
            ExecutionFilter(state_machine_id=machine, statuses=(status,))
        )
        for machine in ("orders", "shipping")
        for status in ("SUCCEEDED", "FAILED", "RUNNING")
    }


def test_the_quickstart_runs_the_main_job_and_is_safe_to_run_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'quickstart.db'}"
    first = _quickstart(url)
    assert first.returncode == 0, f"stdout:\n{first.stdout}\nstderr:\n{first.stderr}"
    assert "(some orders failed on purpose" in first.stdout
    assert "leader → shipping" in first.stdout
    expected = {
        ("orders", "SUCCEEDED"): 12,
        ("orders", "FAILED"): 8,
        ("orders", "RUNNING"): 0,
        ("shipping", "SUCCEEDED"): 12,
        ("shipping", "FAILED"): 0,
        ("shipping", "RUNNING"): 0,
    }
    repository = Repository.open(url)
    try:
        assert _counts(repository) == expected
        shipped = repository.list_executions(ExecutionFilter(state_machine_id="shipping"))
        succeeded = repository.list_executions(
            ExecutionFilter(state_machine_id="orders", statuses=("SUCCEEDED",))
        )
        # Each chained execution is named after its source: prefix + machine:name.
        assert sorted(record.name for record in shipped) == sorted(
            f"ship-orders:{order.name}" for order in succeeded
        )
        assert all(record.source_execution_id for record in shipped)

        second = _quickstart(url)
        assert second.returncode == 0, f"stdout:\n{second.stdout}\nstderr:\n{second.stderr}"
        assert _counts(repository) == expected  # deterministic names: nothing new
    finally:
        repository.close()
