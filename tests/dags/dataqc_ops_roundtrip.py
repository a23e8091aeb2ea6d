"""Test DAG: every operator, in the worker (poke) and on the triggerer (deferrable),
with templated arguments; a last task writes every XCom to ``params.out_dir``/xcoms.json."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_dataqc.operators.dataqc import (
    DataQCDownloadOperator,
    DataQCExportOperator,
    DataQCImportOperator,
)

WAIT = {"wait_for_completion": True, "poll_interval": 0.05, "wait_timeout": 120}

with DAG(
    dag_id="dataqc_ops_roundtrip",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    params={
        "kind": "rule-template",
        "source_ws": "ws-dev",
        "target_ws": "ws-prod",
        "ids_poke": [1, 2],
        "ids_deferred": [3, 4],
        "out_dir": "/tmp/dataqc-ops",
        "strategy": "OVERRIDE",
        "target_dir": "/prod/rules",
        "topics": {"Emulated Topic": "Production"},
    },
) as dag:
    export_poke = DataQCExportOperator(
        task_id="export_poke",
        resource_type="{{ params.kind }}",
        resource_ids="{{ params.ids_poke }}",
        workspace="{{ params.source_ws }}",
        wait_for_file=True,
        deferrable=False,
        **WAIT,
    )
    export_deferred = DataQCExportOperator(
        task_id="export_deferred",
        resource_type="{{ params.kind }}",
        resource_ids="{{ params.ids_deferred | join(',') }}",
        workspace="{{ params.source_ws }}",
        wait_for_file=True,
        deferrable=True,
        **WAIT,
    )
    download_local = DataQCDownloadOperator(
        task_id="download_local",
        resource_id=export_poke.output,
        destination="{{ params.out_dir }}/local/{{ ti.task_id }}.zip",
        workspace="{{ params.source_ws }}",
        resource_type="{{ params.kind }}",
    )
    download_url = DataQCDownloadOperator(
        task_id="download_url",
        resource_id=export_deferred.output,
        destination="file://{{ params.out_dir }}/stored/{{ ds_nodash }}/export.zip",
        workspace="{{ params.source_ws }}",
    )
    import_poke = DataQCImportOperator(
        task_id="import_poke",
        source="{{ ti.xcom_pull(task_ids='download_local')['destination'] }}",
        resource_type="{{ params.kind }}",
        strategy="{{ params.strategy }}",
        workspace="{{ params.target_ws }}",
        directories={"/emulator/rule-template": "{{ params.target_dir }}"},
        deferrable=False,
        **WAIT,
    )
    import_deferred = DataQCImportOperator(
        task_id="import_deferred",
        source="{{ ti.xcom_pull(task_ids='download_url')['destination'] }}",
        resource_type="{{ params.kind }}",
        workspace="{{ params.target_ws }}",
        topics="{{ params.topics }}",
        deferrable=True,
        **WAIT,
    )

    @task
    def collect(params: dict[str, Any] | None = None, ti: Any = None) -> None:
        tasks = ["export_poke", "export_deferred", "download_local", "download_url", "import_poke", "import_deferred"]
        found = {
            task_id: {key: ti.xcom_pull(task_ids=task_id, key=key) for key in ("return_value", "dataqc_result")}
            for task_id in tasks
        }
        assert params is not None
        Path(params["out_dir"], "xcoms.json").write_text(json.dumps(found))

    export_poke >> download_local >> import_poke
    export_deferred >> download_url >> import_deferred
    [import_poke, import_deferred] >> collect()
