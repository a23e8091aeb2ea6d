"""Connection settings: what a ``dataqc`` connection says, validated once.

Pure: no Airflow import, no I/O. The hook (sync) and the trigger (async) both
build a :class:`ConnectionSettings` from the connection's fields with
:meth:`ConnectionSettings.from_connection`, so both see the same defaults and
reject the same mistakes, before any request is made.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import quote, urlsplit

DEFAULT_ENDPOINT_TEMPLATE = "https://dayu.{region}.myhuaweicloud.com"
DEFAULT_IAM_ENDPOINT_TEMPLATE = "https://iam.{region}.myhuaweicloud.com"
GLOBAL_IAM_ENDPOINT = "https://iam.myhuaweicloud.com"

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9\-]{1,62}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_RESOURCE_ID_LENGTH = 256


class InvalidSettingError(ValueError):
    """A connection field or call argument is wrong; the message names it and why."""


class AuthType(str, Enum):
    """How requests are authenticated (connection extra ``auth_type``).

    AK/SK is written ``ak_sk`` in the connection form (``aksk`` and ``ak/sk`` work too): Airflow 3
    hands every extra value to its log masker, which warns in each task log about one shorter
    than five characters.
    """

    TOKEN = "token"
    PASSWORD = "password"
    AKSK = "aksk"


_AUTH_ALIASES = {
    "token": AuthType.TOKEN,
    "iam_token": AuthType.TOKEN,
    "password": AuthType.PASSWORD,
    "aksk": AuthType.AKSK,
    "ak/sk": AuthType.AKSK,
    "ak_sk": AuthType.AKSK,
}


def validate_id(value: Any, name: str) -> str:
    """A project or workspace ID: letters, digits, ``_``, ``.``, ``-`` (1-128)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidSettingError(f"{name} is required and must be a non-empty string")
    value = value.strip()
    if not _ID.match(value) or value in {".", ".."}:
        shown = _CONTROL.sub("?", value[:40]) + ("…" if len(value) > 40 else "")
        raise InvalidSettingError(f"{name} {shown!r} is not a valid ID: use 1-128 letters, digits, '_', '.' or '-'")
    return value


