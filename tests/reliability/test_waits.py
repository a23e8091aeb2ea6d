"""Waits (sensor pokes, trigger polls, a real DAG run) that outlast transient errors, end at once
on permanent ones, and never read a maintenance page as a status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_dataqc.hooks.dataqc import DataQCApiError
from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor
from airflow_provider_dataqc.testing.emulator import DEFAULT_USER, Emulator
from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

from .support import MODES, distinct_lines, run_trigger, unique


def make_sensor(resource_id: str, **kwargs: Any) -> DataQCResourceStatusSensor:
    return DataQCResourceStatusSensor(task_id=unique("wait"), resource_id=resource_id, poke_interval=0, **kwargs)


def poke_until_done(sensor: DataQCResourceStatusSensor, limit: int = 50) -> tuple[int, Any]:
    """Poke like the sensor's poke loop does: ``(pokes, xcom value)``; exceptions propagate."""
    for pokes in range(1, limit + 1):
        result = sensor.poke({})
        if result:
            return pokes, getattr(result, "xcom_value", result)
    raise AssertionError(f"no result after {limit} pokes")


def test_sensor_tolerates_transient_poll_errors_then_succeeds(
    fresh_emulator: Emulator, use_connection: Any, task_logs: Any
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    rid = unique("scripted")
    fresh_emulator.script(rid, [{"http_status": 503}, {"http_status": 502}, "RUNNING", {"http_status": 500}, "SUCCESS"])
    pokes, record = poke_until_done(make_sensor(rid))
    assert pokes == 5 and record["status"] == "SUCCESS"
    warned = distinct_lines(task_logs, "warning", "polling again at the next interval")
    assert len(warned) == 3
    assert "Poll 1/3" in warned[0] and "Poll 2/3" in warned[1] and "Poll 1/3" in warned[2]  # reset by RUNNING


def test_sensor_fails_with_the_last_error_after_max_consecutive_errors(
    fresh_emulator: Emulator, use_connection: Any, task_logs: Any
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    rid = unique("scripted")
    fresh_emulator.script(
        rid,
        [
            {"http_status": 503},
            {"http_status": 502},
            {"http_status": 500, "error_code": "DQC.0500", "error_msg": "the third"},
            "SUCCESS",
        ],
    )
    wait = make_sensor(rid, max_consecutive_errors=3)
    assert wait.poke({}) is False and wait.poke({}) is False
    with pytest.raises(DataQCApiError) as caught:
        wait.poke({})
    assert caught.value.status_code == 500 and caught.value.error_msg == "the third"
    assert fresh_emulator.count("status", resource_id=rid) == 3
    assert any("after 3 failed polls in a row" in line for line in task_logs.lines("error"))


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_sensor_permanent_errors_end_the_wait_at_once(
    fresh_emulator: Emulator, use_connection: Any, status: int
) -> None:
    use_connection(fresh_emulator, max_retries=3)
    rid = unique("scripted")
    fresh_emulator.script(rid, [{"http_status": status, "error_code": f"DQC.{status}"}, "SUCCESS"])
    with pytest.raises(DataQCApiError) as caught:
        make_sensor(rid, max_consecutive_errors=5).poke({})
    assert caught.value.status_code == status and not caught.value.transient
    assert fresh_emulator.count("status", resource_id=rid) == 1


def test_a_401_gets_one_fresh_token_then_fails_at_once(fresh_emulator: Emulator, use_connection: Any) -> None:
    use_connection(fresh_emulator, "password", max_retries=3)
    rid = unique("success-3")
    wait = make_sensor(rid, max_consecutive_errors=5)
    assert wait.poke({}) is False
    assert fresh_emulator.revoke_tokens() == 1  # the token expires mid-wait: one refresh, the wait goes on
    assert wait.poke({}) is False
    assert fresh_emulator.iam_calls == 2
    steady = unique("scripted")
    fresh_emulator.script(steady, [{"http_status": 401}, {"http_status": 401}, "SUCCESS"])
    with pytest.raises(DataQCApiError, match="again after a fresh IAM token") as caught:
        make_sensor(steady, max_consecutive_errors=5).poke({})
    assert caught.value.status_code == 401 and not caught.value.transient
    assert fresh_emulator.count("status", resource_id=steady) == 2 and fresh_emulator.iam_calls == 3
    for secret in (DEFAULT_USER[1], *fresh_emulator.issued_tokens):
        assert secret not in str(caught.value)


def test_trigger_tolerates_transient_poll_errors_then_succeeds(
    fresh_emulator: Emulator, use_connection: Any, task_logs: Any
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    rid = unique("scripted")
    fresh_emulator.script(rid, [{"http_status": 503}, {"http_status": 429}, "RUNNING", {"http_status": 504}, "SUCCESS"])
    event = run_trigger(DataQCResourceStatusTrigger(rid, poll_interval=0.01))
    assert event["status"] == "success" and event["record"]["status"] == "SUCCESS"
    assert fresh_emulator.count("status", resource_id=rid) == 5
    # One per distinct message (Airflow 2 captures each twice, in two formats).
    warned = distinct_lines(
        task_logs, "warning", "polling again", key=r"(?:(?:attempt|Poll) \d+/\d+|throttled).*?X-Request-Id=\w+"
    )
    # The 429 is throttling, not a failed poll: it does not count (and the RUNNING resets).
    assert len(warned) == 3 and "Poll 1/3" in warned[0] and "throttled" in warned[1] and "Poll 1/3" in warned[2]


def test_trigger_gives_up_after_max_consecutive_errors_with_the_last_error(
    fresh_emulator: Emulator, use_connection: Any
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    rid = unique("scripted")
    fresh_emulator.script(
        rid,
        [{"http_status": 503}, {"http_status": 502}, {"http_status": 500, "error_msg": "the third"}, "SUCCESS"],
    )
    event = run_trigger(DataQCResourceStatusTrigger(rid, poll_interval=0.01, max_consecutive_errors=3))
    assert event["status"] == "error" and "gave up after 3 failed polls" in event["message"]
    assert event["error"]["status_code"] == 500 and event["error"]["error_msg"] == "the third"
    assert event["error"]["transient"] is True
    assert fresh_emulator.count("status", resource_id=rid) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_trigger_permanent_errors_end_the_wait_at_once(
    fresh_emulator: Emulator, use_connection: Any, status: int
) -> None:
    use_connection(fresh_emulator, max_retries=3)
    rid = unique("scripted")
    fresh_emulator.script(rid, [{"http_status": status, "error_code": f"DQC.{status}"}, "SUCCESS"])
    event = run_trigger(DataQCResourceStatusTrigger(rid, poll_interval=0.01, max_consecutive_errors=5))
    assert event["status"] == "error" and event["error"]["status_code"] == status
    assert event["error"]["error_code"] == f"DQC.{status}" and event["error"]["transient"] is False
    assert fresh_emulator.count("status", resource_id=rid) == 1


MAINTENANCE = {
    "raw_body": "<html><body><h1>Down for maintenance</h1><p>Back at 10:00</p></body></html>",
    "content_type": "text/html",
}


@pytest.mark.parametrize("mode", MODES)
def test_a_maintenance_page_with_200_is_polled_again_and_never_a_success(
    fresh_emulator: Emulator, use_connection: Any, task_logs: Any, mode: str
) -> None:
    use_connection(fresh_emulator, max_retries=3)
    passing, failing = unique("scripted"), unique("scripted")
    fresh_emulator.script(passing, [MAINTENANCE, {"http_status": 200, "json": {"status": None}}, "SUCCESS"])
    fresh_emulator.script(failing, [MAINTENANCE, MAINTENANCE, MAINTENANCE, "SUCCESS"])
    if mode == "sync":
        pokes, record = poke_until_done(make_sensor(passing))
        assert pokes == 3 and record["status"] == "SUCCESS"
        wait = make_sensor(failing)
        assert wait.poke({}) is False and wait.poke({}) is False
        with pytest.raises(DataQCApiError, match="not JSON") as caught:
            wait.poke({})
        message = str(caught.value)
    else:
        event = run_trigger(DataQCResourceStatusTrigger(passing, poll_interval=0.01))
        assert event["status"] == "success"
        event = run_trigger(DataQCResourceStatusTrigger(failing, poll_interval=0.01))
        assert event["status"] == "error" and event["error"]["status_code"] == 200
        message = event["message"]
        assert "gave up after 3 failed polls" in message
    assert "Down for maintenance" in message and "<h1>" not in message
    # A 2xx answer is never retried inside the call: one request per poll.
    assert fresh_emulator.count("status", resource_id=failing) == 3
    assert len([line for line in task_logs.lines("warning") if "not JSON" in line]) >= 3


def _dag_source(dag_id: str, deferrable: bool) -> str:
    return f'''
from datetime import datetime
from airflow.providers.common.compat.sdk import DAG, Param
from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor

with DAG(
    dag_id="{dag_id}",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    params={{"resource_id": Param("success-1", type="string")}},
) as dag:
    DataQCResourceStatusSensor(
        task_id="wait",
        resource_id="{{{{ params.resource_id }}}}",
        poke_interval=0.05,
        timeout=30,
        deferrable={deferrable},
    )
'''


def test_a_dag_run_waits_through_transient_errors_and_fails_after_three_in_a_row(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    dag_file = tmp_path / "dataqc_reliability_poke_waits.py"
    dag_file.write_text(_dag_source("dataqc_reliability_poke_waits", deferrable=False))
    tolerated, fatal = unique("scripted"), unique("scripted")
    fresh_emulator.script(tolerated, [{"http_status": 503}, {"http_status": 503}, "RUNNING", MAINTENANCE, "SUCCESS"])
    fresh_emulator.script(fatal, [{"http_status": 503}, MAINTENANCE, {"http_status": 502}, "SUCCESS"])
    state, tasks = run_dag("dataqc_reliability_poke_waits", files=(dag_file,), conf={"resource_id": tolerated})
    assert (state, tasks["wait"]) == ("success", "success")
    state, tasks = run_dag("dataqc_reliability_poke_waits", files=(dag_file,), conf={"resource_id": fatal})
    assert (state, tasks["wait"]) == ("failed", "failed")
    assert fresh_emulator.count("status", resource_id=fatal) == 3
