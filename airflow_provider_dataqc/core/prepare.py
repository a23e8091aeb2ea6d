"""Turning an :class:`ApiRequest` into a request ready for the wire: URL, headers, authentication.

Pure: no Airflow import, no I/O. The three modes of the connection's
``auth_type`` are applied here and nowhere else:

* ``token`` — the connection's password is an IAM token, sent as ``X-Auth-Token``;
* ``password`` — an IAM token got by the call plan (:func:`.calls.obtain_token`),
  sent the same way;
* ``aksk`` — the request is signed with ``SDK-HMAC-SHA256`` by :mod:`.signer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from airflow_provider_dataqc import __version__
from airflow_provider_dataqc.core import signer
from airflow_provider_dataqc.core.api import ApiRequest
from airflow_provider_dataqc.core.settings import AuthType, ConnectionSettings

USER_AGENT = f"airflow-provider-dataqc/{__version__}"


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
    #: The longest one attempt may take, answer included (``None``: only the timeouts above bound it).
    attempt_timeout: float | None = None

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
    if request.stream:
        # A download is stored byte for byte: never ask for (or inflate) a compressed body.
        headers["Accept-Encoding"] = "identity"
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
        attempt_timeout=(settings.download_timeout or None) if request.stream else settings.read_timeout,
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
