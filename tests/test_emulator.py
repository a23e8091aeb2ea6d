"""Tests of the DataArts Quality emulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import subprocess
import sys
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
import requests

from airflow_provider_dataqc.core import api
from airflow_provider_dataqc.core.auth import IamToken, parse_token_answer, prepare
from airflow_provider_dataqc.core.settings import ConnectionSettings, encode_path_id
from airflow_provider_dataqc.core.status import API_FIELDS, Outcome, ResourceStatus, assess
from airflow_provider_dataqc.testing.emulator import (
    DEFAULT_AKSK,
    DEFAULT_PROJECT_ID,
    DEFAULT_TOKEN,
    DEFAULT_USER,
    FAILED_MESSAGE,
    FAULT_KINDS,
    Emulator,
    FaultPlan,
    read_manifest,
    running_emulator,
    running_emulator_async,
)

P = DEFAULT_PROJECT_ID
BASE = f"/v2/{P}/quality/resource"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with running_emulator() as emulator:
        yield emulator


def settings_for(emulator: Emulator, auth: str = "token", **extra: Any) -> ConnectionSettings:
    login, password = {
        "token": (None, DEFAULT_TOKEN),
        "aksk": DEFAULT_AKSK,
        "password": (DEFAULT_USER[0], DEFAULT_USER[1]),
    }[auth]
    return ConnectionSettings.from_connection(
        host=emulator.url,
        login=login,
        password=password,
        port=None,
        schema=None,
        extra={
            "auth_type": auth,
            "project_id": P,
            "workspace": "ws-dev",
            "domain_name": DEFAULT_USER[2],
            "iam_endpoint": emulator.url,
            **extra,
        },
    )


def send(
    emulator: Emulator,
    request: api.ApiRequest,
    *,
    auth: str = "token",
    token: str | None = None,
    now: datetime | None = None,
    session: Any = requests,
    **kwargs: Any,
) -> requests.Response:
    """Build, authenticate and send ``request`` exactly as the provider's core does."""
    prepared = prepare(settings_for(emulator, auth), request, token=token, now=now)
    return session.request(  # type: ignore[no-any-return]
        prepared.method, prepared.url, headers=dict(prepared.headers), data=prepared.body, timeout=10, **kwargs
    )


def status(emulator: Emulator, resource_id: str, workspace: str = "ws-dev", **kwargs: Any) -> requests.Response:
    return send(emulator, api.status_request(P, workspace, resource_id), **kwargs)


def poll(emulator: Emulator, resource_id: str, times: int, workspace: str = "ws-dev") -> list[dict[str, Any]]:
    answers = []
    for _ in range(times):
        answer = status(emulator, resource_id, workspace)
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
    return answers


def export(emulator: Emulator, workspace: str = "ws-dev", **kwargs: Any) -> str:
    kwargs.setdefault("resources", [11, 12])
    answer = send(emulator, api.export_request(P, workspace, kwargs.pop("kind", "rule-template"), **kwargs))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["resource_id"])


def upload(emulator: Emulator, content: bytes, workspace: str = "ws-prod", auth: str = "token") -> requests.Response:
    request = api.upload_request(P, workspace, "rule-template", file_name="export.zip", content=content)
    return send(emulator, request, auth=auth)


