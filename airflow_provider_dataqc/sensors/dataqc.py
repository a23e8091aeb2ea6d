"""DataQCResourceStatusSensor: waits for a DataArts Quality import/export task."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_dataqc.core.status import Outcome, ResourceStatus, StatusPayloadError, assess
from airflow_provider_dataqc.hooks.dataqc import DataQCApiError, DataQCHook

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: The deferral's own timeout is a backstop (no triggerer running): it ends this much after the
#: trigger's, so the trigger's timeout event (with the last status seen) normally wins the race.
#: On Airflow 2 the backstop's TaskDeferralTimeout is retried; AirflowSensorTimeout never is.
DEFERRAL_TIMEOUT_GRACE = timedelta(minutes=2)


class StatusWaiter:
    """What a sensor or an operator does with each status answer, in poke mode and
    after a trigger event alike: log it, fail fast on FAILED/TIMEOUT, tolerate a
    bounded run of transient errors. Mixed into operators that wait."""

    resource_id: str
    workspace: str | None
    wait_for_file: bool
    max_consecutive_errors: int
    log: Any

    def _judge(self, status: ResourceStatus) -> dict[str, Any] | None:
        """The XCom record when done, ``None`` to keep waiting.

        :raises AirflowFailException: FAILED/TIMEOUT (or the file is lost), logged
            at ERROR first with the service's ``error_msg`` and the request ID.
        """
        verdict = assess(status, wait_for_file=self.wait_for_file)
        if verdict.outcome is Outcome.SUCCESS:
            self.log.info("%s", verdict.message)
            return status.to_dict()
        if verdict.outcome is Outcome.FAILED:
            self.log.error("%s", verdict.message)
            raise AirflowFailException(verdict.message)
        (self.log.warning if verdict.unknown_status else self.log.info)("%s", verdict.message)
        return None

    def _poll_once(self, hook: DataQCHook) -> dict[str, Any] | None:
        """One status call judged.

        A transient error (no answer, 429, 5xx after the hook's own retries, or a 2xx
        answer that is not a status, such as a maintenance page) logs a WARNING and
        returns ``None`` (poll again at the next interval) until
        ``max_consecutive_errors`` polls in a row have failed; then, or at once for a
        permanent error (400, 401, 403, 404 ...), the last error is raised.
        """
        try:
            status = hook.get_resource_status(self.resource_id, workspace=self.workspace)
        except DataQCApiError as err:
            errors = getattr(self, "_consecutive_errors", 0) + 1
            self._consecutive_errors = errors
            if err.transient and errors < self.max_consecutive_errors:
                self.log.warning(
                    "Poll %d/%d of %r failed, polling again at the next interval: %s",
                    errors,
                    self.max_consecutive_errors,
                    self.resource_id,
                    err,
                )
                return None
            if err.transient:
                self.log.error("Giving up on %r after %d failed polls in a row: %s", self.resource_id, errors, err)
            else:
                self.log.error("Giving up on %r: %s", self.resource_id, err)
            raise
        self._consecutive_errors = 0
        return self._judge(status)

    def _trigger(self, *, poll_interval: float, timeout: float | None, dataqc_conn_id: str) -> Any:
        from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

        return DataQCResourceStatusTrigger(
            resource_id=self.resource_id,
            dataqc_conn_id=dataqc_conn_id,
            workspace=self.workspace,
            poll_interval=poll_interval,
            wait_for_file=self.wait_for_file,
            end_time=time.time() + timeout if timeout else None,
            max_consecutive_errors=self.max_consecutive_errors,
            # A failed first poke counts: the budget is for failures in a row.
            consecutive_errors=getattr(self, "_consecutive_errors", 0),
        )

    def _complete(self, event: Any) -> dict[str, Any]:
        """Turn a trigger event into the XCom record or the matching exception.

        Only the four known event shapes are accepted; anything else fails the task.
        """
        from airflow_provider_dataqc.triggers.dataqc import (
            EVENT_ERROR,
            EVENT_FAILED,
            EVENT_STATUSES,
            EVENT_SUCCESS,
            EVENT_TIMEOUT,
        )

        if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
            raise AirflowException(f"unexpected trigger event for {self.resource_id!r}: {event!r:.300}")
        kind, message = event["status"], str(event.get("message") or "")
        if kind in (EVENT_SUCCESS, EVENT_FAILED):
            try:
                record = event.get("record")
                request_id = record.get("request_id") if isinstance(record, dict) else None
                status = ResourceStatus.from_api(record, request_id=request_id)
            except StatusPayloadError as err:
                raise AirflowException(f"trigger event without a usable record ({err}): {event!r:.300}") from None
            record = self._judge(status)
            if record is None or kind != EVENT_SUCCESS:
                raise AirflowException(f"trigger event {kind!r} does not match its record: {message}")
            return event["record"]
        if kind == EVENT_TIMEOUT:
            self.log.error("%s", message)
            raise AirflowSensorTimeout(message)
        assert kind == EVENT_ERROR
        self.log.error("Waiting for %r failed: %s", self.resource_id, message)
        error = event.get("error")
        detail: dict[str, Any] = error if isinstance(error, dict) else {}
        raise DataQCApiError(
            message,
            status_code=detail.get("status_code"),
            error_code=detail.get("error_code"),
            error_msg=detail.get("error_msg"),
            request_id=detail.get("request_id"),
            transient=bool(detail.get("transient")),
        )


class DataQCResourceStatusSensor(StatusWaiter, BaseSensorOperator):
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
        dataqc_conn_id: str = DataQCHook.default_conn_name,
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
        return DataQCHook(self.dataqc_conn_id, workspace=self.workspace)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        record = self._poll_once(self.hook)
        if record is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=record)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        record = self._poll_once(self.hook)
        if record is not None:
            return record
        self.defer(
            trigger=self._trigger(
                poll_interval=self.poke_interval, timeout=self.timeout, dataqc_conn_id=self.dataqc_conn_id
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_TIMEOUT_GRACE if self.timeout else None,
        )

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resume after the trigger: the record on success, else the matching failure."""
        return self._complete(event)
