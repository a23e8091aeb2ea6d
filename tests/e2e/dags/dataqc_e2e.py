"""DAGs of the real-deployment suite (tests/e2e), run next to the example DAGs.

Every wait polls every 10 s, and so fires 15 s or more after its deferral: clear of the
window in which Airflow's scheduler race can undo a deferral (see the README), even on
a loaded machine, and still short enough for CI.

* ``dataqc_e2e_auth``: one deferrable sensor per authentication mode (token, password, ak_sk);
* ``dataqc_e2e_modes``: reschedule mode; FAILED and TIMEOUT in deferrable mode (retries=2,
  which must not be used); the sensor's own timeout in deferrable mode;
* ``dataqc_e2e_many``: ``params.count`` deferrable sensors mapped over IDs made from the params;
* ``dataqc_e2e_restart``: five deferrable waits long enough to restart the triggerer in between.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor

POLL = 10


def _dag(dag_id: str, **kwargs: object) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
        tags=["dataqc", "e2e"],
        **kwargs,  # type: ignore[arg-type]
    )


with _dag("dataqc_e2e_auth"):
    for mode in ("token", "password", "aksk"):
        DataQCResourceStatusSensor(
            task_id=f"wait_{mode}",
            resource_id=f"success-2-auth-{mode}",
            dataqc_conn_id=f"dataqc_e2e_{mode}",
            deferrable=True,
            poke_interval=POLL,
            timeout=300,
        )

with _dag("dataqc_e2e_modes"):
    DataQCResourceStatusSensor(
        task_id="reschedule", resource_id="success-2-reschedule", mode="reschedule", poke_interval=POLL, timeout=300
    )
    DataQCResourceStatusSensor(
        task_id="deferred_failed", resource_id="failed-2-modes", deferrable=True, poke_interval=POLL, timeout=300
    )
    DataQCResourceStatusSensor(
        task_id="deferred_timeout", resource_id="timeout-2-modes", deferrable=True, poke_interval=POLL, timeout=300
    )
    DataQCResourceStatusSensor(
        task_id="own_timeout", resource_id="success-100000-own", deferrable=True, poke_interval=POLL, timeout=15
    )

with _dag(
    "dataqc_e2e_many",
    params={"count": Param(200, type="integer"), "steps": Param(2, type="integer")},
    max_active_tasks=1000,
):

    @task
    def resource_ids(count: str, steps: str, run: str) -> list[str]:
        # Unique per run, so that a second run starts each wait afresh.
        suffix = "".join(c if c.isalnum() else "-" for c in run)
        return [f"success-{steps}-many-{i}-{suffix}" for i in range(int(count))]

    DataQCResourceStatusSensor.partial(
        task_id="wait",
        deferrable=True,
        poke_interval=POLL,
        timeout=1800,
        retries=0,
        # Behind every other run's tasks when worker slots are short.
        priority_weight=1,
        weight_rule="absolute",
    ).expand(resource_id=resource_ids("{{ params.count }}", "{{ params.steps }}", "{{ run_id }}"))

with _dag("dataqc_e2e_restart"):
    DataQCResourceStatusSensor.partial(
        task_id="wait", deferrable=True, poke_interval=POLL, timeout=300, priority_weight=10, weight_rule="absolute"
    ).expand(resource_id=[f"success-4-restart-{i}" for i in range(5)])
