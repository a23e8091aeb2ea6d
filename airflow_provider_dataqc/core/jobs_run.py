"""Following a run of a DataArts Quality job: where to look for it, and what each look means.

Pure: no Airflow import, no I/O. A poll is a *plan* — a generator that yields the
:class:`~airflow_provider_dataqc.core.api.ApiRequest` s it needs and is sent each one's JSON
object back — so the sync hook and the async trigger carry out the same search with their
own transport. :class:`JobRunRules` are the rules of the core wait engine for a run.

Search policy: the service has no GET of one run, so a run is found in the instance list,
filtered by the job's name and type and by a window of start times (from a little before the
run was started: clocks differ), paged through (at most :attr:`InstanceSearch.max_pages`
pages) and matched by its 64-bit ID as a string. A run just started may not be listed at
once; a run that is still not listed ``appear_within`` seconds after it was started ends the
wait with an error naming the ID and what was searched.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_provider_dataqc.core.api import ApiRequest
from airflow_provider_dataqc.core.errors import printable
from airflow_provider_dataqc.core.jobs import JobInstance, Page, read_instance_page, read_result_page
from airflow_provider_dataqc.core.jobs_api import MAX_PAGE_SIZE, epoch_ms, instance_results_request, instances_request
from airflow_provider_dataqc.core.status import Outcome
from airflow_provider_dataqc.core.wait import Judgement

#: How far before the run's start the search window opens (the service's clock may be behind ours).
CLOCK_SKEW = timedelta(minutes=10)
#: Seconds a started run may take to appear in the instance list before the wait gives up.
DEFAULT_APPEAR_WITHIN = 600.0

Plan = Generator[ApiRequest, dict[str, Any], Any]


@dataclass(frozen=True)
class InstanceSearch:
    """Which runs to ask the instance list for, and which of them is the one.

    With ``instance_id``: that run. Without: the first run (earliest start) of the job that
    started at or after ``started_after`` (for jobs DataArts schedules itself).
    """

    job_type: str = "quality"
    instance_id: str | None = None
    job_name: str | None = None
    #: When the run was started (the operator's clock) or the sensor's ``started_after``.
    started_after: datetime | None = None
    page_size: int = MAX_PAGE_SIZE
    max_pages: int = 20

    @property
    def window_from(self) -> datetime | None:
        return self.started_after - CLOCK_SKEW if self.started_after else None

    def request(self, project_id: str, workspace: str, offset: int) -> ApiRequest:
        return instances_request(
            project_id,
            workspace,
            job_type=self.job_type,
            name=self.job_name,
            started_from=self.window_from,
            limit=self.page_size,
            offset=offset,
        )

    def describe(self) -> str:
        """What is searched, in words, for messages."""
        parts = [f"task_type of {self.job_type!r} jobs"]
        if self.job_name:
            parts.append(f"name={self.job_name!r}")
        if self.window_from:
            parts.append(f"start_time from {self.window_from.isoformat()}")
        parts.append(f"up to {self.max_pages} pages of {self.page_size}")
        return ", ".join(parts)

    def match(self, page: Page, best: JobInstance | None = None) -> JobInstance | None:
        """The run on this page (or the earliest so far, without ``instance_id``)."""
        for instance in page.items:
            if self.instance_id is not None:
                if instance.id == self.instance_id:
                    return instance
                continue
            if self.started_after is None or instance.start_time is None:
                continue
            after = self.started_after if self.started_after.tzinfo else self.started_after.replace(tzinfo=UTC)
            if instance.start_time >= after and (
                best is None or best.start_time is None or instance.start_time < best.start_time
            ):
                best = instance
        return best if self.instance_id is None else None

    def next_offset(self, offset: int, page: Page) -> int | None:
        """The next page's offset, or ``None`` when the list is through (an empty or short page,
        or the announced ``count`` reached)."""
        if page.size == 0 or page.size < self.page_size:
            return None
        following = offset + page.size
        return None if page.count is not None and following >= page.count else following


def find_instance(search: InstanceSearch, project_id: str, workspace: str) -> Plan:
    """Plan: page through the list; returns the run (:class:`JobInstance`) or ``None``."""
    offset, best = 0, None
    for _ in range(search.max_pages):
        page = read_instance_page((yield search.request(project_id, workspace, offset)))
        best = search.match(page, best)
        if best is not None and search.instance_id is not None:
            return best
        following = search.next_offset(offset, page)
        if following is None:
            break
        offset = following
    return best


def all_results(project_id: str, workspace: str, instance_id: str, *, max_pages: int = 100) -> Plan:
    """Plan: every page of a run's rule results; returns the list of result dicts."""
    results: list[dict[str, Any]] = []
    offset = 0
    for _ in range(max_pages):
        request = instance_results_request(project_id, workspace, instance_id, limit=MAX_PAGE_SIZE, offset=offset)
        page = read_result_page((yield request))
        results.extend(page.items)
        if page.size < MAX_PAGE_SIZE or (page.count is not None and offset + page.size >= page.count):
            break
        offset += page.size
    return results


@dataclass(frozen=True)
class JobRun:
    """A poll's answer when the run was found: the run, and its rule results once it ended."""

    instance: JobInstance
    results: tuple[dict[str, Any], ...] | None = None


@dataclass(frozen=True)
class NotListed:
    """A poll's answer when the run is not (yet) in the list."""

    searched: str
    #: Seconds since the run was started (or the search began), for the bound.
    waited: float


