"""Quality-gate DAGs for the tests, each in poke and deferrable mode (``<name>_poke`` / ``<name>_deferrable``).

* ``dataqc_gate``: runs ``params.job_id`` (retries=2, so a failure that is retried would show)
  and a downstream task writes the gate's XCom to ``params.out``;
* ``dataqc_gate_soft``: the same with ``fail_on_alarm=False``;
* ``dataqc_gate_slow``: a 1.5 s timeout (for a job that runs for ever);
* ``dataqc_gate_unlisted``: ``appear_within=0.5`` (for a run that never shows);
* ``dataqc_gate_sensor``: waits for ``params.instance_id``, or for the first run of
  ``params.job_id`` started at or after ``params.started_after``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_dataqc.operators.dataqc import DataQCRunQualityJobOperator
from airflow_provider_dataqc.sensors.dataqc import DataQCJobInstanceSensor

PARAMS = {
    "job_id": Param("1440764172232392705", type="string"),
    "job_type": Param("quality", type="string"),
    "instance_id": Param("", type="string"),
    "started_after": Param("", type="string"),
    "out": Param("", type="string"),
}


@task(task_id="keep")
def keep(record: Any, out: str) -> None:
    Path(out).write_text(json.dumps(record))


def gate_dag(dag_id: str, *, deferrable: bool, **operator: Any) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        params=PARAMS,
        default_args={"retries": 2, "retry_delay": timedelta(seconds=1)},
    ) as dag:
        gate = DataQCRunQualityJobOperator(
            task_id="gate",
            job_id="{{ params.job_id }}",
            job_type="quality",
            deferrable=deferrable,
            poll_interval=0.1,
            **{"timeout": 60.0, **operator},
        )
        keep(gate.output, "{{ params.out }}")
    return dag


def sensor_dag(dag_id: str, *, deferrable: bool) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        params=PARAMS,
        default_args={"retries": 2, "retry_delay": timedelta(seconds=1)},
    ) as dag:
        wait = DataQCJobInstanceSensor(
            task_id="wait",
            instance_id="{{ params.instance_id }}",
            job_id="{{ params.job_id }}",
            started_after="{{ params.started_after }}",
            deferrable=deferrable,
            poke_interval=0.1,
            timeout=60,
        )
        keep(wait.output, "{{ params.out }}")
    return dag


for mode, deferrable in (("poke", False), ("deferrable", True)):
    globals()[f"gate_{mode}"] = gate_dag(f"dataqc_gate_{mode}", deferrable=deferrable)
    globals()[f"soft_{mode}"] = gate_dag(f"dataqc_gate_soft_{mode}", deferrable=deferrable, fail_on_alarm=False)
    globals()[f"slow_{mode}"] = gate_dag(f"dataqc_gate_slow_{mode}", deferrable=deferrable, timeout=1.5)
    globals()[f"unlisted_{mode}"] = gate_dag(f"dataqc_gate_unlisted_{mode}", deferrable=deferrable, appear_within=0.5)
    globals()[f"sensor_{mode}"] = sensor_dag(f"dataqc_gate_sensor_{mode}", deferrable=deferrable)