def raw(emulator: Emulator, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return requests.request(method, emulator.url + path, headers=headers, timeout=10, **kwargs)


# ------------------------------------------------------------------------------- life cycles
@pytest.mark.parametrize(
    ("resource_id", "expected", "outcome"),
    [
        ("success-2", [("WAITING", "PREPARING"), ("RUNNING", "PREPARING"), ("SUCCESS", "GENERATED")], "success"),
        ("success-0", [("SUCCESS", "GENERATED")], "success"),
        ("failed-1", [("WAITING", "PREPARING"), ("FAILED", "FAILED")], "failed"),
        ("timeout-2", [("WAITING", "PREPARING"), ("RUNNING", "PREPARING"), ("TIMEOUT", "FAILED")], "failed"),
        ("filefail-1", [("WAITING", "PREPARING"), ("SUCCESS", "FAILED")], "failed"),
        ("slowfile-2", [("SUCCESS", "PREPARING"), ("SUCCESS", "PREPARING"), ("SUCCESS", "GENERATED")], "success"),
        ("unknown-2", [("PAUSED", "PREPARING"), ("PAUSED", "PREPARING"), ("SUCCESS", "GENERATED")], "success"),
        ("success-1-run42", [("WAITING", "PREPARING"), ("SUCCESS", "GENERATED")], "success"),
    ],
)
def test_convention_life_cycles(emu: Emulator, resource_id: str, expected: list[Any], outcome: str) -> None:
    answers = poll(emu, resource_id, len(expected) + 2)
    seen = [(a["status"], a["file_status"]) for a in answers]
    assert seen == expected + [expected[-1]] * 2  # one step per poll, then the last step repeats
    final = answers[-1]
    assert set(final) == set(API_FIELDS)
    assert final["resource_id"] == resource_id and final["project_id"] == P and final["action"] == "EXPORT"
    assert re.fullmatch(r"\d{13}", str(final["start_time"]))
    assert re.fullmatch(r"\d{13}", str(final["end_time"])) and final["end_time"] >= final["start_time"]
    if expected[0][0] not in ("SUCCESS", "FAILED", "TIMEOUT"):
        assert answers[0]["end_time"] is None  # set only once the task ends
    record = ResourceStatus.from_api(final)
    assert assess(record, wait_for_file=True).outcome is Outcome(outcome)
    if resource_id.startswith("failed"):
        assert final["error_msg"] == FAILED_MESSAGE
    if resource_id.startswith("timeout"):
        assert final["error_msg"]
    if resource_id.startswith("unknown"):
        assert assess(ResourceStatus.from_api(answers[0])).unknown_status


def test_unknown_id_answers_404_with_dqc_body_and_unique_request_ids(emu: Emulator) -> None:
    first, second = status(emu, "no-such-task"), status(emu, "no-such-task")
    assert first.status_code == 404
    assert first.json() == {"error_code": "DQC.1016", "error_msg": "The resource does not exist"}
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["X-Request-Id"])
    assert emu.count("status", resource_id="no-such-task") == 2


def test_unknown_route_is_a_gateway_404(emu: Emulator) -> None:
    answer = raw(emu, "GET", f"{BASE}/nothing", {"X-Auth-Token": DEFAULT_TOKEN, "workspace": "ws-dev"})
    assert answer.status_code == 404 and answer.json()["error_code"] == "APIGW.0101"
    assert answer.headers["X-Request-Id"]
    assert emu.requests[-1].operation == "unknown"


def test_scripted_steps_and_raw_answers_with_percent_encoded_id(emu: Emulator) -> None:
    rid = "odd/id with spaces?#"
    emu.script(
        rid,
        [
            "RUNNING",
            {"http_status": 200, "raw_body": b"<html>maintenance</html>", "content_type": "text/html"},
            {"http_status": 503, "error_msg": "backend busy"},
            {"json": {"status": None}},
            {"status": "SUCCESS", "file_status": "PREPARING", "start_time": "2024-01-02 03:04:05"},
        ],
        workspace="ws-dev",
    )
    assert encode_path_id(rid, "resource_id") in api.status_request(P, "ws-dev", rid).path
    first = status(emu, rid)
    assert first.json()["status"] == "RUNNING" and first.json()["resource_id"] == rid
    html = status(emu, rid)
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert html.content == b"<html>maintenance</html>"
    busy = status(emu, rid)
    assert busy.status_code == 503 and busy.json()["error_msg"] == "backend busy"
    assert status(emu, rid).json() == {"status": None}
    last = status(emu, rid).json()
    assert (last["status"], last["file_status"], last["start_time"]) == ("SUCCESS", "PREPARING", "2024-01-02 03:04:05")
    assert status(emu, rid, "ws-prod").status_code == 404  # scripted for ws-dev only
    with pytest.raises(ValueError, match="unknown step keys"):
        emu.script("x", [{"stauts": "SUCCESS"}])


