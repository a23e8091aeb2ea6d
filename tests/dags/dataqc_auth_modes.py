"""Sensor DAGs for the authentication tests: one per connection, on a worker and on the triggerer.

``dataqc_auth_<name>`` waits in poke mode and ``dataqc_auth_<name>_deferred`` on the
triggerer, both with the connection ``dataqc_auth_<name>`` (the test sets it).
``dataqc_auth_pokes`` pokes with no pause between pokes, to count requests per poke;
``dataqc_auth_refresh`` pauses half a second, long enough for a test to revoke the token mid-wait.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor

NAMES = ("token", "password", "aksk", "aksk_sts", "bad_password", "bad_sk")


def _dag(dag_id: str, conn_id: str, *, deferrable: bool = False, poke_interval: float = 0.05) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        params={"resource_id": Param("success-2", type="string")},
        default_args={"retries": 0},
    ) as dag:
        DataQCResourceStatusSensor(
            task_id="wait",
            resource_id="{{ params.resource_id }}",
            dataqc_conn_id=conn_id,
            deferrable=deferrable,
            poke_interval=poke_interval,
            timeout=120,
        )
    return dag


for _name in NAMES:
    for _deferred in (False, True):
        _id = f"dataqc_auth_{_name}" + ("_deferred" if _deferred else "")
        globals()[_id] = _dag(_id, f"dataqc_auth_{_name}", deferrable=_deferred)

dataqc_auth_pokes = _dag("dataqc_auth_pokes", "dataqc_auth_pokes", poke_interval=0)
dataqc_auth_refresh = _dag("dataqc_auth_refresh", "dataqc_auth_refresh", poke_interval=0.5)
