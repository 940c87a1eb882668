"""One typed settings object, read from the environment (`SMQ_*`).

Everything configurable lives here so that the CLI, workers and tests agree on names and defaults.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from smq.engine.cursor import AwsIdentity
from smq.engine.errors import SmqError
from smq.engine.runtime import DEFAULT_MAX_TRANSITIONS, DEFAULT_MAX_WORKERS, DEFAULT_PAYLOAD_LIMIT
from smq.logs import LOG_FORMATS, TEXT


class SettingsError(SmqError, ValueError):
    """An SMQ_* variable holds a value smq cannot use; the message names the variable."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: dict[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {raw}")
    return value


# A URL inside any text: a scheme, `://`, then everything up to whitespace or a quote.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# Query parameters that carry a secret (`?password=...` works for libpq and redis-py alike).
_SECRET_PARAMETER = re.compile(
    r"(?i)([?&;](?:[a-z_]*password|passwd|pwd|[a-z_]*secret|[a-z_]*token)=)[^&;#]*"
)
MASK = "***"
_MASKED_PARAMETER = rf"\g<1>{MASK}"


def redact(text: str) -> str:
    """`text` with the password of every URL in it masked: a database or broker URL, or an error message
    that quotes one. The only way smq shows a URL.

    Not the libraries' helpers: SQLAlchemy's `render_as_string(hide_password=True)` needs a URL it can
    parse (its own parse errors quote the URL whole) and leaves `?password=` visible, and kombu's
    `maybe_sanitize_url` re-renders the URL. Here the user info runs to the URL's last `@` (redis-py
    and urllib read `redis://:p@ss@host` so) and everything after `user:` up to it is masked."""
    return _URL.sub(_mask_url, text)


def _mask_url(match: re.Match[str]) -> str:
    url = match.group()
    scheme, _, rest = url.partition("://")
    userinfo, at, location = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.partition(':')[0]}:{MASK}@{location}"
    return f"{scheme}://{_SECRET_PARAMETER.sub(_MASKED_PARAMETER, rest)}"


QUEUES = ("critical", "default", "low")
DEFAULT_QUEUE_WEIGHTS = {"critical": 6, "default": 3, "low": 1}


def parse_queue_weights(text: str, name: str = "SMQ_QUEUE_WEIGHTS") -> dict[str, int]:
    """`critical=6,default=3,low=1`: every queue named once, each weight a positive integer."""
    weights: dict[str, int] = {}
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        queue, sep, raw = part.partition("=")
        queue = queue.strip()
        if not sep or queue not in QUEUES:
            raise SettingsError(f"{name}: {part!r} is not QUEUE=WEIGHT with QUEUE one of {', '.join(QUEUES)}")
        if queue in weights:
            raise SettingsError(f"{name}: queue {queue!r} is given twice")
        try:
            weight = int(raw)
        except ValueError:
            raise SettingsError(
                f"{name}: weight of {queue!r} must be an integer, got {raw.strip()!r}"
            ) from None
        if weight < 1:
            raise SettingsError(f"{name}: weight of {queue!r} must be >= 1, got {weight}")
        weights[queue] = weight
    missing = [queue for queue in QUEUES if queue not in weights]
    if missing:
        raise SettingsError(f"{name}: no weight for {', '.join(missing)}")
    return weights


DEFAULT_RETRY_DELAYS = (15.0, 60.0, 300.0)


def _retry_delays(env: dict[str, str]) -> tuple[float, ...]:
    for old in ("SMQ_RETRY_BACKOFF", "SMQ_RETRY_BACKOFF_MAX"):
        if env.get(old):
            raise SettingsError(f"{old} is replaced by SMQ_RETRY_DELAYS (seconds per retry, e.g. 15,60,300)")
    raw = env.get("SMQ_RETRY_DELAYS")
    if not raw:
        return DEFAULT_RETRY_DELAYS
    delays = []
    for item in raw.split(","):
        try:
            delay = float(item)
        except ValueError:
            raise SettingsError(f"SMQ_RETRY_DELAYS: {item.strip()!r} is not a number of seconds") from None
        if not math.isfinite(delay) or delay < 0:
            raise SettingsError(
                f"SMQ_RETRY_DELAYS: each delay must be a finite number >= 0, got {item.strip()!r}"
            )
        delays.append(delay)
    return tuple(delays)


