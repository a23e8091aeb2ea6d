"""DataQCJobInstanceSensor: waits for a run of a DataArts Quality job — a given run, or the first
run of a job DataArts schedules itself — with the quality gate's outcomes and XCom."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue, conf

from airflow_provider_dataqc.core.jobs import JobDetail
from airflow_provider_dataqc.core.jobs_run import (
    DEFAULT_APPEAR_WITHIN,
    InstanceSearch,
    JobRunRules,
    drive,
    poll_run,
    started_window,
)
from airflow_provider_dataqc.core.wait import DEFERRAL_TIMEOUT_GRACE, Wait
from airflow_provider_dataqc.exceptions import DataQCInvalidArgumentError
from airflow_provider_dataqc.hooks import quality
from airflow_provider_dataqc.hooks.dataqc import DataQCHook
from airflow_provider_dataqc.hooks.wait import first_trigger_poll, poll

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class DataQCJobInstanceSensor(BaseSensorOperator):
    """Waits until a DataArts Quality run ends, with the outcomes of
    :class:`~airflow_provider_dataqc.operators.quality.DataQCRunQualityJobOperator` and its XCom.

    Give ``instance_id`` (a run started elsewhere), or ``job_id`` and ``started_after`` for the
    first run of the job that started at or after that time (jobs DataArts schedules itself).

    :param instance_id: the run (templated).
    :param job_id: the job (templated); with ``instance_id`` it narrows the search to its name.
    :param started_after: an ISO date-time or a datetime (templated), e.g. ``"{{ data_interval_end }}"``.
    :param job_type: ``quality`` or ``comparison``.
    :param fail_on_alarm: ALARMING fails the task without retries (else it succeeds, saying so).
    :param dataqc_conn_id: the ``dataqc`` connection.
    :param workspace: workspace ID (templated); default: the connection's.
    :param deferrable: wait on the triggerer (default ``[operators] default_deferrable``).
    :param max_consecutive_errors: transient failed polls in a row before failing.
    :param appear_within: seconds a given run may take to show in the instance list (counted
        from the first poke).
    """

    template_fields: Sequence[str] = ("instance_id", "job_id", "started_after", "workspace")
    ui_color = "#ffe0b2"

    def __init__(
        self,
        *,
        instance_id: str | None = None,
        job_id: str | None = None,
        started_after: Any = None,
        job_type: str = "quality",
        fail_on_alarm: bool = True,
        dataqc_conn_id: str = DataQCHook.default_conn_name,
        workspace: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_consecutive_errors: int = 3,
        appear_within: float | None = DEFAULT_APPEAR_WITHIN,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if instance_id is None and (job_id is None or started_after is None):
            raise DataQCInvalidArgumentError("give instance_id, or job_id and started_after")
        self.instance_id = instance_id
        self.job_id = job_id
        self.started_after = started_after
        self.job_type = job_type
        self.fail_on_alarm = fail_on_alarm
        self.dataqc_conn_id = dataqc_conn_id
        self.workspace = workspace
        self.deferrable = deferrable
        self.max_consecutive_errors = max(int(max_consecutive_errors), 1)
        self.appear_within = appear_within
        self._first_poke: float | None = None
        self._detail: JobDetail | None = None
        self._output: dict[str, Any] | None = None

    @cached_property
    def hook(self) -> DataQCHook:
        return DataQCHook(self.dataqc_conn_id, workspace=self.workspace)

    @property
    def rules(self) -> JobRunRules:
        instance = str(self.instance_id) if self.instance_id not in (None, "") else None
        job = str(self.job_id) if self.job_id not in (None, "") else None
        return JobRunRules(instance, job, self.job_type, self.fail_on_alarm, self.appear_within)

    @cached_property
    def _wait(self) -> Wait:
        return Wait(self.rules, max_consecutive_errors=self.max_consecutive_errors)

    def _after(self) -> Any:
        try:
            return started_window(self.started_after)
        except (TypeError, ValueError):
            raise DataQCInvalidArgumentError(
                f"started_after {self.started_after!r:.60} is not an ISO date-time or a datetime"
            ) from None

    @cached_property
    def _search(self) -> InstanceSearch:
        rules = self.rules
        if rules.job_id is not None and self._detail is None:
            self._detail = quality.job_detail(self.hook, rules.job_id, job_type=self.job_type, workspace=self.workspace)
        name = self._detail.name if self._detail else None
        return InstanceSearch(self.job_type, rules.instance_id, name, self._after())

    def poke(self, context: Context) -> bool | PokeReturnValue:
        if self._first_poke is None:
            self._first_poke = time.time()
        search, first = self._search, self._first_poke
        project_id, workspace = self.hook.settings.project_id, self.hook._workspace(self.workspace)

        def fetch() -> Any:
            return drive(poll_run(search, project_id, workspace, time.time() - first), self.hook._json)

        finish = poll(self._wait, fetch, self.log)
        if finish is not None:
            return PokeReturnValue(is_done=True, xcom_value=self._finish(finish, self.rules))
        if self.deferrable:
            self._defer()
        return False

    def _defer(self) -> None:
        from airflow_provider_dataqc.triggers.quality import DataQCJobRunTrigger

        rules, after = self.rules, self._after()
        self.defer(
            trigger=DataQCJobRunTrigger(
                instance_id=rules.instance_id,
                job_id=rules.job_id,
                job_type=self.job_type,
                job_name=self._search.job_name,
                fail_on_alarm=self.fail_on_alarm,
                started_after=after.isoformat() if after else None,
                search_started=self._first_poke,
                appear_within=self.appear_within,
                dataqc_conn_id=self.dataqc_conn_id,
                workspace=self.workspace,
                poll_interval=self.poke_interval,
                first_poll_after=first_trigger_poll(self.poke_interval),
                end_time=time.time() + self.timeout if self.timeout else None,
                max_consecutive_errors=self.max_consecutive_errors,
                consecutive_errors=self._wait.errors,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_TIMEOUT_GRACE if self.timeout else None,
        )

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resume after the trigger: the XCom on success, else the matching failure."""
        rules = self.rules
        if rules.job_id is not None:
            try:
                self._detail = quality.job_detail(
                    self.hook, rules.job_id, job_type=self.job_type, workspace=self.workspace
                )
            except Exception as err:  # only names rules in the table
                self.log.warning("Could not read job %s for rule names: %s", rules.job_id, err)
        return self._finish(event, rules)

    def _finish(self, finish: Any, rules: JobRunRules) -> dict[str, Any]:
        try:
            self._output = quality.finish_run(finish, rules, self.log, self._detail)
        except Exception:
            raw = getattr(finish, "event", finish)
            self._output = dict(raw.get("record") or {}) if isinstance(raw, dict) else None
            raise
        return self._output

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Resume after the trigger with the ``soft_fail`` rule of poke mode."""
        from airflow_provider_dataqc.sensors.dataqc import end_like_a_poke

        try:
            return super(BaseSensorOperator, self).resume_execution(next_method, next_kwargs, context)
        except Exception as err:
            end_like_a_poke(self, err)
            raise

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The checked tables as input datasets with the rules' assertions (OpenLineage provider installed)."""
        from airflow_provider_dataqc.lineage import operator_lineage

        return operator_lineage(self._detail, self._output)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        return self.get_openlineage_facets_on_complete(task_instance)
