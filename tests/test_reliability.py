"""Reliability and safety: the retry policy, waits that outlast transient errors, bad
answers, bad input and transport safety, for the sync hook and the async trigger alike.

Every case runs real HTTP on 127.0.0.1: the emulator (faults, scripted answers) or
pytest-httpserver (hand-written answers, TLS). ``docs/reliability.md`` names these tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from airflow_provider_dataqc.core import api
from airflow_provider_dataqc.core.calls import (
    Answer,
    Exclusive,
    NoAnswer,
    Send,
    Sleep,
    call,
    is_retryable,
    is_transient,
    retry_wait,
)
from airflow_provider_dataqc.core.errors import CallFailure, parse_retry_after
from airflow_provider_dataqc.core.settings import (
    AuthType,
    ConnectionSettings,
    InvalidSettingError,
    RetrySettings,
)
from airflow_provider_dataqc.hooks.dataqc import DataQCApiError, DataQCHook
from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor
from airflow_provider_dataqc.testing.emulator import (
    DEFAULT_PROJECT_ID,
    DEFAULT_TOKEN,
    DEFAULT_USER,
    Emulator,
    FaultPlan,
)
from airflow_provider_dataqc.triggers.dataqc import AsyncDataQCClient, DataQCResourceStatusTrigger

PROJECT = DEFAULT_PROJECT_ID
STATUS_PREFIX = f"/v2/{PROJECT}/quality/resource/status/"
LOG = logging.getLogger("airflow_provider_dataqc.tests.reliability")
MODES = ("sync", "async")


# ------------------------------------------------------------------------------------------- helpers
def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def set_connection(monkeypatch: pytest.MonkeyPatch, host: str, conn_id: str = "dataqc_default", **extra: Any) -> str:
    """A token connection to ``host`` (an emulator or pytest-httpserver URL)."""
    settings: dict[str, Any] = {"project_id": PROJECT, "workspace": "ws-dev", "backoff_factor": 0.001}
    settings.update(extra)
    conn = {"conn_type": "dataqc", "host": host, "password": DEFAULT_TOKEN, "extra": settings}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


async def _async_status(conn_id: str, resource_id: Any, workspace: str | None) -> Any:
    async with AsyncDataQCClient(conn_id, log=LOG) as client:
        return await client.get_resource_status(resource_id, workspace=workspace)


def fetch_status(mode: str, resource_id: Any, *, conn_id: str = "dataqc_default", workspace: str | None = None) -> Any:
    """One status call through the sync hook or the trigger's async client."""
    if mode == "sync":
        return DataQCHook(conn_id).get_resource_status(resource_id, workspace=workspace)
    return asyncio.run(_async_status(conn_id, resource_id, workspace))


def run_trigger(trigger: DataQCResourceStatusTrigger, limit: float = 60.0) -> dict[str, Any]:
    """The one event a trigger yields (within ``limit`` seconds)."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(first(), limit)

    return asyncio.run(bounded())


def make_sensor(resource_id: str, **kwargs: Any) -> DataQCResourceStatusSensor:
    return DataQCResourceStatusSensor(task_id=unique("wait"), resource_id=resource_id, poke_interval=0, **kwargs)


def poke_until_done(sensor: DataQCResourceStatusSensor, limit: int = 50) -> tuple[int, Any]:
    """Poke like the sensor's poke loop does: ``(pokes, xcom value)``; exceptions propagate."""
    for pokes in range(1, limit + 1):
        result = sensor.poke({})
        if result:
            return pokes, getattr(result, "xcom_value", result)
    raise AssertionError(f"no result after {limit} pokes")


def distinct_lines(
    task_logs: Any, level: str, needle: str, key: str = r"(?:attempt|Poll) \d+/\d+.*?X-Request-Id=\w+"
) -> list[str]:
    """Lines at ``level`` containing ``needle``, one per distinct message (``key`` picks what makes
    it distinct): a message can be captured twice, printed by Airflow's handler and as a record."""
    found: dict[str, str] = {}
    for line in task_logs.lines(level):
        if needle in line:
            match = re.search(key, line)
            found.setdefault(match.group(0) if match else line, line)
    return list(found.values())


def answer_once(server: HTTPServer, body: Any, status: int = 200, path: str | None = None, **headers: str) -> None:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers.setdefault("X-Request-Id", "req-abc")
    server.expect_oneshot_request(path or STATUS_PATH_R1).respond_with_response(
        Response(raw, status=status, headers=headers)
    )


STATUS_PATH_R1 = STATUS_PREFIX + "r-1"


def policy_settings(**retry: Any) -> ConnectionSettings:
    return ConnectionSettings(
        endpoint="https://dayu.example.com",
        project_id=PROJECT,
        auth_type=AuthType.TOKEN,
        workspace="ws-dev",
        secret="t",
        retry=RetrySettings(**retry),
    )


def drive(plan: Any, replies: Callable[[Send], Any], clock: list[float]) -> tuple[Any, list[Any]]:
    """Run a call plan with a fake clock: ``(outcome, actions)``."""
    actions: list[Any] = []
    reply: Any = None
    try:
        while True:
            action = plan.send(reply)
            actions.append(action)
            if isinstance(action, Send):
                reply = replies(action)
            elif isinstance(action, Sleep):
                clock[0] += action.seconds
                reply = None
            else:
                raise AssertionError(f"unexpected {action!r}")
    except StopIteration as done:
        return done.value, actions


