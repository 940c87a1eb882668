"""The distributed pieces that need no server: payload validation, settings, weighted queue order,
retry backoff."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smq.distributed.payload import FIELDS, OPTIONS, ExecutionPayload, InvalidTaskPayload, parse_payload
from smq.distributed.queues import WeightedCycle, check_queue, weighted_order
from smq.settings import DEFAULT_QUEUE_WEIGHTS, QUEUES, Settings, SettingsError, parse_queue_weights
from smq.tasks import payload_max_retries, retry_countdown

VALID = {"state_machine_id": "orders", "name": "order-1"}

# --------------------------------------------------------------------------------------------- payload


def test_a_full_payload_parses_and_round_trips() -> None:
    payload = {
        "state_machine_id": "shipping.v2",
        "name": "ship:order-1",
        "version": 3,
        "index": 0,
        "source_execution_id": "6f1c2a5e-0000-4000-8000-000000000001",
        "source_state_name": "Charge",
        "transformer": "to_shipping",
        "options": {"queue": "critical", "unique": False, "max_retries": 0},
    }
    parsed = parse_payload(payload)
    assert parsed == ExecutionPayload(
        state_machine_id="shipping.v2",
        name="ship:order-1",
        version=3,
        index=0,
        source_execution_id="6f1c2a5e-0000-4000-8000-000000000001",
        source_state_name="Charge",
        transformer="to_shipping",
        options={"queue": "critical", "unique": False, "max_retries": 0},
    )
    assert (parsed.queue, parsed.max_retries) == ("critical", 0)
    assert parsed.to_dict() == payload
    assert parse_payload(json.loads(json.dumps(parsed.to_dict()))) == parsed
    assert parse_payload({**VALID, "input": {"a": [1, None]}}).input == {"a": [1, None]}
    assert parse_payload(VALID).queue == "default" and parse_payload(VALID).max_retries is None


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ("not an object", "JSON object"),
        ([VALID], "JSON object"),
        (None, "JSON object"),
        ({**VALID, "colour": "red"}, "'colour'"),
        ({"name": "n"}, "'state_machine_id'"),
        ({**VALID, "state_machine_id": ""}, "'state_machine_id'"),
        ({**VALID, "state_machine_id": 7}, "'state_machine_id'"),
        ({**VALID, "state_machine_id": "has space"}, "'state_machine_id'"),
        ({**VALID, "state_machine_id": "a" * 81}, "'state_machine_id'"),
        ({**VALID, "state_machine_id": "-leading"}, "'state_machine_id'"),
        ({"state_machine_id": "orders"}, "'name'"),
        ({**VALID, "name": ""}, "'name'"),
        ({**VALID, "name": ["order-1"]}, "'name'"),
        ({**VALID, "name": "x" * 201}, "'name'"),
        ({**VALID, "name": "a\x00b"}, "'name'"),
        ({**VALID, "version": 0}, "'version'"),
        ({**VALID, "version": "1"}, "'version'"),
        ({**VALID, "version": True}, "'version'"),
        ({**VALID, "version": 1.5}, "'version'"),
        ({**VALID, "index": -1}, "'index'"),
        ({**VALID, "index": "0"}, "'index'"),
        ({**VALID, "source_execution_id": "x" * 65}, "'source_execution_id'"),
        ({**VALID, "source_execution_id": 12}, "'source_execution_id'"),
        ({**VALID, "source_execution_id": "e1", "input": {"a": 1}}, "'input'"),
        ({**VALID, "source_state_name": "Charge"}, "'source_state_name'"),
        ({**VALID, "transformer": "t"}, "'transformer'"),
        ({**VALID, "source_execution_id": "e1", "source_state_name": ""}, "'source_state_name'"),
        ({**VALID, "options": "fast"}, "'options'"),
        ({**VALID, "options": {"bad key!": 9}}, "'bad key!'"),
        ({**VALID, "options": {"note": [1]}}, "'note'"),
        ({**VALID, "tags": ["a"]}, "'tags'"),
        ({**VALID, "tags": {"k": {"nested": 1}}}, "'k'"),
        ({**VALID, "tags": {"a,b": "x"}}, "'a,b'"),
        ({**VALID, "tags": {"k": "x" * 257}}, "'k'"),
        ({**VALID, "tags": {f"k{i}": "v" for i in range(51)}}, "at most 50"),
        ({**VALID, "options": {"queue": "urgent"}}, "'queue'"),
        ({**VALID, "options": {"unique": "yes"}}, "'unique'"),
        ({**VALID, "options": {"max_retries": -1}}, "'max_retries'"),
        ({**VALID, "options": {"max_retries": "3"}}, "'max_retries'"),
        ({**VALID, "options": {"max_retries": True}}, "'max_retries'"),
    ],
)
def test_each_bad_field_is_named(payload: Any, named: str) -> None:
    with pytest.raises(InvalidTaskPayload) as caught:
        parse_payload(payload)
    assert named in str(caught.value)
    assert isinstance(caught.value, ValueError)  # `smq dead retry` and the client catch ValueError


def test_user_keys_of_options_and_tags_are_kept_as_the_executions_tags() -> None:
    """The seed's free-form Options map carries user data: keys smq does not know become tags (text),
    next to the payload's own `tags` (which win); smq's options stay options."""
    parsed = parse_payload(
        {
            **VALID,
            "index": 7,
            "options": {"queue": "low", "customer": "c-9", "priority": 3, "rush": True},
            "tags": {"team": "billing", "priority": "high"},
        }
    )
    assert parsed.options == {"queue": "low"}
    assert parsed.tags == {"customer": "c-9", "priority": "high", "rush": "true", "team": "billing"}
    request = parsed.start_request()
    assert (request.index, request.tags) == (7, parsed.tags)
    assert parse_payload(parsed.to_dict()) == parsed


@pytest.mark.parametrize("options", [False, 0, "", []])
def test_falsy_non_object_options_are_rejected(options: Any) -> None:
    # Regression: `payload.get("options") or {}` once accepted false, 0, "" and [] as no options.
    with pytest.raises(InvalidTaskPayload, match="'options'"):
        parse_payload({**VALID, "options": options})


def test_a_state_machine_id_with_a_trailing_newline_is_rejected() -> None:
    # Regression: the id pattern ^...$ used with re.match let "orders\n" through (`$` matches before \n).
    with pytest.raises(InvalidTaskPayload, match="'state_machine_id'"):
        parse_payload({**VALID, "state_machine_id": "orders\n"})


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Objects made of the real field names, so the fuzz reaches every check and not only the first.
FIELD_VALUES = st.one_of(
    JSON, st.sampled_from(["orders", "n-1", "critical", "low", "", "a\x00"]), st.integers(-2, 3)
)
OPTIONS_OBJECTS = st.dictionaries(st.sampled_from(sorted(OPTIONS) + ["other"]), FIELD_VALUES, max_size=3)
FIELD_OBJECTS = st.dictionaries(
    st.sampled_from(sorted(FIELDS) + ["extra"]), FIELD_VALUES | OPTIONS_OBJECTS, max_size=len(FIELDS)
)
# ...alone (required fields often missing) or over a valid base (so that many of them parse).
PAYLOAD_OBJECTS = FIELD_OBJECTS | FIELD_OBJECTS.map(lambda fields: {**VALID, **fields})
# ...and mostly plausible payloads, so that the accepting path (and the round trip) is fuzzed as well.
PLAUSIBLE = st.fixed_dictionaries(
    {
        "state_machine_id": st.sampled_from(["orders", "a.b-c_1", "9"]),
        "name": st.text(min_size=1, max_size=40),
    },
    optional={
        "version": st.integers(1, 10) | FIELD_VALUES,
        "index": st.integers(0, 5),
        "input": JSON,
        "source_execution_id": st.none() | st.text(min_size=1, max_size=70),
        "options": st.fixed_dictionaries(
            {},
            optional={
                "queue": st.sampled_from(QUEUES),
                "unique": st.booleans(),
                "max_retries": st.integers(0, 5),
            },
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, PAYLOAD_OBJECTS, PLAUSIBLE))
def test_parse_payload_returns_or_raises_invalid_task_payload_only(value: Any) -> None:
    value = json.loads(json.dumps(value))  # what crosses Redis is JSON
    try:
        parsed = parse_payload(value)
    except InvalidTaskPayload as exc:
        assert str(exc)
        return
    assert isinstance(parsed, ExecutionPayload)
    assert parse_payload(json.loads(json.dumps(parsed.to_dict()))) == parsed  # replayable as it is


# --------------------------------------------------------------------------------------------- settings


def test_distributed_defaults() -> None:
    settings_ = Settings.from_env({})
    assert settings_.queue_weights == DEFAULT_QUEUE_WEIGHTS == {"critical": 6, "default": 3, "low": 1}
    assert (settings_.queue_order, settings_.soft_time_limit, settings_.hard_time_limit) == (
        "weighted",
        600,
        660,
    )
    assert settings_.visibility_timeout == 3600 > settings_.hard_time_limit
    assert (settings_.max_retries, settings_.retry_delays, settings_.outage_budget) == (3, (15, 60, 300), 300)
    assert settings_.broker_url is None


def test_distributed_settings_from_env() -> None:
    settings_ = Settings.from_env(
        {
            "SMQ_QUEUE_WEIGHTS": " low=2 , critical=10,default=5,",
            "SMQ_QUEUE_ORDER": "strict",
            "SMQ_SOFT_TIME_LIMIT": "6",
            "SMQ_HARD_TIME_LIMIT": "8.5",
            "SMQ_VISIBILITY_TIMEOUT": "10",
            "SMQ_MAX_RETRIES": "0",
            "SMQ_RETRY_DELAYS": "0.1, 0,2",
            "SMQ_OUTAGE_BUDGET": "0",
            "SMQ_BROKER_URL": "redis://h:1/2",
        }
    )
    assert settings_.queue_weights == {"critical": 10, "default": 5, "low": 2}
    assert settings_.queue_order == "strict"
    assert (settings_.soft_time_limit, settings_.hard_time_limit, settings_.visibility_timeout) == (
        6,
        8.5,
        10,
    )
    assert (settings_.max_retries, settings_.retry_delays, settings_.outage_budget) == (0, (0.1, 0, 2), 0)
    assert settings_.broker_url == "redis://h:1/2"
    # Derived defaults: hard = soft + 60; visibility = max(3600, 2 * hard).
    derived = Settings.from_env({"SMQ_SOFT_TIME_LIMIT": "3000"})
    assert (derived.hard_time_limit, derived.visibility_timeout) == (3060, 6120)
    assert Settings.from_env({"SMQ_SOFT_TIME_LIMIT": "6"}).visibility_timeout == 3600
    assert Settings.from_env({"SMQ_SOFT_TIME_LIMIT": "6"}).outage_budget == 3  # half the soft limit


@pytest.mark.parametrize(
    ("env", "variable", "detail"),
    [
        ({"SMQ_QUEUE_WEIGHTS": "critical=6,default=3"}, "SMQ_QUEUE_WEIGHTS", "low"),
        ({"SMQ_QUEUE_WEIGHTS": "critical=6,default=3,low=0"}, "SMQ_QUEUE_WEIGHTS", "'low'"),
        ({"SMQ_QUEUE_WEIGHTS": "critical=x,default=3,low=1"}, "SMQ_QUEUE_WEIGHTS", "'critical'"),
        ({"SMQ_QUEUE_WEIGHTS": "critical=6,default=3,low=1,urgent=9"}, "SMQ_QUEUE_WEIGHTS", "'urgent=9'"),
        ({"SMQ_QUEUE_WEIGHTS": "critical=6,critical=3,default=3,low=1"}, "SMQ_QUEUE_WEIGHTS", "twice"),
        ({"SMQ_QUEUE_WEIGHTS": "critical:6,default=3,low=1"}, "SMQ_QUEUE_WEIGHTS", "QUEUE=WEIGHT"),
        ({"SMQ_QUEUE_ORDER": "random"}, "SMQ_QUEUE_ORDER", "'random'"),
        ({"SMQ_SOFT_TIME_LIMIT": "ten"}, "SMQ_SOFT_TIME_LIMIT", "'ten'"),
        ({"SMQ_SOFT_TIME_LIMIT": "0.5"}, "SMQ_SOFT_TIME_LIMIT", ">= 1"),
        ({"SMQ_SOFT_TIME_LIMIT": "nan"}, "SMQ_SOFT_TIME_LIMIT", "nan"),
        ({"SMQ_HARD_TIME_LIMIT": "-3"}, "SMQ_HARD_TIME_LIMIT", ">= 1"),
        (
            {"SMQ_SOFT_TIME_LIMIT": "10", "SMQ_HARD_TIME_LIMIT": "10"},
            "SMQ_HARD_TIME_LIMIT",
            "SMQ_SOFT_TIME_LIMIT",
        ),
        (
            {"SMQ_HARD_TIME_LIMIT": "8", "SMQ_SOFT_TIME_LIMIT": "6", "SMQ_VISIBILITY_TIMEOUT": "8"},
            "SMQ_VISIBILITY_TIMEOUT",
            "8",
        ),
        ({"SMQ_VISIBILITY_TIMEOUT": "60"}, "SMQ_VISIBILITY_TIMEOUT", "SMQ_HARD_TIME_LIMIT (660)"),
        ({"SMQ_MAX_RETRIES": "-1"}, "SMQ_MAX_RETRIES", ">= 0"),
        ({"SMQ_MAX_RETRIES": "2.5"}, "SMQ_MAX_RETRIES", "integer"),
        ({"SMQ_RETRY_DELAYS": "15,fast"}, "SMQ_RETRY_DELAYS", "'fast'"),
        ({"SMQ_RETRY_DELAYS": "15,-1"}, "SMQ_RETRY_DELAYS", ">= 0"),
        ({"SMQ_RETRY_DELAYS": "inf"}, "SMQ_RETRY_DELAYS", "finite"),
        ({"SMQ_RETRY_BACKOFF": "2"}, "SMQ_RETRY_BACKOFF", "SMQ_RETRY_DELAYS"),
        ({"SMQ_OUTAGE_BUDGET": "-5"}, "SMQ_OUTAGE_BUDGET", ">= 0"),
        ({"SMQ_OUTAGE_BUDGET": "600"}, "SMQ_OUTAGE_BUDGET", "SMQ_SOFT_TIME_LIMIT (600)"),
    ],
)
def test_bad_distributed_settings_name_the_variable(env: dict[str, str], variable: str, detail: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert message.startswith(variable), message
    assert detail in message, message


def test_parse_queue_weights_names_the_variable_it_was_given() -> None:
    with pytest.raises(SettingsError, match=r"^MY_WEIGHTS: no weight for default, low$"):
        parse_queue_weights("critical=1", name="MY_WEIGHTS")


# --------------------------------------------------------------------------------------------- queues


@pytest.mark.parametrize(
    "weights",
    [DEFAULT_QUEUE_WEIGHTS, {"critical": 1, "default": 1, "low": 8}, {"critical": 1, "default": 1, "low": 1}],
)
def test_weighted_order_first_pick_follows_the_weights(weights: dict[str, int]) -> None:
    rng = random.Random(20260101)
    draws = 20_000
    firsts: Counter[str] = Counter()
    for _ in range(draws):
        order = weighted_order(list(QUEUES), weights, rng)
        assert sorted(order) == sorted(QUEUES)  # always a permutation of the queues
        firsts[order[0]] += 1
    total = sum(weights.values())
    for queue in QUEUES:
        assert abs(firsts[queue] / draws - weights[queue] / total) <= 0.02, (queue, firsts)


def test_weighted_order_second_pick_is_weighted_among_the_rest() -> None:
    # Given critical first (weights 6:3:1), the next is default 3 times in 4.
    rng = random.Random(7)
    seconds: Counter[str] = Counter()
    for _ in range(20_000):
        order = weighted_order(list(QUEUES), DEFAULT_QUEUE_WEIGHTS, rng)
        if order[0] == "critical":
            seconds[order[1]] += 1
    assert abs(seconds["default"] / sum(seconds.values()) - 0.75) <= 0.02, seconds


def test_weighted_order_does_not_change_its_input_and_defaults_unknown_weights_to_one() -> None:
    queues = ["a", "b"]
    rng = random.Random(3)
    firsts = Counter(weighted_order(queues, {}, rng)[0] for _ in range(20_000))
    assert queues == ["a", "b"]
    assert abs(firsts["a"] / 20_000 - 0.5) <= 0.02


def test_weighted_cycle_strict_and_weighted_consume() -> None:
    cycle = WeightedCycle(["low", "critical", "default"])
    cycle.weights, cycle.order = dict(DEFAULT_QUEUE_WEIGHTS), "strict"
    assert cycle.consume(3) == ["critical", "default", "low"]
    assert cycle.consume(1) == ["critical"]
    cycle.update(["low", "default"])
    assert cycle.consume(5) == ["default", "low"]
    cycle.order = "weighted"
    cycle.rng = random.Random(1)
    assert Counter(cycle.consume(2)[0] for _ in range(20_000))["default"] == pytest.approx(15_000, abs=400)


def test_check_queue() -> None:
    assert [check_queue(queue) for queue in QUEUES] == list(QUEUES)
    with pytest.raises(ValueError, match="'urgent'"):
        check_queue("urgent")


# --------------------------------------------------------------------------------------------- retries


class _Extreme(random.Random):
    def __init__(self, at_top: bool) -> None:
        super().__init__(0)
        self.at_top = at_top

    def uniform(self, a: float, b: float) -> float:
        return b if self.at_top else a


@given(
    retries=st.integers(0, 10_000),
    delays=st.lists(st.floats(0, 10_000, allow_nan=False), min_size=1, max_size=6),
    seed=st.integers(0, 2**32),
)
def test_retry_countdown_takes_its_delay_from_the_curve_within_twenty_percent(
    retries: int, delays: list[float], seed: int
) -> None:
    delay = delays[min(retries, len(delays) - 1)]
    value = retry_countdown(retries, delays, random.Random(seed))
    assert delay * 0.8 <= value <= delay * 1.2
    assert retry_countdown(retries, delays, _Extreme(False)) == pytest.approx(delay * 0.8)
    assert retry_countdown(retries, delays, _Extreme(True)) == pytest.approx(delay * 1.2)


def test_the_default_retry_curve_outlasts_an_ordinary_outage() -> None:
    """About 15 s, 1 min, 5 min: a 10 s database restart or a Redis failover never dead-letters work."""
    delays = Settings.from_env({}).retry_delays
    assert delays == (15.0, 60.0, 300.0)
    shortest = sum(retry_countdown(n, delays, _Extreme(False)) for n in range(3))
    assert shortest == pytest.approx(300.0)  # 0.8 * 375 s: 5 minutes at the least before the dead letters
    assert retry_countdown(7, delays, _Extreme(True)) == pytest.approx(360.0)  # the last delay repeats
    assert retry_countdown(0, ()) == 0.0


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"options": {"max_retries": 0}}, 0),
        ({"options": {"max_retries": 5}}, 5),
        ({"options": {"max_retries": -1}}, None),
        ({"options": {"max_retries": True}}, None),
        ({"options": {"max_retries": "3"}}, None),
        ({"options": {}}, None),
        ({"options": ["max_retries"]}, None),
        ({}, None),
        (["not", "a", "payload"], None),
        (None, None),
    ],
)
def test_only_a_valid_payload_max_retries_overrides_the_configured_limit(
    payload: Any, expected: int | None
) -> None:
    """Read in the worker's main process when a pool process died: a malformed payload must not
    break Celery's failure handling, it just gets the configured limit."""
    assert payload_max_retries(payload) == expected
