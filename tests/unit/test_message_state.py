"""smq's Message state: validation, parking, delivery of a message or a timeout, resuming from JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from smq import Cursor, DefinitionError, StateMachine, VirtualClock
from smq.engine.compiler import validate_definition

T0 = 1_735_732_800.0  # 2025-01-01T12:00:00Z


def message(**fields: Any) -> dict[str, Any]:
    state = {"Type": "Message", "CorrelationKey": "order", **fields}
    if "Next" not in state and "End" not in state:
        state["End"] = True
    return state


def definition(state: dict[str, Any], **others: Any) -> dict[str, Any]:
    return {"StartAt": "M", "States": {"M": state, **others}}


def machine(state: dict[str, Any], **others: Any) -> StateMachine:
    return StateMachine.from_definition(definition(state, **others))


def wheres(defn: dict[str, Any]) -> list[str]:
    return [p.where for p in validate_definition(defn)]


def run(sm: StateMachine, inp: Any, at: float = T0, **kw: Any):
    clock = VirtualClock(at)
    return sm.run(inp, clock=clock.now, sleep=clock.sleep, **kw)


def resume(sm: StateMachine, cursor: Cursor | str, at: float = T0, **kw: Any):
    clock = VirtualClock(at)
    return sm.resume(cursor, clock=clock.now, sleep=clock.sleep, **kw)


def through_json(cursor: Cursor | None, delivery: dict[str, Any] | None = None) -> str:
    """What the persistence layer does: store the cursor as JSON, later set `pending.delivery`."""
    assert cursor is not None
    data = json.loads(cursor.to_json())
    if delivery is not None:
        data["pending"]["delivery"] = delivery
    return json.dumps(data)


# ---------------------------------------------------------------------------------- validation


class TestValidation:
    def test_a_full_message_state_is_valid(self):
        defn = definition(
            message(
                Comment="wait for payment",
                InputPath="$.order",
                CorrelationValuePath="$.id",
                TimeoutSeconds=3600,
                TimeoutPath="Expired",
                ResultPath="$.payment",
                OutputPath="$",
                Assign={"paid.$": "$.amount"},
                Next="Done",
            ),
            Done={"Type": "Succeed"},
            Expired={"Type": "Fail", "Error": "Expired"},
        )
        assert validate_definition(defn) == []
        state = StateMachine.from_definition(defn).machine.states["M"]
        assert state.type == "Message"

    def test_timeout_seconds_path_and_null_paths_are_valid(self):
        defn = definition(
            message(TimeoutSecondsPath="$.ttl", ResultPath=None, InputPath=None, OutputPath=None)
        )
        assert validate_definition(defn) == []

    @pytest.mark.parametrize("key", [None, "", 5, ["a"]])
    def test_correlation_key_must_be_a_non_empty_string(self, key):
        state = message()
        if key is None:
            del state["CorrelationKey"]
        else:
            state["CorrelationKey"] = key
        assert wheres(definition(state)) == ["States.M.CorrelationKey"]

    @pytest.mark.parametrize("path", ["id", "$.a[", 7, "$..id", "$.items[*]"])
    def test_correlation_value_path_must_be_a_definite_path(self, path):
        assert wheres(definition(message(CorrelationValuePath=path))) == ["States.M.CorrelationValuePath"]

    @pytest.mark.parametrize("seconds", [0, -1, 1.5, "10", True, 100_000_000])
    def test_timeout_seconds_must_be_a_positive_integer(self, seconds):
        assert wheres(definition(message(TimeoutSeconds=seconds))) == ["States.M.TimeoutSeconds"]

    @pytest.mark.parametrize("path", ["ttl", "$.a[", 3, "$..ttl"])
    def test_timeout_seconds_path_must_be_a_definite_path(self, path):
        assert wheres(definition(message(TimeoutSecondsPath=path))) == ["States.M.TimeoutSecondsPath"]

    def test_timeout_seconds_and_its_path_are_exclusive(self):
        found = validate_definition(definition(message(TimeoutSeconds=5, TimeoutSecondsPath="$.t")))
        assert [(p.where, "exclusive" in p.message) for p in found] == [("States.M", True)]

    def test_timeout_path_must_name_a_state(self):
        found = validate_definition(definition(message(TimeoutPath="Nowhere")))
        assert [(p.where, p.message) for p in found] == [("States.M.TimeoutPath", "no state named 'Nowhere'")]
        assert wheres(definition(message(TimeoutPath=3))) == ["States.M.TimeoutPath"]

    def test_a_state_reached_only_by_timeout_path_is_reachable(self):
        defn = definition(message(TimeoutSeconds=5, TimeoutPath="Late"), Late={"Type": "Succeed"})
        assert validate_definition(defn) == []
        orphan = definition(message(TimeoutSeconds=5), Late={"Type": "Succeed"})
        assert wheres(orphan) == ["States.Late"]

    @pytest.mark.parametrize(
        "field, value",
        [
            ("Parameters", {"a": 1}),
            ("ResultSelector", {"a": 1}),
            ("Retry", []),
            ("Catch", []),
            ("Resource", "h"),
            ("HeartbeatSeconds", 5),
            ("Correlation", "x"),
        ],
    )
    def test_unknown_fields_are_reported(self, field, value):
        assert wheres(definition(message(**{field: value}))) == [f"States.M.{field}"]

    def test_flow_and_paths_are_checked_like_any_state(self):
        assert wheres(definition({"Type": "Message", "CorrelationKey": "k"})) == ["States.M"]
        assert wheres(definition(message(Next="Gone"))) == ["States.M.Next"]
        assert wheres(definition(message(ResultPath="$.a[*]"))) == ["States.M.ResultPath"]
        assert wheres(definition(message(InputPath="nope"))) == ["States.M.InputPath"]
        assert wheres(definition(message(Assign={"1bad": 1}))) == ["States.M.Assign.1bad"]

    def test_every_problem_is_reported_at_once(self):
        state = {
            "Type": "Message",
            "CorrelationValuePath": "x",
            "TimeoutSeconds": 0,
            "TimeoutPath": "Gone",
            "Bogus": 1,
            "End": True,
        }
        with pytest.raises(DefinitionError) as info:
            StateMachine.from_definition(definition(state))
        assert sorted(p.where for p in info.value.problems) == [
            "States.M.Bogus",
            "States.M.CorrelationKey",
            "States.M.CorrelationValuePath",
            "States.M.TimeoutPath",
            "States.M.TimeoutSeconds",
        ]

    def test_allowed_inside_parallel_and_map_branches(self):
        sub = {"StartAt": "In", "States": {"In": message()}}
        assert wheres(definition({"Type": "Parallel", "Branches": [sub], "End": True})) == []
        assert wheres(definition({"Type": "Map", "ItemProcessor": sub, "End": True})) == []


# ---------------------------------------------------------------------------------- parking


class TestParking:
    def test_entering_parks_with_no_history(self):
        sm = machine(
            message(CorrelationValuePath="$.id", TimeoutSeconds=60, Next="Done"), Done={"Type": "Succeed"}
        )
        steps = []
        r = run(sm, {"id": "ord-7", "x": 1}, on_step=steps.append)
        assert r.status == "WAITING"
        assert r.history == []
        assert r.output is None and r.error is None
        cursor = r.cursor
        assert cursor is not None and cursor.parked
        assert cursor.state == "M"
        assert cursor.input == {"id": "ord-7", "x": 1}  # the raw state input, kept for ResultPath
        assert cursor.pending == {"kind": "message", "key": "order", "value": "ord-7", "until": T0 + 60}
        assert cursor.not_before is None
        assert cursor.entered_at == T0
        # the parking step goes to the checkpoint hook, so the parked cursor can be stored
        assert len(steps) == 1 and steps[0].entries == [] and steps[0].cursor == cursor

    def test_states_before_the_message_state_run_and_are_in_history(self):
        sm = StateMachine.from_definition(
            {
                "StartAt": "Prep",
                "States": {
                    "Prep": {"Type": "Pass", "Parameters": {"ref.$": "$.order"}, "Next": "M"},
                    "M": message(CorrelationValuePath="$.ref"),
                },
            }
        )
        r = run(sm, {"order": 12})
        assert r.status == "WAITING"
        assert [(e.state_name, e.status) for e in r.history] == [("Prep", "SUCCEEDED")]
        assert r.cursor.pending["value"] == 12
        assert r.cursor.input == {"ref": 12}
        assert r.cursor.transitions == 1

    def test_without_correlation_value_path_the_effective_input_is_the_value(self):
        r = run(machine(message(InputPath="$.customer")), {"customer": {"id": 3, "tier": "gold"}, "z": 0})
        assert r.cursor.pending["value"] == {"id": 3, "tier": "gold"}
        assert r.cursor.pending["until"] is None
        assert r.cursor.input == {"customer": {"id": 3, "tier": "gold"}, "z": 0}

    def test_correlation_value_path_reads_the_effective_input(self):
        r = run(
            machine(message(InputPath="$.customer", CorrelationValuePath="$.id")), {"customer": {"id": 3}}
        )
        assert r.cursor.pending["value"] == 3

    def test_correlation_value_path_can_read_the_context_and_variables(self):
        sm = StateMachine.from_definition(
            {
                "StartAt": "Set",
                "States": {
                    "Set": {"Type": "Pass", "Assign": {"ref": "r-1"}, "Next": "ByVar"},
                    "ByVar": {
                        "Type": "Message",
                        "CorrelationKey": "k",
                        "CorrelationValuePath": "$ref",
                        "End": True,
                    },
                },
            }
        )
        assert run(sm, {}).cursor.pending["value"] == "r-1"
        by_name = run(machine(message(CorrelationValuePath="$$.Execution.Name")), {}, name="exec-9")
        assert by_name.cursor.pending["value"] == "exec-9"

    def test_missing_correlation_value_fails_with_runtime(self):
        r = run(machine(message(CorrelationValuePath="$.id")), {"other": 1})
        assert (r.status, r.error) == ("FAILED", "States.Runtime")
        assert "CorrelationValuePath" in r.cause and "'M'" in r.cause
        assert [(e.state_name, e.status) for e in r.history] == [("M", "FAILED")]

    def test_timeout_seconds_path(self):
        r = run(machine(message(TimeoutSecondsPath="$.ttl")), {"ttl": 90})
        assert r.cursor.pending["until"] == T0 + 90

    @pytest.mark.parametrize("ttl", [0, -5, 1.5, "90", None])
    def test_bad_timeout_seconds_path_value_fails_with_runtime(self, ttl):
        r = run(machine(message(TimeoutSecondsPath="$.ttl")), {"ttl": ttl})
        assert (r.status, r.error) == ("FAILED", "States.Runtime")
        assert "TimeoutSecondsPath" in r.cause

    def test_resuming_without_a_delivery_stays_waiting_and_runs_nothing(self):
        sm = machine(message(TimeoutSeconds=10))
        parked = run(sm, {"a": 1}).cursor
        for _ in range(2):
            again = resume(sm, through_json(parked), at=T0 + 3600)
            assert again.status == "WAITING"
            assert again.history == []
            assert again.cursor == parked

    def test_step_on_a_parked_cursor_changes_nothing(self):
        sm = machine(message())
        parked = run(sm, {}).cursor
        step = sm.step(parked)
        assert step.entries == [] and step.cursor == parked

    def test_stop_after_reports_waiting_when_the_last_step_parked(self):
        sm = StateMachine.from_definition(
            {"StartAt": "P", "States": {"P": {"Type": "Pass", "Next": "M"}, "M": message()}}
        )
        first = sm.resume(sm.begin({}), stop_after=1)
        assert first.status == "RUNNING" and first.cursor.state == "M"
        second = sm.resume(first.cursor, stop_after=1)
        assert second.status == "WAITING" and second.cursor.parked

    def test_execution_timeout_wins_over_waiting(self):
        sm = StateMachine.from_definition({**definition(message()), "TimeoutSeconds": 30})
        parked = run(sm, {}).cursor
        assert resume(sm, through_json(parked), at=T0 + 10).status == "WAITING"
        late = resume(sm, through_json(parked), at=T0 + 31)
        assert (late.status, late.error) == ("TIMED_OUT", "States.Timeout")


# ---------------------------------------------------------------------------------- delivery


class TestDelivery:
    SM = {
        "StartAt": "Prep",
        "States": {
            "Prep": {"Type": "Pass", "Next": "M"},
            "M": message(
                CorrelationValuePath="$.order.id",
                TimeoutSeconds=600,
                ResultPath="$.payment",
                OutputPath="$.payment",
                Next="Done",
            ),
            "Done": {"Type": "Pass", "Parameters": {"paid.$": "$.amount", "ref.$": "$.ref"}, "End": True},
        },
    }

    def test_message_round_trip_through_json(self):
        sm = StateMachine.from_definition(self.SM)
        inp = {"order": {"id": "o-1", "total": 10}}
        parked = run(sm, inp, name="pay-1")
        assert parked.status == "WAITING"
        assert parked.cursor.pending == {"kind": "message", "key": "order", "value": "o-1", "until": T0 + 600}
        text = through_json(parked.cursor, {"kind": "message", "data": {"amount": 10, "ref": "tx-9"}})

        # another process, another StateMachine object, later
        fresh = StateMachine.from_definition(json.loads(json.dumps(self.SM)))
        done = resume(fresh, text, at=T0 + 120)
        assert done.status == "SUCCEEDED"
        assert done.output == {"paid": 10, "ref": "tx-9"}
        assert done.name == "pay-1"
        entry = done.history[0]
        assert (entry.state_name, entry.state_type, entry.status) == ("M", "Message", "SUCCEEDED")
        assert entry.input == inp
        assert entry.output == {"amount": 10, "ref": "tx-9"}  # ResultPath into the raw input, then OutputPath
        assert (entry.entered_at, entry.exited_at) == (T0, T0 + 120)
        assert [e.state_name for e in done.history] == ["M", "Done"]

    def test_result_path_keeps_the_raw_input_around_the_message(self):
        sm = machine(message(InputPath="$.order", CorrelationValuePath="$.id", ResultPath="$.msg"))
        parked = run(sm, {"order": {"id": 1}, "keep": True})
        done = resume(sm, parked.cursor.deliver({"kind": "message", "data": [1, 2]}))
        assert done.output == {"order": {"id": 1}, "keep": True, "msg": [1, 2]}

    def test_default_result_path_replaces_and_null_discards(self):
        replaced = machine(message())
        parked = run(replaced, {"a": 1})
        assert resume(replaced, parked.cursor.deliver({"kind": "message", "data": "hi"})).output == "hi"
        discarded = machine(message(ResultPath=None))
        parked = run(discarded, {"a": 1})
        assert resume(discarded, parked.cursor.deliver({"kind": "message", "data": "hi"})).output == {"a": 1}

    def test_null_data_is_a_result(self):
        sm = machine(message(ResultPath="$.m"))
        parked = run(sm, {})
        assert resume(sm, parked.cursor.deliver({"kind": "message", "data": None})).output == {"m": None}

    def test_assign_sees_the_message_data(self):
        sm = StateMachine.from_definition(
            {
                "StartAt": "M",
                "States": {
                    "M": message(Assign={"who.$": "$.sender"}, ResultPath=None, Next="Use"),
                    "Use": {"Type": "Pass", "Parameters": {"who.$": "$who"}, "End": True},
                },
            }
        )
        parked = run(sm, {})
        done = resume(sm, through_json(parked.cursor, {"kind": "message", "data": {"sender": "ops"}}))
        assert done.output == {"who": "ops"}

    def test_result_path_into_a_non_object_fails(self):
        sm = machine(message(ResultPath="$.a.b"))
        parked = run(sm, {"a": 5})
        r = resume(sm, parked.cursor.deliver({"kind": "message", "data": 1}))
        assert (r.status, r.error) == ("FAILED", "States.ResultPathMatchFailure")

    def test_data_above_the_payload_limit_fails(self):
        sm = machine(message())
        parked = run(sm, {})
        r = resume(sm, parked.cursor.deliver({"kind": "message", "data": "x" * 2000}), payload_limit=1000)
        assert (r.status, r.error) == ("FAILED", "States.DataLimitExceeded")

    def test_a_delivered_cursor_is_no_longer_parked(self):
        parked = run(machine(message()), {}).cursor
        delivered = parked.deliver({"kind": "message", "data": 1})
        assert parked.parked and not delivered.parked
        assert delivered.pending == {**parked.pending, "delivery": {"kind": "message", "data": 1}}

    @pytest.mark.parametrize(
        "delivery",
        [{"kind": "success", "output": 1}, {"kind": "message"}, {"data": 1}, "message", None],
    )
    def test_a_delivery_that_does_not_fit_is_rejected(self, delivery):
        sm = machine(message())
        parked = run(sm, {}).cursor
        with pytest.raises(ValueError):
            parked.deliver(delivery)
        # written into the JSON by hand: resuming raises instead of failing the workflow
        hand_made = replace(parked, pending={**parked.pending, "delivery": delivery})
        with pytest.raises(ValueError):
            resume(sm, hand_made)

    def test_deliver_needs_a_parked_cursor(self):
        sm = machine(message())
        with pytest.raises(ValueError):
            sm.begin({}).deliver({"kind": "message", "data": 1})


class TestTimeout:
    def test_timeout_with_timeout_path_goes_there_with_the_raw_input(self):
        sm = machine(
            message(
                InputPath="$.order",
                CorrelationValuePath="$.id",
                TimeoutSeconds=60,
                TimeoutPath="Late",
                Next="Paid",
            ),
            Paid={"Type": "Succeed"},
            Late={"Type": "Pass", "Parameters": {"late.$": "$"}, "End": True},
        )
        inp = {"order": {"id": "o-3"}, "n": 1}
        parked = run(sm, inp)
        r = resume(sm, through_json(parked.cursor, {"kind": "timeout"}), at=T0 + 60)
        assert r.status == "SUCCEEDED"
        assert r.output == {"late": inp}
        timed_out = r.history[0]
        assert (timed_out.state_name, timed_out.status, timed_out.error) == (
            "M",
            "TIMED_OUT",
            "States.Timeout",
        )
        assert timed_out.input == inp and timed_out.output == inp
        assert "'M'" in timed_out.cause and "o-3" in timed_out.cause
        assert [(e.state_name, e.status) for e in r.history] == [("M", "TIMED_OUT"), ("Late", "SUCCEEDED")]

    def test_timeout_does_not_apply_assign(self):
        sm = StateMachine.from_definition(
            {
                "StartAt": "Init",
                "States": {
                    "Init": {"Type": "Pass", "Assign": {"got": "nothing"}, "Next": "M"},
                    "M": message(Assign={"got.$": "$"}, TimeoutSeconds=5, TimeoutPath="After", Next="After"),
                    "After": {"Type": "Pass", "Parameters": {"got.$": "$got"}, "End": True},
                },
            }
        )
        parked = run(sm, {})
        assert resume(sm, parked.cursor.deliver({"kind": "timeout"})).output == {"got": "nothing"}

    def test_timeout_without_timeout_path_fails_the_execution(self):
        sm = machine(
            message(CorrelationValuePath="$.id", TimeoutSeconds=60, Next="Paid"), Paid={"Type": "Succeed"}
        )
        parked = run(sm, {"id": 4})
        r = resume(sm, through_json(parked.cursor, {"kind": "timeout"}), at=T0 + 61)
        assert (r.status, r.error) == ("FAILED", "States.Timeout")
        assert "Message state 'M'" in r.cause
        assert [(e.state_name, e.status, e.error) for e in r.history] == [("M", "FAILED", "States.Timeout")]
