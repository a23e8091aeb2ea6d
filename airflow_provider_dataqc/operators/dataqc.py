"""Operators for the DataArts Quality round trip: export, download, upload + import.

* :class:`DataQCExportOperator` starts an export (XCom: its ``resource_id``) and can wait for it.
* :class:`DataQCDownloadOperator` streams the exported file to a local path or object storage.
* :class:`DataQCImportOperator` uploads a file, imports it into a workspace and by default waits.

Waiting is the sensor's wait — the core wait engine, the same logging and failure
reporting — in the worker or on the triggerer (``deferrable=True``), where the operator's
result travels in the trigger's event.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_dataqc.core import api
from airflow_provider_dataqc.core.errors import printable
from airflow_provider_dataqc.core.settings import InvalidSettingError
from airflow_provider_dataqc.core.wait import DEFERRAL_TIMEOUT_GRACE, ResourceStatusRules, Wait
from airflow_provider_dataqc.exceptions import DataQCApiError, DataQCInvalidArgumentError
from airflow_provider_dataqc.hooks.dataqc import DataQCHook
from airflow_provider_dataqc.hooks.wait import conclude, first_trigger_poll, poll, wait_here

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_dataqc.operators.quality import DataQCRunQualityJobOperator  # noqa: F401  (typed re-export)

#: How long an operator waits for its task by default (``wait_timeout``): a week.
DEFAULT_WAIT_TIMEOUT = 7 * 24 * 3600.0
#: XCom key under which earlier releases kept an operator's result while it was deferred
#: (read when a deferral started by one of them resumes; the result now travels in the event).
RESULT_XCOM_KEY = "dataqc_result"
_COPY_CHUNK_BYTES = 1024 * 1024


class _WaitingOperator(BaseOperator):
    """Starts something that yields a ``resource_id`` and, if asked, waits for it like the sensor does."""

    def __init__(
        self,
        *,
        dataqc_conn_id: str = DataQCHook.default_conn_name,
        workspace: str | None = None,
        wait_for_completion: bool = False,
        wait_for_file: bool = False,
        poll_interval: float = 30.0,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_consecutive_errors: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataqc_conn_id = dataqc_conn_id
        self.workspace = workspace
        self.wait_for_completion = wait_for_completion
        self.wait_for_file = wait_for_file
        self.poll_interval = max(float(poll_interval), 0.0)
        self.wait_timeout = float(wait_timeout)
        self.deferrable = deferrable
        self.max_consecutive_errors = max(int(max_consecutive_errors), 1)

    @cached_property
    def hook(self) -> DataQCHook:
        return DataQCHook(self.dataqc_conn_id, workspace=self.workspace)

    def _rules(self, resource_id: str) -> ResourceStatusRules:
        return ResourceStatusRules(resource_id, wait_for_file=self.wait_for_file)

    def _wait(self, resource_id: str, context: Context, result: Any) -> Any:
        """Wait for ``resource_id`` in this process and return ``result``, or defer to the
        trigger (then :meth:`execute_complete` finishes the task and returns ``result``).

        :raises AirflowFailException: the task ended FAILED or TIMEOUT (no retries).
        :raises AirflowSensorTimeout: ``wait_timeout`` passed first.
        """
        rules = self._rules(resource_id)
        wait = Wait(rules, max_consecutive_errors=self.max_consecutive_errors)

        def fetch() -> Any:
            return self.hook.get_resource_status(resource_id, workspace=self.workspace)

        if self.deferrable:
            finish = poll(wait, fetch, self.log)
            if finish is None:
                from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

                self.defer(
                    trigger=DataQCResourceStatusTrigger(
                        resource_id=resource_id,
                        dataqc_conn_id=self.dataqc_conn_id,
                        workspace=self.workspace,
                        poll_interval=self.poll_interval,
                        wait_for_file=self.wait_for_file,
                        end_time=time.time() + self.wait_timeout,
                        max_consecutive_errors=self.max_consecutive_errors,
                        consecutive_errors=wait.errors,
                        result=result,
                        first_poll_after=first_trigger_poll(self.poll_interval),
                    ),
                    method_name="execute_complete",
                    timeout=timedelta(seconds=self.wait_timeout) + DEFERRAL_TIMEOUT_GRACE,
                )
        else:
            finish = wait_here(wait, fetch, poll_interval=self.poll_interval, timeout=self.wait_timeout, log=self.log)
        conclude(finish, rules, self.log)
        return result

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """Resume after the trigger: returns what :meth:`execute` would have returned, or
        raises what the sensor raises for the same event."""
        resource_id = str(event.get("resource_id") or "") if isinstance(event, dict) else ""
        ended = conclude(event, self._rules(resource_id), self.log)
        if ended.result is not None:
            return ended.result
        kept = context["ti"].xcom_pull(task_ids=self.task_id, key=RESULT_XCOM_KEY)
        if kept is not None:
            return kept
        self.log.warning("The trigger event carries no result; returning the resource_id only")
        return self._fallback_result(resource_id)

    def _fallback_result(self, resource_id: str) -> Any:
        return resource_id


class DataQCExportOperator(_WaitingOperator):
    """Starts an export of quality resources; optionally waits for it to finish.

    XCom (return value): the export's ``resource_id`` (a string), also after waiting.

    :param resource_type: ``rule-template``, ``quality-task``, ``consistency-task`` or ``report`` (templated).
    :param resource_ids: IDs of the resources to export (templated; a list, or a rendered
        string such as ``"[1, 2]"`` or ``"1,2"``). Named so because ``resources`` is
        Airflow's own ``BaseOperator`` argument (CPU/RAM requests).
    :param select_all: export every resource of the type.
    :param export_mode: ``None`` (a local file) or ``"obs"`` (reports only; templated).
    :param obs_service_type: ``technology`` or ``business`` (reports only; templated).
    :param dataqc_conn_id: the ``dataqc`` connection.
    :param workspace: workspace ID (templated); default: the connection's.
    :param wait_for_completion: also wait until the export reaches SUCCESS; FAILED
        or TIMEOUT fail the task without retries, with the service's ``error_msg``
        logged at ERROR, as the sensor does.
    :param wait_for_file: when waiting, also wait for the file to be GENERATED.
    :param poll_interval: seconds between polls when waiting.
    :param wait_timeout: seconds to wait before ``AirflowSensorTimeout``.
    :param deferrable: wait on the triggerer (default ``[operators] default_deferrable``).
    :param max_consecutive_errors: transient failed polls in a row before failing.
    :raises DataQCApiError: on bad arguments (before any request) or a failed call.
        An export is never sent twice by the hook's retries.
    """

    template_fields: Sequence[str] = ("resource_type", "resource_ids", "workspace", "export_mode", "obs_service_type")
    ui_color = "#bbdefb"

    def __init__(
        self,
        *,
        resource_type: str,
        resource_ids: Sequence[int | str] | str | None = None,
        select_all: bool = False,
        export_mode: str | None = None,
        obs_service_type: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.resource_type = resource_type
        self.resource_ids = resource_ids
        self.select_all = select_all
        self.export_mode = export_mode
        self.obs_service_type = obs_service_type

    def execute(self, context: Context) -> str:
        resources = self.resource_ids
        if isinstance(resources, str):  # a rendered template such as "1,2,3" or "[1, 2]"
            resources = [part for part in resources.strip("[] ").replace(",", " ").split() if part]
        resource_id = self.hook.export_resources(
            self.resource_type,
            resources=resources,
            select_all=self.select_all,
            export_mode=self.export_mode,
            obs_service_type=self.obs_service_type,
        )
        self.log.info("Started export of %s: resource_id=%s", self.resource_type, resource_id)
        if self.wait_for_completion:
            return str(self._wait(resource_id, context, resource_id))
        return resource_id


class DataQCDownloadOperator(BaseOperator):
    """Downloads an exported file to a local path or to object storage.

    The body is streamed to a temporary file (memory stays flat whatever the
    size) and moved into place when complete, or, when ``destination`` is a URL
    that Airflow's ``ObjectStoragePath`` understands (``s3://``, ``gs://``,
    ``file://`` …), copied there, so the file can outlive an ephemeral worker.
    An interrupted download leaves nothing at ``destination``.

    XCom: ``{"destination", "size", "sha256", "file_name"}`` (``file_name``: the
    service's name for the file, from ``Content-Disposition``, or ``None``).

    :param resource_id: the export's ``resource_id`` (templated), e.g. ``export.output``.
    :param destination: a local file path or an object storage URL (templated).
    :param obs_type: ``technology`` or ``business``; required for reports (templated).
    :param resource_type: the exported type, if known (templated): lets a report without
        ``obs_type`` fail before any request.
    :param dataqc_conn_id: the ``dataqc`` connection.
    :param workspace: workspace ID of the export (templated); default: the connection's.
    :param object_storage_conn_id: connection for ``ObjectStoragePath`` destinations.
    :raises DataQCApiError: on bad arguments, a failed call, an interrupted download
        or a destination that cannot be written.
    """

    template_fields: Sequence[str] = ("resource_id", "destination", "workspace", "obs_type", "resource_type")
    ui_color = "#bbdefb"

    def __init__(
        self,
        *,
        resource_id: str,
        destination: str,
        obs_type: str | None = None,
        resource_type: str | None = None,
        dataqc_conn_id: str = DataQCHook.default_conn_name,
        workspace: str | None = None,
        object_storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.resource_id = resource_id
        self.destination = destination
        self.obs_type = obs_type
        self.resource_type = resource_type
        self.dataqc_conn_id = dataqc_conn_id
        self.workspace = workspace
        self.object_storage_conn_id = object_storage_conn_id

    @cached_property
    def hook(self) -> DataQCHook:
        return DataQCHook(self.dataqc_conn_id, workspace=self.workspace)

    def _download(self, target: str | Path) -> Any:
        return self.hook.download_resource_file(
            str(self.resource_id), target, obs_type=self.obs_type, resource_type=self.resource_type
        )

    def execute(self, context: Context) -> dict[str, Any]:
        destination = str(self.destination)
        if not _is_url(destination):
            result = self._download(destination)
            self.log.info("Downloaded %s bytes to %s (sha256 %s)", result.size, result.destination, result.sha256)
            return result.to_dict()
        target = _object_path(destination, self.object_storage_conn_id)
        with tempfile.TemporaryDirectory(prefix="dataqc-download-") as tmp:
            local = self._download(Path(tmp) / "export.bin")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(local.destination, "rb") as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, _COPY_CHUNK_BYTES)
            except Exception as err:
                with contextlib.suppress(Exception):
                    target.unlink(missing_ok=True)
                raise DataQCApiError(f"could not store the download at {destination!r}: {err}") from err
        self.log.info("Stored %s bytes at %s (sha256 %s)", local.size, destination, local.sha256)
        return {"destination": destination, "size": local.size, "sha256": local.sha256, "file_name": local.file_name}


class DataQCImportOperator(_WaitingOperator):
    """Uploads an exported file and imports it into a workspace; by default waits for the import.

    XCom: ``{"resource_id", "topics", "matched_topics", "directories", "queues",
    "connections"}`` as the upload answered (``resource_id`` is the one the import's
    status is followed by), after the import finished when waiting. While deferred,
    the same dict is kept under the XCom key ``dataqc_result``.

    :param source: a local path or an object storage URL of the file (templated).
    :param resource_type: ``rule-template``, ``quality-task`` or ``consistency-task`` (templated).
    :param strategy: ``SKIP``, ``OVERRIDE`` or ``TERMINATION`` for duplicate names (templated).
    :param directories: mappings as ``{old: new}`` or ``[{"old_value", "new_value", "mapping_value"}]``
        (likewise ``topics``, ``connections``, ``queues``; all templated; a template that renders
        to a string holding a dict or list, JSON or Python literal, is parsed).
    :param dataqc_conn_id: the ``dataqc`` connection.
    :param workspace: the target workspace (templated); default: the connection's.
    :param wait_for_completion: wait for the import (default True); FAILED/TIMEOUT fail
        without retries, with the service's ``error_msg`` logged at ERROR.
    :param poll_interval: seconds between polls when waiting.
    :param wait_timeout: seconds to wait before ``AirflowSensorTimeout``.
    :param deferrable: wait on the triggerer (default ``[operators] default_deferrable``).
    :param object_storage_conn_id: connection for ``ObjectStoragePath`` sources.
    :raises DataQCApiError: on bad arguments or a missing file (before any request), or a
        failed call. Uploads and imports are never sent twice by the hook's retries.
    """

    template_fields: Sequence[str] = (
        "source",
        "resource_type",
        "strategy",
        "workspace",
        "directories",
        "topics",
        "connections",
        "queues",
    )
    template_fields_renderers = {"directories": "json", "topics": "json", "connections": "json", "queues": "json"}
    ui_color = "#bbdefb"

    def __init__(
        self,
        *,
        source: str,
        resource_type: str,
        strategy: str = "SKIP",
        directories: Any = None,
        topics: Any = None,
        connections: Any = None,
        queues: Any = None,
        object_storage_conn_id: str | None = None,
        wait_for_completion: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(wait_for_completion=wait_for_completion, **kwargs)
        self.source = source
        self.resource_type = resource_type
        self.strategy = strategy
        self.directories = directories
        self.topics = topics
        self.connections = connections
        self.queues = queues
        self.object_storage_conn_id = object_storage_conn_id

    def _check_arguments(self) -> None:
        """Refuse a wrong strategy, type or mapping before anything is uploaded."""
        try:
            api.choose(api.ImportType, self.resource_type, "resource_type")
            api.choose(api.ImportStrategy, self.strategy, "strategy")
            for name in ("directories", "topics", "connections", "queues"):
                setattr(self, name, _mapping_value(getattr(self, name), name))
                api.mapping_entries(getattr(self, name), name)
        except InvalidSettingError as err:
            raise DataQCInvalidArgumentError(str(err)) from None

    def execute(self, context: Context) -> dict[str, Any]:
        self._check_arguments()
        source = str(self.source)
        if _is_url(source):
            path = _object_path(source, self.object_storage_conn_id)
            try:
                handle = path.open("rb")
            except Exception as err:
                raise DataQCApiError(f"upload source {source!r} cannot be opened: {err}") from err
            with handle:
                upload = self.hook.upload_resource_file(self.resource_type, handle, file_name=path.name)
        else:
            upload = self.hook.upload_resource_file(self.resource_type, source)
        self.log.info(
            "Uploaded %s: resource_id=%s, directories=%s, topics=%s, connections=%s, queues=%s",
            source,
            upload.resource_id,
            # What the service found in the file, escaped: it must not start log lines of its own.
            printable(upload.directories),
            printable(upload.topics),
            printable(upload.connections),
            printable(upload.queues),
        )
        self.hook.import_resources(
            upload.resource_id,
            self.resource_type,
            strategy=self.strategy,
            directories=self.directories,
            topics=self.topics,
            connections=self.connections,
            queues=self.queues,
        )
        self.log.info("Import of %s started with strategy %s", upload.resource_id, self.strategy)
        result = upload.to_dict()
        if self.wait_for_completion:
            return dict(self._wait(upload.resource_id, context, result))
        return result

    def _fallback_result(self, resource_id: str) -> Any:
        return {"resource_id": resource_id}


def _mapping_value(value: Any, name: str) -> Any:
    """A mapping argument; a rendered template (a JSON or Python literal string) is parsed."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text or text == "None":
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise DataQCInvalidArgumentError(
            f"{name} must be a dict or a list of dicts (or a string holding one); got {text!r:.80}"
        ) from None


def _is_url(value: str) -> bool:
    return "://" in value and not os.path.exists(value)


def _object_path(url: str, conn_id: str | None) -> Any:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    try:
        path = ObjectStoragePath(url, conn_id=conn_id) if conn_id else ObjectStoragePath(url)
        path.fs  # noqa: B018 - resolves the filesystem now, so an unknown scheme fails before any request
        return path
    except Exception as err:  # an unknown scheme or a missing filesystem provider
        raise DataQCInvalidArgumentError(
            f"cannot open {url!r} with ObjectStoragePath: {type(err).__name__}: {err}"
        ) from None


def __getattr__(name: str) -> Any:
    # DataQCRunQualityJobOperator is importable from here too; loaded on first use, so that a
    # DAG file with round-trip operators only never loads the quality-job code.
    if name == "DataQCRunQualityJobOperator":
        from airflow_provider_dataqc.operators.quality import DataQCRunQualityJobOperator

        return DataQCRunQualityJobOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
