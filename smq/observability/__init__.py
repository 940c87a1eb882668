"""Metrics (Prometheus) and traces (OpenTelemetry) of smq's executions; logs are `smq.logs`.

Nothing here is imported unless it is switched on (SMQ_METRICS, SMQ_TRACING): prometheus-client and
OpenTelemetry load at the edges that use them (worker boot, `smq scheduler`, `smq leader`).
"""
