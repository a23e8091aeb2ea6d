"""Connection settings and request building: bad input is refused before any request."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest

from airflow_provider_dataqc.core import api
from airflow_provider_dataqc.core.settings import (
    AuthType,
    ConnectionSettings,
    InvalidSettingError,
    encode_path_id,
)

PROJECT = "0123456789abcdef0123456789abcdef"


def settings(**overrides: Any) -> ConnectionSettings:
    fields: dict[str, Any] = {
        "host": "https://dayu.cn-north-4.myhuaweicloud.com",
        "login": None,
        "password": "tok",
        "port": None,
        "schema": None,
        "extra": {"project_id": PROJECT, "workspace": "ws-1"},
    }
    extra = overrides.pop("extra", {})
    fields.update(overrides)
    fields["extra"] = {**fields["extra"], **extra}
    return ConnectionSettings.from_connection(**fields)


def test_defaults() -> None:
    s = settings()
    assert s.endpoint == "https://dayu.cn-north-4.myhuaweicloud.com"
    assert s.auth_type is AuthType.TOKEN and s.verify is True
    assert (s.connect_timeout, s.read_timeout, s.retry.max_retries) == (10.0, 30.0, 3)


@pytest.mark.parametrize(
    ("host", "port", "extra", "endpoint"),
    [
        (None, None, {"region": "eu-west-101"}, "https://dayu.eu-west-101.myhuaweicloud.com"),
        ("dayu.cn-north-4.myhuaweicloud.com", None, {}, "https://dayu.cn-north-4.myhuaweicloud.com"),
        ("dayu.example.eu", 8443, {}, "https://dayu.example.eu:8443"),
        ("127.0.0.1", 9000, {"scheme": "http"}, "http://127.0.0.1:9000"),
        ("http://localhost:9000/", None, {}, "http://localhost:9000"),
        ("https://DAYU.example.com", None, {}, "https://dayu.example.com"),
    ],
)
def test_endpoint_forms(host: str | None, port: int | None, extra: dict[str, Any], endpoint: str) -> None:
    assert settings(host=host, port=port, extra=extra).endpoint == endpoint


@pytest.mark.parametrize(
    ("host", "extra", "message"),
    [
        (None, {}, "needs an endpoint"),
        ("dayu.example.com/v2", {}, "no scheme"),
        ("https://dayu.example.com/v2/abc", {}, "must not have a path"),
        ("https://dayu.example.com?x=1", {}, "must not have a path"),
        ("ftp://dayu.example.com", {}, "https://"),
        ("https://user:pw@dayu.example.com", {}, "user info"),
        ("http://dayu.example.com", {}, "clear text"),
        ("https://dayu example.com", {}, "spaces"),
        ("https://dayu.example.com", {"auth_type": "kerberos"}, "auth_type 'kerberos'"),
        ("https://dayu.example.com", {"project_id": ""}, "project_id"),
        ("https://dayu.example.com", {"project_id": "../other"}, "project_id"),
        ("https://dayu.example.com", {"project_id": "a" * 200}, "project_id"),
        ("https://dayu.example.com", {"workspace": "ws/../x"}, "workspace"),
        ("https://dayu.example.com", {"workspace": "ws\n1"}, "workspace"),
        ("https://dayu.example.com", {"region": "cn north"}, "region"),
        ("https://dayu.example.com", {"timeout": "soon"}, "timeout"),
        ("https://dayu.example.com", {"max_retries": 1000}, "max_retries"),
        ("https://dayu.example.com", {"verify": "maybe"}, None),
    ],
)
def test_bad_connection_fields_are_named(host: str | None, extra: dict[str, Any], message: str | None) -> None:
    if message is None:  # a string that is not a boolean is a CA bundle path
        assert settings(host=host, extra=extra).verify == "maybe"
        return
    with pytest.raises(InvalidSettingError, match=message):
        settings(host=host, extra=extra)


def test_plain_http_needs_an_explicit_opt_in() -> None:
    s = settings(host="http://dayu.internal.example", extra={"allow_insecure_http": "true"})
    assert s.endpoint == "http://dayu.internal.example"


@pytest.mark.parametrize(
    ("auth_type", "login", "password", "extra", "message"),
    [
        ("token", None, None, {}, "IAM token in the password"),
        ("password", "user", None, {"domain_name": "acct"}, "password"),
        ("password", "user", "pw", {}, "domain_name"),
        ("aksk", None, "sk", {}, "Access Key"),
        ("aksk", "ak", None, {}, "Secret Key"),
    ],
)
def test_missing_credentials_are_named(
    auth_type: str, login: str | None, password: str | None, extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidSettingError, match=message):
        settings(login=login, password=password, extra={"auth_type": auth_type, **extra})


def test_password_auth_iam_endpoint_defaults_from_region() -> None:
    s = settings(login="u", password="p", extra={"auth_type": "password", "domain_name": "d", "region": "cn-north-4"})
    assert s.iam_endpoint == "https://iam.cn-north-4.myhuaweicloud.com"


def test_repr_hides_secrets() -> None:
    s = settings(login="AK", password="very-secret-sk", extra={"auth_type": "aksk", "security_token": "st-secret"})
    assert "very-secret-sk" not in repr(s) and "st-secret" not in repr(s)
    assert set(s.secrets()) == {"very-secret-sk", "st-secret"}


@pytest.mark.parametrize(
    "resource_id",
    ["abc", "a/b", "../../admin", "x?y=1", "x#frag", "100%", "with space", "ünïcode", "a;b=c", "..%2f..", "~tilde"],
)
def test_opaque_ids_stay_one_path_segment(resource_id: str) -> None:
    request = api.status_request(PROJECT, "ws", resource_id)
    prefix = f"/v2/{PROJECT}/quality/resource/status/"
    assert request.path.startswith(prefix)
    segment = request.path[len(prefix) :]
    assert "/" not in segment and "?" not in segment and "#" not in segment and " " not in segment
    assert unquote(segment) == resource_id


@pytest.mark.parametrize(
    ("resource_id", "message"),
    [
        ("", "required"),
        ("   ", "required"),
        (None, "required"),
        (".", "path steps"),
        ("..", "path steps"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("x" * 10_000, "10000 characters"),
    ],
)
def test_bad_resource_ids_are_refused(resource_id: Any, message: str) -> None:
    with pytest.raises(InvalidSettingError, match=message):
        encode_path_id(resource_id, "resource_id")


def test_export_validation_lists_allowed_values() -> None:
    with pytest.raises(InvalidSettingError, match="rule-template, quality-task, consistency-task, report"):
        api.export_request(PROJECT, "ws", "rules", resources=[1])
    with pytest.raises(InvalidSettingError, match="select_all"):
        api.export_request(PROJECT, "ws", "quality-task")
    with pytest.raises(InvalidSettingError, match="integer IDs"):
        api.export_request(PROJECT, "ws", "quality-task", resources=["abc"])
    with pytest.raises(InvalidSettingError, match="report"):
        api.export_request(PROJECT, "ws", "quality-task", resources=[1], export_mode="obs")
    request = api.export_request(
        PROJECT, "ws", "REPORT", select_all=True, export_mode="obs", obs_service_type="business"
    )
    assert request.method == "POST" and not request.idempotent
    assert b'"type":"report"' in (request.body or b"") and b'"obs_service_type":"business"' in (request.body or b"")


def test_import_mappings_in_both_forms() -> None:
    request = api.import_request(
        PROJECT,
        "ws",
        "r-1",
        "quality-task",
        strategy="override",
        directories={"/dev": "/prod"},
        topics=[{"old_value": "a", "new_value": "b"}],
    )
    body = request.body or b""
    assert b'"strategy":"OVERRIDE"' in body
    assert b'{"old_value":"/dev","new_value":"/prod","mapping_value":""}' in body
    assert b'{"old_value":"a","new_value":"b","mapping_value":""}' in body
    with pytest.raises(InvalidSettingError, match="SKIP, OVERRIDE, TERMINATION"):
        api.import_request(PROJECT, "ws", "r-1", "quality-task", strategy="MERGE")
    with pytest.raises(InvalidSettingError, match="rule-template, quality-task, consistency-task"):
        api.import_request(PROJECT, "ws", "r-1", "report")
    with pytest.raises(InvalidSettingError, match="old_value"):
        api.import_request(PROJECT, "ws", "r-1", "quality-task", topics=[{"new": "x"}])


def test_download_query_is_encoded() -> None:
    request = api.download_request(PROJECT, "ws", "a&b=c", obs_type="technology")
    assert request.query == (("resource_id", "a&b=c"), ("obs_type", "technology")) and request.stream
    with pytest.raises(InvalidSettingError, match="technology, business"):
        api.download_request(PROJECT, "ws", "r", obs_type="cloud")


def test_iam_request_repr_does_not_show_the_password() -> None:
    request = api.iam_token_request(user="u", password="hunter2-secret", domain="d", project_id=PROJECT)
    assert "hunter2-secret" not in repr(request)


def settings_for(host: str | None = "https://dayu.example.com", **extra: Any) -> ConnectionSettings:
    return ConnectionSettings.from_connection(
        host=host,
        login=None,
        password="t",
        port=None,
        schema=None,
        extra={"project_id": PROJECT, **extra},
    )


def test_endpoints_are_normalised_to_scheme_host_and_port() -> None:
    assert settings_for("dayu.cn-north-4.myhuaweicloud.com").endpoint == "https://dayu.cn-north-4.myhuaweicloud.com"
    assert settings_for("https://dayu.example.com/").endpoint == "https://dayu.example.com"
    assert settings_for("HTTPS://dayu.example.com:8443").endpoint == "https://dayu.example.com:8443"
    assert settings_for(None, region="cn-north-4").endpoint == "https://dayu.cn-north-4.myhuaweicloud.com"
    for loopback in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "http://127.8.9.10"):
        assert settings_for(loopback).endpoint.startswith("http://")
    assert settings_for("http://dayu.example.com", allow_insecure_http=True).endpoint == "http://dayu.example.com"
    with pytest.raises(InvalidSettingError, match="allow_insecure_http"):
        settings_for("http://10.0.0.1")


def test_tls_verification_is_on_unless_turned_off_explicitly() -> None:
    for value in (None, "", "  ", True, "true", "1", "yes", "on"):
        assert settings_for(**({"verify": value} if value is not None else {})).verify is True, value
    for value in (False, "false", "False", "0", "no", "off", 0):
        assert settings_for(verify=value).verify is False, value
    assert settings_for(verify=" /etc/ssl/ca.pem ").verify == "/etc/ssl/ca.pem"