# ------------------------------------------------------------------------------- authentication
def test_token_checks(emu: Emulator) -> None:
    headers = {"workspace": "ws-dev"}
    missing = raw(emu, "GET", f"{BASE}/status/success-0", headers)
    assert missing.status_code == 401 and missing.json()["error_code"] == "APIGW.0301"
    assert missing.json()["error_msg"].startswith("Incorrect IAM authentication information")
    bad = raw(emu, "GET", f"{BASE}/status/success-0", {**headers, "X-Auth-Token": "forged"})
    assert bad.status_code == 401 and "not valid" in bad.json()["error_msg"]
    assert status(emu, "success-0").status_code == 200
    emu.revoke_tokens(DEFAULT_TOKEN)
    revoked = status(emu, "success-0")
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error_msg"]
    assert emu.count("status", resource_id="success-0") == 4


def test_iam_issues_tokens_that_expire_and_can_be_revoked() -> None:
    with running_emulator(token_lifetime=1.0) as emu:
        iam = api.iam_token_request(user=DEFAULT_USER[0], password="wrong", domain=DEFAULT_USER[2], project_id=P)
        wrong = send(emu, iam, auth="password")
        assert wrong.status_code == 401
        assert wrong.json() == {
            "error": {"code": 401, "message": "The username or password is wrong.", "title": "Unauthorized"}
        }
        good = send(
            emu,
            api.iam_token_request(user=DEFAULT_USER[0], password=DEFAULT_USER[1], domain=DEFAULT_USER[2], project_id=P),
            auth="password",
        )
        assert good.status_code == 201 and emu.iam_calls == 2
        token = good.headers["X-Subject-Token"]
        body = good.json()["token"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["expires_at"])
        assert body["project"]["id"] == P
        parsed = parse_token_answer(good.status_code, good.headers, good.content)
        assert isinstance(parsed, IamToken) and parsed.value == token
        assert 0.5 < (parsed.expires_at - datetime.now(timezone.utc)).total_seconds() <= 1.0
        assert token in emu.issued_tokens
        assert status(emu, "success-0", auth="password", token=token).status_code == 200
        time.sleep(1.1)
        expired = status(emu, "success-0", auth="password", token=token)
        assert expired.status_code == 401 and "expired" in expired.json()["error_msg"]
        fresh = send(
            emu,
            api.iam_token_request(user=DEFAULT_USER[0], password=DEFAULT_USER[1], domain=DEFAULT_USER[2], project_id=P),
            auth="password",
        )
        token2 = fresh.headers["X-Subject-Token"]
        assert token2 != token and status(emu, "success-0", auth="password", token=token2).status_code == 200
        assert emu.revoke_tokens() == 2
        assert status(emu, "success-0", auth="password", token=token2).status_code == 401
        assert emu.iam_calls == 3 and emu.count("iam") == 3


def test_aksk_signatures_good_and_bad(emu: Emulator) -> None:
    assert status(emu, "success-0", auth="aksk").status_code == 200
    stale = status(emu, "success-0", auth="aksk", now=datetime.now(timezone.utc) - timedelta(minutes=20))
    assert stale.status_code == 401 and "stale X-Sdk-Date" in stale.json()["error_msg"]
    emu.aksk[DEFAULT_AKSK[0]] = "another-secret"
    wrong = status(emu, "success-0", auth="aksk")
    assert wrong.status_code == 401 and "signature mismatch" in wrong.json()["error_msg"]
    emu.aksk[DEFAULT_AKSK[0]] = DEFAULT_AKSK[1]
    prepared = prepare(settings_for(emu, "aksk"), api.status_request(P, "ws-dev", "success-0"))
    headers = dict(prepared.headers)
    headers["Authorization"] = headers["Authorization"].replace("host;", "")
    unsigned_host = requests.get(prepared.url, headers=headers, timeout=10)
    assert unsigned_host.status_code == 401 and "host not signed" in unsigned_host.json()["error_msg"]
    tampered = dict(prepared.headers, workspace="ws-prod")
    assert requests.get(prepared.url, headers=tampered, timeout=10).status_code == 401


