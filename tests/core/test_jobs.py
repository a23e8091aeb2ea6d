"""The pure quality-job core: requests, tolerant readers, the rule table, the search policy and the run rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_dataqc.core.errors import decode_json
from airflow_provider_dataqc.core.jobs import (
    JobDetail,
    JobInstance,
    alarmed_rows,
    read_instance_id,
    read_instance_page,
    read_result_page,
    result_alarmed,
    rule_rows,
    rule_table,
)
from airflow_provider_dataqc.core.jobs_api import (
    instance_results_request,
    instances_request,
    job_detail_request,
    job_kind,
    run_job_request,
    stop_instances_request,
)
from airflow_provider_dataqc.core.jobs_run import (
    InstanceSearch,
    JobRun,
    JobRunRules,
    NotListed,
    drive,
    find_instance,
    poll_run,
    started_window,
)
from airflow_provider_dataqc.core.settings import InvalidSettingError
from airflow_provider_dataqc.core.status import Outcome
from airflow_provider_dataqc.core.wait import EVENT_FAILED, EVENT_SUCCESS, Finish, InvalidEventError, Wait, read_event

BIG = 1440764172232392705  # above 2**53: a float would change it
START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)


def entry(ident: int = BIG, status: str = "RUNNING", **fields: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "name": "dq",
        "task_id": BIG - 1,
        "task_type": "QUALITY_TASK",
        "run_status": status,
        "notify_status": "NOT_TRIGGERED",
        "start_time": START_MS,
        "end_time": None,
        **fields,
    }


def test_19_digit_ids_survive_the_json_decoding_exactly() -> None:
    body = json.dumps({"count": 1, "resources": [entry()]}).encode()
    payload, problem = decode_json(body)
    assert problem is None
    (run,) = read_instance_page(payload).items
    assert run.id == str(BIG) and run.task_id == str(BIG - 1)


def test_an_instance_keeps_everything_and_reads_times_as_aware_datetimes() -> None:
    run = JobInstance.from_api(entry(status="success", end_time=str(START_MS + 1500)))
    assert run.run_status == "SUCCESS" and run.is_success and run.is_terminal
    assert not run.is_alarm and not run.is_failure
    assert run.start_time == START and run.end_time == START + timedelta(seconds=1.5)
    assert run.start_time_raw == START_MS and run.raw["notify_status"] == "NOT_TRIGGERED"
    with pytest.raises(TypeError):
        run.raw["id"] = 1  # type: ignore[index]
    assert JobInstance.from_record(run.to_dict()) == run


@pytest.mark.parametrize(
    ("status", "terminal", "known"),
    [("ALARMING", True, True), ("FAILED", True, True), ("SUSPENDING", False, True), ("PAUSED_BY_OPS", False, False)],
)
def test_statuses_are_kept_as_strings(status: str, terminal: bool, known: bool) -> None:
    run = JobInstance.from_api(entry(status=status))
    assert run.run_status == status and run.is_terminal is terminal and run.is_known_status is known


def test_readers_tolerate_every_plausible_form_and_skip_the_rest() -> None:
    page = read_instance_page({"data": {"count": "3", "resources": [entry(), {"no": "id"}, "junk", entry(7)]}})
    assert [run.id for run in page.items] == [str(BIG), "7"] and page.count == 3 and page.skipped == 2
    assert page.size == 4
    bad_times = JobInstance.from_api(entry(start_time="soon", end_time=-5))
    assert bad_times.start_time is None and bad_times.end_time is None and bad_times.start_time_raw == "soon"
    assert read_instance_page(None).items == () and read_instance_page({"resources": "x"}).items == ()
    assert read_result_page([{"sub_rule_id": "1"}, 3]).items == ({"sub_rule_id": "1"},)
    assert read_instance_id({"instance_id": BIG}) == str(BIG)
    assert read_instance_id({"data": {"instance_id": " 42 "}}) == "42"
    with pytest.raises(ValueError, match="no instance_id"):
        read_instance_id({"error_code": "DQC.0000"})


def test_job_detail_flattens_comparison_sub_rules() -> None:
    detail = JobDetail.from_api(
        {
            "id": BIG,
            "name": "cmp",
            "sub_rules": [
                [{"id": 1, "sub_rule_name": "a", "databases": "db", "tables": "t1,t2", "columns": "c"}],
                [{"id": 2, "sub_rule_name": "b"}],
                "junk",
            ],
        }
    )
    assert [rule.name for rule in detail.sub_rules] == ["a", "b"]
    assert detail.sub_rules[0].tables == ("t1", "t2") and detail.sub_rules[0].target == "db.t1,t2.c"
    assert detail.rule("1") is detail.sub_rules[0] and detail.rule(3) is None


def test_requests_have_the_documented_paths_bodies_and_queries() -> None:
    run = run_job_request("p1", "ws", BIG, job_type="comparison")
    assert (run.method, run.path, run.idempotent) == ("POST", "/v2/p1/quality/instances/restart", False)
    assert json.loads(run.body or b"") == {"rule_type": 2, "rule_id": str(BIG)}
    assert job_detail_request("p1", "ws", str(BIG)).path == f"/v2/p1/quality/quality-tasks/{BIG}"
    listed = instances_request("p1", "ws", name="dq", started_from=START, limit=50, offset=100)
    assert dict(listed.query) == {
        "task_type": "QUALITY_TASK",
        "name": "dq",
        "start_time": str(START_MS),
        "limit": "50",
        "offset": "100",
    }
    results = instance_results_request("p1", "ws", BIG, offset=10)
    assert results.path == f"/v2/p1/quality/instances/{BIG}/result" and ("offset", "10") in results.query
    stop = stop_instances_request("p1", "ws", [str(BIG), BIG - 1])
    assert stop.body == f"[{BIG},{BIG - 1}]".encode()
    assert job_kind("CONSISTENCY_TASK").rule_type == 2 and job_kind("quality-task").rule_type == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: run_job_request("p", "ws", 1.4e18), "not float"),
        (lambda: run_job_request("p", "ws", "1", job_type="weekly"), "quality, comparison"),
        (lambda: job_detail_request("p", "ws", ".."), "path steps"),
        (lambda: instances_request("p", "ws", limit=101), "1 to 100"),
        (lambda: instances_request("p", "ws", offset=-1), ">= 0"),
        (lambda: stop_instances_request("p", "ws", []), "at least one"),
        (lambda: instance_results_request("p", "ws", "a\nb"), "control"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(call: Any, message: str | None) -> None:
    with pytest.raises(InvalidSettingError) as raised:
        call()
    if message:
        assert message in str(raised.value)


def results(*statuses: str) -> list[dict[str, Any]]:
    return [
        {"sub_rule_id": str(n), "results": [{"Total Rows": "4", "Status": status, "Name": f"db.t{n}"}]}
        for n, status in enumerate(statuses, 1)
    ]


def test_the_rule_table_names_rules_and_escapes_service_text() -> None:
    detail = JobDetail.from_api(
        {
            "sub_rules": [
                {
                    "id": 1,
                    "sub_rule_name": "not_null\nTask exited with return code 0",
                    "databases": "db",
                    "tables": "t",
                    "columns": "c",
                },
                {"id": 2, "sub_rule_name": "rows"},
            ]
        }
    )
    rows = rule_rows(results("false", "true", "???"), detail)
    assert [row.alarmed for row in rows] == [True, False, None]
    assert [row.rule for row in alarmed_rows(rows)] == ["not_null\nTask exited with return code 0"]
    table = rule_table(rows)
    lines = table.splitlines()
    assert len(lines) == 5 and not any(line.startswith("Task exited") for line in lines)
    assert "not_null\\nTask exited" in lines[2] and "db.t.c" in lines[2] and "Status=false" in lines[2]
    assert "sub-rule 3" in lines[4]


def test_alarm_markers() -> None:
    assert result_alarmed([{"alarm": "true"}]) is True and result_alarmed([{"Status": "PASS"}]) is False
    assert result_alarmed([{"Gesamt": "4"}]) is None
    unsaid = rule_rows(results("?", "?"))
    assert len(alarmed_rows(unsaid)) == 2  # nothing says which: all are shown rather than none


def page(*entries: dict[str, Any], count: int | None = None) -> dict[str, Any]:
    return {"count": count if count is not None else len(entries), "resources": list(entries)}


def test_the_search_pages_until_it_finds_the_run_and_no_further() -> None:
    search = InstanceSearch("quality", str(BIG), "dq", START, page_size=2)
    pages = [page(entry(1), entry(2), count=6), page(entry(3), entry(BIG), count=6), page(entry(5), count=6)]
    asked: list[Any] = []

    def send(request: Any) -> dict[str, Any]:
        asked.append(dict(request.query))
        return pages[len(asked) - 1]

    found = drive(find_instance(search, "p", "ws"), send)
    assert found is not None and found.id == str(BIG) and len(asked) == 2
    assert [q["offset"] for q in asked] == ["0", "2"]
    assert asked[0]["start_time"] == str(int((START - timedelta(minutes=10)).timestamp() * 1000))
    assert drive(find_instance(search, "p", "ws"), lambda r: page()) is None
    assert "name='dq'" in search.describe() and "start_time from" in search.describe()


def test_the_first_run_after_a_time_is_the_earliest_at_or_after_it() -> None:
    search = InstanceSearch("quality", None, "dq", START, page_size=2)
    early, first, later = (entry(n, start_time=START_MS + d) for n, d in ((1, -1), (2, 0), (3, 5)))
    pages = [page(later, early, count=3), page(first, count=3)]
    found = drive(find_instance(search, "p", "ws"), lambda r: pages.pop(0))
    assert found is not None and found.id == "2"


def test_a_poll_reads_results_only_once_the_run_ended() -> None:
    search = InstanceSearch("quality", str(BIG))
    running = drive(poll_run(search, "p", "ws", 1.0), lambda r: page(entry()))
    assert isinstance(running, JobRun) and running.results is None
    answers = [page(entry(status="ALARMING")), {"count": 1, "resources": results("false")}]
    ended = drive(poll_run(search, "p", "ws", 1.0), lambda r: answers.pop(0))
    assert ended.results == tuple(results("false"))
    missing = drive(poll_run(search, "p", "ws", 7.0), lambda r: page())
    assert isinstance(missing, NotListed) and missing.waited == 7.0


@pytest.mark.parametrize(
    ("status", "fail_on_alarm", "outcome", "unusual"),
    [
        ("SUCCESS", True, Outcome.SUCCESS, False),
        ("ALARMING", True, Outcome.FAILED, False),
        ("ALARMING", False, Outcome.SUCCESS, False),
        ("FAILED", False, Outcome.FAILED, False),
        ("RUNNING", True, Outcome.WAIT, False),
        ("UNKNOWN", True, Outcome.WAIT, False),
        ("PAUSED", True, Outcome.WAIT, True),
    ],
)
def test_the_run_rules(status: str, fail_on_alarm: bool, outcome: Outcome, unusual: bool) -> None:
    rules = JobRunRules(str(BIG), "9", fail_on_alarm=fail_on_alarm)
    judged = rules.judge(JobRun(JobInstance.from_api(entry(status=status)), ()))
    assert judged.outcome is outcome and judged.unusual is unusual
    assert judged.record["instance_id"] == str(BIG) and judged.record["run_status"] == status
    if status == "ALARMING" and not fail_on_alarm:
        assert "fail_on_alarm=False" in judged.message and judged.record["passed"] is False


def test_a_run_not_listed_waits_until_the_bound_then_fails_naming_the_search() -> None:
    rules = JobRunRules(str(BIG), "9", appear_within=60)
    assert rules.judge(NotListed("name='dq'", 59.0)).outcome is Outcome.WAIT
    judged = rules.judge(NotListed("name='dq'", 60.0))
    assert judged.outcome is Outcome.FAILED and str(BIG) in judged.message and "name='dq'" in judged.message
    assert JobRunRules(None, "9").judge(NotListed("x", 1e9)).outcome is Outcome.WAIT  # a scheduled run may come later


def test_events_carry_the_run_and_are_judged_again_when_they_come_back() -> None:
    rules = JobRunRules(str(BIG), "9")
    finish = Wait(rules).on_answer(JobRun(JobInstance.from_api(entry(status="SUCCESS")), tuple(results("true"))))
    assert isinstance(finish, Finish) and finish.kind == EVENT_SUCCESS
    event = json.loads(json.dumps(finish.event))
    checked = read_event(event, rules)
    assert checked.record is not None and checked.record["results"] == results("true")
    event["record"]["run_status"] = "ALARMING"
    with pytest.raises(InvalidEventError, match="does not match"):
        read_event(event, rules)
    missing = Wait(JobRunRules(str(BIG), appear_within=0)).on_answer(NotListed("x", 1.0))
    assert isinstance(missing, Finish) and missing.kind == EVENT_FAILED
    assert read_event(missing.event, JobRunRules(str(BIG), appear_within=0)).kind == EVENT_FAILED
    with pytest.raises(InvalidEventError):
        read_event({**finish.event, "instance_id": "1"}, rules)


def test_started_after_accepts_iso_datetimes_and_epoch_ms() -> None:
    assert started_window("2026-01-02T03:04:05Z") == START
    assert started_window("2026-01-02T03:04:05") == START
    assert started_window(START.replace(tzinfo=None)) == START
    assert started_window(START_MS) == START and started_window("") is None
    with pytest.raises(ValueError):
        started_window("yesterday")
