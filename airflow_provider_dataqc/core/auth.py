"""Turning an :class:`ApiRequest` into bytes on the wire: URL, headers, authentication.

Pure: no Airflow import, no I/O. The three modes of the connection's
``auth_type`` are applied here and nowhere else:

* ``token`` — the connection's password is an IAM token, sent as ``X-Auth-Token``;
* ``password`` — an IAM token obtained by the transport (see :class:`TokenCache`),
  sent the same way;
* ``aksk`` — the request is signed with ``SDK-HMAC-SHA256`` by :mod:`.signer`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from airflow_provider_dataqc import __version__
from airflow_provider_dataqc.core import signer
from airflow_provider_dataqc.core.api import ApiRequest
from airflow_provider_dataqc.core.errors import (
    CallFailure,
    decode_json,
    excerpt,
    failure_from_answer,
    header,
    request_id_of,
)
from airflow_provider_dataqc.core.settings import AuthType, ConnectionSettings
from airflow_provider_dataqc.core.status import parse_service_time

USER_AGENT = f"airflow-provider-dataqc/{__version__}"
#: Refresh an IAM token this long before it expires (at most half its lifetime).
TOKEN_REFRESH_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True, repr=False)
class PreparedRequest:
    """A request ready for a transport. ``headers`` and ``body`` may hold secrets: never log them."""

    operation: str
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None
    stream: bool
    idempotent: bool
    connect_timeout: float
    read_timeout: float

    def __repr__(self) -> str:
        return f"PreparedRequest({self.method} {self.url})"


def prepare(
    settings: ConnectionSettings,
    request: ApiRequest,
    *,
    token: str | None = None,
    now: datetime | None = None,
) -> PreparedRequest:
    """Build the URL and headers of ``request`` and authenticate it.

    :param token: the IAM token for ``auth_type="password"`` (ignored otherwise).
    :param now: the signing time for ``auth_type="aksk"`` (default: the clock).
    """
    base = settings.iam_endpoint if request.iam and settings.iam_endpoint else settings.endpoint
    query = signer.canonical_query(request.query) if request.query else ""
    url = base + request.path + (f"?{query}" if query else "")
    headers: dict[str, str] = {"User-Agent": USER_AGENT}
    if request.content_type:
        headers["Content-Type"] = request.content_type
    if request.workspace:
        headers["workspace"] = request.workspace
    headers.update(request.extra_headers)
    if not request.iam:
        _authenticate(settings, request, headers, token=token, now=now)
    return PreparedRequest(
        operation=request.operation,
        method=request.method,
        url=url,
        headers=headers,
        body=request.body,
        stream=request.stream,
        idempotent=request.idempotent,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
    )


def _authenticate(
    settings: ConnectionSettings,
    request: ApiRequest,
    headers: dict[str, str],
    *,
    token: str | None,
    now: datetime | None,
) -> None:
    if settings.auth_type is AuthType.AKSK:
        headers.update(
            signer.sign(
                method=request.method,
                host=settings.host_header,
                path=request.path,
                query=request.query,
                headers=headers,
                body=request.body,
                access_key=settings.login or "",
                secret_key=settings.secret or "",
                project_id=settings.project_id,
                security_token=settings.security_token,
                unsigned_payload=request.unsigned_payload,
                now=now,
            )
        )
        return
    headers["X-Project-Id"] = settings.project_id
    value = settings.secret if settings.auth_type is AuthType.TOKEN else token
    if not value:
        raise ValueError("no IAM token available for this request")
    headers["X-Auth-Token"] = value


@dataclass(frozen=True, repr=False)
class IamToken:
    """A project-scoped IAM token and when to stop using it."""

    value: str = field(compare=False)
    expires_at: datetime
    refresh_at: datetime

    def is_fresh(self, now: datetime) -> bool:
        return now < self.refresh_at

    def __repr__(self) -> str:
        return f"IamToken(expires_at={self.expires_at.isoformat()}, refresh_at={self.refresh_at.isoformat()})"


def token_cache_key(settings: ConnectionSettings) -> tuple[str, str, str, str]:
    """Tokens are shared per (IAM endpoint, user, domain, project)."""
    return (
        settings.iam_endpoint or "",
        settings.login or "",
        settings.domain_name or "",
        settings.project_id,
    )


def parse_token_answer(
    status_code: int, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None
) -> IamToken | CallFailure:
    """Read IAM's answer to ``POST /v3/auth/tokens``: the token from ``X-Subject-Token``,
    its expiry from ``token.expires_at`` (24 h assumed when absent)."""
    now = now or datetime.now(timezone.utc)
    if status_code not in (200, 201):
        return failure_from_answer("IAM token", status_code, headers, body)
    value = header(headers, "X-Subject-Token")
    if not value:
        return CallFailure(
            operation="IAM token",
            status_code=status_code,
            request_id=request_id_of(headers),
            problem="IAM answered without an X-Subject-Token header",
            body_excerpt=excerpt(body) or None,
        )
    payload, _ = decode_json(body)
    token_info = payload.get("token") if isinstance(payload, Mapping) else None
    expires_at = issued_at = None
    if isinstance(token_info, Mapping):
        expires_at = parse_service_time(token_info.get("expires_at"))
        issued_at = parse_service_time(token_info.get("issued_at"))
    issued_at = issued_at or now
    expires_at = expires_at or issued_at + timedelta(hours=24)
    lifetime = max(expires_at - issued_at, timedelta(0))
    margin = min(TOKEN_REFRESH_MARGIN, lifetime / 2)
    return IamToken(value=value, expires_at=expires_at, refresh_at=expires_at - margin)


class TokenCache:
    """Process-wide cache of IAM tokens, shared by hooks and triggers.

    Thread-safe for lookups and updates; transports serialise the fetch itself
    per key (a thread lock in the sync hook, an ``asyncio.Lock`` in triggers),
    so concurrent calls share one IAM request.
    """

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, ...], IamToken] = {}
        self._guard = threading.Lock()
        self._fetch_locks: dict[tuple[str, ...], threading.Lock] = {}

    def get(self, key: tuple[str, ...], now: datetime | None = None) -> IamToken | None:
        """The cached token for ``key`` if it is still fresh."""
        now = now or datetime.now(timezone.utc)
        with self._guard:
            token = self._tokens.get(key)
        return token if token is not None and token.is_fresh(now) else None

    def put(self, key: tuple[str, ...], token: IamToken) -> None:
        with self._guard:
            self._tokens[key] = token

    def discard(self, key: tuple[str, ...], value: str) -> None:
        """Forget the token ``value`` (rejected by the service), unless it was already replaced."""
        with self._guard:
            current = self._tokens.get(key)
            if current is not None and current.value == value:
                del self._tokens[key]

    def fetch_lock(self, key: tuple[str, ...]) -> threading.Lock:
        """The lock that serialises token fetches for ``key`` among threads."""
        with self._guard:
            return self._fetch_locks.setdefault(key, threading.Lock())

    def clear(self) -> None:
        with self._guard:
            self._tokens.clear()


#: The cache every hook and trigger of this process uses.
TOKEN_CACHE = TokenCache()
