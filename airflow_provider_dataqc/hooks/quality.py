"""Quality-job calls of :class:`~airflow_provider_dataqc.hooks.dataqc.DataQCHook`, and how a run's
wait ends the Airflow way (the rule table in the log, ``AirflowFailException`` without retries).

The requests are :mod:`airflow_provider_dataqc.core.jobs_api`'s, the answers are read by
:mod:`airflow_provider_dataqc.core.jobs`, the search is :mod:`airflow_provider_dataqc.core.jobs_run`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_dataqc.core import jobs_api
from airflow_provider_dataqc.core.answers import SUCCESS_ERROR_CODES
from airflow_provider_dataqc.core.errors import decode_json, printable, service_error
from airflow_provider_dataqc.core.jobs import (
    JobAnswerError,
    JobDetail,
    JobInstance,
    alarmed_rows,
    read_instance_id,
    rule_rows,
    rule_table,
)
from airflow_provider_dataqc.core.jobs_run import InstanceSearch, JobRunRules, all_results, drive, find_instance
from airflow_provider_dataqc.core.wait import EVENT_FAILED, EVENT_SUCCESS, Event, Finish, read_event
from airflow_provider_dataqc.exceptions import DataQCApiError, DataQCInvalidArgumentError, DataQCOutcomeUnknownError
from airflow_provider_dataqc.hooks.wait import conclude

if TYPE_CHECKING:
    from airflow_provider_dataqc.hooks.dataqc import DataQCHook


def _kind(job_type: Any) -> jobs_api.JobKind:
    try:
        return jobs_api.job_kind(job_type)
    except ValueError as err:
        raise DataQCInvalidArgumentError(str(err)) from None


def run_quality_job(hook: DataQCHook, job_id: Any, *, job_type: str = "quality", workspace: str | None = None) -> str:
    request = hook._build(jobs_api.run_job_request, hook._workspace(workspace), job_id, job_type=_kind(job_type))
    payload = hook._json(request)
    try:
        return read_instance_id(payload)
    except JobAnswerError as err:
        # A success without the new run's ID: the run may have started all the same. Never repeated,
        # not by a task retry either (the call plan's rule for calls that may have been acted on).
        raise DataQCOutcomeUnknownError(
            f"DataArts Quality run quality job call: {err}; the run may have started: check the job's "
            "instances before running it again (not retried)"
        ) from None


def job_detail(hook: DataQCHook, job_id: Any, *, job_type: str = "quality", workspace: str | None = None) -> JobDetail:
    request = hook._build(jobs_api.job_detail_request, hook._workspace(workspace), job_id, job_type=_kind(job_type))
    try:
        return JobDetail.from_api(hook._json(request))
    except JobAnswerError as err:
        raise DataQCApiError(f"DataArts Quality job detail call: {err}", transient=True) from None


def search_for(
    hook: DataQCHook,
    *,
    instance_id: str | None,
    job_id: Any = None,
    job_type: str = "quality",
    started_after: datetime | None = None,
    workspace: str | None = None,
    job_name: str | None = None,
) -> InstanceSearch:
    """The search for a run: the job's name comes from its detail (one call) when not given."""
    kind = _kind(job_type)
    if job_name is None and job_id is not None:
        job_name = job_detail(hook, job_id, job_type=kind.name, workspace=workspace).name
    return InstanceSearch(kind.name, instance_id, job_name, started_after)


def get_job_instance(
    hook: DataQCHook,
    instance_id: Any,
    *,
    job_id: Any = None,
    job_type: str = "quality",
    workspace: str | None = None,
) -> JobInstance:
    try:
        wanted = jobs_api.job_id_text(instance_id, "instance_id")
    except ValueError as err:
        raise DataQCInvalidArgumentError(str(err)) from None
    workspace_id = hook._workspace(workspace)
    search = search_for(hook, instance_id=wanted, job_id=job_id, job_type=job_type, workspace=workspace_id)
    project_id = hook.settings.project_id
    found = drive(find_instance(search, project_id, workspace_id), hook._json)
    if found is None:
        raise DataQCApiError(
            f"DataArts Quality run {wanted!r} is not in the instance list (searched: {search.describe()})"
        )
    return found  # type: ignore[no-any-return]


