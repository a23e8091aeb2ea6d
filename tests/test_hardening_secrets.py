"""Secrets never reach an error or a log in any form, however the connection is mistyped.

A secret is searched for raw and in every form a transformation could give it: JSON-escaped,
``repr``-escaped, URL-encoded, HTML-escaped, white space collapsed, and each of its pieces
between control characters.
"""

from __future__ import annotations

import contextlib
import html
import json
import pickle
import re
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from conftest import connection_json
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_provider_dataqc.core.settings import AuthType, ConnectionSettings, InvalidSettingError
from airflow_provider_dataqc.hooks.dataqc import DataQCApiError, DataQCHook
from airflow_provider_dataqc.testing.emulator import DEFAULT_PROJECT_ID, Emulator
from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

DAG_FILE = Path(__file__).parent / "dags" / "dataqc_auth_modes.py"


def secret_forms(secret: str) -> set[str]:
    """``secret`` and what escaping, encoding or tidying could turn it into, one inside another
    (an echoed JSON request body, URL-encoded or HTML-escaped as a whole)."""
    inner = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1]}
    outer = (lambda t: t, lambda t: quote(t, safe=""), quote, quote_plus, html.escape)
    forms = {encode(form) for form in inner for encode in outer}
    forms |= {" ".join(form.split()) for form in list(forms)}
    forms |= {re.sub(r"[\x00-\x1f\x7f]", "", form) for form in list(forms)}
    forms |= {form.replace("\\", "\\\\") for form in list(forms)}  # escaped once more (repr of a JSON text)
    pieces = {piece for piece in re.split(r"[\s\x00-\x1f\x7f]+", secret) if len(piece) >= 6}
    return {form for form in forms | pieces if len(form) >= 4}


def assert_no_secret_form(text: str, secret: str, where: str) -> None:
    for form in sorted(secret_forms(secret)):
        assert form not in text, f"the secret appears in {where} as {form[:5]!r}…"


def exception_texts(err: BaseException) -> str:
    return "\n".join(
        [
            str(err),
            repr(err),
            repr(vars(err)),
            "".join(traceback.format_exception(err)),
            str(pickle.loads(pickle.dumps(err))),
        ]
    )


def from_fields(**fields: Any) -> ConnectionSettings:
    defaults: dict[str, Any] = {
        "host": "https://dayu.example.com",
        "login": None,
        "password": "tok-good-0123456789",
        "port": None,
        "schema": None,
        "extra": {"project_id": DEFAULT_PROJECT_ID},
    }
    defaults.update(fields)
    return ConnectionSettings.from_connection(**defaults)


# ------------------------------------------------------------------------------- control characters
CONTROL_SECRETS = [
    "tok-0123456789abcdef\r\nX-Injected: yes",
    "tok-0123456789abcdef\n",
    "\ttok-0123456789abcdef",
    "tok-01234567\x00-89abcdef",
    "tok-01234567\x1b[2K-89abcdef",
    "tok-01234567\x7f89abcdef",
]


@pytest.mark.parametrize("secret", CONTROL_SECRETS, ids=range(len(CONTROL_SECRETS)))
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({}, "password"),
        ({"login": "AK0123456789", "extra": {"project_id": DEFAULT_PROJECT_ID, "auth_type": "aksk"}}, "Secret Key"),
        (
            {
                "login": "dq-user",
                "extra": {"project_id": DEFAULT_PROJECT_ID, "auth_type": "password", "domain_name": "d"},
            },
            "password",
        ),
    ],
    ids=["token", "aksk", "password"],
)
def test_a_secret_with_control_characters_is_refused_naming_the_field_not_the_value(
    secret: str, fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidSettingError, match=named) as caught:
        from_fields(**fields, password=secret)
    assert "control character" in str(caught.value)
    assert_no_secret_form(exception_texts(caught.value), secret, "the error")


