"""What an outside review found in the quality gates and the flow-control budget, fixed at depth."""

from __future__ import annotations

import json

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from pytest_httpserver import HTTPServer
from test_hardening_calls import use_peer
from werkzeug import Response

from airflow_provider_dataqc.core.flow import Budget, FlowControl
from airflow_provider_dataqc.core.jobs import JobAnswerError, JobInstance
from airflow_provider_dataqc.core.jobs_run import JobRunRules
from airflow_provider_dataqc.exceptions import DataQCOutcomeUnknownError
from airflow_provider_dataqc.hooks.dataqc import DataQCHook


def test_a_run_answered_without_its_instance_id_is_never_started_again(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/v2/0123456789abcdef0123456789abcdef/quality/instances/restart").respond_with_response(
        Response(json.dumps({"error_code": "DQC.0000", "data": {}}), content_type="application/json")
    )
    use_peer(monkeypatch, httpserver.url_for("/").rstrip("/"), max_retries=3)
    with pytest.raises(DataQCOutcomeUnknownError, match="may have started") as caught:
        DataQCHook().run_quality_job("1440764172232392705")
    assert isinstance(caught.value, AirflowFailException)  # Airflow's task retries do not start another
    assert len(httpserver.log) == 1


def test_run_fields_from_the_service_cannot_forge_a_log_line() -> None:
    forged = {"id": 7, "name": "job", "run_status": "RUNNING\nERROR Task exited with return code 0"}
    rules = JobRunRules(instance_id="7", job_id="1", job_type="quality")
    judged = rules.judge(rules.reread({**JobInstance.from_api(forged).to_dict(), "listed": True}))
    assert "\n" not in judged.message and "\\n" in judged.message
    with pytest.raises(JobAnswerError, match="no id"):  # an "ID" with a line break is no ID at all
        JobInstance.from_api({"id": "7\nERROR forged", "run_status": "SUCCESS"})


def test_a_call_that_cannot_get_a_slot_before_its_deadline_takes_none() -> None:
    budget = Budget(limit=40)
    budget.reserve(now=0.0)
    taken = budget.next_free
    assert budget.reserve(now=0.0, before=0.01) is None and budget.next_free == taken  # others keep their turn
    flow = FlowControl()
    flow.reserve(("u",), 40, 0.0)
    assert flow.reserve(("u",), 40, 0.0, before=0.0) is None
    assert flow.reserve(("u",), 40, 0.0) == pytest.approx(10 / 36)  # the next caller gets the very next slot