def test_aksk_end_to_end_export_download_upload_import(emu: Emulator) -> None:
    emu.export_script = ["SUCCESS"]
    rid = send(emu, api.export_request(P, "ws-dev", "rule-template", resources=[7]), auth="aksk").json()["resource_id"]
    assert send(emu, api.status_request(P, "ws-dev", rid), auth="aksk").json()["status"] == "SUCCESS"
    download = send(emu, api.download_request(P, "ws-dev", rid), auth="aksk")  # signed query string
    assert download.status_code == 200 and len(download.content) == emu.download_size
    uploaded = upload(emu, download.content, auth="aksk")  # multipart: UNSIGNED-PAYLOAD
    assert uploaded.status_code == 200, uploaded.text
    imported = send(emu, api.import_request(P, "ws-prod", uploaded.json()["resource_id"], "rule-template"), auth="aksk")
    assert imported.status_code == 204


# ------------------------------------------------------------------------------- project and workspace
def test_workspace_and_project_checks(emu: Emulator) -> None:
    token = {"X-Auth-Token": DEFAULT_TOKEN}
    missing = raw(emu, "GET", f"{BASE}/status/success-0", token)
    assert missing.status_code == 400 and missing.json()["error_code"] == "DQC.0004"
    unknown = raw(emu, "GET", f"{BASE}/status/success-0", {**token, "workspace": "ws-nope"})
    assert unknown.status_code == 400 and "Workspace does not exist" in unknown.json()["error_msg"]
    other = raw(emu, "GET", f"/v2/{'f' * 32}/quality/resource/status/success-0", {**token, "workspace": "ws-dev"})
    assert other.status_code == 403 and other.json()["error_code"]
    rid = export(emu, "ws-dev")
    assert status(emu, rid, "ws-prod").status_code == 404  # exports belong to their workspace
    assert status(emu, rid, "ws-dev").status_code == 200
    assert [r.status for r in emu.requests[:3]] == [400, 400, 403]
    assert emu.requests[1].workspace == "ws-nope"


# ------------------------------------------------------------------------------- export and download
def test_export_status_download(emu: Emulator) -> None:
    emu.download_size = 300_000
    rid = export(emu, resources=[101, 102])
    assert emu.exports("ws-dev")[0]["resources"] == [101, 102] and emu.exports("ws-prod") == []
    early = send(emu, api.download_request(P, "ws-dev", rid))
    assert early.status_code == 400 and early.json()["error_code"].startswith("DQC.")
    answers = poll(emu, rid, 3)
    assert [a["status"] for a in answers] == ["WAITING", "RUNNING", "SUCCESS"]
    assert answers[-1]["file_status"] == "GENERATED" and answers[-1]["export_resources"] == "[101, 102]"
    assert answers[-1]["resource_type"] == "RULE_TEMPLATE"
    answer = send(emu, api.download_request(P, "ws-dev", rid), stream=True)
    assert answer.status_code == 200
    assert answer.headers["Content-Length"] == "300000"
    assert re.fullmatch(r'attachment; filename="[^"]+\.zip"', answer.headers["Content-Disposition"])
    content = b"".join(answer.iter_content(65536))
    assert len(content) == 300_000
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.testzip() is None  # CRCs of the streamed padding are right
        manifest = json.loads(archive.read("manifest.json"))
    assert [item["id"] for item in manifest["items"]] == [101, 102]
    assert send(emu, api.download_request(P, "ws-dev", rid)).content == content  # deterministic
    assert read_manifest(content) == manifest


