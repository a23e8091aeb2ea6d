"""Sensor DAGs for the tests: poke and reschedule mode, a failing export, a sensor timeout."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor

for mode in ("poke", "reschedule"):
    with DAG(
        dag_id=f"dataqc_sensor_{mode}",
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        params={"resource_id": Param("success-2", type="string"), "timeout": Param(60, type="integer")},
        default_args={"retries": 2, "retry_delay": timedelta(seconds=1)},
    ) as dag:
        DataQCResourceStatusSensor(
            task_id="wait",
            resource_id="{{ params.resource_id }}",
            workspace="{{ 'ws-dev' }}",
            mode=mode,
            poke_interval=0.2 if mode == "poke" else 1,
            timeout=4,
        )
    globals()[dag.dag_id] = dag
