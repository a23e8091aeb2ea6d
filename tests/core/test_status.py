"""The status record: parsing, time formats, verdicts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from airflow_provider_dataqc.core.status import (
    API_FIELDS,
    Outcome,
    ResourceStatus,
    StatusPayloadError,
    assess,
    parse_service_time,
)

FULL = {
    "id": "rec-1",
    "resource_id": "r-1",
    "resource_type": "QUALITY_TASK",
    "action": "EXPORT",
    "file_name": "quality_task.zip",
    "start_time": "1704164645000",
    "end_time": 1704164705000,
    "status": "SUCCESS",
    "error_msg": "",
    "project_id": "p",
    "domain_id": "d",
    "user_name": "u",
    "export_resources": "[1,2]",
    "import_body": None,
    "file_status": "GENERATED",
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1704164645000, datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("1704164645000", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (1704164645, datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05.855000Z", datetime(2024, 1, 2, 3, 4, 5, 855000, tzinfo=UTC)),
        ("2024-01-02T11:04:05+08:00", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02 03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_service_times_in_every_plausible_form(value: object, expected: datetime) -> None:
    parsed = parse_service_time(value)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is not None


@pytest.mark.parametrize("value", [None, "", "  ", "yesterday", "2024-13-45 99:99:99", [], {}, True, -5, "0"])
def test_unparseable_times_are_none_not_errors(value: object) -> None:
    assert parse_service_time(value) is None


def test_every_documented_field_is_kept_and_times_parsed() -> None:
    status = ResourceStatus.from_api(FULL, request_id="req-9")
    for name in API_FIELDS:
        if name not in {"start_time", "end_time", "error_msg", "import_body"}:
            assert getattr(status, name) == str(FULL[name])
    assert status.error_msg is None  # blank is no message
    assert status.start_time == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert status.start_time_raw == "1704164645000" and status.end_time_raw == 1704164705000
    assert status.raw == FULL and status.request_id == "req-9"
    assert status.is_terminal and status.is_success and not status.is_failure and status.is_file_ready
    record = status.to_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["start_time"] == "2024-01-02T03:04:05+00:00" and record["request_id"] == "req-9"


def test_status_record_is_immutable() -> None:
    status = ResourceStatus.from_api(FULL)
    with pytest.raises(AttributeError):
        status.status = "FAILED"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ([], "expected a JSON object"),
        ("SUCCESS", "expected a JSON object"),
        ({}, "no 'status'"),
        ({"status": None}, "no 'status'"),
        ({"status": 3}, "not a non-empty string"),
        ({"status": ""}, "not a non-empty string"),
        ({"status": {"value": "SUCCESS"}}, "not a non-empty string"),
    ],
)
def test_answers_without_a_usable_status_are_refused(payload: object, problem: str) -> None:
    with pytest.raises(StatusPayloadError, match=problem):
        ResourceStatus.from_api(payload)


def test_null_and_mistyped_fields_do_not_crash() -> None:
    payload = {name: None for name in API_FIELDS} | {"status": "RUNNING", "resource_id": 42, "file_name": ["x"]}
    status = ResourceStatus.from_api(payload)
    assert status.resource_id == "42" and status.file_name is None and status.start_time is None
    assert assess(status).outcome is Outcome.WAIT


def test_unknown_status_is_kept_and_keeps_waiting_with_a_flag() -> None:
    status = ResourceStatus.from_api({"status": "PAUSED", "resource_id": "r"})
    assert status.status == "PAUSED" and not status.is_known_status and not status.is_terminal
    verdict = assess(status)
    assert verdict.outcome is Outcome.WAIT and verdict.unknown_status and "PAUSED" in verdict.message


@pytest.mark.parametrize("state", ["FAILED", "TIMEOUT"])
def test_failures_name_error_msg_and_request_id(state: str) -> None:
    status = ResourceStatus.from_api(
        {"status": state, "resource_id": "r-7", "error_msg": "rule null_check broken"}, request_id="rq-1"
    )
    verdict = assess(status)
    assert verdict.outcome is Outcome.FAILED
    for text in (state, "r-7", "rule null_check broken", "rq-1"):
        assert text in verdict.message


@pytest.mark.parametrize(
    ("file_status", "outcome"),
    [
        ("GENERATED", Outcome.SUCCESS),
        ("PREPARING", Outcome.WAIT),
        (None, Outcome.WAIT),
        ("FAILED", Outcome.FAILED),
        ("DELETED", Outcome.FAILED),
    ],
)
def test_wait_for_file(file_status: str | None, outcome: Outcome) -> None:
    status = ResourceStatus.from_api({"status": "SUCCESS", "file_status": file_status})
    assert assess(status, wait_for_file=True).outcome is outcome
    assert assess(status, wait_for_file=False).outcome is Outcome.SUCCESS


def test_running_message_says_how_long() -> None:
    status = ResourceStatus.from_api({"status": "RUNNING", "start_time": "2024-01-02 03:04:05"})
    message = assess(status).message
    assert "RUNNING" in message and "running for" in message