def test_large_download_is_streamed() -> None:
    size = 48 * 1024 * 1024
    with running_emulator(download_size=size) as emu:
        emu.export_script = ["SUCCESS"]
        rid = export(emu)
        poll(emu, rid, 1)
        tracemalloc.start()
        try:
            answer = send(emu, api.download_request(P, "ws-dev", rid), stream=True)
            received = sum(len(chunk) for chunk in answer.iter_content(1 << 20))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert received == size == int(answer.headers["Content-Length"])
    assert peak < 12 * 1024 * 1024, f"peak {peak} bytes: the body is not streamed"


def test_small_download_size_is_exact() -> None:
    with running_emulator(download_size=100) as emu:
        assert poll(emu, "success-0", 1)[0]["status"] == "SUCCESS"
        answer = send(emu, api.download_request(P, "ws-dev", "success-0"))
        assert answer.status_code == 200 and len(answer.content) == 100


def test_export_validation_and_scripted_export_failure(emu: Emulator) -> None:
    headers = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": "ws-dev"}
    for body in (
        {"type": "nope", "resources": [1]},
        {"type": "rule-template"},
        {"type": "rule-template", "resources": ["1"]},
        {"type": "rule-template", "resources": [1], "export_mode": "obs"},
        {"type": "report", "is_select_all": "yes"},
        [1, 2],
    ):
        answer = raw(emu, "POST", f"{BASE}/export", headers, json=body)
        assert answer.status_code == 400 and answer.json()["error_code"] == "DQC.0001", body
    assert raw(emu, "POST", f"{BASE}/export", headers, data=b"{not json").status_code == 400
    assert emu.exports("ws-dev") == []
    emu.export_script = ["RUNNING", "FAILED"]
    rid = export(emu, select_all=True, resources=None)
    assert [a["status"] for a in poll(emu, rid, 3)] == ["RUNNING", "FAILED", "FAILED"]
    assert send(emu, api.download_request(P, "ws-dev", rid)).status_code == 400


def test_report_download_needs_obs_type(emu: Emulator) -> None:
    emu.export_script = ["SUCCESS"]
    rid = export(emu, kind="report", select_all=True, resources=None, export_mode="obs", obs_service_type="business")
    assert poll(emu, rid, 1)[0]["resource_type"] == "REPORT"
    assert send(emu, api.download_request(P, "ws-dev", rid)).status_code == 400
    assert send(emu, api.download_request(P, "ws-dev", rid, obs_type="business")).status_code == 200


# ------------------------------------------------------------------------------- upload and import
def test_promotion_from_dev_to_prod(emu: Emulator) -> None:
    emu.export_script = ["SUCCESS"]
    rid = export(emu, "ws-dev", resources=[5, 6])
    poll(emu, rid, 1)
    content = send(emu, api.download_request(P, "ws-dev", rid)).content
    uploaded = upload(emu, content, "ws-prod")
    assert uploaded.status_code == 200
    answer = uploaded.json()
    assert set(answer) == {"resource_id", "topics", "matched_topics", "directories", "queues", "connections"}
    assert answer["topics"] == ["Emulated Topic"] and answer["matched_topics"][0]["name"] == "Emulated Topic"
    assert answer["connections"] and set(answer["connections"][0]) == {"name", "type"}
    assert emu.uploads("ws-prod")[0]["content"] == content
    up = answer["resource_id"]
    before = status(emu, up, "ws-prod").json()
    assert before["action"] == "IMPORT" and before["status"] == "WAITING"
    assert send(emu, api.import_request(P, "ws-dev", up, "rule-template")).status_code == 404  # other workspace
    request = api.import_request(
        P, "ws-prod", up, "rule-template", strategy="TERMINATION", topics={"Emulated Topic": "Prod Topic"}
    )
    done = send(emu, request)
    assert done.status_code == 204 and done.content == b"" and done.headers["X-Request-Id"]
    assert emu.count("import", resource_id=up) == 2
    first = status(emu, up, "ws-prod").json()
    assert first["status"] == "RUNNING" and emu.imported("ws-prod") == []  # visible on success only
    second = status(emu, up, "ws-prod").json()
    assert second["status"] == "SUCCESS" and json.loads(second["import_body"])["strategy"] == "TERMINATION"
    imported = emu.imported("ws-prod")
    assert sorted(item["id"] for item in imported) == [5, 6]
    assert {item["topic"] for item in imported} == {"Prod Topic"}
    assert imported[0]["source_workspace"] == "ws-dev" and emu.imported("ws-dev") == []
    # the same import again: TERMINATION fails on the duplicates, OVERRIDE bumps revisions
    send(emu, request)
    assert [a["status"] for a in poll(emu, up, 2, "ws-prod")] == ["RUNNING", "FAILED"]
    send(emu, api.import_request(P, "ws-prod", up, "rule-template", strategy="OVERRIDE"))
    poll(emu, up, 2, "ws-prod")
    assert {item["revision"] for item in emu.imported("ws-prod")} == {2}


