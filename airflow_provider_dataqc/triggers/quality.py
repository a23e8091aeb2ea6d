"""DataQCJobRunTrigger: waits for a run of a DataArts Quality job on the triggerer.

The same wait as the poke-mode sensor and operator (:class:`~airflow_provider_dataqc.core.jobs_run.JobRunRules`
judged by the core wait engine), each poll the same search of the instance list carried out
with the async client. With ``cancel_on_kill``, a wait that is cancelled because the task was
killed or timed out stops the run: through the trigger's ``on_kill`` hook where the installed
Airflow calls one (``BaseTrigger.on_kill``: the Airflow 3 releases that have it, 3.3 here; a user
marking, clearing or killing the deferred task). Never on a triggerer restart or a move to
another triggerer: the run goes on and the trigger picks it up again. Airflow 2.11 has no such
hook: there a run whose deferred task is killed keeps running.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from airflow_provider_dataqc.core.jobs import JobDetail
from airflow_provider_dataqc.core.jobs_api import job_detail_request, stop_instances_request
from airflow_provider_dataqc.core.jobs_run import (
    DEFAULT_APPEAR_WITHIN,
    InstanceSearch,
    JobRunRules,
    poll_run,
    started_window,
)
from airflow_provider_dataqc.hooks.dataqc import DataQCHook
from airflow_provider_dataqc.hooks.dataqc_async import AsyncDataQCClient
from airflow_provider_dataqc.triggers.dataqc import DataQCWaitTrigger


class DataQCJobRunTrigger(DataQCWaitTrigger):
    """Polls the instance list until a job run ends, and yields one event (the schema of
    :mod:`airflow_provider_dataqc.core.wait`; ``record`` is the run record with its ``results``).

    :param instance_id: the run to follow; or ``None`` with ``started_after`` for the first run
        of ``job_id`` started at or after that time.
    :param job_id: the job (its name narrows the search).
    :param job_type: ``quality`` or ``comparison``.
    :param job_name: the job's name, when the caller knows it (saves the job-detail call).
    :param fail_on_alarm: ALARMING fails the wait (else it succeeds, saying so).
    :param started_after: ISO date-time: the run started at or after it (window of the search).
    :param search_started: epoch seconds the run was started (for ``appear_within``).
    :param appear_within: seconds a run may take to appear in the list.
    :param cancel_on_kill: stop the run when the wait is cancelled before it ended.

    The other parameters are :class:`~airflow_provider_dataqc.triggers.dataqc.DataQCWaitTrigger`'s.
    """

    def __init__(
        self,
        *,
        instance_id: str | None = None,
        job_id: str | None = None,
        job_type: str = "quality",
        job_name: str | None = None,
        fail_on_alarm: bool = True,
        started_after: str | None = None,
        search_started: float | None = None,
        appear_within: float | None = DEFAULT_APPEAR_WITHIN,
        cancel_on_kill: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.instance_id = str(instance_id) if instance_id is not None else None
        self.job_id = str(job_id) if job_id is not None else None
        self.job_type = job_type
        self.job_name = job_name
        self.fail_on_alarm = bool(fail_on_alarm)
        self.started_after = started_after
        self.search_started = float(search_started) if search_started is not None else time.time()
        self.appear_within = float(appear_within) if appear_within is not None else None
        self.cancel_on_kill = bool(cancel_on_kill)
        self._ended = False
        self._client: AsyncDataQCClient | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "instance_id": self.instance_id,
                "job_id": self.job_id,
                "job_type": self.job_type,
                "job_name": self.job_name,
                "fail_on_alarm": self.fail_on_alarm,
                "started_after": self.started_after,
                "search_started": self.search_started,
                "appear_within": self.appear_within,
                "cancel_on_kill": self.cancel_on_kill,
                **self._common_kwargs(),
            },
        )

    @property
    def rules(self) -> JobRunRules:
        return JobRunRules(self.instance_id, self.job_id, self.job_type, self.fail_on_alarm, self.appear_within)

    async def prepare(self, client: AsyncDataQCClient) -> tuple[InstanceSearch, str]:
        workspace = client.workspace_of(self.workspace)
        name = self.job_name
        if name is None and self.job_id is not None:
            request = job_detail_request(client._settings().project_id, workspace, self.job_id, job_type=self.job_type)
            name = JobDetail.from_api(await client.json(request)).name
        after: datetime | None = started_window(self.started_after)
        return InstanceSearch(self.job_type, self.instance_id, name, after), workspace

    async def fetch(self, client: AsyncDataQCClient, prepared: Any, *, within: float | None) -> Any:
        self._client = client
        search, workspace = prepared
        plan = poll_run(search, client._settings().project_id, workspace, time.time() - self.search_started)
        reply: Any = None
        try:
            while True:
                request = plan.send(reply)
                remaining = self.end_time - time.time() if self.end_time is not None else None
                reply = await client.json(request, within=remaining)
        except StopIteration as done:
            return done.value

    async def _wait(self) -> dict[str, Any]:
        event = await super()._wait()
        self._ended = True
        return event

    async def on_kill(self) -> None:
        """Airflow 3.1+: the task was killed while deferred — stop the run when asked to."""
        if self.cancel_on_kill and not self._ended:
            self._ended = True
            await self._stop_run("the task was killed")

    async def _stop_run(self, why: str) -> None:
        if not self.instance_id:
            return
        try:
            client = AsyncDataQCClient(
                self.dataqc_conn_id, workspace=self.workspace, project_id=self.project_id, log=self.log
            )
            async with client:
                request = stop_instances_request(
                    client._settings().project_id, client.workspace_of(self.workspace), [self.instance_id]
                )
                await client.request(request, within=30.0)
            self.log.warning("Stopped DataArts Quality run %s: %s (cancel_on_kill)", self.instance_id, why)
        except Exception as err:  # the wait is ending anyway: say so, never mask the cancellation
            self.log.error("Could not stop DataArts Quality run %s after %s: %s", self.instance_id, why, err)


__all__ = ["DataQCHook", "DataQCJobRunTrigger"]
