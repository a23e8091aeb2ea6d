"""The calls that run DataArts Quality jobs and follow their runs, each built as an :class:`ApiRequest`.

Pure: no Airflow import, no I/O (the answers are read by :mod:`.jobs`). A *quality job*
(``quality-task``) or a *comparison job* (``consistency-task``) is run on demand; each run
is an *instance*, found through the instance list (the service has no GET of one instance).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow_provider_dataqc.core.api import ApiRequest
from airflow_provider_dataqc.core.settings import InvalidSettingError, encode_path_id, validate_id

QUALITY_PATH = "/v2/{project_id}/quality"
#: ``limit`` of the instance list and of a run's results: the most the service gives per page.
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class JobKind:
    """What differs between quality and comparison jobs in the API."""

    name: str
    rule_type: int
    task_type: str
    path: str


QUALITY = JobKind("quality", 1, "QUALITY_TASK", "quality-tasks")
COMPARISON = JobKind("comparison", 2, "CONSISTENCY_TASK", "consistency-tasks")
JOB_KINDS = {QUALITY.name: QUALITY, COMPARISON.name: COMPARISON}


def job_kind(job_type: Any) -> JobKind:
    """``"quality"`` or ``"comparison"`` (also the API's ``QUALITY_TASK`` / ``CONSISTENCY_TASK``,
    ``quality-task`` / ``consistency-task``), case-insensitively."""
    if isinstance(job_type, JobKind):
        return job_type
    text = str(job_type).strip().lower().replace("-", "_")
    for kind in JOB_KINDS.values():
        if text in (kind.name, kind.task_type.lower(), kind.path[:-1].replace("-", "_")):
            return kind
    if text == "consistency":
        return COMPARISON
    raise InvalidSettingError(f"job_type {job_type!r:.60} is not one of: quality, comparison")


def job_id_text(value: Any, name: str = "job_id") -> str:
    """A job or instance ID as the decimal string the service means (64-bit IDs never pass
    through a float: an ``int`` is kept exact, a float is refused)."""
    if isinstance(value, (bool, float)):
        raise InvalidSettingError(f"{name} must be a string or an int, not {type(value).__name__}: {value!r:.40}")
    text = str(value).strip() if isinstance(value, (str, int)) else None
    if not text:
        raise InvalidSettingError(f"{name} is required and must be a non-empty string, got {value!r:.40}")
    encode_path_id(text, name)  # the same limits as every ID in a path (no controls, no '..')
    return text


def _path(project_id: str, suffix: str) -> str:
    return QUALITY_PATH.format(project_id=validate_id(project_id, "project_id")) + suffix


def _body(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def epoch_ms(value: datetime) -> int:
    """A datetime as the service's 13-digit epoch milliseconds (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def _paging(limit: int, offset: int) -> tuple[tuple[str, str], ...]:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidSettingError(f"limit must be an int from 1 to {MAX_PAGE_SIZE}, got {limit!r:.20}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidSettingError(f"offset must be an int >= 0, got {offset!r:.20}")
    return (("limit", str(limit)), ("offset", str(offset)))


def run_job_request(project_id: str, workspace: str, job_id: Any, *, job_type: Any = "quality") -> ApiRequest:
    """``POST …/quality/instances/restart`` ``{"rule_type", "rule_id"}``: starts a new run of a
    job (answer ``{"instance_id"}``). Not idempotent: a repeat starts a second run."""
    kind = job_kind(job_type)
    body = {"rule_type": kind.rule_type, "rule_id": job_id_text(job_id)}
    return ApiRequest(
        "run quality job",
        "POST",
        _path(project_id, "/instances/restart"),
        workspace,
        body=_body(body),
        idempotent=False,
    )


def job_detail_request(project_id: str, workspace: str, job_id: Any, *, job_type: Any = "quality") -> ApiRequest:
    """``GET …/quality/quality-tasks/{id}`` (or ``consistency-tasks``): the job, its name and sub-rules."""
    kind = job_kind(job_type)
    encoded = encode_path_id(job_id_text(job_id), "job_id")
    return ApiRequest("job detail", "GET", _path(project_id, f"/{kind.path}/{encoded}"), workspace)


def instances_request(
    project_id: str,
    workspace: str,
    *,
    job_type: Any = "quality",
    name: str | None = None,
    run_status: str | None = None,
    started_from: datetime | int | None = None,
    started_until: datetime | int | None = None,
    limit: int = MAX_PAGE_SIZE,
    offset: int = 0,
) -> ApiRequest:
    """``GET …/quality/instances``: one page of runs, filtered by the job's name, the job type and
    the bounds of the runs' start (``datetime`` or epoch ms)."""
    query: list[tuple[str, str]] = [("task_type", job_kind(job_type).task_type)]
    if name is not None:
        if not str(name).strip():
            raise InvalidSettingError("name, when given, must not be blank")
        query.append(("name", str(name)))
    if run_status is not None:
        query.append(("run_status", str(run_status).strip().upper()))
    for key, bound in (("start_time", started_from), ("end_time", started_until)):
        if bound is None:
            continue
        millis = epoch_ms(bound) if isinstance(bound, datetime) else bound
        if isinstance(millis, bool) or not isinstance(millis, int) or millis < 0:
            raise InvalidSettingError(f"{key} must be a datetime or epoch milliseconds, got {bound!r:.40}")
        query.append((key, str(millis)))
    query.extend(_paging(limit, offset))
    return ApiRequest("instance list", "GET", _path(project_id, "/instances"), workspace, query=tuple(query))


def instance_results_request(
    project_id: str, workspace: str, instance_id: Any, *, limit: int = MAX_PAGE_SIZE, offset: int = 0
) -> ApiRequest:
    """``GET …/quality/instances/{instance_id}/result``: one page of a run's rule results."""
    encoded = encode_path_id(job_id_text(instance_id, "instance_id"), "instance_id")
    return ApiRequest(
        "instance results",
        "GET",
        _path(project_id, f"/instances/{encoded}/result"),
        workspace,
        query=_paging(limit, offset),
    )


def stop_instances_request(project_id: str, workspace: str, instance_ids: Any) -> ApiRequest:
    """``POST …/quality/instances/batch-stop`` with a JSON array of instance IDs (numbers when
    they are decimal digits, as the list gives them; exact, never through a float).
    Idempotent in effect: stopping a stopped run again changes nothing."""
    if isinstance(instance_ids, (str, int)):
        instance_ids = [instance_ids]
    ids: list[int | str] = []
    for item in instance_ids or ():
        text = job_id_text(item, "instance_ids")
        ids.append(int(text) if text.isdigit() and text.isascii() else text)
    if not ids:
        raise InvalidSettingError("instance_ids must name at least one run")
    return ApiRequest("stop instances", "POST", _path(project_id, "/instances/batch-stop"), workspace, body=_body(ids))
