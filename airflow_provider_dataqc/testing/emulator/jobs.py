"""Quality and comparison jobs and their runs (instances), as ``dataarts-quality-jobs-api.md`` says.

A run's life cycle is scripted: it moves ONE step each time an instance list answer shows it
(faulted and throttled requests never move it), and the last step repeats. A run may appear
in the list only after some list calls or some seconds. IDs are 19-digit integers above
2**53, sent as JSON numbers: a client that reads them through a float loses digits.

Every emulator knows the jobs of :data:`SEEDED_JOBS` in every workspace, so that DAGs run in
other processes (``make demo``) can use them by ID.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_dataqc.testing.emulator.defaults import DEFAULT_STOPPED_STATUS
from airflow_provider_dataqc.testing.emulator.resources import ResourcesMixin
from airflow_provider_dataqc.testing.emulator.state import now_ms

#: ``run_status`` values the reference documents.
RUN_STATUSES = ("RUNNING", "SUCCESS", "ALARMING", "FAILED", "SUSPENDING", "UNKNOWN")
TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "ALARMING", "FAILED"})
NOTIFY_STATUSES = ("NOT_TRIGGERED", "SUCCESS", "FAILED")
#: ``job_type`` -> (``task_type`` in the instance list, ``rule_type`` of the run call, path segment).
JOB_TYPES: Mapping[str, tuple[str, int, str]] = {
    "quality": ("QUALITY_TASK", 1, "quality-tasks"),
    "comparison": ("CONSISTENCY_TASK", 2, "consistency-tasks"),
}
DEFAULT_RUN_SCRIPT: tuple[str, ...] = ("RUNNING", "RUNNING", "SUCCESS")

#: Jobs every emulator has (``id``: name, type, life cycle of each run, list calls before a run shows):
#: succeeds, alarms (two rules of three fail), fails, shows late, runs for a long time; and two comparisons.
SEEDED_JOBS: Mapping[int, tuple[str, str, tuple[str, ...], int]] = {
    1440764172232392705: ("dq_orders_pass", "quality", ("RUNNING", "RUNNING", "SUCCESS"), 0),
    1440764172232392706: ("dq_orders_alarm", "quality", ("RUNNING", "RUNNING", "ALARMING"), 0),
    1440764172232392707: ("dq_orders_fail", "quality", ("RUNNING", "FAILED"), 0),
    1440764172232392708: ("dq_orders_late", "quality", ("RUNNING", "SUCCESS"), 3),
    1440764172232392709: ("dq_orders_long", "quality", ("RUNNING",), 0),
    1440764172232392801: ("cmp_orders_pass", "comparison", ("RUNNING", "SUCCESS"), 0),
    1440764172232392802: ("cmp_orders_alarm", "comparison", ("RUNNING", "ALARMING"), 0),
}
#: Sub-rules of seeded jobs (and the default of new ones): (name, type, database, table, column).
DEFAULT_SUB_RULES: tuple[tuple[str, str, str, str, str], ...] = (
    ("orders_not_null", "SingleColumn", "sales", "orders", "order_id"),
    ("orders_amount_range", "SingleColumn", "sales", "orders", "amount"),
    ("orders_row_count", "SingleTable", "sales", "orders", ""),
)


def normalise_run_step(step: str | Mapping[str, Any]) -> dict[str, Any]:
    """A run's scripted step as a dict; a string is a ``run_status``."""
    if isinstance(step, str):
        return {"run_status": step}
    if not isinstance(step, Mapping) or "run_status" not in step:
        raise ValueError("a run step is a run_status string or a mapping with run_status (and notify_status)")
    unknown = sorted(set(step) - {"run_status", "notify_status"})
    if unknown:
        raise ValueError(f"unknown run step keys {unknown}: use run_status, notify_status")
    return dict(step)


@dataclass
class QualityJob:
    """A quality or comparison job and how its runs behave."""

    id: int
    name: str
    job_type: str
    sub_rules: list[dict[str, Any]]
    run_script: list[dict[str, Any]]
    results: list[dict[str, Any]] | None = None  # None: made from sub_rules and the final status
    appear_after_lists: int = 0
    appear_after_seconds: float = 0.0
    workspace: str | None = None
    create_time: int = field(default_factory=now_ms)
    last_run_time: int | None = None

    def visible_in(self, workspace: str | None) -> bool:
        return self.workspace is None or self.workspace == workspace


