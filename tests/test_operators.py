"""The export, download and import operators: real ``dag.test()`` runs against the emulator
(poke and deferrable, XCom after a deferral, failures without retries), and the checks
that happen before any request."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSensorTimeout
from conftest import TEST_DAGS

from airflow_provider_dataqc.hooks.dataqc import DataQCApiError
from airflow_provider_dataqc.operators.dataqc import (
    DataQCDownloadOperator,
    DataQCExportOperator,
    DataQCImportOperator,
)
from airflow_provider_dataqc.testing.emulator import Emulator, read_manifest

UPLOAD_FIELDS = {"resource_id", "topics", "matched_topics", "directories", "queues", "connections"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- dag.test() runs


def test_round_trip_dag_in_poke_and_deferrable_mode(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any
) -> None:
    use_connection(fresh_emulator)
    fresh_emulator.download_size = 200_000
    state, tasks = run_dag(
        "dataqc_ops_roundtrip", files=(TEST_DAGS / "dataqc_ops_roundtrip.py",), conf={"out_dir": str(tmp_path)}
    )
    assert state == "success", (tasks, task_logs.text()[-4000:])
    assert set(tasks.values()) == {"success"} and len(tasks) == 7
    xcoms = json.loads((tmp_path / "xcoms.json").read_text())

    # Export: the XCom is the resource_id, after waiting in the worker and after a deferral alike.
    exports = {tuple(e["resources"]): e["resource_id"] for e in fresh_emulator.exports("ws-dev")}
    assert exports.keys() == {(1, 2), (3, 4)}
    assert xcoms["export_poke"]["return_value"] == exports[(1, 2)]
    assert xcoms["export_deferred"]["return_value"] == exports[(3, 4)]
    # The result travels in the trigger event: no side-channel XCom in either mode.
    assert xcoms["export_deferred"]["dataqc_result"] is None
    assert xcoms["export_poke"]["dataqc_result"] is None

    # Download: to a rendered local path and to a file:// URL; XCom destination, size, sha256.
    local = xcoms["download_local"]["return_value"]
    assert local["destination"] == str(tmp_path / "local" / "download_local.zip")
    assert local["size"] == 200_000 and local["sha256"] == sha256(Path(local["destination"]))
    assert local["file_name"] == f"rule-template-{exports[(1, 2)]}.zip"
    stored = xcoms["download_url"]["return_value"]
    assert stored["destination"].startswith(f"file://{tmp_path}/stored/") and stored["destination"].endswith(
        "/export.zip"
    )
    stored_path = Path(stored["destination"][len("file://") :])
    assert stored["size"] == 200_000 and stored["sha256"] == sha256(stored_path)
    assert read_manifest(stored_path.read_bytes())["resource_id"] == exports[(3, 4)]  # type: ignore[index]
    assert not list((tmp_path / "local").glob(".*.part"))

    # Import: the XCom is what the upload reported; after a deferral too.
    uploads = {u["file_name"]: u for u in fresh_emulator.uploads("ws-prod")}
    assert uploads.keys() == {"download_local.zip", "export.zip"}
    assert hashlib.sha256(uploads["download_local.zip"]["content"]).hexdigest() == local["sha256"]
    assert hashlib.sha256(uploads["export.zip"]["content"]).hexdigest() == stored["sha256"]
    for task_id, file_name in (("import_poke", "download_local.zip"), ("import_deferred", "export.zip")):
        result = xcoms[task_id]["return_value"]
        assert set(result) == UPLOAD_FIELDS
        assert result["resource_id"] == uploads[file_name]["resource_id"]
        assert result["directories"] == ["/emulator/rule-template"] and result["topics"] == ["Emulated Topic"]
    assert xcoms["import_deferred"]["dataqc_result"] is None  # carried by the trigger event

    # What landed in ws-prod, with the rendered mappings; nothing in ws-dev.
    imported = {item["name"]: item for item in fresh_emulator.imported("ws-prod")}
    assert sorted(imported) == [f"rule_template_{n}" for n in (1, 2, 3, 4)]
    assert {imported[f"rule_template_{n}"]["directory"] for n in (1, 2)} == {"/prod/rules"}
    assert {imported[f"rule_template_{n}"]["strategy"] for n in (1, 2)} == {"OVERRIDE"}
    assert {imported[f"rule_template_{n}"]["topic"] for n in (3, 4)} == {"Production"}
    assert {imported[f"rule_template_{n}"]["strategy"] for n in (3, 4)} == {"SKIP"}
    assert fresh_emulator.imported("ws-dev") == []

    # The two deferrable tasks did defer (dag.test() runs their trigger in line).
    assert task_logs.text().count("running trigger in line") == 2


def test_failed_waits_fail_at_once_and_termination_stops_on_duplicates(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any
) -> None:
    use_connection(fresh_emulator)
    message = "Emulated: rule 'not_null' references table dim_customer that does not exist"
    fresh_emulator.export_script = ("WAITING", "RUNNING", {"status": "FAILED", "error_msg": message})
    source = tmp_path / "jobs.zip"
    source.write_bytes(b"PK exported quality jobs")
    state, tasks = run_dag(
        "dataqc_ops_failures", files=(TEST_DAGS / "dataqc_ops_failures.py",), conf={"source": str(source)}
    )
    assert state == "failed"
    assert tasks == {
        "export_fails_poke": "failed",
        "export_fails_deferred": "failed",
        "import_first": "success",
        "import_terminated": "failed",
    }
    # retries=2, but FAILED is final: each export was sent, and waited for, once.
    assert fresh_emulator.count("export") == 2
    assert fresh_emulator.count("upload") == 2 and fresh_emulator.count("import") == 2
    # ERROR lines as printed, and ERROR records (Airflow 2's dag.test() prints a task's lines
    # through a handler it adds once per process, so later tests may only see the records).
    errors = task_logs.lines("error") + [r.getMessage() for r in task_logs.records if r.levelno >= logging.ERROR]
    for export in fresh_emulator.exports("ws-dev"):
        assert any(export["resource_id"] in line and message in line for line in errors), errors[-20:]
    assert any("already exists in the workspace" in line for line in errors)
    assert sorted(item["name"] for item in fresh_emulator.imported("ws-prod")) == ["null_check", "row_count"]


# --------------------------------------------------------------------------- checks before any request


def test_import_refuses_a_missing_file_and_bad_arguments_before_any_request(
    fresh_emulator: Emulator, use_connection: Any, tmp_path: Path
) -> None:
    use_connection(fresh_emulator)
    source = tmp_path / "jobs.zip"
    source.write_bytes(b"PK")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"source": str(tmp_path / "missing.zip")}, "does not exist"),
        ({"source": f"file://{tmp_path}/missing.zip"}, "cannot be opened"),
        ({"source": str(source), "strategy": "MERGE"}, "SKIP, OVERRIDE, TERMINATION"),
        ({"source": str(source), "resource_type": "report"}, "rule-template, quality-task, consistency-task"),
        ({"source": str(source), "topics": "not a mapping"}, "topics must be a dict or a list of dicts"),
        ({"source": str(source), "queues": [{"new_value": "q"}]}, "old_value"),
    ]
    for kwargs, fragment in cases:
        arguments = {"task_id": "imp", "resource_type": "quality-task", **kwargs}
        with pytest.raises(DataQCApiError, match=fragment):
            DataQCImportOperator(**arguments).execute({})  # type: ignore[arg-type]
    assert fresh_emulator.count() == 0


def test_download_operator_checks_before_any_request(
    fresh_emulator: Emulator, use_connection: Any, tmp_path: Path
) -> None:
    use_connection(fresh_emulator)
    operator = DataQCDownloadOperator(
        task_id="dl", resource_id="success-0", destination=str(tmp_path / "r.zip"), resource_type="report"
    )
    with pytest.raises(DataQCApiError, match="obs_type is required"):
        operator.execute({})  # type: ignore[arg-type]
    operator = DataQCDownloadOperator(task_id="dl2", resource_id="success-0", destination="nosuch://bucket/r.zip")
    with pytest.raises(DataQCApiError, match="ObjectStoragePath"):
        operator.execute({})  # type: ignore[arg-type]
    assert fresh_emulator.count() == 0 and list(tmp_path.iterdir()) == []


def test_an_interrupted_download_by_the_operator_leaves_nothing_at_a_url_destination(
    fresh_emulator: Emulator, use_connection: Any, tmp_path: Path
) -> None:
    from airflow_provider_dataqc.testing.emulator import FaultPlan

    use_connection(fresh_emulator, max_retries=1)
    fresh_emulator.download_size = 100_000
    operator = DataQCDownloadOperator(task_id="dl", resource_id="success-0-op", destination=f"file://{tmp_path}/x.zip")
    operator.hook.get_resource_status("success-0-op")
    fresh_emulator.faults = FaultPlan(rate=1.0, operations=("download",), mix={"truncated": 1})
    with pytest.raises(DataQCApiError, match="cut short"):
        operator.execute({})  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    fresh_emulator.faults = None
    result = operator.execute({})  # type: ignore[arg-type]
    assert result["size"] == 100_000 and result["sha256"] == sha256(tmp_path / "x.zip")


def test_poke_mode_wait_reports_failure_and_timeout(fresh_emulator: Emulator, use_connection: Any) -> None:
    use_connection(fresh_emulator)
    fresh_emulator.export_script = ("RUNNING", {"status": "TIMEOUT", "error_msg": "the export ran out of time"})
    export = DataQCExportOperator(
        task_id="exp", resource_type="quality-task", resource_ids=[1], wait_for_completion=True, poll_interval=0.01
    )
    with pytest.raises(AirflowFailException, match="the export ran out of time"):
        export.execute({})  # type: ignore[arg-type]
    fresh_emulator.export_script = ("RUNNING",)
    export = DataQCExportOperator(
        task_id="exp2",
        resource_type="quality-task",
        resource_ids=[1],
        wait_for_completion=True,
        poll_interval=0.05,
        wait_timeout=0.3,
    )
    with pytest.raises(AirflowSensorTimeout, match=r"did not finish within 0\.3s"):
        export.execute({})  # type: ignore[arg-type]
    fresh_emulator.export_script = ("SUCCESS",)
    quick = DataQCExportOperator(task_id="exp3", resource_type="rule-template", select_all=True)
    resource_id = quick.execute({})  # type: ignore[arg-type]
    assert fresh_emulator.exports("ws-dev")[-1] == {
        "resource_id": resource_id,
        "type": "rule-template",
        "is_select_all": True,
        "resources": [],
        "export_mode": None,
        "obs_service_type": None,
    }


# --------------------------------------------------------------------------- templating


def test_templated_fields_render(tmp_path: Path) -> None:
    context: dict[str, Any] = {
        "params": {"ws": "ws-prod", "ids": [5, 6], "dir": str(tmp_path), "kind": "report", "obs": "business"},
        "ds_nodash": "20240102",
    }
    export = DataQCExportOperator(
        task_id="exp",
        resource_type="{{ params.kind }}",
        resource_ids="{{ params.ids }}",
        workspace="{{ params.ws }}",
        export_mode="{{ 'obs' }}",
        obs_service_type="{{ params.obs }}",
    )
    download = DataQCDownloadOperator(
        task_id="dl",
        resource_id="{{ params.ws }}-rid",
        destination="{{ params.dir }}/{{ ds_nodash }}.zip",
        obs_type="{{ params.obs }}",
        resource_type="{{ params.kind }}",
        workspace="{{ params.ws }}",
    )
    imp = DataQCImportOperator(
        task_id="imp",
        source="{{ params.dir }}/in.zip",
        resource_type="{{ 'quality-task' }}",
        strategy="{{ 'SKIP' }}",
        workspace="{{ params.ws }}",
        directories={"/dev": "/{{ params.ws }}"},
        topics=[{"old_value": "T", "new_value": "{{ params.kind }}"}],
        connections="{{ {'dws_dev': 'dws_' ~ params.ws} }}",
        queues={"q": "q-{{ ds_nodash }}"},
    )
    for operator in (export, download, imp):
        operator.render_template_fields(context)  # type: ignore[arg-type]
    assert (export.resource_type, export.resource_ids, export.workspace) == ("report", "[5, 6]", "ws-prod")
    assert (export.export_mode, export.obs_service_type) == ("obs", "business")
    assert download.resource_id == "ws-prod-rid" and download.destination == f"{tmp_path}/20240102.zip"
    assert (download.obs_type, download.resource_type, download.workspace) == ("business", "report", "ws-prod")
    assert imp.source == f"{tmp_path}/in.zip" and imp.workspace == "ws-prod"
    assert (imp.resource_type, imp.strategy) == ("quality-task", "SKIP")
    assert imp.directories == {"/dev": "/ws-prod"} and imp.queues == {"q": "q-20240102"}
    assert imp.topics == [{"old_value": "T", "new_value": "report"}]
    assert imp.connections == "{'dws_dev': 'dws_ws-prod'}"  # a rendered string, parsed at run time
    imp._check_arguments()
    assert imp.connections == {"dws_dev": "dws_ws-prod"}
