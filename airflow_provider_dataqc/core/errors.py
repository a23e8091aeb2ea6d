"""What went wrong with a call, described once for every transport.

Pure: no Airflow import, no I/O. Transports turn what they saw (an HTTP answer
or a network failure) into a :class:`CallFailure`; the hook raises it as
``DataQCApiError``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

#: How many characters of an unexpected body are quoted in an error.
EXCERPT_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACES = re.compile(r"\s+")
_TAGS = re.compile(r"<[^>]{0,200}>")
#: What :func:`printable` escapes: C0 and C1 controls, DEL, the line and paragraph separators
#: and the bidirectional controls that make a terminal show a line in another order.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """``text`` on one line, safe to log: every control character is escaped as Python writes
    it (``\\n``, ``\\x1b``, ``\\u2028``), everything else is kept as it was.

    Used wherever text from the service (its fields, error codes, request IDs, body excerpts)
    becomes part of a log line or an exception message, so an answer can never start a line
    of its own (a forged "Task exited with return code 0"). Escaping twice changes nothing.
    """
    return _UNPRINTABLE.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), str(text))


def excerpt(body: bytes | str | None, limit: int = EXCERPT_CHARS) -> str:
    """A short, printable, single-line quote of a body for an error message.

    Undecodable bytes are replaced, control characters dropped, HTML tags and
    runs of white space collapsed, and the result cut to ``limit`` characters.
    """
    if not body:
        return ""
    raw = body[: limit * 8]
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = printable(_SPACES.sub(" ", _TAGS.sub(" ", _CONTROL.sub("", text))).strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup on any mapping."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def request_id_of(headers: Mapping[str, str]) -> str | None:
    """The ``X-Request-Id`` support asks for (some gateways spell it differently), escaped
    with :func:`printable`: it is quoted in logs and errors."""
    found = header(headers, "X-Request-Id") or header(headers, "X-Apig-Request-Id")
    return printable(found) if found else found


@dataclass(frozen=True)
class CallFailure:
    """One failed call: an HTTP answer that is not a success, or no answer at all.

    ``status_code`` is ``None`` when no answer came (``transport_error`` names
    what happened instead). ``problem`` says in words what is wrong when the
    service gave no ``error_msg`` (for example "the body is not JSON").
    """

    operation: str
    status_code: int | None = None
    error_code: str | None = None
    error_msg: str | None = None
    request_id: str | None = None
    problem: str | None = None
    body_excerpt: str | None = None
    transport_error: str | None = None
    retry_after: float | None = None
    #: True when the request surely did not reach the service's logic
    #: (connection refused, DNS, 429): safe to repeat even a non-idempotent call.
    not_processed: bool = False
    #: True when no answer came for a reason waiting cannot fix (the server's TLS
    #: certificate was rejected, the CA bundle is missing): never retried.
    permanent: bool = False

    def message(self) -> str:
        """One line naming everything that is known, for logs and exceptions (the service's
        text escaped with :func:`printable`)."""
        parts = [f"DataArts Quality {self.operation} call failed"]
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        if self.transport_error:
            parts.append(self.transport_error)
        if self.error_code:
            parts.append(f"error_code={self.error_code}")
        if self.error_msg:
            parts.append(f"error_msg={self.error_msg!r}")
        if self.problem:
            parts.append(self.problem)
        if self.body_excerpt:
            parts.append(f"body: {self.body_excerpt!r}")
        parts.append(f"X-Request-Id={self.request_id or 'none'}")
        parts = [printable(part) for part in parts]
        return ": ".join(parts[:2]) + ("; " + "; ".join(parts[2:]) if len(parts) > 2 else "")


def decode_json(body: bytes) -> tuple[Any, str | None]:
    """Decode a JSON body: ``(value, None)`` or ``(None, what is wrong)``."""
    if not body or not body.strip():
        return None, "the body is empty"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, "the body is not valid UTF-8"
    try:
        return json.loads(text), None
    except (ValueError, RecursionError):
        return None, "the body is not JSON"


def service_error(payload: Any) -> tuple[str | None, str | None]:
    """``(error_code, error_msg)`` from a decoded error body, tolerating the
    gateway's and IAM's shapes (``{"error": {"code", "message"}}``).

    The code is an identifier that logs quote as it is, so it comes escaped with
    :func:`printable`; the message is kept as the service wrote it (messages quote it with ``repr``).
    """
    if not isinstance(payload, Mapping):
        return None, None
    code, msg = payload.get("error_code"), payload.get("error_msg")
    nested = payload.get("error")
    if isinstance(nested, Mapping):
        code = code or nested.get("code") or nested.get("error_code")
        msg = msg or nested.get("message") or nested.get("error_msg")
    return (printable(code) if code not in (None, "") else None, str(msg) if msg not in (None, "") else None)


def failure_from_answer(operation: str, status_code: int, headers: Mapping[str, str], body: bytes) -> CallFailure:
    """Describe an answer with an error status: the service's ``error_code`` and
    ``error_msg`` when its body has them, else what is wrong with the body and a
    short excerpt of it."""
    payload, decode_problem = decode_json(body)
    error_code, error_msg = service_error(payload)
    known = bool(error_code or error_msg)
    return CallFailure(
        operation=operation,
        status_code=status_code,
        error_code=error_code,
        error_msg=error_msg,
        request_id=request_id_of(headers),
        problem=None if known else decode_problem,
        body_excerpt=None if known else excerpt(body) or None,
        retry_after=parse_retry_after(header(headers, "Retry-After")),
        not_processed=status_code == 429,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "nan" and "inf" parse as floats but are no wait: fall back to the client's backoff.
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)
