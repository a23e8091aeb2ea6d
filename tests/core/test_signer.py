"""Tests for airflow_provider_dataqc.core.signer, using huaweicloudsdkcore's signer as the oracle."""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer import signer as sdk_signer_module
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_dataqc.core.signer import (
    ALGORITHM,
    SDK_DATE_FORMAT,
    UNSIGNED_PAYLOAD,
    SignatureCheck,
    canonical_query,
    sign,
    verify,
)

AK = "AKEXAMPLE0000000000"
SK = "SKEXAMPLE0000000000000000000000000000000"
PROJECT = "0123456789abcdef0123456789abcdef"
HOST = "dayu.cn-north-4.myhuaweicloud.com"
NOW = datetime(2024, 1, 2, 3, 4, 5)
NON_ASCII_SIG = "\u00e9" * 64


# --------------------------------------------------------------------------------------------
# Oracle: the official SDK, with its clock pinned
# --------------------------------------------------------------------------------------------
def _pinned_clock(moment: datetime) -> type[datetime]:
    """A datetime subclass whose utcnow() is ``moment``; patched into the SDK's signer module."""

    class _Clock(datetime):
        @classmethod
        def utcnow(cls) -> datetime:  # type: ignore[override]
            return moment

    return _Clock


def sdk_sign(
    *,
    method: str,
    host: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes | None,
    ak: str,
    sk: str,
    project_id: str | None,
    token: str | None,
    moment: datetime,
) -> SdkRequest:
    """Sign with huaweicloudsdkcore exactly as its clients do (BasicCredentials.sign_request)."""
    request = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=path,
        query_params=list(query),
        header_params=dict(headers),
        body=body,
    )
    credentials = BasicCredentials(ak, sk, project_id)
    if token is not None:
        credentials.with_security_token(token)
    with mock.patch.object(sdk_signer_module, "datetime", _pinned_clock(moment)):
        credentials.sign_request(request)
    return request


# --------------------------------------------------------------------------------------------
# Known vector (reference doc)
# --------------------------------------------------------------------------------------------
def _vector_request() -> dict[str, Any]:
    return {
        "method": "GET",
        "host": HOST,
        "path": f"/v2/{PROJECT}/quality/resource/status/abc123",
        "query": [],
        "headers": {"workspace": "ws-1", "Content-Type": "application/json"},
        "body": None,
    }


def test_known_vector() -> None:
    added = sign(**_vector_request(), access_key=AK, secret_key=SK, project_id=PROJECT, now=NOW)
    assert added == {
        "X-Project-Id": PROJECT,
        "X-Sdk-Date": "20240102T030405Z",
        "Host": HOST,
        "Authorization": (
            "SDK-HMAC-SHA256 Access=AKEXAMPLE0000000000, "
            "SignedHeaders=content-type;host;workspace;x-project-id;x-sdk-date, "
            "Signature=ee4a35d732514256bb7debe58ffe7fa1afb710a602eebc81ed52272660e263b1"
        ),
    }


def test_known_vector_matches_sdk_and_aware_now() -> None:
    req = _vector_request()
    oracle = sdk_sign(
        method=req["method"],
        host=req["host"],
        path=req["path"],
        query=req["query"],
        headers=req["headers"],
        body=req["body"],
        ak=AK,
        sk=SK,
        project_id=PROJECT,
        token=None,
        moment=NOW,
    )
    aware = NOW.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=8)))
    added = sign(**req, access_key=AK, secret_key=SK, project_id=PROJECT, now=aware)
    assert added["Authorization"] == oracle.header_params["Authorization"]


# --------------------------------------------------------------------------------------------
# Property test against the SDK
# --------------------------------------------------------------------------------------------
_PATH_CHARS = list("abcXYZ019-._~ +;=,:@!$&'()*%\u4e2d\u00e9\U0001f600")
_PCT_SEGMENTS = ["%2F", "%2f", "%20", "%41", "%7E", "%E4%B8%AD", "%FF", "%", "%%2", "%zz", "a%2Fb", "%2B"]
_QUERY_KEYS = ["a", "b", "A", "page", "name", "\u4e2d", "a b", "k~", "x+y", "%", "a=b", "e\u0301"]
_CONTENT_TYPES = [
    None,
    "application/json",
    "application/json;charset=UTF-8",
    "application/bson",
    "multipart/form-data; boundary=----dqc",
    "text/plain",
    "application/octet-stream",
]
_RESERVED = {
    "x-sdk-date",
    "x-project-id",
    "x-security-token",
    "x-sdk-content-sha256",
    "host",
    "authorization",
}
_VALUE_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
_ALNUM = string.ascii_letters + string.digits