@pytest.mark.parametrize("secret", CONTROL_SECRETS, ids=range(len(CONTROL_SECRETS)))
def test_a_security_token_or_access_key_with_control_characters_is_refused(secret: str) -> None:
    aksk = {"project_id": DEFAULT_PROJECT_ID, "auth_type": "aksk"}
    if secret.strip() != secret:  # surrounding white space is trimmed from these two, as before
        assert from_fields(login=secret, extra=aksk).login == secret.strip()
        trimmed = from_fields(login="AK0123456789", extra={**aksk, "security_token": secret})
        assert trimmed.security_token == secret.strip()
        return
    with pytest.raises(InvalidSettingError, match="security_token") as caught:
        from_fields(login="AK0123456789", extra={**aksk, "security_token": secret})
    assert_no_secret_form(exception_texts(caught.value), secret, "the error")
    with pytest.raises(InvalidSettingError, match="login") as caught:
        from_fields(login=secret, extra=aksk)
    assert_no_secret_form(exception_texts(caught.value), secret, "the error")


def test_header_secrets_with_white_space_are_refused_and_passwords_may_have_spaces() -> None:
    # requests refuses a header value with leading white space by quoting the value.
    for token in (" tok-0123456789abcdef", "tok-0123456789abcdef ", "tok-0123 456789abcdef"):
        with pytest.raises(InvalidSettingError, match="password") as caught:
            from_fields(password=token)
        assert_no_secret_form(exception_texts(caught.value), token, "the error")
    aksk = {"project_id": DEFAULT_PROJECT_ID, "auth_type": "aksk"}
    with pytest.raises(InvalidSettingError, match="security_token"):
        from_fields(login="AK0123456789", extra={**aksk, "security_token": "sts-0123 456789"})
    trimmed = from_fields(login="AK0123456789", extra={**aksk, "security_token": " sts-0123456789 "})
    assert trimmed.security_token == "sts-0123456789"  # trimmed, as before
    extra = {"project_id": DEFAULT_PROJECT_ID, "auth_type": "password", "domain_name": "d"}
    assert from_fields(login="u", password="  two  spaces ", extra=extra).secret == "  two  spaces "


def test_a_token_with_a_line_break_is_refused_before_any_request_and_never_logged(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, task_logs: Any
) -> None:
    emu = fresh_emulator
    secret = "tok-5ecret-7a1e\r\nX-Injected: yes"
    conn = json.loads(connection_json(emu, "token"))
    conn["password"] = secret
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", json.dumps(conn))
    with pytest.raises(DataQCApiError) as caught:
        DataQCHook().get_resource_status("success-0")
    assert "password" in str(caught.value) and "control character" in str(caught.value)
    ok, message = DataQCHook().test_connection()
    assert not ok and "password" in message
    texts = exception_texts(caught.value) + message + task_logs.text()
    assert_no_secret_form(texts, secret, "the hook's errors or logs")
    assert emu.count() == 0  # refused when the connection was read: nothing was sent


async def test_the_trigger_refuses_a_secret_key_with_a_line_break_naming_the_field(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, task_logs: Any
) -> None:
    emu = fresh_emulator
    secret = "SK0123456789abcdef\nX-Injected: yes"
    conn = json.loads(connection_json(emu, "aksk"))
    conn["password"] = secret
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", json.dumps(conn))
    events = [event.payload async for event in DataQCResourceStatusTrigger("success-0", poll_interval=0.01).run()]
    assert [e["status"] for e in events] == ["error"] and "Secret Key" in events[0]["message"]
    assert_no_secret_form(json.dumps(events) + task_logs.text(), secret, "the trigger's event or logs")
    assert emu.count() == 0


# ------------------------------------------------------------------------------- endpoints
SECRET = "S3cr3t-pw-9f2c"
USER_INFO_ENDPOINTS = [
    f"https://user:{SECRET}@dayu.example.com",
    f"https://:{SECRET}@dayu.example.com",
    f"https://{SECRET}@dayu.example.com",
    f"https://user:{SECRET} x@dayu.example.com",  # space: the first check
    f"https://user:{SECRET}@dayu.example.com\n",  # control character
    f"ftp://user:{SECRET}@dayu.example.com",  # another scheme
    f"https://user:{SECRET}@dayu.example.com:port",  # a bad port
    f"https://user:{SECRET}@",  # no host
    f"https://user:{SECRET}@:443",
    f"user:{SECRET}@dayu.example.com/v2",  # no scheme, with a path
    f"user:{SECRET}@dayu.example.com",
    f"http://user:{SECRET}@dayu.example.com",  # plain http
    f"https://user:{SECRET}@dayu.example.com/v2?x=1",
    f"https://user%3A{SECRET}@dayu.example.com",
]


