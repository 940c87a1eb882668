"""Running executions against the repository: start, resume, chain, batch (local mode).

The Celery worker (`smq.tasks`) calls the same functions; only where the work runs changes.
"""
