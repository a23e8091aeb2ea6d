"""The pure wait engine: what each poll means, how a wait ends, and which events are trusted."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_dataqc.core.status import ResourceStatus
from airflow_provider_dataqc.core.wait import (
    EVENT_ERROR,
    EVENT_FAILED,
    EVENT_SUCCESS,
    EVENT_TIMEOUT,
    Finish,
    InvalidEventError,
    Keep,
    Level,
    PollError,
    ResourceStatusRules,
    Wait,
    read_event,
)


def status(value: str, file_status: str | None = None, **extra: Any) -> ResourceStatus:
    payload = {"status": value, "resource_id": "r-1", **extra}
    if file_status:
        payload["file_status"] = file_status
    return ResourceStatus.from_api(payload, request_id="req-1")


RULES = ResourceStatusRules("r-1")
TRANSIENT = PollError("DataArts Quality status call failed: HTTP 503", transient=True, status_code=503)
PERMANENT = PollError("DataArts Quality status call failed: HTTP 403", status_code=403, error_code="DQC.0403")


def test_success_and_failure_end_the_wait_with_their_record() -> None:
    done = Wait(RULES, result={"kept": 1}).on_answer(status("SUCCESS"))
    assert isinstance(done, Finish) and done.kind == EVENT_SUCCESS and done.level is Level.INFO
    assert done.event["resource_id"] == "r-1" and done.event["record"]["status"] == "SUCCESS"
    assert done.event["result"] == {"kept": 1}
    failed = Wait(RULES).on_answer(status("FAILED", error_msg="boom"))
    assert isinstance(failed, Finish) and failed.kind == EVENT_FAILED and failed.level is Level.ERROR
    assert "boom" in failed.event["message"] and "result" not in failed.event


def test_waiting_states_keep_going_quietly_only_when_asked() -> None:
    loud = Wait(RULES)
    assert [loud.on_answer(status("RUNNING")).level for _ in range(3)] == [Level.INFO] * 3  # type: ignore[union-attr]
    clock = [0.0]
    quiet = Wait(RULES, quiet=True, clock=lambda: clock[0])
    levels = [quiet.on_answer(status("RUNNING")).level for _ in range(3)]  # type: ignore[union-attr]
    assert levels == [Level.INFO, Level.DEBUG, Level.DEBUG]
    assert quiet.on_answer(status("WAITING")).level is Level.INFO  # type: ignore[union-attr]  # a change
    clock[0] = Wait.INFO_EVERY_SECONDS
    assert quiet.on_answer(status("WAITING")).level is Level.INFO  # type: ignore[union-attr]  # a reminder
    odd = quiet.on_answer(status("PAUSED"))
    assert isinstance(odd, Keep) and odd.level is Level.WARNING and "undocumented" in odd.message


def test_transient_errors_are_tolerated_until_the_budget_and_an_answer_resets_it() -> None:
    wait = Wait(RULES, max_consecutive_errors=3, poll_interval=5)
    first = wait.on_error(TRANSIENT)
    assert isinstance(first, Keep) and first.level is Level.WARNING
    assert "Poll 1/3" in first.message and "polling again in 5s" in first.message
    assert isinstance(wait.on_error(TRANSIENT), Keep)
    wait.on_answer(status("RUNNING"))
    assert wait.errors == 0
    assert isinstance(wait.on_error(TRANSIENT), Keep) and isinstance(wait.on_error(TRANSIENT), Keep)
    last = wait.on_error(TRANSIENT)
    assert isinstance(last, Finish) and last.kind == EVENT_ERROR
    assert last.event["message"].startswith("gave up after 3 failed polls in a row: ")
    assert last.event["error"] == {
        "status_code": 503,
        "error_code": None,
        "error_msg": None,
        "request_id": None,
        "transient": True,
    }


def test_permanent_errors_end_the_wait_at_once_and_earlier_errors_count() -> None:
    ended = Wait(RULES).on_error(PERMANENT)
    assert isinstance(ended, Finish) and ended.kind == EVENT_ERROR and "gave up" not in ended.event["message"]
    assert ended.event["error"]["error_code"] == "DQC.0403"
    carried = Wait(RULES, max_consecutive_errors=3, consecutive_errors=2).on_error(TRANSIENT)
    assert isinstance(carried, Finish) and "3 failed polls" in carried.event["message"]
    assert "at the next interval" in Wait(RULES).on_error(TRANSIENT).message  # type: ignore[union-attr]


def test_the_deadline_names_the_last_state_seen_when_it_is_kept() -> None:
    wait = Wait(ResourceStatusRules("r-1", wait_for_file=True))
    wait.on_answer(status("SUCCESS", "PREPARING"))
    ended = wait.on_deadline()
    assert ended.kind == EVENT_TIMEOUT and ended.event["record"]["file_status"] == "PREPARING"
    assert "last seen: status=SUCCESS, file_status=PREPARING" in ended.event["message"]
    forgetful = Wait(RULES, keep_last=False)
    forgetful.on_answer(status("RUNNING"))
    assert forgetful.on_deadline("it did not finish within 3s").event["record"] is None


def test_fatal_errors_end_the_wait_whatever_the_count() -> None:
    ended = Wait(RULES, max_consecutive_errors=5).on_fatal(PollError("connection 'x' is not usable", transient=True))
    assert ended.kind == EVENT_ERROR and ended.event["error"]["transient"] is True


def test_poll_error_reads_any_exception() -> None:
    assert PollError.of(RuntimeError()).message == "RuntimeError"
    assert PollError.of(ValueError("bad")).transient is False


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        (None, "unexpected trigger event"),
        ({"status": "maybe"}, "unexpected trigger event"),
        ({"status": "success", "resource_id": "other", "record": {"status": "SUCCESS"}}, "not for"),
        ({"status": "success", "resource_id": "r-1", "record": "junk"}, "without a usable record"),
        ({"status": "success", "resource_id": "r-1", "record": {"status": "RUNNING"}}, "does not match"),
        ({"status": "failed", "resource_id": "r-1", "record": {"status": "SUCCESS"}}, "does not match"),
    ],
)
def test_events_that_cannot_be_trusted_are_refused(event: Any, problem: str) -> None:
    with pytest.raises(InvalidEventError, match=problem):
        read_event(event, RULES)


def test_events_the_engine_made_are_read_back_the_same() -> None:
    wait = Wait(RULES, result="r-1")
    for made in (
        wait.on_answer(status("SUCCESS")),
        wait.on_answer(status("TIMEOUT", error_msg="too slow")),
        wait.on_error(PERMANENT),
        wait.on_deadline(),
    ):
        assert isinstance(made, Finish)
        checked = read_event(made.event, RULES)
        assert checked.kind == made.kind and checked.message == made.event["message"]
    ok = read_event(wait.on_answer(status("SUCCESS")).event, RULES)  # type: ignore[union-attr]
    assert ok.result == "r-1" and ok.judged is not None and ok.record["status"] == "SUCCESS"  # type: ignore[index]


THROTTLED = PollError("DataArts Quality status call failed: HTTP 429; error_code=APIGW.0308", status_code=429)


def test_throttling_never_counts_as_a_failed_poll_and_the_deadline_says_how_often() -> None:
    wait = Wait(RULES, max_consecutive_errors=2)
    for n in range(1, 11):
        step = wait.on_error(THROTTLED)
        assert isinstance(step, Keep) and step.level is Level.WARNING and f"{n} time(s)" in step.message
    assert wait.errors == 0
    assert isinstance(wait.on_error(TRANSIENT), Keep)  # the budget of real failures is intact
    gateway_code = PollError("throttled", status_code=None, error_code="APIGW.0308")
    assert gateway_code.throttled and not TRANSIENT.throttled
    ended = wait.on_deadline()
    assert (
        ended.kind == EVENT_TIMEOUT
        and "throttled by DataArts Quality's flow control 10 time(s)" in ended.event["message"]
    )


def test_a_stretched_poll_interval_is_told_once() -> None:
    wait = Wait(RULES, poll_interval=5)
    assert wait.note_poll(0.0) is None and wait.note_poll(5.2) is None  # on time
    told = wait.note_poll(20.0)
    assert told is not None and "14.8s apart, not every 5s" in told and "rate_limit" in told
    assert wait.note_poll(60.0) is None  # once per wait
    assert Wait(RULES).note_poll(0.0) is None and Wait(RULES).note_poll(100.0) is None  # no interval: silent


def test_the_first_trigger_poll_comes_within_the_interval_never_at_once() -> None:
    from airflow_provider_dataqc.core.wait import first_poll_delay

    delays = [first_poll_delay(10) for _ in range(200)]
    assert all(5 <= d <= 10 for d in delays) and len({round(d, 3) for d in delays}) > 100  # spread
    assert first_poll_delay(0) == 0


def test_the_first_trigger_poll_never_comes_before_the_floor() -> None:
    from airflow_provider_dataqc.core.wait import first_poll_delay

    assert all(first_poll_delay(1, not_before=6) == 6 for _ in range(50))  # short interval: the floor
    assert all(10 <= first_poll_delay(20, not_before=6) <= 20 for _ in range(50))  # long interval: its own spread
    assert first_poll_delay(1, not_before=-3) <= 1  # a negative floor is none
