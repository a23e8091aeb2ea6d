"""Wait for a DataArts Quality export to finish, on a worker (poke) and on the triggerer (deferrable).

Trigger it with the IDs of two export tasks, one per way of waiting, e.g.
``airflow dags trigger example_dataqc_sensor --conf '{"resource_id": "1234567890",
"deferred_resource_id": "1234567891"}'``.
The defaults are tasks the bundled emulator knows (``success-2``: two polls, then SUCCESS).

Both sensors poll every 10 s: a deferral that ends within a few seconds can be undone by
an Airflow 3 scheduler race (see the README's "Limits worth knowing"), and export tasks
take minutes anyway.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor

with DAG(
    dag_id="example_dataqc_sensor",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    params={
        "resource_id": Param("success-2", type="string", description="export waited for on a worker"),
        "deferred_resource_id": Param(
            "success-2-deferred", type="string", description="export waited for on the triggerer"
        ),
    },
    # FAILED or TIMEOUT exports fail the sensor at once: these retries are for
    # other failures (a worker lost, the service unreachable for too long).
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    tags=["example", "dataqc"],
) as dag:
    # Holds a worker slot while it waits: fine for short exports.
    wait_on_worker = DataQCResourceStatusSensor(
        task_id="wait_for_export",
        resource_id="{{ params.resource_id }}",
        poke_interval=10,
        timeout=300,
    )

    # Hands the wait to the triggerer: no worker slot, even for hours-long exports.
    wait_on_triggerer = DataQCResourceStatusSensor(
        task_id="wait_for_export_file_deferrable",
        resource_id="{{ params.deferred_resource_id }}",
        wait_for_file=True,
        deferrable=True,
        poke_interval=10,
        timeout=300,
    )

    wait_on_worker >> wait_on_triggerer
