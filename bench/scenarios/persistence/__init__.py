"""bench/persistence.py's scenarios: the cost of durability, persisted executions against in-memory
ones (throughput), and keyset streaming of a million executions in flat memory (streaming), on each
of the backends; report presents them."""
