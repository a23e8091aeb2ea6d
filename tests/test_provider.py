"""Provider registration, connection form metadata, example DAGs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_dataqc.get_provider_info import CONN_FIELDS, get_provider_info
from airflow_provider_dataqc.hooks.dataqc import DataQCHook

REPO = Path(__file__).resolve().parent.parent


def test_provider_info_is_registered_as_an_entry_point() -> None:
    from importlib.metadata import entry_points

    found = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider_dataqc")
    ]
    assert len(found) == 1
    assert found[0].load()() == get_provider_info()


def test_providers_manager_knows_the_connection_type() -> None:
    from airflow.providers_manager import ProvidersManager

    assert "airflow-provider-dataqc" in ProvidersManager().providers
    try:  # Airflow 3: hooks are resolved by the task SDK's runtime manager
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Manager
    except ImportError:
        Manager = ProvidersManager
    hook_info = Manager().hooks["dataqc"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_dataqc.hooks.dataqc.DataQCHook"
    assert hook_info.connection_id_attribute_name == "dataqc_conn_id"


def test_connection_form_fields_and_labels() -> None:
    info = get_provider_info()["connection-types"][0]
    assert info["connection-type"] == DataQCHook.conn_type == "dataqc"
    assert set(info["conn-fields"]) == {
        "project_id",
        "workspace",
        "region",
        "auth_type",
        "domain_name",
        "security_token",
        "iam_endpoint",
    }
    assert info["conn-fields"]["security_token"]["schema"]["format"] == "password"
    assert info["ui-field-behaviour"]["relabeling"]["login"] == "User name or Access Key"
    assert info["ui-field-behaviour"]["relabeling"]["password"] == "Password, Secret Key or token"
    for name, spec in CONN_FIELDS.items():
        assert spec["label"] and spec["description"], name
    behaviour = DataQCHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["host"] == "Endpoint" and "schema" in behaviour["hidden_fields"]


def test_airflow_providers_list_shows_the_package() -> None:
    airflow = Path(sys.executable).parent / "airflow"
    result = subprocess.run(
        [str(airflow), "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    start = result.stdout.index("[")
    packages = {entry["package_name"] for entry in json.loads(result.stdout[start:])}
    assert "airflow-provider-dataqc" in packages


@pytest.mark.parametrize("path", sorted((REPO / "example_dags").glob("*.py")), ids=lambda p: p.name)
def test_example_dags_import_cleanly_without_network_or_connection_lookup(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from conftest import _dag_bag_for

    calls: list[str] = []
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: calls.append("connect"))
    monkeypatch.setattr(DataQCHook, "get_connection", classmethod(lambda cls, conn_id: calls.append(conn_id)))
    bag = _dag_bag_for(path)
    assert not bag.import_errors, bag.import_errors
    assert bag.dag_ids, f"no DAG in {path.name}"
    for dag_id in bag.dag_ids:
        assert bag.dags[dag_id].tasks
    assert calls == []


PARSE_TIME_PROBE = """
import json, sys
from airflow.providers.common.compat.sdk import DAG, BaseOperator, BaseSensorOperator  # what DAG files load anyway
before = set(sys.modules)
import airflow_provider_dataqc.sensors.dataqc as sensors
import airflow_provider_dataqc.operators.dataqc as operators
loaded = sorted(set(sys.modules) - before)
from airflow_provider_dataqc.sensors.dataqc import DataQCJobInstanceSensor
from airflow_provider_dataqc.operators.dataqc import DataQCRunQualityJobOperator
from airflow_provider_dataqc.sensors.quality import DataQCJobInstanceSensor as sensor
from airflow_provider_dataqc.operators.quality import DataQCRunQualityJobOperator as operator
same = [DataQCJobInstanceSensor is sensor, DataQCRunQualityJobOperator is operator]
print(json.dumps({"loaded": loaded, "same": same}))
"""


def test_a_dag_file_of_sensors_loads_no_http_client_nor_quality_code_at_parse_time() -> None:
    done = subprocess.run([sys.executable, "-c", PARSE_TIME_PROBE], capture_output=True, text=True, check=True)
    probe = json.loads(done.stdout.splitlines()[-1])
    sensor_only = subprocess.run(
        [
            sys.executable,
            "-c",
            PARSE_TIME_PROBE.replace("import airflow_provider_dataqc.operators.dataqc as operators", ""),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(sensor_only.stdout.splitlines()[-1])["loaded"])
    # The resource-status sensor alone: the wait engine, not the hook, the call plan or HTTP.
    for module in ("airflow_provider_dataqc.hooks.dataqc", "airflow_provider_dataqc.core.calls", "requests", "aiohttp"):
        assert module not in loaded, f"{module} loaded by importing the sensor module"
    # Neither module loads the quality-job code until its classes are asked for, and then
    # both names are the quality modules' own classes.
    for module in ("airflow_provider_dataqc.core.jobs", "airflow_provider_dataqc.sensors.quality"):
        assert module not in probe["loaded"], f"{module} loaded by importing the round-trip modules"
    assert probe["same"] == [True, True]
