"""Secrets (IAM token, IAM password, Secret Key, security token, tokens issued by IAM) never
reach a log line, an exception, a ``repr()``, a trigger event or XCom.

Logs are collected at DEBUG through whole ``dag.test()`` runs (successes, a refused login,
a refused signature, a token revoked mid-wait) and direct hook and trigger calls. Airflow's
masker turns a registered secret into ``***`` in printed logs, so the raw log records and
everything the masker does not touch (exceptions, XCom, trigger events) are searched too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from conftest import set_connection
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_provider_dataqc.core import api
from airflow_provider_dataqc.core.auth import TOKEN_CACHE, prepare, token_cache_key
from airflow_provider_dataqc.hooks.dataqc import DataQCApiError, DataQCHook
from airflow_provider_dataqc.testing.emulator import (
    DEFAULT_AKSK,
    DEFAULT_PROJECT_ID,
    DEFAULT_TOKEN,
    DEFAULT_USER,
    Emulator,
)
from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

DAG_FILE = Path(__file__).parent / "dags" / "dataqc_auth_modes.py"
SECURITY_TOKEN = "STS-temporary-security-token-93be10aa"
WRONG_PASSWORD = "wrong-password-c0ffee42"
WRONG_SK = "WRONGSK1111111111111111111111111111111111"
#: Every secret a connection of these tests holds.
FIXED_SECRETS = (DEFAULT_TOKEN, DEFAULT_USER[1], DEFAULT_AKSK[1], SECURITY_TOKEN, WRONG_PASSWORD, WRONG_SK)


def all_connections(monkeypatch: pytest.MonkeyPatch, emu: Emulator) -> None:
    """The connections of ``dags/dataqc_auth_modes.py``, all pointing at ``emu``."""
    for name in ("token", "password", "aksk", "refresh"):
        set_connection(monkeypatch, emu, f"dataqc_auth_{name}", "password" if name == "refresh" else name)
    set_connection(monkeypatch, emu, "dataqc_auth_aksk_sts", "aksk", security_token=SECURITY_TOKEN)
    set_connection(monkeypatch, emu, "dataqc_auth_bad_password", "password", password=WRONG_PASSWORD)
    set_connection(monkeypatch, emu, "dataqc_auth_bad_sk", "aksk", password=WRONG_SK)


@pytest.fixture
def debug_logs(task_logs: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``task_logs`` with every logger at DEBUG: the ``logging`` ones (``task_logs`` does that)
    and, on Airflow 3, the structlog loggers of hooks and tasks, which filter by level themselves."""
    try:
        import structlog
    except ImportError:  # Airflow 2 logs through ``logging`` only
        return task_logs
    wrapper = structlog.get_config().get("wrapper_class")
    module = sys.modules.get(getattr(wrapper, "__globals__", {}).get("__name__", ""))
    levels = getattr(module, "PER_LOGGER_LEVELS", None)
    if levels is not None:
        monkeypatch.setitem(levels, "", logging.DEBUG)
    return task_logs


#: Airflow 3's in-process supervisor of ``dag.test()`` logs every request a task sends it at
#: DEBUG, the value of each ``MaskSecret`` request included. That line is Airflow's, and only
#: ``dag.test()`` writes it (the real supervisor omits that body), so it is left out of the search.
_TEST_SUPERVISOR_LINE = re.compile(r"\[debug\s*\] Sending request\s.*\bmsg=MaskSecret\(")


def without_test_supervisor_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not _TEST_SUPERVISOR_LINE.search(line))


def raw_records(task_logs: Any) -> str:
    """Log records as emitted (before any handler's masking), tracebacks included."""
    lines = []
    for record in task_logs.records:
        lines.append(f"{record.name} {record.levelname} {record.getMessage()}")
        if record.exc_info:
            lines.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(lines)


