"""DataQCHook.wait_for_resource (the wait for ``@task`` code), argument errors users can catch,
and operators resuming from an event with or without their result."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSensorTimeout

from airflow_provider_dataqc.core.status import ResourceStatus
from airflow_provider_dataqc.exceptions import DataQCApiError, DataQCInvalidArgumentError
from airflow_provider_dataqc.hooks.dataqc import DataQCHook
from airflow_provider_dataqc.operators.dataqc import RESULT_XCOM_KEY, DataQCExportOperator, DataQCImportOperator
from airflow_provider_dataqc.testing.emulator import FAILED_MESSAGE, Emulator


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_wait_for_resource_polls_until_success_and_returns_the_status(
    emulator: Emulator, use_connection: Any, task_logs: Any
) -> None:
    use_connection(emulator)
    rid = unique("slowfile-2")
    status = DataQCHook().wait_for_resource(rid, poll_interval=0.01, timeout=30, wait_for_file=True)
    assert isinstance(status, ResourceStatus) and status.is_success and status.file_status == "GENERATED"
    assert emulator.count("status", resource_id=rid) == 3
    assert any("waiting for its file" in line for line in task_logs.lines("info"))


def test_wait_for_resource_raises_what_the_sensor_raises(emulator: Emulator, use_connection: Any) -> None:
    use_connection(emulator)
    with pytest.raises(AirflowFailException) as failed:
        DataQCHook().wait_for_resource(unique("failed-1"), poll_interval=0.01, timeout=30)
    assert FAILED_MESSAGE in str(failed.value) and "status=FAILED" in str(failed.value)
    with pytest.raises(AirflowSensorTimeout, match=r"did not finish within 0\.2s; last seen: status=RUNNING"):
        DataQCHook().wait_for_resource(unique("success-1000"), poll_interval=0.05, timeout=0.2)
    with pytest.raises(DataQCApiError) as caught:
        DataQCHook().wait_for_resource("no-such-resource", poll_interval=0.01, timeout=5)
    assert caught.value.status_code == 404 and not caught.value.transient


def test_bad_arguments_raise_an_error_that_is_also_a_value_error(fresh_emulator: Emulator, use_connection: Any) -> None:
    use_connection(fresh_emulator)
    hook = DataQCHook()
    for bad_call in (
        lambda: hook.get_resource_status(""),
        lambda: hook.export_resources("no-such-type", resources=[1]),
        lambda: hook.import_resources("r-1", "quality-task", strategy="MAYBE"),
        lambda: hook.download_resource_file("r-1", "/tmp/x.zip", resource_type="report"),
        lambda: hook.upload_resource_file("quality-task", "/no/such/file.zip"),
    ):
        with pytest.raises(DataQCInvalidArgumentError) as caught:
            bad_call()
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, DataQCApiError)
    assert fresh_emulator.count() == 0  # refused before any request


class _TI:
    def __init__(self, kept: Any = None) -> None:
        self.kept = kept

    def xcom_pull(self, *, task_ids: str, key: str) -> Any:
        assert key == RESULT_XCOM_KEY
        return self.kept


def _success_event(rid: str, **extra: Any) -> dict[str, Any]:
    record = {"resource_id": rid, "status": "SUCCESS", "request_id": "req-1"}
    return {"status": "success", "message": "done", "resource_id": rid, "record": record, **extra}


def test_operators_resume_with_the_result_the_event_carries() -> None:
    export = DataQCExportOperator(task_id=unique("export"), resource_type="quality-task", resource_ids=[1])
    assert export.execute_complete({"ti": _TI()}, _success_event("r-9", result="r-9")) == "r-9"
    imported = DataQCImportOperator(task_id=unique("import"), source="/x.zip", resource_type="quality-task")
    result = {"resource_id": "r-7", "topics": [], "directories": ["/a"]}
    assert imported.execute_complete({"ti": _TI()}, _success_event("r-7", result=result)) == result


def test_a_deferral_started_by_an_earlier_release_resumes_from_its_xcom() -> None:
    imported = DataQCImportOperator(task_id=unique("import"), source="/x.zip", resource_type="quality-task")
    kept = {"resource_id": "r-7", "topics": ["t"]}
    assert imported.execute_complete({"ti": _TI(kept)}, _success_event("r-7")) == kept
    assert imported.execute_complete({"ti": _TI()}, _success_event("r-7")) == {"resource_id": "r-7"}
