"""Test DAG: a common ``default_args`` with two task retries around an export and an import."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_dataqc.operators.dataqc import DataQCExportOperator, DataQCImportOperator

with DAG(
    dag_id="dataqc_task_retries",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
    params={"source": "/tmp/missing.zip", "operation": "export"},
) as dag:
    DataQCExportOperator(task_id="export", resource_type="quality-task", resource_ids=[7])
    DataQCImportOperator(
        task_id="import", source="{{ params.source }}", resource_type="quality-task", wait_for_completion=False
    )
