"""DataQCResourceStatusSensor: waits for a DataArts Quality import/export task.

Poke, reschedule or deferrable: each poke is one poll of the core wait engine
(:class:`airflow_provider_dataqc.core.wait.Wait`, driven by :mod:`airflow_provider_dataqc.hooks.wait`);
deferred, the trigger drives the same engine and its event is checked and concluded the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_dataqc import DEFAULT_CONN_ID
from airflow_provider_dataqc.core.wait import DEFERRAL_TIMEOUT_GRACE, ResourceStatusRules, Wait

# The hook and the call machinery are imported when the task runs, not here: a DAG file that
# only builds sensors is parsed often, and loads neither an HTTP client nor the call plan.
if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_dataqc.hooks.dataqc import DataQCHook
    from airflow_provider_dataqc.sensors.quality import DataQCJobInstanceSensor  # noqa: F401  (typed re-export)


class DataQCResourceStatusSensor(BaseSensorOperator):
    """Waits until a DataArts Quality import/export task reaches SUCCESS.

    FAILED or TIMEOUT fail the task at once, without retries
    (``AirflowFailException``), with the service's ``error_msg``, the status,
    the resource ID and the request ID logged at ERROR and in the exception.
    WAITING/RUNNING keep waiting (one INFO line per poke); an undocumented
    status keeps waiting with a WARNING. Transient errors (no answer, 429, 5xx
    after the hook's own retries, a 200 that is not a status record) are
    tolerated ``max_consecutive_errors - 1`` times in a row and never read as
    success; permanent ones (400, 401 after one token refresh, 403, 404) fail
    the poke at once.

    XCom: the status record as a dict (API field names, times in ISO-8601,
    plus ``request_id``).

    :param resource_id: the task's ``resource_id`` (templated), e.g.
        ``"{{ ti.xcom_pull(task_ids='export') }}"``.
    :param dataqc_conn_id: the ``dataqc`` connection.
    :param workspace: workspace ID (templated); default: the connection's.
    :param wait_for_file: also wait for ``file_status`` GENERATED; fail on FAILED or DELETED.
    :param deferrable: wait on the triggerer instead of a worker slot
        (default: ``[operators] default_deferrable``).
    :param max_consecutive_errors: transient failed polls in a row before failing.
    """

    template_fields: Sequence[str] = ("resource_id", "workspace")
    ui_color = "#c8e6c9"

    def __init__(
        self,
        *,
        resource_id: str,
        dataqc_conn_id: str = DEFAULT_CONN_ID,
        workspace: str | None = None,
        wait_for_file: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_consecutive_errors: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.resource_id = resource_id
        self.dataqc_conn_id = dataqc_conn_id
        self.workspace = workspace
        self.wait_for_file = wait_for_file
        self.deferrable = deferrable
        self.max_consecutive_errors = max(int(max_consecutive_errors), 1)

    @cached_property
    def hook(self) -> DataQCHook:
        from airflow_provider_dataqc.hooks.dataqc import DataQCHook

        return DataQCHook(self.dataqc_conn_id, workspace=self.workspace)

    @property
    def rules(self) -> ResourceStatusRules:
        return ResourceStatusRules(str(self.resource_id), wait_for_file=self.wait_for_file)

    @cached_property
    def _wait(self) -> Wait:
        # Made at the first poke, after templates are rendered; it counts failed polls in a row.
        return Wait(self.rules, max_consecutive_errors=self.max_consecutive_errors)

    def _poll(self) -> dict[str, Any] | None:
        from airflow_provider_dataqc.hooks.wait import conclude, poll

        def fetch() -> Any:
            return self.hook.get_resource_status(self.resource_id, workspace=self.workspace)

        finish = poll(self._wait, fetch, self.log)
        return None if finish is None else conclude(finish, self.rules, self.log).record

    def poke(self, context: Context) -> bool | PokeReturnValue:
        record = self._poll()
        if record is not None:
            return PokeReturnValue(is_done=True, xcom_value=record)
        if self.deferrable:
            # Deferring from the first poke (not from an execute of our own) keeps Airflow's
            # sensor loop in charge: the same soft_fail rule, and no nested-execute warning.
            self._defer()
        return False

    def _defer(self) -> None:
        # Imported here: DAG files that only build sensors never load aiohttp.
        from airflow_provider_dataqc.hooks.wait import first_trigger_poll
        from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

        self.defer(
            trigger=DataQCResourceStatusTrigger(
                resource_id=self.resource_id,
                dataqc_conn_id=self.dataqc_conn_id,
                workspace=self.workspace,
                poll_interval=self.poke_interval,
                wait_for_file=self.wait_for_file,
                end_time=time.time() + self.timeout if self.timeout else None,
                max_consecutive_errors=self.max_consecutive_errors,
                # A failed first poke counts: the budget is for failures in a row.
                consecutive_errors=self._wait.errors,
                first_poll_after=first_trigger_poll(self.poke_interval),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_TIMEOUT_GRACE if self.timeout else None,
        )

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resume after the trigger: the record on success, else the matching failure."""
        from airflow_provider_dataqc.hooks.wait import conclude

        return conclude(event, self.rules, self.log).record or {}

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Resume after the trigger with the rule of poke mode (see :func:`end_like_a_poke`)."""
        try:
            # BaseOperator's resume, not BaseSensorOperator's: that one skips on every error with
            # soft_fail, where a poke skips only on failure and timeout.
            return super(BaseSensorOperator, self).resume_execution(next_method, next_kwargs, context)
        except Exception as err:
            end_like_a_poke(self, err)
            raise


def end_like_a_poke(sensor: Any, err: Exception) -> None:
    """One rule for ``soft_fail`` in every mode (poke, reschedule, deferrable): the task is
    skipped when what it waited for FAILED or TIMEOUT, or the wait timed out; an error (a
    permanent one, too many transient ones, a bad connection, a rejected event) fails it.
    ``never_fail`` skips on anything. Raises the skip, or returns to let ``err`` propagate."""
    from airflow.providers.common.compat.sdk import AirflowSkipException, AirflowTaskTimeout

    if type(err).__name__ == "TaskDeferralTimeout":  # the deferral's backstop: a timeout like any other
        raise AirflowSensorTimeout(*err.args) from err
    if sensor.soft_fail and isinstance(err, (AirflowFailException, AirflowSensorTimeout, AirflowTaskTimeout)):
        raise AirflowSkipException("Skipping due to soft_fail is set to True.") from err
    if getattr(sensor, "never_fail", False):
        raise AirflowSkipException("Skipping due to never_fail is set to True.") from err


def __getattr__(name: str) -> Any:
    # DataQCJobInstanceSensor is importable from here too; loaded on first use, so that a DAG
    # file with resource-status sensors only never loads the quality-job code.
    if name == "DataQCJobInstanceSensor":
        from airflow_provider_dataqc.sensors.quality import DataQCJobInstanceSensor

        return DataQCJobInstanceSensor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