_segments = st.lists(
    st.one_of(
        st.text(alphabet=st.sampled_from(_PATH_CHARS), max_size=8),
        st.sampled_from(_PCT_SEGMENTS),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=4),
    ),
    max_size=5,
)
paths = st.builds(
    lambda segs, slash: "/" + "/".join(segs) + ("/" if slash else ""),
    _segments,
    st.booleans(),
)
queries = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(_QUERY_KEYS), st.text(min_size=1, max_size=6)),
        st.one_of(st.just(""), st.sampled_from(["1", "1", "x", "\u4e2d", "a b", "+", "~"]), st.text(max_size=8)),
    ),
    max_size=6,
)
hosts = st.one_of(
    st.sampled_from([HOST, "127.0.0.1", "localhost", "[::1]:9000", "example.com:443"]),
    st.builds(lambda h, p: f"{h}:{p}", st.sampled_from([HOST, "127.0.0.1", "localhost"]), st.integers(1, 65535)),
)
json_bodies = st.builds(
    lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8"),
    st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=8), st.none()), max_size=4),
)
multipart_bodies = st.builds(
    lambda name, data: (
        b'------dqc\r\nContent-Disposition: form-data; name="file"; filename="'
        + name.encode()
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + data
        + b"\r\n------dqc--\r\n"
    ),
    st.text(alphabet=_ALNUM, min_size=1, max_size=8),
    st.binary(max_size=64),
)
bodies = st.one_of(st.none(), st.just(b""), json_bodies, multipart_bodies, st.binary(max_size=32))
extra_header_names = st.from_regex(r"X-[A-Za-z0-9-]{1,10}", fullmatch=True).filter(lambda n: n.lower() not in _RESERVED)


@st.composite
def header_maps(draw: st.DrawFn) -> dict[str, str]:
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["workspace"] = draw(st.text(alphabet=_ALNUM + "-", min_size=1, max_size=32))
    content_type = draw(st.sampled_from(_CONTENT_TYPES))
    if content_type is not None:
        headers["Content-Type"] = content_type
    if draw(st.booleans()):
        headers["User-Agent"] = draw(st.sampled_from(["airflow-provider-dataqc/0.1", " spaced agent  "]))
    if draw(st.booleans()):
        headers["X_Custom_Header"] = draw(_VALUE_TEXT)  # has "_": never signed
    for name, value in draw(st.dictionaries(extra_header_names, _VALUE_TEXT, max_size=3)).items():
        headers[name] = value
    if draw(st.integers(0, 9)) == 0:
        headers["Workspace"] = "dup-case"  # case variant of "workspace": the SDK lists it twice
    return headers


@dataclass
class _Case:
    method: str
    host: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes | None
    ak: str
    sk: str
    project_id: str | None
    token: str | None
    unsigned: bool
    moment: datetime


cases = st.builds(
    _Case,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "get"]),
    host=hosts,
    path=paths,
    query=queries,
    headers=header_maps(),
    body=bodies,
    ak=st.text(alphabet=_ALNUM, min_size=1, max_size=24),
    sk=st.text(min_size=1, max_size=48),
    project_id=st.one_of(st.none(), st.just(""), st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)),
    token=st.one_of(st.none(), st.just(""), st.text(alphabet=_ALNUM + "+/=", min_size=1, max_size=64)),
    unsigned=st.booleans(),
    moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
)

COMPARED: list[int] = []


@settings(max_examples=500, deadline=None)
@given(case=cases)
def test_sign_matches_official_sdk(case: _Case) -> None:
    added = sign(
        method=case.method,
        host=case.host,
        path=case.path,
        query=case.query,
        headers=case.headers,
        body=case.body,
        access_key=case.ak,
        secret_key=case.sk,
        project_id=case.project_id,
        security_token=case.token,
        unsigned_payload=case.unsigned,
        now=case.moment,
    )
    # The SDK only sends UNSIGNED-PAYLOAD by itself for non-JSON Content-Types; a caller asking
    # for it explicitly sets the header, which the SDK then honours.
    sdk_headers = dict(case.headers)
    if case.unsigned:
        sdk_headers["X-Sdk-Content-Sha256"] = UNSIGNED_PAYLOAD
    oracle = sdk_sign(
        method=case.method,
        host=case.host,
        path=case.path,
        query=case.query,
        headers=sdk_headers,
        body=case.body,
        ak=case.ak,
        sk=case.sk,
        project_id=case.project_id,
        token=case.token,
        moment=case.moment,
    )
    expected_names = set(oracle.header_params) - set(case.headers)
    assert set(added) == expected_names
    for name, value in added.items():
        assert value == oracle.header_params[name], name
    assert added["Authorization"] == oracle.header_params["Authorization"]
    query_string = canonical_query(case.query)
    assert oracle.uri == (f"{case.path}?{query_string}" if query_string else case.path)

    # ... and our verifier accepts what we produced.
    check = verify(
        method=case.method,
        path=case.path,
        query=case.query,
        headers={**case.headers, **added},
        body=case.body,
        secret_for={case.ak: case.sk}.get,
        now=case.moment,
    )
    assert check == SignatureCheck(True, case.ak, "")
    COMPARED.append(1)


