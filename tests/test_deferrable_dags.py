"""The deferrable sensor in real ``dag.test()`` runs (the trigger runs in line) against the emulator:
success with the record in XCom, FAILED without retries, the sensor's timeout, an undocumented
status, and an error the trigger gives up on."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_DAGS

from airflow_provider_dataqc.core.status import API_FIELDS
from airflow_provider_dataqc.testing.emulator import FAILED_MESSAGE, Emulator

DAG_FILE = TEST_DAGS / "dataqc_deferrable_sensor.py"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def all_lines(task_logs: Any, level: str) -> list[str]:
    """Lines at ``level`` as printed, plus such records (Airflow 2's dag.test() prints a
    task's lines through a handler it adds once per process)."""
    levelno = getattr(logging, level.upper())
    return task_logs.lines(level) + [
        f"{r.levelname} {r.getMessage()}" for r in task_logs.records if r.levelno == levelno
    ]


def raised(task_logs: Any) -> str:
    """The log text plus the exception types of the records (Airflow 2's dag.test() may only
    leave records, whose exception is not in their message)."""
    types = [r.exc_info[0].__name__ for r in task_logs.records if r.exc_info and r.exc_info[0]]
    return " ".join([task_logs.text(), *types])


def deferred(task_logs: Any) -> bool:
    return "running trigger in line" in task_logs.text()


def test_success_puts_the_status_record_in_xcom(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any
) -> None:
    use_connection(fresh_emulator)
    rid, out = unique("success-2"), tmp_path / "record.json"
    state, tasks = run_dag("dataqc_deferrable_wait", files=(DAG_FILE,), conf={"resource_id": rid, "out": str(out)})
    assert state == "success", (tasks, task_logs.text()[-3000:])
    assert tasks == {"wait": "success", "keep": "success"}
    assert deferred(task_logs)
    record = json.loads(out.read_text())
    assert set(API_FIELDS) | {"request_id"} == set(record)
    assert record["resource_id"] == rid and record["status"] == "SUCCESS" and record["file_status"] == "GENERATED"
    assert record["request_id"]
    # One poke on the worker (WAITING), then the trigger: RUNNING, SUCCESS.
    assert fresh_emulator.count("status", resource_id=rid) == 3


def test_failed_task_fails_at_once_without_retry_and_logs_error_msg(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any
) -> None:
    use_connection(fresh_emulator)
    rid = unique("failed-1")
    state, tasks = run_dag(
        "dataqc_deferrable_wait", files=(DAG_FILE,), conf={"resource_id": rid, "out": str(tmp_path / "x")}
    )
    assert state == "failed"
    assert tasks["wait"] == "failed" and tasks["keep"] == "upstream_failed"
    assert deferred(task_logs)
    # retries=2, yet one try: the poke (WAITING) and one trigger poll (FAILED).
    assert fresh_emulator.count("status", resource_id=rid) == 2
    errors = all_lines(task_logs, "error")
    assert any(rid in line and FAILED_MESSAGE in line and "FAILED" in line for line in errors), errors[-20:]
    assert "AirflowFailException" in raised(task_logs)


def test_sensor_timeout_fails_with_airflow_sensor_timeout(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, task_logs: Any
) -> None:
    use_connection(fresh_emulator)
    rid = unique("success-100000")
    state, tasks = run_dag("dataqc_deferrable_timeout", files=(DAG_FILE,), conf={"resource_id": rid})
    assert state == "failed" and tasks == {"wait": "failed"}
    assert deferred(task_logs)
    assert "AirflowSensorTimeout" in raised(task_logs)
    errors = all_lines(task_logs, "error")
    assert any(rid in line and "timeout passed" in line and "RUNNING" in line for line in errors), errors[-20:]
    # A timeout is final too: one try (1.5 s at 0.2 s a poll: a handful of polls, not three tries' worth).
    polls = fresh_emulator.count("status", resource_id=rid)
    assert 2 <= polls <= 12


def test_undocumented_status_keeps_waiting_with_a_warning(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any
) -> None:
    use_connection(fresh_emulator)
    rid, out = unique("unknown-2"), tmp_path / "record.json"
    state, tasks = run_dag("dataqc_deferrable_wait", files=(DAG_FILE,), conf={"resource_id": rid, "out": str(out)})
    assert state == "success", (tasks, task_logs.text()[-3000:])
    assert json.loads(out.read_text())["status"] == "SUCCESS"
    warnings = all_lines(task_logs, "warning")
    # The poke and the trigger's first poll both saw PAUSED and said so.
    assert sum("undocumented status 'PAUSED'" in line and rid in line for line in warnings) >= 2, warnings[-20:]
    assert fresh_emulator.count("status", resource_id=rid) == 3


def test_error_the_trigger_gives_up_on_fails_the_task_naming_it(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    rid = unique("vanishing")
    gone = {"http_status": 404, "error_code": "DQC.1016", "error_msg": "The resource does not exist"}
    fresh_emulator.script(rid, ["RUNNING", gone])
    state, tasks = run_dag(
        "dataqc_deferrable_wait", files=(DAG_FILE,), conf={"resource_id": rid, "out": str(tmp_path / "x")}
    )
    assert state == "failed" and tasks["wait"] == "failed"
    assert deferred(task_logs)
    errors = all_lines(task_logs, "error")
    assert any(rid in line and "DQC.1016" in line and "HTTP 404" in line for line in errors), errors[-20:]
    assert "DataQCApiError" in raised(task_logs)


# --------------------------------------------------------------------------- execute / execute_complete
def make_sensor(resource_id: str, **kwargs: Any) -> Any:
    from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor

    return DataQCResourceStatusSensor(task_id=unique("wait"), resource_id=resource_id, deferrable=True, **kwargs)


def test_execute_finishes_at_once_when_already_terminal(emulator: Emulator, use_connection: Any) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    use_connection(emulator)
    done = unique("success-0")
    record = make_sensor(done).execute({})
    assert record["status"] == "SUCCESS" and record["resource_id"] == done
    with pytest.raises(AirflowFailException, match=FAILED_MESSAGE):
        make_sensor(unique("failed-0")).execute({})


def test_execute_defers_to_the_trigger_with_the_sensor_timeout(emulator: Emulator, use_connection: Any) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider_dataqc.sensors.dataqc import DEFERRAL_TIMEOUT_GRACE
    from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

    use_connection(emulator)
    rid = unique("success-3")
    sensor = make_sensor(rid, workspace="ws-dev", wait_for_file=True, poke_interval=7, timeout=100)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, DataQCResourceStatusTrigger) and deferred.value.method_name == "execute_complete"
    assert (trigger.resource_id, trigger.workspace, trigger.poll_interval, trigger.wait_for_file) == (
        rid,
        "ws-dev",
        7.0,
        True,
    )
    assert trigger.end_time is not None and abs(trigger.end_time - (time.time() + 100)) < 5
    # The trigger's end_time decides; the deferral's own timeout is a later backstop.
    assert deferred.value.timeout == timedelta(seconds=100) + DEFERRAL_TIMEOUT_GRACE
    assert emulator.count("status", resource_id=rid) == 1  # one poke before deferring


@pytest.mark.parametrize(("heartbeat", "low", "high"), [("5", 6.0, 6.0), ("10", 12.0, 12.0), ("0", 0.5, 1.0)])
def test_the_first_trigger_poll_keeps_clear_of_the_supervisor_heartbeat(
    emulator: Emulator, use_connection: Any, monkeypatch: pytest.MonkeyPatch, heartbeat: str, low: float, high: float
) -> None:
    """A sensor polling every second defers with its trigger's first poll at least 1.2x
    ``[workers] min_heartbeat_interval`` away (Airflow 3's scheduler race); with no such
    window, half to all of the interval."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", heartbeat)
    use_connection(emulator)
    delays = []
    for _ in range(5):
        with pytest.raises(TaskDeferred) as deferred:
            make_sensor(unique("success-3"), poke_interval=1, timeout=100).execute({})
        delays.append(deferred.value.trigger.first_poll_after)
    assert all(low <= d <= high for d in delays), delays


def test_the_operators_first_trigger_poll_keeps_clear_of_the_supervisor_heartbeat(
    emulator: Emulator, use_connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider_dataqc.operators.dataqc import DataQCExportOperator

    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "5")
    use_connection(emulator)
    operator = DataQCExportOperator(
        task_id="export",
        resource_type="quality-task",
        resource_ids=[1],
        wait_for_completion=True,
        deferrable=True,
        poll_interval=1,
        wait_timeout=100,
    )
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})
    assert deferred.value.trigger.first_poll_after == 6.0


@pytest.mark.parametrize(
    "event",
    [
        None,
        "success",
        {"status": "done"},
        {"status": "success"},
        {"status": "success", "record": {"status": "RUNNING", "resource_id": "r"}},
        {"status": "failed", "record": {"status": "SUCCESS", "resource_id": "r"}},
    ],
)
def test_execute_complete_refuses_unknown_event_shapes(event: Any) -> None:
    from airflow.providers.common.compat.sdk import AirflowException

    with pytest.raises(AirflowException):
        make_sensor("r").execute_complete({}, event)


def test_a_failed_first_poke_is_handed_to_the_trigger(fresh_emulator: Emulator, use_connection: Any) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider_dataqc.testing.emulator import FaultPlan

    use_connection(fresh_emulator, max_retries=0)
    fresh_emulator.faults = FaultPlan(rate=1.0, mix={"http503": 1.0})
    sensor = make_sensor(unique("success-1"), max_consecutive_errors=3)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    # The budget is for failures in a row: the trigger starts from the poke's one.
    assert deferred.value.trigger.consecutive_errors == 1
