"""Authentication end to end: IAM tokens (cached, shared, refreshed), AK/SK signing,
the connection form and ``test_connection``, against the emulator and real ``dag.test()`` runs."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, set_connection
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_provider_dataqc.core import signer
from airflow_provider_dataqc.core.auth import (
    TOKEN_CACHE,
    TOKEN_REFRESH_MARGIN,
    IamToken,
    TokenCache,
    iam_failure,
    parse_token_answer,
    refresh_margin,
    token_cache_key,
)
from airflow_provider_dataqc.core.errors import CallFailure
from airflow_provider_dataqc.core.settings import ConnectionSettings
from airflow_provider_dataqc.hooks.dataqc import DataQCApiError, DataQCHook
from airflow_provider_dataqc.testing.emulator import (
    DEFAULT_AKSK,
    DEFAULT_PROJECT_ID,
    DEFAULT_USER,
    Emulator,
    FaultPlan,
)
from airflow_provider_dataqc.triggers.dataqc import AsyncDataQCClient

DAG_FILE = Path(__file__).parent / "dags" / "dataqc_auth_modes.py"
SECURITY_TOKEN = "STS-temporary-security-token-4f1c9a0b"
WRONG_PASSWORD = "wrong-password-7d3e91"
WRONG_SK = "WRONGSK0000000000000000000000000000000000"
WRONG_TOKEN = "wrong-iam-token-51be2c"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def mode_connection(monkeypatch: pytest.MonkeyPatch, emu: Emulator, name: str) -> str:
    """The connection ``dataqc_auth_<name>`` that the DAGs of ``dags/dataqc_auth_modes.py`` use."""
    conn_id = f"dataqc_auth_{name}"
    if name == "aksk_sts":
        return set_connection(monkeypatch, emu, conn_id, "aksk", security_token=SECURITY_TOKEN)
    if name == "bad_password":
        return set_connection(monkeypatch, emu, conn_id, "password", password=WRONG_PASSWORD)
    if name == "bad_sk":
        return set_connection(monkeypatch, emu, conn_id, "aksk", password=WRONG_SK)
    return set_connection(monkeypatch, emu, conn_id, name)


def stored_xcoms(dag_id: str) -> list[Any]:
    from airflow.utils.session import create_session

    try:
        from airflow.models.xcom import XComModel as XComRow
    except ImportError:  # Airflow 2
        from airflow.models.xcom import XCom as XComRow  # type: ignore[no-redef]
    with create_session() as session:
        rows = session.query(XComRow.value).filter(XComRow.dag_id == dag_id).all()
    values = []
    for (value,) in rows:
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        values.append(json.loads(value) if isinstance(value, str) else value)
    return values


def statuses(emu: Emulator, operation: str = "status") -> list[int | None]:
    return [r.status for r in emu.requests if r.operation == operation]


# ------------------------------------------------------------------------------------ pure rules
@pytest.mark.parametrize(
    ("lifetime", "margin"),
    [
        (timedelta(hours=24), TOKEN_REFRESH_MARGIN),
        (timedelta(minutes=21), TOKEN_REFRESH_MARGIN),
        (timedelta(minutes=20), TOKEN_REFRESH_MARGIN),
        (timedelta(minutes=12), timedelta(minutes=6)),
        (timedelta(minutes=1), timedelta(seconds=30)),
        (timedelta(seconds=2), timedelta(seconds=1)),
        (timedelta(0), timedelta(0)),
    ],
)
def test_refresh_margin_is_ten_minutes_but_never_more_than_half_the_lifetime(
    lifetime: timedelta, margin: timedelta
) -> None:
    assert timedelta(minutes=10) == TOKEN_REFRESH_MARGIN
    assert refresh_margin(lifetime) == margin
    assert refresh_margin(lifetime) <= lifetime / 2
    assert refresh_margin(timedelta(hours=1), timedelta(minutes=2)) == timedelta(minutes=2)


def iam_answer(issued: datetime | None, expires: datetime | None, token: str = "tok-abc") -> tuple[int, dict, bytes]:
    def iso(moment: datetime | None) -> str | None:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else None

    body = {"token": {k: v for k, v in (("issued_at", iso(issued)), ("expires_at", iso(expires))) if v}}
    return 201, {"X-Subject-Token": token, "X-Request-Id": "r1"}, json.dumps(body).encode()


def test_token_lifetime_is_read_on_iams_clock_and_counted_on_ours() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    # IAM's clock is 3 hours ahead of ours: the token still lives 24 h from our point of view.
    issued = now + timedelta(hours=3)
    token = parse_token_answer(*iam_answer(issued, issued + timedelta(hours=24)), now=now)
    assert isinstance(token, IamToken) and token.value == "tok-abc"
    assert token.expires_at == issued + timedelta(hours=24)
    assert token.refresh_at == now + timedelta(hours=24) - timedelta(minutes=10)
    assert token.is_fresh(token.refresh_at - timedelta(seconds=1)) and not token.is_fresh(token.refresh_at)
    # A 4-minute token is renewed after 2 minutes, not used until it dies or renewed at once.
    short = parse_token_answer(*iam_answer(now, now + timedelta(minutes=4)), now=now)
    assert isinstance(short, IamToken) and short.refresh_at == now + timedelta(minutes=2)
    # No issued_at: counted from now; no expires_at at all: 24 h assumed.
    no_issue = parse_token_answer(*iam_answer(None, now + timedelta(hours=1)), now=now)
    assert isinstance(no_issue, IamToken) and no_issue.refresh_at == now + timedelta(minutes=50)
    bare = parse_token_answer(201, {"X-Subject-Token": "t"}, b"{}", now=now)
    assert isinstance(bare, IamToken) and bare.refresh_at == now + timedelta(hours=24) - timedelta(minutes=10)
    assert "tok-abc" not in repr(token)


def test_token_answer_without_the_token_header_is_a_failure() -> None:
    status, headers, body = iam_answer(None, None)
    del headers["X-Subject-Token"]
    failure = parse_token_answer(status, headers, body)
    assert isinstance(failure, CallFailure) and "X-Subject-Token" in failure.message()


def settings(password: str = DEFAULT_USER[1], **extra: Any) -> ConnectionSettings:
    return ConnectionSettings.from_connection(
        host="https://dayu.cn-north-4.myhuaweicloud.com",
        login=DEFAULT_USER[0],
        password=password,
        port=None,
        schema=None,
        extra={"auth_type": "password", "project_id": DEFAULT_PROJECT_ID, "domain_name": DEFAULT_USER[2], **extra},
    )


def test_cache_key_separates_users_projects_endpoints_and_passwords_without_holding_the_password() -> None:
    base = token_cache_key(settings())
    assert base == token_cache_key(settings())
    assert base[:4] == ("https://iam.myhuaweicloud.com", DEFAULT_USER[0], DEFAULT_USER[2], DEFAULT_PROJECT_ID)
    assert token_cache_key(settings(region="cn-north-4"))[0] == "https://iam.cn-north-4.myhuaweicloud.com"
    assert token_cache_key(settings(WRONG_PASSWORD)) != base
    assert token_cache_key(settings(project_id="f" * 32)) != base
    assert not any(DEFAULT_USER[1] in part for part in base)


def test_cache_shares_one_fetch_and_its_failure_with_those_who_waited() -> None:
    cache, key = TokenCache(), ("iam", "user", "domain", "project", "digest")
    now = datetime.now(timezone.utc)
    first, waiter = cache.ticket(key), cache.ticket(key)
    assert first.token is None and cache.shared(first) is None  # the first caller fetches
    failure = CallFailure(operation="IAM token", status_code=401, error_msg="The username or password is wrong.")
    cache.settle(key, failure)
    assert cache.shared(waiter) is failure  # waited during that fetch: shares its failure
    later = cache.ticket(key)
    assert cache.shared(later) is None  # came after it: fetches again
    token = IamToken("tok-1", now + timedelta(hours=1), now + timedelta(minutes=50))
    cache.settle(key, token)
    assert cache.ticket(key).token == "tok-1" and cache.shared(later) == "tok-1"
    # A rejected token is dropped, unless it was already replaced by another.
    assert cache.ticket(key, rejected="tok-0").token == "tok-1"
    assert cache.ticket(key, rejected="tok-1").token is None
    # A token past its refresh time is not handed out.
    cache.settle(key, IamToken("tok-2", now + timedelta(seconds=5), now - timedelta(seconds=1)))
    assert cache.ticket(key).token is None and cache.get(key) is None
    assert "tok-1" not in repr(cache.ticket(key, now=now - timedelta(hours=1)))


def test_iam_failure_names_user_and_endpoint_and_never_quotes_the_password() -> None:
    echoed = f"<html>bad request: {{'password': '{DEFAULT_USER[1]}'}}</html>"
    failure = iam_failure(
        settings(), CallFailure(operation="IAM token", status_code=400, body_excerpt=echoed, error_msg=echoed)
    )
    text = failure.message()
    assert DEFAULT_USER[1] not in text and "***" in text
    assert "'dq-user'" in text and "'dq-domain'" in text and "https://iam.myhuaweicloud.com" in text
    assert "check login, password, domain_name and project_id" in text


# ------------------------------------------------------------------------------- each mode, end to end
@pytest.mark.parametrize("deferred", [False, True], ids=["poke", "deferrable"])
@pytest.mark.parametrize("name", ["token", "password", "aksk", "aksk_sts"])
def test_each_mode_end_to_end_through_the_sensor(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, run_dag: Any, name: str, deferred: bool
) -> None:
    emu = fresh_emulator
    mode_connection(monkeypatch, emu, name)
    rid = unique("success-2")
    dag_id = f"dataqc_auth_{name}" + ("_deferred" if deferred else "")
    state, tasks = run_dag(dag_id, files=(DAG_FILE,), conf={"resource_id": rid})
    assert state == "success" and tasks == {"wait": "success"}
    assert emu.count("status", resource_id=rid) == 3
    assert any(
        isinstance(v, dict) and v.get("resource_id") == rid and v["status"] == "SUCCESS" for v in stored_xcoms(dag_id)
    )
    sent = [r.headers for r in emu.requests if r.operation == "status"]
    assert statuses(emu) == [200, 200, 200]
    if name in ("token", "password"):
        assert all(h.get("X-Auth-Token") == "***" and "Authorization" not in h for h in sent)
        assert all(h["X-Project-Id"] == DEFAULT_PROJECT_ID for h in sent)
    else:
        assert all(h.get("Authorization") == "***" and "X-Auth-Token" not in h and "X-Sdk-Date" in h for h in sent)
        assert all(("X-Security-Token" in h) is (name == "aksk_sts") for h in sent)
    assert emu.iam_calls == (1 if name == "password" else 0)


def test_one_iam_call_per_token_lifetime_however_many_pokes(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, run_dag: Any
) -> None:
    emu = fresh_emulator
    set_connection(monkeypatch, emu, "dataqc_auth_pokes", "password")
    rid = unique("success-99")  # 99 pokes see WAITING/RUNNING, the 100th SUCCESS
    state, _ = run_dag("dataqc_auth_pokes", files=(DAG_FILE,), conf={"resource_id": rid})
    assert state == "success"
    pokes = emu.count("status", resource_id=rid)
    assert pokes == 100 and emu.count("status") == 100  # one DataArts request per poke
    assert emu.iam_calls == 1  # IAM calls per 100 pokes within a token lifetime
    assert emu.count() == pokes + emu.iam_calls


# ------------------------------------------------------------------------------- refresh paths
def revoke_after(emu: Emulator, rid: str, polls: int, revoked: list[int]) -> threading.Thread:
    """Revoke every issued token once ``rid`` has been polled ``polls`` times."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while emu.count("status", resource_id=rid) < polls and time.monotonic() < deadline:
            time.sleep(0.002)
        revoked.append(emu.revoke_tokens())

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_token_revoked_mid_wait_costs_exactly_one_new_iam_call(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, run_dag: Any, task_logs: Any
) -> None:
    emu = fresh_emulator
    set_connection(monkeypatch, emu, "dataqc_auth_refresh", "password")
    rid = unique("success-3")
    revoked: list[int] = []
    watcher = revoke_after(emu, rid, 1, revoked)
    state, _ = run_dag("dataqc_auth_refresh", files=(DAG_FILE,), conf={"resource_id": rid})
    watcher.join(5)
    assert state == "success" and revoked == [1]
    assert emu.iam_calls == 2  # the first token, and one new one after the 401
    assert statuses(emu) == [200, 401, 200, 200, 200]
    assert any("rejected the IAM token (HTTP 401); getting a new one" in line for line in task_logs.lines("info"))


