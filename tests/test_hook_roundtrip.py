"""DataQCHook's export, upload, import and download calls against the local emulator
(and, for answers the emulator does not give, pytest-httpserver on 127.0.0.1)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from airflow_provider_dataqc.hooks.dataqc import DataQCApiError, DataQCHook, DownloadResult, UploadResult
from airflow_provider_dataqc.testing.emulator import DEFAULT_PROJECT_ID, Emulator, FaultPlan, read_manifest

MB = 1024 * 1024


def finish(hook: DataQCHook, resource_id: str, workspace: str | None = None, polls: int = 20) -> Any:
    """Poll until the task ends (the emulator moves one step per poll)."""
    for _ in range(polls):
        status = hook.get_resource_status(resource_id, workspace=workspace)
        if status.is_terminal:
            return status
    raise AssertionError(f"{resource_id} did not finish in {polls} polls")


def exported_file(hook: DataQCHook, tmp_path: Path, resource_ids: list[int], kind: str = "quality-task") -> Path:
    resource_id = hook.export_resources(kind, resources=resource_ids)
    assert finish(hook, resource_id).is_success
    return Path(hook.download_resource_file(resource_id, tmp_path / f"{resource_id}.zip").destination)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def hook(fresh_emulator: Emulator, use_connection: Any) -> DataQCHook:
    use_connection(fresh_emulator)
    return DataQCHook()


# --------------------------------------------------------------------------- export


def test_export_sends_the_documented_body_and_returns_the_resource_id(
    hook: DataQCHook, fresh_emulator: Emulator
) -> None:
    resource_id = hook.export_resources("quality-task", resources=[101, "102"])
    assert resource_id and isinstance(resource_id, str)
    [export] = fresh_emulator.exports("ws-dev")
    assert export["resource_id"] == resource_id
    assert export["type"] == "quality-task" and export["resources"] == [101, 102]
    assert export["is_select_all"] is False and export["export_mode"] is None
    status = finish(hook, resource_id)
    assert status.is_success and status.action == "EXPORT" and status.resource_type == "QUALITY_TASK"


def test_export_of_everything_and_of_a_report_to_obs(hook: DataQCHook, fresh_emulator: Emulator) -> None:
    hook.export_resources("rule-template", select_all=True, workspace="ws-prod")
    hook.export_resources("report", resources=[7], export_mode="OBS", obs_service_type="Business")
    [everything] = fresh_emulator.exports("ws-prod")
    assert everything["is_select_all"] is True and everything["resources"] == []
    [report] = fresh_emulator.exports("ws-dev")
    assert report["type"] == "report" and report["export_mode"] == "obs" and report["obs_service_type"] == "business"


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"resource_type": "quality-job"}, ["quality-job", "rule-template, quality-task, consistency-task, report"]),
        ({"resource_type": "quality-task", "resources": None}, ["resources", "select_all=True"]),
        ({"resource_type": "quality-task", "resources": ["12a"]}, ["integer IDs", "12a"]),
        ({"resource_type": "quality-task", "resources": [1], "export_mode": "obs"}, ["report", "only"]),
        ({"resource_type": "report", "resources": [1], "export_mode": "ftp"}, ["export_mode", "obs"]),
        ({"resource_type": "report", "resources": [1], "obs_service_type": "x"}, ["technology, business"]),
    ],
)
def test_export_refuses_bad_arguments_before_any_request(
    hook: DataQCHook, fresh_emulator: Emulator, kwargs: dict[str, Any], fragments: list[str]
) -> None:
    resource_type = kwargs.pop("resource_type")
    with pytest.raises(DataQCApiError) as caught:
        hook.export_resources(resource_type, **kwargs)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert fresh_emulator.count() == 0


# --------------------------------------------------------------------------- upload


def test_upload_of_a_local_file_keeps_everything_the_service_reported(
    hook: DataQCHook, fresh_emulator: Emulator, tmp_path: Path
) -> None:
    source = exported_file(hook, tmp_path, [5, 6])
    result = hook.upload_resource_file("quality-task", source, workspace="ws-prod")
    assert isinstance(result, UploadResult)
    assert result.resource_id
    assert result.topics == ["Emulated Topic"]
    assert result.matched_topics and result.matched_topics[0]["name"] == "Emulated Topic"
    assert result.directories == ["/emulator/quality-task"]
    assert result.connections == [{"name": "dws_emulated", "type": "DWS"}]
    assert result.queues == []
    assert result.to_dict()["resource_id"] == result.resource_id
    [upload] = fresh_emulator.uploads("ws-prod")
    assert upload["content"] == source.read_bytes() and upload["file_name"] == source.name
    assert upload["type"] == "quality-task" and upload["from_emulator"] is True
    status = hook.get_resource_status(result.resource_id, workspace="ws-prod")
    assert status.action == "IMPORT" and status.status == "WAITING"


def test_upload_of_a_file_object_with_and_without_a_name(hook: DataQCHook, fresh_emulator: Emulator) -> None:
    hook.upload_resource_file("rule-template", io.BytesIO(b"PK not really a zip"))
    hook.upload_resource_file("rule-template", io.BytesIO(b"second"), file_name="dir/rules-2024.zip")
    first, second = fresh_emulator.uploads("ws-dev")
    assert first["content"] == b"PK not really a zip" and first["file_name"] == "resources.zip"
    assert second["content"] == b"second" and second["file_name"] == "rules-2024.zip"


def test_upload_refuses_a_missing_file_a_text_file_and_a_bad_type_before_any_request(
    hook: DataQCHook, fresh_emulator: Emulator, tmp_path: Path
) -> None:
    with pytest.raises(DataQCApiError, match="does not exist"):
        hook.upload_resource_file("quality-task", tmp_path / "missing.zip")
    with pytest.raises(DataQCApiError, match="is not a file"):
        hook.upload_resource_file("quality-task", tmp_path)
    (tmp_path / "text.json").write_text("{}")
    with open(tmp_path / "text.json") as text, pytest.raises(DataQCApiError, match="binary mode"):
        hook.upload_resource_file("quality-task", text)  # type: ignore[arg-type]
    with pytest.raises(DataQCApiError, match=r"rule-template, quality-task, consistency-task$"):
        hook.upload_resource_file("report", tmp_path / "text.json")
    assert fresh_emulator.count() == 0


def test_upload_with_aksk_signs_the_multipart_body_as_unsigned_payload(
    fresh_emulator: Emulator, use_connection: Any
) -> None:
    use_connection(fresh_emulator, auth_type="aksk")
    result = DataQCHook().upload_resource_file("consistency-task", io.BytesIO(b"x" * 1000))
    assert result.resource_id
    [request] = [r for r in fresh_emulator.requests if r.operation == "upload"]
    assert request.status == 200 and request.headers["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"


# --------------------------------------------------------------------------- import


@pytest.mark.parametrize(
    "directories",
    [
        {"/emulator/quality-task": "/prod/quality"},
        [{"old_value": "/emulator/quality-task", "new_value": "/ignored", "mapping_value": "/prod/quality"}],
    ],
)
def test_import_applies_mappings_and_the_resources_appear_in_the_target_workspace_only(
    hook: DataQCHook, fresh_emulator: Emulator, tmp_path: Path, directories: Any
) -> None:
    source = exported_file(hook, tmp_path, [11, 12])
    upload = hook.upload_resource_file("quality-task", source, workspace="ws-prod")
    assert (
        hook.import_resources(
            upload.resource_id,
            "quality-task",
            strategy="override",
            directories=directories,
            topics={"Emulated Topic": "Production"},
            workspace="ws-prod",
        )
        is None
    )
    assert fresh_emulator.imported("ws-prod") == []  # visible once the import succeeded
    status = finish(hook, upload.resource_id, workspace="ws-prod")
    assert status.is_success and status.action == "IMPORT"
    imported = sorted(fresh_emulator.imported("ws-prod"), key=lambda item: item["name"])
    assert [item["name"] for item in imported] == ["quality_task_11", "quality_task_12"]
    assert {item["directory"] for item in imported} == {"/prod/quality"}
    assert {item["topic"] for item in imported} == {"Production"}
    assert {item["strategy"] for item in imported} == {"OVERRIDE"}
    assert fresh_emulator.imported("ws-dev") == []
    body = json.loads(status.import_body or "{}")
    assert body["directories"][0]["old_value"] == "/emulator/quality-task"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"strategy": "REPLACE"}, "strategy 'REPLACE' is not one of: SKIP, OVERRIDE, TERMINATION"),
        ({"resource_type": "report"}, "rule-template, quality-task, consistency-task"),
        ({"directories": "a=b"}, "dict or a list of dicts"),
        ({"queues": [{"new_value": "q"}]}, "old_value"),
        ({"resource_id": " "}, "resource_id is required"),
    ],
)
def test_import_refuses_bad_arguments_before_any_request(
    hook: DataQCHook, fresh_emulator: Emulator, kwargs: dict[str, Any], fragment: str
) -> None:
    arguments: dict[str, Any] = {"resource_id": "r-1", "resource_type": "quality-task", **kwargs}
    with pytest.raises(DataQCApiError) as caught:
        hook.import_resources(arguments.pop("resource_id"), arguments.pop("resource_type"), **arguments)
    assert fragment in str(caught.value)
    assert fresh_emulator.count() == 0


def test_import_with_termination_fails_on_duplicate_names(hook: DataQCHook, tmp_path: Path) -> None:
    source = exported_file(hook, tmp_path, [21])
    first = hook.upload_resource_file("quality-task", source, workspace="ws-prod")
    hook.import_resources(first.resource_id, "quality-task", workspace="ws-prod")
    assert finish(hook, first.resource_id, workspace="ws-prod").is_success
    again = hook.upload_resource_file("quality-task", source, workspace="ws-prod")
    hook.import_resources(again.resource_id, "quality-task", strategy="TERMINATION", workspace="ws-prod")
    status = finish(hook, again.resource_id, workspace="ws-prod")
    assert status.status == "FAILED"
    assert "quality_task_21" in (status.error_msg or "") and "already exists" in (status.error_msg or "")


# --------------------------------------------------------------------------- download


def test_download_lands_whole_with_its_size_hash_and_file_name(
    hook: DataQCHook, fresh_emulator: Emulator, tmp_path: Path
) -> None:
    fresh_emulator.download_size = 300_000
    resource_id = hook.export_resources("rule-template", resources=[1, 2])
    finish(hook, resource_id)
    target = tmp_path / "deep" / "er" / "rules.zip"
    result = hook.download_resource_file(resource_id, target)
    assert isinstance(result, DownloadResult)
    content = target.read_bytes()
    assert result.destination == str(target) and result.size == len(content) == 300_000
    assert result.sha256 == hashlib.sha256(content).hexdigest()
    assert result.file_name == f"rule-template-{resource_id}.zip"
    manifest = read_manifest(content)
    assert manifest is not None and manifest["resource_id"] == resource_id
    assert [item["id"] for item in manifest["items"]] == [1, 2]
    assert zipfile.ZipFile(target).testzip() is None
    assert leftovers(target.parent) == ["rules.zip"]


def test_download_replaces_an_existing_file_only_when_complete(
    hook: DataQCHook, fresh_emulator: Emulator, tmp_path: Path
) -> None:
    target = tmp_path / "export.zip"
    target.write_bytes(b"the previous release")
    assert finish(hook, "success-0-replace").is_success
    first = hook.download_resource_file("success-0-replace", target)
    assert target.read_bytes() != b"the previous release" and target.stat().st_size == first.size
    target.write_bytes(b"the previous release")
    fresh_emulator.faults = FaultPlan(rate=1.0, operations=("download",), mix={"truncated": 1})
    with pytest.raises(DataQCApiError):
        hook.download_resource_file("success-0-replace", target)
    assert target.read_bytes() == b"the previous release"
    assert leftovers(tmp_path) == ["export.zip"]


def test_an_interrupted_download_leaves_no_file_and_raises_a_clear_error(
    fresh_emulator: Emulator, use_connection: Any, tmp_path: Path
) -> None:
    use_connection(fresh_emulator, max_retries=2)
    fresh_emulator.download_size = 2 * MB
    fresh_emulator.faults = FaultPlan(rate=1.0, operations=("download",), mix={"truncated": 1})
    target = tmp_path / "out" / "export.zip"
    hook = DataQCHook()
    assert finish(hook, "success-0-cut").is_success
    with pytest.raises(DataQCApiError) as caught:
        hook.download_resource_file("success-0-cut", target)
    error = caught.value
    assert "download call failed" in str(error) and "download was cut short after" in str(error)
    assert f"of {2 * MB} bytes" in str(error)
    assert error.status_code is None and error.transient is True
    assert not target.exists() and leftovers(target.parent) == []
    assert fresh_emulator.count("download") == 3  # the first attempt and two retries, all cut
    assert fresh_emulator.faults_injected["truncated"] == 3


def test_a_download_cut_once_is_retried_and_completes(
    hook: DataQCHook, fresh_emulator: Emulator, tmp_path: Path
) -> None:
    fresh_emulator.download_size = MB
    assert finish(hook, "success-0-retry").is_success
    fresh_emulator.faults = FaultPlan(rate=0.5, seed=3, operations=("download",), mix={"truncated": 1})
    results = [hook.download_resource_file("success-0-retry", tmp_path / f"{n}.zip") for n in range(4)]
    assert fresh_emulator.faults_injected["truncated"] >= 1
    assert {r.sha256 for r in results} == {hashlib.sha256((tmp_path / "0.zip").read_bytes()).hexdigest()}
    assert {r.size for r in results} == {MB}
    assert leftovers(tmp_path) == ["0.zip", "1.zip", "2.zip", "3.zip"]


def test_a_download_that_is_not_ready_fails_without_leaving_a_file(
    hook: DataQCHook, fresh_emulator: Emulator, tmp_path: Path
) -> None:
    resource_id = hook.export_resources("quality-task", resources=[1])  # still WAITING
    with pytest.raises(DataQCApiError) as caught:
        hook.download_resource_file(resource_id, tmp_path / "early.zip")
    assert caught.value.status_code == 400 and caught.value.error_code == "DQC.1017"
    assert leftovers(tmp_path) == []


def test_download_checks_its_arguments_before_any_request(
    hook: DataQCHook, fresh_emulator: Emulator, tmp_path: Path
) -> None:
    with pytest.raises(DataQCApiError, match="obs_type is required to download a report; one of: technology, business"):
        hook.download_resource_file("success-0", tmp_path / "r.zip", resource_type="report")
    with pytest.raises(DataQCApiError, match="reports only"):
        hook.download_resource_file("success-0", tmp_path / "r.zip", obs_type="business", resource_type="rule-template")
    with pytest.raises(DataQCApiError, match="obs_type 'tech' is not one of: technology, business"):
        hook.download_resource_file("success-0", tmp_path / "r.zip", obs_type="tech")
    with pytest.raises(DataQCApiError, match="rule-template, quality-task, consistency-task, report"):
        hook.download_resource_file("success-0", tmp_path / "r.zip", resource_type="table")
    with pytest.raises(DataQCApiError, match="is a directory"):
        hook.download_resource_file("success-0", tmp_path)
    assert fresh_emulator.count() == 0 and leftovers(tmp_path) == []


def test_a_report_download_sends_obs_type(hook: DataQCHook, fresh_emulator: Emulator, tmp_path: Path) -> None:
    resource_id = hook.export_resources("report", resources=[3], obs_service_type="technology")
    finish(hook, resource_id)
    with pytest.raises(DataQCApiError, match="obs_type is required"):  # the service's own check
        hook.download_resource_file(resource_id, tmp_path / "report.zip")
    result = hook.download_resource_file(resource_id, tmp_path / "report.zip", obs_type="technology")
    assert result.size == fresh_emulator.download_size
    [request] = [r for r in fresh_emulator.requests if r.operation == "download" and r.status == 200]
    assert ("obs_type", "technology") in request.query


def test_a_50_mb_download_keeps_memory_flat(fresh_emulator: Emulator, use_connection: Any, tmp_path: Path) -> None:
    use_connection(fresh_emulator)
    fresh_emulator.download_size = 50 * MB
    hook = DataQCHook()
    assert finish(hook, "success-0-big").is_success  # the connection is read outside the measure
    tracemalloc.start()
    try:
        result = hook.download_resource_file("success-0-big", tmp_path / "big.zip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The peak counts the in-process emulator too; the body is never held whole.
    print(f"\n50 MB download: tracemalloc peak {peak / MB:.2f} MB")
    assert result.size == 50 * MB == (tmp_path / "big.zip").stat().st_size
    assert peak < 20 * MB, f"peak {peak / MB:.1f} MB"


# --------------------------------------------------------------------------- whole round trip


@pytest.mark.parametrize("auth_type", ["token", "password", "aksk"])
def test_round_trip_from_dev_to_prod(
    fresh_emulator: Emulator, use_connection: Any, tmp_path: Path, auth_type: str
) -> None:
    use_connection(fresh_emulator, auth_type=auth_type)
    hook = DataQCHook()
    resource_id = hook.export_resources("rule-template", resources=[31, 32], workspace="ws-dev")
    assert finish(hook, resource_id, workspace="ws-dev").is_success
    downloaded = hook.download_resource_file(resource_id, tmp_path / "rules.zip", workspace="ws-dev")
    upload = hook.upload_resource_file("rule-template", downloaded.destination, workspace="ws-prod")
    hook.import_resources(upload.resource_id, "rule-template", workspace="ws-prod")
    assert finish(hook, upload.resource_id, workspace="ws-prod").is_success
    assert sorted(item["name"] for item in fresh_emulator.imported("ws-prod")) == [
        "rule_template_31",
        "rule_template_32",
    ]
    assert {item["source_workspace"] for item in fresh_emulator.imported("ws-prod")} == {"ws-dev"}
    assert fresh_emulator.imported("ws-dev") == []
    [upload_record] = fresh_emulator.uploads("ws-prod")
    assert hashlib.sha256(upload_record["content"]).hexdigest() == downloaded.sha256


# --------------------------------------------------------------------------- answers the emulator does not give


@pytest.fixture
def served_hook(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> DataQCHook:
    conn = {
        "conn_type": "dataqc",
        "host": httpserver.url_for("/").rstrip("/"),
        "password": "tok-123",
        "extra": {"project_id": DEFAULT_PROJECT_ID, "workspace": "ws-1", "backoff_factor": 0.001, "max_retries": 1},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", json.dumps(conn))
    return DataQCHook()


DOWNLOAD_PATH = f"/v2/{DEFAULT_PROJECT_ID}/quality/resource/download"


def test_a_compressed_download_is_stored_decoded_with_a_utf8_file_name(
    served_hook: DataQCHook, httpserver: HTTPServer, tmp_path: Path
) -> None:
    payload = b"quality rules " * 10_000
    packed = gzip.compress(payload)
    headers = {
        "Content-Encoding": "gzip",
        "Content-Disposition": "attachment; filename*=UTF-8''%E8%A7%84%E5%88%99.zip",
        "X-Request-Id": "req-1",
    }
    httpserver.expect_request(DOWNLOAD_PATH, query_string="resource_id=r-9").respond_with_response(
        Response(packed, headers=headers, content_type="application/octet-stream")
    )
    result = served_hook.download_resource_file("r-9", tmp_path / "rules.zip")
    assert (tmp_path / "rules.zip").read_bytes() == payload
    assert result.size == len(payload) and result.sha256 == hashlib.sha256(payload).hexdigest()
    assert result.file_name == "规则.zip"


def test_a_download_error_answer_is_reported_with_its_request_id(
    served_hook: DataQCHook, httpserver: HTTPServer, tmp_path: Path
) -> None:
    body = json.dumps({"error_code": "DQC.1016", "error_msg": "The resource does not exist"})
    httpserver.expect_request(DOWNLOAD_PATH).respond_with_response(
        Response(body, status=404, headers={"X-Request-Id": "req-404"}, content_type="application/json")
    )
    with pytest.raises(DataQCApiError) as caught:
        served_hook.download_resource_file("r-404", tmp_path / "x.zip")
    assert caught.value.request_id == "req-404" and caught.value.error_code == "DQC.1016"
    assert "The resource does not exist" in str(caught.value)
    assert leftovers(tmp_path) == []
