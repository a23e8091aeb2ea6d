"""The DAG of ``scripts/e2e_race.py``: deferrable sensors whose trigger fires at its first poll.

Each mapped sensor's first poke sees WAITING and defers; its trigger's first poll sees
SUCCESS and fires. ``params.first_poll`` sets how long after the deferral that first poll
comes: a number of seconds; ``provider`` for the provider's own choice
(:func:`~airflow_provider_dataqc.hooks.wait.first_trigger_poll`: half to all of the interval,
at least 1.2x ``[workers] min_heartbeat_interval``); ``jitter`` for half to all of the 1 s
interval with no such floor (what the provider did before).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task

import airflow_provider_dataqc.hooks.wait as wait_module
from airflow_provider_dataqc.core.wait import first_poll_delay
from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor


class FirstPollSensor(DataQCResourceStatusSensor):
    """The provider's sensor with the delay of its trigger's first poll set by hand."""

    template_fields = (*DataQCResourceStatusSensor.template_fields, "first_poll")

    def __init__(self, *, first_poll: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.first_poll = first_poll

    def _defer(self) -> None:
        if self.first_poll == "provider":
            super()._defer()
            return
        chosen = wait_module.first_trigger_poll
        if self.first_poll == "jitter":
            wait_module.first_trigger_poll = first_poll_delay
        else:
            wait_module.first_trigger_poll = lambda _interval: float(self.first_poll)
        try:
            super()._defer()
        finally:
            wait_module.first_trigger_poll = chosen


with DAG(
    dag_id="dataqc_race",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_tasks=1000,
    params={"count": Param(40, type="integer"), "first_poll": Param("provider", type="string")},
    tags=["dataqc", "measurement"],
):

    @task
    def resource_ids(count: str, run: str) -> list[str]:
        suffix = "".join(c if c.isalnum() else "-" for c in run)
        return [f"success-1-race-{i}-{suffix}" for i in range(int(count))]

    FirstPollSensor.partial(
        task_id="wait",
        deferrable=True,
        poke_interval=1,
        timeout=300,
        retries=0,
        first_poll="{{ params.first_poll }}",
    ).expand(resource_id=resource_ids("{{ params.count }}", "{{ run_id }}"))