def test_hook_refreshes_a_revoked_token_once_and_retries_the_call(
    fresh_emulator: Emulator, use_connection: Any
) -> None:
    emu = fresh_emulator
    use_connection(emu, "password")
    hook = DataQCHook()
    assert hook.get_resource_status(unique("success-5")).status == "WAITING"
    first = emu.issued_tokens
    assert emu.revoke_tokens() == 1
    assert hook.get_resource_status(unique("success-5")).status == "WAITING"
    assert emu.iam_calls == 2 and emu.issued_tokens != first
    assert statuses(emu) == [200, 401, 200]
    assert DataQCHook().get_resource_status(unique("success-0")).is_success  # a new hook shares the new token
    assert emu.iam_calls == 2


def test_cached_token_is_replaced_before_it_expires_by_the_clock(use_connection: Any) -> None:
    with Emulator(token_lifetime=2.0) as emu:  # margin: 1 s (half the lifetime)
        use_connection(emu, "password")
        hook = DataQCHook()
        hook.get_resource_status(unique("success-3"))
        hook.get_resource_status(unique("success-3"))
        assert emu.iam_calls == 1
        key = token_cache_key(hook.settings)
        deadline = time.monotonic() + 20
        while TOKEN_CACHE.get(key) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert TOKEN_CACHE.get(key) is None, "the token never became due for renewal"
        hook.get_resource_status(unique("success-3"))
        assert emu.iam_calls == 2
        assert 401 not in statuses(emu)  # renewed before the service could refuse it


