"""The real-deployment suite: one deployment per session, every run triggered at once.

Collected only under ``make e2e`` (which sets ``DATAQC_E2E=1``), never by ``make test``.
The ``scenario`` fixture starts the deployment, triggers the runs (CLI without a logical
date, and the REST API), restarts the triggerer while the restart DAG's waits are
deferred, waits for every run to end, then stops every process; the tests judge what it
gathered from PostgreSQL and the log files.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

collect_ignore_glob = [] if os.environ.get("DATAQC_E2E") == "1" else ["*"]

if os.environ.get("DATAQC_E2E") == "1":
    from .deployment import AIRFLOW_MAJOR, BAD_TOKEN, EMULATOR_TOKEN, RACE_TEXT, REPO, Deployment

SENSORS = int(os.environ.get("E2E_SENSORS", "200"))
DEADLINE = float(os.environ.get("E2E_DEADLINE", "600"))
TERMINAL = {"success", "failed"}

#: label: (dag_id, conf, how it is triggered)
RUNS: dict[str, tuple[str, dict[str, Any], str]] = {
    "sensor": ("example_dataqc_sensor", {}, "cli"),
    "sensor_failed": ("example_dataqc_sensor", {"resource_id": "failed-1"}, "api"),
    "hook": ("example_dataqc_hook", {"resource_id": "success-0"}, "api"),
    "promote": ("example_dataqc_promote", {}, "cli"),
    # The quality gate: its defaults pass the gate and route an alarming review to quarantine;
    # with the alarming job as the gate, the gate fails once and publish never runs.
    "gate": ("example_dataqc_quality_gate", {}, "cli"),
    "gate_alarm": ("example_dataqc_quality_gate", {"job_id": "1440764172232392706"}, "api"),
    "auth": ("dataqc_e2e_auth", {}, "api"),
    "modes": ("dataqc_e2e_modes", {}, "api"),
    "many": ("dataqc_e2e_many", {"count": SENSORS}, "api"),
    "restart": ("dataqc_e2e_restart", {}, "cli"),
}

Key = tuple[str, str, int]  # (run label, task_id, map_index)


@dataclass
class Scenario:
    deployment: Any = field(repr=False)
    run_ids: dict[str, str] = field(default_factory=dict)
    final: dict[Key, tuple[str | None, int]] = field(default_factory=dict, repr=False)
    seen: dict[Key, set[str]] = field(default_factory=lambda: defaultdict(set), repr=False)
    run_states: dict[str, str] = field(default_factory=dict)
    restarted_at: float | None = None
    deferred_at_restart: int = 0
    history: dict[Key, list[tuple[str | None, int]]] = field(default_factory=dict)
    connection_tests: dict[str, tuple[int, Any]] = field(default_factory=dict)
    dump: str = field(default="", repr=False)
    elapsed: float = 0.0

    def task_log(self, label: str, task_id: str, map_index: int = -1, *, triggers: bool | None = None) -> str:
        """The task's log (``attempt=N.log``) and its triggers' (``attempt=N.log.trigger.*``):
        both by default, only the triggers' with ``triggers=True``, only the task's with False."""
        dag_id = RUNS[label][0]
        folder = self.deployment.home / "logs" / f"dag_id={dag_id}" / f"run_id={self.run_ids[label]}"
        folder = folder / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        files = [p for p in sorted(folder.glob("attempt=*")) if triggers is None or (".trigger." in p.name) == triggers]
        return "\n".join(p.read_text(errors="replace") for p in files)

    def race_hint(self, task_id: str) -> str:
        """Names Airflow's scheduler race when the scheduler's log shows it for ``task_id``."""
        hits = []
        for log in self.deployment.logs.glob("scheduler*.log"):
            for line in log.read_text(errors="replace").splitlines():
                match = RACE_TEXT.search(line)
                if match and task_id in line:
                    hits.append(match.group(1))
        if not hits:
            return ""
        return (
            f" -- this looks like Airflow's scheduler race, not a provider bug: the executor reported success"
            f" while the task instance was {', '.join(sorted(set(hits)))} (apache/airflow #67287, #71580,"
            f" #72716; see the README's Limits worth knowing)"
        )


def _wait_for_dags(dep: Any) -> None:
    wanted = {dag_id for dag_id, _, _ in RUNS.values()}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        found = {row[0] for row in dep.query("SELECT dag_id FROM serialized_dag")}
        if wanted <= found:
            return
        dead = [name for name, s in dep.services.items() if s.process.poll() is not None]
        if dead:
            raise RuntimeError(f"{dead} exited while DAG files were parsed (logs in {dep.logs})")
        time.sleep(2)
    raise RuntimeError(f"DAGs never parsed: {sorted(wanted - found)} (logs in {dep.logs})")


def _trigger(dep: Any, scenario: Scenario) -> None:
    # The CLI's runs first and the 200 sensors last: of tasks of equal priority the
    # scheduler queues the older run's first, so the other runs do not wait behind them.
    for label, (dag_id, _conf, how) in RUNS.items():
        if how == "cli":  # as a user does by hand: no logical date
            known = {rid for (rid,) in dep.query("SELECT run_id FROM dag_run WHERE dag_id = %s", dag_id)}
            dep.airflow("dags", "trigger", dag_id)
            fresh = {rid for (rid,) in dep.query("SELECT run_id FROM dag_run WHERE dag_id = %s", dag_id)} - known
            assert len(fresh) == 1, f"airflow dags trigger {dag_id} made runs {fresh}"
            scenario.run_ids[label] = fresh.pop()
    for label, (dag_id, conf, how) in RUNS.items():
        if how == "api":
            scenario.run_ids[label] = dep.trigger_api(dag_id, conf)


def _watch(dep: Any, scenario: Scenario, triggered: threading.Event, stop: threading.Event) -> None:
    """Every second: record each task's state (so a DEFERRED state is seen), restart the
    triggerer once the restart DAG's five waits are all deferred, end when every run ended."""
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE and not stop.is_set():
        labels = {run_id: label for label, run_id in list(scenario.run_ids.items())}
        if not labels:
            time.sleep(0.5)
            continue
        rows = dep.query(
            "SELECT run_id, task_id, map_index, state, try_number FROM task_instance WHERE run_id = ANY(%s)",
            list(labels),
        )
        for run_id, task_id, map_index, state, try_number in rows:
            key = (labels[run_id], task_id, map_index)
            scenario.seen[key].add(str(state))
            scenario.final[key] = (state, try_number)
        restart = [s for (label, _, _), (s, _) in scenario.final.items() if label == "restart"]
        if scenario.restarted_at is None and len(restart) == 5 and all(s == "deferred" for s in restart):
            scenario.deferred_at_restart = len(restart)
            dep.restart_triggerer()
            scenario.restarted_at = time.monotonic() - started
        states = dict(dep.query("SELECT run_id, state FROM dag_run WHERE run_id = ANY(%s)", list(labels)))
        scenario.run_states = {labels[r]: str(s) for r, s in states.items()}
        done = len(states) == len(labels) and all(s in TERMINAL for s in states.values())
        if triggered.is_set() and done:
            break
        time.sleep(1)
    scenario.elapsed = time.monotonic() - started


