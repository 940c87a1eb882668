"""Waiting and recovering: parked executions (Message states, callback tokens, durable timers), the
dispatcher, crash recovery, redrive and stop, against real PostgreSQL, Redis and `celery worker`s."""
