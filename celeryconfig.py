"""Celery configuration for smq: loaded by the workers, the leader, `smq start` and Flower alike.

Every value comes from smq's typed settings (`smq.settings.Settings`, read from `SMQ_*` environment
variables), so one environment configures the whole deployment. Start a worker with
`celery -A smq worker -Q critical,default,low` from anywhere: this module is installed with smq.
"""

from __future__ import annotations

from kombu import Exchange, Queue

from smq.settings import QUEUES, Settings

_settings = Settings.from_env()

# Where tasks are published and consumed: SMQ_BROKER_URL (Redis), local Redis by default.
broker_url = _settings.broker_url or "redis://127.0.0.1:6379/0"
# Keep reconnecting to the broker at startup instead of exiting (containers start in any order).
broker_connection_retry_on_startup = True
# smq's Redis transport: an item of a queue that is not a kombu message (raw text pushed with LPUSH)
# goes to the dead letters instead of ending the worker (smq.distributed.intake). Other schemes (rediss,
# sentinel) keep kombu's own transport.
if broker_url.partition("://")[0] == "redis":
    broker_transport = "smq.distributed.intake:Transport"
broker_transport_options = {
    # A message not acknowledged within this many seconds is delivered again. It must exceed the hard
    # time limit, or a long execution would be handed to a second worker while still running.
    "visibility_timeout": _settings.visibility_timeout,
    # How queues are ordered for each BRPOP: weighted random (6:3:1 by default) or strict priority.
    "queue_order_strategy": "smq.distributed.queues.WeightedCycle",
    # How often (seconds) a worker sweeps for messages whose visibility timeout has passed...
    "unacked_restore_interval": 1 if _settings.visibility_timeout < 60 else 10,
    # ...scanning Redis on every sweep when the visibility timeout is short (tests), every 10th otherwise.
    "unacked_restore_throttle": 1 if _settings.visibility_timeout < 60 else 10,
}
# smq's own keys, read by smq.distributed.queues.WeightedCycle: consumption weight per queue
# (SMQ_QUEUE_WEIGHTS="critical=6,default=3,low=1") and "weighted" or "strict" (SMQ_QUEUE_ORDER).
smq_queue_weights = _settings.queue_weights
smq_queue_order = _settings.queue_order

# JSON on the wire, never pickle: a payload must be replayable from the dead letters.
task_serializer = "json"
# What Celery would log and drop (a body that is not JSON, pickle, an unknown task, a message it cannot
# read) is dead-lettered with its raw text by smq's consumer (smq.distributed.intake).
worker_consumer = "smq.distributed.intake:Consumer"
result_serializer = "json"
accept_content = ["json"]
# Results live in smq's database, not in Celery: no result backend, nothing stored per task.
result_backend = None
task_ignore_result = True

# Three queues, each with its own direct exchange and routing key.
task_queues = tuple(Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES)
task_default_queue = "default"
task_default_exchange = "default"
task_default_routing_key = "default"
# A mistyped queue name fails at publish instead of creating a queue no worker reads.
task_create_missing_queues = False

# Acknowledge after the task ran, so a worker killed mid-execution loses nothing: the message is
# delivered again and the execution resumes from its last checkpoint.
task_acks_late = True
# A pool child that dies (SIGKILL, OOM) requeues its task...
task_reject_on_worker_lost = True
# ...and counts that as a retry, so a task that always kills its worker ends in the dead letters
# (with smq's retry policy: the payload's max_retries, backoff and jitter; see smq.tasks.ExecutionRequest).
task_retry_on_worker_lost = True
# Take one message at a time per process: weighting happens each time a slot frees.
worker_prefetch_multiplier = 1

# Time limits (need the prefork pool): the soft one raises in the task, which checkpoints and retries;
# the hard one kills the child, and the task goes to the dead letters.
task_soft_time_limit = _settings.soft_time_limit
task_time_limit = _settings.hard_time_limit

# Retry policy of execute_state_machine: SMQ_MAX_RETRIES retries (4 attempts by default), waiting
# SMQ_RETRY_DELAYS seconds before each (15, 60, 300 by default; the last repeats), +-20% jitter.
smq_max_retries = _settings.max_retries
smq_retry_delays = _settings.retry_delays

# Modules the worker imports at start: the task itself. Handler modules (SMQ_HANDLERS) are imported by
# smq's worker_init hook, which stops the worker if one is missing.
imports = ("smq.tasks",)

# Task events, what Flower shows (SMQ_TASK_EVENTS, on by default): workers report received, started,
# succeeded and failed tasks, and clients report each task they send, so queued tasks are visible too.
worker_send_task_events = _settings.task_events
task_send_sent_event = _settings.task_events
# Log one line per task, not the payload (payloads can be large).
worker_hijack_root_logger = False
# How the worker's log lines are written (smq.distributed.app formats Celery's handlers): "text", or
# "json", one object per line (SMQ_LOG_FORMAT).
smq_log_format = _settings.log_format
