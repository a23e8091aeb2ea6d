"""One rule for soft_fail in every mode, and a sensor that leaves Airflow's own loop in charge."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_dataqc.testing.emulator import Emulator

DAG_FILE = Path(__file__).parent / "dags" / "dataqc_soft_fail.py"
MODES = ("poke", "reschedule", "deferrable")


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # What it waited for failed: soft_fail skips, in every mode, at the first poke and later
        # (the deferrable sensor's first poke runs before it defers, later ones in the trigger).
        (["FAILED"], "skipped"),
        (["WAITING", "FAILED"], "skipped"),
        (["TIMEOUT"], "skipped"),
        # An error (a 403, a 404) fails the task, in every mode, before or after a deferral.
        ([{"http_status": 404}], "failed"),
        (["WAITING", {"http_status": 403}], "failed"),
    ],
)
def test_soft_fail_ends_the_same_in_poke_reschedule_and_deferrable_mode(
    emulator: Emulator, use_connection: Any, run_dag: Any, task_logs: Any, script: list[Any], expected: str
) -> None:
    use_connection(emulator, max_retries=0)
    rid = f"soft-{uuid.uuid4().hex[:6]}"
    for mode in MODES:
        emulator.script(f"{rid}-{mode}", script)
    state, tasks = run_dag("dataqc_soft_fail", files=(DAG_FILE,), conf={"resource_id": rid})
    assert tasks == dict.fromkeys(MODES, expected), task_logs.text()[-3000:]
    assert state == ("success" if expected == "skipped" else "failed")
    for mode in MODES:
        assert emulator.count("status", resource_id=f"{rid}-{mode}") == len(script)


def test_the_sensor_is_never_called_outside_its_task_instance(
    emulator: Emulator, use_connection: Any, run_dag: Any, task_logs: Any
) -> None:
    use_connection(emulator)
    run_dag("dataqc_soft_fail", files=(DAG_FILE,), conf={"resource_id": f"success-1-{uuid.uuid4().hex[:6]}"})
    assert "cannot be called outside TaskInstance" not in task_logs.text()
