"""bench/web.py: the console's server time over a million executions, against plain SQL."""
