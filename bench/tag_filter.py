"""Tag filters (`tag.KEY=VALUE`) over many executions on PostgreSQL: with the GIN index on tags
(migration 0016) against the same filter without it (the baseline: how smq ran before 0016, when every
tag filter read each row's tags).

Loads ``--rows`` executions (the persistence benchmark's synthetic rows) into a fresh database
(``smq_bench_tags_<pid>`` next to ``--pg-url``'s, dropped at the end) and tags them all:
``batch`` = one of 1,000 values (a rare filter: 0.1% of the rows match) and ``team`` = billing or
shipping (half). For each filter it times, ``--repeat`` times after warm-up, what the CLI, the console
and the leader run: ``count_executions`` and the first 50-row page (``page_executions``), with the index,
then again after dropping it. Printed: p50 and p95 ms each way and the ratio baseline / indexed.

Verified: both ways return the same count and the same page.

Usage::

    python bench/tag_filter.py                     # 1,000,000 rows
    python bench/tag_filter.py --rows 200000 --json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

from harness.database import copy_executions
from harness.figures import percentile
from harness.options import add_database_option, add_output_options
from harness.progress import log
from harness.report import console, emit_report, simple_table
from harness.servers import fresh_database
from scenarios.persistence.streaming import synthetic_rows
from sqlalchemy import text

from smq import Repository
from smq.repository.filters import parse_filter

FILTERS = ("tag.batch=7", "tag.team=billing", "tag.batch=7,tag.team=billing")


def timed(call: Any, repeat: int) -> tuple[list[float], Any]:
    """Milliseconds of `repeat` calls after 3 warm-up calls, sorted; and the last result."""
    for _ in range(3):
        result = call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        samples.append((time.perf_counter() - started) * 1000)
    return sorted(samples), result


def measure(repository: Repository, repeat: int) -> dict[str, dict[str, Any]]:
    """Per filter and query: (p50, p95, result)."""
    found: dict[str, dict[str, Any]] = {}
    for text_filter in FILTERS:
        flt = parse_filter(text_filter)
        count_ms, count = timed(lambda flt=flt: repository.count_executions(flt), repeat)
        page_ms, page = timed(lambda flt=flt: repository.page_executions(flt, limit=50), repeat)
        found[text_filter] = {
            "count": (count_ms, count),
            "first page": (page_ms, [e.execution_id for e in page.executions]),
        }
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    add_database_option(parser)
    add_output_options(parser)
    args = parser.parse_args(argv)
    with fresh_database(args.pg_url, f"smq_bench_tags_{os.getpid()}") as url:
        repository = Repository.open(url)
        try:
            log(f"loading {args.rows:,} executions")
            copy_executions(repository, synthetic_rows(args.rows))
            with repository.engine.begin() as connection:
                connection.execute(
                    text(
                        "UPDATE smq_executions SET tags = jsonb_build_object("
                        "'batch', (abs(hashtext(id)) % 1000)::text, "
                        "'team', CASE WHEN abs(hashtext(name)) % 2 = 0 THEN 'billing' ELSE 'shipping' END)"
                    )
                )
            with repository.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("VACUUM ANALYZE smq_executions"))
            log("timing with the GIN index")
            indexed = measure(repository, args.repeat)
            with repository.engine.begin() as connection:
                connection.execute(text("DROP INDEX ix_smq_executions_tags"))
            log("timing without it (baseline)")
            plain = measure(repository, args.repeat)
        finally:
            repository.close()
    rows, problems = [], []
    for text_filter in FILTERS:
        for query in ("count", "first page"):
            (with_ms, with_result), (without_ms, without_result) = (
                indexed[text_filter][query],
                plain[text_filter][query],
            )
            if with_result != without_result:
                problems.append(f"{text_filter} {query}: results differ with and without the index")
            rows.append(
                {
                    "filter": text_filter,
                    "query": query,
                    "matched": indexed[text_filter]["count"][1],
                    "indexed_p50_ms": round(statistics.median(with_ms), 2),
                    "indexed_p95_ms": round(percentile(with_ms, 0.95), 2),
                    "baseline_p50_ms": round(statistics.median(without_ms), 2),
                    "baseline_p95_ms": round(percentile(without_ms, 0.95), 2),
                    "baseline_over_indexed_p50": round(
                        statistics.median(without_ms) / statistics.median(with_ms), 1
                    ),
                }
            )
    report = {
        "rows": args.rows,
        "repeat": args.repeat,
        "results": rows,
        "verified": not problems,
        "problems": problems,
    }

    def table() -> Any:
        out = simple_table(
            f"tag filters over {args.rows:,} executions (PostgreSQL): GIN index vs none",
            "filter", "query", ("matched", "right"), ("indexed p50 ms", "right"), ("p95", "right"),
            ("no index p50 ms", "right"), ("p95", "right"), ("ratio", "right"),
        )  # fmt: skip
        for row in rows:
            out.add_row(
                row["filter"], row["query"], f"{row['matched']:,}",
                f"{row['indexed_p50_ms']:.2f}", f"{row['indexed_p95_ms']:.2f}",
                f"{row['baseline_p50_ms']:.2f}", f"{row['baseline_p95_ms']:.2f}",
                f"{row['baseline_over_indexed_p50']:.1f}x",
            )  # fmt: skip
        return out

    emit_report(report, args.save, args.json, lambda: console(120).print(table()))
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