def test_sdk_comparisons_ran() -> None:
    # Runs after the property test in file order; guards against a silently skipped property.
    assert len(COMPARED) >= 300


def test_given_x_sdk_date_is_honoured_like_the_sdk() -> None:
    headers = {"workspace": "ws-1", "Content-Type": "application/json", "X-Sdk-Date": "20240102T030405Z"}
    kwargs: dict[str, Any] = {
        "method": "POST",
        "host": "127.0.0.1:8443",
        "path": "/v2/p/quality/x",
        "query": [("b", "2"), ("a", "")],
        "headers": headers,
        "body": b'{"a": 1}',
    }
    added = sign(**kwargs, access_key=AK, secret_key=SK, project_id=PROJECT, now=datetime(1999, 1, 1))
    oracle = sdk_sign(
        **kwargs, ak=AK, sk=SK, project_id=PROJECT, token=None, moment=datetime(1999, 1, 1)
    )  # the clock is irrelevant: the header wins
    assert "X-Sdk-Date" not in added
    assert added["Authorization"] == oracle.header_params["Authorization"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ([], ""),
        ([("b", "1"), ("a", "")], "a=&b=1"),
        ([("a", "2"), ("a", "1"), ("a", "10")], "a=1&a=10&a=2"),
        ([("q", "a b+c/d~"), ("\u4e2d", "\u00e9")], "q=a%20b%2Bc%2Fd~&%E4%B8%AD=%C3%A9"),
        ([("~", "1"), ("\u00e9", "2")], "~=1&%C3%A9=2"),  # sorted on raw text, not encoded text
    ],
)
def test_canonical_query(query: list[tuple[str, str]], expected: str) -> None:
    assert canonical_query(query) == expected