@dataclass
class JobRun:
    """One run (instance) of a job."""

    id: int
    job: QualityJob
    steps: list[dict[str, Any]]
    start_time: int
    hidden_lists: int
    visible_at: float
    results: list[dict[str, Any]] | None
    position: int = 0
    last: dict[str, Any] | None = None
    end_time: int | None = None
    stopped: bool = False
    stopped_status: str = DEFAULT_STOPPED_STATUS
    started_by: str = "api"  # "api" (the run call) or "schedule" (Emulator.start_run)

    @property
    def visible(self) -> bool:
        return self.hidden_lists <= 0 and time.monotonic() >= self.visible_at

    def current(self) -> dict[str, Any]:
        """The step the next list answer shows."""
        if self.stopped:
            return {"run_status": self.stopped_status, "notify_status": "NOT_TRIGGERED"}
        return self.steps[min(self.position, len(self.steps) - 1)]


def sub_rule(index: int, job_id: int, name: str, kind: str, database: str, table: str, column: str) -> dict[str, Any]:
    """A sub-rule as the job detail answers it."""
    return {
        "id": job_id % 1_000_000 * 10 + index,
        "sub_rule_name": name,
        "type": kind,
        "template_id": 100 + index,
        "connection": "dws_emulated",
        "connection_type": "DWS",
        "databases": database,
        "tables": table,
        "columns": column,
        "reference_tables": "",
        "reference_columns": "",
        "sql": "",
        "dimension": "Completeness",
        "ignore_error": False,
        "alarm_condition": "${1}>0",
        "weight": 5,
    }


