"""What a real deployment did with the provider: final states, deferrals, logs, secrets."""

from __future__ import annotations

import pytest

from airflow_provider_dataqc.testing.emulator import FAILED_MESSAGE, TIMEOUT_MESSAGE

from .conftest import RUNS, SENSORS, Scenario
from .deployment import (
    BAD_TOKEN,
    EMULATOR_TOKEN,
    IAM_PASSWORD,
    ISSUED_TOKEN_PREFIX,
    SECRET_KEY,
)

#: (run label, task_id): final state, and whether the task must have been DEFERRED on the way.
EXPECTED: dict[tuple[str, str], tuple[str, bool]] = {
    ("sensor", "wait_for_export"): ("success", False),
    ("sensor", "wait_for_export_file_deferrable"): ("success", True),
    ("sensor_failed", "wait_for_export"): ("failed", False),
    ("sensor_failed", "wait_for_export_file_deferrable"): ("upstream_failed", False),
    ("hook", "read_status"): ("success", False),
    ("promote", "export_from_dev"): ("success", False),
    ("promote", "wait_for_export"): ("success", True),
    ("promote", "keep_export_file"): ("success", False),
    ("promote", "import_into_prod"): ("success", True),
    ("gate", "gate"): ("success", True),
    ("gate", "publish"): ("success", False),
    ("gate", "review"): ("success", False),
    ("gate", "quarantine"): ("success", False),
    ("gate", "publish_reviewed"): ("skipped", False),
    ("gate_alarm", "gate"): ("failed", True),
    ("gate_alarm", "publish"): ("upstream_failed", False),
    ("auth", "wait_token"): ("success", True),
    ("auth", "wait_password"): ("success", True),
    ("auth", "wait_aksk"): ("success", True),
    ("modes", "reschedule"): ("success", False),
    ("modes", "deferred_failed"): ("failed", True),
    ("modes", "deferred_timeout"): ("failed", True),
    ("modes", "own_timeout"): ("failed", True),
    ("many", "resource_ids"): ("success", False),
    ("restart", "wait"): ("success", True),
}
RUN_STATES = {"sensor": "success", "sensor_failed": "failed", "hook": "success", "promote": "success"}
RUN_STATES |= {"gate": "success", "gate_alarm": "failed"}
RUN_STATES |= {"auth": "success", "modes": "failed", "many": "success", "restart": "success"}


def _tasks(scenario: Scenario, label: str, task_id: str) -> list[tuple[int, str | None, int]]:
    return sorted(
        (map_index, state, tries)
        for (run, tid, map_index), (state, tries) in scenario.final.items()
        if run == label and tid == task_id
    )


def test_every_run_ends_as_expected(scenario: Scenario) -> None:
    assert scenario.run_states == RUN_STATES, f"runs ended {scenario.run_states}"


@pytest.mark.parametrize(("label", "task_id"), list(EXPECTED), ids=lambda v: str(v))
def test_task_final_state_and_try_number(scenario: Scenario, label: str, task_id: str) -> None:
    want, deferred = EXPECTED[(label, task_id)]
    tasks = _tasks(scenario, label, task_id)
    count = {"restart": 5}.get(label, 1)
    assert len(tasks) == count, f"{RUNS[label][0]}.{task_id}: {len(tasks)} task instances, expected {count}"
    for map_index, state, tries in tasks:
        where = f"{RUNS[label][0]}.{task_id}[{map_index}]"
        hint = scenario.race_hint(task_id)
        assert state == want, f"{where} ended {state}, expected {want}; history {scenario.history}{hint}"
        if want not in ("upstream_failed", "skipped"):
            assert tries == 1, f"{where} took {tries} tries, expected 1 (no retry){hint}"
        seen = scenario.seen[(label, task_id, map_index)]
        if deferred:
            assert "deferred" in seen, f"{where} was never seen DEFERRED (states seen: {sorted(seen)})"
        elif state not in ("upstream_failed", "skipped"):
            assert "deferred" not in seen, f"{where} deferred but is not a deferrable task"


