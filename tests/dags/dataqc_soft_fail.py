"""Test DAG: ``soft_fail`` sensors in each mode, on the same resource ID (a param)."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor

with DAG(
    dag_id="dataqc_soft_fail",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    params={"resource_id": Param("failed-1", type="string")},
) as dag:
    for mode, deferrable in (("poke", False), ("reschedule", False), ("poke", True)):
        DataQCResourceStatusSensor(
            task_id="deferrable" if deferrable else mode,
            # Each sensor its own resource: a life cycle moves one step per status poll.
            resource_id="{{ params.resource_id }}-" + ("deferrable" if deferrable else mode),
            mode=mode,
            deferrable=deferrable,
            soft_fail=True,
            poke_interval=0.2 if mode == "poke" else 1,
            timeout=30,
        )