def get_job_instance_results(
    hook: DataQCHook, instance_id: Any, *, workspace: str | None = None
) -> list[dict[str, Any]]:
    try:
        wanted = jobs_api.job_id_text(instance_id, "instance_id")
    except ValueError as err:
        raise DataQCInvalidArgumentError(str(err)) from None
    workspace_id = hook._workspace(workspace)
    plan = all_results(hook.settings.project_id, workspace_id, wanted)
    return drive(plan, hook._json)  # type: ignore[no-any-return]


def stop_job_instances(hook: DataQCHook, instance_ids: Iterable[Any] | Any, *, workspace: str | None = None) -> None:
    ids = [instance_ids] if isinstance(instance_ids, (str, int)) else list(instance_ids)
    request = hook._build(jobs_api.stop_instances_request, hook._workspace(workspace), ids)
    answer = hook._request(request)
    payload, _ = decode_json(answer.body)
    code, msg = service_error(payload)
    if code and code not in SUCCESS_ERROR_CODES:
        raise DataQCApiError(
            f"DataArts Quality stop instances call answered {code}: {printable(msg or '')}",
            status_code=answer.status_code,
            error_code=code,
            error_msg=msg,
        )


def run_output(record: dict[str, Any], rules: JobRunRules) -> dict[str, Any]:
    """The XCom of a run that ended: the run record plus ``alarmed_rules`` (names) and ``fail_on_alarm``."""
    output = dict(record)
    output["fail_on_alarm"] = rules.fail_on_alarm
    return output


def finish_run(finish: Finish | Any, rules: JobRunRules, log: Any, detail: JobDetail | None = None) -> dict[str, Any]:
    """End a run's wait: the XCom on success; otherwise the Airflow exception (see
    :func:`~airflow_provider_dataqc.hooks.wait.conclude`). An ALARMING run logs the table of
    the rules that alarmed — at ERROR when it fails the task (``AirflowFailException``, whose
    message names how many rules alarmed and which), at WARNING with ``fail_on_alarm=False``.
    """
    raw = finish.event if isinstance(finish, Finish) else finish
    try:
        checked: Event | None = read_event(raw, rules)
    except ValueError:
        checked = None  # conclude names what is wrong with it
    record = (checked.record or {}) if checked else {}
    if checked and checked.kind in (EVENT_SUCCESS, EVENT_FAILED) and record.get("run_status") == "ALARMING":
        rows = rule_rows(record.get("results") or [], detail)
        alarmed = alarmed_rows(rows)
        names = [row.rule for row in alarmed]
        table = rule_table(alarmed or rows)
        summary = (
            f"Data quality failed: {len(alarmed)} of {len(rows)} rules alarmed"
            + (
                f" ({', '.join(printable(name) for name in names[:10])}{', …' if len(names) > 10 else ''})"
                if names
                else ""
            )
            + f" in run {printable(record.get('instance_id'))} of job {printable(record.get('job_id') or rules.job_id)}"
        )
        if checked.kind == EVENT_FAILED:
            log.error("%s:\n%s", summary, table)
            raise AirflowFailException(summary)
        log.warning("%s (fail_on_alarm=False: the task succeeds):\n%s", summary, table)
        output = run_output(record, rules)
        output["alarmed_rules"] = names
        return output
    ended = conclude(raw, rules, log)
    output = run_output(ended.record or {}, rules)
    output["alarmed_rules"] = []
    if ended.judged and output.get("results"):
        log.info(
            "Rule results of run %s:\n%s", output.get("instance_id"), rule_table(rule_rows(output["results"], detail))
        )
    return output
