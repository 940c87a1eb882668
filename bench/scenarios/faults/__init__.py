"""bench/faults.py's scenarios: the self-healing soak, N executions under one fault at a time
(catalogue: the faults, ``none`` the baseline), each on fresh servers (run), counted (counting) into a
row (results) of the report."""