def encode_path_id(value: Any, name: str) -> str:
    """Percent-encode an opaque ID (such as a ``resource_id``) for use as one path segment.

    Every character outside the unreserved set is encoded, so ``/``, ``?``, ``#``,
    ``%`` and spaces can never change which path is called. Blank values, ``.``
    and ``..``, control characters and IDs over 256 characters are refused.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidSettingError(f"{name} is required and must be a non-empty string, got {value!r:.40}")
    if value.strip() in {".", ".."}:
        raise InvalidSettingError(f"{name} {value!r} is not a valid ID: '.' and '..' are path steps")
    if _CONTROL.search(value):
        raise InvalidSettingError(f"{name} contains control characters: {_CONTROL.sub('?', value[:40])!r}")
    if len(value) > MAX_RESOURCE_ID_LENGTH:
        raise InvalidSettingError(
            f"{name} is {len(value)} characters long; at most {MAX_RESOURCE_ID_LENGTH} are accepted"
        )
    return quote(value, safe="")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalise_endpoint(
    value: str, *, field_name: str, default_scheme: str = "https", allow_insecure_http: bool = False
) -> str:
    """``scheme://host[:port]`` from what a user typed in a connection.

    A bare host (the URI form of a connection) gets ``default_scheme``. Paths,
    queries, user info and schemes other than http/https are refused, and so is
    plain ``http`` to a host that is not loopback unless ``allow_insecure_http``.

    User info is looked for first, and an error quotes at most the host and port:
    what was typed may hold a password (``https://user:pw@host``) or a token (``?token=``).
    """
    text = value.strip()
    authority = text.split("://", 1)[-1]
    for end in "/?#":
        authority = authority.split(end, 1)[0]
    if "@" in authority:
        raise InvalidSettingError(f"{field_name} must not carry user info; put credentials in login/password")
    if _CONTROL.search(text) or " " in text:
        raise InvalidSettingError(f"{field_name} contains spaces or control characters")
    if "://" not in text:
        if "/" in text:
            raise InvalidSettingError(
                f"{field_name} {authority!r:.80} has no scheme: write it as https://host[:port] without a path"
            )
        text = f"{default_scheme}://{text}"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise InvalidSettingError(f"{field_name} must use https:// (or http:// on loopback)")
    host = parts.hostname
    if not host:
        raise InvalidSettingError(f"{field_name} has no host name")
    try:
        port = parts.port
    except ValueError:
        raise InvalidSettingError(f"{field_name} has an invalid port after {host!r:.80}: use 1-65535") from None
    netloc = f"[{host}]" if ":" in host else host
    shown = f"{scheme}://{netloc}" + (f":{port}" if port else "")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise InvalidSettingError(
            f"{field_name} {shown}… must not have a path, query or fragment: give only scheme://host[:port]"
        )
    if scheme == "http" and not allow_insecure_http and not is_loopback_host(host):
        raise InvalidSettingError(
            f"{field_name} {shown} uses plain http to a non-loopback host: tokens and signatures "
            "would travel in clear text. Use https, or set extra allow_insecure_http=true to accept the risk"
        )
    return shown


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {
        "true",
        "1",
        "yes",
        "on",
        "false",
        "0",
        "no",
        "off",
    }:
        return value.strip().lower() in {"true", "1", "yes", "on"}
    if isinstance(value, int):
        return bool(value)
    raise InvalidSettingError(f"extra {name} must be true or false, got {value!r:.40}")


def _number(value: Any, name: str, *, minimum: float, maximum: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidSettingError(f"extra {name} must be a number, got {value!r:.40}") from None
    if not minimum <= number <= maximum:
        raise InvalidSettingError(f"extra {name} must be between {minimum:g} and {maximum:g}, got {number:g}")
    return number


def _verify(value: Any) -> bool | str:
    """Extra ``verify``: unset or blank means verify (a blank form field must never turn
    TLS checks off); true/false words are booleans; any other text is a CA bundle path."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    if isinstance(value, str) and value.strip().lower() not in {"true", "1", "yes", "on", "false", "0", "no", "off"}:
        if _CONTROL.search(value):
            raise InvalidSettingError("extra verify (CA bundle path) contains control characters")
        return value.strip()
    return _bool(value, "verify")


def _optional_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class RetrySettings:
    """Bounds of the retry policy (connection extras of the same names)."""

    max_retries: int = 3
    backoff_factor: float = 1.0
    max_wait: float = 60.0
    total_timeout: float = 300.0


@dataclass(frozen=True, repr=False)
class ConnectionSettings:
    """A validated ``dataqc`` connection. Secrets are never shown by ``repr``."""

    endpoint: str
    project_id: str
    auth_type: AuthType
    workspace: str | None = None
    region: str | None = None
    login: str | None = None
    secret: str | None = field(default=None, compare=False)
    domain_name: str | None = None
    security_token: str | None = field(default=None, compare=False)
    iam_endpoint: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    verify: bool | str = True
    retry: RetrySettings = RetrySettings()
    conn_id: str | None = None
    #: Longest a download may take, seconds (extra ``download_timeout``; 0: no bound but the read timeout).
    download_timeout: float = 3600.0
    #: Calls per 10 s this process sends for the connection's user (extra ``rate_limit``, 40 when
    #: read from a connection; 0: off, the default of settings built by hand).
    rate_limit: float = 0.0

    @property
    def host_header(self) -> str:
        """``host[:port]`` as sent in the ``Host`` header."""
        return self.endpoint.split("://", 1)[1]

    def __repr__(self) -> str:
        return (
            f"ConnectionSettings(conn_id={self.conn_id!r}, endpoint={self.endpoint!r}, "
            f"project_id={self.project_id!r}, workspace={self.workspace!r}, auth_type={self.auth_type.value!r})"
        )

    def secrets(self) -> list[str]:
        """Every secret value of this connection (for the log masker)."""
        return [s for s in (self.secret, self.security_token) if s]

    @classmethod
    def from_connection(
        cls,
        *,
        host: str | None,
        login: str | None,
        password: str | None,
        port: int | None,
        schema: str | None,
        extra: Mapping[str, Any],
        conn_id: str | None = None,
        project_id: str | None = None,
    ) -> ConnectionSettings:
        """Validate a connection's fields.

        :param project_id: overrides extra ``project_id`` (a hook argument).
        :raises InvalidSettingError: naming the field that is wrong and why.
        """
        extra = dict(extra or {})
        raw_auth = str(extra.get("auth_type") or "token").strip().lower()
        if raw_auth not in _AUTH_ALIASES:
            raise InvalidSettingError(
                f"extra auth_type {raw_auth!r:.40} is not supported: use one of token, password, ak_sk"
            )
        auth_type = _AUTH_ALIASES[raw_auth]
        region = _optional_text(extra.get("region"))
        if region is not None and not _REGION.match(region):
            # Not quoted: a URL with credentials pasted into the wrong field must not be echoed.
            raise InvalidSettingError(
                "extra region is not a region name such as cn-north-4 (lowercase letters, digits and '-')"
            )
        insecure = _bool(extra.get("allow_insecure_http", False), "allow_insecure_http")

        raw_host = _optional_text(extra.get("endpoint")) or _optional_text(host)
        if raw_host is None:
            if region is None:
                raise InvalidSettingError(
                    "the connection needs an endpoint (host) or extra region to build " + DEFAULT_ENDPOINT_TEMPLATE
                )
            raw_host = DEFAULT_ENDPOINT_TEMPLATE.format(region=region)
        elif "://" not in raw_host and port:
            raw_host = f"{raw_host}:{port}"
        scheme = _optional_text(extra.get("scheme")) or _optional_text(schema) or "https"
        endpoint = normalise_endpoint(
            raw_host,
            field_name="endpoint (host)",
            default_scheme=scheme.lower(),
            allow_insecure_http=insecure,
        )

        project = validate_id(project_id or extra.get("project_id"), "project_id (extra)")
        workspace = _optional_text(extra.get("workspace"))
        if workspace is not None:
            workspace = validate_id(workspace, "workspace (extra)")

        iam_endpoint = _optional_text(extra.get("iam_endpoint"))
        if auth_type is AuthType.PASSWORD:
            if iam_endpoint is None:
                iam_endpoint = DEFAULT_IAM_ENDPOINT_TEMPLATE.format(region=region) if region else GLOBAL_IAM_ENDPOINT
            iam_endpoint = normalise_endpoint(
                iam_endpoint, field_name="extra iam_endpoint", allow_insecure_http=insecure
            )
        login = _optional_text(login)
        secret = password if password else None
        security_token = _optional_text(extra.get("security_token"))
        _refuse_unsendable_credentials(auth_type, login, secret, security_token)
        _require_credentials(auth_type, login, secret, extra)

        verify = _verify(extra.get("verify"))

        retry = RetrySettings(
            max_retries=int(_number(extra.get("max_retries", 3), "max_retries", minimum=0, maximum=20)),
            backoff_factor=_number(extra.get("backoff_factor", 1.0), "backoff_factor", minimum=0, maximum=60),
            max_wait=_number(extra.get("retry_max_wait", 60), "retry_max_wait", minimum=0, maximum=3600),
            total_timeout=_number(extra.get("retry_timeout", 300), "retry_timeout", minimum=0, maximum=86400),
        )
        return cls(
            endpoint=endpoint,
            project_id=project,
            auth_type=auth_type,
            workspace=workspace,
            region=region,
            login=login,
            secret=secret,
            domain_name=_optional_text(extra.get("domain_name")),
            security_token=security_token,
            iam_endpoint=iam_endpoint,
            connect_timeout=_number(extra.get("connect_timeout", 10), "connect_timeout", minimum=0.1, maximum=600),
            read_timeout=_number(extra.get("timeout", 30), "timeout", minimum=0.1, maximum=3600),
            verify=verify,
            retry=retry,
            conn_id=conn_id,
            download_timeout=_number(
                extra.get("download_timeout", 3600), "download_timeout", minimum=0, maximum=7 * 86400
            ),
            rate_limit=_number(extra.get("rate_limit", 40), "rate_limit", minimum=0, maximum=100_000),
        )


_SECRET_FIELDS = {
    AuthType.TOKEN: "password (IAM token)",
    AuthType.PASSWORD: "password",
    AuthType.AKSK: "password (Secret Key)",
}


def _refuse_unsendable_credentials(
    auth_type: AuthType, login: str | None, secret: str | None, security_token: str | None
) -> None:
    """Refuse credentials with control characters, and tokens sent as header values with
    white space, naming the field and never showing the value.

    Such a value can only be a paste mistake, and sending it would fail in the HTTP client
    with an error that quotes the header, that is the secret (``requests`` does).
    """
    login_field = "login (Access Key)" if auth_type is AuthType.AKSK else "login"
    checks = (
        (login_field, login, False),
        (_SECRET_FIELDS[auth_type], secret, auth_type is AuthType.TOKEN),
        ("extra security_token", security_token, True),
    )
    for name, value, header_value in checks:
        if value is None:
            continue
        if _CONTROL.search(value):
            raise InvalidSettingError(
                f"{name} contains a line break or another control character (the value is not shown): "
                "enter it again without them"
            )
        if header_value and any(char.isspace() for char in value):
            raise InvalidSettingError(
                f"{name} contains white space, which a token never does (the value is not shown): enter it again"
            )


def _require_credentials(auth_type: AuthType, login: str | None, secret: str | None, extra: Mapping[str, Any]) -> None:
    if auth_type is AuthType.TOKEN and not secret:
        raise InvalidSettingError("auth_type token needs the IAM token in the password field")
    if auth_type is AuthType.PASSWORD:
        missing = [
            name
            for name, value in (
                ("login (IAM user name)", login),
                ("password", secret),
                ("extra domain_name (account name)", _optional_text(extra.get("domain_name"))),
            )
            if not value
        ]
        if missing:
            raise InvalidSettingError("auth_type password needs " + ", ".join(missing))
    if auth_type is AuthType.AKSK:
        missing = [
            name for name, value in (("login (Access Key)", login), ("password (Secret Key)", secret)) if not value
        ]
        if missing:
            raise InvalidSettingError("auth_type ak_sk needs " + ", ".join(missing))


def resolve_workspace(settings: ConnectionSettings, *candidates: str | None) -> str:
    """The workspace for one call: the first of ``candidates`` that is set, else the connection's."""
    for value in (*candidates, settings.workspace):
        if value is not None and str(value).strip():
            return validate_id(str(value), "workspace")
    raise InvalidSettingError(
        "no workspace: pass workspace= to the hook, sensor or operator, or set extra workspace on the connection"
    )
