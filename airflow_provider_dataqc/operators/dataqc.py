"""Operators for the DataArts Quality round trip: export, download, upload + import."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowSensorTimeout, BaseOperator, conf

from airflow_provider_dataqc.hooks.dataqc import DataQCApiError, DataQCHook
from airflow_provider_dataqc.sensors.dataqc import StatusWaiter

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

DEFAULT_WAIT_TIMEOUT = 7 * 24 * 3600.0


class _WaitingOperator(StatusWaiter, BaseOperator):
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
        self.poll_interval = float(poll_interval)
        self.wait_timeout = float(wait_timeout)
        self.deferrable = deferrable
        self.max_consecutive_errors = max(int(max_consecutive_errors), 1)
        self.resource_id = ""

    @cached_property
    def hook(self) -> DataQCHook:
        return DataQCHook(self.dataqc_conn_id, workspace=self.workspace)

    def _wait(self, resource_id: str) -> None:
        """Wait for ``resource_id`` in this process, or defer to the trigger (then
        :meth:`execute_complete` finishes the task)."""
        self.resource_id = resource_id
        deadline = time.monotonic() + self.wait_timeout
        if self._poll_once(self.hook) is not None:
            return
        if self.deferrable:
            self.defer(
                trigger=self._trigger(
                    poll_interval=self.poll_interval, timeout=self.wait_timeout, dataqc_conn_id=self.dataqc_conn_id
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.wait_timeout),
            )
        while True:
            if time.monotonic() >= deadline:
                message = f"DataArts Quality task {resource_id!r} did not finish within {self.wait_timeout:g}s"
                self.log.error("%s", message)
                raise AirflowSensorTimeout(message)
            time.sleep(self.poll_interval)
            if self._poll_once(self.hook) is not None:
                return

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """Resume after the trigger; returns what :meth:`execute` would have returned."""
        if isinstance(event, dict):
            self.resource_id = str(event.get("resource_id") or "")
        self._complete(event)
        return self._result_after_wait(context)

    def _result_after_wait(self, context: Context) -> Any:
        return context["ti"].xcom_pull(task_ids=self.task_id, key="dataqc_result")


class DataQCExportOperator(_WaitingOperator):
    """Starts an export of quality resources; optionally waits for it to finish.

    XCom (return value): the export's ``resource_id``.

    :param resource_type: ``rule-template``, ``quality-task``, ``consistency-task`` or ``report``.
    :param resource_ids: IDs of the resources to export (templated; a list, or a rendered
        string such as ``"[1, 2]"`` or ``"1,2"``). Named so because ``resources`` is
        Airflow's own ``BaseOperator`` argument (CPU/RAM requests).
    :param select_all: export every resource of the type.
    :param export_mode: ``None`` (a local file) or ``"obs"`` (reports only).
    :param obs_service_type: ``technology`` or ``business`` (reports only).
    :param workspace: workspace ID (templated); default: the connection's.
    :param wait_for_completion: also wait until the export reaches SUCCESS; FAILED
        or TIMEOUT fail the task without retries, as the sensor does.
    :param wait_for_file: when waiting, also wait for the file to be GENERATED.
    :param poll_interval: seconds between polls when waiting.
    :param wait_timeout: seconds to wait before ``AirflowSensorTimeout``.
    :param deferrable: wait on the triggerer (default ``[operators] default_deferrable``).
    :raises DataQCApiError: on bad arguments (before any request) or a failed call.
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
            self._wait(resource_id)
        return resource_id

    def _result_after_wait(self, context: Context) -> Any:
        return self.resource_id


