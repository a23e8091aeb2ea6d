"""Deferrable sensor DAGs for the tests: the wait runs in DataQCResourceStatusTrigger.

``dataqc_deferrable_wait`` waits for ``params.resource_id`` (retries=2, so a failure that
is retried would show) and a downstream task writes the sensor's XCom to ``params.out``.
``dataqc_deferrable_timeout`` waits for a task that never ends, with a 1.5 s timeout.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor

with DAG(
    dag_id="dataqc_deferrable_wait",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    params={
        "resource_id": Param("success-2", type="string"),
        "out": Param("", type="string"),
    },
    default_args={"retries": 2, "retry_delay": timedelta(seconds=1)},
) as wait_dag:
    wait = DataQCResourceStatusSensor(
        task_id="wait",
        resource_id="{{ params.resource_id }}",
        deferrable=True,
        poke_interval=0.1,
        timeout=60,
    )

    @task(task_id="keep")
    def keep(record: Any, out: str) -> None:
        Path(out).write_text(json.dumps(record))

    keep(wait.output, "{{ params.out }}")


with DAG(
    dag_id="dataqc_deferrable_timeout",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    params={"resource_id": Param("success-100000", type="string")},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=1)},
) as timeout_dag:
    DataQCResourceStatusSensor(
        task_id="wait",
        resource_id="{{ params.resource_id }}",
        deferrable=True,
        poke_interval=0.2,
        timeout=1.5,
    )