@pytest.mark.parametrize(("label", "task_id"), [k for k, (_, d) in EXPECTED.items() if d], ids=str)
def test_deferred_tasks_were_resumed_after_the_triggerer_fired(scenario: Scenario, label: str, task_id: str) -> None:
    for map_index, _state, _tries in _tasks(scenario, label, task_id):
        where = f"{RUNS[label][0]}.{task_id}[{map_index}]"
        fired = scenario.task_log(label, task_id, map_index, triggers=True)
        assert "fired" in fired.lower(), f"{where}: the triggerer's log never says its trigger fired:\n{fired[-3000:]}"
        log = scenario.task_log(label, task_id, map_index, triggers=False)
        lines = log.splitlines()
        deferred = max((i for i, line in enumerate(lines) if "Pausing task as DEFERRED" in line), default=None)
        assert deferred is not None, f"{where}: the task's log never says it deferred:\n{log[-3000:]}"
        # The resumed attempt logs through the provider (the sensor's or operator's verdict).
        after = [line for line in lines[deferred + 1 :] if "airflow_provider_dataqc" in line]
        assert after, f"{where}: nothing from the provider after the deferral, so never resumed:\n{log[-3000:]}"


def test_many_deferred_sensors_all_succeed_once(scenario: Scenario) -> None:
    tasks = _tasks(scenario, "many", "wait")
    assert len(tasks) == SENSORS
    wrong = [(i, s, t) for i, s, t in tasks if s != "success" or t != 1]
    never_deferred = [i for i, _, _ in tasks if "deferred" not in scenario.seen[("many", "wait", i)]]
    assert not wrong, f"{len(wrong)} of {SENSORS} mapped sensors ended wrong: {wrong[:10]}{scenario.race_hint('wait')}"
    assert not never_deferred, f"mapped sensors never seen DEFERRED: {never_deferred[:10]}"


def test_the_triggerer_restart_came_in_the_middle_of_the_waits(scenario: Scenario) -> None:
    assert scenario.restarted_at is not None, "the restart DAG's waits were never all deferred at once"
    assert scenario.deferred_at_restart == 5
    logs = sorted(scenario.deployment.logs.glob("triggerer*.log"))
    assert len(logs) == 2, f"expected two triggerer processes, logs: {logs}"


@pytest.mark.parametrize(
    ("label", "task_id", "message"),
    [
        ("sensor_failed", "wait_for_export", FAILED_MESSAGE),
        ("modes", "deferred_failed", FAILED_MESSAGE),
        ("modes", "deferred_timeout", TIMEOUT_MESSAGE),
    ],
)
def test_failed_and_timeout_fail_once_with_error_msg_in_the_log(
    scenario: Scenario, label: str, task_id: str, message: str
) -> None:
    [(_, state, tries)] = _tasks(scenario, label, task_id)
    assert (state, tries) == ("failed", 1)
    assert message in scenario.task_log(label, task_id)
    assert not scenario.history.get((label, task_id, -1)), f"a retry happened: {scenario.history}"


def test_promotion_kept_a_file_named_after_the_run(scenario: Scenario) -> None:
    files = list(scenario.deployment.files.glob("quality-jobs-*.zip"))
    assert len(files) == 1 and files[0].stat().st_size > 0, files
    assert ":" not in files[0].name and "+" not in files[0].name


def test_connection_test_through_the_api(scenario: Scenario) -> None:
    status, good = scenario.connection_tests["good"]
    assert status == 200 and good["status"] is True, good
    status, bad = scenario.connection_tests["bad"]
    assert status == 200 and bad["status"] is False, bad
    assert BAD_TOKEN not in bad["message"] and bad["message"], bad


SECRETS = (EMULATOR_TOKEN, IAM_PASSWORD, SECRET_KEY, BAD_TOKEN, ISSUED_TOKEN_PREFIX)


def test_no_secret_in_any_log_file(scenario: Scenario) -> None:
    files = list(scenario.deployment.log_files())
    assert len(files) > SENSORS, f"only {len(files)} log files: the scan would prove little"
    found = [(str(path), secret) for path in files for secret in SECRETS if secret in path.read_text(errors="replace")]
    assert not found, f"secrets in log files: {found[:10]}"


def test_no_secret_in_the_database_outside_the_connection_table(scenario: Scenario) -> None:
    assert "CREATE TABLE public.task_instance" in scenario.dump
    found = [secret for secret in SECRETS if secret in scenario.dump]
    assert not found, f"secrets in pg_dump --exclude-table=connection: {found}"
