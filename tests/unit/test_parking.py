"""Parking long pauses (`park_after`) instead of sleeping, and `$$.Execution.RedriveCount`."""

from __future__ import annotations

import json
import random
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


def _down_once(clock: VirtualClock) -> tuple[HandlerRegistry, list[float]]:
    """A `flaky` handler that fails its first call and returns "ok" after; the times it was called."""
    calls: list[float] = []
    reg = HandlerRegistry()

    @reg.handler("flaky")
    def flaky(payload):
        calls.append(clock.now())
        if len(calls) == 1:
            raise RuntimeError("down")
        return "ok"

    return reg, calls


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
        clock = VirtualClock(T0)
        reg, calls = _down_once(clock)

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

    def test_stop_after_still_reports_running(self):
        sm = StateMachine.from_definition(WAITING_MACHINE)
        clock = VirtualClock(T0)
        r = sm.resume(
            sm.begin({"delay": 3600}), clock=clock.now, sleep=clock.sleep, stop_after=1, park_after=60
        )
        assert r.status == "RUNNING" and r.cursor.state == "Sleep"


def _wait_branch(seconds: int) -> dict[str, Any]:
    return {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": seconds, "End": True}}}


PARALLEL_WAITS = {
    "StartAt": "P",
    "States": {"P": {"Type": "Parallel", "Branches": [_wait_branch(3600), _wait_branch(7200)], "End": True}},
}
# Each iteration: a Task (counted), a long Wait, a Task again.
MAP_WAITS = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 1,
            "ItemProcessor": {
                "StartAt": "Before",
                "States": {
                    "Before": {"Type": "Task", "Resource": "count", "ResultPath": None, "Next": "Sleep"},
                    "Sleep": {"Type": "Wait", "Seconds": 3600, "Next": "After"},
                    "After": {"Type": "Task", "Resource": "count", "End": True},
                },
            },
            "End": True,
        }
    },
}


def _counting(clock: VirtualClock) -> tuple[HandlerRegistry, list[tuple[Any, float]]]:
    calls: list[tuple[Any, float]] = []
    reg = HandlerRegistry()

    @reg.handler("count")
    def count(payload):
        calls.append((payload, clock.now()))
        return {"item": payload, "at": clock.now()}

    return reg, calls


