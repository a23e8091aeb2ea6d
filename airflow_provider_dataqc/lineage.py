"""OpenLineage for quality gates: the tables a job checks, with one assertion per rule.

Optional: nothing here is imported unless the OpenLineage provider asks the operator or the
sensor for its facets (``pip install airflow-provider-dataqc[openlineage]``). Each table a
sub-rule names (its data connection, databases, tables) is an input dataset, namespace
``dataarts://<connection>``, name ``<database>.<table>``; its ``dataQualityAssertions``
facet holds one assertion per rule on that table: the rule's name, whether it passed, and
its column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_dataqc.core.jobs import JobDetail, rule_rows

NAMESPACE_SCHEME = "dataarts"


@dataclass(frozen=True)
class CheckedTable:
    """One input dataset and the assertions on it (plain values: the OpenLineage classes are built last)."""

    namespace: str
    name: str
    #: ``(assertion, success, column)`` per rule.
    assertions: tuple[tuple[str, bool, str | None], ...] = ()


def checked_tables(detail: JobDetail | None, output: dict[str, Any] | None) -> list[CheckedTable]:
    """The tables of the job's sub-rules, each with the assertions of the rules that check it.

    A rule passed when the run was SUCCESS, or when its results do not say it alarmed; a rule
    without a result (the run did not end) gets no assertion.
    """
    if detail is None:
        return []
    results = (output or {}).get("results") or []
    run_ok = (output or {}).get("run_status") == "SUCCESS"
    by_rule = {row.sub_rule_id: row for row in rule_rows(results, detail)}
    tables: dict[tuple[str, str], list[tuple[str, bool, str | None]]] = {}
    for rule in detail.sub_rules:
        namespace = f"{NAMESPACE_SCHEME}://{rule.connection or 'unknown'}"
        names = [
            f"{database}.{table}" if database and "." not in table else table
            for table in rule.tables
            for database in (rule.databases or ("",))
        ] or [database for database in rule.databases]
        row = by_rule.get(rule.id)
        for name in names:
            found = tables.setdefault((namespace, name.lstrip(".")), [])
            if row is not None:
                success = run_ok or row.alarmed is not True
                found.append((rule.name or f"sub-rule {rule.id}", success, ",".join(rule.columns) or None))
    return [CheckedTable(ns, name, tuple(assertions)) for (ns, name), assertions in tables.items()]


def operator_lineage(detail: JobDetail | None, output: dict[str, Any] | None) -> Any:
    """``OperatorLineage`` with the checked tables as inputs, or ``None`` without the OpenLineage provider."""
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.generated.base import InputDataset
        from openlineage.client.generated.data_quality_assertions_dataset import (
            Assertion,
            DataQualityAssertionsDatasetFacet,
        )
    except ImportError:
        return None
    inputs = []
    for table in checked_tables(detail, output):
        facets: dict[str, Any] = {}
        if table.assertions:
            facets["dataQualityAssertions"] = DataQualityAssertionsDatasetFacet(
                assertions=[
                    Assertion(assertion=name, success=ok, column=column) for name, ok, column in table.assertions
                ]
            )
        inputs.append(InputDataset(namespace=table.namespace, name=table.name, inputFacets=facets))
    return OperatorLineage(inputs=inputs)
