"""Bad answers: 200s that are not a status record, error answers with odd bodies, and unusual
but valid status records, read the same by the sync hook and the async client.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from airflow_provider_dataqc.hooks.dataqc import DataQCApiError

from .support import MODES, STATUS_PATH_R1, fetch_status, set_connection


def answer_once(server: HTTPServer, body: Any, status: int = 200, path: str | None = None, **headers: str) -> None:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers.setdefault("X-Request-Id", "req-abc")
    server.expect_oneshot_request(path or STATUS_PATH_R1).respond_with_response(
        Response(raw, status=status, headers=headers)
    )


@pytest.fixture
def served(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    set_connection(monkeypatch, httpserver.url_for("/").rstrip("/"), max_retries=0)
    return httpserver


BAD_ANSWERS: list[tuple[str, Any, list[str]]] = [
    ("html-maintenance", "<html><body><h1>Maintenance</h1> back at 10:00</body></html>", ["not JSON", "Maintenance"]),
    ("json-array", "[1, 2, 3]", ["list, not an object"]),
    ("json-null", "null", ["NoneType, not an object"]),
    ("json-string-success", '"SUCCESS"', ["str, not an object"]),
    ("json-number", "200", ["int, not an object"]),
    ("empty", "", ["empty"]),
    ("blank", "  \r\n ", ["empty"]),
    ("not-utf8", b"\xff\xfe\x00garbage\x81", ["not valid UTF-8"]),
    ("no-status", {"resource_id": "r-1"}, ["no 'status'"]),
    ("status-number", {"status": 2}, ["not a non-empty string"]),
    ("status-bool", {"status": True}, ["not a non-empty string"]),
    ("status-list", {"status": ["SUCCESS"]}, ["not a non-empty string"]),
    ("status-object", {"status": {"value": "SUCCESS"}}, ["not a non-empty string"]),
    ("status-blank", {"status": "  "}, ["not a non-empty string"]),
    ("null-everywhere", dict.fromkeys(("status", "resource_id", "file_status", "error_msg")), ["no 'status'"]),
    ("error-code-200", {"error_code": "DQC.1002", "error_msg": "internal"}, ["error_code=DQC.1002", "an error"]),
    (
        "success-with-error-code",
        {"status": "SUCCESS", "error_code": "DQC.9999", "error_msg": "half done"},
        ["error_code=DQC.9999", "half done"],
    ),
    ("deep-nesting", "[" * 100_000 + "]" * 100_000, ["not JSON"]),
    ("truncated-json", '{"status": "SUCC', ["not JSON"]),
    ("huge", "x" * (6 * 1024 * 1024), ["larger than the client reads"]),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("case", "body", "fragments"), BAD_ANSWERS, ids=[case for case, _, _ in BAD_ANSWERS])
def test_bad_200_answers_become_clear_errors_never_a_success(
    served: HTTPServer, mode: str, case: str, body: Any, fragments: list[str]
) -> None:
    answer_once(served, body, 200, **{"Content-Type": "text/html" if case.startswith("html") else "application/json"})
    with pytest.raises(DataQCApiError) as caught:
        fetch_status(mode, "r-1")
    error = caught.value
    message = str(error)
    for fragment in [*fragments, "HTTP 200", "req-abc"]:
        assert fragment in message, (fragment, message)
    assert error.status_code == 200 and error.request_id == "req-abc"
    assert error.transient  # waits poll again; a call never retries a 2xx
    assert len(message) < 700 and "<html>" not in message and "<h1>" not in message  # a short, tag-free excerpt
    assert not any(ord(ch) < 32 for ch in message)
    assert len(served.log) == 1


ERROR_ANSWERS: list[tuple[int, Any, list[str], bool]] = [
    (500, "<html><head><title>500</title></head><body>Internal</body></html>", ["HTTP 500", "Internal"], True),
    (503, "", ["HTTP 503", "empty"], True),
    (404, b"\xff\xfe not utf-8", ["HTTP 404", "not valid UTF-8"], False),
    (403, {"error": {"code": "APIGW.0302", "message": "forbidden by policy"}}, ["APIGW.0302", "forbidden"], False),
    (400, {"error_code": None, "error_msg": None}, ["HTTP 400"], False),
    (401, "[]", ["HTTP 401"], False),
    (302, "", ["HTTP 302"], False),
    (418, {"error_code": "X", "error_msg": "x" * 5000}, ["HTTP 418", "error_code=X"], False),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("status", "body", "fragments", "transient"), ERROR_ANSWERS)
def test_error_answers_with_odd_bodies_name_the_status(
    served: HTTPServer, mode: str, status: int, body: Any, fragments: list[str], transient: bool
) -> None:
    headers = {"Location": "https://login.example.com/"} if status == 302 else {}
    answer_once(served, body, status, **headers)
    with pytest.raises(DataQCApiError) as caught:
        fetch_status(mode, "r-1")
    for fragment in [*fragments, "req-abc"]:
        assert fragment in str(caught.value)
    assert caught.value.status_code == status and caught.value.transient is transient
    assert len(served.log) == 1  # max_retries=0; a redirect is not followed


UNUSUAL_BUT_VALID: list[tuple[Any, str, dict[str, Any]]] = [
    ({"status": "QUEUED", "file_status": "ARCHIVED", "new_field": {"x": 1}}, "QUEUED", {"file_status": "ARCHIVED"}),
    ({"status": "success", "file_status": "generated"}, "SUCCESS", {"file_status": "generated"}),
    ({"status": " RUNNING "}, "RUNNING", {}),
    ({"status": "SUCCESS", "error_code": "DQC.0000", "error_msg": "ok"}, "SUCCESS", {}),
    ({"status": "SUCCESS", "error_code": "", "error_msg": None}, "SUCCESS", {}),
    ({"status": "FAILED", "error_msg": 42, "start_time": 1_700_000_000_000}, "FAILED", {"error_msg": "42"}),
    ({"status": "RUNNING", "start_time": "not a time", "end_time": [1]}, "RUNNING", {"start_time": None}),
    ({"status": "WAITING", "resource_id": 12345, "id": None}, "WAITING", {"resource_id": "12345", "id": None}),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("body", "status", "fields"), UNUSUAL_BUT_VALID)
def test_unusual_but_valid_status_answers_are_read_not_guessed(
    served: HTTPServer, mode: str, body: Any, status: str, fields: dict[str, Any]
) -> None:
    answer_once(served, body, 200)
    record = fetch_status(mode, "r-1")
    assert record.status == status
    for name, value in fields.items():
        assert getattr(record, name) == value
    assert record.is_success == (status == "SUCCESS")
    assert record.to_dict()["status"] == status  # the XCom record stays serialisable
    json.dumps(record.to_dict())
