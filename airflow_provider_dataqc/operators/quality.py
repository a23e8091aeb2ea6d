"""DataQCRunQualityJobOperator: a quality gate — run a DataArts Quality job and stop the pipeline
when data quality fails.

The run is followed with the same wait engine as the resource-status sensor, in the worker
or on the triggerer (``deferrable=True``). Outcomes (see the README's "Quality gates"):
SUCCESS succeeds; ALARMING fails without retries after logging the table of the rules that
alarmed (``fail_on_alarm=False``: succeeds, logging it at WARNING); FAILED fails without
retries; a run never listed fails naming what was searched.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowTaskTimeout, BaseOperator, conf

from airflow_provider_dataqc.core.jobs import JobDetail
from airflow_provider_dataqc.core.jobs_run import DEFAULT_APPEAR_WITHIN, InstanceSearch, JobRunRules, drive, poll_run
from airflow_provider_dataqc.core.wait import DEFERRAL_TIMEOUT_GRACE, EVENT_TIMEOUT, Wait
from airflow_provider_dataqc.hooks import quality
from airflow_provider_dataqc.hooks.dataqc import DataQCHook
from airflow_provider_dataqc.hooks.wait import first_trigger_poll, poll, wait_here

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class DataQCRunQualityJobOperator(BaseOperator):
    """Runs a DataArts Quality quality job (or comparison job) and, by default, waits for the
    run and fails the task when data quality failed.

    XCom (return value): ``instance_id``, ``job_id``, ``name``, ``run_status``, ``notify_status``,
    ``start_time``/``end_time`` (ISO-8601, and ``*_ms`` as sent), ``results`` (every rule
    result), ``passed`` (all rules passed), ``alarmed_rules`` (names) and ``fail_on_alarm``.
    Without ``wait_for_completion``: ``instance_id`` and ``job_id`` (the rest ``None``).

    :param job_id: the job's ID (templated).
    :param job_type: ``quality`` or ``comparison``.
    :param dataqc_conn_id: the ``dataqc`` connection.
    :param workspace: workspace ID (templated); default: the connection's.
    :param wait_for_completion: wait for the run to end.
    :param fail_on_alarm: ALARMING (rules alarmed) fails the task, without retries; ``False``
        lets it succeed (a WARNING with the rule table; ``passed: false`` in XCom).
    :param deferrable: wait on the triggerer (default ``[operators] default_deferrable``).
    :param poll_interval: seconds between polls.
    :param timeout: seconds to wait at most (``None``: no limit) before ``AirflowSensorTimeout``.
    :param cancel_on_kill: stop the run when the task is killed or times out while waiting
        (poke mode: ``on_kill`` and the timeouts; deferred: the trigger's ``on_kill`` on Airflow
        versions that call it, and the wait's own timeout).
    :param max_consecutive_errors: transient failed polls in a row before failing.
    :param appear_within: seconds the run may take to show in the instance list.
    """

    template_fields: Sequence[str] = ("job_id", "workspace")
    ui_color = "#ffe0b2"

    def __init__(
        self,
        *,
        job_id: str,
        job_type: str = "quality",
        dataqc_conn_id: str = DataQCHook.default_conn_name,
        workspace: str | None = None,
        wait_for_completion: bool = True,
        fail_on_alarm: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30,
        timeout: float | None = None,
        cancel_on_kill: bool = True,
        max_consecutive_errors: int = 3,
        appear_within: float | None = DEFAULT_APPEAR_WITHIN,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.job_type = job_type
        self.dataqc_conn_id = dataqc_conn_id
        self.workspace = workspace
        self.wait_for_completion = wait_for_completion
        self.fail_on_alarm = fail_on_alarm
        self.deferrable = deferrable
        self.poll_interval = max(float(poll_interval), 0.0)
        self.timeout = float(timeout) if timeout is not None else None
        self.cancel_on_kill = cancel_on_kill
        self.max_consecutive_errors = max(int(max_consecutive_errors), 1)
        self.appear_within = appear_within
        self._instance_id: str | None = None
        self._running = False
        self._detail: JobDetail | None = None
        self._output: dict[str, Any] | None = None

    @cached_property
    def hook(self) -> DataQCHook:
        return DataQCHook(self.dataqc_conn_id, workspace=self.workspace)

    def _rules(self, instance_id: str) -> JobRunRules:
        return JobRunRules(instance_id, str(self.job_id), self.job_type, self.fail_on_alarm, self.appear_within)

    def execute(self, context: Context) -> dict[str, Any]:
        self._detail = quality.job_detail(self.hook, self.job_id, job_type=self.job_type, workspace=self.workspace)
        started, started_at = datetime.now(UTC), time.time()
        instance_id = self.hook.run_quality_job(self.job_id, job_type=self.job_type, workspace=self.workspace)
        self._instance_id, self._running = instance_id, True
        self.log.info(
            "Started run %s of DataArts Quality %s job %s (%s)",
            instance_id,
            self.job_type,
            self.job_id,
            self._detail.name,
        )
        if not self.wait_for_completion:
            self._running = False
            keys = ("name", "run_status", "notify_status", "start_time", "end_time", "results")
            return {"instance_id": instance_id, "job_id": str(self.job_id), **dict.fromkeys(keys)}
        rules = self._rules(instance_id)
        search = InstanceSearch(self.job_type, instance_id, self._detail.name, started)
        project_id, workspace = self.hook.settings.project_id, self.hook._workspace(self.workspace)

        def fetch() -> Any:
            return drive(poll_run(search, project_id, workspace, time.time() - started_at), self.hook._json)

        wait = Wait(rules, max_consecutive_errors=self.max_consecutive_errors, poll_interval=self.poll_interval)
        try:
            if self.deferrable:
                finish = poll(wait, fetch, self.log)
                if finish is None:
                    self._defer(instance_id, started, started_at, wait.errors)
            else:
                finish = wait_here(wait, fetch, poll_interval=self.poll_interval, timeout=self.timeout, log=self.log)
            return self._finish(finish, rules)
        except AirflowSensorTimeout:
            self._stop_if_running("the wait timed out")
            raise
        except AirflowTaskTimeout:
            self._stop_if_running("the task hit its execution_timeout")
            raise
        finally:
            self._running = False

    def _defer(self, instance_id: str, started: datetime, started_at: float, errors: int) -> None:
        # Imported here: DAG files that only build operators never load aiohttp.
        from airflow_provider_dataqc.triggers.quality import DataQCJobRunTrigger

        self.defer(
            trigger=DataQCJobRunTrigger(
                instance_id=instance_id,
                job_id=str(self.job_id),
                job_type=self.job_type,
                job_name=self._detail.name if self._detail else None,
                fail_on_alarm=self.fail_on_alarm,
                started_after=started.isoformat(),
                search_started=started_at,
                appear_within=self.appear_within,
                cancel_on_kill=self.cancel_on_kill,
                dataqc_conn_id=self.dataqc_conn_id,
                workspace=self.workspace,
                poll_interval=self.poll_interval,
                first_poll_after=first_trigger_poll(self.poll_interval),
                end_time=time.time() + self.timeout if self.timeout is not None else None,
                max_consecutive_errors=self.max_consecutive_errors,
                consecutive_errors=errors,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_TIMEOUT_GRACE if self.timeout is not None else None,
        )

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resume after the trigger: the XCom on success, else the matching failure."""
        instance_id = str(event.get("instance_id") or "") if isinstance(event, dict) else ""
        self._instance_id = instance_id or None
        if isinstance(event, dict) and event.get("status") == EVENT_TIMEOUT and instance_id:
            self._stop(instance_id, "the wait timed out")
        try:
            self._detail = quality.job_detail(self.hook, self.job_id, job_type=self.job_type, workspace=self.workspace)
        except Exception as err:  # only names rules in the table: the run's outcome does not depend on it
            self.log.warning("Could not read job %s for rule names: %s", self.job_id, err)
        return self._finish(event, self._rules(instance_id))

    def _finish(self, finish: Any, rules: JobRunRules) -> dict[str, Any]:
        try:
            self._output = quality.finish_run(finish, rules, self.log, self._detail)
        except Exception:
            raw = finish.event if hasattr(finish, "event") else finish
            self._output = dict(raw.get("record") or {}) if isinstance(raw, dict) else None
            raise
        return self._output

    def _stop_if_running(self, why: str) -> None:
        if self._running and self._instance_id:
            self._stop(self._instance_id, why)

    def _stop(self, instance_id: str, why: str) -> None:
        if not self.cancel_on_kill:
            self.log.warning("Run %s keeps running after %s (cancel_on_kill=False)", instance_id, why)
            return
        try:
            self.hook.stop_job_instances([instance_id], workspace=self.workspace)
            self.log.warning("Stopped DataArts Quality run %s: %s (cancel_on_kill)", instance_id, why)
        except Exception as err:
            self.log.error("Could not stop DataArts Quality run %s after %s: %s", instance_id, why, err)

    def on_kill(self) -> None:
        """The task was killed (or hit ``execution_timeout``) while waiting: stop the run."""
        self._stop_if_running("the task was killed")
        self._running = False

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The checked tables as input datasets with the rules' assertions (OpenLineage provider installed)."""
        from airflow_provider_dataqc.lineage import operator_lineage

        return operator_lineage(self._detail, self._output)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        return self.get_openlineage_facets_on_complete(task_instance)