def test_second_401_after_a_fresh_token_is_an_error_naming_it(fresh_emulator: Emulator, use_connection: Any) -> None:
    emu = fresh_emulator
    use_connection(emu, "password")
    rid = unique("denied")
    refusal = {"http_status": 401, "error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information"}
    emu.script(rid, [refusal, refusal, "SUCCESS"])
    with pytest.raises(DataQCApiError) as caught:
        DataQCHook().get_resource_status(rid)
    err = caught.value
    text = str(err)
    assert err.status_code == 401 and not err.transient
    assert "credentials rejected again after a fresh IAM token" in text and "APIGW.0301" in text
    assert emu.iam_calls == 2 and statuses(emu) == [401, 401]  # one refresh, one retry, then stop


def test_wrong_password_is_one_iam_call_and_a_clear_error(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = fresh_emulator
    set_connection(monkeypatch, emu, "dataqc_default", "password", password=WRONG_PASSWORD)
    with pytest.raises(DataQCApiError) as caught:
        DataQCHook().get_resource_status("success-0")
    err, text = caught.value, str(caught.value)
    assert err.status_code == 401 and not err.transient
    assert err.error_msg == "The username or password is wrong."  # IAM's own message
    assert "IAM refused the password login of user 'dq-user'" in text and "HTTP 401" in text
    assert WRONG_PASSWORD not in text and WRONG_PASSWORD not in repr(err)
    assert emu.iam_calls == 1 and emu.count("status") == 0


def test_wrong_password_fails_the_sensor_after_one_iam_call(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, run_dag: Any, task_logs: Any
) -> None:
    emu = fresh_emulator
    mode_connection(monkeypatch, emu, "bad_password")
    state, tasks = run_dag("dataqc_auth_bad_password", files=(DAG_FILE,), conf={"resource_id": unique("success-1")})
    assert state == "failed" and tasks == {"wait": "failed"}
    assert emu.iam_calls == 1 and emu.count("status") == 0
    assert "The username or password is wrong." in task_logs.text()


def test_unreachable_iam_is_a_transient_error_naming_it(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    set_connection(monkeypatch, fresh_emulator, "dataqc_default", "password", iam_endpoint=closed, max_retries=1)
    with pytest.raises(DataQCApiError) as caught:
        DataQCHook().get_resource_status("success-0")
    text = str(caught.value)
    assert caught.value.transient and caught.value.status_code is None
    assert "IAM did not answer the token request for user 'dq-user'" in text and closed in text
    assert "connection error" in text and DEFAULT_USER[1] not in text
    assert fresh_emulator.count() == 0


def run_at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; results (or exceptions) in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as err:  # collected for the assertions
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_twenty_threads_share_one_token_fetch(use_connection: Any) -> None:
    # IAM answers slowly, so every thread arrives while the one fetch is in flight.
    slow_iam = FaultPlan(rate=1.0, mix={"slow": 1.0}, operations=("iam",), slow_seconds=0.5)
    with Emulator(faults=slow_iam) as emu:
        use_connection(emu, "password")
        shared = DataQCHook()
        results = run_at_once(
            20, lambda i: (shared if i % 2 else DataQCHook()).get_resource_status(f"success-0-thread{i}")
        )
        assert [getattr(r, "status", r) for r in results] == ["SUCCESS"] * 20
        assert emu.iam_calls == 1 and emu.count("status") == 20
        assert len(set(emu.issued_tokens)) == 1


def test_twenty_threads_with_a_wrong_password_cost_one_iam_call(monkeypatch: pytest.MonkeyPatch) -> None:
    slow_iam = FaultPlan(rate=1.0, mix={"slow": 1.0}, operations=("iam",), slow_seconds=0.5)
    with Emulator(faults=slow_iam) as emu:
        set_connection(monkeypatch, emu, "dataqc_default", "password", password=WRONG_PASSWORD)
        results = run_at_once(20, lambda i: DataQCHook().get_resource_status("success-0"))
        assert all(isinstance(r, DataQCApiError) and r.status_code == 401 for r in results)
        assert len({str(r) for r in results}) == 1 and "The username or password is wrong." in str(results[0])
        assert emu.iam_calls == 1  # IAM's lock-out counter is not run up by waiting callers
        with pytest.raises(DataQCApiError):
            DataQCHook().get_resource_status("success-0")
        assert emu.iam_calls == 2  # a later call tries again (the password may have been fixed)


def test_a_wrong_password_never_rides_on_a_token_earned_with_the_right_one(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = fresh_emulator
    set_connection(monkeypatch, emu, "good", "password")
    set_connection(monkeypatch, emu, "bad", "password", password=WRONG_PASSWORD)
    assert DataQCHook("good").get_resource_status("success-0").is_success
    ok, message = DataQCHook("bad").test_connection()
    assert not ok and "The username or password is wrong." in message
    assert emu.iam_calls == 2


def test_async_client_shares_one_token_fetch_among_concurrent_polls(
    fresh_emulator: Emulator, use_connection: Any
) -> None:
    # IAM answers slowly, so every poll asks for a token while the one fetch is in flight.
    emu = fresh_emulator
    emu.faults = FaultPlan(rate=1.0, mix={"slow": 1.0}, operations=("iam",), slow_seconds=0.3)
    use_connection(emu, "password")

    async def poll_all() -> list[str]:
        log = logging.getLogger("airflow_provider_dataqc.tests")
        async with AsyncDataQCClient("dataqc_default", log=log) as client:
            found = await asyncio.gather(*(client.get_resource_status(f"success-0-c{i}") for i in range(20)))
        return [s.status for s in found]

    assert asyncio.run(poll_all()) == ["SUCCESS"] * 20
    assert emu.iam_calls == 1 and emu.count("status") == 20


def test_async_client_polls_with_a_wrong_password_cost_one_iam_call(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = fresh_emulator
    emu.faults = FaultPlan(rate=1.0, mix={"slow": 1.0}, operations=("iam",), slow_seconds=0.3)
    set_connection(monkeypatch, emu, "dataqc_default", "password", password=WRONG_PASSWORD)

    async def poll_all() -> list[BaseException | Any]:
        async with AsyncDataQCClient("dataqc_default", log=logging.getLogger("tests")) as client:
            polls = (client.get_resource_status(f"success-0-c{i}") for i in range(10))
            return await asyncio.gather(*polls, return_exceptions=True)

    results = asyncio.run(poll_all())
    assert all(isinstance(r, DataQCApiError) and r.error_msg == "The username or password is wrong." for r in results)
    assert emu.iam_calls == 1 and emu.count("status") == 0


# ------------------------------------------------------------------------------- AK/SK
def test_aksk_wrong_secret_key_is_a_401_naming_the_signature(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, run_dag: Any
) -> None:
    emu = fresh_emulator
    mode_connection(monkeypatch, emu, "bad_sk")
    with pytest.raises(DataQCApiError) as caught:
        DataQCHook("dataqc_auth_bad_sk").get_resource_status("success-0")
    assert caught.value.status_code == 401 and "AK/SK signature rejected (signature mismatch)" in str(caught.value)
    assert WRONG_SK not in str(caught.value)
    state, tasks = run_dag("dataqc_auth_bad_sk", files=(DAG_FILE,), conf={"resource_id": unique("success-1")})
    assert state == "failed" and tasks == {"wait": "failed"}
    assert statuses(emu) == [401, 401]  # no retry of a rejected signature


def test_aksk_signature_dated_more_than_15_minutes_ago_is_rejected(
    fresh_emulator: Emulator, use_connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_connection(fresh_emulator, "aksk")
    real_sign = signer.sign
    skewed = datetime.now(timezone.utc) - timedelta(minutes=16)
    # A local clock 16 minutes slow: nothing else here can produce one.
    monkeypatch.setattr(signer, "sign", lambda **kw: real_sign(**{**kw, "now": skewed}))
    with pytest.raises(DataQCApiError) as caught:
        DataQCHook().get_resource_status("success-0")
    assert caught.value.status_code == 401 and "stale X-Sdk-Date" in str(caught.value)
    monkeypatch.setattr(signer, "sign", lambda **kw: real_sign(**{**kw, "now": skewed + timedelta(minutes=2)}))
    assert DataQCHook().get_resource_status("success-0").is_success  # 14 minutes: still accepted


def test_aksk_security_token_is_sent_and_signed(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response(json.dumps({"status": "SUCCESS", "resource_id": "r-1"}), content_type="application/json")

    path = f"/v2/{DEFAULT_PROJECT_ID}/quality/resource/status/r-1"
    httpserver.expect_request(path).respond_with_handler(handler)
    conn = {
        "conn_type": "dataqc",
        "host": httpserver.url_for("/").rstrip("/"),
        "login": DEFAULT_AKSK[0],
        "password": DEFAULT_AKSK[1],
        "extra": {
            "auth_type": "aksk",
            "project_id": DEFAULT_PROJECT_ID,
            "workspace": "ws-1",
            "security_token": SECURITY_TOKEN,
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", json.dumps(conn))
    assert DataQCHook().get_resource_status("r-1").is_success
    request = seen[0]
    headers = {k: v for k, v in request.headers.items()}
    assert headers["X-Security-Token"] == SECURITY_TOKEN
    signed = re.search(r"SignedHeaders=([^,]+)", headers["Authorization"])
    assert signed is not None and {"host", "x-security-token", "x-sdk-date", "workspace"} <= set(
        signed.group(1).split(";")
    )

    def check(given: dict[str, str]) -> signer.SignatureCheck:
        return signer.verify(
            method="GET",
            path=path,
            query=[],
            headers=given,
            body=None,
            secret_for={DEFAULT_AKSK[0]: DEFAULT_AKSK[1]}.get,
        )

    assert check(headers).ok
    assert check({**headers, "X-Security-Token": "another-token"}).reason == "signature mismatch"


# ------------------------------------------------------------------------------- test_connection
GOOD_AND_BAD = [
    ("token", {}, {"password": WRONG_TOKEN}),
    ("password", {}, {"password": WRONG_PASSWORD}),
    ("aksk", {}, {"password": WRONG_SK}),
    ("aksk", {"security_token": SECURITY_TOKEN}, {"password": WRONG_SK, "security_token": SECURITY_TOKEN}),
]


@pytest.mark.parametrize(("mode", "good_extra", "bad"), GOOD_AND_BAD, ids=["token", "password", "aksk", "aksk_sts"])
def test_test_connection_in_every_mode_both_ways(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, mode: str, good_extra: dict, bad: dict
) -> None:
    emu = fresh_emulator
    set_connection(monkeypatch, emu, "good", mode, **good_extra)
    bad = dict(bad)
    set_connection(monkeypatch, emu, "bad", mode, password=bad.pop("password"), **bad)
    ok, message = DataQCHook("good").test_connection()
    assert ok, message
    assert "credentials were accepted" in message and "DQC.1016" in message
    assert emu.count("status", resource_id="airflow-provider-dataqc-connection-test") == 1
    ok, message = DataQCHook("bad").test_connection()
    assert not ok and message.startswith("Credentials rejected") and "HTTP 401" in message
    for secret in (WRONG_TOKEN, WRONG_PASSWORD, WRONG_SK, SECURITY_TOKEN, DEFAULT_USER[1], DEFAULT_AKSK[1]):
        assert secret not in message


def test_test_connection_reports_a_refused_project_and_a_wrong_workspace(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = fresh_emulator
    set_connection(monkeypatch, emu, "other_project", "token", project_id="f" * 32)
    ok, message = DataQCHook("other_project").test_connection()
    assert not ok and message.startswith("Credentials rejected") and "HTTP 403" in message
    set_connection(monkeypatch, emu, "no_such_workspace", "token", workspace="ws-nope")
    ok, message = DataQCHook("no_such_workspace").test_connection()
    assert not ok and "workspace was refused" in message and "ws-nope" in message


# ------------------------------------------------------------------------------- connection form
FORM_LABELS = {
    "project_id": "Project ID",
    "workspace": "Workspace ID",
    "region": "Region",
    "auth_type": "Auth type",
    "domain_name": "Account (domain) name",
    "security_token": "Security token",
    "iam_endpoint": "IAM endpoint",
}
RELABELING = {"host": "Endpoint", "login": "User name or Access Key", "password": "Password, Secret Key or token"}


def test_providers_manager_sees_the_connection_form() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    widgets = {k: v for k, v in manager.connection_form_widgets.items() if k.startswith("extra__dataqc__")}
    assert set(widgets) == {f"extra__dataqc__{name}" for name in FORM_LABELS}
    behaviour = manager.field_behaviours["dataqc"]
    assert behaviour["relabeling"] == RELABELING
    assert set(behaviour["hidden_fields"]) == {"schema", "port"}
    placeholders = behaviour["placeholders"]
    assert placeholders["host"].startswith("https://dayu.cn-north-4.myhuaweicloud.com")
    assert "Access Key" in placeholders["login"] and "Secret Key" in placeholders["password"]
    assert placeholders["extra__dataqc__iam_endpoint"] == "https://iam.cn-north-4.myhuaweicloud.com"
    assert placeholders["extra__dataqc__region"] == "cn-north-4"
    assert "extra__dataqc__security_token" not in placeholders  # a secret shows no example
    for name, label in FORM_LABELS.items():
        info = widgets[f"extra__dataqc__{name}"]
        assert info.hook_class_name.endswith("DataQCHook")  # Airflow 2 keeps only the class name
        assert info.is_sensitive is (name == "security_token"), name
        field = info.field
        if isinstance(field, dict):  # Airflow 3: a JSON-schema description of the field
            assert field["schema"]["title"] == label and field["description"]
        else:  # Airflow 2: a wtforms field
            assert str(field.args[0]) == label and field.kwargs["description"]
    descriptions = {name: _description(widgets[f"extra__dataqc__{name}"].field) for name in FORM_LABELS}
    assert "token" in descriptions["auth_type"] and "aksk" in descriptions["auth_type"]
    assert "https://iam.{region}.myhuaweicloud.com" in descriptions["iam_endpoint"]
    assert "AK/SK" in descriptions["security_token"] and "password" in descriptions["domain_name"]


def _description(field: Any) -> str:
    return str(field["description"] if isinstance(field, dict) else field.kwargs["description"])


def test_hook_form_methods_work_on_airflow_2_and_3() -> None:
    import airflow

    behaviour = DataQCHook.get_ui_field_behaviour()
    assert behaviour["relabeling"] == RELABELING and "port" in behaviour["hidden_fields"]
    if airflow.__version__.startswith("2."):
        from wtforms import PasswordField, StringField

        widgets = DataQCHook.get_connection_form_widgets()
        assert set(widgets) == set(FORM_LABELS)
        for name, label in FORM_LABELS.items():
            expected = PasswordField if name == "security_token" else StringField
            assert widgets[name].field_class is expected and str(widgets[name].args[0]) == label
    else:  # Airflow 3 reads the form from the provider info instead (no Flask in the process)
        from airflow_provider_dataqc.get_provider_info import get_provider_info

        fields = get_provider_info()["connection-types"][0]["conn-fields"]
        assert {name: spec["label"] for name, spec in fields.items()} == FORM_LABELS


# ------------------------------------------------------------------------------- README
def test_readme_has_a_section_and_a_working_example_per_auth_mode() -> None:
    readme = (REPO / "README.md").read_text()
    auth = readme[readme.index("### Authentication") :]
    auth = auth[: auth.index("\n## ")]
    for heading in (
        "**IAM token** (`auth_type: token`)",
        "**IAM user and password** (`auth_type: password`)",
        "**Access Key / Secret Key** (`auth_type: ak_sk`)",
    ):
        assert heading in auth
    blocks = re.findall(r"```(?:json|bash)\n(.*?)```", readme, re.S)
    examples: dict[str, dict[str, Any]] = {}
    for block in blocks:
        if '"conn_type": "dataqc"' in block:
            conn = json.loads(block[block.index("{") : block.rindex("}") + 1])
            examples.setdefault(conn["extra"]["auth_type"], conn)
    assert set(examples) >= {"token", "password", "ak_sk"}
    for mode, conn in examples.items():
        filled = json.loads(re.sub(r"<[^>]+>", "placeholder-value", json.dumps(conn)))
        extra = {**filled["extra"], "project_id": DEFAULT_PROJECT_ID, "workspace": "ws-dev"}
        parsed = ConnectionSettings.from_connection(
            host=filled.get("host"),
            login=filled.get("login"),
            password=filled.get("password"),
            port=None,
            schema=None,
            extra=extra,
        )
        assert parsed.auth_type.value == {"ak_sk": "aksk"}.get(mode, mode)  # the internal name stays aksk
    for words in ("10 minutes", "half", "once", "security_token", "X-Auth-Token", "SDK-HMAC-SHA256"):
        assert words in auth, words