def _endpoint_fields(where: str, value: str) -> dict[str, Any]:
    extra: dict[str, Any] = {"project_id": DEFAULT_PROJECT_ID}
    if where == "host":
        return {"host": value, "extra": extra}
    if where == "extra endpoint":
        return {"host": None, "extra": {**extra, "endpoint": value}}
    if where == "iam_endpoint":
        extra.update(auth_type="password", domain_name="d", iam_endpoint=value)
        return {"login": "u", "password": "pw-0123456789", "extra": extra}
    return {"host": None, "extra": {**extra, "region": value}}


@pytest.mark.parametrize("value", USER_INFO_ENDPOINTS, ids=range(len(USER_INFO_ENDPOINTS)))
@pytest.mark.parametrize("where", ["host", "extra endpoint", "iam_endpoint", "region"])
def test_an_endpoint_with_user_info_never_quotes_it(where: str, value: str) -> None:
    with pytest.raises(InvalidSettingError) as caught:
        from_fields(**_endpoint_fields(where, value))
    text = exception_texts(caught.value)
    assert_no_secret_form(text, SECRET, f"the error for {where}")
    assert ("region" if where == "region" else "endpoint") in str(caught.value)
    if where != "region" and "@" in value.split("://", 1)[-1].split("/", 1)[0]:
        assert "user info" in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        f"https://dayu.example.com/?access_token={SECRET}",
        f"https://dayu.example.com?token={SECRET} x",
        f"https://dayu.example.com/{SECRET}\n",
        f"dayu.example.com/{SECRET}",
        f"ftp://dayu.example.com/{SECRET}",
        f"https://dayu.example.com:{SECRET}",
        f"http://dayu.example.com/{SECRET}",
        f"https://dayu.example.com#{SECRET}",
    ],
)
def test_endpoint_errors_quote_at_most_the_host(value: str) -> None:
    with pytest.raises(InvalidSettingError, match="endpoint") as caught:
        from_fields(host=value)
    assert_no_secret_form(exception_texts(caught.value), SECRET, "the error")


def test_endpoint_errors_still_say_what_is_wrong() -> None:
    cases = {
        "ftp://dayu.example.com": "https://",
        "https://dayu.example.com:99999": "dayu.example.com",
        "http://dayu.example.com": "http://dayu.example.com",
        "dayu.example.com/v2": "dayu.example.com",
        "https://dayu.example.com/v2": "https://dayu.example.com",
    }
    for value, shown in cases.items():
        with pytest.raises(InvalidSettingError) as caught:
            from_fields(host=value)
        assert shown in str(caught.value), (value, str(caught.value))


def test_a_hook_with_user_info_in_its_host_leaks_it_nowhere(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, task_logs: Any
) -> None:
    emu = fresh_emulator
    conn = json.loads(connection_json(emu, "token"))
    conn["host"] = emu.url.replace("http://", f"ftp://user:{SECRET}@")
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", json.dumps(conn))
    with pytest.raises(DataQCApiError) as caught:
        DataQCHook().get_resource_status("success-0")
    ok, message = DataQCHook().test_connection()
    assert not ok and "user info" in str(caught.value) and "user info" in message
    assert_no_secret_form(exception_texts(caught.value) + message + task_logs.text(), SECRET, "errors or logs")
    assert emu.count() == 0


# ------------------------------------------------------------------------------- the log masker
#: What Airflow logs once per process when a value shorter than its minimum is handed to the
#: masker. Airflow 3 hands it every value of a connection's extra when it looks the connection
#: up (``Connection.extra_dejson``), and checks the length before it checks the key's name.
SHORT_SECRET_WARNING = "too short"


def _form_auth_types() -> dict[AuthType, str]:
    """The value the connection form stores for each auth type."""
    from airflow_provider_dataqc.get_provider_info import CONN_FIELDS

    offered = [value for value in CONN_FIELDS["auth_type"]["schema"]["enum"] if value is not None]
    return {from_fields(**_auth_fields(value)).auth_type: value for value in offered}


def _auth_fields(auth_type: str) -> dict[str, Any]:
    return {"login": "u", "extra": {"project_id": DEFAULT_PROJECT_ID, "auth_type": auth_type, "domain_name": "d"}}


def form_aksk_connection(emu: Emulator, **extra: Any) -> str:
    """An AK/SK connection to ``emu`` whose ``auth_type`` is what the form stores."""
    conn = json.loads(connection_json(emu, "aksk", **extra))
    conn["extra"]["auth_type"] = _form_auth_types()[AuthType.AKSK]
    return json.dumps(conn)


