"""Quality gates in real ``dag.test()`` runs against the emulator, in poke and deferrable mode
(the trigger runs in line): every outcome of a run, its XCom, the rule table in the log,
no retry on a failed gate, the run stopped when the wait times out."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_DAGS

from airflow_provider_dataqc.testing.emulator import Emulator

DAG_FILE = TEST_DAGS / "dataqc_quality_gate.py"
PASS_JOB, ALARM_JOB, FAIL_JOB, LATE_JOB, LONG_JOB = (str(1440764172232392705 + n) for n in range(5))
MODES = ["poke", "deferrable"]


def tries(emu: Emulator, job_id: str) -> int:
    """Runs the emulator saw started through the API (one per try of the gate task)."""
    return sum(1 for run in emu.job_runs(job_id) if run["started_by"] == "api")


def run_gate(run_dag: Any, dag_id: str, tmp_path: Path, **conf: Any) -> tuple[str, dict[str, str], Any]:
    out = tmp_path / f"{uuid.uuid4().hex[:8]}.json"
    state, tasks = run_dag(dag_id, files=(DAG_FILE,), conf={**conf, "out": str(out)})
    return state, tasks, json.loads(out.read_text()) if out.exists() else None


@pytest.mark.parametrize("mode", MODES)
def test_a_passing_gate_returns_the_run_and_its_results(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any, mode: str
) -> None:
    use_connection(fresh_emulator)
    state, tasks, xcom = run_gate(run_dag, f"dataqc_gate_{mode}", tmp_path, job_id=PASS_JOB)
    assert state == "success", (tasks, task_logs.text()[-3000:])
    assert tasks == {"gate": "success", "keep": "success"}
    (run,) = fresh_emulator.job_runs(PASS_JOB)
    assert xcom["instance_id"] == str(run["id"]) and len(xcom["instance_id"]) == 19
    assert xcom["job_id"] == PASS_JOB and xcom["run_status"] == "SUCCESS" and xcom["passed"] is True
    assert xcom["start_time"].endswith("+00:00") and xcom["alarmed_rules"] == []
    assert len(xcom["results"]) == 3 and all(r["results"][0]["Status"] == "true" for r in xcom["results"])
    assert ("running trigger in line" in task_logs.text()) is (mode == "deferrable")


@pytest.mark.parametrize("mode", MODES)
def test_an_alarming_gate_fails_once_with_the_rule_table(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any, mode: str
) -> None:
    use_connection(fresh_emulator)
    state, tasks, xcom = run_gate(run_dag, f"dataqc_gate_{mode}", tmp_path, job_id=ALARM_JOB)
    assert state == "failed" and tasks["gate"] == "failed" and xcom is None
    assert tries(fresh_emulator, ALARM_JOB) == 1  # no retry started a second run
    text = task_logs.text()
    assert "Data quality failed: 2 of 3 rules alarmed (orders_not_null, orders_amount_range)" in text
    assert "up_for_retry" not in text.lower()  # failed for good (AirflowFailException), on Airflow 2 and 3
    table = [line for line in text.splitlines() if "orders_not_null" in line and "sales.orders.order_id" in line]
    assert table and "Abnormal Rows=12" in table[0]
    assert not any("orders_row_count" in line and "Status=true" in line for line in task_logs.lines("error"))


@pytest.mark.parametrize("mode", MODES)
def test_fail_on_alarm_off_lets_the_gate_pass_and_says_so(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any, mode: str
) -> None:
    use_connection(fresh_emulator)
    state, tasks, xcom = run_gate(run_dag, f"dataqc_gate_soft_{mode}", tmp_path, job_id=ALARM_JOB)
    assert state == "success", (tasks, task_logs.text()[-3000:])
    assert xcom["run_status"] == "ALARMING" and xcom["passed"] is False and xcom["fail_on_alarm"] is False
    assert xcom["alarmed_rules"] == ["orders_not_null", "orders_amount_range"]
    assert any("fail_on_alarm=False" in line for line in task_logs.lines("warning"))


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_run_fails_the_gate_without_retries(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any, mode: str
) -> None:
    use_connection(fresh_emulator)
    state, tasks, _ = run_gate(run_dag, f"dataqc_gate_{mode}", tmp_path, job_id=FAIL_JOB)
    assert state == "failed" and tasks["gate"] == "failed"
    assert tries(fresh_emulator, FAIL_JOB) == 1
    assert "is FAILED: the run itself failed" in task_logs.text()


@pytest.mark.parametrize("mode", MODES)
def test_a_run_listed_late_is_still_found(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any, mode: str
) -> None:
    use_connection(fresh_emulator)
    state, tasks, xcom = run_gate(run_dag, f"dataqc_gate_{mode}", tmp_path, job_id=LATE_JOB)
    assert state == "success", (tasks, task_logs.text()[-3000:])
    assert xcom["run_status"] == "SUCCESS"
    assert "is not listed yet" in task_logs.text()


@pytest.mark.parametrize("mode", MODES)
def test_a_run_never_listed_ends_with_what_was_searched(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any, mode: str
) -> None:
    use_connection(fresh_emulator)
    job = str(fresh_emulator.add_quality_job(f"dq_hidden_{mode}", appear_after_lists=10_000))
    state, tasks, _ = run_gate(run_dag, f"dataqc_gate_unlisted_{mode}", tmp_path, job_id=job)
    assert state == "failed" and tasks["gate"] == "failed"
    (run,) = fresh_emulator.job_runs(job)
    text = task_logs.text()
    assert f"run '{run['id']}' did not appear in the instance list within 0.5s" in text
    assert f"name='dq_hidden_{mode}'" in text and "start_time from" in text


@pytest.mark.parametrize("mode", MODES)
def test_a_gate_that_times_out_stops_its_run(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any, mode: str
) -> None:
    use_connection(fresh_emulator)
    state, tasks, _ = run_gate(run_dag, f"dataqc_gate_slow_{mode}", tmp_path, job_id=LONG_JOB)
    assert state == "failed" and tasks["gate"] == "failed"
    runs = fresh_emulator.job_runs(LONG_JOB)
    assert runs and all(run["stopped"] for run in runs)
    assert "(cancel_on_kill)" in task_logs.text() and "last seen: run_status=RUNNING" in task_logs.text()


@pytest.mark.parametrize("mode", MODES)
def test_the_sensor_waits_for_a_given_run(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any, mode: str
) -> None:
    use_connection(fresh_emulator)
    instance = fresh_emulator.start_run(ALARM_JOB)
    conf = {"instance_id": str(instance), "job_id": ALARM_JOB}
    state, tasks, _ = run_gate(run_dag, f"dataqc_gate_sensor_{mode}", tmp_path, **conf)
    assert state == "failed" and tasks["wait"] == "failed"
    assert "Data quality failed: 2 of 3 rules alarmed" in task_logs.text()


@pytest.mark.parametrize("mode", MODES)
def test_the_sensor_waits_for_the_first_scheduled_run_after_a_time(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any, mode: str
) -> None:
    use_connection(fresh_emulator)
    now = int(datetime.now(UTC).timestamp() * 1000)
    fresh_emulator.start_run(PASS_JOB, start_time=now - 3_600_000)  # before the bound: not this one
    wanted = fresh_emulator.start_run(PASS_JOB, start_time=now + 1000)
    fresh_emulator.start_run(PASS_JOB, start_time=now + 5000)
    after = datetime.fromtimestamp(now / 1000, tz=UTC).isoformat()
    state, tasks, xcom = run_gate(run_dag, f"dataqc_gate_sensor_{mode}", tmp_path, job_id=PASS_JOB, started_after=after)
    assert state == "success", (tasks, task_logs.text()[-3000:])
    assert xcom["instance_id"] == str(wanted) and xcom["run_status"] == "SUCCESS"


@pytest.mark.parametrize("mode", MODES)
def test_transient_errors_and_throttling_do_not_end_the_wait(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path, task_logs: Any, mode: str
) -> None:
    from airflow_provider_dataqc.testing.emulator import FaultPlan

    use_connection(fresh_emulator)
    fresh_emulator.faults = FaultPlan(
        rate=0.5, mix={"http503": 1.0, "http429": 1.0, "reset": 1.0}, seed=3, operations=("instances", "results")
    )
    state, tasks, xcom = run_gate(run_dag, f"dataqc_gate_{mode}", tmp_path, job_id=PASS_JOB)
    assert state == "success", (tasks, task_logs.text()[-3000:])
    assert xcom["run_status"] == "SUCCESS" and tries(fresh_emulator, PASS_JOB) == 1
    warnings = "\n".join(task_logs.lines("warning"))
    assert "instance list" in warnings or "instance results" in warnings  # the faults were met, and survived


def test_killing_a_waiting_gate_stops_its_run(fresh_emulator: Emulator, use_connection: Any, task_logs: Any) -> None:
    from airflow_provider_dataqc.hooks.dataqc import DataQCHook
    from airflow_provider_dataqc.operators.quality import DataQCRunQualityJobOperator

    use_connection(fresh_emulator)
    instance = DataQCHook().run_quality_job(LONG_JOB)
    gate = DataQCRunQualityJobOperator(task_id="gate", job_id=LONG_JOB)
    gate._instance_id, gate._running = instance, True  # as execute leaves them while it waits
    gate.on_kill()
    (run,) = fresh_emulator.job_runs(LONG_JOB)
    assert run["stopped"] and str(run["id"]) == instance
    assert f"Stopped DataArts Quality run {instance}: the task was killed (cancel_on_kill)" in task_logs.text()


@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_the_trigger_stops_the_run_when_the_deferred_task_is_killed(
    fresh_emulator: Emulator, use_connection: Any, cancel_on_kill: bool
) -> None:
    import asyncio

    from airflow_provider_dataqc.hooks.dataqc import DataQCHook
    from airflow_provider_dataqc.triggers.quality import DataQCJobRunTrigger

    use_connection(fresh_emulator)
    instance = DataQCHook().run_quality_job(LONG_JOB)
    trigger = DataQCJobRunTrigger(instance_id=instance, job_id=LONG_JOB, cancel_on_kill=cancel_on_kill)
    asyncio.run(trigger.on_kill())
    (run,) = fresh_emulator.job_runs(LONG_JOB)
    assert run["stopped"] is cancel_on_kill
    classpath, kwargs = trigger.serialize()
    assert classpath.endswith("DataQCJobRunTrigger") and kwargs["cancel_on_kill"] is cancel_on_kill
    assert DataQCJobRunTrigger(**kwargs).serialize() == (classpath, kwargs)
