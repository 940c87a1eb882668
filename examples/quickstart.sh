#!/usr/bin/env sh
# smq's main job on the embedded default (an SQLite file, ./smq.db unless SMQ_DATABASE_URL says
# otherwise): register the example machines, process a batch of orders, then chain the shipping
# machine over every order that succeeded, and show what happened. Safe to run again: execution
# names are deterministic, so a second run finds the executions it already made.
set -e
cd "$(dirname "$0")/.."
HANDLERS=examples/handlers.py

smq definitions put examples/order_processing.yaml --id orders
smq definitions put examples/shipping.yaml --id shipping

# 20 orders, one execution each; a few fail on purpose (declined cards, fraud, stock) -> exit 1.
smq start orders --local --inputs examples/inputs/orders.jsonl --name-prefix order- --handlers "$HANDLERS" \
  || echo "(some orders failed on purpose: see examples/README.md)"

# Chain `shipping` from the final output of every successful order, in a local batch.
smq leader --local --filter state_machine_id=orders,status=SUCCEEDED --target shipping \
  --name-prefix ship- --concurrency 4 --handlers "$HANDLERS"

smq executions list --filter state_machine_id=shipping --limit 3
smq executions stats
