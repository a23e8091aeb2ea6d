"""AK/SK request signing (``SDK-HMAC-SHA256``) for Huawei Cloud APIs.

This module reproduces, byte for byte, what ``huaweicloudsdkcore``'s ``Signer`` (driven by
``BasicCredentials.sign_request``) adds to a request, and offers the matching server-side check
used by the project's local emulator.

It is pure: standard library only, no Airflow import and no I/O.  The secret key is only ever
used as HMAC key material; it never appears in a return value, an exception message or a repr.

Canonicalisation, as the SDK does it (see ``sign`` for the full list of headers added):

* signed headers: every header name that does not contain ``_``, lower-cased, sorted (a name
  present twice in different cases is listed twice, with the last value);
* canonical URI: the path is percent-decoded *as a whole*, split on ``/`` (so ``%2F`` becomes a
  separator), each segment re-encoded with only ``~`` (and unreserved characters) left bare,
  and a ``/`` appended when missing;
* canonical query: ``(key, value)`` pairs sorted on the *raw* strings (key, then value), each
  rendered ``quote(key)=quote(value)`` (an empty value gives ``key=``), joined by ``&``;
* canonical headers: ``name:value.strip()`` lines, each followed by a newline;
* payload hash: hex SHA-256 of the body; an empty or missing body always hashes ``b""``, even
  when ``X-Sdk-Content-Sha256`` is set; otherwise that header's value is used literally.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

__all__ = [
    "ALGORITHM",
    "SDK_DATE_FORMAT",
    "UNSIGNED_PAYLOAD",
    "SignatureCheck",
    "canonical_query",
    "sign",
    "verify",
]

ALGORITHM = "SDK-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

_HEADER_DATE = "X-Sdk-Date"
_HEADER_HOST = "Host"
_HEADER_PROJECT_ID = "X-Project-Id"
_HEADER_SECURITY_TOKEN = "X-Security-Token"
_HEADER_CONTENT_SHA256 = "X-Sdk-Content-Sha256"
_HEADER_AUTHORIZATION = "Authorization"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Content types whose body the SDK hashes; any other Content-Type gets UNSIGNED-PAYLOAD.
_HASHED_CONTENT_TYPES = ("application/json", "application/bson")
_HEX_DIGITS = frozenset("0123456789abcdef")


# --------------------------------------------------------------------------------------------
# Canonicalisation (shared by sign() and verify())
# --------------------------------------------------------------------------------------------
def _encode(text: str) -> str:
    """Percent-encode ``text`` (UTF-8) leaving only unreserved characters and ``~`` bare."""
    return quote(text, safe="~")


def canonical_query(query: Sequence[tuple[str, str]]) -> str:
    """The query string exactly as signed; callers send the URL with this same string.

    Pairs are sorted on their raw (unencoded) ``(key, value)`` strings, then each is rendered as
    ``quote(key, safe="~") + "=" + quote(value, safe="~")``; pairs are joined with ``&``.  Duplicate
    keys are kept (ordered by value) and an empty value still yields ``key=``.  An empty sequence
    gives ``""`` (send the URL without ``?``).
    """
    return "&".join(f"{_encode(str(key))}={_encode(str(value))}" for key, value in sorted(query))


def _canonical_uri(path: str) -> str:
    """Canonical URI: decode the whole path, re-encode each ``/``-separated segment, end in ``/``."""
    uri = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def _first_header(headers: Mapping[str, str], name: str) -> str | None:
    """Value of the first header whose name matches ``name`` case-insensitively, else ``None``."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return str(value)
    return None


