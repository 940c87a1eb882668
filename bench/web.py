"""The console's server time over a million executions, against a plain SQL query of the same rows.

For each backend (SQLite in a temporary file; PostgreSQL in a private database created through
``--pg-url`` and dropped at the end) ``--rows`` executions (default 1,000,000) are bulk-loaded
(bench/persistence.py's synthetic rows: a status mix over 30 days), the console app is built as
``smq web`` builds it (``smq.web.app.create_app``) and called in-process through Starlette's test
client, so what is timed is the server's work (routing, queries, templates, HTML) plus the client's
small in-process overhead, never a network. Each page kind is fetched ``--repeat`` times after a
warm-up; p50 and p95 are printed with the p95 of the named baseline:

- executions list, first page (newest first, 50 rows)            vs  SELECT the same 51 rows
- executions list, a deep page (a next_token 90% of the way in)  vs  the same keyset SELECT
- executions list filtered by status=FAILED                       vs  the same filtered SELECT
- executions list filtered by state machine and status, deep      vs  the same SELECT
- executions list filtered by name prefix (a LIKE on the name)    vs  the same SELECT
- one execution of 500 history events (page with its graph)       vs  SELECT the execution and its 500 rows
- the graph of a 100-state definition (model, layout, SVG)        vs  compiling the same definition

Goals (issue 19): every executions-list page under 200 ms p95 on both backends; the 500-event
execution under 200 ms; the 100-state graph under 100 ms. Exit status 1 when one is missed. Wall
time is what the goals judge; the process's CPU time per request (``cpu p95 ms``) and the load
average (``load``) are printed next to it, since other processes on a shared machine inflate the
first and not the second.

Usage::

    python bench/web.py                      # both backends, 1,000,000 rows
    python bench/web.py --rows 100000 --repeat 20 --backends sqlite
    python bench/web.py --json --save web.json
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.options import add_database_option, add_output_options
from harness.report import console, emit_report
from scenarios.web.suite import graph_bench, run_backend


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40, help="timed requests per page kind")
    parser.add_argument("--backends", default="sqlite,postgresql")
    add_database_option(parser)
    add_output_options(parser)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "rows": args.rows,
        "repeat": args.repeat,
        "backends": [],
        "graph": graph_bench(args.repeat),
    }
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        report["backends"].append(run_backend(backend, args))

    def tables() -> None:
        from rich.table import Table

        out = console(150)
        table = Table(
            title=f"smq web: server time over {args.rows:,} executions ({args.repeat} requests each)"
        )
        for column in (
            "backend",
            "page",
            "p50 ms",
            "p95 ms",
            "cpu p95 ms",
            "baseline",
            "baseline p95 ms",
            "ratio",
            "goal",
            "met",
            "load",
        ):
            table.add_column(column, justify="right" if "ms" in column or column in ("ratio",) else "left")
        rows = [("-", report["graph"])] + [(b["backend"], p) for b in report["backends"] for p in b["pages"]]
        for backend, row in rows:
            table.add_row(
                backend,
                row["page"],
                f"{row['p50_ms']:.1f}",
                f"{row['p95_ms']:.1f}",
                f"{row['cpu_p95_ms']:.1f}",
                row["baseline"],
                f"{row['baseline_p95_ms']:.2f}",
                f"{row['ratio_p95']}x",
                f"< {row['goal_ms']:.0f} ms",
                "yes" if row["met"] else "NO",
                f"{row['load1']:.1f}",
            )
        out.print(table)
        for backend in report["backends"]:
            out.print(f"{backend['backend']}: {backend['rows']:,} rows loaded in {backend['load_seconds']} s")

    emit_report(report, args.save, args.json, tables)
    met = report["graph"]["met"] and all(p["met"] for b in report["backends"] for p in b["pages"])
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
