"""DataQCResourceStatusSensor in poke and reschedule mode: unit pokes and real dag.test() runs."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, PokeReturnValue

from airflow_provider_dataqc.hooks.dataqc import DataQCApiError
from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor
from airflow_provider_dataqc.testing.emulator import FAILED_MESSAGE, TIMEOUT_MESSAGE, Emulator

DAG_FILE = Path(__file__).parent / "dags" / "dataqc_sensor_modes.py"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def sensor(resource_id: str, **kwargs: Any) -> DataQCResourceStatusSensor:
    return DataQCResourceStatusSensor(task_id=unique("wait"), resource_id=resource_id, **kwargs)


def test_poke_waits_then_returns_the_record(emulator: Emulator, use_connection: Any, task_logs: Any) -> None:
    use_connection(emulator)
    rid = unique("success-2")
    wait = sensor(rid)
    assert wait.poke({}) is False
    assert wait.poke({}) is False
    done = wait.poke({})
    assert isinstance(done, PokeReturnValue) and done.is_done
    record = done.xcom_value
    assert record["status"] == "SUCCESS" and record["resource_id"] == rid and record["request_id"]
    info = [line for line in task_logs.lines("info") if rid in line]
    assert any("WAITING" in line for line in info) and any("RUNNING" in line and "running for" in line for line in info)
    assert emulator.count("status", resource_id=rid) == 3


@pytest.mark.parametrize(("kind", "message"), [("failed", FAILED_MESSAGE), ("timeout", TIMEOUT_MESSAGE)])
def test_failed_and_timeout_fail_at_once_with_error_msg(
    emulator: Emulator, use_connection: Any, task_logs: Any, kind: str, message: str
) -> None:
    use_connection(emulator)
    rid = unique(f"{kind}-0")
    with pytest.raises(AirflowFailException) as caught:
        sensor(rid).poke({})
    text = str(caught.value)
    assert message in text and rid in text and kind.upper() in text and "X-Request-Id=" in text
    errors = task_logs.lines("error")
    assert any(message in line and rid in line for line in errors)


def test_undocumented_status_keeps_waiting_with_a_warning(
    emulator: Emulator, use_connection: Any, task_logs: Any
) -> None:
    use_connection(emulator)
    rid = unique("unknown-1")
    wait = sensor(rid)
    assert wait.poke({}) is False
    assert any("PAUSED" in line for line in task_logs.lines("warning"))
    assert isinstance(wait.poke({}), PokeReturnValue)


def test_wait_for_file(emulator: Emulator, use_connection: Any) -> None:
    use_connection(emulator)
    slow = sensor(unique("slowfile-1"), wait_for_file=True)
    assert slow.poke({}) is False  # SUCCESS but the file is still PREPARING
    assert isinstance(slow.poke({}), PokeReturnValue)
    with pytest.raises(AirflowFailException, match="file is FAILED"):
        sensor(unique("filefail-0"), wait_for_file=True).poke({})
    assert isinstance(sensor(unique("filefail-0")).poke({}), PokeReturnValue)


def test_unknown_resource_fails_the_poke_with_the_service_error(emulator: Emulator, use_connection: Any) -> None:
    use_connection(emulator)
    with pytest.raises(DataQCApiError) as caught:
        sensor("no-such-export").poke({})
    assert caught.value.status_code == 404 and caught.value.error_code == "DQC.1016"
    assert caught.value.request_id and caught.value.request_id in str(caught.value)


def test_a_status_answer_that_is_not_a_status_fails_the_poke(emulator: Emulator, use_connection: Any) -> None:
    use_connection(emulator)
    rid = unique("scripted")
    emulator.script(rid, [{"http_status": 200, "json": {"resource_id": rid}}])
    with pytest.raises(DataQCApiError, match="no 'status'"):
        sensor(rid, max_consecutive_errors=1).poke({})


def test_templated_fields_render(emulator: Emulator) -> None:
    wait = sensor("{{ params.rid }}", workspace="{{ params.ws }}")
    assert set(wait.template_fields) >= {"resource_id", "workspace"}
    wait.render_template_fields({"params": {"rid": "abc", "ws": "ws-prod"}})
    assert (wait.resource_id, wait.workspace) == ("abc", "ws-prod")


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_dag_run_succeeds_with_the_record_in_xcom(
    emulator: Emulator, use_connection: Any, run_dag: Any, mode: str
) -> None:
    use_connection(emulator)
    rid = unique("success-2")
    state, tasks = run_dag(f"dataqc_sensor_{mode}", files=(DAG_FILE,), conf={"resource_id": rid})
    assert state == "success" and tasks == {"wait": "success"}
    assert emulator.count("status", resource_id=rid) == 3


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_dag_run_on_a_failing_export_fails_once_without_retry(
    emulator: Emulator, use_connection: Any, run_dag: Any, task_logs: Any, mode: str
) -> None:
    use_connection(emulator)
    rid = unique("failed-1")
    state, tasks = run_dag(f"dataqc_sensor_{mode}", files=(DAG_FILE,), conf={"resource_id": rid})
    assert state == "failed" and tasks == {"wait": "failed"}
    # Two polls: WAITING, then FAILED; the DAG allows two retries, none was used.
    assert emulator.count("status", resource_id=rid) == 2
    text = task_logs.text()
    assert FAILED_MESSAGE in text and "up_for_retry" not in text.lower()


def test_dag_run_times_out(emulator: Emulator, use_connection: Any, run_dag: Any) -> None:
    use_connection(emulator)
    rid = unique("success-1000")
    state, tasks = run_dag("dataqc_sensor_poke", files=(DAG_FILE,), conf={"resource_id": rid})
    assert state == "failed" and tasks == {"wait": "failed"}
    assert 2 <= emulator.count("status", resource_id=rid) < 100


def test_a_connection_in_uri_form_works(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.parse import urlsplit

    from airflow_provider_dataqc.testing.emulator import DEFAULT_PROJECT_ID, DEFAULT_TOKEN

    where = urlsplit(emulator.url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_DATAQC_URI",
        f"dataqc://:{DEFAULT_TOKEN}@{where.hostname}:{where.port}/"
        f"?project_id={DEFAULT_PROJECT_ID}&workspace=ws-dev&scheme=http",
    )
    done = sensor(unique("success-0"), dataqc_conn_id="dataqc_uri").poke({})
    assert isinstance(done, PokeReturnValue) and done.xcom_value["status"] == "SUCCESS"
