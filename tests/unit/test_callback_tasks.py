"""Callback tasks (`.waitForTaskToken`): the token, parking, and success / failure / timeout deliveries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from smq import Cursor, HandlerRegistry, StateMachine, TaskContext, TaskError, VirtualClock
from smq.engine.compiler import validate_definition
from smq.engine.cursor import branch_waits

T0 = 1_735_732_800.0  # 2025-01-01T12:00:00Z
RESOURCE = "notify.waitForTaskToken"


class Notifier:
    """A handler that hands the token over (records it) and returns something the engine ignores."""

    def __init__(self, clock: VirtualClock | None = None, fail_with: list[str | None] | None = None):
        self.clock = clock
        self.fail_with = list(fail_with or [])
        self.calls: list[tuple[Any, TaskContext]] = []
        self.times: list[float] = []

    def __call__(self, payload: Any, ctx: TaskContext) -> Any:
        self.calls.append((payload, ctx))
        if self.clock is not None:
            self.times.append(self.clock.now())
        index = len(self.calls) - 1
        if index < len(self.fail_with) and self.fail_with[index] is not None:
            raise TaskError(self.fail_with[index], "could not notify")
        return {"ignored": True}

    @property
    def tokens(self) -> list[str | None]:
        return [ctx.task_token for _, ctx in self.calls]


def registry(notifier: Notifier) -> HandlerRegistry:
    reg = HandlerRegistry()
    reg.register("notify", notifier)
    return reg


def callback_task(**fields: Any) -> dict[str, Any]:
    state = {
        "Type": "Task",
        "Resource": RESOURCE,
        "Parameters": {"token.$": "$$.Task.Token", "order.$": "$.order"},
        **fields,
    }
    if "Next" not in state and "End" not in state:
        state["End"] = True
    return state


def machine(task: dict[str, Any], **others: Any) -> StateMachine:
    return StateMachine.from_definition({"StartAt": "T", "States": {"T": task, **others}})


class Session:
    """One execution across processes: each call uses a fresh clock at a given time."""

    def __init__(self, sm: StateMachine, notifier: Notifier):
        self.sm = sm
        self.notifier = notifier
        self.reg = registry(notifier)

    def run(self, inp: Any, at: float = T0, **kw: Any):
        clock = VirtualClock(at)
        self.notifier.clock = clock
        return self.sm.run(inp, handlers=self.reg, clock=clock.now, sleep=clock.sleep, **kw)

    def resume(self, cursor: Cursor | str, at: float = T0, **kw: Any):
        clock = VirtualClock(at)
        self.notifier.clock = clock
        return self.sm.resume(cursor, handlers=self.reg, clock=clock.now, sleep=clock.sleep, **kw)


def delivered(cursor: Cursor | None, delivery: dict[str, Any]) -> str:
    """Store the parked cursor as JSON and set `pending.delivery`, as the persistence layer does."""
    assert cursor is not None
    data = json.loads(cursor.to_json())
    data["pending"]["delivery"] = delivery
    return json.dumps(data)


# ---------------------------------------------------------------------------------- validation


class TestValidation:
    def test_wait_for_task_token_resources_are_accepted(self):
        assert validate_definition({"StartAt": "T", "States": {"T": callback_task()}}) == []
        lam = callback_task(
            Resource="arn:aws:states:::lambda:invoke.waitForTaskToken",
            Parameters={"FunctionName": "notify", "Payload": {"token.$": "$$.Task.Token"}},
        )
        sm = machine(lam)
        assert sm.machine.states["T"].wait_for_token
        sm.check_handlers(registry(Notifier()))  # FunctionName resolves with the suffix

    @pytest.mark.parametrize(
        "resource", ["arn:aws:states:::ecs:runTask.sync", "arn:aws:states:::states:startExecution.sync:2"]
    )
    def test_sync_integrations_validate(self, resource):
        # Issue 23: `.sync` validates; a handler (a SyncJob) is needed only to run it, and
        # startExecution is smq's own.
        task = {"Type": "Task", "Resource": resource, "End": True}
        assert validate_definition({"StartAt": "T", "States": {"T": task}}) == []
        assert machine(task).machine.states["T"].sync

    def test_inside_a_map_each_iteration_parks_on_its_own_token(self):
        """A callback task per Map iteration: the Map parks with one token per iteration; answering
        one goes on with that iteration only, and the Map ends when every token is answered."""
        notifier = Notifier()
        sub = {"StartAt": "In", "States": {"In": callback_task(ResultPath="$.answer")}}
        assert (
            validate_definition(
                {"StartAt": "P", "States": {"P": {"Type": "Map", "ItemProcessor": sub, "End": True}}}
            )
            == []
        )
        sm = StateMachine.from_definition(
            {"StartAt": "P", "States": {"P": {"Type": "Map", "ItemProcessor": sub, "End": True}}}
        )
        r = sm.run([{"order": 1}, {"order": 2}], handlers=registry(notifier))
        assert (r.status, r.cursor.parked, len(set(notifier.tokens))) == ("WAITING", True, 2)
        by_order = {payload["order"]: payload["token"] for payload, _ in notifier.calls}
        paths = {pending["token"]: path for path, pending in branch_waits(r.cursor.pending)}
        first = r.cursor.deliver({"kind": "success", "output": "ok-2"}, branch=paths[by_order[2]])
        half = sm.resume(first, handlers=registry(notifier))
        assert (half.status, half.cursor.parked) == ("WAITING", True)
        second = half.cursor.deliver(
            {"kind": "failure", "error": "No", "cause": "refused"}, branch=paths[by_order[1]]
        )
        done = sm.resume(second, handlers=registry(notifier))
        assert (done.status, done.error) == ("FAILED", "No")
        assert len(notifier.calls) == 2  # nothing ran twice

    def test_a_delivery_to_a_branch_that_does_not_wait_is_refused(self):
        sub = {"StartAt": "In", "States": {"In": callback_task()}}
        sm = StateMachine.from_definition(
            {"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [sub, sub], "End": True}}}
        )
        r = sm.run({"order": 1}, handlers=registry(Notifier()))
        with pytest.raises(ValueError, match="branch '5'"):
            r.cursor.deliver({"kind": "success", "output": 1}, branch="5")
        with pytest.raises(ValueError, match="delivery of kind"):
            r.cursor.deliver({"kind": "message", "data": 1}, branch="0")

    def test_unknown_handler_is_reported_before_running(self):
        with pytest.raises(Exception, match="no handler registered"):
            machine(callback_task(Resource="missing.waitForTaskToken")).run({}, handlers=HandlerRegistry())


# ---------------------------------------------------------------------------------- parking


class TestParking:
    def test_token_reaches_the_handler_in_parameters_and_the_context(self):
        notifier = Notifier()
        session = Session(machine(callback_task(TimeoutSeconds=300, HeartbeatSeconds=60)), notifier)
        steps = []
        r = session.run({"order": 7}, on_step=steps.append)
        assert r.status == "WAITING"
        assert r.history == []
        [(payload, ctx)] = notifier.calls
        token = ctx.task_token
        assert isinstance(token, str) and len(token) >= 32
        assert payload == {"token": token, "order": 7}
        assert ctx.attempt == 1
        cursor = r.cursor
        assert cursor is not None and cursor.parked and cursor.state == "T"
        assert cursor.pending == {
            "kind": "callback",
            "token": token,
            "until": T0 + 300,
            "heartbeat": 60,
            "started_at": T0,
        }
        assert cursor.input == {"order": 7} and cursor.not_before is None
        assert len(steps) == 1 and steps[0].entries == [] and steps[0].cursor == cursor

    def test_without_timeouts_until_and_heartbeat_are_none(self):
        r = Session(machine(callback_task()), Notifier()).run({"order": 1})
        assert (r.cursor.pending["until"], r.cursor.pending["heartbeat"]) == (None, None)

    def test_timeout_seconds_path_sets_until(self):
        r = Session(machine(callback_task(TimeoutSecondsPath="$.ttl")), Notifier()).run(
            {"order": 1, "ttl": 45}
        )
        assert r.cursor.pending["until"] == T0 + 45

    def test_tokens_are_unique(self):
        notifier = Notifier()
        session = Session(machine(callback_task()), notifier)
        for _ in range(20):
            session.run({"order": 1})
        assert len(set(notifier.tokens)) == 20

    def test_resuming_without_a_delivery_does_not_call_the_handler_again(self):
        notifier = Notifier()
        session = Session(machine(callback_task()), notifier)
        parked = session.run({"order": 1}).cursor
        again = session.resume(parked.to_json(), at=T0 + 100)
        assert again.status == "WAITING" and again.cursor == parked
        assert len(notifier.calls) == 1

    def test_lambda_invoke_wait_for_task_token(self):
        notifier = Notifier()
        sm = machine(
            callback_task(
                Resource="arn:aws:states:::lambda:invoke.waitForTaskToken",
                Parameters={"FunctionName": "notify", "Payload": {"token.$": "$$.Task.Token", "n.$": "$.n"}},
            )
        )
        session = Session(sm, notifier)
        r = session.run({"n": 3})
        assert r.status == "WAITING"
        [(payload, ctx)] = notifier.calls
        assert payload == {"token": ctx.task_token, "n": 3}
        done = session.resume(delivered(r.cursor, {"kind": "success", "output": {"ok": 1}}))
        assert done.output == {"ok": 1}  # the callback's output, not a Lambda response envelope

    def test_handler_failure_uses_retry_and_catch_as_today(self):
        notifier = Notifier(fail_with=["Notify.Down", None])
        sm = machine(callback_task(Retry=[{"ErrorEquals": ["Notify.Down"], "IntervalSeconds": 2}]))
        r = Session(sm, notifier).run({"order": 1})
        assert r.status == "WAITING"
        assert [(e.status, e.error) for e in r.history] == [("RETRIED", "Notify.Down")]
        assert notifier.times == [T0, T0 + 2]
        assert notifier.tokens[0] != notifier.tokens[1]
        assert r.cursor.pending["token"] == notifier.tokens[1]
        assert r.cursor.attempt == 2

    def test_handler_failure_without_retry_fails_the_task(self):
        notifier = Notifier(fail_with=["Notify.Down"])
        r = Session(machine(callback_task()), notifier).run({"order": 1})
        assert (r.status, r.error, r.cause) == ("FAILED", "Notify.Down", "could not notify")


# ---------------------------------------------------------------------------------- deliveries


class TestSuccess:
    def test_success_round_trip_through_json(self):
        notifier = Notifier()
        sm = machine(
            callback_task(
                TimeoutSeconds=3600,
                ResultSelector={"approved.$": "$.approved", "token.$": "$$.Task.Token"},
                ResultPath="$.approval",
                OutputPath="$.approval",
                Next="Done",
            ),
            Done={"Type": "Pass", "End": True},
        )
        session = Session(sm, notifier)
        parked = session.run({"order": 5}, name="approve-5")
        token = parked.cursor.pending["token"]
        text = delivered(parked.cursor, {"kind": "success", "output": {"approved": True, "by": "ops"}})

        fresh = Session(StateMachine.from_definition(sm.definition), notifier)
        done = fresh.resume(text, at=T0 + 90)
        assert done.status == "SUCCEEDED"
        assert done.output == {"approved": True, "token": token}
        assert done.name == "approve-5"
        entry = done.history[0]
        assert (entry.state_name, entry.state_type, entry.status, entry.attempt) == (
            "T",
            "Task",
            "SUCCEEDED",
            1,
        )
        assert entry.input == {"order": 5}
        assert entry.output == {"approved": True, "token": token}
        assert (entry.entered_at, entry.exited_at) == (T0, T0 + 90)
        assert [e.state_name for e in done.history] == ["T", "Done"]
        assert len(notifier.calls) == 1  # the handler is not called again on delivery

    def test_assign_sees_the_callback_output(self):
        sm = machine(
            callback_task(Assign={"who.$": "$.by"}, ResultPath=None, Next="Use"),
            Use={"Type": "Pass", "Parameters": {"who.$": "$who", "in.$": "$"}, "End": True},
        )
        session = Session(sm, Notifier())
        parked = session.run({"order": 2})
        done = session.resume(parked.cursor.deliver({"kind": "success", "output": {"by": "ada"}}))
        assert done.output == {"who": "ada", "in": {"order": 2}}

    def test_output_above_the_payload_limit_is_data_limit_exceeded(self):
        session = Session(machine(callback_task()), Notifier())
        parked = session.run({"order": 2})
        big = parked.cursor.deliver({"kind": "success", "output": "x" * 5000})
        r = session.resume(big, payload_limit=1000)
        assert (r.status, r.error) == ("FAILED", "States.DataLimitExceeded")

    @pytest.mark.parametrize(
        "delivery", [{"kind": "message", "data": 1}, {"kind": "success"}, {"kind": "nope"}, [], None]
    )
    def test_a_delivery_that_does_not_fit_is_rejected(self, delivery):
        session = Session(machine(callback_task()), Notifier())
        parked = session.run({"order": 2}).cursor
        with pytest.raises(ValueError):
            parked.deliver(delivery)
        with pytest.raises(ValueError):
            session.resume(parked.moved(pending={**parked.pending, "delivery": delivery}))


class TestFailure:
    def test_failure_with_retry_calls_the_handler_again_with_a_new_token(self):
        notifier = Notifier()
        sm = machine(
            callback_task(
                Retry=[{"ErrorEquals": ["Approval.Rejected"], "IntervalSeconds": 5, "MaxAttempts": 1}],
            )
        )
        session = Session(sm, notifier)
        first = session.run({"order": 9})
        first_token = first.cursor.pending["token"]
        failure = {"kind": "failure", "error": "Approval.Rejected", "cause": "try again"}

        second = session.resume(delivered(first.cursor, failure), at=T0 + 30)
        assert second.status == "WAITING"
        [retried] = second.history
        assert (retried.status, retried.error, retried.cause) == ("RETRIED", "Approval.Rejected", "try again")
        assert (retried.entered_at, retried.attempt) == (T0, 1)
        assert notifier.times == [T0, T0 + 35]  # called again after the back-off
        second_token = second.cursor.pending["token"]
        assert second_token != first_token
        assert notifier.tokens == [first_token, second_token]
        assert notifier.calls[1][0] == {"token": second_token, "order": 9}
        assert notifier.calls[1][1].attempt == 2
        assert second.cursor.pending["started_at"] == T0 + 35
        assert second.cursor.entered_at == T0  # $$.State.EnteredTime survives the retry

        # the retrier is exhausted: the next failure fails the execution
        third = session.resume(delivered(second.cursor, failure), at=T0 + 60)
        assert (third.status, third.error, third.cause) == ("FAILED", "Approval.Rejected", "try again")
        assert [(e.status, e.attempt) for e in third.history] == [("FAILED", 2)]

    def test_failure_then_success_after_retry(self):
        sm = machine(callback_task(Retry=[{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1}]))
        session = Session(sm, Notifier())
        first = session.run({"order": 9})
        second = session.resume(delivered(first.cursor, {"kind": "failure", "error": "X", "cause": "c"}))
        done = session.resume(delivered(second.cursor, {"kind": "success", "output": "fine"}), at=T0 + 10)
        assert (done.status, done.output) == ("SUCCEEDED", "fine")
        assert [(e.status, e.attempt) for e in done.history] == [("SUCCEEDED", 2)]

    def test_failure_with_catch(self):
        sm = machine(
            callback_task(
                Catch=[{"ErrorEquals": ["Approval.Rejected"], "ResultPath": "$.error", "Next": "Rejected"}],
                Next="Approved",
            ),
            Approved={"Type": "Succeed"},
            Rejected={"Type": "Pass", "End": True},
        )
        session = Session(sm, Notifier())
        parked = session.run({"order": 3})
        failure = {"kind": "failure", "error": "Approval.Rejected", "cause": "no budget"}
        r = session.resume(delivered(parked.cursor, failure))
        assert r.status == "SUCCEEDED"
        assert r.output == {"order": 3, "error": {"Error": "Approval.Rejected", "Cause": "no budget"}}
        assert [(e.state_name, e.status) for e in r.history] == [("T", "CAUGHT"), ("Rejected", "SUCCEEDED")]

    def test_uncaught_failure_fails_the_execution(self):
        session = Session(machine(callback_task()), Notifier())
        parked = session.run({"order": 3})
        r = session.resume(delivered(parked.cursor, {"kind": "failure", "error": "Boom", "cause": "bad"}))
        assert (r.status, r.error, r.cause) == ("FAILED", "Boom", "bad")
        assert [(e.state_name, e.status, e.error) for e in r.history] == [("T", "FAILED", "Boom")]

    def test_a_long_back_off_parks_with_park_after(self):
        notifier = Notifier()
        sm = machine(callback_task(Retry=[{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 3600}]))
        session = Session(sm, notifier)
        first = session.run({"order": 1}, park_after=60)
        failed = session.resume(delivered(first.cursor, {"kind": "failure", "error": "E"}), park_after=60)
        assert failed.status == "WAITING"
        assert not failed.cursor.parked and failed.cursor.not_before == T0 + 3600
        assert len(notifier.calls) == 1
        later = session.resume(failed.cursor.to_json(), at=T0 + 3600, park_after=60)
        assert later.status == "WAITING" and later.cursor.parked
        assert len(notifier.calls) == 2 and later.cursor.pending["token"] == notifier.tokens[1]


class TestTimeouts:
    @pytest.mark.parametrize(
        "kind, error", [("timeout", "States.Timeout"), ("heartbeat_timeout", "States.HeartbeatTimeout")]
    )
    def test_timeouts_fail_the_task(self, kind, error):
        session = Session(machine(callback_task(TimeoutSeconds=60, HeartbeatSeconds=10)), Notifier())
        parked = session.run({"order": 1})
        r = session.resume(delivered(parked.cursor, {"kind": kind}), at=T0 + 60)
        assert (r.status, r.error) == ("FAILED", error)
        assert "'T'" in r.cause
        assert [(e.status, e.error) for e in r.history] == [("FAILED", error)]

    def test_timeout_goes_through_catch_and_task_failed_does_not_match_it(self):
        sm = machine(
            callback_task(
                TimeoutSeconds=60,
                Catch=[
                    {"ErrorEquals": ["States.TaskFailed"], "Next": "Failed"},
                    {"ErrorEquals": ["States.Timeout"], "Next": "Late"},
                ],
                Next="Failed",
            ),
            Failed={"Type": "Fail", "Error": "F"},
            Late={"Type": "Succeed"},
        )
        session = Session(sm, Notifier())
        parked = session.run({"order": 1})
        r = session.resume(delivered(parked.cursor, {"kind": "timeout"}), at=T0 + 60)
        assert r.status == "SUCCEEDED"
        assert [(e.state_name, e.status, e.error) for e in r.history] == [
            ("T", "CAUGHT", "States.Timeout"),
            ("Late", "SUCCEEDED", None),
        ]

    def test_heartbeat_timeout_goes_through_retry(self):
        notifier = Notifier()
        sm = machine(
            callback_task(
                HeartbeatSeconds=10,
                Retry=[{"ErrorEquals": ["States.HeartbeatTimeout"], "IntervalSeconds": 1}],
            )
        )
        session = Session(sm, notifier)
        parked = session.run({"order": 1})
        r = session.resume(delivered(parked.cursor, {"kind": "heartbeat_timeout"}), at=T0 + 10)
        assert r.status == "WAITING"
        assert [(e.status, e.error) for e in r.history] == [("RETRIED", "States.HeartbeatTimeout")]
        assert len(set(notifier.tokens)) == 2
