"""Text the service sends can never forge a log line or an exception line.

Every field of a status answer (``status``, ``file_status``, ``action``, ``resource_type``,
``error_msg`` ...), every ``error_code`` and request ID, and every body excerpt reach logs
and exceptions with their control characters escaped (``\\n``, ``\\x1b``, ``\\u2028``), so
a line break in an answer stays inside the one line that quotes it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import set_connection
from pytest_httpserver import HTTPServer
from werkzeug import Response

from airflow_provider_dataqc.core.errors import CallFailure, excerpt, failure_from_answer, printable
from airflow_provider_dataqc.core.status import ResourceStatus, assess, describe
from airflow_provider_dataqc.hooks.dataqc import DataQCApiError, DataQCHook
from airflow_provider_dataqc.testing.emulator import Emulator
from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

DAG_FILE = Path(__file__).parent / "dags" / "dataqc_auth_modes.py"
FORGED = "Task exited with return code 0"
#: Characters that end a line for some reader: ``str.splitlines``, terminals, log viewers.
LINE_BREAKS = ("\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
#: Every field of a status answer is a vehicle for a forged line.
HOSTILE_FIELDS = {
    "action": f"EXPORT\n[2026-01-01, 00:00:00 UTC] {{taskinstance.py:1}} INFO - {FORGED}",
    "resource_type": f"rule-template\r\n{FORGED}",
    "file_status": f"GENERATED\x1b[2K\r{FORGED}",
    "error_msg": f"done\u2028{FORGED}",
    "file_name": f"x.zip\x85{FORGED}",
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_not_forged(text: str, where: str) -> None:
    """No line of ``text`` is the forged one: each mention sits inside a line the provider wrote."""
    mentions = [line for line in text.splitlines() if FORGED.lower() in line.lower()]
    assert mentions, f"the hostile text never reached {where}: the test proves nothing"
    for line in mentions:
        assert not line.lstrip().lower().startswith(FORGED.lower()), f"a forged line in {where}: {line!r}"
        assert not line.lstrip().startswith("[2026-01-01"), f"a forged line in {where}: {line!r}"
    assert "\x1b" not in text, f"an escape sequence reached {where}"


# ------------------------------------------------------------------------------- the one function
@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\nb", "a\\nb"),
        ("a\r\nb", "a\\r\\nb"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("tab\there", "tab\\there"),
        ("nul\x00", "nul\\x00"),
        ("nel\x85", "nel\\x85"),
        ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
        ("bidi\u202egnp.exe", "bidi\\u202egnp.exe"),
        ("plain text, 'quotes' and \\ backslashes", "plain text, 'quotes' and \\ backslashes"),
        ("ünïcödé ✓ 数据", "ünïcödé ✓ 数据"),
    ],
)
def test_printable_escapes_what_could_break_or_hide_a_line_and_keeps_the_rest(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert len(printable(raw).splitlines()) <= 1
    assert printable(printable(raw)) == printable(raw)  # escaping twice changes nothing


def test_every_line_break_is_escaped() -> None:
    text = printable("x".join(LINE_BREAKS))
    assert len(text.splitlines()) == 1 and not any(c in text for c in LINE_BREAKS)


# ------------------------------------------------------------------------------- the core's messages
def test_status_descriptions_and_verdicts_quote_every_field_on_one_line() -> None:
    record = ResourceStatus.from_api(
        {"status": "SUCCESS", "resource_id": f"r\n{FORGED}", **HOSTILE_FIELDS}, request_id=f"req\n{FORGED}"
    )
    for text in (describe(record), assess(record).message, assess(record, wait_for_file=True).message, repr(record)):
        assert len(text.splitlines()) == 1, text
        assert FORGED in text and "\x1b" not in text
    odd = ResourceStatus.from_api({"status": f"RUNNING\n{FORGED}", "file_status": f"PREPARING\n{FORGED}"})
    verdict = assess(odd)
    assert verdict.unknown_status and len(verdict.message.splitlines()) == 1


def test_call_failures_quote_service_text_on_one_line() -> None:
    body = json.dumps({"error_code": f"DQC.0001\n{FORGED}", "error_msg": f"bad\r\n{FORGED}"}).encode()
    failure = failure_from_answer("status", 400, {"X-Request-Id": f"id\x1b[2K\r{FORGED}"}, body)
    assert "\n" not in (failure.error_code or "") and "\x1b" not in (failure.request_id or "")
    assert len(failure.message().splitlines()) == 1 and "\x1b" not in failure.message()
    odd = CallFailure(operation="status", transport_error=f"reset\n{FORGED}", problem=f"p\u2028{FORGED}")
    assert len(odd.message().splitlines()) == 1
    html = f"<html>\x85{FORGED}\u2028{FORGED}</html>".encode()
    assert len(excerpt(html).splitlines()) == 1


# ------------------------------------------------------------------------------- end to end
def test_a_status_answer_cannot_forge_a_task_log_line(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, run_dag: Any, task_logs: Any
) -> None:
    rid = unique("forge")
    emulator.script(rid, [{"status": "RUNNING", **HOSTILE_FIELDS}, {"status": "SUCCESS", **HOSTILE_FIELDS}])
    set_connection(monkeypatch, emulator, "dataqc_auth_token", "token")
    state, tasks = run_dag("dataqc_auth_token", files=(DAG_FILE,), conf={"resource_id": rid})
    assert state == "success" and tasks == {"wait": "success"}
    assert_not_forged(task_logs.text(), "the task log")


def test_hook_waits_and_errors_cannot_forge_a_line(emulator: Emulator, use_connection: Any, task_logs: Any) -> None:
    use_connection(emulator)
    hook = DataQCHook()
    rid = unique("forge")
    emulator.script(rid, [{"status": f"RUNNING\n{FORGED}", **HOSTILE_FIELDS}, {"status": "FAILED", **HOSTILE_FIELDS}])
    with pytest.raises(Exception) as failed:
        hook.wait_for_resource(rid, poll_interval=0.01, timeout=30)
    assert len(str(failed.value).splitlines()) == 1 and FORGED in str(failed.value)
    code = f"DQC.0500\n{FORGED}"
    bad = unique("forge")
    emulator.script(bad, [{"http_status": 500, "error_code": code, "error_msg": f"down\n{FORGED}"}])
    with pytest.raises(DataQCApiError) as caught:
        hook.get_resource_status(bad)  # retried (a WARNING per attempt names the error_code), then raised
    assert caught.value.status_code == 500 and len(str(caught.value).splitlines()) == 1
    assert caught.value.error_code == printable(code)
    assert_not_forged(task_logs.text(), "the hook's log and errors")


async def test_trigger_logs_and_events_cannot_forge_a_line(
    emulator: Emulator, use_connection: Any, task_logs: Any
) -> None:
    use_connection(emulator)
    rid = unique("forge")
    emulator.script(rid, [{"status": "RUNNING", **HOSTILE_FIELDS}, {"status": "FAILED", **HOSTILE_FIELDS}])
    events = []

    async def collect() -> None:
        async for event in DataQCResourceStatusTrigger(rid, poll_interval=0.01).run():
            events.append(event.payload)

    await asyncio.wait_for(collect(), 30)
    assert [e["status"] for e in events] == ["failed"]
    assert len(events[0]["message"].splitlines()) == 1 and FORGED in events[0]["message"]
    assert_not_forged(task_logs.text(), "the trigger's log")


def test_an_error_answer_with_control_characters_in_its_request_id_is_quoted_escaped(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, task_logs: Any
) -> None:
    conn = {
        "conn_type": "dataqc",
        "host": httpserver.url_for("/").rstrip("/"),
        "password": "tok-123",
        "extra": {"project_id": "0123456789abcdef0123456789abcdef", "workspace": "ws-1", "max_retries": 0},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", json.dumps(conn))
    body = json.dumps({"error_code": "DQC.1016", "error_msg": f"gone\n{FORGED}"})
    headers = {"X-Request-Id": f"req\x1b[1A\x1b[2K{FORGED}", "Content-Type": "application/json"}
    httpserver.expect_request("/v2/0123456789abcdef0123456789abcdef/quality/resource/status/r-1").respond_with_response(
        Response(body, status=404, headers=headers)
    )
    with pytest.raises(DataQCApiError) as caught:
        DataQCHook().get_resource_status("r-1")
    text = str(caught.value)
    assert len(text.splitlines()) == 1 and "\x1b" not in text and "\\x1b[1A" in text
    assert caught.value.request_id is not None and "\x1b" not in caught.value.request_id
