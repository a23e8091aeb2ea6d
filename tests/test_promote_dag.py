"""The example promotion DAG (export from ws-dev, keep the file, import into ws-prod),
run end to end with ``dag.test()`` against the emulator."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from conftest import EXAMPLE_DAGS

from airflow_provider_dataqc.hooks.dataqc import DataQCHook
from airflow_provider_dataqc.testing.emulator import Emulator, read_manifest

DAG_ID = "example_dataqc_promote"


def stored_xcom(dag_id: str, task_id: str, key: str = "return_value") -> Any:
    """The latest XCom value of a task, read from the metadata database (Airflow 2 and 3)."""
    from airflow.utils.session import create_session

    try:
        from airflow.models.xcom import XComModel as model

        airflow_2 = False
    except ImportError:  # Airflow 2
        from airflow.models.xcom import XCom as model  # type: ignore[no-redef]

        airflow_2 = True
    with create_session() as session:
        row = (
            session.query(model)
            .filter(model.dag_id == dag_id, model.task_id == task_id, model.key == key)
            .order_by(model.timestamp.desc())
            .first()
        )
        assert row is not None, f"no XCom {key!r} for {task_id}"
        # Airflow 2's XCom rows decode their value when loaded; Airflow 3's hold JSON text.
        return row.value if airflow_2 else model.deserialize_value(row)


def test_promotion_from_dev_to_prod(
    fresh_emulator: Emulator,
    use_connection: Any,
    run_dag: Any,
    tmp_path: Path,
    monkeypatch: Any,
    task_logs: Any,
) -> None:
    monkeypatch.setenv("DATAQC_DEMO_DIR", str(tmp_path / "archive"))
    use_connection(fresh_emulator)
    fresh_emulator.download_size = 64 * 1024

    state, tasks = run_dag(DAG_ID, files=(EXAMPLE_DAGS / "example_dataqc_promote.py",))

    assert state == "success", (tasks, task_logs.text()[-4000:])
    assert tasks == {
        "export_from_dev": "success",
        "wait_for_export": "success",
        "keep_export_file": "success",
        "import_into_prod": "success",
    }

    # The file landed in the archive (nothing else there), whole.
    [kept] = list((tmp_path / "archive").iterdir())
    assert kept.name.startswith("quality-jobs-") and kept.suffix == ".zip"
    digest = hashlib.sha256(kept.read_bytes()).hexdigest()
    download = stored_xcom(DAG_ID, "keep_export_file")
    assert download["destination"] == f"file://{kept}"
    assert download["size"] == kept.stat().st_size == 64 * 1024
    assert download["sha256"] == digest

    # It is the export of the three jobs from ws-dev, and exactly what was uploaded to ws-prod.
    [export] = fresh_emulator.exports("ws-dev")
    assert export["type"] == "quality-task" and export["resources"] == [101, 102, 103]
    assert stored_xcom(DAG_ID, "export_from_dev") == export["resource_id"]
    manifest = read_manifest(kept.read_bytes())
    assert manifest is not None and manifest["resource_id"] == export["resource_id"]
    again = DataQCHook().download_resource_file(export["resource_id"], tmp_path / "again.zip", workspace="ws-dev")
    assert again.sha256 == digest
    [upload] = fresh_emulator.uploads("ws-prod")
    assert hashlib.sha256(upload["content"]).hexdigest() == digest
    assert upload["file_name"] == kept.name
    imported_xcom = stored_xcom(DAG_ID, "import_into_prod")
    assert imported_xcom["resource_id"] == upload["resource_id"]

    # The jobs became visible in ws-prod only.
    imported = sorted(fresh_emulator.imported("ws-prod"), key=lambda item: item["name"])
    assert [item["name"] for item in imported] == ["quality_task_101", "quality_task_102", "quality_task_103"]
    assert {item["source_workspace"] for item in imported} == {"ws-dev"}
    assert {item["strategy"] for item in imported} == {"OVERRIDE"}
    assert {item["upload_resource_id"] for item in imported} == {upload["resource_id"]}
    assert fresh_emulator.imported("ws-dev") == []
    assert fresh_emulator.uploads("ws-dev") == [] and fresh_emulator.exports("ws-prod") == []
    by_operation = {(r.operation, r.workspace) for r in fresh_emulator.requests if r.operation != "status"}
    assert by_operation == {("export", "ws-dev"), ("download", "ws-dev"), ("upload", "ws-prod"), ("import", "ws-prod")}
