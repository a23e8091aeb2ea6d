"""Bad input: odd resource IDs are percent-encoded into their own path, bad IDs and connection
mistakes are refused naming the field before any request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_dataqc.hooks.dataqc import DataQCApiError, DataQCHook
from airflow_provider_dataqc.testing.emulator import Emulator
from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

from .support import MODES, PROJECT, STATUS_PREFIX, fetch_status, run_trigger

ODD_RESOURCE_IDS = [
    "a/b",
    "../../export",
    "success-1/../../import",
    "a?b=c&d",
    "a#frag",
    "100%",
    "%2e%2e",
    "%2Fstatus%2F",
    "with space",
    "ünïcødé-ид",
    "...",
    "x" * 256,
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("auth", ["token", "aksk"])
def test_opaque_resource_ids_are_percent_encoded_into_the_status_path(
    fresh_emulator: Emulator, use_connection: Any, mode: str, auth: str
) -> None:
    use_connection(fresh_emulator, auth, max_retries=0)
    for rid in ODD_RESOURCE_IDS:
        with pytest.raises(DataQCApiError) as caught:
            fetch_status(mode, rid)
        assert caught.value.status_code == 404 and caught.value.error_code == "DQC.1016", str(caught.value)
        seen = fresh_emulator.requests[-1]
        assert (seen.operation, seen.resource_id, seen.method) == ("status", rid, "GET"), seen
        assert seen.path.startswith(STATUS_PREFIX) and "/" not in seen.path[len(STATUS_PREFIX) :]
        assert seen.query == [] and "#" not in seen.path
    assert fresh_emulator.count() == len(ODD_RESOURCE_IDS)
    assert fresh_emulator.count("unknown") == 0


def test_odd_ids_reach_only_their_own_download_and_import(
    fresh_emulator: Emulator, use_connection: Any, tmp_path: Path
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    hook = DataQCHook()
    for rid in ("a/b", "a&resource_id=other", "x?y#z", "100%"):
        with pytest.raises(DataQCApiError, match="HTTP 404"):
            hook.download_resource_file(rid, tmp_path / "out.zip")
        seen = fresh_emulator.requests[-1]
        assert (seen.operation, seen.resource_id, seen.query) == ("download", rid, [("resource_id", rid)])
        with pytest.raises(DataQCApiError, match="HTTP 404"):
            hook.import_resources(rid, "rule-template")
        seen = fresh_emulator.requests[-1]
        assert (seen.operation, seen.resource_id) == ("import", rid)
    assert not (tmp_path / "out.zip").exists()


BAD_RESOURCE_IDS: list[tuple[Any, str]] = [
    ("", "required"),
    ("   ", "required"),
    (None, "required"),
    (".", "path steps"),
    ("..", "path steps"),
    (" .. ", "path steps"),
    ("a\x00b", "control characters"),
    ("a\nb", "control characters"),
    ("tab\there", "control characters"),
    ("\x7f", "control characters"),
    ("x" * 257, "at most 256"),
    ("x" * 10_000, "at most 256"),
]


@pytest.mark.parametrize("mode", MODES)
def test_bad_resource_ids_are_refused_before_any_request(
    fresh_emulator: Emulator, use_connection: Any, mode: str, tmp_path: Path
) -> None:
    use_connection(fresh_emulator)
    for rid, why in BAD_RESOURCE_IDS:
        with pytest.raises(DataQCApiError, match="resource_id") as caught:
            fetch_status(mode, rid)
        assert why in str(caught.value) and len(str(caught.value)) < 300
        if mode == "sync":
            with pytest.raises(DataQCApiError, match="resource_id"):
                DataQCHook().download_resource_file(rid, tmp_path / "x.zip")
            with pytest.raises(DataQCApiError, match="resource_id"):
                DataQCHook().import_resources(rid, "rule-template")
    assert fresh_emulator.count() == 0


BAD_IDS = ["ws/x", "..", ".", "a b", "a?b", "a#b", "a%2Fb", "bell\x07", "new\nline", "x" * 129, "x" * 10_000, "-lead"]


@pytest.mark.parametrize("mode", MODES)
def test_bad_workspace_and_project_ids_are_refused_before_any_request(
    fresh_emulator: Emulator, use_connection: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    use_connection(fresh_emulator)
    for bad in BAD_IDS:
        with pytest.raises(DataQCApiError, match="workspace") as caught:
            fetch_status(mode, "success-1", workspace=bad)
        assert "not a valid ID" in str(caught.value) and len(str(caught.value)) < 300
        assert "\x07" not in str(caught.value) and "\n" not in str(caught.value)
    for name in ("workspace", "project_id"):
        for bad in BAD_IDS:
            use_connection(fresh_emulator, **{name: bad})
            with pytest.raises(DataQCApiError, match=f"{name} \\(extra\\)") as caught:
                fetch_status(mode, "success-1")
            assert "is not usable" in str(caught.value)
    assert fresh_emulator.count() == 0


CONNECTION_MISTAKES: list[tuple[dict[str, Any], str]] = [
    ({"extra": {"auth_type": "kerberos"}}, "auth_type 'kerberos' is not supported"),
    ({"extra": {"project_id": None}}, "project_id (extra) is required"),
    ({"extra": {"project_id": "   "}}, "project_id (extra) is required"),
    ({"host": "https://dayu.example.com/v2/x"}, "must not have a path"),
    ({"host": "https://dayu.example.com?x=1"}, "must not have a path, query or fragment"),
    ({"host": "dayu.example.com/v2"}, "has no scheme"),
    ({"host": "ftp://dayu.example.com"}, "must use https://"),
    ({"host": "https://user:pw@dayu.example.com"}, "must not carry user info"),
    ({"host": "https://dayu.example.com:99999"}, "invalid port"),
    ({"host": "https://dayu example.com"}, "spaces or control characters"),
    ({"host": "http://dayu.example.com"}, "plain http to a non-loopback host"),
    ({"host": None, "extra": {"region": None}}, "needs an endpoint (host) or extra region"),
    ({"extra": {"region": "Not A Region!"}}, "extra region"),
    ({"extra": {"auth_type": "password", "iam_endpoint": "http://iam.example.com"}}, "extra iam_endpoint"),
    ({"extra": {"auth_type": "password"}, "login": None}, "login (IAM user name)"),
    ({"extra": {"auth_type": "aksk"}, "login": None}, "login (Access Key)"),
    ({"password": None}, "needs the IAM token in the password field"),
    ({"extra": {"max_retries": "many"}}, "extra max_retries must be a number"),
    ({"extra": {"max_retries": 1000}}, "extra max_retries must be between 0 and 20"),
    ({"extra": {"timeout": 0}}, "extra timeout must be between"),
    ({"extra": {"retry_timeout": "nan"}}, "extra retry_timeout must be between"),
    ({"extra": {"allow_insecure_http": "maybe"}}, "allow_insecure_http must be true or false"),
    ({"extra": {"verify": "/etc/ca\x00.pem"}}, "extra verify"),
]


@pytest.mark.parametrize("mode", ["sync", "async", "trigger"])
def test_connection_mistakes_are_refused_naming_the_field_before_any_request(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    for change, why in CONNECTION_MISTAKES:
        conn: dict[str, Any] = {
            "conn_type": "dataqc",
            "host": fresh_emulator.url,
            "login": "someone",
            "password": "secret-value-1",
            "extra": {"project_id": PROJECT, "workspace": "ws-dev", "domain_name": "d"},
        }
        conn.update({k: v for k, v in change.items() if k != "extra"})
        conn["extra"].update(change.get("extra", {}))
        monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", json.dumps(conn))
        if mode == "trigger":
            event = run_trigger(DataQCResourceStatusTrigger("success-1", poll_interval=0.01))
            assert event["status"] == "error", change
            message = event["message"]
        else:
            with pytest.raises(DataQCApiError) as caught:
                fetch_status(mode, "success-1")
            message = str(caught.value)
        assert why in message and "dataqc_default" in message, (why, message)
        assert "secret-value-1" not in message
    assert fresh_emulator.count() == 0
