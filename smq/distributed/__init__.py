"""Distributed execution on Celery over Redis: the task, queues, dead letters, client, leader, stats."""