def _outage_budget(env: dict[str, str], soft_time_limit: float) -> float:
    """300 s, or half the soft time limit when that is shorter: the soft limit ends whatever runs, the
    retried checkpoint included, so the budget must end first."""
    budget = _float(env, "SMQ_OUTAGE_BUDGET", min(300.0, soft_time_limit / 2), minimum=0.0)
    if budget >= soft_time_limit:
        raise SettingsError(
            f"SMQ_OUTAGE_BUDGET ({budget:g}) must be below SMQ_SOFT_TIME_LIMIT ({soft_time_limit:g})"
        )
    return budget


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be on or off (1/0, true/false, yes/no), got {raw!r}")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, name: str) -> float:
    """`30d`, `12h`, `90m`, `45s`, `2w` or plain seconds, as seconds; SettingsError names `name`."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise SettingsError(f"{name}: {text!r} is not a duration (e.g. 30d, 12h, 90m, 3600)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _retention(env: dict[str, str]) -> float | None:
    raw = (env.get("SMQ_RETENTION") or "").strip()
    if raw.lower() in ("", "off", "0"):
        return None
    seconds = parse_duration(raw, "SMQ_RETENTION")
    if seconds < 3600:
        raise SettingsError(f"SMQ_RETENTION: {raw!r} is under an hour; give e.g. 30d, or off")
    return seconds


def _list(env: dict[str, str], name: str) -> list[str]:
    return [item.strip() for item in env.get(name, "").split(",") if item.strip()]


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///smq.db"
    broker_url: str | None = None
    handlers: list[str] = field(default_factory=list)
    payload_limit: int = DEFAULT_PAYLOAD_LIMIT
    max_transitions: int = DEFAULT_MAX_TRANSITIONS
    max_workers: int = DEFAULT_MAX_WORKERS
    # "boundaries": side-effect-free steps are written with the next step; "every-state": one write each.
    checkpoints: str = "boundaries"
    # Distributed execution (celeryconfig.py reads these).
    queue_weights: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_QUEUE_WEIGHTS))
    queue_order: str = "weighted"  # or "strict": critical, then default, then low
    soft_time_limit: float = 600.0
    hard_time_limit: float = 660.0
    visibility_timeout: float = 3600.0
    max_retries: int = 3
    # Seconds before retry 1, 2, 3... (the last repeats), each with +-20% jitter: outlasts an ordinary
    # database restart or Redis failover before anything is dead-lettered.
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    # Seconds a worker keeps retrying a checkpoint it could not write (database down) before it gives
    # up: the Task's result is kept in memory meanwhile, so a blink never runs a completed Task again.
    outage_budget: float = 300.0
    # Waiting and recovering.
    park_after: float = 5.0  # a Wait longer than this (seconds) parks on a durable timer (workers)
    lease_seconds: float = 30.0  # an execution's lease; expired on a RUNNING execution = crashed
    wake_grace: float = 300.0  # a woken execution's continuation must start within this, or is recovered
    recovery_max_attempts: int = 3  # default per state machine
    scheduler_interval: float = 0.2  # seconds between the dispatcher's polls for due timers
    # Seconds a claimed execution may go unstarted before the scheduler asks the broker whether it still
    # holds its message (and publishes it again if not).
    stranded_after: float = 60.0
    # Celery task events (sent, received, started, succeeded, failed), what Flower shows: on, or off.
    task_events: bool = True
    # How smq logs (workers, the scheduler, the CLI): "text", readable, or "json", one object per line.
    log_format: str = TEXT
    # The region and account of the ARNs in the Context object ($$.Execution.Id, $$.StateMachine.Id).
    aws_identity: AwsIdentity = field(default_factory=AwsIdentity)
    # The built-in AWS integrations (smq[aws]): "auto" serves them when boto3 is installed, "on"
    # insists (an edge fails without boto3), "off" never serves them.
    aws_integrations: str = "auto"
    # StateMachineArn -> smq state machine id, for nested executions (states:startExecution) whose ARN's
    # last segment is not the smq id: SMQ_STATE_MACHINE_ARNS, a JSON object or `arn=id,arn=id`.
    state_machine_arns: dict[str, str] = field(default_factory=dict)
    # The scheduler deletes executions finished longer ago than this many seconds (None: never).
    retention: float | None = None
    # Prometheus metrics (smq.observability): collected by workers, the scheduler and the leader, each
    # serving them on metrics_address:metrics_port. A worker's pool processes write them to files in
    # metrics_dir (prometheus-client's multiprocess mode; None: a temporary directory of the worker's).
    metrics: bool = True
    metrics_port: int = 9191
    metrics_address: str = "0.0.0.0"
    metrics_dir: str | None = None
    # OpenTelemetry spans per execution run and per state (needs `pip install 'smq[otel]'`).
    tracing: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        return cls(
            database_url=env.get("SMQ_DATABASE_URL") or cls.database_url,
            broker_url=env.get("SMQ_BROKER_URL") or None,
            handlers=_list(env, "SMQ_HANDLERS"),
            payload_limit=_int(env, "SMQ_PAYLOAD_LIMIT", DEFAULT_PAYLOAD_LIMIT, minimum=1),
            max_transitions=_int(env, "SMQ_MAX_TRANSITIONS", DEFAULT_MAX_TRANSITIONS, minimum=1),
            max_workers=_int(env, "SMQ_MAX_WORKERS", DEFAULT_MAX_WORKERS, minimum=1),
            checkpoints=_checkpoints(env),
            log_format=_log_format(env),
            aws_identity=_aws_identity(env),
            aws_integrations=_aws_integrations(env),
            retention=_retention(env),
            state_machine_arns=_state_machine_arns(env),
            **_observability(env),
            **_distributed(env),
        )


def _checkpoints(env: dict[str, str]) -> str:
    mode = env.get("SMQ_CHECKPOINTS") or "boundaries"
    if mode not in ("boundaries", "every-state"):
        raise SettingsError(f"SMQ_CHECKPOINTS must be 'boundaries' or 'every-state', got {mode!r}")
    return mode


_AWS_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+$")
_AWS_ACCOUNT = re.compile(r"^\d{12}$")


def _aws_identity(env: dict[str, str]) -> AwsIdentity:
    region = env.get("SMQ_AWS_REGION") or AwsIdentity.region
    account = env.get("SMQ_AWS_ACCOUNT_ID") or AwsIdentity.account
    if not _AWS_REGION.fullmatch(region):
        raise SettingsError(f"SMQ_AWS_REGION must be a region name like us-east-1, got {region!r}")
    if not _AWS_ACCOUNT.fullmatch(account):
        raise SettingsError(f"SMQ_AWS_ACCOUNT_ID must be 12 digits, got {account!r}")
    return AwsIdentity(region, account)


def _state_machine_arns(env: dict[str, str]) -> dict[str, str]:
    """SMQ_STATE_MACHINE_ARNS: `{"arn:...:stateMachine:X": "smq-id"}` or `arn:...:stateMachine:X=smq-id,...`."""
    raw = (env.get("SMQ_STATE_MACHINE_ARNS") or "").strip()
    if not raw:
        return {}
    if raw.startswith("{"):
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise SettingsError(f"SMQ_STATE_MACHINE_ARNS is not a JSON object: {exc}") from None
        pairs: list[tuple[Any, ...]] = list(parsed.items()) if isinstance(parsed, dict) else [(parsed,)]
    else:
        pairs = [tuple(item.strip().rsplit("=", 1)) for item in raw.split(",") if item.strip()]
    mapping: dict[str, str] = {}
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(part, str) and part for part in pair):
            raise SettingsError(
                f"SMQ_STATE_MACHINE_ARNS: each entry maps a StateMachineArn to an smq id (ARN=ID), got {pair!r}"
            )
        mapping[pair[0]] = pair[1]
    return mapping


AWS_INTEGRATION_MODES = ("auto", "on", "off")


def _aws_integrations(env: dict[str, str]) -> str:
    raw = (env.get("SMQ_AWS_INTEGRATIONS") or "auto").strip().lower()
    if raw == "auto":
        return raw
    try:
        return "on" if _flag({"SMQ_AWS_INTEGRATIONS": raw}, "SMQ_AWS_INTEGRATIONS", True) else "off"
    except SettingsError:
        raise SettingsError(f"SMQ_AWS_INTEGRATIONS must be auto, on or off, got {raw!r}") from None


def _log_format(env: dict[str, str]) -> str:
    log_format = (env.get("SMQ_LOG_FORMAT") or TEXT).strip().lower()
    if log_format not in LOG_FORMATS:
        raise SettingsError(f"SMQ_LOG_FORMAT must be 'text' or 'json', got {env['SMQ_LOG_FORMAT']!r}")
    return log_format


def _observability(env: dict[str, str]) -> dict[str, Any]:
    port = _int(env, "SMQ_METRICS_PORT", Settings.metrics_port, minimum=1)
    if port > 65535:
        raise SettingsError(f"SMQ_METRICS_PORT must be a TCP port (1-65535), got {port}")
    return {
        "metrics": _flag(env, "SMQ_METRICS", Settings.metrics),
        "metrics_port": port,
        "metrics_address": (env.get("SMQ_METRICS_ADDRESS") or "").strip() or Settings.metrics_address,
        "metrics_dir": (env.get("SMQ_METRICS_DIR") or "").strip() or None,
        "tracing": _flag(env, "SMQ_TRACING", Settings.tracing),
    }


def _distributed(env: dict[str, str]) -> dict[str, Any]:
    order = env.get("SMQ_QUEUE_ORDER") or "weighted"
    if order not in ("weighted", "strict"):
        raise SettingsError(f"SMQ_QUEUE_ORDER must be 'weighted' or 'strict', got {order!r}")
    weights = env.get("SMQ_QUEUE_WEIGHTS")
    soft = _float(env, "SMQ_SOFT_TIME_LIMIT", 600.0, minimum=1.0)
    hard = _float(env, "SMQ_HARD_TIME_LIMIT", soft + 60.0, minimum=1.0)
    if hard <= soft:
        raise SettingsError(f"SMQ_HARD_TIME_LIMIT ({hard:g}) must be above SMQ_SOFT_TIME_LIMIT ({soft:g})")
    visibility = _float(env, "SMQ_VISIBILITY_TIMEOUT", max(3600.0, hard * 2), minimum=1.0)
    if visibility <= hard:
        # A message held longer than the visibility timeout is delivered again while still running.
        raise SettingsError(
            f"SMQ_VISIBILITY_TIMEOUT ({visibility:g}) must be above SMQ_HARD_TIME_LIMIT ({hard:g})"
        )
    return {
        "queue_weights": parse_queue_weights(weights) if weights else dict(DEFAULT_QUEUE_WEIGHTS),
        "queue_order": order,
        "soft_time_limit": soft,
        "hard_time_limit": hard,
        "visibility_timeout": visibility,
        "max_retries": _int(env, "SMQ_MAX_RETRIES", 3, minimum=0),
        "retry_delays": _retry_delays(env),
        "outage_budget": _outage_budget(env, soft),
        "park_after": _float(env, "SMQ_PARK_AFTER", 5.0, minimum=0.0),
        "lease_seconds": _float(env, "SMQ_LEASE_SECONDS", 30.0, minimum=1.0),
        "wake_grace": _float(env, "SMQ_WAKE_GRACE", 300.0, minimum=1.0),
        "recovery_max_attempts": _int(env, "SMQ_RECOVERY_MAX_ATTEMPTS", 3, minimum=1),
        "scheduler_interval": _float(env, "SMQ_SCHEDULER_INTERVAL", 0.2, minimum=0.01),
        "stranded_after": _float(env, "SMQ_STRANDED_AFTER", 60.0, minimum=1.0),
        "task_events": _flag(env, "SMQ_TASK_EVENTS", True),
    }
