"""Turning an :class:`ApiRequest` into bytes on the wire: URL, headers, authentication.

Pure: no Airflow import, no I/O. The three modes of the connection's
``auth_type`` are applied here and nowhere else:

* ``token`` — the connection's password is an IAM token, sent as ``X-Auth-Token``;
* ``password`` — an IAM token obtained by the transport (see :class:`TokenCache`),
  sent the same way;
* ``aksk`` — the request is signed with ``SDK-HMAC-SHA256`` by :mod:`.signer`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

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
    """A project-scoped IAM token and when to stop using it.

    ``expires_at`` is IAM's own ``token.expires_at``; ``refresh_at`` is on the
    local clock (see :func:`parse_token_answer`). ``repr`` never shows the value.
    """

    value: str = field(compare=False)
    expires_at: datetime
    refresh_at: datetime

    def is_fresh(self, now: datetime) -> bool:
        return now < self.refresh_at

    def __repr__(self) -> str:
        return f"IamToken(expires_at={self.expires_at.isoformat()}, refresh_at={self.refresh_at.isoformat()})"


def refresh_margin(lifetime: timedelta, margin: timedelta = TOKEN_REFRESH_MARGIN) -> timedelta:
    """How long before expiry a token of ``lifetime`` is replaced: ``margin``, but never
    more than half the lifetime (a 10-minute token is used for 5 minutes, not 0)."""
    return max(min(margin, lifetime / 2), timedelta(0))


_KEY_SALT = secrets.token_bytes(16)


def token_cache_key(settings: ConnectionSettings) -> tuple[str, ...]:
    """Tokens are shared per (IAM endpoint, user, domain, project) and password.

    The last part is a salted digest, never the password: a connection that
    names the same user with a wrong password must not be handed the token
    another connection earned (``test_connection`` would say it works).
    """
    secret = (settings.secret or "").encode("utf-8")
    return (
        settings.iam_endpoint or "",
        settings.login or "",
        settings.domain_name or "",
        settings.project_id,
        hmac.new(_KEY_SALT, secret, hashlib.sha256).hexdigest(),
    )


def parse_token_answer(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
    margin: timedelta = TOKEN_REFRESH_MARGIN,
) -> IamToken | CallFailure:
    """Read IAM's answer to ``POST /v3/auth/tokens``: the token from ``X-Subject-Token``,
    its expiry from ``token.expires_at`` (24 h assumed when absent).

    When IAM also says ``token.issued_at``, the lifetime is measured on IAM's
    clock and counted from ``now`` on ours, so a local clock that is off does
    not make a good token look expired (or an expired one look good).

    :param now: when the answer arrived (default: the clock).
    :param margin: replace the token this long before it expires (see :func:`refresh_margin`).
    """
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
    if expires_at is None:
        expires_at = (issued_at or now) + timedelta(hours=24)
    lifetime = max(expires_at - (issued_at or now), timedelta(0))
    refresh_at = now + lifetime - refresh_margin(lifetime, margin)
    return IamToken(value=value, expires_at=expires_at, refresh_at=refresh_at)


def iam_failure(settings: ConnectionSettings, failure: CallFailure) -> CallFailure:
    """The error for a token request that failed: IAM's status and message, the user,
    account and IAM endpoint, what to check, and never the password (removed from
    every quoted text in case an answer echoes the request)."""
    where = f"user {settings.login!r} of account {settings.domain_name!r} at {settings.iam_endpoint}"
    if failure.status_code in (400, 401, 403):
        problem = f"IAM refused the password login of {where}: check login, password, domain_name and project_id"
    elif failure.status_code is None:
        problem = f"IAM did not answer the token request for {where}"
    else:
        problem = f"could not get an IAM token for {where}"
    if failure.problem:
        problem = f"{failure.problem}; {problem}"
    return replace(
        failure,
        operation="IAM token",
        error_msg=_scrub(failure.error_msg, settings),
        problem=_scrub(problem, settings),
        body_excerpt=_scrub(failure.body_excerpt, settings),
        transport_error=_scrub(failure.transport_error, settings),
    )


def _scrub(text: str | None, settings: ConnectionSettings) -> str | None:
    if text is None:
        return None
    for secret in settings.secrets():
        if len(secret) >= 4:  # shorter ones would garble the text
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class TokenTicket:
    """What a caller saw when it asked :meth:`TokenCache.ticket` for a token."""

    key: tuple[str, ...]
    #: A fresh cached token, or ``None``: take the fetch lock and call :meth:`TokenCache.shared`.
    token: str | None = field(repr=False)
    #: How many fetches for ``key`` had ended when the ticket was taken.
    fetches: int


class TokenCache:
    """Process-wide cache of IAM tokens, shared by hooks and triggers.

    One fetch at a time per key, and its outcome is shared: callers that waited
    for a fetch get its token, or its failure (a wrong password costs one IAM
    request however many calls were waiting, so IAM's lock-out counter is not
    run up). The transports hold the fetch lock (a thread lock in the sync hook,
    an ``asyncio.Lock`` in triggers) and follow this protocol::

        ticket = TOKEN_CACHE.ticket(key, rejected)
        if ticket.token: use it
        with fetch lock for key:
            shared = TOKEN_CACHE.shared(ticket)
            if shared is not None: use it (a token or a CallFailure)
            outcome = fetch from IAM  # IamToken or CallFailure
            TOKEN_CACHE.settle(key, outcome)
    """

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, ...], IamToken] = {}
        self._failures: dict[tuple[str, ...], CallFailure] = {}
        self._fetches: dict[tuple[str, ...], int] = {}
        self._guard = threading.Lock()
        self._fetch_locks: dict[tuple[str, ...], threading.Lock] = {}

    def _fresh(self, key: tuple[str, ...], now: datetime | None) -> IamToken | None:
        token = self._tokens.get(key)
        return token if token is not None and token.is_fresh(now or datetime.now(timezone.utc)) else None

    def get(self, key: tuple[str, ...], now: datetime | None = None) -> IamToken | None:
        """The cached token for ``key`` if it is still fresh."""
        with self._guard:
            return self._fresh(key, now)

    def ticket(self, key: tuple[str, ...], rejected: str | None = None, now: datetime | None = None) -> TokenTicket:
        """Drop ``rejected`` (a token the service just refused) and look for a fresh token."""
        with self._guard:
            if rejected is not None:
                current = self._tokens.get(key)
                if current is not None and current.value == rejected:
                    del self._tokens[key]
            token = self._fresh(key, now)
            return TokenTicket(key, token.value if token else None, self._fetches.get(key, 0))

    def shared(self, ticket: TokenTicket, now: datetime | None = None) -> str | CallFailure | None:
        """Call with the fetch lock held: a fresh token, or the failure of a fetch that
        ended while this caller waited; ``None`` means: fetch now."""
        with self._guard:
            token = self._fresh(ticket.key, now)
            if token is not None:
                return token.value
            if self._fetches.get(ticket.key, 0) != ticket.fetches:
                return self._failures.get(ticket.key)
            return None

    def settle(self, key: tuple[str, ...], outcome: IamToken | CallFailure) -> None:
        """Record the outcome of a fetch (call with the fetch lock held)."""
        with self._guard:
            self._fetches[key] = self._fetches.get(key, 0) + 1
            if isinstance(outcome, IamToken):
                self._tokens[key] = outcome
                self._failures.pop(key, None)
            else:
                self._failures[key] = outcome

    def fetch_lock(self, key: tuple[str, ...]) -> threading.Lock:
        """The lock that serialises token fetches for ``key`` among threads."""
        with self._guard:
            return self._fetch_locks.setdefault(key, threading.Lock())

    def clear(self) -> None:
        with self._guard:
            self._tokens.clear()
            self._failures.clear()
            self._fetches.clear()


#: The cache every hook and trigger of this process uses.
TOKEN_CACHE = TokenCache()


def settle_token(
    key: tuple[str, ...], outcome: IamToken | CallFailure, *, user: str | None, log: Any
) -> str | CallFailure:
    """Record the outcome of a token fetch in :data:`TOKEN_CACHE` (fetch lock held; the
    caller has already registered a new token with the log masker) and return what the
    call plan expects from :class:`~airflow_provider_dataqc.core.calls.GetToken`."""
    TOKEN_CACHE.settle(key, outcome)
    if isinstance(outcome, CallFailure):
        return outcome
    log.info(
        "Got a new IAM token for user %r (valid until %s, renewed from %s)",
        user,
        outcome.expires_at.isoformat(timespec="seconds"),
        outcome.refresh_at.isoformat(timespec="seconds"),
    )
    return outcome.value