class DataQCDownloadOperator(BaseOperator):
    """Downloads an exported file to a local path or to object storage.

    The body is streamed to a temporary local file (memory stays flat whatever
    the size) and then moved, or copied to ``destination`` when it is a URL
    that Airflow's ``ObjectStoragePath`` understands (``s3://``, ``gs://``,
    ``file://`` …), so the file can outlive an ephemeral worker.

    XCom: ``{"destination", "size", "sha256", "file_name"}``.

    :param resource_id: the export's ``resource_id`` (templated).
    :param destination: a local file path or an object storage URL (templated).
    :param obs_type: ``technology`` or ``business``; required for reports.
    :param object_storage_conn_id: connection for ``ObjectStoragePath`` destinations.
    :raises DataQCApiError: on a failed call or an interrupted download (nothing is left at ``destination``).
    """

    template_fields: Sequence[str] = ("resource_id", "destination", "workspace", "obs_type")
    ui_color = "#bbdefb"

    def __init__(
        self,
        *,
        resource_id: str,
        destination: str,
        obs_type: str | None = None,
        dataqc_conn_id: str = DataQCHook.default_conn_name,
        workspace: str | None = None,
        object_storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.resource_id = resource_id
        self.destination = destination
        self.obs_type = obs_type
        self.dataqc_conn_id = dataqc_conn_id
        self.workspace = workspace
        self.object_storage_conn_id = object_storage_conn_id

    @cached_property
    def hook(self) -> DataQCHook:
        return DataQCHook(self.dataqc_conn_id, workspace=self.workspace)

    def execute(self, context: Context) -> dict[str, Any]:
        destination = str(self.destination)
        if not _is_url(destination):
            result = self.hook.download_resource_file(self.resource_id, destination, obs_type=self.obs_type)
            self.log.info("Downloaded %s bytes to %s (sha256 %s)", result.size, result.destination, result.sha256)
            return result.to_dict()
        with tempfile.TemporaryDirectory(prefix="dataqc-download-") as tmp:
            local = self.hook.download_resource_file(self.resource_id, Path(tmp) / "export.bin", obs_type=self.obs_type)
            target = _object_path(destination, self.object_storage_conn_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(local.destination, "rb") as src, target.open("wb") as out:
                shutil.copyfileobj(src, out, 1024 * 1024)
        self.log.info("Stored %s bytes at %s (sha256 %s)", local.size, destination, local.sha256)
        return {"destination": destination, "size": local.size, "sha256": local.sha256, "file_name": local.file_name}


class DataQCImportOperator(_WaitingOperator):
    """Uploads an exported file and imports it into a workspace; by default waits for the import.

    XCom: ``{"resource_id", "topics", "matched_topics", "directories", "queues",
    "connections"}`` as the upload answered (what may need mapping), after the
    import finished when waiting.

    :param source: a local path or an object storage URL of the file (templated).
    :param resource_type: ``rule-template``, ``quality-task`` or ``consistency-task``.
    :param strategy: ``SKIP``, ``OVERRIDE`` or ``TERMINATION`` for duplicate names.
    :param directories: mappings as ``{old: new}`` or ``[{"old_value", "new_value", "mapping_value"}]``
        (likewise ``topics``, ``connections``, ``queues``; all templated).
    :param workspace: the target workspace (templated).
    :param wait_for_completion: wait for the import (default True); FAILED/TIMEOUT fail without retries.
    :param object_storage_conn_id: connection for ``ObjectStoragePath`` sources.
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

    def execute(self, context: Context) -> dict[str, Any]:
        source = str(self.source)
        if _is_url(source):
            with _object_path(source, self.object_storage_conn_id).open("rb") as handle:
                upload = self.hook.upload_resource_file(self.resource_type, handle)
        else:
            upload = self.hook.upload_resource_file(self.resource_type, source)
        self.log.info(
            "Uploaded %s: resource_id=%s, directories=%s, topics=%s",
            source,
            upload.resource_id,
            upload.directories,
            upload.topics,
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
            context["ti"].xcom_push(key="dataqc_result", value=result)
            self._wait(upload.resource_id)
        return result


def _is_url(value: str) -> bool:
    return "://" in value and not os.path.exists(value)


def _object_path(url: str, conn_id: str | None) -> Any:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    try:
        return ObjectStoragePath(url, conn_id=conn_id) if conn_id else ObjectStoragePath(url)
    except Exception as err:  # an unknown scheme or a missing filesystem provider
        raise DataQCApiError(f"cannot open {url!r} with ObjectStoragePath: {type(err).__name__}: {err}") from None
