"""The handlers of the quality-job calls: jobs, job detail, run, instance list, results, batch-stop.

Each one validates its request on its own, from ``dataarts-quality-jobs-api.md``, never with
the client's code. Paths are under ``/v2/{project_id}/quality/``; answers carry 19-digit IDs
as JSON numbers; errors are ``{"error_code": "DQC.xxxx", "error_msg": ...}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from airflow_provider_dataqc.testing.emulator.jobs import (
    JOB_TYPES,
    NOTIFY_STATUSES,
    RUN_STATUSES,
    TERMINAL_RUN_STATUSES,
    JobRun,
    JobsMixin,
    QualityJob,
)
from airflow_provider_dataqc.testing.emulator.state import now_ms

_DIGITS = re.compile(r"^[0-9]{1,20}$")
_TASK_TYPES = {task_type: job_type for job_type, (task_type, _, _) in JOB_TYPES.items()}
_RULE_TYPES = {rule_type: job_type for job_type, (_, rule_type, _) in JOB_TYPES.items()}
_SEGMENTS = {segment: job_type for job_type, (_, _, segment) in JOB_TYPES.items()}


def classify_job_path(method: str, action: str) -> tuple[str, str | None] | None:
    """``(operation, id in the path)`` of a path after ``/quality/``, or ``None`` if it is no job call."""
    parts = action.split("/")
    if parts[0] in _SEGMENTS and method == "GET":
        if len(parts) == 1:
            return "jobs", None
        if len(parts) == 2 and parts[1]:
            return "job", parts[1]
        return None
    if parts[0] != "instances":
        return None
    if len(parts) == 1 and method == "GET":
        return "instances", None
    if len(parts) == 2 and method == "POST" and parts[1] in ("restart", "batch-stop"):
        return ("run" if parts[1] == "restart" else "stop"), None
    if len(parts) == 3 and parts[2] == "result" and parts[1] and method == "GET":
        return "results", parts[1]
    return None


class _Invalid(Exception):
    """A parameter the reference does not allow; answered 400 ``DQC.0001``."""


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    if not _DIGITS.match(text):
        raise _Invalid(f"{name} must be an integer")
    value = int(text)
    if value < low or (high is not None and value > high):
        raise _Invalid(f"{name} must be between {low} and {high}" if high is not None else f"{name} must be >= {low}")
    return value


def _ms_param(params: Mapping[str, str], name: str) -> int | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    if not _DIGITS.match(text) or len(text) != 13:
        raise _Invalid(f"{name} must be 13-digit epoch milliseconds")
    return int(text)


def _choice(params: Mapping[str, str], name: str, allowed: Any) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise _Invalid(f"{name} must be one of {sorted(allowed)}")
    return value


def _page(items: list[Any], params: Mapping[str, str], default: int, low: int) -> tuple[list[Any], int]:
    limit = _int_param(params, "limit", default, low, 100)
    offset = _int_param(params, "offset", 0, 0, None)
    return items[offset : offset + limit], len(items)


class JobHandlersMixin(JobsMixin):
    """Answers to the quality-job calls, once a request passed routing, faults and access checks."""

    def _job_call(
        self,
        operation: str,
        path_id: str | None,
        path: str,
        query: list[tuple[str, str]],
        body: bytes,
        workspace: str | None,
        rid: str,
    ) -> web.Response:
        """Answer one job call (``operation`` from :func:`classify_job_path`)."""
        params = dict(query)
        try:
            if operation == "jobs":
                return self._list_jobs(_SEGMENTS[path.rstrip("/").rsplit("/", 1)[-1]], params, workspace, rid)
            if operation == "job":
                return self._job_detail(_SEGMENTS[path.rsplit("/", 2)[-2]], str(path_id), workspace, rid)
            if operation == "run":
                return self._run_job(body, workspace, rid)
            if operation == "instances":
                return self._list_instances(params, workspace, rid)
            if operation == "results":
                return self._results(str(path_id), params, workspace, rid)
            return self._batch_stop(body, workspace, rid)
        except _Invalid as err:
            return self._error(400, "DQC.0001", f"Invalid parameter: {err}", rid)

    def _visible_job(self, job_id: str, job_type: str | None, workspace: str | None) -> QualityJob | None:
        if not _DIGITS.match(job_id):
            return None
        try:
            job = self._job(job_id, workspace, check_workspace=True)
        except KeyError:
            return None
        return job if job_type is None or job.job_type == job_type else None

    # ---------------------------------------------------------------- jobs
    def _job_summary(self, job: QualityJob) -> dict[str, Any]:
        return {
            "id": job.id,
            "name": job.name,
            "category_id": 0,
            "schedule_status": "NOT_START",
            "schedule_period": "DAY",
            "schedule_interval": "1",
            "create_time": job.create_time,
            "last_run_time": job.last_run_time,
            "creator": self.user[0],
        }

    def _list_jobs(self, job_type: str, params: Mapping[str, str], workspace: str | None, rid: str) -> web.Response:
        low, high = _ms_param(params, "start_time"), _ms_param(params, "end_time")
        name = params.get("name") or ""
        jobs, _ = self._jobs_state()
        with self._lock:
            chosen = [
                job
                for job in sorted(jobs.values(), key=lambda j: j.id)
                if job.job_type == job_type
                and job.visible_in(workspace)
                and name in job.name
                and (low is None or job.create_time >= low)
                and (high is None or job.create_time <= high)
                and params.get("creator") in (None, "", self.user[0])
            ]
            page, count = _page(chosen, params, 10, 1)
            return self._json(200, {"count": count, "resources": [self._job_summary(j) for j in page]}, rid)

    def _job_detail(self, job_type: str, job_id: str, workspace: str | None, rid: str) -> web.Response:
        with self._lock:
            job = self._visible_job(job_id, job_type, workspace)
            if job is None:
                return self._not_found(rid, "The job does not exist")
            detail = self._job_summary(job)
            rules: list[Any] = [dict(rule) for rule in job.sub_rules]
            detail.update(
                description=f"Emulated {job_type} job",
                level="MAJOR",
                alarm_condition="${1}>0",
                alarm_notify=False,
                alarm_notify_type="ALARM_TRIGGERING",
                alarm_notify_topic="",
                schedule_type="ONCE",
                sub_rules=rules if job_type == "quality" else [[rule] for rule in rules],
            )
            return self._json(200, detail, rid)

    # ---------------------------------------------------------------- runs
    def _run_job(self, body: bytes, workspace: str | None, rid: str) -> web.Response:
        try:
            payload = json.loads(body)
        except ValueError:
            raise _Invalid("the body is not JSON") from None
        if not isinstance(payload, dict):
            raise _Invalid("the body must be a JSON object")
        rule_type, rule_id = payload.get("rule_type"), payload.get("rule_id")
        if isinstance(rule_type, bool) or rule_type not in _RULE_TYPES:
            raise _Invalid("rule_type must be 1 (quality job) or 2 (comparison job)")
        if isinstance(rule_id, int) and not isinstance(rule_id, bool):
            rule_id = str(rule_id)
        if not isinstance(rule_id, str) or not rule_id:
            raise _Invalid("rule_id (the job ID) is required")
        with self._lock:
            job = self._visible_job(rule_id, _RULE_TYPES[rule_type], workspace)
            if job is None:
                return self._not_found(rid, "The job does not exist")
            run = self._start(job, "api")
        return self._json(200, {"instance_id": str(run.id)}, rid)

    def _instance(self, run: JobRun) -> dict[str, Any]:
        step = run.current()
        status = str(step["run_status"])
        default_notify = "SUCCESS" if status == "ALARMING" else "NOT_TRIGGERED"
        if (status in TERMINAL_RUN_STATUSES or run.stopped) and run.end_time is None:
            run.end_time = max(now_ms(), run.start_time)
        return {
            "id": run.id,
            "name": run.job.name,
            "task_id": run.job.id,
            "task_type": JOB_TYPES[run.job.job_type][0],
            "run_status": status,
            "notify_status": step.get("notify_status", default_notify),
            "start_time": run.start_time,
            "end_time": run.end_time,
        }

    def _list_instances(self, params: Mapping[str, str], workspace: str | None, rid: str) -> web.Response:
        task_type = _choice(params, "task_type", _TASK_TYPES)
        run_status = _choice(params, "run_status", RUN_STATUSES)
        notify_status = _choice(params, "notify_status", NOTIFY_STATUSES)
        low, high = _ms_param(params, "start_time"), _ms_param(params, "end_time")
        name = params.get("name") or ""
        _int_param(params, "limit", 10, 1, 100)  # checked before anything moves
        _int_param(params, "offset", 0, 0, None)
        _, runs = self._jobs_state()
        with self._lock:
            shown: list[JobRun] = []
            for run in runs.values():
                if run.hidden_lists > 0:
                    run.hidden_lists -= 1  # this list call did not see it yet
                    continue
                if not run.visible or not run.job.visible_in(workspace) or name not in run.job.name:
                    continue
                status = run.current()["run_status"]
                if task_type is not None and JOB_TYPES[run.job.job_type][0] != task_type:
                    continue
                if run_status is not None and status != run_status:
                    continue
                if (low is not None and run.start_time < low) or (high is not None and run.start_time > high):
                    continue
                if notify_status is not None and self._instance(run)["notify_status"] != notify_status:
                    continue
                shown.append(run)
            shown.sort(key=lambda r: (r.start_time, r.id), reverse=True)
            page, count = _page(shown, params, 10, 1)
            resources = [self._instance(run) for run in page]
            for run in page:  # one step per answer that shows the run
                run.position += 0 if run.stopped else 1
        return self._json(200, {"count": count, "resources": resources}, rid)

    def _rule_results(self, run: JobRun) -> list[dict[str, Any]]:
        status = run.current()["run_status"]
        if run.stopped or status not in ("SUCCESS", "ALARMING"):
            return []
        if run.results is not None:
            return [dict(r) for r in run.results]
        answers = []
        for index, rule in enumerate(run.job.sub_rules):
            alarmed = status == "ALARMING" and index < 2
            table = f"{rule.get('databases', '')}.{rule.get('tables', '')}".strip(".")
            answers.append(
                {
                    "sub_rule_id": rule.get("id"),
                    "sub_instance_instance_id": run.id + index + 1,
                    "abnormal_table_status": "UNSUPPORTED",
                    "results": [
                        {
                            "Name": table,
                            "Rule Name": rule.get("sub_rule_name"),
                            "Column": rule.get("columns", ""),
                            "Total Rows": "1000",
                            "Abnormal Rows": "12" if alarmed else "0",
                            "Status": "false" if alarmed else "true",
                        }
                    ],
                }
            )
        return answers

    def _results(self, instance_id: str, params: Mapping[str, str], workspace: str | None, rid: str) -> web.Response:
        with self._lock:
            run = self._runs.get(int(instance_id)) if _DIGITS.match(instance_id) else None
            if run is None or not run.job.visible_in(workspace):
                return self._not_found(rid, "The instance does not exist")
            page, count = _page(self._rule_results(run), params, 10, 0)
        return self._json(200, {"count": count, "resources": page}, rid)

    def _batch_stop(self, body: bytes, workspace: str | None, rid: str) -> web.Response:
        try:
            payload = json.loads(body)
        except ValueError:
            raise _Invalid("the body is not JSON") from None
        if not isinstance(payload, list) or not payload:
            raise _Invalid("the body must be a non-empty JSON array of instance IDs")
        ids: list[int] = []
        for item in payload:
            text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
            if not isinstance(text, str) or not _DIGITS.match(text):
                raise _Invalid("instance IDs must be integers (or strings of digits)")
            ids.append(int(text))
        with self._lock:
            runs = [self._runs.get(i) for i in ids]
            if any(run is None or not run.job.visible_in(workspace) for run in runs):
                return self._not_found(rid, "The instance does not exist")
            stopped = []
            for run in runs:
                assert run is not None
                if not run.stopped and run.current()["run_status"] not in TERMINAL_RUN_STATUSES:
                    run.stopped = True
                    run.end_time = max(now_ms(), run.start_time)
                    stopped.append(str(run.id))
        return self._json(200, {"error_code": "DQC.0000", "error_msg": "success", "data": stopped}, rid)