def test_upload_of_a_foreign_file_and_import_validation(emu: Emulator) -> None:
    uploaded = upload(emu, b"PK\x03\x04 not really a zip", "ws-dev")
    assert uploaded.status_code == 200 and uploaded.json()["topics"] == ["Data Quality"]
    headers = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": "ws-dev"}
    no_file = raw(emu, "POST", f"{BASE}/upload", headers, files={"type": (None, "rule-template")})
    assert no_file.status_code == 400
    bad_type = raw(emu, "POST", f"{BASE}/upload", headers, files={"type": (None, "x"), "file": ("a.zip", b"1")})
    assert bad_type.status_code == 400
    up = uploaded.json()["resource_id"]
    for body in (
        {"resource_id": up, "type": "rule-template", "strategy": "MERGE"},
        {"resource_id": up, "type": "quality-task"},
        {"resource_id": up, "type": "rule-template", "topics": [{"new_value": "x"}]},
        {"type": "rule-template"},
    ):
        assert raw(emu, "POST", f"{BASE}/import", headers, json=body).status_code == 400, body
    unknown = raw(emu, "POST", f"{BASE}/import", headers, json={"resource_id": "nope", "type": "rule-template"})
    assert unknown.status_code == 404
    assert send(emu, api.import_request(P, "ws-dev", up, "rule-template")).status_code == 204
    poll(emu, up, 2)
    assert {item["name"] for item in emu.imported("ws-dev")} == {"null_check", "row_count"}


# ------------------------------------------------------------------------------- faults
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind(kind: str) -> None:
    plan = FaultPlan(rate=1.0, mix={kind: 1.0}, slow_seconds=0.4, retry_after=1)
    with running_emulator(faults=plan) as emu:
        request = api.status_request(P, "ws-dev", "success-1")
        if kind in ("reset", "truncated"):
            with pytest.raises(
                requests.ConnectionError if kind == "reset" else requests.exceptions.ChunkedEncodingError
            ):
                send(emu, request)
        elif kind == "slow":
            with pytest.raises(requests.exceptions.ReadTimeout):
                prepared = prepare(settings_for(emu), request)
                requests.get(prepared.url, headers=dict(prepared.headers), timeout=(2, 0.1))
            time.sleep(0.5)
        else:
            answer = send(emu, request)
            expected = {"http500_json": 500, "http502_html": 502, "http503": 503, "http429": 429}[kind]
            assert answer.status_code == expected and answer.headers["X-Request-Id"]
            if kind == "http500_json":
                assert answer.json()["error_code"].startswith("DQC.")
            if kind == "http502_html":
                assert answer.text.startswith("<html>")
            if kind == "http429":
                assert answer.headers["Retry-After"] == "1"
        assert emu.faults_injected == {kind: 1}
        assert emu.requests[-1].fault == kind
        emu.faults = None
        assert status(emu, "success-1").json()["status"] == "WAITING"  # the fault did not advance it
        assert emu.count("status") == 2


