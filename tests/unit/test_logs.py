"""Logs that name the execution (smq.logs): the context, the filter, the end line, both formats."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smq.logs import (
    CONTEXT_FIELDS,
    END_FIELDS,
    ExecutionContextFilter,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    current_context,
    execution_context,
    execution_run,
    format_handler,
    log_end,
)
from smq.settings import Settings, SettingsError

CONTEXT = {
    "execution_id": "0b6f3c1e-0000-4000-8000-000000000001",
    "execution_name": "ord-7",
    "state_machine_id": "orders",
    "state": "ChargeCard",
    "attempt": 2,
    "queue": "critical",
}


class Captured:
    """A logger with one handler (smq's filter and the formatter under test) writing to a buffer."""

    def __init__(self, formatter: logging.Formatter) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(formatter)
        self.handler.addFilter(ExecutionContextFilter())
        self.logger = logging.getLogger(f"smq.test.logs.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self.handler)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def objects(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines()]

    def close(self) -> None:
        self.logger.removeHandler(self.handler)


@pytest.fixture
def json_log() -> Iterator[Captured]:
    captured = Captured(JsonFormatter())
    yield captured
    captured.close()


@pytest.fixture
def text_log() -> Iterator[Captured]:
    captured = Captured(TextFormatter())
    yield captured
    captured.close()


def test_lines_inside_a_context_carry_it_and_lines_outside_do_not(json_log: Captured) -> None:
    json_log.logger.info("before")
    with execution_context(**CONTEXT):
        json_log.logger.info("inside %s", "it")
        json_log.logger.info("explicit", extra={"state": "Other"})
    json_log.logger.info("after")
    before, inside, explicit, after = json_log.objects()
    assert not set(CONTEXT_FIELDS) & set(before) and not set(CONTEXT_FIELDS) & set(after)
    assert {key: inside[key] for key in CONTEXT_FIELDS} == CONTEXT
    assert inside["message"] == "inside it" and inside["level"] == "INFO"
    assert explicit["state"] == "Other"  # a field given with extra= wins over the context


def test_a_nested_binding_adds_fields_and_ends_with_its_block() -> None:
    with execution_context(state_machine_id="orders", execution_name="ord-1", attempt=3, queue="low"):
        with execution_context(execution_id="E1", state="A", queue=None) as inner:
            inner["state"] = "B"
            assert current_context() == {
                "state_machine_id": "orders",
                "execution_name": "ord-1",
                "attempt": 3,
                "queue": "low",  # None binds nothing
                "execution_id": "E1",
                "state": "B",
            }
        assert "execution_id" not in current_context() and current_context()["attempt"] == 3
    assert current_context() == {}
    with execution_context(execution_id="E2"):
        assert current_context()["attempt"] == 1  # the first attempt unless told otherwise


def test_the_end_line_has_every_field_even_without_the_filter() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())  # a handler smq did not set up: no filter
    logger = logging.getLogger("smq.test.logs.nofilter")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    try:
        with execution_context(attempt=2, queue="critical", task_id="T1"):
            log_end(
                logger,
                {
                    **{key: CONTEXT[key] for key in ("execution_id", "execution_name", "state_machine_id")},
                    "state": "ChargeCard",
                    "status": "FAILED",
                    "error": "Payment.Declined",
                    "cause": "card declined\nby the bank",
                    "duration_ms": 38,
                },
            )
        log_end(logger, {"execution_id": "E9", "status": "SUCCEEDED", "duration_ms": 5})
    finally:
        logger.removeHandler(handler)
    failed, succeeded = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {key: failed[key] for key in CONTEXT_FIELDS} == CONTEXT
    assert (failed["status"], failed["error"], failed["cause"], failed["duration_ms"]) == (
        "FAILED",
        "Payment.Declined",
        "card declined\nby the bank",
        38,
    )
    assert failed["task_id"] == "T1"
    assert failed["message"] == "execution FAILED after 38 ms: Payment.Declined: card declined by the bank"
    assert set(CONTEXT_FIELDS + END_FIELDS) <= set(succeeded)
    assert (succeeded["error"], succeeded["cause"], succeeded["queue"], succeeded["attempt"]) == (
        None,
        None,
        None,
        1,
    )


def test_the_end_line_costs_nothing_below_its_level(json_log: Captured) -> None:
    json_log.logger.setLevel(logging.WARNING)
    log_end(json_log.logger, {"execution_id": "E", "status": "SUCCEEDED"})
    assert json_log.lines() == []


def test_text_lines_name_the_execution_at_the_end_of_their_first_line(text_log: Captured) -> None:
    with execution_context(**CONTEXT):
        log_end(text_log.logger, {"status": "SUCCEEDED", "duration_ms": 12})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            text_log.logger.exception("it broke")
    text_log.logger.info("no execution here")
    lines = text_log.lines()
    suffix = f"[orders/ord-7 {CONTEXT['execution_id']} state=ChargeCard attempt=2 queue=critical]"
    assert lines[0].endswith(f"INFO smq.test.logs.{id(text_log)}: execution SUCCEEDED after 12 ms {suffix}")
    assert lines[1].endswith(f"it broke {suffix}")
    assert lines[2] == "Traceback (most recent call last):" and lines[-2].endswith("RuntimeError: boom")
    assert lines[-1].endswith(": no execution here")


def test_exceptions_are_one_field_of_one_json_line(json_log: Captured) -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        json_log.logger.exception("failed")
    (line,) = json_log.lines()
    entry = json.loads(line)
    assert entry["message"] == "failed" and "ValueError: bad\nvalue" in entry["exc_info"]


field_values = st.one_of(st.none(), st.integers(), st.text(), st.floats(allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(
    message=st.text(),
    args=st.lists(st.text() | st.integers(), max_size=3),
    fields=st.fixed_dictionaries(
        {}, optional={key: field_values for key in CONTEXT_FIELDS if key != "execution_id"}
    ),
)
def test_any_message_and_fields_make_exactly_one_parseable_json_line(
    message: str, args: list[object], fields: dict[str, object]
) -> None:
    """Newlines, quotes, control characters, lone surrogates, any field value: one line, parsed back."""
    captured = Captured(JsonFormatter())
    try:
        with execution_context(execution_id="E", **fields):
            captured.logger.warning("%s" + " %s" * len(args), message, *args)
        lines = captured.stream.getvalue().split("\n")
    finally:
        captured.close()
    assert len(lines) == 2 and lines[1] == ""
    entry = json.loads(lines[0])
    assert entry["message"] == " ".join(str(part) for part in [message, *args])
    assert entry["execution_id"] == "E" and set(CONTEXT_FIELDS) <= set(entry)
    for key, value in fields.items():
        if value is not None:
            assert entry[key] == value


def test_celerys_handlers_are_formatted_once() -> None:
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    format_handler(handler, "text")
    format_handler(handler, "text")  # a pool child sets logging up again
    assert isinstance(handler.formatter, TextFormatter) and len(handler.filters) == 1
    record = logging.LogRecord("celery", logging.INFO, __file__, 1, "received", None, None)
    with execution_context(**CONTEXT):
        handler.filter(record)
    assert handler.format(record).startswith("[INFO] received [orders/ord-7 ")
    other = logging.StreamHandler(io.StringIO())
    format_handler(other, "json")
    assert isinstance(other.formatter, JsonFormatter)


def test_configure_logging_leaves_a_program_s_own_logging_alone(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        root.handlers = []
        configure_logging("json", logging.INFO)
        configure_logging("json", logging.WARNING)  # again: the same handler, another level
        assert len(root.handlers) == 1 and root.level == logging.WARNING
        with execution_context(**CONTEXT):
            logging.getLogger("smq.test").warning("careful")
        entry = json.loads(capsys.readouterr().err)
        assert entry["message"] == "careful" and entry["execution_name"] == "ord-7"
        own = logging.NullHandler()
        root.handlers = [own]
        configure_logging("text", logging.DEBUG)
        assert root.handlers == [own] and root.level == logging.WARNING
    finally:
        root.handlers, root.level = saved_handlers, saved_level


def test_log_format_setting() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"SMQ_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(SettingsError, match="SMQ_LOG_FORMAT must be 'text' or 'json', got 'yaml'"):
        Settings.from_env({"SMQ_LOG_FORMAT": "yaml"})


def test_a_delivery_learns_which_execution_its_run_was_and_where_it_stood() -> None:
    with execution_context(state_machine_id="orders", execution_name="ord-1", attempt=2) as delivery:
        with pytest.raises(RuntimeError), execution_run(execution_id="E1", state="A") as run:
            run["state"] = "ChargeCard"
            raise RuntimeError("the database went away")
        assert (delivery["execution_id"], delivery["state"]) == ("E1", "ChargeCard")
        with execution_context(execution_id="OTHER") as other, execution_run(execution_id="E2", state="B"):
            pass
        assert (other["execution_id"], other["state"]) == ("OTHER", "ChargeCard")  # not E2's "B"