def poll_run(search: InstanceSearch, project_id: str, workspace: str, waited: float) -> Plan:
    """Plan: one poll — find the run; once it ended, read all its results. Returns
    :class:`JobRun` or :class:`NotListed`."""
    instance = yield from find_instance(search, project_id, workspace)
    if instance is None:
        return NotListed(search.describe(), max(float(waited), 0.0))
    if not instance.is_terminal:
        return JobRun(instance)
    results = yield from all_results(project_id, workspace, instance.id)
    return JobRun(instance, tuple(results))


def drive(plan: Plan, send: Callable[[ApiRequest], dict[str, Any]]) -> Any:
    """Carry out a plan with a synchronous ``send`` (request → JSON object)."""
    reply: Any = None
    try:
        while True:
            reply = send(plan.send(reply))
    except StopIteration as done:
        return done.value


@dataclass(frozen=True)
class JobRunRules:
    """The wait engine's rules for a job run: SUCCESS succeeds; ALARMING fails with
    ``fail_on_alarm`` (data quality failed) and succeeds without it (the record says
    ``passed: false``); FAILED fails; RUNNING/SUSPENDING/UNKNOWN and undocumented statuses
    wait (undocumented ones with a WARNING); a run not listed within ``appear_within``
    seconds fails."""

    instance_id: str | None
    job_id: str | None = None
    job_type: str = "quality"
    fail_on_alarm: bool = True
    appear_within: float | None = DEFAULT_APPEAR_WITHIN

    @property
    def subject(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id} if self.instance_id else {"job_id": self.job_id}

    @property
    def label(self) -> str:
        if self.instance_id:
            return f"DataArts Quality run {self.instance_id!r}"
        return f"the first run of DataArts Quality job {self.job_id!r}"

    def judge(self, answer: JobRun | NotListed) -> Judgement:
        if isinstance(answer, NotListed):
            return self._judge_missing(answer)
        run, results = answer.instance, answer.results
        record = run.to_dict()
        record["job_id"] = record["job_id"] or self.job_id
        record["results"] = list(results) if results is not None else None
        record["passed"] = run.is_success if run.is_terminal else None
        status = run.run_status or "no run_status"
        # Service text, escaped: it must not start a log line of its own.
        about = f"{self.label} (instance {printable(run.id)}) is {printable(status)}"
        if run.is_success:
            return Judgement(Outcome.SUCCESS, f"{about}: every rule passed", record, (status,))
        if run.is_alarm:
            if self.fail_on_alarm:
                return Judgement(Outcome.FAILED, f"{about}: data quality failed (rules alarmed)", record, (status,))
            message = f"{about}: data quality failed (rules alarmed); fail_on_alarm=False, so the task succeeds"
            return Judgement(Outcome.SUCCESS, message, record, (status,))
        if run.is_failure:
            return Judgement(Outcome.FAILED, f"{about}: the run itself failed", record, (status,))
        if run.is_known_status:
            return Judgement(Outcome.WAIT, f"{about}; waiting", record, (status,))
        return Judgement(
            Outcome.WAIT, f"{about}, a status the documentation does not list; waiting", record, (status,), True
        )

    def _judge_missing(self, answer: NotListed) -> Judgement:
        record = {
            "instance_id": self.instance_id,
            "job_id": self.job_id,
            "listed": False,
            "searched": answer.searched,
            "waited_seconds": round(answer.waited, 3),
        }
        bound = self.appear_within
        if self.instance_id and bound is not None and answer.waited >= bound:
            message = (
                f"{self.label} did not appear in the instance list within {bound:g}s after it was started "
                f"(searched: {answer.searched})"
            )
            return Judgement(Outcome.FAILED, message, record, ("missing",))
        what = f"{self.label} is not listed yet" if self.instance_id else f"no run of job {self.job_id!r} yet"
        return Judgement(Outcome.WAIT, f"{what} (searched: {answer.searched}); waiting", record, ("missing",))

    def reread(self, record: Any) -> JobRun | NotListed:
        if not isinstance(record, Mapping):
            raise ValueError("a run record must be an object")
        if record.get("listed") is False:
            return NotListed(str(record.get("searched") or ""), float(record.get("waited_seconds") or 0.0))
        results = record.get("results")
        if results is not None and not isinstance(results, list):
            raise ValueError("a run record's results must be a list")
        return JobRun(
            JobInstance.from_record(record),
            tuple(dict(item) for item in results if isinstance(item, Mapping)) if results is not None else None,
        )

    def last_seen(self, record: Mapping[str, Any]) -> str:
        if record.get("listed") is False:
            return "not listed"
        return f"run_status={record.get('run_status')}, instance {record.get('instance_id')}"


def started_window(started_after: Any) -> datetime | None:
    """``started_after`` as an aware datetime: a datetime (naive means UTC), an ISO string,
    or epoch milliseconds; ``None`` stays ``None``.

    :raises ValueError: a value that is none of these.
    """
    if started_after is None or started_after == "":
        return None
    if isinstance(started_after, datetime):
        return started_after if started_after.tzinfo else started_after.replace(tzinfo=UTC)
    if isinstance(started_after, (int, float)) and not isinstance(started_after, bool):
        return datetime.fromtimestamp(float(started_after) / 1000, tz=UTC)
    text = str(started_after).strip()
    when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_APPEAR_WITHIN",
    "InstanceSearch",
    "JobRun",
    "JobRunRules",
    "NotListed",
    "all_results",
    "drive",
    "epoch_ms",
    "find_instance",
    "poll_run",
    "started_window",
]