def test_fault_rate_never_advances_life_cycles_and_spares_other_operations() -> None:
    plan = FaultPlan(rate=0.3, seed=1, operations=("status",))
    with running_emulator(faults=plan) as emu:
        emu.script("counted", [{"status": "RUNNING", "error_msg": str(i)} for i in range(300)])
        seen: list[int] = []
        session = requests.Session()
        for _ in range(150):
            try:
                answer = status(emu, "counted", session=session)
            except requests.RequestException:
                session = requests.Session()
                continue
            if answer.status_code == 200:
                seen.append(int(answer.json()["error_msg"]))
        assert seen == list(range(len(seen)))  # exactly one step per answered poll
        injected = sum(emu.faults_injected.values())
        assert 25 <= injected <= 70 and injected + len(seen) == 150
        assert injected == sum(1 for r in emu.requests if r.fault)
        assert all(export(emu) for _ in range(10))  # export is not in operations
        assert sum(emu.faults_injected.values()) == injected
    replay = FaultPlan(rate=0.3, seed=1)
    again = FaultPlan(rate=0.3, seed=1)
    assert [replay.draw("status") for _ in range(50)] == [again.draw("status") for _ in range(50)]
    with pytest.raises(ValueError):
        FaultPlan(rate=0.5, mix={"meltdown": 1.0})


# ------------------------------------------------------------------------------- records and helpers
def test_records_hide_secrets_and_counts_reset(emu: Emulator) -> None:
    status(emu, "success-0")
    status(emu, "success-0", auth="aksk")
    iam = api.iam_token_request(user=DEFAULT_USER[0], password=DEFAULT_USER[1], domain=DEFAULT_USER[2], project_id=P)
    token = send(emu, iam, auth="password").headers["X-Subject-Token"]
    raw(
        emu,
        "GET",
        f"{BASE}/status/success-0",
        {"X-Auth-Token": token, "X-Security-Token": "temp-secret", "workspace": "ws-dev"},
    )
    dump = repr(emu.requests)
    for secret in (DEFAULT_TOKEN, DEFAULT_AKSK[1], token, "temp-secret", "Signature=", DEFAULT_USER[1]):
        assert secret not in dump
    assert emu.requests[0].headers["X-Auth-Token"] == "***"
    assert emu.requests[1].headers["Authorization"] == "***"
    assert emu.requests[3].headers["X-Security-Token"] == "***"
    assert [r.operation for r in emu.requests] == ["status", "status", "iam", "status"]
    assert emu.count() == 4 and emu.count("status") == 3 and emu.iam_calls == 1
    emu.reset_counts()
    assert emu.count() == 0 and emu.requests == [] and emu.iam_calls == 0


def test_refuses_non_loopback_hosts() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Emulator(host="0.0.0.0")


async def test_async_start_serves_concurrent_keep_alive_clients() -> None:
    async with running_emulator_async() as emu:
        headers = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": "ws-dev"}
        connector = aiohttp.TCPConnector(limit=20)
        async with aiohttp.ClientSession(emu.url, connector=connector, headers=headers) as session:

            async def one(i: int) -> str:
                async with session.get(f"{BASE}/status/success-{i % 3}") as answer:
                    assert answer.status == 200
                    return str((await answer.json())["status"])

            results = await asyncio.gather(*(one(i) for i in range(300)))
        assert results.count("SUCCESS") >= 290
        assert emu.count("status") == 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_command_line_serves_until_terminated() -> None:
    port = _free_port()
    module = "airflow_provider_dataqc.testing.emulator"
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), "--download-size", "2048"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line == f"DataQC emulator listening on http://127.0.0.1:{port}"
        headers = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": "ws-prod"}
        url = f"http://127.0.0.1:{port}{BASE}"
        assert requests.get(f"{url}/status/success-0", headers=headers, timeout=5).json()["status"] == "SUCCESS"
        download = requests.get(f"{url}/download", params={"resource_id": "success-0"}, headers=headers, timeout=5)
        assert len(download.content) == 2048
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0
    refused = subprocess.run(
        [sys.executable, "-m", module, "--host", "0.0.0.0"], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 2 and "loopback" in refused.stderr