def _header_values(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased header name -> stripped value (the last one wins for case variants)."""
    return {key.lower(): str(value).strip() for key, value in headers.items()}


def _signed_header_names(names: Iterable[str]) -> list[str]:
    """Names to sign: those without ``_``, lower-cased and sorted (duplicates kept)."""
    return sorted(name.lower() for name in names if "_" not in name)


def _payload_hash(body: bytes | None, content_sha256: str | None) -> str:
    """Hex SHA-256 of ``body``; an empty body hashes ``b""``; a set content header wins otherwise."""
    if not body:
        return _EMPTY_SHA256
    if content_sha256:
        return content_sha256
    return hashlib.sha256(body).hexdigest()


def _content_sha256_header(headers: Mapping[str, str]) -> str | None:
    """The ``X-Sdk-Content-Sha256`` value as the SDK reads it (stripped, as later sent on the wire)."""
    raw = _first_header(headers, _HEADER_CONTENT_SHA256)
    if raw is None:
        return None
    # The SDK reads this header after rewriting header values to their UTF-8 bytes seen as Latin-1.
    return raw.strip().encode("utf-8").decode("iso-8859-1")


def _canonical_request(
    *,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    header_values: Mapping[str, str],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """Assemble the canonical request (six parts joined by newlines)."""
    canonical_headers = "\n".join(f"{name}:{header_values[name]}" for name in signed_headers) + "\n"
    return "\n".join(
        (
            method.upper(),
            _canonical_uri(path),
            canonical_query(query),
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        )
    )


def _signature(key: bytes, canonical_request: str, sdk_date: str) -> str:
    """Hex HMAC-SHA256 over the string to sign built from ``canonical_request`` and ``sdk_date``."""
    request_hash = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{sdk_date}\n{request_hash}"
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _secret_bytes(secret_key: str) -> bytes | None:
    """UTF-8 bytes of the secret, or ``None`` when it cannot be encoded (no exception escapes)."""
    try:
        return secret_key.encode("utf-8")
    except (UnicodeEncodeError, AttributeError):
        return None


def _parse_sdk_date(value: str, *, strict: bool) -> datetime | None:
    """Parse an ``X-Sdk-Date`` (naive UTC); ``strict`` also demands the canonical spelling."""
    try:
        moment = datetime.strptime(value, SDK_DATE_FORMAT)
    except ValueError:
        return None
    if strict and moment.strftime(SDK_DATE_FORMAT) != value:
        return None
    return moment


def _utc_naive(moment: datetime | None) -> datetime:
    """``moment`` as a naive UTC datetime (naive input is taken to be UTC already)."""
    if moment is None:
        return datetime.now(UTC).replace(tzinfo=None)
    if moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


# --------------------------------------------------------------------------------------------
# Client side
# --------------------------------------------------------------------------------------------
def sign(
    *,
    method: str,
    host: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes | None,
    access_key: str,
    secret_key: str,
    project_id: str | None = None,
    security_token: str | None = None,
    unsigned_payload: bool = False,
    now: datetime | None = None,
) -> dict[str, str]:
    """Return the headers to ADD to the request (X-Sdk-Date, Host, X-Project-Id when given,
    X-Security-Token when given, X-Sdk-Content-Sha256 when unsigned_payload, Authorization).

    `host` is host[:port] as sent in the Host header; `path` is the URL path as sent (already
    percent-encoded by the caller); `headers` are the request's other headers (workspace,
    Content-Type, User-Agent ...). Output must be byte-identical to what huaweicloudsdkcore's
    signer produces for the same request.

    Exactly like the SDK:

    * ``X-Project-Id`` is added only for a non-empty ``project_id``; ``X-Security-Token`` whenever
      ``security_token`` is not ``None`` (even ``""``); both are signed;
    * ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` is also added, without being asked for, when the
      ``Content-Type`` header (that exact spelling) is set and starts with neither
      ``application/json`` nor ``application/bson`` (e.g. multipart uploads);
    * an ``X-Sdk-Date`` already in ``headers`` is honoured (and ``now`` ignored); a ``Host``
      already in ``headers`` is signed as given and ``host`` is ignored;
    * returned values are stripped; send the query exactly as ``canonical_query(query)``.

    ``now`` defaults to the current time; a naive datetime is taken as UTC.

    Raises:
        ValueError: empty or unencodable credentials, an ``Authorization`` header already present
            (the SDK would silently skip signing), or an unparsable ``X-Sdk-Date`` in ``headers``.
            Messages never contain the secret.
    """
    if not access_key:
        raise ValueError("access_key is required")
    if not secret_key:
        raise ValueError("secret_key is required")
    key = _secret_bytes(secret_key)
    if key is None:
        raise ValueError("secret_key must be a str encodable as UTF-8")

    merged: dict[str, str] = {str(name): str(value) for name, value in headers.items()}
    if _first_header(merged, _HEADER_AUTHORIZATION) is not None:
        raise ValueError("headers already contain Authorization")

    added: list[str] = []

    def put(name: str, value: str) -> None:
        merged[name] = value
        if name not in added:
            added.append(name)

    if project_id:
        put(_HEADER_PROJECT_ID, project_id)
    if security_token is not None:
        put(_HEADER_SECURITY_TOKEN, security_token)

    content_type = merged.get("Content-Type")
    if unsigned_payload or (content_type and not content_type.startswith(_HASHED_CONTENT_TYPES)):
        put(_HEADER_CONTENT_SHA256, UNSIGNED_PAYLOAD)

    given_date = _first_header(merged, _HEADER_DATE)
    if given_date is None:
        moment = _utc_naive(now)
        put(_HEADER_DATE, moment.strftime(SDK_DATE_FORMAT))
    else:
        parsed_date = _parse_sdk_date(given_date, strict=False)
        if parsed_date is None:
            raise ValueError(f"X-Sdk-Date header does not match {SDK_DATE_FORMAT}")
        moment = parsed_date

    if _first_header(merged, _HEADER_HOST) is None:
        put(_HEADER_HOST, host)

    signed_headers = _signed_header_names(merged)
    canonical = _canonical_request(
        method=method,
        path=path,
        query=query,
        header_values=_header_values(merged),
        signed_headers=signed_headers,
        payload_hash=_payload_hash(body, _content_sha256_header(merged)),
    )
    signature = _signature(key, canonical, moment.strftime(SDK_DATE_FORMAT))

    result = {name: merged[name].strip() for name in added}
    result[_HEADER_AUTHORIZATION] = (
        f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(signed_headers)}, Signature={signature}"
    )
    return result


# --------------------------------------------------------------------------------------------
# Server side
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignatureCheck:
    """Result of :func:`verify`.

    Attributes:
        ok: ``True`` when the signature is valid and fresh.
        access_key: the access key the request claims (``None`` when Authorization is unusable);
            only trustworthy when ``ok``.
        reason: ``""`` when ``ok``; otherwise a short human-readable reason (never the secret).
    """

    ok: bool
    access_key: str | None
    reason: str


@dataclass(frozen=True)
class _Authorization:
    access_key: str
    signed_headers: list[str]
    signature: str


def _parse_authorization(value: str) -> _Authorization | str:
    """Parse ``SDK-HMAC-SHA256 Access=..., SignedHeaders=a;b, Signature=hex`` or return a reason."""
    scheme, _, params = value.strip().partition(" ")
    if scheme != ALGORITHM:
        return "unsupported algorithm" if scheme and params else "malformed Authorization"
    fields: dict[str, str] = {}
    for part in params.split(","):
        name, sep, field_value = part.strip().partition("=")
        if not sep or name in fields:
            return "malformed Authorization"
        fields[name] = field_value
    if set(fields) != {"Access", "SignedHeaders", "Signature"}:
        return "malformed Authorization"
    signed = fields["SignedHeaders"].split(";")
    signature = fields["Signature"]
    if not fields["Access"] or not all(signed) or len(signature) != 64 or not set(signature) <= _HEX_DIGITS:
        return "malformed Authorization"
    return _Authorization(fields["Access"], signed, signature)


def verify(
    *,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes | None,
    secret_for: Callable[[str], str | None],
    now: datetime | None = None,
    max_skew: timedelta = timedelta(minutes=15),
) -> SignatureCheck:
    """Server-side check used by the project's local emulator: parse Authorization, require
    'host' among SignedHeaders, check X-Sdk-Date within max_skew of now, recompute the
    signature with the same canonicalisation (honour X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD),
    compare with hmac.compare_digest. Headers lookup case-insensitive. Never raises on bad input.

    ``path`` is the raw (still percent-encoded) request path and ``query`` the decoded pairs of
    the query string (e.g. ``parse_qsl(raw, keep_blank_values=True)``).  ``secret_for`` maps an
    access key to its secret, or ``None`` when unknown.  An ``X-Sdk-Content-Sha256`` other than
    ``UNSIGNED-PAYLOAD`` is accepted only when it equals the body's hash.  An ``X-Sdk-Date`` must
    be exactly in ``SDK_DATE_FORMAT``.
    """
    try:
        return _verify(
            method=method,
            path=path,
            query=query,
            headers=headers,
            body=body,
            secret_for=secret_for,
            now=now,
            max_skew=max_skew,
        )
    except Exception:  # never raise, never echo details that could carry secrets
        return SignatureCheck(False, None, "unverifiable request")


def _verify(
    *,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes | None,
    secret_for: Callable[[str], str | None],
    now: datetime | None,
    max_skew: timedelta,
) -> SignatureCheck:
    """Implementation of :func:`verify`; may raise on exotic input (the wrapper catches)."""
    values = _header_values(headers)
    raw_authorization = values.get("authorization")
    if not raw_authorization:
        return SignatureCheck(False, None, "missing Authorization")
    parsed = _parse_authorization(raw_authorization)
    if isinstance(parsed, str):
        return SignatureCheck(False, None, parsed)

    access_key = parsed.access_key

    def reject(reason: str) -> SignatureCheck:
        return SignatureCheck(False, access_key, reason)

    if "host" not in parsed.signed_headers:
        return reject("host not signed")

    sdk_date = values.get("x-sdk-date")
    if not sdk_date:
        return reject("missing X-Sdk-Date")
    signed_at = _parse_sdk_date(sdk_date, strict=True)
    if signed_at is None:
        return reject("malformed X-Sdk-Date")
    skew = _utc_naive(now) - signed_at
    if skew > max_skew:
        return reject("stale X-Sdk-Date")
    if -skew > max_skew:
        return reject("X-Sdk-Date in the future")

    secret = secret_for(access_key)
    if not secret:
        return reject("unknown access key")
    key = _secret_bytes(secret)
    if key is None:
        return reject("unusable secret for access key")

    if any(name.lower() not in values for name in parsed.signed_headers):
        return reject("signed header missing")
    header_values = {name: values[name.lower()] for name in parsed.signed_headers}

    content_sha256 = _content_sha256_header(headers)
    if body and content_sha256 and content_sha256 not in (UNSIGNED_PAYLOAD, hashlib.sha256(body).hexdigest()):
        return reject("payload hash mismatch")

    canonical = _canonical_request(
        method=method,
        path=path,
        query=query,
        header_values=header_values,
        signed_headers=parsed.signed_headers,
        payload_hash=_payload_hash(body, content_sha256),
    )
    expected = _signature(key, canonical, sdk_date)
    if not hmac.compare_digest(expected, parsed.signature):
        return reject("signature mismatch")
    return SignatureCheck(True, access_key, "")
