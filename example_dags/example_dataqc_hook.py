"""Read the status of a DataArts Quality import/export task with DataQCHook in a task."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_dataqc.hooks.dataqc import DataQCHook

with DAG(
    dag_id="example_dataqc_hook",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    params={"resource_id": Param("success-0", type="string", description="resource_id to look up")},
    tags=["example", "dataqc"],
) as dag:

    @task
    def read_status(resource_id: str) -> dict[str, Any]:
        status = DataQCHook().get_resource_status(resource_id)
        print(f"{status.resource_id}: {status.status} (file {status.file_status}), error_msg={status.error_msg!r}")
        return status.to_dict()

    read_status("{{ params.resource_id }}")
