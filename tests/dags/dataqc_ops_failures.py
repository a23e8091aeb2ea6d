"""Test DAG: waits that end FAILED fail the task at once (no retries), poke and deferrable;
an import with strategy TERMINATION of names that already exist fails."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_dataqc.operators.dataqc import DataQCExportOperator, DataQCImportOperator

RETRY = {"retries": 2, "retry_delay": timedelta(seconds=0)}
WAIT = {"poll_interval": 0.05, "wait_timeout": 120}

with DAG(
    dag_id="dataqc_ops_failures",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    params={"source": "/tmp/missing.zip"},
) as dag:
    DataQCExportOperator(
        task_id="export_fails_poke",
        resource_type="quality-task",
        resource_ids=[1],
        wait_for_completion=True,
        deferrable=False,
        **WAIT,
        **RETRY,
    )
    DataQCExportOperator(
        task_id="export_fails_deferred",
        resource_type="quality-task",
        resource_ids=[2],
        wait_for_completion=True,
        deferrable=True,
        **WAIT,
        **RETRY,
    )
    import_first = DataQCImportOperator(
        task_id="import_first",
        source="{{ params.source }}",
        resource_type="quality-task",
        workspace="ws-prod",
        **WAIT,
    )
    import_terminated = DataQCImportOperator(
        task_id="import_terminated",
        source="{{ params.source }}",
        resource_type="quality-task",
        strategy="TERMINATION",
        workspace="ws-prod",
        deferrable=True,
        **WAIT,
        **RETRY,
    )
    import_first >> import_terminated
