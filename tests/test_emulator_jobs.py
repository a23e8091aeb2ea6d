"""The emulator's quality and comparison jobs and their runs, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_dataqc.testing.emulator import (
    DEFAULT_PROJECT_ID,
    DEFAULT_TOKEN,
    SEEDED_JOBS,
    Emulator,
    FaultPlan,
    FlowControl,
    running_emulator,
)

Q = f"/v2/{DEFAULT_PROJECT_ID}/quality"
HEADERS = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": "ws-dev"}
PASS, ALARM, FAIL, LATE, LONG = (
    1440764172232392705,
    1440764172232392706,
    1440764172232392707,
    1440764172232392708,
    1440764172232392709,
)
CMP_PASS, CMP_ALARM = 1440764172232392801, 1440764172232392802


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with running_emulator() as emulator:
        yield emulator


def get(emulator: Emulator, path: str, headers: dict[str, str] | None = None, **params: Any) -> requests.Response:
    return requests.get(f"{emulator.url}{Q}{path}", params=params, headers=headers or HEADERS, timeout=10)


def post(emulator: Emulator, path: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{emulator.url}{Q}{path}", json=body, headers=headers or HEADERS, timeout=10)


def run(emulator: Emulator, job_id: int, rule_type: int = 1) -> str:
    answer = post(emulator, "/instances/restart", {"rule_type": rule_type, "rule_id": str(job_id)})
    assert answer.status_code == 200, answer.text
    instance_id = answer.json()["instance_id"]
    assert isinstance(instance_id, str) and len(instance_id) == 19
    return str(instance_id)


def exact(answer: requests.Response) -> Any:
    """The JSON body with integers kept as their digits (never through a float)."""
    return json.loads(answer.text, parse_int=str)


def find(emulator: Emulator, instance_id: str, **filters: Any) -> dict[str, Any] | None:
    answer = get(emulator, "/instances", limit=100, **filters)
    assert answer.status_code == 200, answer.text
    for item in exact(answer)["resources"]:
        if item["id"] == instance_id:
            return item  # type: ignore[no-any-return]
    return None


def statuses(emulator: Emulator, instance_id: str, times: int, **filters: Any) -> list[str | None]:
    found = [find(emulator, instance_id, **filters) for _ in range(times)]
    return [item["run_status"] if item else None for item in found]


# ------------------------------------------------------------------------------- jobs
def test_job_lists_and_details_with_sub_rules(emu: Emulator) -> None:
    quality = get(emu, "/quality-tasks")
    assert quality.status_code == 200
    names = {item["name"] for item in quality.json()["resources"]}
    assert {"dq_orders_pass", "dq_orders_alarm", "dq_orders_fail"} <= names and "cmp_orders_pass" not in names
    assert quality.json()["count"] == sum(1 for spec in SEEDED_JOBS.values() if spec[1] == "quality")
    assert exact(quality)["resources"][0]["id"] == str(PASS)  # a JSON number, all 19 digits
    assert '"id": 1440764172232392705' in quality.text
    comparison = get(emu, "/consistency-tasks", name="cmp_")
    assert {item["name"] for item in comparison.json()["resources"]} == {"cmp_orders_pass", "cmp_orders_alarm"}
    assert get(emu, "/quality-tasks", name="alarm").json()["count"] == 1
    paged = get(emu, "/quality-tasks", limit=2, offset=1).json()
    assert len(paged["resources"]) == 2 and paged["count"] == quality.json()["count"]

    detail = get(emu, f"/quality-tasks/{ALARM}").json()
    assert detail["name"] == "dq_orders_alarm" and len(detail["sub_rules"]) == 3
    rule = detail["sub_rules"][0]
    assert {"connection", "databases", "tables", "columns", "sub_rule_name", "type"} <= set(rule)
    assert (rule["databases"], rule["tables"], rule["columns"]) == ("sales", "orders", "order_id")
    cmp_detail = get(emu, f"/consistency-tasks/{CMP_PASS}").json()
    assert isinstance(cmp_detail["sub_rules"][0], list)  # a list of lists for comparison jobs
    for missing in (f"/quality-tasks/{CMP_PASS}", "/quality-tasks/123", "/quality-tasks/not-a-number"):
        answer = get(emu, missing)
        assert answer.status_code == 404 and answer.json()["error_code"] == "DQC.1016"


def test_add_quality_job_with_own_sub_rules_and_workspace(emu: Emulator) -> None:
    rules = [{"id": 7, "sub_rule_name": "c1", "databases": "db", "tables": "t", "columns": "a,b", "connection": "x"}]
    job_id = emu.add_quality_job("nightly_check", sub_rules=rules, workspace="ws-prod")
    assert job_id > 2**53 and len(str(job_id)) == 19
    prod = {**HEADERS, "workspace": "ws-prod"}
    assert get(emu, f"/quality-tasks/{job_id}", prod).json()["sub_rules"] == rules
    assert get(emu, f"/quality-tasks/{job_id}").status_code == 404  # another workspace
    with pytest.raises(ValueError, match="job_type"):
        emu.add_quality_job("x", job_type="other")


# ------------------------------------------------------------------------------- runs
@pytest.mark.parametrize(
    ("job_id", "rule_type", "expected", "alarmed"),
    [
        (PASS, 1, ["RUNNING", "RUNNING", "SUCCESS", "SUCCESS"], 0),
        (ALARM, 1, ["RUNNING", "RUNNING", "ALARMING", "ALARMING"], 2),
        (FAIL, 1, ["RUNNING", "FAILED", "FAILED", "FAILED"], None),
        (CMP_PASS, 2, ["RUNNING", "SUCCESS", "SUCCESS", "SUCCESS"], 0),
        (CMP_ALARM, 2, ["RUNNING", "ALARMING", "ALARMING", "ALARMING"], 2),
    ],
)
def test_seeded_jobs_run_as_their_names_say(
    emu: Emulator, job_id: int, rule_type: int, expected: list[str], alarmed: int | None
) -> None:
    instance_id = run(emu, job_id, rule_type)
    task_type = "QUALITY_TASK" if rule_type == 1 else "CONSISTENCY_TASK"
    assert statuses(emu, instance_id, 4, task_type=task_type) == expected
    item = find(emu, instance_id)
    assert item is not None and item["task_id"] == str(job_id) and item["end_time"] is not None
    assert item["notify_status"] == ("SUCCESS" if expected[-1] == "ALARMING" else "NOT_TRIGGERED")
    results = get(emu, f"/instances/{instance_id}/result", limit=100).json()
    if alarmed is None:
        assert results == {"count": 0, "resources": []}
    else:
        flags = [entry["results"][0]["Status"] for entry in results["resources"]]
        assert results["count"] == 3 and flags.count("false") == alarmed
        assert {"sub_rule_id", "sub_instance_instance_id", "abnormal_table_status"} <= set(results["resources"][0])


def test_each_run_call_starts_a_new_run_with_exact_19_digit_ids(emu: Emulator) -> None:
    first, second = run(emu, PASS), run(emu, PASS)
    assert first != second and int(first) > 2**53
    listed = get(emu, "/instances", name="dq_orders_pass")
    ids = [item["id"] for item in exact(listed)["resources"]]
    assert set(ids) == {first, second}
    assert len(emu.job_runs(PASS)) == 2 and {r["started_by"] for r in emu.job_runs(PASS)} == {"api"}


def test_run_call_validation_and_not_found(emu: Emulator) -> None:
    for body in ({"rule_type": 3, "rule_id": str(PASS)}, {"rule_type": 1}, {"rule_type": True, "rule_id": "1"}, [1]):
        answer = post(emu, "/instances/restart", body)
        assert answer.status_code == 400 and answer.json()["error_code"] == "DQC.0001", body
    wrong_type = post(emu, "/instances/restart", {"rule_type": 2, "rule_id": str(PASS)})
    assert wrong_type.status_code == 404 and wrong_type.json()["error_code"] == "DQC.1016"
    as_number = post(emu, "/instances/restart", {"rule_type": 1, "rule_id": PASS})
    assert as_number.status_code == 200


def test_a_run_that_shows_late_after_list_calls_or_seconds(emu: Emulator) -> None:
    late = run(emu, LATE)
    assert statuses(emu, late, 5) == [None, None, None, "RUNNING", "SUCCESS"]
    job_id = emu.add_quality_job("slow_to_list", run_script=["SUCCESS"], appear_after_seconds=0.3)
    instance_id = run(emu, job_id)
    assert find(emu, instance_id) is None
    deadline = time.monotonic() + 30
    while find(emu, instance_id) is None:
        assert time.monotonic() < deadline, "the run never appeared"
        time.sleep(0.05)


def test_instance_filters_and_paging(emu: Emulator) -> None:
    before = int(time.time() * 1000) - 1
    ids = [run(emu, PASS) for _ in range(3)] + [run(emu, CMP_PASS, 2)]
    assert find(emu, ids[0], task_type="CONSISTENCY_TASK") is None
    assert find(emu, ids[3], task_type="CONSISTENCY_TASK") is not None
    assert find(emu, ids[0], name="orders_pass") is not None  # names match in part
    assert find(emu, ids[0], start_time=str(before), end_time=str(before + 3_600_000)) is not None
    assert find(emu, ids[0], end_time=str(before - 1)) is None
    long_run = run(emu, LONG)  # RUNNING for ever
    assert find(emu, long_run, run_status="SUCCESS") is None and find(emu, long_run, run_status="RUNNING") is not None
    pages = [exact(get(emu, "/instances", name="dq_orders_pass", limit=2, offset=o)) for o in (0, 2)]
    assert pages[0]["count"] == "3" and [len(p["resources"]) for p in pages] == [2, 1]
    assert {i["id"] for p in pages for i in p["resources"]} == set(ids[:3])
    for params in ({"limit": 101}, {"limit": 0}, {"offset": -1}, {"task_type": "X"}, {"start_time": "yesterday"}):
        answer = get(emu, "/instances", **params)
        assert answer.status_code == 400 and answer.json()["error_code"] == "DQC.0001", params


def test_rule_results_page_and_scripted_runs(emu: Emulator) -> None:
    results = [{"sub_rule_id": n, "results": [{"Status": "false", "Name": f"t{n}"}]} for n in range(15)]
    job_id = emu.add_quality_job("many_rules", run_script=["RUNNING", "ALARMING"], results=results)
    instance_id = run(emu, job_id)
    assert get(emu, f"/instances/{instance_id}/result").json() == {"count": 0, "resources": []}  # still running
    statuses(emu, instance_id, 2)
    first = get(emu, f"/instances/{instance_id}/result").json()
    rest = get(emu, f"/instances/{instance_id}/result", limit=10, offset=10).json()
    assert first["count"] == 15 and len(first["resources"]) == 10 and len(rest["resources"]) == 5
    assert get(emu, f"/instances/{instance_id}/result", limit=101).status_code == 400
    assert get(emu, "/instances/1234/result").status_code == 404

    emu.script_runs(job_id, [{"run_status": "FAILED", "notify_status": "FAILED"}])
    failed = run(emu, job_id)
    assert find(emu, failed) == {**(find(emu, failed) or {}), "run_status": "FAILED", "notify_status": "FAILED"}
    emu.script_run(failed, ["RUNNING", "SUCCESS"])
    assert statuses(emu, failed, 2) == ["RUNNING", "SUCCESS"]
    scheduled = str(emu.start_run(job_id, start_time=1_700_000_000_000))
    item = find(emu, scheduled)
    assert item is not None and item["start_time"] == "1700000000000"
    assert [r["started_by"] for r in emu.job_runs(job_id) if str(r["id"]) == scheduled] == ["schedule"]


def test_batch_stop_ends_a_run_in_the_stopped_state(emu: Emulator) -> None:
    long_run, finished = run(emu, LONG), run(emu, FAIL)
    statuses(emu, finished, 2)
    answer = post(emu, "/instances/batch-stop", [long_run, int(finished)])
    assert answer.status_code == 200 and answer.json()["error_code"] == "DQC.0000"
    assert answer.json()["data"] == [long_run]  # the finished run had nothing to stop
    assert statuses(emu, long_run, 3) == ["SUSPENDING"] * 3
    item = find(emu, long_run)
    assert item is not None and item["end_time"] is not None
    assert statuses(emu, finished, 1) == ["FAILED"]
    assert [r["stopped"] for r in emu.job_runs(LONG)] == [True]
    for body in ([], {"ids": [long_run]}, ["abc"]):
        bad = post(emu, "/instances/batch-stop", body)
        assert bad.status_code == 400 and bad.json()["error_code"] == "DQC.0001"


# ------------------------------------------------------------------------------- the same gateway
def test_auth_workspace_error_form_flow_control_and_faults_apply_to_jobs() -> None:
    with running_emulator(not_found_status=500, flow_control=FlowControl(per_user=5)) as emu:
        assert get(emu, "/quality-tasks", {**HEADERS, "X-Auth-Token": "wrong"}).status_code == 401
        no_ws = get(emu, "/quality-tasks", {"X-Auth-Token": DEFAULT_TOKEN})
        assert no_ws.status_code == 400 and no_ws.json()["error_code"] == "DQC.0004"
        missing = get(emu, "/quality-tasks/42")
        assert missing.status_code == 500 and missing.json() == {
            "error_code": "DQC.1016",
            "error_msg": "The job does not exist",
        }
        codes = [get(emu, "/instances").status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        assert emu.flow_stats().throttled_by_api == {"instances": 1}
    plan = FaultPlan(rate=1.0, mix={"http500_json": 1.0}, operations=("instances",))
    with running_emulator(faults=plan) as emu:
        instance_id = run(emu, PASS)
        assert [get(emu, "/instances").status_code for _ in range(5)] == [500] * 5
        emu.faults = None
        assert statuses(emu, instance_id, 1) == ["RUNNING"]  # faulted lists moved nothing
        assert emu.count("run") == 1 and emu.count("instances") == 6
        assert emu.count("results", resource_id=instance_id) == 0


def test_unknown_job_routes_are_gateway_404s(emu: Emulator) -> None:
    for method, path in (("GET", "/instances/restart"), ("POST", "/instances"), ("GET", "/quality-tasks/1/x")):
        answer = requests.request(method, f"{emu.url}{Q}{path}", headers=HEADERS, timeout=10)
        assert answer.status_code == 404 and answer.json()["error_code"] == "APIGW.0101", path


def test_command_line_knows_the_seeded_jobs() -> None:
    module = "airflow_provider_dataqc.testing.emulator"
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        answer = requests.post(
            f"{url}{Q}/instances/restart", json={"rule_type": 1, "rule_id": str(ALARM)}, headers=HEADERS, timeout=10
        )
        assert answer.status_code == 200 and len(answer.json()["instance_id"]) == 19
    finally:
        process.terminate()
        process.wait(timeout=10)