def stored_rows(dag_ids: Iterable[str]) -> str:
    """XCom values and trigger resumption payloads stored for ``dag_ids``, as text."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    try:
        from airflow.models.xcom import XComModel as XComRow
    except ImportError:  # Airflow 2
        from airflow.models.xcom import XCom as XComRow  # type: ignore[no-redef]
    ids = list(dag_ids)
    with create_session() as session:
        xcoms = session.query(XComRow.dag_id, XComRow.value).filter(XComRow.dag_id.in_(ids)).all()
        resumed = session.query(TaskInstance.next_kwargs).filter(TaskInstance.dag_id.in_(ids)).all()
    texts = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for _, v in xcoms]
    return "\n".join(texts + [str(row[0]) for row in resumed])


def assert_no_secret(text: str, secrets: Iterable[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:6]}…) appears in {where}"


def test_full_dag_runs_leak_no_secret_to_logs_or_xcom(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, run_dag: Any, debug_logs: Any
) -> None:
    task_logs = debug_logs
    emu = fresh_emulator
    all_connections(monkeypatch, emu)
    outcomes: dict[str, str] = {}
    runs = [
        "dataqc_auth_token",
        "dataqc_auth_password",
        "dataqc_auth_password_deferred",
        "dataqc_auth_aksk",
        "dataqc_auth_aksk_sts_deferred",
        "dataqc_auth_bad_password",
        "dataqc_auth_bad_password_deferred",
        "dataqc_auth_bad_sk",
        "dataqc_auth_bad_sk_deferred",
    ]
    for dag_id in runs:
        outcomes[dag_id], _ = run_dag(dag_id, files=(DAG_FILE,), conf={"resource_id": f"success-1-{dag_id}"})
    issued = list(emu.issued_tokens)
    # A token revoked mid-wait: the 401 and the refresh are logged too.
    rid = f"success-3-{uuid.uuid4().hex[:6]}"

    def revoke_after_first_poll() -> None:
        deadline = time.monotonic() + 60
        while emu.count("status", resource_id=rid) < 1 and time.monotonic() < deadline:
            time.sleep(0.002)
        issued.extend(emu.issued_tokens)
        emu.revoke_tokens()

    watcher = threading.Thread(target=revoke_after_first_poll, daemon=True)
    watcher.start()
    outcomes["dataqc_auth_refresh"], _ = run_dag("dataqc_auth_refresh", files=(DAG_FILE,), conf={"resource_id": rid})
    watcher.join(5)
    issued.extend(emu.issued_tokens)

    assert {dag_id for dag_id, state in outcomes.items() if state == "success"} == {
        "dataqc_auth_token",
        "dataqc_auth_password",
        "dataqc_auth_password_deferred",
        "dataqc_auth_aksk",
        "dataqc_auth_aksk_sts_deferred",
        "dataqc_auth_refresh",
    }
    assert len(set(issued)) == 2 and emu.count("iam") == 2 + 2  # two good tokens, two refused logins
    secrets = [*FIXED_SECRETS, *set(issued)]

    printed = without_test_supervisor_lines(task_logs.text())
    raw = raw_records(task_logs)
    # The runs really were logged, at DEBUG, failures included.
    for marker in (
        "The username or password is wrong.",
        "AK/SK signature rejected (signature mismatch)",
        "rejected the IAM token (HTTP 401); getting a new one",
        "Got a new IAM token for user 'dq-user'",
        "DataArts Quality task succeeded",
    ):
        assert marker in printed, marker
    assert any(record.levelno == logging.DEBUG for record in task_logs.records)
    # Nothing needed masking: no log line held a secret, whatever the masker would have done.
    assert "***" not in printed
    assert_no_secret(printed, secrets, "the printed task logs")
    assert_no_secret(raw, secrets, "the raw log records")
    stored = stored_rows(outcomes)
    assert "SUCCESS" in stored
    assert_no_secret(stored, secrets, "XCom or trigger payloads")


def exception_texts(err: BaseException) -> str:
    return "\n".join(
        [
            str(err),
            repr(err),
            repr(err.args),
            repr(vars(err)),
            "".join(traceback.format_exception(err)),
            str(pickle.loads(pickle.dumps(err))),
        ]
    )


def test_direct_hook_calls_leak_no_secret(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, debug_logs: Any
) -> None:
    task_logs = debug_logs
    emu = fresh_emulator
    all_connections(monkeypatch, emu)
    texts: list[str] = []
    for conn_id in ("dataqc_auth_token", "dataqc_auth_password", "dataqc_auth_aksk_sts"):
        hook = DataQCHook(conn_id)
        status = hook.get_resource_status("success-0")
        assert status.is_success
        texts += [repr(hook), repr(hook.settings), repr(status), str(status.to_dict()), str(hook.test_connection())]
        request = api.status_request(DEFAULT_PROJECT_ID, "ws-dev", "success-0")
        token = TOKEN_CACHE.get(token_cache_key(hook.settings))
        texts += [repr(prepare(hook.settings, request, token=token.value if token else None)), repr(token)]
    errors: list[DataQCApiError] = []
    for conn_id in ("dataqc_auth_bad_password", "dataqc_auth_bad_sk"):
        hook = DataQCHook(conn_id)
        with pytest.raises(DataQCApiError) as caught:
            hook.get_resource_status("success-0")
        errors.append(caught.value)
        texts += [exception_texts(caught.value), repr(hook.settings), str(hook.test_connection())]
    emu.revoke_tokens()
    hook = DataQCHook("dataqc_auth_password")
    assert hook.get_resource_status("success-0").is_success  # refreshed after a 401
    assert [e.status_code for e in errors] == [401, 401]
    assert "The username or password is wrong." in str(errors[0]) and "signature mismatch" in str(errors[1])
    secrets = [*FIXED_SECRETS, *emu.issued_tokens]
    assert len(secrets) == len(FIXED_SECRETS) + 1
    assert_no_secret("\n".join(texts), secrets, "repr, exceptions or test_connection messages")
    assert_no_secret(without_test_supervisor_lines(task_logs.text()), secrets, "the printed logs")
    assert_no_secret(raw_records(task_logs), secrets, "the raw log records")


def test_secrets_are_registered_with_the_masker_as_soon_as_read(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat.sdk import redact

    emu = fresh_emulator
    password = f"pw-{uuid.uuid4().hex}"
    secret_key = f"SK{uuid.uuid4().hex}"
    security_token = f"STS{uuid.uuid4().hex}"
    fresh = (password, secret_key, security_token)
    assert [redact(value) for value in fresh] == list(fresh)  # new values: nobody registered them yet
    emu.user = (DEFAULT_USER[0], password, DEFAULT_USER[2])
    set_connection(monkeypatch, emu, "pw", "password", password=password)
    set_connection(monkeypatch, emu, "sk", "aksk", password=secret_key, security_token=security_token)
    DataQCHook("pw").settings  # noqa: B018 - reading the connection is the point
    DataQCHook("sk").settings  # noqa: B018
    assert [redact(value) for value in fresh] == ["***"] * 3
    assert DataQCHook("pw").get_resource_status("success-0").is_success
    (issued,) = emu.issued_tokens
    assert redact(issued) == "***"


def test_an_iam_answer_echoing_the_request_never_puts_the_password_in_the_error(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def echo(request: Request) -> Response:
        return Response(f"<html><body>Bad request: {request.get_data(as_text=True)}</body></html>", status=400)

    httpserver.expect_request("/v3/auth/tokens", method="POST").respond_with_handler(echo)
    url = httpserver.url_for("/").rstrip("/")
    conn = {
        "conn_type": "dataqc",
        "host": url,
        "login": DEFAULT_USER[0],
        "password": WRONG_PASSWORD,
        "extra": {
            "auth_type": "password",
            "project_id": DEFAULT_PROJECT_ID,
            "workspace": "ws-dev",
            "domain_name": DEFAULT_USER[2],
            "iam_endpoint": url,
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", json.dumps(conn))
    with pytest.raises(DataQCApiError) as caught:
        DataQCHook().get_resource_status("success-0")
    text = exception_texts(caught.value)
    assert "HTTP 400" in text and "Bad request" in text and '"password":"***"' in text
    assert WRONG_PASSWORD not in text


def test_trigger_events_and_serialisation_hold_no_secret(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, debug_logs: Any
) -> None:
    task_logs = debug_logs
    emu = fresh_emulator
    all_connections(monkeypatch, emu)

    async def events() -> list[Any]:
        found = []
        for conn_id in (
            "dataqc_auth_password",
            "dataqc_auth_aksk_sts",
            "dataqc_auth_bad_password",
            "dataqc_auth_bad_sk",
        ):
            trigger = DataQCResourceStatusTrigger("success-1", dataqc_conn_id=conn_id, poll_interval=0.01)
            found.append(repr(trigger.serialize()))
            async for event in trigger.run():
                found.append(event.payload)
        return found

    found = asyncio.run(events())
    payloads = [item for item in found if isinstance(item, dict)]
    assert [p["status"] for p in payloads] == ["success", "success", "error", "error"]
    assert "The username or password is wrong." in payloads[2]["message"]
    assert "signature mismatch" in payloads[3]["message"]
    secrets = [*FIXED_SECRETS, *emu.issued_tokens]
    assert_no_secret(json.dumps(found, default=str), secrets, "trigger events or serialised triggers")
    printed = without_test_supervisor_lines(task_logs.text())
    assert_no_secret(printed + raw_records(task_logs), secrets, "the trigger's logs")
