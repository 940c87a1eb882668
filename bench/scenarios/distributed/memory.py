"""Part 4 of bench/distributed.py: the peak memory of ``smq leader`` over 10k and 200k sources.

The CLI runs as a child in a small wrapper that reports the child's own ``VmHWM`` at exit (cross-checked
by polling ``/proc/<pid>/status``); the baseline is the same command over the smaller set of sources,
and the goal is that the peak grows by less than 50 MB from one to the other."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis
from harness.figures import MIB
from harness.paths import ROOT
from harness.processes import status_bytes
from harness.progress import load1, log
from harness.queues import delete_queues, queue_length

from scenarios.distributed.fan_out import load_sources
from scenarios.distributed.results import LeaderMemory, Results
from scenarios.distributed.rig import CHAIN_TARGET

# Runs the `smq` CLI in a child process and reports that process's own peak RSS when it exits.
LEADER_WRAPPER = """
import atexit, os, sys

def _report_peak():
    with open("/proc/self/status") as status:
        values = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith("Vm")}
    with open(os.environ["SMQ_BENCH_RSS_FILE"], "w") as out:
        out.write(str(values.get("VmHWM", 0) * 1024))

atexit.register(_report_peak)
sys.argv = ["smq", *sys.argv[1:]]
from smq.cli import main
main()
"""


def run_leader_process(
    repo: Any, env: dict[str, str], staging: redis.Redis, machine: str, count: int, work_dir: Path
) -> LeaderMemory:
    """`smq leader --filter state_machine_id=SRC --target DST --json` as a child; its VmHWM at exit."""
    result = LeaderMemory(count, load1=load1())
    rss_file = work_dir / f"rss-{machine}"
    command = [
        sys.executable, "-c", LEADER_WRAPPER, "leader",
        "--filter", f"state_machine_id={machine}", "--target", CHAIN_TARGET, "--json",
    ]  # fmt: skip
    child_env = {**env, "SMQ_BENCH_RSS_FILE": str(rss_file)}
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    polled = [0]

    def poll() -> None:
        while process.poll() is None:
            polled[0] = max(polled[0], status_bytes("VmHWM", process.pid))
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stdout, stderr = process.communicate()
    result.seconds = time.perf_counter() - start
    poller.join()
    result.exit_code = process.returncode
    result.polled_peak_rss = polled[0]
    problems = []
    try:
        result.peak_rss = int(rss_file.read_text())
    except (OSError, ValueError):
        problems.append("the child did not report its VmHWM")
    try:
        summary = json.loads(stdout)
        result.enqueued = int(summary.get("enqueued", 0))
    except (ValueError, TypeError, AttributeError):
        problems.append(f"no JSON summary on stdout: {stdout[-300:]!r}")
    if process.returncode != 0:
        problems.append(f"exit code {process.returncode}: {stderr.decode(errors='replace')[-500:]}")
    result.queue_length = queue_length(staging)
    if result.enqueued != count:
        problems.append(f"enqueued {result.enqueued}, expected {count}")
    if result.queue_length != count:
        problems.append(f"queue holds {result.queue_length}, expected {count}")
    result.ok = not problems
    result.detail = "; ".join(problems)
    delete_queues(staging)
    return result


def run_memory(
    repo: Any,
    definition: dict[str, Any],
    staging: redis.Redis,
    sizes: list[int],
    env: dict[str, str],
    work_dir: Path,
    results: Results,
) -> None:
    """For each size in turn: that many sources COPY-loaded under a state machine of their own, then
    `smq leader` over them (with `env`, on the staging db where nobody consumes)."""
    for size in sizes:
        machine = f"mem-{size}"
        repo.put_definition(machine, definition)
        log(f"memory: loading {size:,} sources")
        load_sources(repo, machine, size)
        log(f"memory: `smq leader` over {size:,} sources")
        results.memory.append(run_leader_process(repo, env, staging, machine, size, work_dir))
        log(f"  peak RSS {results.memory[-1].peak_rss / MIB:.1f} MB in {results.memory[-1].seconds:.1f}s")
