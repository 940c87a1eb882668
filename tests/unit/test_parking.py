"""Parking long pauses (`park_after`) instead of sleeping, and `$$.Execution.RedriveCount`."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from smq import Cursor, HandlerRegistry, StateMachine, VirtualClock
from smq.engine.runtime import Runtime

T0 = 1_735_732_800.0  # 2025-01-01T12:00:00Z

WAITING_MACHINE = {
    "StartAt": "Before",
    "States": {
        "Before": {"Type": "Pass", "Result": {"step": 1}, "ResultPath": "$.before", "Next": "Sleep"},
        "Sleep": {"Type": "Wait", "SecondsPath": "$.delay", "Next": "After"},
        "After": {"Type": "Pass", "Parameters": {"at.$": "$$.State.EnteredTime", "in.$": "$"}, "End": True},
    },
}


def run(sm: StateMachine, inp: Any, at: float = T0, **kw: Any):
    clock = VirtualClock(at)
    result = sm.run(inp, clock=clock.now, sleep=clock.sleep, **kw)
    return result, clock


def resume(sm: StateMachine, cursor: Cursor | str, at: float, **kw: Any):
    clock = VirtualClock(at)
    return sm.resume(cursor, clock=clock.now, sleep=clock.sleep, **kw), clock


class TestParkAfter:
    def test_runtime_default_is_to_never_park(self):
        assert Runtime().park_after is None
        assert StateMachine.from_definition(WAITING_MACHINE).runtime(park_after=5).park_after == 5

    def test_a_long_wait_parks_instead_of_sleeping(self):
        sm = StateMachine.from_definition(WAITING_MACHINE)
        r, clock = run(sm, {"delay": 3600}, park_after=60)
        assert r.status == "WAITING"
        assert clock.now() == T0  # nothing slept
        assert [(e.state_name, e.status) for e in r.history] == [("Before", "SUCCEEDED")]
        cursor = r.cursor
        assert cursor is not None and not cursor.parked
        assert cursor.state == "Sleep"
        assert cursor.not_before == T0 + 3600
        assert cursor.pending == {"until": T0 + 3600}

    def test_the_resumed_cursor_finishes_the_wait(self):
        sm = StateMachine.from_definition(WAITING_MACHINE)
        r, _ = run(sm, {"delay": 3600}, park_after=60)
        text = r.cursor.to_json()  # the durable timer stores it...
        done, clock = resume(StateMachine.from_definition(WAITING_MACHINE), text, at=T0 + 3600, park_after=60)
        assert done.status == "SUCCEEDED"  # ...and resumes it once it is due
        assert clock.now() == T0 + 3600
        assert done.output == {"at": "2025-01-01T13:00:00.000Z", "in": {"delay": 3600, "before": {"step": 1}}}
        sleep = done.history[0]
        assert (sleep.state_name, sleep.status, sleep.entered_at, sleep.exited_at) == (
            "Sleep",
            "SUCCEEDED",
            T0,
            T0 + 3600,
        )

    def test_resumed_early_it_parks_again_or_sleeps_the_short_rest(self):
        sm = StateMachine.from_definition(WAITING_MACHINE)
        r, _ = run(sm, {"delay": 3600}, park_after=60)
        early, clock = resume(sm, r.cursor.to_json(), at=T0 + 1000, park_after=60)
        assert early.status == "WAITING" and early.cursor == r.cursor and clock.now() == T0 + 1000
        nearly, clock = resume(sm, r.cursor.to_json(), at=T0 + 3570, park_after=60)
        assert nearly.status == "SUCCEEDED" and clock.now() == T0 + 3600

    def test_short_waits_are_slept_in_process(self):
        sm = StateMachine.from_definition(WAITING_MACHINE)
        r, clock = run(sm, {"delay": 60}, park_after=60)
        assert r.status == "SUCCEEDED" and clock.now() == T0 + 60

    def test_without_park_after_waits_are_slept_as_before(self):
        sm = StateMachine.from_definition(WAITING_MACHINE)
        r, clock = run(sm, {"delay": 86_400})
        assert r.status == "SUCCEEDED" and clock.now() == T0 + 86_400

    def test_a_long_retry_back_off_parks(self):
        calls: list[float] = []
        clock = VirtualClock(T0)
        reg = HandlerRegistry()

        @reg.handler("flaky")
        def flaky(payload):
            calls.append(clock.now())
            if len(calls) == 1:
                raise RuntimeError("down")
            return "ok"

        sm = StateMachine.from_definition(
            {
                "StartAt": "T",
                "States": {
                    "T": {
                        "Type": "Task",
                        "Resource": "flaky",
                        "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 600}],
                        "End": True,
                    }
                },
            }
        )
        r = sm.run({}, handlers=reg, clock=clock.now, sleep=clock.sleep, park_after=30)
        assert r.status == "WAITING" and r.cursor.not_before == T0 + 600
        assert [e.status for e in r.history] == ["RETRIED"]
        clock.sleep_until(T0 + 600)
        done = sm.resume(r.cursor.to_json(), handlers=reg, clock=clock.now, sleep=clock.sleep, park_after=30)
        assert (done.status, done.output, calls) == ("SUCCEEDED", "ok", [T0, T0 + 600])

    def test_an_execution_deadline_sooner_than_park_after_is_slept_on(self):
        sm = StateMachine.from_definition({**WAITING_MACHINE, "TimeoutSeconds": 30})
        r, clock = run(sm, {"delay": 3600}, park_after=60)
        assert r.status == "TIMED_OUT" and clock.now() == T0 + 30

    def test_a_parked_wait_past_the_execution_deadline_times_out_on_resume(self):
        sm = StateMachine.from_definition({**WAITING_MACHINE, "TimeoutSeconds": 600})
        r, _ = run(sm, {"delay": 3600}, park_after=60)
        assert r.status == "WAITING"
        late, _ = resume(sm, r.cursor.to_json(), at=T0 + 3600, park_after=60)
        assert (late.status, late.error) == ("TIMED_OUT", "States.Timeout")

    def test_waits_inside_parallel_branches_never_park(self):
        branch = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}
        sm = StateMachine.from_definition(
            {"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [branch, branch], "End": True}}}
        )
        r, clock = run(sm, {"x": 1}, park_after=60)
        assert r.status == "SUCCEEDED" and r.output == [{"x": 1}, {"x": 1}]
        assert clock.now() == T0 + 3600

    def test_stop_after_still_reports_running(self):
        sm = StateMachine.from_definition(WAITING_MACHINE)
        clock = VirtualClock(T0)
        r = sm.resume(
            sm.begin({"delay": 3600}), clock=clock.now, sleep=clock.sleep, stop_after=1, park_after=60
        )
        assert r.status == "RUNNING" and r.cursor.state == "Sleep"


class TestRedriveCount:
    SM = {
        "StartAt": "Ctx",
        "States": {
            "Ctx": {
                "Type": "Pass",
                "Parameters": {"redrives.$": "$$.Execution.RedriveCount", "name.$": "$$.Execution.Name"},
                "End": True,
            }
        },
    }

    def test_a_new_execution_has_redrive_count_zero(self):
        r, _ = run(StateMachine.from_definition(self.SM), {}, name="e-1")
        assert r.output == {"redrives": 0, "name": "e-1"}

    @pytest.mark.parametrize("count", [1, 3])
    def test_redrive_count_comes_from_the_execution_info_through_json(self, count):
        sm = StateMachine.from_definition(self.SM)
        cursor = sm.begin({}, name="e-2", start_time=T0)
        redriven = replace(cursor, execution=replace(cursor.execution, redrive_count=count))
        text = redriven.to_json()
        assert json.loads(text)["execution"]["redrive_count"] == count
        r, _ = resume(sm, text, at=T0)
        assert r.output == {"redrives": count, "name": "e-2"}
