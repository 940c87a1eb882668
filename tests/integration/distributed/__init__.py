"""Distributed execution: real `celery worker` subprocesses (prefork) on Redis, PostgreSQL as the truth."""
