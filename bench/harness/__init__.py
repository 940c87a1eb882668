"""What the benchmark scripts share: one copy each of the servers, processes, measurements and report
parts that every bench/*.py needs.

The scripts run as ``python bench/X.py`` from the repository root, so ``bench/`` is on ``sys.path``
and they import this package as ``harness`` (and their scenario modules as ``scenarios.X``).

- ``paths``: where the repository, the definitions and the bench handlers are;
- ``progress``: progress lines on stderr, polling until a count is reached;
- ``processes``: subprocesses in their own sessions, stopped by pid; ``/proc`` reads;
- ``lifecycle``: SIGTERM/SIGHUP handling, the log directory, errors kept for the report, the run's clock;
- ``cpu``: CPU seconds per group of processes and for the whole machine;
- ``workers``: ``celery -A smq worker`` subprocesses;
- ``queues``: the benchmarks' Redis dbs and Celery queues;
- ``servers``: a fresh PostgreSQL database, a private redis-server or PostgreSQL cluster;
- ``database``: bulk loads and commit latency on smq's tables;
- ``figures``: units, ratios, medians and percentiles;
- ``report``: figures as text, verdicts, rich tables, the JSON report and ``--save``;
- ``options``: the command-line options the entry scripts share (--pg-url, --redis-url, --json, --save).

Only the standard library is imported at module level: ``bench/engine.py`` uses this package too and
must start without smq, SQLAlchemy or Redis installed. Everything else is imported where it is used.
"""
