"""DataQCHook against hand-written answers (pytest-httpserver on 127.0.0.1):
bad answers, error bodies, retries and what is never repeated."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_provider_dataqc.hooks.dataqc import DataQCApiError, DataQCHook

PROJECT = "0123456789abcdef0123456789abcdef"
STATUS_PATH = f"/v2/{PROJECT}/quality/resource/status/r-1"
EXPORT_PATH = f"/v2/{PROJECT}/quality/resource/export"


@pytest.fixture
def hook(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> DataQCHook:
    conn = {
        "conn_type": "dataqc",
        "host": httpserver.url_for("/").rstrip("/"),
        "password": "tok-123",
        "extra": {"project_id": PROJECT, "workspace": "ws-1", "backoff_factor": 0.001, "max_retries": 2},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", json.dumps(conn))
    return DataQCHook()


def answer(httpserver: HTTPServer, body: Any, status: int = 200, path: str = STATUS_PATH, **headers: str) -> None:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers.setdefault("X-Request-Id", "req-abc")
    httpserver.expect_oneshot_request(path).respond_with_response(Response(raw, status=status, headers=headers))


def test_status_call_sends_the_documented_headers(hook: DataQCHook, httpserver: HTTPServer) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response(json.dumps({"status": "RUNNING", "resource_id": "r-1"}), headers={"X-Request-Id": "q"})

    httpserver.expect_request(STATUS_PATH, method="GET").respond_with_handler(handler)
    status = hook.get_resource_status("r-1")
    assert status.status == "RUNNING" and status.request_id == "q"
    headers = seen[0].headers
    assert headers["workspace"] == "ws-1" and headers["X-Project-Id"] == PROJECT
    assert headers["X-Auth-Token"] == "tok-123" and headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("airflow-provider-dataqc/")


def test_workspace_argument_overrides_the_connection(hook: DataQCHook, httpserver: HTTPServer) -> None:
    httpserver.expect_request(STATUS_PATH, headers={"workspace": "ws-other"}).respond_with_json({"status": "SUCCESS"})
    assert hook.get_resource_status("r-1", workspace="ws-other").is_success


@pytest.mark.parametrize(
    ("body", "status", "fragments"),
    [
        ("<html><body><h1>Maintenance</h1> back at 10:00</body></html>", 200, ["not JSON", "Maintenance"]),
        ("[1, 2, 3]", 200, ["list, not an object"]),
        ("", 200, ["empty"]),
        (b"\xff\xfe\x00garbage", 200, ["not valid UTF-8"]),
        ({"resource_id": "r-1"}, 200, ["no 'status'"]),
        ({"status": 2}, 200, ["not a non-empty string"]),
        ({"status": None, "resource_id": None}, 200, ["no 'status'"]),
        ({"error_code": "DQC.1002", "error_msg": "internal"}, 200, ["error_code=DQC.1002", "carries an error"]),
        (
            {"error_code": "DQC.0404", "error_msg": "The resource does not exist"},
            404,
            ["HTTP 404", "DQC.0404", "The resource does not exist"],
        ),
        ({"error_code": "APIGW.0101", "error_msg": "The API does not exist"}, 404, ["APIGW.0101"]),
        (
            {"error": {"code": "APIGW.0301", "message": "Incorrect IAM authentication information"}},
            401,
            ["HTTP 401", "APIGW.0301", "Incorrect IAM"],
        ),
        ("<html>Forbidden</html>", 403, ["HTTP 403", "not JSON", "Forbidden"]),
    ],
)
def test_bad_answers_become_clear_errors(
    hook: DataQCHook, httpserver: HTTPServer, body: Any, status: int, fragments: list[str]
) -> None:
    answer(httpserver, body, status)
    with pytest.raises(DataQCApiError) as caught:
        hook.get_resource_status("r-1")
    message = str(caught.value)
    for fragment in [*fragments, "req-abc"]:
        assert fragment in message
    assert caught.value.request_id == "req-abc"
    assert caught.value.status_code == status
    # A 2xx that is not a usable answer (a gateway's maintenance page...) may go away
    # for a long wait to poll again; 4xx answers never do.
    assert caught.value.transient == (status == 200)


def test_huge_bodies_are_cut_and_quoted_briefly(hook: DataQCHook, httpserver: HTTPServer) -> None:
    answer(httpserver, "x" * (6 * 1024 * 1024))
    with pytest.raises(DataQCApiError, match="larger than the client reads") as caught:
        hook.get_resource_status("r-1")
    assert len(str(caught.value)) < 600


def test_unknown_fields_and_enum_values_are_kept(hook: DataQCHook, httpserver: HTTPServer) -> None:
    answer(httpserver, {"status": "QUEUED", "file_status": "ARCHIVED", "brand_new": {"x": 1}})
    status = hook.get_resource_status("r-1")
    assert status.status == "QUEUED" and status.file_status == "ARCHIVED" and status.raw["brand_new"] == {"x": 1}


def test_transient_answers_are_retried_then_succeed(hook: DataQCHook, httpserver: HTTPServer, task_logs: Any) -> None:
    answer(httpserver, "<html>bad gateway</html>", 502)
    answer(httpserver, {"status": "throttled"}, 429, **{"Retry-After": "0"})
    answer(httpserver, {"status": "SUCCESS"}, 200)
    assert hook.get_resource_status("r-1").is_success
    retries = {line[line.index("attempt") :] for line in task_logs.lines("warning") if "retrying in" in line}
    assert len(retries) == 2, retries
    first, second = sorted(retries)
    assert "attempt 1/3" in first and "HTTP 502" in first and "req-abc" in first
    assert "attempt 2/3" in second and "HTTP 429" in second


def test_retries_are_bounded(hook: DataQCHook, httpserver: HTTPServer) -> None:
    for _ in range(5):
        answer(httpserver, {"error_code": "DQC.5000", "error_msg": "busy"}, 503)
    with pytest.raises(DataQCApiError, match="HTTP 503") as caught:
        hook.get_resource_status("r-1")
    assert caught.value.transient and caught.value.error_msg == "busy"
    assert len(httpserver.log) == 3  # one call and max_retries=2 retries


def test_permanent_errors_are_not_retried(hook: DataQCHook, httpserver: HTTPServer) -> None:
    answer(httpserver, {"error_code": "DQC.0403", "error_msg": "no permission"}, 403)
    with pytest.raises(DataQCApiError):
        hook.get_resource_status("r-1")
    assert len(httpserver.log) == 1


def test_an_export_is_not_repeated_after_a_5xx(hook: DataQCHook, httpserver: HTTPServer) -> None:
    answer(httpserver, {"error_code": "DQC.5000", "error_msg": "oops"}, 500, path=EXPORT_PATH)
    answer(httpserver, {"resource_id": "second-export"}, 200, path=EXPORT_PATH)
    with pytest.raises(DataQCApiError, match="HTTP 500"):
        hook.export_resources("quality-task", resources=[1])
    assert len(httpserver.log) == 1


def test_an_export_is_repeated_after_a_429(hook: DataQCHook, httpserver: HTTPServer) -> None:
    answer(
        httpserver,
        {"error_code": "APIGW.0308", "error_msg": "throttled"},
        429,
        path=EXPORT_PATH,
        **{"Retry-After": "0"},
    )
    answer(httpserver, {"resource_id": "exp-2"}, 200, path=EXPORT_PATH)
    assert hook.export_resources("quality-task", resources=[1]) == "exp-2"
    assert len(httpserver.log) == 2


def test_connection_refused_is_retried_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = {
        "conn_type": "dataqc",
        "host": f"http://127.0.0.1:{port}",
        "password": "t",
        "extra": {"project_id": PROJECT, "workspace": "w", "max_retries": 1, "backoff_factor": 0.001},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", json.dumps(conn))
    with pytest.raises(DataQCApiError, match="connection error") as caught:
        DataQCHook().get_resource_status("r-1")
    assert caught.value.transient and caught.value.status_code is None


def test_read_timeout_is_reported(hook: DataQCHook, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    conn = json.loads(__import__("os").environ["AIRFLOW_CONN_DATAQC_DEFAULT"])
    conn["extra"].update({"timeout": 0.2, "max_retries": 0})
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", json.dumps(conn))

    def slow(request: Request) -> Response:
        time.sleep(0.6)
        return Response("{}")

    httpserver.expect_request(STATUS_PATH).respond_with_handler(slow)
    with pytest.raises(DataQCApiError, match="read timeout") as caught:
        DataQCHook().get_resource_status("r-1")
    assert caught.value.transient


def test_bad_input_fails_before_any_request(hook: DataQCHook, httpserver: HTTPServer) -> None:
    for bad in ("", "  ", "..", "a\x00b", "x" * 10_000):
        with pytest.raises(DataQCApiError, match="resource_id"):
            hook.get_resource_status(bad)
    with pytest.raises(DataQCApiError, match="workspace"):
        hook.get_resource_status("r-1", workspace="ws/../admin")
    with pytest.raises(DataQCApiError, match="does not exist"):
        hook.upload_resource_file("quality-task", "/nonexistent/file.zip")
    with pytest.raises(DataQCApiError, match="obs_type"):
        hook.download_resource_file("r-1", "/tmp/x.zip", obs_type="cloud")
    assert len(httpserver.log) == 0


def test_no_network_and_no_connection_lookup_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_DATAQC_DEFAULT", raising=False)
    hook = DataQCHook("does_not_exist", workspace="ws")
    assert "does_not_exist" in repr(hook)


def test_error_survives_pickling() -> None:
    import pickle

    error = DataQCApiError("boom", status_code=500, error_code="DQC.1", error_msg="m", request_id="r", transient=True)
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.status_code, clone.error_code, clone.error_msg, clone.request_id, clone.transient) == (
        500,
        "DQC.1",
        "m",
        "r",
        True,
    )
    assert str(clone) == "boom"
