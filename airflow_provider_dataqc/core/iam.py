"""IAM tokens for ``auth_type="password"``: what a token is, reading IAM's answer, and
the error of a failed login (which never quotes the password).

Pure: no Airflow import, no I/O.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, quote_plus

from airflow_provider_dataqc.core.errors import (
    CallFailure,
    decode_json,
    excerpt,
    failure_from_answer,
    header,
    request_id_of,
)
from airflow_provider_dataqc.core.settings import ConnectionSettings
from airflow_provider_dataqc.core.status import parse_service_time

#: Refresh an IAM token this long before it expires (at most half its lifetime).
TOKEN_REFRESH_MARGIN = timedelta(minutes=10)


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
    now = now or datetime.now(UTC)
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
    """``text`` without the connection's secrets in any form an echo of the request can give
    them: raw, JSON-, ``repr``-, URL- or HTML-escaped, with white space collapsed the way
    :func:`~.errors.excerpt` does, and the part of one that an excerpt cut off at its end."""
    if text is None:
        return None
    for secret in settings.secrets():
        if len(secret) < 4:  # shorter ones would garble the text
            continue
        forms = sorted(_secret_forms(secret), key=len, reverse=True)
        for form in forms:
            text = text.replace(form, "***")
        if text.endswith("…"):  # an excerpt cut inside a secret keeps its first characters
            kept = text[:-1]
            cut = max((k for form in forms for k in range(4, len(form)) if kept.endswith(form[:k])), default=0)
            text = (kept[:-cut] + "***…") if cut else text
    return text


def _secret_forms(secret: str) -> set[str]:
    # The echo may be of the whole request body (JSON), then URL-encoded or HTML-escaped.
    inner = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1]}
    outer = (str, quote_plus, lambda text: quote(text, safe=""), html.escape, lambda text: html.escape(text, False))
    forms = set()
    for form in {encode(text) for text in inner for encode in outer}:
        forms |= {form, form.replace("\\", "\\\\"), excerpt(form, limit=len(form) * 8)}
    return {form for form in forms if len(form) >= 4}
