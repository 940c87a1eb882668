"""bench/engine.py's scenarios: smq's in-memory engine (smq_engine) against moto's ASL interpreter
(moto_engine, the baseline) on the same workloads, and workflow12's JSONata twin against its JSONPath
original (twin). Like bench/engine.py, these modules import only the standard library at module
level: the moto side can be measured without smq installed."""