def _masker_classes() -> list[Any]:
    import importlib

    found = []
    for name in (
        "airflow.sdk._shared.secrets_masker.secrets_masker",
        "airflow._shared.secrets_masker.secrets_masker",
        "airflow.utils.log.secrets_masker",
    ):
        with contextlib.suppress(ImportError):  # not every Airflow version has each
            found.append(importlib.import_module(name).SecretsMasker)
    return found


@pytest.fixture
def masker_warns_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow warns about a short secret once per process: let this test see it again."""
    for cls in _masker_classes():
        if hasattr(cls, "_has_warned_short_secret"):
            monkeypatch.setattr(cls, "_has_warned_short_secret", False)


def test_the_form_offers_every_auth_type_in_a_spelling_the_masker_does_not_warn_about() -> None:
    offered = _form_auth_types()
    assert set(offered) == set(AuthType)
    assert all(len(value) >= 5 for value in offered.values()), offered
    assert offered[AuthType.AKSK] == "ak_sk"
    assert from_fields(**_auth_fields("aksk")).auth_type is AuthType.AKSK  # the short spelling still works


def test_an_aksk_task_logs_no_short_secret_warning_and_masks_the_real_secrets(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, run_dag: Any, task_logs: Any, masker_warns_again: None
) -> None:
    from airflow.providers.common.compat.sdk import redact

    from airflow_provider_dataqc.testing.emulator import DEFAULT_AKSK

    emu = fresh_emulator
    sts = "STS-hardening-token-5d1c0e"
    monkeypatch.setenv(
        "AIRFLOW_CONN_DATAQC_AUTH_AKSK", form_aksk_connection(emu, security_token=sts, region="cn-north-4")
    )
    state, tasks = run_dag("dataqc_auth_aksk", files=(DAG_FILE,), conf={"resource_id": "success-1"})
    assert state == "success" and tasks == {"wait": "success"}
    text = task_logs.text()
    assert "DataArts Quality task succeeded" in text  # the task's log was read
    assert SHORT_SECRET_WARNING not in text
    assert redact(DEFAULT_AKSK[1]) == "***" and redact(sts) == "***"


async def test_an_aksk_trigger_logs_no_short_secret_warning(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, task_logs: Any, masker_warns_again: None
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", form_aksk_connection(emulator))
    events = [event.payload async for event in DataQCResourceStatusTrigger("success-0", poll_interval=0.01).run()]
    assert [e["status"] for e in events] == ["success"]
    assert SHORT_SECRET_WARNING not in task_logs.text()


# ------------------------------------------------------------------------------- IAM echoes
#: A password that every quoting changes: a double quote, backslashes, two spaces in a row,
#: characters that URL encoding, HTML escaping and JSON's ASCII escaping all rewrite.
ECHOED_PASSWORD = 'Qz7"k\\\\Wm  9&v%+é<>Lp'


def _echo(shape: str, padding: int) -> Any:
    def handler(request: Request) -> Response:
        body = request.get_data(as_text=True)
        password = json.loads(body)["auth"]["identity"]["password"]["user"]["password"]
        pad = "x" * padding
        if shape == "html":
            return Response(f"<html><body>{pad}Bad request: {body}</body></html>", status=400)
        if shape == "json-message":
            message = f"{pad}invalid body {body}"
            return Response(json.dumps({"error": {"code": "400", "message": message}}), status=400)
        if shape == "decoded":
            message = f"{pad}the password {password} is not valid"
            return Response(json.dumps({"error_code": "IAM.0001", "error_msg": message}), status=401)
        if shape == "url":  # the whole body: the excerpt's cut falls inside the password
            return Response(f"{pad}rejected: {quote_plus(body)}", status=400)
        fragment = json.dumps({"password": password})
        if shape == "url-fragment":
            return Response(f"{pad}rejected: {quote_plus(fragment)}", status=400)
        return Response(f"<p>{pad}rejected: {html.escape(fragment)}</p>", status=400)  # html-escaped

    return handler


def echo_connection(httpserver: HTTPServer) -> str:
    """A password connection whose IAM endpoint (and service) is ``httpserver``."""
    url = httpserver.url_for("/").rstrip("/")
    extra = {"auth_type": "password", "project_id": DEFAULT_PROJECT_ID, "workspace": "ws-dev"}
    extra.update(domain_name="dq-domain", iam_endpoint=url)
    conn = {"conn_type": "dataqc", "host": url, "login": "dq-user", "password": ECHOED_PASSWORD, "extra": extra}
    return json.dumps(conn)


def _chunks(secret: str, size: int = 6) -> set[str]:
    """Every run of ``size`` characters of every form of ``secret`` (a cut excerpt keeps a part)
    that holds at least two of its letters or digits (``&quot;`` alone is any JSON's)."""
    own = {char for char in secret if char.isalnum()}
    runs = {form[i : i + size] for form in secret_forms(secret) for i in range(len(form) - size + 1)}
    return {run for run in runs if len(own.intersection(run)) >= 2}


#: How an IAM answer echoes the request, and the text before it: 80 characters make the
#: 200-character excerpt of the HTML echo end inside the password.
ECHOES = [
    ("html", 0),
    ("html", 80),
    ("json-message", 0),
    ("decoded", 0),
    ("url", 0),
    ("url-fragment", 0),
    ("html-escaped", 0),
]


@pytest.mark.parametrize(("shape", "padding"), ECHOES, ids=[f"{shape}-{pad}" for shape, pad in ECHOES])
def test_an_iam_answer_echoing_the_password_in_any_form_never_shows_it(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, task_logs: Any, shape: str, padding: int
) -> None:
    httpserver.expect_request("/v3/auth/tokens", method="POST").respond_with_handler(_echo(shape, padding))
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", echo_connection(httpserver))
    with pytest.raises(DataQCApiError) as caught:
        DataQCHook().get_resource_status("success-0")
    text = exception_texts(caught.value)
    assert "IAM" in str(caught.value) and caught.value.status_code in (400, 401)
    assert "***" in text  # the echo was there (whole, or cut inside the password), and was scrubbed
    leaked = sorted(chunk for chunk in _chunks(ECHOED_PASSWORD) if chunk in text + task_logs.text())
    assert not leaked, f"parts of the password survive in the error: {leaked[:3]}"


def test_the_trigger_event_of_a_refused_login_holds_no_echoed_password(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/v3/auth/tokens", method="POST").respond_with_handler(_echo("html", 0))
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", echo_connection(httpserver))

    async def run() -> list[Any]:
        return [event.payload async for event in DataQCResourceStatusTrigger("r-1", poll_interval=0.01).run()]

    import asyncio

    events = asyncio.run(run())
    assert [e["status"] for e in events] == ["error"] and "***" in events[0]["message"]
    stored = json.dumps(events)  # what the triggerer writes to the database
    assert not [
        chunk for chunk in _chunks(ECHOED_PASSWORD) if chunk in stored or chunk in json.loads(stored)[0]["message"]
    ]


# ------------------------------------------------------------------------------- connection tests
def test_a_connection_test_names_the_field_not_the_temporary_connection_id(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.connection import Connection

    conn = json.loads(connection_json(emulator, "token"))
    del conn["extra"]["project_id"]
    # What Airflow's API and UI do to test a form: a random ID, exported as an environment variable.
    temporary = Connection(conn_id="tkOTJxqO", conn_type="dataqc", host=conn["host"], password=conn["password"])
    temporary.set_extra(json.dumps(conn["extra"]))
    monkeypatch.setenv("AIRFLOW_CONN_TKOTJXQO", temporary.get_uri())
    ok, message = temporary.test_connection()
    assert not ok and "project_id (extra) is required" in message
    assert "tkOTJxqO" not in message and "connection is not usable" in message
    # At task time the connection is named: the log says which one to fix.
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_BROKEN", json.dumps(conn))
    with pytest.raises(DataQCApiError, match="connection 'dataqc_broken' is not usable: project_id"):
        DataQCHook("dataqc_broken").get_resource_status("success-0")
    # And a good form still tests through to the service.
    good = Connection(conn_id="Xy12AbCd", conn_type="dataqc", host=conn["host"], password=conn["password"])
    good.set_extra(json.dumps({**conn["extra"], "project_id": DEFAULT_PROJECT_ID}))
    monkeypatch.setenv("AIRFLOW_CONN_XY12ABCD", good.get_uri())
    ok, message = good.test_connection()
    assert ok and "Connection works" in message and "Xy12AbCd" not in message
