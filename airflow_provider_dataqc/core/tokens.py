"""The process-wide cache of IAM tokens, shared by every hook and trigger of a process.

Pure: no Airflow import, no I/O (a thread lock guards the cache's own state). How a
call gets a token from it — one fetch at a time per key, its outcome shared — is
written once, in :func:`airflow_provider_dataqc.core.calls.obtain_token`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_provider_dataqc.core.errors import CallFailure
from airflow_provider_dataqc.core.iam import IamToken
from airflow_provider_dataqc.core.settings import ConnectionSettings

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
    run up). The protocol (ticket, then under the key's fetch lock: shared, fetch,
    settle) is followed in one place only, :func:`~airflow_provider_dataqc.core.calls.obtain_token`.
    """

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, ...], IamToken] = {}
        self._failures: dict[tuple[str, ...], CallFailure] = {}
        self._fetches: dict[tuple[str, ...], int] = {}
        self._guard = threading.Lock()
        self._fetch_locks: dict[tuple[str, ...], threading.Lock] = {}

    def _fresh(self, key: tuple[str, ...], now: datetime | None) -> IamToken | None:
        token = self._tokens.get(key)
        return token if token is not None and token.is_fresh(now or datetime.now(UTC)) else None

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