# --------------------------------------------------------------------------------------------
# sign(): errors never carry the secret
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("secret", ["", "bad\ud800secret-SKEXAMPLE-0000"])
def test_sign_rejects_bad_secret_without_leaking_it(secret: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        sign(**_vector_request(), access_key=AK, secret_key=secret, project_id=PROJECT, now=NOW)
    assert secret not in str(excinfo.value) or not secret
    assert "SKEXAMPLE" not in repr(excinfo.value)
    assert excinfo.value.__context__ is None and excinfo.value.__cause__ is None


def test_sign_errors_do_not_leak_secret() -> None:
    req = _vector_request()
    req["headers"] = {**req["headers"], "authorization": "x"}
    with pytest.raises(ValueError) as excinfo:
        sign(**req, access_key=AK, secret_key=SK, now=NOW)
    assert SK not in str(excinfo.value)
    req = _vector_request()
    req["headers"] = {**req["headers"], "X-Sdk-Date": "yesterday"}
    with pytest.raises(ValueError) as excinfo:
        sign(**req, access_key=AK, secret_key=SK, now=NOW)
    assert SK not in str(excinfo.value)
    assert excinfo.value.__context__ is None
    with pytest.raises(ValueError):
        sign(**_vector_request(), access_key="", secret_key=SK, now=NOW)


# --------------------------------------------------------------------------------------------
# verify()
# --------------------------------------------------------------------------------------------
def _signed(**overrides: Any) -> dict[str, Any]:
    """A request signed by sign(), as verify() receives it."""
    req: dict[str, Any] = {
        "method": "POST",
        "host": "127.0.0.1:8443",
        "path": f"/v2/{PROJECT}/quality/resource/import",
        "query": [("page", "1"), ("name", "a b")],
        "headers": {"workspace": "ws-1", "Content-Type": "application/json"},
        "body": b'{"rules": ["r1"]}',
    }
    unsigned = overrides.pop("unsigned_payload", False)
    req.update(overrides)
    added = sign(**req, access_key=AK, secret_key=SK, project_id=PROJECT, unsigned_payload=unsigned, now=NOW)
    host = req.pop("host")
    assert added.get("Host", host) == host
    req["headers"] = {**req["headers"], **added}
    return req


def _check(req: Mapping[str, Any], **overrides: Any) -> SignatureCheck:
    kwargs: dict[str, Any] = {**req, "secret_for": {AK: SK}.get, "now": NOW}
    kwargs.update(overrides)
    check = verify(**kwargs)
    assert SK not in check.reason and SK not in repr(check)
    return check


def _with_authorization(req: dict[str, Any], value: str | None) -> dict[str, Any]:
    headers = dict(req["headers"])
    if value is None:
        del headers["Authorization"]
    else:
        headers["Authorization"] = value
    return {**req, "headers": headers}


def test_verify_accepts_signed_request() -> None:
    assert _check(_signed()) == SignatureCheck(True, AK, "")


def test_verify_header_lookup_is_case_insensitive() -> None:
    req = _signed()
    req["headers"] = {name.upper(): value for name, value in req["headers"].items()}
    assert _check(req).ok


def test_verify_within_skew_is_accepted() -> None:
    req = _signed()
    assert _check(req, now=NOW + timedelta(minutes=14)).ok
    assert _check(req, now=(NOW - timedelta(minutes=14)).replace(tzinfo=UTC)).ok


def test_verify_unsigned_payload_multipart() -> None:
    req = _signed(
        headers={"workspace": "ws-1", "Content-Type": "multipart/form-data; boundary=xyz"},
        body=b"--xyz\r\n\r\ndata\r\n--xyz--\r\n",
    )
    assert req["headers"]["X-Sdk-Content-Sha256"] == UNSIGNED_PAYLOAD
    assert _check(req).ok
    # The payload is deliberately not covered by the signature.
    assert _check({**req, "body": b"other"}).ok
    # But the header itself is signed.
    tampered = {
        **req,
        "headers": {**req["headers"], "X-Sdk-Content-Sha256": hashlib.sha256(req["body"]).hexdigest()},
    }
    assert _check(tampered).reason == "signature mismatch"


def test_verify_rejects_wrong_content_sha256() -> None:
    req = _signed()
    req["headers"] = {**req["headers"], "X-Sdk-Content-Sha256": "0" * 64}
    assert _check(req) == SignatureCheck(False, AK, "payload hash mismatch")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: {**r, "body": b'{"rules": ["r2"]}'}, "signature mismatch"),
        (lambda r: {**r, "body": None}, "signature mismatch"),
        (lambda r: {**r, "query": [("page", "2"), ("name", "a b")]}, "signature mismatch"),
        (lambda r: {**r, "query": [*r["query"], ("extra", "")]}, "signature mismatch"),
        (lambda r: {**r, "path": r["path"] + "x"}, "signature mismatch"),
        (lambda r: {**r, "method": "PUT"}, "signature mismatch"),
        (lambda r: {**r, "headers": {**r["headers"], "workspace": "ws-2"}}, "signature mismatch"),
        (lambda r: {**r, "headers": {**r["headers"], "Host": "evil:8443"}}, "signature mismatch"),
        (
            lambda r: {**r, "headers": {k: v for k, v in r["headers"].items() if k != "workspace"}},
            "signed header missing",
        ),
        (
            lambda r: {**r, "headers": {k: v for k, v in r["headers"].items() if k != "X-Sdk-Date"}},
            "missing X-Sdk-Date",
        ),
        (lambda r: {**r, "headers": {**r["headers"], "X-Sdk-Date": "2024-01-02"}}, "malformed X-Sdk-Date"),
        (
            lambda r: {**r, "headers": {**r["headers"], "X-Sdk-Date": "2024012T030405Z"}},
            "malformed X-Sdk-Date",
        ),
    ],
)
def test_verify_rejects_tampering(mutate: Any, reason: str) -> None:
    assert _check(mutate(_signed())) == SignatureCheck(False, AK, reason)


def test_verify_rejects_wrong_secret() -> None:
    assert _check(_signed(), secret_for={AK: SK[:-1] + "1"}.get).reason == "signature mismatch"


def test_verify_rejects_unknown_access_key() -> None:
    assert _check(_signed(), secret_for={}.get) == SignatureCheck(False, AK, "unknown access key")


