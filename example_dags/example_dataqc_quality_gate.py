"""A quality gate: load a table, run the DataArts Quality job that checks it, publish only if it passed.

Trigger it with your jobs' IDs, e.g. ``airflow dags trigger example_dataqc_quality_gate --conf
'{"job_id": "1440764172232392705", "review_job_id": "1440764172232392706"}'``. The defaults
are jobs the bundled emulator knows (``...705`` passes, ``...706`` alarms: two of its three
rules fail).

* ``gate`` waits on the triggerer (``deferrable=True``). When rules alarm it fails at once,
  without retries, after logging the table of the rules that alarmed: ``publish`` never runs.
* ``review`` shows ``fail_on_alarm=False``: the run's outcome is data (``passed`` in XCom), and
  a branch decides what happens with a table that did not pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_dataqc.operators.dataqc import DataQCRunQualityJobOperator

with DAG(
    dag_id="example_dataqc_quality_gate",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    params={
        "job_id": Param("1440764172232392705", type="string", description="quality job that gates publish"),
        "review_job_id": Param("1440764172232392706", type="string", description="quality job whose result is routed"),
    },
    # A gate that alarms or a run that fails is never retried (that would start another run):
    # these retries are for other failures (a worker lost, the service unreachable for too long).
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    tags=["example", "dataqc"],
) as dag:

    @task
    def load() -> str:
        """Stands for the load of ``sales.orders`` that the quality job checks."""
        return "sales.orders"

    gate = DataQCRunQualityJobOperator(
        task_id="gate",
        job_id="{{ params.job_id }}",
        deferrable=True,
        poll_interval=10,
        timeout=3600,
    )

    @task
    def publish(run: Any) -> None:
        print(f"Publishing: run {run['instance_id']} passed {len(run['results'])} rules")

    review = DataQCRunQualityJobOperator(
        task_id="review",
        job_id="{{ params.review_job_id }}",
        fail_on_alarm=False,
        poll_interval=10,
        timeout=3600,
    )

    @task.branch
    def route(run: Any) -> str:
        return "publish_reviewed" if run["passed"] else "quarantine"

    @task
    def publish_reviewed() -> None:
        print("Publishing the reviewed table")

    @task
    def quarantine(run: Any) -> None:
        print(f"Quarantined: rules {', '.join(run['alarmed_rules'])} alarmed in run {run['instance_id']}")

    loaded = load()
    loaded >> gate
    publish(gate.output)
    loaded >> review
    route(review.output) >> [publish_reviewed(), quarantine(review.output)]
