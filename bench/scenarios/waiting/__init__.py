"""bench/waiting.py's scenarios: bare Celery enqueue-to-start (bare, the baseline), durable-timer
dispatch lag (timers), catching up after scheduler downtime (catchup), message-to-resume latency
(messages), after an untimed warm_up; rig holds the workers and the scheduler, guard keeps other
clients off the Redis dbs, checks verifies every part, results, report and suite hold the figures,
their presentation and the order the parts run in."""