class TestBranchesPark:
    """With park_after, a Parallel or Map whose branches all wait parks as a whole instead of holding
    the process: each branch's progress goes into the state's cursor, and each goes on from there."""

    def test_waiting_branches_park_the_parallel_state_until_the_first_is_due(self):
        sm = StateMachine.from_definition(PARALLEL_WAITS)
        r, clock = run(sm, {"x": 1}, park_after=60)
        assert (r.status, clock.now()) == ("WAITING", T0)  # nothing slept
        cursor = r.cursor
        assert (cursor.state, cursor.not_before, cursor.parked) == ("P", T0 + 3600, False)
        jobs = cursor.pending["jobs"]
        assert (cursor.pending["kind"], cursor.pending["count"]) == ("fanout", 2)
        assert {index: job["status"] for index, job in jobs.items()} == {"0": "WAITING", "1": "WAITING"}
        assert "execution" not in jobs["0"]["cursor"]  # shared with the parent: stored once

        half, clock = resume(sm, cursor.to_json(), at=T0 + 3600, park_after=60)
        assert (half.status, half.cursor.not_before) == ("WAITING", T0 + 7200)
        assert half.cursor.pending["jobs"]["0"] == {"status": "SUCCEEDED", "output": {"x": 1}}
        assert [(e.scope, e.state_name, e.exited_at) for e in half.history] == [("P[0]", "W", T0 + 3600)]

        done, clock = resume(sm, half.cursor.to_json(), at=T0 + 7200, park_after=60)
        assert (done.status, done.output) == ("SUCCEEDED", [{"x": 1}, {"x": 1}])
        assert [(e.scope, e.state_name) for e in done.history] == [("P[1]", "W"), ("", "P")]
        parallel = done.history[-1]
        assert (parallel.entered_at, parallel.exited_at) == (T0, T0 + 7200)  # one attempt, from its start

    def test_map_iterations_park_one_at_a_time_under_max_concurrency_and_never_rerun_a_task(self):
        sm = StateMachine.from_definition(MAP_WAITS)
        clock = VirtualClock(T0)
        reg, calls = _counting(clock)
        options = {"handlers": reg, "clock": clock.now, "sleep": clock.sleep, "park_after": 60}
        r = sm.run({"items": ["a", "b", "c"]}, **options)
        resumes = 0
        while r.status == "WAITING":
            # MaxConcurrency 1: one iteration in flight (parked), the others not started.
            assert [job["status"] for job in r.cursor.pending["jobs"].values()].count("WAITING") == 1
            clock.sleep_until(r.cursor.not_before)
            r = sm.resume(r.cursor.to_json(), **options)
            resumes += 1
        assert (r.status, resumes) == ("SUCCEEDED", 3)
        assert [item for item, _ in calls] == ["a", "a", "b", "b", "c", "c"]  # each Task once
        hours = [round((at - T0) / 3600) for _, at in calls]
        assert hours == [0, 1, 1, 2, 2, 3]  # b starts only when a has ended
        assert r.output == [{"item": item, "at": T0 + 3600 * (n + 1)} for n, item in enumerate("abc")]
        # The last resume records only what it ran: the end of c's Wait, its last Task, the Map.
        assert [(e.scope, e.state_name) for e in r.history] == [
            ("Each[2]", "Sleep"),
            ("Each[2]", "After"),
            ("", "Each"),
        ]

    def test_without_max_concurrency_every_iteration_parks_at_once(self):
        sm = StateMachine.from_definition(
            {**MAP_WAITS, "States": {"Each": {**MAP_WAITS["States"]["Each"], "MaxConcurrency": 0}}}
        )
        clock = VirtualClock(T0)
        reg, calls = _counting(clock)
        options = {"handlers": reg, "clock": clock.now, "sleep": clock.sleep, "park_after": 60}
        r = sm.run({"items": [1, 2, 3]}, **options)
        assert r.status == "WAITING" and sorted(item for item, _ in calls) == [1, 2, 3]
        assert [job["status"] for job in r.cursor.pending["jobs"].values()] == ["WAITING"] * 3
        clock.sleep_until(r.cursor.not_before)
        done = sm.resume(r.cursor.to_json(), **options)
        assert (done.status, sorted(item for item, _ in calls)) == ("SUCCEEDED", [1, 1, 2, 2, 3, 3])

    def test_a_free_slot_starts_the_next_iteration_before_the_map_parks(self):
        """MaxConcurrency 2 over waits of 1 s, 600 s, 900 s and 30 s: the 1 s one ends in-process and
        its slot goes to the 900 s one; both long ones park and hold the two slots, so the 30 s one
        starts only once the 600 s one has ended."""
        wait = {"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$", "End": True}}}
        sm = StateMachine.from_definition(
            {
                "StartAt": "M",
                "States": {"M": {"Type": "Map", "MaxConcurrency": 2, "ItemProcessor": wait, "End": True}},
            }
        )
        r, _ = run(sm, [1, 600, 900, 30], park_after=60)
        assert (r.status, r.cursor.not_before) == ("WAITING", T0 + 600)
        jobs = r.cursor.pending["jobs"]
        assert {i: job["status"] for i, job in jobs.items()} == {
            "0": "SUCCEEDED",
            "1": "WAITING",
            "2": "WAITING",
        }

        later, _ = resume(sm, r.cursor.to_json(), at=T0 + 600, park_after=60)
        assert (later.status, later.cursor.not_before) == ("WAITING", T0 + 900)
        statuses = {i: job["status"] for i, job in later.cursor.pending["jobs"].items()}
        assert statuses == {"0": "SUCCEEDED", "1": "SUCCEEDED", "2": "WAITING", "3": "SUCCEEDED"}
        ran = [(e.scope, e.exited_at) for e in later.history]
        assert sorted(ran) == [("M[1]", T0 + 600), ("M[3]", T0 + 630)]

        done, _ = resume(sm, later.cursor.to_json(), at=T0 + 900, park_after=60)
        assert (done.status, done.output) == ("SUCCEEDED", [1, 600, 900, 30])

    def test_iterations_parked_before_go_on_first_whatever_their_index(self):
        """Threads may leave a parked iteration with a higher index than one never started; on resume
        the parked one goes first (it holds the slot), then the other starts in the slot it frees."""
        wait = {"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$", "End": True}}}
        sm = StateMachine.from_definition(
            {
                "StartAt": "M",
                "States": {"M": {"Type": "Map", "MaxConcurrency": 1, "ItemProcessor": wait, "End": True}},
            }
        )
        r, _ = run(sm, [600, 600], park_after=60)
        jobs = r.cursor.pending["jobs"]
        assert list(jobs) == ["0"]
        swapped = replace(r.cursor, pending={**r.cursor.pending, "jobs": {"1": jobs["0"]}})
        later, _ = resume(sm, swapped.to_json(), at=T0 + 600, park_after=60)
        assert later.status == "WAITING"
        assert {i: job["status"] for i, job in later.cursor.pending["jobs"].items()} == {
            "0": "WAITING",
            "1": "SUCCEEDED",
        }
        assert later.cursor.not_before == T0 + 1200

    @pytest.mark.parametrize("seed", range(6))
    def test_random_waits_under_any_max_concurrency_end_with_every_result_in_order(self, seed):
        rng = random.Random(seed)
        items = [rng.choice([0, 1, 30, 600, 900, 1800]) for _ in range(12)]
        limit = rng.choice([0, 1, 2, 3, 5])
        wait = {"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$", "End": True}}}
        map_state = {"Type": "Map", "MaxConcurrency": limit, "ItemProcessor": wait, "End": True}
        sm = StateMachine.from_definition({"StartAt": "M", "States": {"M": map_state}})
        r, clock = run(sm, items, park_after=60)
        resumes = 0
        while r.status == "WAITING":
            in_flight = [job["status"] for job in r.cursor.pending["jobs"].values()].count("WAITING")
            assert in_flight >= 1 and (not limit or in_flight <= limit)
            assert r.cursor.not_before > clock.now()
            r, clock = resume(sm, r.cursor.to_json(), at=r.cursor.not_before, park_after=60)
            resumes += 1
            assert resumes <= len(items)
        assert (r.status, r.output) == ("SUCCEEDED", items)

    def test_a_failing_branch_fails_the_state_even_while_another_is_parked(self):
        failing = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom"}}}
        sm = StateMachine.from_definition(
            {
                "StartAt": "P",
                "States": {"P": {"Type": "Parallel", "Branches": [_wait_branch(3600), failing], "End": True}},
            }
        )
        r, clock = run(sm, {}, park_after=60)
        assert (r.status, r.error, clock.now()) == ("FAILED", "Boom", T0)

    def test_a_retry_of_the_state_starts_every_branch_afresh(self):
        """Progress belongs to one attempt: when the state fails and its Retry applies, every branch
        runs again from its start (the one that had parked included), as AWS retries a Parallel."""
        clock = VirtualClock(T0)
        reg, calls = _down_once(clock)

        task = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "flaky", "End": True}}}
        retry = [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1}]
        parallel = {"Type": "Parallel", "Branches": [_wait_branch(3600), task], "Retry": retry, "End": True}
        sm = StateMachine.from_definition({"StartAt": "P", "States": {"P": parallel}})
        options = {"handlers": reg, "clock": clock.now, "sleep": clock.sleep, "park_after": 60}
        r = sm.run({}, **options)
        assert (r.status, r.cursor.not_before, calls) == ("WAITING", T0 + 1 + 3600, [T0, T0 + 1])
        assert r.cursor.pending["jobs"]["1"] == {"status": "SUCCEEDED", "output": "ok"}
        assert [(e.state_name, e.status) for e in r.history if not e.scope] == [("P", "RETRIED")]
        clock.sleep_until(r.cursor.not_before)
        done = sm.resume(r.cursor.to_json(), **options)
        assert (done.status, done.output, len(calls)) == ("SUCCEEDED", [{}, "ok"], 2)

    def test_nested_fan_outs_park_and_resume_together(self):
        inner = {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "ItemProcessor": {
                        "StartAt": "W",
                        "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}},
                    },
                    "End": True,
                }
            },
        }
        sm = StateMachine.from_definition(
            {
                "StartAt": "P",
                "States": {
                    "P": {"Type": "Parallel", "Branches": [inner, _wait_branch(60 * 90)], "End": True}
                },
            }
        )
        r, _ = run(sm, [1, 2], park_after=60)
        assert (r.status, r.cursor.not_before) == ("WAITING", T0 + 3600)
        inner_cursor = r.cursor.pending["jobs"]["0"]["cursor"]
        assert (inner_cursor["state"], inner_cursor["pending"]["kind"]) == ("M", "fanout")
        half, _ = resume(sm, r.cursor.to_json(), at=T0 + 3600, park_after=60)
        assert (half.status, half.cursor.not_before) == ("WAITING", T0 + 5400)
        done, clock = resume(sm, half.cursor.to_json(), at=T0 + 5400, park_after=60)
        assert (done.status, done.output, clock.now()) == ("SUCCEEDED", [[1, 2], [1, 2]], T0 + 5400)

    def test_a_long_retry_back_off_inside_an_iteration_parks_the_map(self):
        clock = VirtualClock(T0)
        calls: list[tuple[Any, float]] = []
        reg = HandlerRegistry()

        @reg.handler("flaky")
        def flaky(payload):
            calls.append((payload, clock.now()))
            if [item for item, _ in calls].count(payload) == 1 and payload == 2:
                raise RuntimeError("down")
            return payload * 10

        retry = [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 600}]
        task = {"Type": "Task", "Resource": "flaky", "Retry": retry, "End": True}
        sm = StateMachine.from_definition(
            {
                "StartAt": "M",
                "States": {
                    "M": {
                        "Type": "Map",
                        "ItemProcessor": {"StartAt": "T", "States": {"T": task}},
                        "End": True,
                    }
                },
            }
        )
        options = {"handlers": reg, "clock": clock.now, "sleep": clock.sleep, "park_after": 60}
        r = sm.run([1, 2, 3], **options)
        assert (r.status, r.cursor.not_before) == ("WAITING", T0 + 600)
        assert {i: job["status"] for i, job in r.cursor.pending["jobs"].items()} == {
            "0": "SUCCEEDED",
            "1": "WAITING",
            "2": "SUCCEEDED",
        }
        clock.sleep_until(T0 + 600)
        done = sm.resume(r.cursor.to_json(), **options)
        assert (done.status, done.output) == ("SUCCEEDED", [10, 20, 30])
        assert sorted(calls) == [(1, T0), (2, T0), (2, T0 + 600), (3, T0)]

    def test_an_answered_branch_goes_on_at_once_while_a_sibling_sleeps(self):
        hear = {"StartAt": "H", "States": {"H": {"Type": "Message", "CorrelationKey": "k", "End": True}}}
        sm = StateMachine.from_definition(
            {
                "StartAt": "P",
                "States": {"P": {"Type": "Parallel", "Branches": [_wait_branch(3600), hear], "End": True}},
            }
        )
        r, _ = run(sm, {"x": 1}, park_after=60)
        assert (r.status, r.cursor.not_before, r.cursor.parked) == ("WAITING", T0 + 3600, False)
        answered = r.cursor.deliver({"kind": "message", "data": "hi"}, branch="1")
        assert answered.not_before is None  # runnable now, not at the sleeping branch's time
        half, clock = resume(sm, answered.to_json(), at=T0 + 10, park_after=60)
        assert (half.status, half.cursor.not_before, clock.now()) == ("WAITING", T0 + 3600, T0 + 10)
        assert [(e.scope, e.state_name, e.exited_at) for e in half.history] == [("P[1]", "H", T0 + 10)]
        done, _ = resume(sm, half.cursor.to_json(), at=T0 + 3600, park_after=60)
        assert (done.status, done.output) == ("SUCCEEDED", [{"x": 1}, "hi"])

    def test_without_park_after_branches_sleep_as_before(self):
        sm = StateMachine.from_definition(PARALLEL_WAITS)
        r, clock = run(sm, {"x": 1})
        assert (r.status, clock.now()) == ("SUCCEEDED", T0 + 7200)


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
