"""The retry policy over real HTTP: what each fault gets, the WARNING per retry, ``Retry-After``,
and calls that must not be repeated once the service may have acted (sync hook and async
client alike). The pure policy (backoff, which failures are retried) is ``tests/core/test_calls.py``.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_dataqc.hooks.dataqc import DataQCApiError, DataQCHook
from airflow_provider_dataqc.testing.emulator import Emulator, FaultPlan

from .support import MODES, distinct_lines, fetch_status, set_connection, unique


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