def _gather(dep: Any, scenario: Scenario) -> None:
    labels = {run_id: label for label, run_id in scenario.run_ids.items()}
    # Final states afresh: a mapped task's placeholder (map_index -1) became map_index 0.
    rows = dep.query(
        "SELECT run_id, task_id, map_index, state, try_number FROM task_instance WHERE run_id = ANY(%s)",
        list(labels),
    )
    scenario.final = {(labels[run_id], task, index): (state, tries) for run_id, task, index, state, tries in rows}
    rows = dep.query(
        "SELECT run_id, task_id, map_index, state, try_number FROM task_instance_history WHERE run_id = ANY(%s)",
        list(labels),
    )
    for run_id, task_id, map_index, state, try_number in rows:
        scenario.history.setdefault((labels[run_id], task_id, map_index), []).append((state, try_number))
    conn = dep.connections()["dataqc_e2e_token"]
    body = {"connection_id": "dataqc_e2e_probe", "conn_type": "dataqc", "host": conn["host"]}
    body["extra"] = json.dumps(conn["extra"])

    scenario.connection_tests["good"] = dep.api("POST", "/connections/test", {**body, "password": EMULATOR_TOKEN})
    scenario.connection_tests["bad"] = dep.api("POST", "/connections/test", {**body, "password": BAD_TOKEN})
    scenario.dump = dep.pg_dump("connection")


@pytest.fixture(scope="session")
def scenario() -> Iterator[Scenario]:
    # One folder per virtualenv: the two Airflow versions can run side by side.
    dep = Deployment(REPO / ".airflow-e2e" / (re.sub(r"\W", "", Path(sys.prefix).name) or f"af{AIRFLOW_MAJOR}"))
    result = Scenario(dep)
    dep.start()
    try:
        _wait_for_dags(dep)
        triggered, stop = threading.Event(), threading.Event()
        # Watched from the first trigger on: a short deferral ends while the CLI triggers the next run.
        errors: list[BaseException] = []

        def watch() -> None:
            try:
                _watch(dep, result, triggered, stop)
            except BaseException as err:  # handed to the main thread below
                errors.append(err)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            _trigger(dep, result)
            triggered.set()
            watcher.join()
        finally:
            stop.set()
            watcher.join()
        if errors:
            raise errors[0]
        _gather(dep, result)
    finally:
        dep.stop()
    left = dep.alive()
    assert not left, f"processes left running: {left}"
    print(f"\ne2e: runs ended in {result.elapsed:.0f}s: {result.run_states}; logs in {dep.root}")
    yield result