class JobsMixin(ResourcesMixin):
    """Set-up and state of quality/comparison jobs and their runs (the HTTP side is in job_handlers)."""

    def _jobs_state(self) -> tuple[dict[int, QualityJob], dict[int, JobRun]]:
        """The job and run tables, with the seeded jobs added on first use."""
        with self._lock:
            if not self._jobs_seeded:
                self._jobs_seeded = True
                for job_id, (name, job_type, script, late) in SEEDED_JOBS.items():
                    self._make_job(self._jobs, job_id, name, job_type, None, script, None, late, 0.0, None)
            return self._jobs, self._runs

    def _new_id(self) -> int:
        with self._lock:
            self._next_job_id += 1 + self._rng.randrange(1000)
            return self._next_job_id

    def _make_job(
        self,
        jobs: dict[int, QualityJob],
        job_id: int,
        name: str,
        job_type: str,
        sub_rules: Sequence[Mapping[str, Any]] | None,
        run_script: Sequence[str | Mapping[str, Any]],
        results: Sequence[Mapping[str, Any]] | None,
        appear_after_lists: int,
        appear_after_seconds: float,
        workspace: str | None,
    ) -> QualityJob:
        if job_type not in JOB_TYPES:
            raise ValueError(f"job_type must be one of {sorted(JOB_TYPES)}, not {job_type!r}")
        steps = [normalise_run_step(step) for step in run_script]
        if not steps:
            raise ValueError("a run script needs at least one step")
        rules = (
            [dict(rule) for rule in sub_rules]
            if sub_rules is not None
            else [sub_rule(i, job_id, *spec) for i, spec in enumerate(DEFAULT_SUB_RULES, 1)]
        )
        job = QualityJob(
            id=job_id,
            name=name,
            job_type=job_type,
            sub_rules=rules,
            run_script=steps,
            results=[dict(r) for r in results] if results is not None else None,
            appear_after_lists=int(appear_after_lists),
            appear_after_seconds=float(appear_after_seconds),
            workspace=workspace,
        )
        jobs[job_id] = job
        return job

    # ---------------------------------------------------------------- set-up API
    def add_quality_job(
        self,
        name: str,
        *,
        job_id: int | None = None,
        job_type: str = "quality",
        sub_rules: Sequence[Mapping[str, Any]] | None = None,
        run_script: Sequence[str | Mapping[str, Any]] = DEFAULT_RUN_SCRIPT,
        results: Sequence[Mapping[str, Any]] | None = None,
        appear_after_lists: int = 0,
        appear_after_seconds: float = 0.0,
        workspace: str | None = None,
    ) -> int:
        """Create a job; returns its 19-digit ID.

        ``job_type``: ``"quality"`` or ``"comparison"``. ``sub_rules``: the detail's sub-rule
        records (default: three rules on ``sales.orders``). ``run_script``: each run's life cycle,
        one step per list answer showing it (``"RUNNING"``, ``"ALARMING"`` or
        ``{"run_status": ..., "notify_status": ...}``); the last step repeats. ``results``: the rule
        results of each finished run (default: one per sub-rule, alarmed ones on ALARMING).
        ``appear_after_lists`` / ``appear_after_seconds``: a new run shows in the instance list
        only after that many list calls / seconds. ``workspace``: visible there only (default: all).
        """
        jobs, _ = self._jobs_state()
        with self._lock:
            chosen = int(job_id) if job_id is not None else self._new_id()
            job = self._make_job(
                jobs,
                chosen,
                name,
                job_type,
                sub_rules,
                run_script,
                results,
                appear_after_lists,
                appear_after_seconds,
                workspace,
            )
            return job.id

    def script_runs(
        self,
        job_id: int | str,
        steps: Sequence[str | Mapping[str, Any]],
        *,
        results: Sequence[Mapping[str, Any]] | None = None,
        appear_after_lists: int | None = None,
        appear_after_seconds: float | None = None,
    ) -> None:
        """Change how the next runs of ``job_id`` behave (runs already started keep theirs)."""
        job = self._job(job_id)
        with self._lock:
            job.run_script = [normalise_run_step(step) for step in steps] or job.run_script
            if results is not None:
                job.results = [dict(r) for r in results]
            if appear_after_lists is not None:
                job.appear_after_lists = int(appear_after_lists)
            if appear_after_seconds is not None:
                job.appear_after_seconds = float(appear_after_seconds)

    def script_run(self, instance_id: int | str, steps: Sequence[str | Mapping[str, Any]]) -> None:
        """Restart the life cycle of one run on ``steps``."""
        run = self._run(instance_id)
        with self._lock:
            run.steps, run.position, run.last, run.end_time = [normalise_run_step(s) for s in steps], 0, None, None

    def start_run(self, job_id: int | str, *, start_time: int | None = None) -> int:
        """Start a run as DataArts' own scheduler would (no API call); returns its instance ID."""
        return self._start(self._job(job_id), "schedule", start_time).id

    def job_runs(self, job_id: int | str | None = None) -> list[dict[str, Any]]:
        """Runs (of ``job_id``, or all): id, job_id, run_status, stopped, started_by, polls, start_time."""
        _, runs = self._jobs_state()
        with self._lock:
            return [
                {
                    "id": run.id,
                    "job_id": run.job.id,
                    "run_status": run.current()["run_status"],
                    "stopped": run.stopped,
                    "started_by": run.started_by,
                    "polls": run.position,
                    "start_time": run.start_time,
                }
                for run in runs.values()
                if job_id is None or run.job.id == int(job_id)
            ]

    # ---------------------------------------------------------------- internals
    def _job(self, job_id: int | str, workspace: str | None = None, *, check_workspace: bool = False) -> QualityJob:
        jobs, _ = self._jobs_state()
        job = jobs.get(int(job_id))
        if job is None or (check_workspace and not job.visible_in(workspace)):
            raise KeyError(job_id)
        return job

    def _run(self, instance_id: int | str) -> JobRun:
        _, runs = self._jobs_state()
        return runs[int(instance_id)]

    def _start(self, job: QualityJob, started_by: str, start_time: int | None = None) -> JobRun:
        _, runs = self._jobs_state()
        with self._lock:
            run = JobRun(
                id=self._new_id(),
                job=job,
                steps=[dict(step) for step in job.run_script],
                start_time=now_ms() if start_time is None else int(start_time),
                hidden_lists=job.appear_after_lists,
                visible_at=time.monotonic() + job.appear_after_seconds,
                results=[dict(r) for r in job.results] if job.results is not None else None,
                stopped_status=self.stopped_status,
                started_by=started_by,
            )
            runs[run.id] = run
            job.last_run_time = run.start_time
            return run
