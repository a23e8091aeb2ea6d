"""DataQCHook: authenticated calls to Huawei Cloud DataArts Studio Data Quality (DQC).

A thin driver of the pure core: each call is :func:`airflow_provider_dataqc.core.calls.call`
(authentication, the one token refresh, the retry policy) carried out with ``requests`` and
``time.sleep``; each wait is :class:`airflow_provider_dataqc.core.wait.Wait` driven by
:mod:`.wait`. Its async twin, for triggers, is :mod:`.dataqc_async` (the drivers differ only
by ``await``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_dataqc import DEFAULT_CONN_ID
from airflow_provider_dataqc.core import api
from airflow_provider_dataqc.core.answers import (
    DownloadResult,
    UploadResult,
    judge_connection_test,
    not_the_file,
    read_json_object,
    read_resource_id,
    read_status,
)
from airflow_provider_dataqc.core.calls import Action, Answer, Exclusive, Mask, Send, Sleep, call
from airflow_provider_dataqc.core.errors import CallFailure, header
from airflow_provider_dataqc.core.settings import AuthType, ConnectionSettings, InvalidSettingError, resolve_workspace
from airflow_provider_dataqc.core.status import ResourceStatus
from airflow_provider_dataqc.core.tokens import TOKEN_CACHE
from airflow_provider_dataqc.core.wait import ResourceStatusRules, Wait
from airflow_provider_dataqc.exceptions import DataQCApiError, DataQCInvalidArgumentError, DataQCOutcomeUnknownError
from airflow_provider_dataqc.hooks.connection import (
    connection_form_widgets,
    mask_secret_value,
    settings_from_connection,
    ui_field_behaviour,
)
from airflow_provider_dataqc.hooks.transport import DownloadSink, RequestsTransport, Written, read_upload_source
from airflow_provider_dataqc.hooks.wait import conclude, wait_here

__all__ = [
    "DataQCApiError",
    "DataQCHook",
    "DataQCInvalidArgumentError",
    "DataQCOutcomeUnknownError",
    "DownloadResult",
    "ResourceStatus",
    "UploadResult",
    "settings_from_connection",
]

_T = TypeVar("_T")

#: A resource ID that cannot exist, asked for by :meth:`DataQCHook.test_connection`.
CONNECTION_TEST_RESOURCE_ID = "airflow-provider-dataqc-connection-test"


class DataQCHook(BaseHook):
    """Calls Huawei Cloud DataArts Studio Data Quality with a ``dataqc`` connection.

    Nothing is looked up or sent when the hook is built: the connection is read
    on the first call, so operators can build hooks at DAG parse time for free.

    :param dataqc_conn_id: the ``dataqc`` connection to use.
    :param workspace: DataArts Studio workspace ID for every call of this hook;
        default: the connection's extra ``workspace``.
    :param project_id: overrides the connection's extra ``project_id``.
    """

    conn_name_attr = "dataqc_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "dataqc"
    hook_name = "Huawei Cloud DataArts Quality"

    def __init__(
        self,
        dataqc_conn_id: str = default_conn_name,
        *,
        workspace: str | None = None,
        project_id: str | None = None,
    ) -> None:
        super().__init__()
        self.dataqc_conn_id = dataqc_conn_id
        self.workspace = workspace
        self.project_id = project_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dataqc_conn_id={self.dataqc_conn_id!r}, workspace={self.workspace!r})"

    # ----------------------------------------------------------------- connection form

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Field labels for Airflow 2 (Airflow 3 reads them from the provider info)."""
        return ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields for Airflow 2's form (Airflow 3 reads ``conn-fields`` from the provider info)."""
        return connection_form_widgets()

    # ----------------------------------------------------------------- settings and transport

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The validated connection (read once per hook; secrets registered with the log masker).

        :raises DataQCApiError: when a connection field is wrong (the message says which and why).
        """
        return self._read_settings(name_connection=True)

    def _read_settings(self, *, name_connection: bool) -> ConnectionSettings:
        conn = self.get_connection(self.dataqc_conn_id)
        return settings_from_connection(
            conn, conn.extra_dejson, project_id=self.project_id, name_connection=name_connection
        )

    def get_conn(self) -> Any:
        """The ``requests.Session`` used for calls (kept open and reused by this hook)."""
        return self._transport.session

    @cached_property
    def _transport(self) -> RequestsTransport:
        settings = self.settings
        if settings.verify is False:
            self.log.warning(
                "TLS certificate verification is OFF for connection %r (extra verify=false): "
                "answers from %s cannot be trusted",
                self.dataqc_conn_id,
                settings.endpoint,
            )
        return RequestsTransport(settings.verify)

    def _workspace(self, workspace: str | None) -> str:
        try:
            return resolve_workspace(self.settings, workspace, self.workspace)
        except InvalidSettingError as err:
            raise DataQCInvalidArgumentError(str(err)) from None

    def _drive(self, plan: Generator[Action, Any, _T], sink: DownloadSink | None = None) -> _T:
        """Carry out a plan's actions with ``requests``, ``time.sleep`` and thread locks (the one
        place where the sync hook does I/O) and return what the plan returns."""
        reply: Any = None
        try:
            while True:
                action = plan.send(reply)
                if isinstance(action, Send):
                    reply = self._transport.send(action.request, sink)
                elif isinstance(action, Sleep):
                    time.sleep(action.seconds)
                    reply = None
                elif isinstance(action, Exclusive):
                    with TOKEN_CACHE.fetch_lock(action.key):
                        reply = self._drive(action.plan)
                elif isinstance(action, Mask):
                    mask_secret_value(action.secret)
                    reply = None
                else:  # pragma: no cover - the plan yields nothing else
                    raise TypeError(f"unknown action {action!r}")
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            plan.close()

    def _request(self, request: api.ApiRequest, sink: DownloadSink | None = None) -> Answer:
        outcome = self._drive(call(self.settings, request, log=self.log), sink)
        if isinstance(outcome, CallFailure):
            raise DataQCApiError.from_failure(outcome, idempotent=request.idempotent)
        return outcome

    def _json(self, request: api.ApiRequest) -> dict[str, Any]:
        payload = read_json_object(self._request(request), request.operation)
        if isinstance(payload, CallFailure):
            raise DataQCApiError.from_failure(payload, idempotent=request.idempotent)
        return payload

    # ----------------------------------------------------------------- calls

    def get_resource_status(self, resource_id: str, *, workspace: str | None = None) -> ResourceStatus:
        """The status of an import/export task.

        :param resource_id: the ``resource_id`` an export or upload answered.
        :param workspace: overrides the hook's and the connection's workspace.
        :raises DataQCApiError: on an error answer, no answer, or an answer that
            is not a status record (the message quotes a short excerpt).
        """
        request = self._build(api.status_request, self._workspace(workspace), resource_id)
        status = read_status(self._request(request))
        if isinstance(status, CallFailure):
            raise DataQCApiError.from_failure(status)
        return status

    def export_resources(
        self,
        resource_type: str,
        *,
        resources: Iterable[int | str] | None = None,
        select_all: bool = False,
        export_mode: str | None = None,
        obs_service_type: str | None = None,
        workspace: str | None = None,
    ) -> str:
        """Start an export and return its ``resource_id`` (poll it with :meth:`get_resource_status`).

        :param resource_type: ``rule-template``, ``quality-task``, ``consistency-task`` or ``report``.
        :param resources: IDs to export (or ``select_all=True``).
        :param export_mode: ``None`` (local file) or ``"obs"`` (reports only).
        :param obs_service_type: ``technology`` or ``business`` (reports only).
        :raises DataQCApiError: on bad arguments (before any request) or a failed call.
            An export is never repeated after the service may have acted on it.
        """
        request = self._build(
            api.export_request,
            self._workspace(workspace),
            resource_type,
            resources=resources,
            select_all=select_all,
            export_mode=export_mode,
            obs_service_type=obs_service_type,
        )
        return _resource_id(self._json(request), "export")

    def upload_resource_file(
        self,
        resource_type: str,
        source: str | os.PathLike[str] | BinaryIO,
        *,
        workspace: str | None = None,
        file_name: str | None = None,
    ) -> UploadResult:
        """Upload an exported file (multipart) ahead of :meth:`import_resources`.

        :param resource_type: ``rule-template``, ``quality-task`` or ``consistency-task``.
        :param source: a local path or a binary file object (read whole: the call sends one body).
        :param file_name: the file name sent to the service; default: the path's or the file object's name.
        :returns: the upload's ``resource_id`` and the topics, directories, queues and
            connections found in the file (what may need a mapping on import).
        :raises DataQCApiError: when an argument is wrong or the file is missing (before any
            request), or the call fails. An upload is never repeated after the service may have acted.
        """
        workspace_id = self._workspace(workspace)
        name, content = read_upload_source(source, file_name=file_name)
        request = self._build(api.upload_request, workspace_id, resource_type, file_name=name, content=content)
        body = request.body or b""
        if self.settings.auth_type is AuthType.AKSK and len(body) > 12 * 1024 * 1024:
            raise DataQCInvalidArgumentError(
                f"the upload is {len(body)} bytes; AK/SK requests are limited to 12 MB: use token or password auth"
            )
        payload = self._json(request)
        return UploadResult.from_api(_resource_id(payload, "upload"), payload)

    def import_resources(
        self,
        resource_id: str,
        resource_type: str,
        *,
        strategy: str = "SKIP",
        directories: api.MappingInput = None,
        topics: api.MappingInput = None,
        connections: api.MappingInput = None,
        queues: api.MappingInput = None,
        workspace: str | None = None,
    ) -> None:
        """Import an uploaded file. Poll the upload's ``resource_id`` to follow the import.

        :param strategy: ``SKIP``, ``OVERRIDE`` or ``TERMINATION`` (on duplicate names).
        :param directories: mappings as ``{old: new}`` or a list of
            ``{"old_value", "new_value", "mapping_value"}`` (likewise topics, connections, queues).
        :raises DataQCApiError: on bad arguments (before any request) or a failed call.
        """
        request = self._build(
            api.import_request,
            self._workspace(workspace),
            resource_id,
            resource_type,
            strategy=strategy,
            directories=directories,
            topics=topics,
            connections=connections,
            queues=queues,
        )
        self._request(request)

    def download_resource_file(
        self,
        resource_id: str,
        destination: str | os.PathLike[str],
        *,
        obs_type: str | None = None,
        workspace: str | None = None,
        resource_type: str | None = None,
    ) -> DownloadResult:
        """Download an exported file to a local path, streaming it in chunks (memory stays flat).

        The file is written under a temporary name beside ``destination`` and
        moved into place only when complete; an interrupted download leaves
        nothing at ``destination`` (an existing file there is kept as it was).
        A download cut short is retried like any idempotent call.

        :param resource_id: the export's ``resource_id`` (its status should be SUCCESS / GENERATED).
        :param destination: the local file to write (parent folders are created).
        :param obs_type: ``technology`` or ``business``; the service requires it for reports.
        :param resource_type: the exported type, if known (``report``, ``rule-template`` ...):
            only used to check ``obs_type`` before any request (required for ``report``,
            refused otherwise). Without it, a report downloaded without ``obs_type`` is
            refused by the service (HTTP 400).
        :returns: the destination, the byte count, the SHA-256 and the service's file name.
        :raises DataQCApiError: on bad arguments (before any request), a failed call,
            an incomplete body after the retries, or a file that cannot be written.
        """
        try:
            if resource_type is not None:
                api.check_download_type(resource_type, obs_type)
        except InvalidSettingError as err:
            raise DataQCInvalidArgumentError(str(err)) from None
        request = self._build(api.download_request, self._workspace(workspace), resource_id, obs_type=obs_type)
        target = Path(destination)
        if target.is_dir():
            raise DataQCInvalidArgumentError(f"download destination {str(target)!r} is a directory: name the file")
        target.parent.mkdir(parents=True, exist_ok=True)
        sink = DownloadSink(target)
        answer = self._request(request, sink)
        if answer.streamed is None:  # an error document came instead of the file
            raise DataQCApiError.from_failure(not_the_file(answer))
        written: Written = answer.streamed
        os.replace(written.temp_path, target)
        return DownloadResult(
            str(target),
            written.size,
            written.sha256,
            api.file_name_from_disposition(header(answer.headers, "Content-Disposition")),
        )

    # ---- quality jobs

    def run_quality_job(self, job_id: str, *, job_type: str = "quality", workspace: str | None = None) -> str:
        """Start a run of a quality job (``job_type="quality"``) or comparison job (``"comparison"``)
        and return its ``instance_id``. Never repeated after the service may have acted (a repeat
        would start a second run).

        :raises DataQCApiError: on bad arguments (before any request) or a failed call.
        """
        from airflow_provider_dataqc.hooks import quality

        return quality.run_quality_job(self, job_id, job_type=job_type, workspace=workspace)

    def get_job_instance(
        self, instance_id: str, *, job_id: str | None = None, job_type: str = "quality", workspace: str | None = None
    ) -> Any:
        """A run (:class:`~airflow_provider_dataqc.core.jobs.JobInstance`), found in the instance list
        (filtered by the job's name when ``job_id`` is given, and its type; matched by ID).

        :raises DataQCApiError: a failed call, or the run is not listed (the message says what was searched).
        """
        from airflow_provider_dataqc.hooks import quality

        return quality.get_job_instance(self, instance_id, job_id=job_id, job_type=job_type, workspace=workspace)

    def get_job_instance_results(self, instance_id: str, *, workspace: str | None = None) -> list[dict[str, Any]]:
        """Every page of a run's rule results, each as the service gave it."""
        from airflow_provider_dataqc.hooks import quality

        return quality.get_job_instance_results(self, instance_id, workspace=workspace)

    def stop_job_instances(self, instance_ids: Iterable[str], *, workspace: str | None = None) -> None:
        """Stop runs (``batch-stop``)."""
        from airflow_provider_dataqc.hooks import quality

        quality.stop_job_instances(self, instance_ids, workspace=workspace)

    def wait_for_resource(
        self,
        resource_id: str,
        *,
        poll_interval: float = 30.0,
        timeout: float | None = None,
        wait_for_file: bool = False,
        workspace: str | None = None,
        max_consecutive_errors: int = 3,
    ) -> ResourceStatus:
        """Poll an import/export task until it ends, in this process (for ``@task`` code).

        The same wait as :class:`~airflow_provider_dataqc.sensors.dataqc.DataQCResourceStatusSensor`
        (one INFO line per poll, transient errors tolerated ``max_consecutive_errors - 1``
        times in a row, see ``docs/reliability.md``).

        :param poll_interval: seconds between polls.
        :param timeout: seconds to wait at most (default: no limit).
        :param wait_for_file: also wait for ``file_status`` GENERATED.
        :returns: the final status (SUCCESS, with the file GENERATED when asked).
        :raises AirflowFailException: the task ended FAILED or TIMEOUT, or its file is lost.
        :raises AirflowSensorTimeout: ``timeout`` passed first.
        :raises DataQCApiError: a permanent error, or too many transient ones in a row.
        """
        rules = ResourceStatusRules(str(resource_id), wait_for_file=wait_for_file)
        wait = Wait(rules, max_consecutive_errors=max_consecutive_errors, poll_interval=poll_interval)
        request = self._build(api.status_request, self._workspace(workspace), resource_id)

        def fetch() -> ResourceStatus:
            status = read_status(self._request(request))
            if isinstance(status, CallFailure):
                raise DataQCApiError.from_failure(status)
            return status

        finish = wait_here(wait, fetch, poll_interval=max(float(poll_interval), 0.0), timeout=timeout, log=self.log)
        ended = conclude(finish, rules, self.log)
        return rules.reread(ended.record)

    def test_connection(self) -> tuple[bool, str]:
        """Make one authenticated status call for a resource that cannot exist.

        Any answer carrying a DataArts Quality error code (``DQC.*``, at any status but 401/403,
        the documented 500 form included) proves the endpoint, project and credentials passed
        the gateway; 401/403, or a gateway authentication code (``APIGW.03xx``), proves they did
        not (see :func:`~airflow_provider_dataqc.core.answers.judge_connection_test`). A wrong
        field is named, not the connection: Airflow tests a form under a random temporary ID.
        """
        try:
            self.__dict__["settings"] = self._read_settings(name_connection=False)  # what self.settings caches
        except DataQCApiError as err:
            return False, str(err)
        except Exception as err:
            return False, f"{type(err).__name__}: {err}"
        try:
            # One real call, not retried: the answer itself is the verdict (a button, not a wait).
            once = replace(self.settings, retry=replace(self.settings.retry, max_retries=0))
            request = self._build(api.status_request, self._workspace(None), CONNECTION_TEST_RESOURCE_ID)
            outcome = self._drive(call(once, request, log=self.log))
        except Exception as err:
            return False, f"{type(err).__name__}: {err}"
        judged = read_status(outcome) if isinstance(outcome, Answer) else outcome
        return judge_connection_test(judged if isinstance(judged, CallFailure) else None)

    def _build(self, builder: Callable[..., api.ApiRequest], *args: Any, **kwargs: Any) -> api.ApiRequest:
        try:
            return builder(self.settings.project_id, *args, **kwargs)
        except InvalidSettingError as err:
            raise DataQCInvalidArgumentError(str(err)) from None


def _resource_id(payload: dict[str, Any], operation: str) -> str:
    value = read_resource_id(payload)
    if value is None:  # a success without its resource_id: the service may have acted all the same
        raise DataQCOutcomeUnknownError(
            f"DataArts Quality {operation} answered without a resource_id: {str(payload)[:200]!r}; it may have "
            f"been carried out all the same: check the workspace before running it again (not retried)"
        )
    return value