def test_verify_rejects_stale_and_future_dates() -> None:
    req = _signed()
    assert _check(req, now=NOW + timedelta(minutes=15, seconds=1)).reason == "stale X-Sdk-Date"
    assert _check(req, now=NOW + timedelta(hours=3)).reason == "stale X-Sdk-Date"
    assert _check(req, now=NOW - timedelta(minutes=16)).reason == "X-Sdk-Date in the future"
    assert _check(req, now=NOW + timedelta(minutes=20), max_skew=timedelta(minutes=30)).ok


def test_verify_rejects_host_not_signed() -> None:
    req = _signed()
    auth = req["headers"]["Authorization"]
    without_host = auth.replace("content-type;host;", "content-type;")
    assert without_host != auth
    assert _check(_with_authorization(req, without_host)) == SignatureCheck(False, AK, "host not signed")


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing Authorization"),
        ("", "missing Authorization"),
        ("   ", "missing Authorization"),
        ("garbage", "malformed Authorization"),
        (ALGORITHM, "malformed Authorization"),
        (f"{ALGORITHM} ", "malformed Authorization"),
        (f"{ALGORITHM} Access={AK}", "malformed Authorization"),
        (f"{ALGORITHM} Access={AK}, SignedHeaders=host, Signature=zz", "malformed Authorization"),
        (f"{ALGORITHM} Access={AK}, SignedHeaders=host, Signature={'g' * 64}", "malformed Authorization"),
        (
            f"{ALGORITHM} Access={AK}, SignedHeaders=host, Signature={NON_ASCII_SIG}",
            "malformed Authorization",
        ),
        (f"{ALGORITHM} Access={AK}, SignedHeaders=host;;x, Signature={'0' * 64}", "malformed Authorization"),
        (f"{ALGORITHM} Access=, SignedHeaders=host, Signature={'0' * 64}", "malformed Authorization"),
        (f"{ALGORITHM} Access={AK}, Access={AK}, Signature={'0' * 64}", "malformed Authorization"),
        (
            f"{ALGORITHM} Access={AK}, SignedHeaders=host, Signature={'0' * 64}, X=1",
            "malformed Authorization",
        ),
        (f"Bearer Access={AK}, SignedHeaders=host, Signature={'0' * 64}", "unsupported algorithm"),
        (f"SDK-HMAC-SM3 Access={AK}, SignedHeaders=host, Signature={'0' * 64}", "unsupported algorithm"),
    ],
)
def test_verify_rejects_missing_or_garbled_authorization(authorization: str | None, reason: str) -> None:
    check = _check(_with_authorization(_signed(), authorization))
    assert check == SignatureCheck(False, None, reason)


def test_verify_wrong_signature_value() -> None:
    req = _signed()
    auth = req["headers"]["Authorization"]
    forged = auth[:-64] + ("0" * 64 if not auth.endswith("0" * 64) else "1" * 64)
    assert _check(_with_authorization(req, forged)).reason == "signature mismatch"


def test_verify_never_raises_when_secret_lookup_fails() -> None:
    def boom(access_key: str) -> str | None:
        raise RuntimeError(f"vault down, secret was {SK}")

    check = _check(_signed(), secret_for=boom)
    assert not check.ok
    assert check.reason == "unverifiable request"


def test_verify_unusable_secret() -> None:
    check = _check(_signed(), secret_for=lambda _ak: "bad\ud800")
    assert check == SignatureCheck(False, AK, "unusable secret for access key")


@settings(max_examples=200, deadline=None)
@given(
    headers=st.dictionaries(
        st.one_of(st.sampled_from(["Authorization", "X-Sdk-Date", "Host", "host"]), st.text(max_size=8)),
        st.one_of(
            st.text(max_size=40),
            st.builds(
                lambda a, h, s: f"{ALGORITHM} Access={a}, SignedHeaders={h}, Signature={s}",
                st.text(max_size=6),
                st.text(max_size=10),
                st.text(alphabet="0123456789abcdefg\u00e9", max_size=66),
            ),
            st.datetimes().map(lambda d: d.strftime(SDK_DATE_FORMAT)),
        ),
        max_size=5,
    ),
    path=st.text(max_size=10),
    query=st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4)), max_size=3),
    body=st.one_of(st.none(), st.binary(max_size=8)),
)
def test_verify_never_raises(
    headers: dict[str, str], path: str, query: list[tuple[str, str]], body: bytes | None
) -> None:
    check = verify(
        method="GET",
        path=path,
        query=query,
        headers=headers,
        body=body,
        secret_for=lambda ak: SK if ak else None,
        now=NOW,
    )
    assert isinstance(check, SignatureCheck)
    assert SK not in check.reason and SK not in repr(check)
    assert check.ok is False or check.reason == ""
