"""OpenLineage of quality gates: the checked tables as input datasets, one assertion per rule.

Runs the operator against the emulator and reads what it would hand the OpenLineage provider
(serialised as the client would send it). With the provider installed (``.[openlineage]``) the
facets are checked; without it, the operator must still run and report nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_dataqc.core.jobs import JobDetail
from airflow_provider_dataqc.lineage import checked_tables
from airflow_provider_dataqc.operators.quality import DataQCRunQualityJobOperator
from airflow_provider_dataqc.testing.emulator import Emulator

HAS_OPENLINEAGE = importlib.util.find_spec("airflow.providers.openlineage") is not None
PASS_JOB, ALARM_JOB = "1440764172232392705", "1440764172232392706"


def run_gate(job_id: str) -> DataQCRunQualityJobOperator:
    gate = DataQCRunQualityJobOperator(task_id=f"gate_{job_id[-3:]}", job_id=job_id, poll_interval=0.05, timeout=30)
    with contextlib.suppress(AirflowFailException):  # the alarming run: its lineage is read on failure
        gate.execute(context={})  # type: ignore[arg-type]
    return gate


def emitted(lineage: Any) -> list[dict[str, Any]]:
    """The input datasets as the OpenLineage client serialises them."""
    from openlineage.client.serde import Serde

    return [json.loads(Serde.to_json(dataset)) for dataset in lineage.inputs]


def test_the_tables_and_assertions_of_a_passing_and_an_alarming_run(
    fresh_emulator: Emulator, use_connection: Any
) -> None:
    use_connection(fresh_emulator)
    passed, alarmed = run_gate(PASS_JOB), run_gate(ALARM_JOB)
    assert passed._output and passed._output["run_status"] == "SUCCESS"
    assert alarmed._output and alarmed._output["run_status"] == "ALARMING"
    (table,) = checked_tables(alarmed._detail, alarmed._output)
    assert (table.namespace, table.name) == ("dataarts://dws_emulated", "sales.orders")
    assert table.assertions == (
        ("orders_not_null", False, "order_id"),
        ("orders_amount_range", False, "amount"),
        ("orders_row_count", True, None),
    )
    complete, failure = passed.get_openlineage_facets_on_complete(None), alarmed.get_openlineage_facets_on_failure(None)
    if not HAS_OPENLINEAGE:
        assert complete is None and failure is None
        return
    (dataset,) = emitted(complete)
    assert (dataset["namespace"], dataset["name"]) == ("dataarts://dws_emulated", "sales.orders")
    assertions = dataset["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert [(a["assertion"], a["success"], a.get("column")) for a in assertions] == [
        ("orders_not_null", True, "order_id"),
        ("orders_amount_range", True, "amount"),
        ("orders_row_count", True, None),
    ]
    (dataset,) = emitted(failure)
    assert [a["success"] for a in dataset["inputFacets"]["dataQualityAssertions"]["assertions"]] == [False, False, True]


@pytest.mark.parametrize("output", [None, {"run_status": "RUNNING", "results": None}])
def test_a_run_without_results_names_the_tables_without_assertions(output: Any) -> None:
    detail = JobDetail.from_api(
        {
            "sub_rules": [
                [{"id": 1, "connection": "c1", "databases": "d", "tables": "a,b"}],
                [{"id": 2, "tables": "x.y"}],
            ]
        }
    )
    tables = checked_tables(detail, output)
    assert [(t.namespace, t.name, t.assertions) for t in tables] == [
        ("dataarts://c1", "d.a", ()),
        ("dataarts://c1", "d.b", ()),
        ("dataarts://unknown", "x.y", ()),
    ]
    assert checked_tables(None, output) == []