# ------------------------------------------------------------------------------------ retry policy
def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetrySettings(max_retries=10, backoff_factor=0.5, max_wait=3.0, total_timeout=1000)
    failure = CallFailure(operation="status", status_code=503)
    bounds: list[tuple[float, float]] = []

    def rng(low: float, high: float) -> float:
        bounds.append((low, high))
        return high

    waits = [
        retry_wait(failure, idempotent=True, retries_done=n, policy=policy, remaining=1000, rng=rng) for n in range(6)
    ]
    assert bounds == [(0.0, 0.5), (0.0, 1.0), (0.0, 2.0), (0.0, 3.0), (0.0, 3.0), (0.0, 3.0)]
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    jittered = [retry_wait(failure, idempotent=True, retries_done=3, policy=policy, remaining=1000) for _ in range(200)]
    assert all(w is not None and 0.0 <= w <= 3.0 for w in jittered)
    assert len({round(w or 0, 6) for w in jittered}) > 150  # full jitter: spread, not a fixed step


def test_retry_after_seconds_and_http_date_are_honoured_and_capped() -> None:
    now = time.time()
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.25 ") == 0.25
    assert parse_retry_after("-5") == 0.0
    when = format_datetime(datetime.fromtimestamp(now + 30, tz=timezone.utc), usegmt=True)
    assert parse_retry_after(when, now=now) == pytest.approx(30, abs=1)
    past = format_datetime(datetime.fromtimestamp(now - 30, tz=timezone.utc), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    for junk in ("", "soon", "nan", "inf", "Tue, 99 Foo 2024"):
        assert parse_retry_after(junk) is None, junk
    policy = RetrySettings(max_retries=3, backoff_factor=1.0, max_wait=5.0, total_timeout=100)
    throttled = CallFailure(operation="status", status_code=429, retry_after=3600.0, not_processed=True)
    assert retry_wait(throttled, idempotent=False, retries_done=0, policy=policy, remaining=100) == 5.0
    soon = CallFailure(operation="status", status_code=503, retry_after=1.5)
    assert retry_wait(soon, idempotent=True, retries_done=0, policy=policy, remaining=100) == 1.5
    # A wait that would end after the total time budget is not started.
    assert retry_wait(soon, idempotent=True, retries_done=0, policy=policy, remaining=1.0) is None


@pytest.mark.parametrize(
    ("failure", "idempotent", "retried", "transient"),
    [
        (CallFailure("s", transport_error="connection refused", not_processed=True), False, True, True),
        (CallFailure("s", transport_error="read timeout"), True, True, True),
        (CallFailure("s", transport_error="read timeout"), False, False, True),
        (CallFailure("s", transport_error="reset"), False, False, True),
        (CallFailure("s", transport_error="TLS", permanent=True, not_processed=True), True, False, False),
        (CallFailure("s", status_code=429, not_processed=True), False, True, True),
        (CallFailure("s", status_code=500), True, True, True),
        (CallFailure("s", status_code=500), False, False, True),
        (CallFailure("s", status_code=502), True, True, True),
        (CallFailure("s", status_code=503), True, True, True),
        (CallFailure("s", status_code=504), True, True, True),
        (CallFailure("s", status_code=501), True, False, False),
        (CallFailure("s", status_code=400), True, False, False),
        (CallFailure("s", status_code=401), True, False, False),
        (CallFailure("s", status_code=403), True, False, False),
        (CallFailure("s", status_code=404), True, False, False),
        (CallFailure("s", status_code=302), True, False, False),
        (CallFailure("s", status_code=200, problem="the body is not JSON"), True, False, True),
    ],
)
def test_which_failures_are_retried_and_which_are_transient(
    failure: CallFailure, idempotent: bool, retried: bool, transient: bool
) -> None:
    assert is_retryable(failure, idempotent) is retried
    assert is_transient(failure) is transient


def test_retries_stop_at_max_retries_and_within_the_total_time() -> None:
    clock = [0.0]
    request = api.status_request(PROJECT, "ws-dev", "r-1")
    busy = Answer(503, {"X-Request-Id": "q"}, b'{"error_code":"DQC.0503","error_msg":"busy"}')

    settings = policy_settings(max_retries=4, backoff_factor=1.0, max_wait=60, total_timeout=1000)
    outcome, actions = drive(
        call(settings, request, log=LOG, clock=lambda: clock[0], rng=lambda a, b: b), lambda _: busy, clock
    )
    assert isinstance(outcome, CallFailure) and outcome.status_code == 503 and outcome.error_msg == "busy"
    assert sum(isinstance(a, Send) for a in actions) == 5  # one call and max_retries=4 retries
    assert [a.seconds for a in actions if isinstance(a, Sleep)] == [1.0, 2.0, 4.0, 8.0]

    clock[0] = 0.0
    settings = policy_settings(max_retries=20, backoff_factor=1.0, max_wait=60, total_timeout=10)
    outcome, actions = drive(
        call(settings, request, log=LOG, clock=lambda: clock[0], rng=lambda a, b: b), lambda _: busy, clock
    )
    sleeps = [a.seconds for a in actions if isinstance(a, Sleep)]
    assert sleeps == [1.0, 2.0, 4.0]  # the next wait (8 s) would end past the 10 s budget
    assert clock[0] <= 10 and sum(isinstance(a, Send) for a in actions) == 4
    assert not any(isinstance(a, Exclusive) for a in actions)  # no token fetch

    clock[0] = 0.0
    refused = NoAnswer("connection refused", maybe_processed=False)
    export = api.export_request(PROJECT, "ws-dev", "quality-task", resources=[1])
    settings = policy_settings(max_retries=2, backoff_factor=0.0, max_wait=60, total_timeout=100)
    outcome, actions = drive(call(settings, export, log=LOG, clock=lambda: clock[0]), lambda _: refused, clock)
    assert sum(isinstance(a, Send) for a in actions) == 3 and outcome.transport_error == "connection refused"


def test_each_retry_logs_one_warning_with_attempt_status_error_code_request_id_and_wait(
    fresh_emulator: Emulator, use_connection: Any, task_logs: Any
) -> None:
    use_connection(fresh_emulator, max_retries=3, backoff_factor=0.01)
    rid = unique("scripted")
    fresh_emulator.script(
        rid,
        [
            {"http_status": 503, "error_code": "DQC.0503", "error_msg": "busy"},
            {"http_status": 429, "error_code": "APIGW.0308", "headers": {"Retry-After": "0.05"}},
            "SUCCESS",
        ],
    )
    assert DataQCHook().get_resource_status(rid).is_success
    first, second = (r.request_id for r in fresh_emulator.requests[:2])
    retries = distinct_lines(task_logs, "warning", "retrying in")
    assert len(retries) == 2, retries
    assert all(token in retries[0] for token in ("attempt 1/4", "HTTP 503", "error_code=DQC.0503", first, "status"))
    assert all(token in retries[1] for token in ("attempt 2/4", "HTTP 429", "error_code=APIGW.0308", second))
    assert "retrying in 0.1s" in retries[1] or "retrying in 0.0s" in retries[1]  # Retry-After: 0.05


def test_retry_after_from_the_server_is_waited(fresh_emulator: Emulator, use_connection: Any, task_logs: Any) -> None:
    use_connection(fresh_emulator, max_retries=1, backoff_factor=0, retry_max_wait=5)
    rid = unique("scripted")
    fresh_emulator.script(rid, [{"http_status": 429, "headers": {"Retry-After": "0.6"}}, "SUCCESS"])
    started = time.monotonic()
    assert DataQCHook().get_resource_status(rid).is_success
    assert time.monotonic() - started >= 0.55  # backoff_factor 0 alone would not wait at all
    assert any("retrying in 0.6s" in line for line in task_logs.lines("warning"))


def seeded_plan(kinds: list[str | None], operation: str, kind: str, **kwargs: Any) -> FaultPlan:
    """A FaultPlan whose first draws for ``operation`` are exactly ``kinds`` (a fault or None)."""
    for seed in range(10_000):
        probe = FaultPlan(rate=0.5, mix={kind: 1.0}, seed=seed, operations=(operation,), **kwargs)
        if [probe.draw(operation) for _ in kinds] == kinds:
            return FaultPlan(rate=0.5, mix={kind: 1.0}, seed=seed, operations=(operation,), **kwargs)
    raise AssertionError("no seed found")


def _upload(hook: DataQCHook, tmp_path: Path) -> str:
    source = tmp_path / "rules.zip"
    source.write_bytes(b"PK\x03\x04 not really a zip")
    return hook.upload_resource_file("rule-template", source).resource_id


@pytest.mark.parametrize("operation", ["export", "upload", "import"])
@pytest.mark.parametrize("kind", ["http500_json", "http502_html", "http503", "reset", "slow"])
def test_non_idempotent_calls_are_not_repeated_after_the_service_may_have_acted(
    fresh_emulator: Emulator, use_connection: Any, tmp_path: Path, operation: str, kind: str
) -> None:
    use_connection(fresh_emulator, max_retries=3, backoff_factor=0.001, timeout=0.2)
    hook = DataQCHook()
    uploaded = _upload(hook, tmp_path) if operation == "import" else None
    fresh_emulator.faults = FaultPlan(rate=1.0, mix={kind: 1.0}, operations=(operation,), slow_seconds=0.45)
    with pytest.raises(DataQCApiError) as caught:
        if operation == "export":
            hook.export_resources("quality-task", resources=[1])
        elif operation == "upload":
            _upload(hook, tmp_path)
        else:
            hook.import_resources(str(uploaded), "rule-template")
    assert caught.value.transient
    if kind == "slow":
        assert "read timeout" in str(caught.value)
        time.sleep(0.45)  # the service acts after its delay; the client must not have asked twice
    assert fresh_emulator.count(operation) == 1


@pytest.mark.parametrize("operation", ["export", "upload", "import"])
def test_non_idempotent_calls_are_repeated_after_a_429(
    fresh_emulator: Emulator, use_connection: Any, tmp_path: Path, operation: str
) -> None:
    use_connection(fresh_emulator, max_retries=2, backoff_factor=0.001)
    hook = DataQCHook()
    uploaded = _upload(hook, tmp_path) if operation == "import" else None
    fresh_emulator.faults = seeded_plan(["http429", None], operation, "http429", retry_after=0)
    if operation == "export":
        assert hook.export_resources("quality-task", resources=[1])
        assert len(fresh_emulator.exports("ws-dev")) == 1
    elif operation == "upload":
        assert _upload(hook, tmp_path)
        assert len(fresh_emulator.uploads("ws-dev")) == 1
    else:
        hook.import_resources(str(uploaded), "rule-template")
    assert fresh_emulator.count(operation) == 2
    assert fresh_emulator.faults_injected == {"http429": 1}


@pytest.mark.parametrize("mode", MODES)
def test_connection_refused_is_retried_even_for_an_export(
    mode: str, monkeypatch: pytest.MonkeyPatch, task_logs: Any
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    set_connection(monkeypatch, f"http://127.0.0.1:{port}", max_retries=2)
    with pytest.raises(DataQCApiError, match="connection error") as caught:
        if mode == "sync":
            DataQCHook().export_resources("quality-task", resources=[1])
        else:
            fetch_status(mode, "r-1")
    assert caught.value.transient and caught.value.status_code is None
    retries = distinct_lines(task_logs, "warning", "retrying in")
    assert len(retries) == 2 and "attempt 1/3" in retries[0] and "attempt 2/3" in retries[1]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["slow", "truncated", "reset", "http502_html", "http503", "http500_json"])
def test_status_calls_are_retried_through_each_fault_kind(
    fresh_emulator: Emulator, use_connection: Any, mode: str, kind: str
) -> None:
    use_connection(fresh_emulator, max_retries=2, backoff_factor=0.001, timeout=0.2)
    fresh_emulator.faults = seeded_plan([kind, None], "status", kind, slow_seconds=0.45)
    rid = unique("success-0")
    assert fetch_status(mode, rid).is_success
    if kind == "slow":
        time.sleep(0.45)  # a request is recorded when its (late) answer is sent
    assert fresh_emulator.count("status", resource_id=rid) == 2
    assert fresh_emulator.faults_injected == {kind: 1}


@pytest.mark.parametrize("mode", MODES)
def test_read_timeout_is_reported_when_retries_run_out(
    fresh_emulator: Emulator, use_connection: Any, mode: str
) -> None:
    use_connection(fresh_emulator, max_retries=1, timeout=0.2)
    fresh_emulator.faults = FaultPlan(rate=1.0, mix={"slow": 1.0}, slow_seconds=0.45)
    rid = unique("success-0")
    started = time.monotonic()
    with pytest.raises(DataQCApiError, match=r"read timeout after 0\.2s") as caught:
        fetch_status(mode, rid)
    assert caught.value.transient and caught.value.status_code is None
    assert time.monotonic() - started < 3.0
    time.sleep(0.45)  # a request is recorded when its (late) answer is sent
    assert fresh_emulator.count("status", resource_id=rid) == 2


# ------------------------------------------------------------------------------------ waits
def test_sensor_tolerates_transient_poll_errors_then_succeeds(
    fresh_emulator: Emulator, use_connection: Any, task_logs: Any
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    rid = unique("scripted")
    fresh_emulator.script(rid, [{"http_status": 503}, {"http_status": 502}, "RUNNING", {"http_status": 500}, "SUCCESS"])
    pokes, record = poke_until_done(make_sensor(rid))
    assert pokes == 5 and record["status"] == "SUCCESS"
    warned = distinct_lines(task_logs, "warning", "polling again at the next interval")
    assert len(warned) == 3
    assert "Poll 1/3" in warned[0] and "Poll 2/3" in warned[1] and "Poll 1/3" in warned[2]  # reset by RUNNING


def test_sensor_fails_with_the_last_error_after_max_consecutive_errors(
    fresh_emulator: Emulator, use_connection: Any, task_logs: Any
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    rid = unique("scripted")
    fresh_emulator.script(
        rid,
        [
            {"http_status": 503},
            {"http_status": 502},
            {"http_status": 500, "error_code": "DQC.0500", "error_msg": "the third"},
            "SUCCESS",
        ],
    )
    wait = make_sensor(rid, max_consecutive_errors=3)
    assert wait.poke({}) is False and wait.poke({}) is False
    with pytest.raises(DataQCApiError) as caught:
        wait.poke({})
    assert caught.value.status_code == 500 and caught.value.error_msg == "the third"
    assert fresh_emulator.count("status", resource_id=rid) == 3
    assert any("after 3 failed polls in a row" in line for line in task_logs.lines("error"))


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_sensor_permanent_errors_end_the_wait_at_once(
    fresh_emulator: Emulator, use_connection: Any, status: int
) -> None:
    use_connection(fresh_emulator, max_retries=3)
    rid = unique("scripted")
    fresh_emulator.script(rid, [{"http_status": status, "error_code": f"DQC.{status}"}, "SUCCESS"])
    with pytest.raises(DataQCApiError) as caught:
        make_sensor(rid, max_consecutive_errors=5).poke({})
    assert caught.value.status_code == status and not caught.value.transient
    assert fresh_emulator.count("status", resource_id=rid) == 1


def test_a_401_gets_one_fresh_token_then_fails_at_once(fresh_emulator: Emulator, use_connection: Any) -> None:
    use_connection(fresh_emulator, "password", max_retries=3)
    rid = unique("success-3")
    wait = make_sensor(rid, max_consecutive_errors=5)
    assert wait.poke({}) is False
    assert fresh_emulator.revoke_tokens() == 1  # the token expires mid-wait: one refresh, the wait goes on
    assert wait.poke({}) is False
    assert fresh_emulator.iam_calls == 2
    steady = unique("scripted")
    fresh_emulator.script(steady, [{"http_status": 401}, {"http_status": 401}, "SUCCESS"])
    with pytest.raises(DataQCApiError, match="again after a fresh IAM token") as caught:
        make_sensor(steady, max_consecutive_errors=5).poke({})
    assert caught.value.status_code == 401 and not caught.value.transient
    assert fresh_emulator.count("status", resource_id=steady) == 2 and fresh_emulator.iam_calls == 3
    for secret in (DEFAULT_USER[1], *fresh_emulator.issued_tokens):
        assert secret not in str(caught.value)


def test_trigger_tolerates_transient_poll_errors_then_succeeds(
    fresh_emulator: Emulator, use_connection: Any, task_logs: Any
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    rid = unique("scripted")
    fresh_emulator.script(rid, [{"http_status": 503}, {"http_status": 429}, "RUNNING", {"http_status": 504}, "SUCCESS"])
    event = run_trigger(DataQCResourceStatusTrigger(rid, poll_interval=0.01))
    assert event["status"] == "success" and event["record"]["status"] == "SUCCESS"
    assert fresh_emulator.count("status", resource_id=rid) == 5
    warned = distinct_lines(task_logs, "warning", "polling again")
    assert len(warned) == 3 and "Poll 2/3" in warned[1]


def test_trigger_gives_up_after_max_consecutive_errors_with_the_last_error(
    fresh_emulator: Emulator, use_connection: Any
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    rid = unique("scripted")
    fresh_emulator.script(
        rid,
        [{"http_status": 503}, {"http_status": 502}, {"http_status": 500, "error_msg": "the third"}, "SUCCESS"],
    )
    event = run_trigger(DataQCResourceStatusTrigger(rid, poll_interval=0.01, max_consecutive_errors=3))
    assert event["status"] == "error" and "gave up after 3 failed polls" in event["message"]
    assert event["error"]["status_code"] == 500 and event["error"]["error_msg"] == "the third"
    assert event["error"]["transient"] is True
    assert fresh_emulator.count("status", resource_id=rid) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_trigger_permanent_errors_end_the_wait_at_once(
    fresh_emulator: Emulator, use_connection: Any, status: int
) -> None:
    use_connection(fresh_emulator, max_retries=3)
    rid = unique("scripted")
    fresh_emulator.script(rid, [{"http_status": status, "error_code": f"DQC.{status}"}, "SUCCESS"])
    event = run_trigger(DataQCResourceStatusTrigger(rid, poll_interval=0.01, max_consecutive_errors=5))
    assert event["status"] == "error" and event["error"]["status_code"] == status
    assert event["error"]["error_code"] == f"DQC.{status}" and event["error"]["transient"] is False
    assert fresh_emulator.count("status", resource_id=rid) == 1


MAINTENANCE = {
    "raw_body": "<html><body><h1>Down for maintenance</h1><p>Back at 10:00</p></body></html>",
    "content_type": "text/html",
}


@pytest.mark.parametrize("mode", MODES)
def test_a_maintenance_page_with_200_is_polled_again_and_never_a_success(
    fresh_emulator: Emulator, use_connection: Any, task_logs: Any, mode: str
) -> None:
    use_connection(fresh_emulator, max_retries=3)
    passing, failing = unique("scripted"), unique("scripted")
    fresh_emulator.script(passing, [MAINTENANCE, {"http_status": 200, "json": {"status": None}}, "SUCCESS"])
    fresh_emulator.script(failing, [MAINTENANCE, MAINTENANCE, MAINTENANCE, "SUCCESS"])
    if mode == "sync":
        pokes, record = poke_until_done(make_sensor(passing))
        assert pokes == 3 and record["status"] == "SUCCESS"
        wait = make_sensor(failing)
        assert wait.poke({}) is False and wait.poke({}) is False
        with pytest.raises(DataQCApiError, match="not JSON") as caught:
            wait.poke({})
        message = str(caught.value)
    else:
        event = run_trigger(DataQCResourceStatusTrigger(passing, poll_interval=0.01))
        assert event["status"] == "success"
        event = run_trigger(DataQCResourceStatusTrigger(failing, poll_interval=0.01))
        assert event["status"] == "error" and event["error"]["status_code"] == 200
        message = event["message"]
        assert "gave up after 3 failed polls" in message
    assert "Down for maintenance" in message and "<h1>" not in message
    # A 2xx answer is never retried inside the call: one request per poll.
    assert fresh_emulator.count("status", resource_id=failing) == 3
    assert len([line for line in task_logs.lines("warning") if "not JSON" in line]) >= 3


def _dag_source(dag_id: str, deferrable: bool) -> str:
    return f'''
from datetime import datetime
from airflow.providers.common.compat.sdk import DAG, Param
from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor

with DAG(
    dag_id="{dag_id}",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    params={{"resource_id": Param("success-1", type="string")}},
) as dag:
    DataQCResourceStatusSensor(
        task_id="wait",
        resource_id="{{{{ params.resource_id }}}}",
        poke_interval=0.05,
        timeout=30,
        deferrable={deferrable},
    )
'''


def test_a_dag_run_waits_through_transient_errors_and_fails_after_three_in_a_row(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    dag_file = tmp_path / "dataqc_reliability_poke_waits.py"
    dag_file.write_text(_dag_source("dataqc_reliability_poke_waits", deferrable=False))
    tolerated, fatal = unique("scripted"), unique("scripted")
    fresh_emulator.script(tolerated, [{"http_status": 503}, {"http_status": 503}, "RUNNING", MAINTENANCE, "SUCCESS"])
    fresh_emulator.script(fatal, [{"http_status": 503}, MAINTENANCE, {"http_status": 502}, "SUCCESS"])
    state, tasks = run_dag("dataqc_reliability_poke_waits", files=(dag_file,), conf={"resource_id": tolerated})
    assert (state, tasks["wait"]) == ("success", "success")
    state, tasks = run_dag("dataqc_reliability_poke_waits", files=(dag_file,), conf={"resource_id": fatal})
    assert (state, tasks["wait"]) == ("failed", "failed")
    assert fresh_emulator.count("status", resource_id=fatal) == 3


# ------------------------------------------------------------------------------------ bad answers
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


# ------------------------------------------------------------------------------------ bad input
ODD_RESOURCE_IDS = [
    "a/b",
    "../../export",
    "success-1/../../import",
    "a?b=c&d",
    "a#frag",
    "100%",
    "%2e%2e",
    "%2Fstatus%2F",
    "with space",
    "ünïcødé-ид",
    "...",
    "x" * 256,
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("auth", ["token", "aksk"])
def test_opaque_resource_ids_are_percent_encoded_into_the_status_path(
    fresh_emulator: Emulator, use_connection: Any, mode: str, auth: str
) -> None:
    use_connection(fresh_emulator, auth, max_retries=0)
    for rid in ODD_RESOURCE_IDS:
        with pytest.raises(DataQCApiError) as caught:
            fetch_status(mode, rid)
        assert caught.value.status_code == 404 and caught.value.error_code == "DQC.1016", str(caught.value)
        seen = fresh_emulator.requests[-1]
        assert (seen.operation, seen.resource_id, seen.method) == ("status", rid, "GET"), seen
        assert seen.path.startswith(STATUS_PREFIX) and "/" not in seen.path[len(STATUS_PREFIX) :]
        assert seen.query == [] and "#" not in seen.path
    assert fresh_emulator.count() == len(ODD_RESOURCE_IDS)
    assert fresh_emulator.count("unknown") == 0


def test_odd_ids_reach_only_their_own_download_and_import(
    fresh_emulator: Emulator, use_connection: Any, tmp_path: Path
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    hook = DataQCHook()
    for rid in ("a/b", "a&resource_id=other", "x?y#z", "100%"):
        with pytest.raises(DataQCApiError, match="HTTP 404"):
            hook.download_resource_file(rid, tmp_path / "out.zip")
        seen = fresh_emulator.requests[-1]
        assert (seen.operation, seen.resource_id, seen.query) == ("download", rid, [("resource_id", rid)])
        with pytest.raises(DataQCApiError, match="HTTP 404"):
            hook.import_resources(rid, "rule-template")
        seen = fresh_emulator.requests[-1]
        assert (seen.operation, seen.resource_id) == ("import", rid)
    assert not (tmp_path / "out.zip").exists()


BAD_RESOURCE_IDS: list[tuple[Any, str]] = [
    ("", "required"),
    ("   ", "required"),
    (None, "required"),
    (".", "path steps"),
    ("..", "path steps"),
    (" .. ", "path steps"),
    ("a\x00b", "control characters"),
    ("a\nb", "control characters"),
    ("tab\there", "control characters"),
    ("\x7f", "control characters"),
    ("x" * 257, "at most 256"),
    ("x" * 10_000, "at most 256"),
]


@pytest.mark.parametrize("mode", MODES)
def test_bad_resource_ids_are_refused_before_any_request(
    fresh_emulator: Emulator, use_connection: Any, mode: str, tmp_path: Path
) -> None:
    use_connection(fresh_emulator)
    for rid, why in BAD_RESOURCE_IDS:
        with pytest.raises(DataQCApiError, match="resource_id") as caught:
            fetch_status(mode, rid)
        assert why in str(caught.value) and len(str(caught.value)) < 300
        if mode == "sync":
            with pytest.raises(DataQCApiError, match="resource_id"):
                DataQCHook().download_resource_file(rid, tmp_path / "x.zip")
            with pytest.raises(DataQCApiError, match="resource_id"):
                DataQCHook().import_resources(rid, "rule-template")
    assert fresh_emulator.count() == 0


BAD_IDS = ["ws/x", "..", ".", "a b", "a?b", "a#b", "a%2Fb", "bell\x07", "new\nline", "x" * 129, "x" * 10_000, "-lead"]


@pytest.mark.parametrize("mode", MODES)
def test_bad_workspace_and_project_ids_are_refused_before_any_request(
    fresh_emulator: Emulator, use_connection: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    use_connection(fresh_emulator)
    for bad in BAD_IDS:
        with pytest.raises(DataQCApiError, match="workspace") as caught:
            fetch_status(mode, "success-1", workspace=bad)
        assert "not a valid ID" in str(caught.value) and len(str(caught.value)) < 300
        assert "\x07" not in str(caught.value) and "\n" not in str(caught.value)
    for name in ("workspace", "project_id"):
        for bad in BAD_IDS:
            use_connection(fresh_emulator, **{name: bad})
            with pytest.raises(DataQCApiError, match=f"{name} \\(extra\\)") as caught:
                fetch_status(mode, "success-1")
            assert "is not usable" in str(caught.value)
    assert fresh_emulator.count() == 0


CONNECTION_MISTAKES: list[tuple[dict[str, Any], str]] = [
    ({"extra": {"auth_type": "kerberos"}}, "auth_type 'kerberos' is not supported"),
    ({"extra": {"project_id": None}}, "project_id (extra) is required"),
    ({"extra": {"project_id": "   "}}, "project_id (extra) is required"),
    ({"host": "https://dayu.example.com/v2/x"}, "must not have a path"),
    ({"host": "https://dayu.example.com?x=1"}, "must not have a path, query or fragment"),
    ({"host": "dayu.example.com/v2"}, "has no scheme"),
    ({"host": "ftp://dayu.example.com"}, "must use https://"),
    ({"host": "https://user:pw@dayu.example.com"}, "must not carry user info"),
    ({"host": "https://dayu.example.com:99999"}, "invalid port"),
    ({"host": "https://dayu example.com"}, "spaces or control characters"),
    ({"host": "http://dayu.example.com"}, "plain http to a non-loopback host"),
    ({"host": None, "extra": {"region": None}}, "needs an endpoint (host) or extra region"),
    ({"extra": {"region": "Not A Region!"}}, "extra region"),
    ({"extra": {"auth_type": "password", "iam_endpoint": "http://iam.example.com"}}, "extra iam_endpoint"),
    ({"extra": {"auth_type": "password"}, "login": None}, "login (IAM user name)"),
    ({"extra": {"auth_type": "aksk"}, "login": None}, "login (Access Key)"),
    ({"password": None}, "needs the IAM token in the password field"),
    ({"extra": {"max_retries": "many"}}, "extra max_retries must be a number"),
    ({"extra": {"max_retries": 1000}}, "extra max_retries must be between 0 and 20"),
    ({"extra": {"timeout": 0}}, "extra timeout must be between"),
    ({"extra": {"retry_timeout": "nan"}}, "extra retry_timeout must be between"),
    ({"extra": {"allow_insecure_http": "maybe"}}, "allow_insecure_http must be true or false"),
    ({"extra": {"verify": "/etc/ca\x00.pem"}}, "extra verify"),
]


@pytest.mark.parametrize("mode", ["sync", "async", "trigger"])
def test_connection_mistakes_are_refused_naming_the_field_before_any_request(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    for change, why in CONNECTION_MISTAKES:
        conn: dict[str, Any] = {
            "conn_type": "dataqc",
            "host": fresh_emulator.url,
            "login": "someone",
            "password": "secret-value-1",
            "extra": {"project_id": PROJECT, "workspace": "ws-dev", "domain_name": "d"},
        }
        conn.update({k: v for k, v in change.items() if k != "extra"})
        conn["extra"].update(change.get("extra", {}))
        monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", json.dumps(conn))
        if mode == "trigger":
            event = run_trigger(DataQCResourceStatusTrigger("success-1", poll_interval=0.01))
            assert event["status"] == "error", change
            message = event["message"]
        else:
            with pytest.raises(DataQCApiError) as caught:
                fetch_status(mode, "success-1")
            message = str(caught.value)
        assert why in message and "dataqc_default" in message, (why, message)
        assert "secret-value-1" not in message
    assert fresh_emulator.count() == 0


def settings_for(host: str | None = "https://dayu.example.com", **extra: Any) -> ConnectionSettings:
    return ConnectionSettings.from_connection(
        host=host,
        login=None,
        password="t",
        port=None,
        schema=None,
        extra={"project_id": PROJECT, **extra},
    )


def test_endpoints_are_normalised_to_scheme_host_and_port() -> None:
    assert settings_for("dayu.cn-north-4.myhuaweicloud.com").endpoint == "https://dayu.cn-north-4.myhuaweicloud.com"
    assert settings_for("https://dayu.example.com/").endpoint == "https://dayu.example.com"
    assert settings_for("HTTPS://dayu.example.com:8443").endpoint == "https://dayu.example.com:8443"
    assert settings_for(None, region="cn-north-4").endpoint == "https://dayu.cn-north-4.myhuaweicloud.com"
    for loopback in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "http://127.8.9.10"):
        assert settings_for(loopback).endpoint.startswith("http://")
    assert settings_for("http://dayu.example.com", allow_insecure_http=True).endpoint == "http://dayu.example.com"
    with pytest.raises(InvalidSettingError, match="allow_insecure_http"):
        settings_for("http://10.0.0.1")


def test_tls_verification_is_on_unless_turned_off_explicitly() -> None:
    for value in (None, "", "  ", True, "true", "1", "yes", "on"):
        assert settings_for(**({"verify": value} if value is not None else {})).verify is True, value
    for value in (False, "false", "False", "0", "no", "off", 0):
        assert settings_for(verify=value).verify is False, value
    assert settings_for(verify=" /etc/ssl/ca.pem ").verify == "/etc/ssl/ca.pem"


# ------------------------------------------------------------------------------------ TLS
@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost, made here."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.now(timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dataqc reliability test CA")])
    usage = {
        "digital_signature": True,
        "content_commitment": False,
        "key_encipherment": False,
        "data_encipherment": False,
        "key_agreement": False,
        "encipher_only": False,
        "decipher_only": False,
    }
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(key_cert_sign=True, crl_sign=True, **usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(key_cert_sign=False, crl_sign=False, **usage), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@pytest.fixture(scope="module")
def _https_server(tls_files: dict[str, Path]) -> Iterator[HTTPServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    server.expect_request(STATUS_PATH_R1).respond_with_json({"status": "SUCCESS"}, headers={"X-Request-Id": "tls"})
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def https_server(_https_server: HTTPServer) -> HTTPServer:
    """A TLS server on 127.0.0.1 answering SUCCESS for ``r-1``; its log starts empty."""
    _https_server.clear_log()
    return _https_server


@pytest.mark.parametrize("mode", MODES)
def test_tls_certificates_are_verified_by_default(
    https_server: HTTPServer, monkeypatch: pytest.MonkeyPatch, task_logs: Any, mode: str
) -> None:
    url = f"https://127.0.0.1:{https_server.port}"
    set_connection(monkeypatch, url, max_retries=3, backoff_factor=0.5)
    started = time.monotonic()
    with pytest.raises(DataQCApiError, match="TLS error") as caught:
        fetch_status(mode, "r-1")
    assert "cert" in str(caught.value).lower()
    assert not caught.value.transient  # a rejected certificate is not retried, and ends a wait
    assert time.monotonic() - started < 2.0 and not [line for line in task_logs.lines("warning") if "retrying" in line]
    assert len(https_server.log) == 0  # no request got through


@pytest.mark.parametrize("mode", MODES)
def test_tls_with_a_ca_bundle_path_works(
    https_server: HTTPServer, tls_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, task_logs: Any, mode: str
) -> None:
    set_connection(monkeypatch, f"https://127.0.0.1:{https_server.port}", verify=str(tls_files["ca"]))
    assert fetch_status(mode, "r-1").is_success
    assert len(https_server.log) == 1
    assert not [line for line in task_logs.lines("warning") if "verification is OFF" in line]


@pytest.mark.parametrize("mode", MODES)
def test_tls_verification_off_works_with_a_warning(
    https_server: HTTPServer, monkeypatch: pytest.MonkeyPatch, task_logs: Any, mode: str
) -> None:
    set_connection(monkeypatch, f"https://127.0.0.1:{https_server.port}", verify=False)
    assert fetch_status(mode, "r-1").is_success
    warned = distinct_lines(task_logs, "warning", "verification is OFF", key="verification is OFF")
    assert len(warned) == 1 and "connection 'dataqc_default'" in warned[0]


def test_a_missing_ca_bundle_is_a_clear_permanent_error(
    https_server: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    set_connection(monkeypatch, f"https://127.0.0.1:{https_server.port}", verify=str(missing), max_retries=3)
    with pytest.raises(DataQCApiError, match="extra verify") as caught:
        fetch_status("sync", "r-1")
    assert not caught.value.transient and len(https_server.log) == 0


# ------------------------------------------------------------------------------------ secrets
@pytest.mark.parametrize("mode", MODES)
def test_secrets_stay_out_of_errors_and_retry_logs(
    fresh_emulator: Emulator, use_connection: Any, task_logs: Any, mode: str
) -> None:
    use_connection(fresh_emulator, "password", max_retries=2)
    fresh_emulator.faults = FaultPlan(rate=1.0, mix={"http500_json": 1.0, "http502_html": 1.0}, seed=3)
    with pytest.raises(DataQCApiError) as caught:
        fetch_status(mode, unique("success-1"))
    text = task_logs.text() + str(caught.value) + repr(caught.value)
    assert fresh_emulator.issued_tokens and "retrying in" in text
    for secret in (DEFAULT_USER[1], *fresh_emulator.issued_tokens):
        assert secret not in text
