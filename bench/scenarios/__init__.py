"""The benchmarks' scenarios, one package per entry script (bench/distributed.py runs
``scenarios.distributed``, and so on), one module per scenario. Each module says what it measures
and against which baseline; what they share is in ``harness``."""
