"""bench/distributed.py's scenarios: Celery workers over Redis, bare Celery against smq (throughput),
leader publishing against a plain send_task loop (fan_out), and the leader's memory (memory); rig
holds the workers and the staging db they share, profile the optional py-spy sampling, results,
report and suite the figures, their presentation and the order the parts run in."""
