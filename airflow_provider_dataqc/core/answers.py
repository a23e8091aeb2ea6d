"""Reading DataArts Quality's answers: bodies kept within bounds, checked complete, and
turned into the values the hook returns (or into a :class:`CallFailure` naming what is wrong).

Pure: no Airflow import, no I/O. Both transports (``requests`` in the hook, ``aiohttp`` in
the async hook) read bodies with :class:`CappedBody` and check them with :func:`shortfall`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_dataqc.core.calls import Answer
from airflow_provider_dataqc.core.errors import (
    CallFailure,
    decode_json,
    excerpt,
    header,
    printable,
    request_id_of,
    service_error,
)
from airflow_provider_dataqc.core.status import ResourceStatus, StatusPayloadError

#: Non-streamed answers larger than this are cut and reported, never loaded whole.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
#: ``error_code`` values that mean success (the docs' example of a processed request).
SUCCESS_ERROR_CODES = frozenset({"DQC.0000"})


class CappedBody:
    """Collects a body piece by piece, keeping at most ``limit`` bytes.

    :meth:`add` returns ``True`` once the body is over the limit: stop reading, the
    answer is reported as cut (``truncated``), never parsed as a whole.
    """

    __slots__ = ("_parts", "limit", "size")

    def __init__(self, limit: int = MAX_ANSWER_BYTES) -> None:
        self.limit = limit
        self.size = 0
        self._parts: list[bytes] = []

    def add(self, chunk: bytes) -> bool:
        self._parts.append(chunk)
        self.size += len(chunk)
        return self.size > self.limit

    @property
    def truncated(self) -> bool:
        return self.size > self.limit

    def body(self) -> bytes:
        data = b"".join(self._parts)
        return data[: self.limit] if self.truncated else data


def shortfall(headers: Mapping[str, str], received: int) -> str | None:
    """``"after N of M bytes"`` when an answer announced a ``Content-Length`` that the
    bytes received do not reach (or pass), else ``None``.

    With a ``Content-Encoding`` the announced length counts encoded bytes, which the
    decoded body cannot be compared with: not checked here.
    """
    expected = (header(headers, "Content-Length") or "").strip()
    encoded = (header(headers, "Content-Encoding") or "identity").strip().lower() != "identity"
    if encoded or not expected.isdigit() or int(expected) == received:
        return None
    return f"after {received} of {expected} bytes"


def framed(headers: Mapping[str, str]) -> bool:
    """Whether an answer says where it ends (``Content-Length`` or chunked framing): one that
    does not ends when the connection closes, so a cut cannot be told from the end."""
    length = (header(headers, "Content-Length") or "").strip()
    chunked = "chunked" in (header(headers, "Transfer-Encoding") or "").lower()
    return length.isdigit() or chunked


def looks_like_an_error_page(head: bytes, headers: Mapping[str, str]) -> bool:
    """Whether a 2xx download is not the file but a JSON document or an HTML page in its place
    (a gateway's maintenance page, ``{"error_code": "DQC.1017", ...}``). ``head``: its first bytes."""
    content_type = (header(headers, "Content-Type") or "").split(";", 1)[0].strip().lower()
    start = head.lstrip()[:15].lower()
    if content_type in ("application/json", "text/json", "text/html") or content_type.endswith("+json"):
        return True
    return start.startswith((b"{", b"<!doctype html", b"<html"))


def not_the_file(answer: Answer, operation: str = "download") -> CallFailure:
    """The failure for a 2xx download whose body is an error document, not the file."""
    payload, _ = decode_json(answer.body)
    error_code, error_msg = service_error(payload)
    return CallFailure(
        operation=operation,
        status_code=answer.status_code,
        error_code=error_code,
        error_msg=error_msg,
        request_id=request_id_of(answer.headers),
        problem="a success status but the body is an error document (JSON or HTML), not the exported file",
        body_excerpt=None if error_code or error_msg else excerpt(answer.body) or None,
    )


def read_json_object(answer: Answer, operation: str) -> dict[str, Any] | CallFailure:
    """The JSON object of a successful answer, or a failure that names what is wrong
    with it (empty, cut, not UTF-8, not JSON, not an object, or a 200 carrying an
    ``error_code``) and quotes a short, sanitised excerpt."""

    def bad(problem: str, **known: Any) -> CallFailure:
        return CallFailure(
            operation=operation,
            status_code=answer.status_code,
            request_id=request_id_of(answer.headers),
            problem=problem,
            body_excerpt=excerpt(answer.body) or None,
            **known,
        )

    # The message already names the HTTP status: say what is wrong with the body.
    if answer.truncated:
        return bad("a success status but the body is larger than the client reads; cut")
    payload, problem = decode_json(answer.body)
    if problem is not None:
        return bad(f"a success status but {problem}")
    if not isinstance(payload, dict):
        return bad(f"a success status but the JSON body is a {type(payload).__name__}, not an object")
    error_code, error_msg = service_error(payload)
    if error_code and error_code not in SUCCESS_ERROR_CODES:
        return bad(
            "a success status but the body carries an error",
            error_code=error_code,
            error_msg=error_msg,
        )
    return payload


def read_status(answer: Answer, operation: str = "status") -> ResourceStatus | CallFailure:
    """A 2xx status answer as a :class:`ResourceStatus`, or the failure saying why it is not one."""
    payload = read_json_object(answer, operation)
    if isinstance(payload, CallFailure):
        return payload
    request_id = request_id_of(answer.headers)
    try:
        return ResourceStatus.from_api(payload, request_id=request_id)
    except StatusPayloadError as err:
        return CallFailure(
            operation=operation,
            status_code=answer.status_code,
            request_id=request_id,
            problem=f"the answer is not a status record: {err}",
        )


def read_resource_id(payload: Mapping[str, Any]) -> str | None:
    """The ``resource_id`` of an export or upload answer (a string or a number), or ``None``."""
    value = payload.get("resource_id")
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        text = str(value)
        # An ID with control characters could never be polled (paths refuse it): not an ID.
        return text if text == printable(text) else None
    return None


@dataclass(frozen=True)
class UploadResult:
    """What the upload call answered: the new ``resource_id`` and what may need mapping on import."""

    resource_id: str
    topics: list[Any] = field(default_factory=list)
    matched_topics: list[Any] = field(default_factory=list)
    directories: list[Any] = field(default_factory=list)
    queues: list[Any] = field(default_factory=list)
    connections: list[Any] = field(default_factory=list)

    @classmethod
    def from_api(cls, resource_id: str, payload: Mapping[str, Any]) -> UploadResult:
        def listed(name: str) -> list[Any]:
            value = payload.get(name)
            return list(value) if isinstance(value, list) else []

        return cls(
            resource_id=resource_id,
            topics=listed("topics"),
            matched_topics=listed("matched_topics"),
            directories=listed("directories"),
            queues=listed("queues"),
            connections=listed("connections"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "resource_id": self.resource_id,
            "topics": self.topics,
            "matched_topics": self.matched_topics,
            "directories": self.directories,
            "queues": self.queues,
            "connections": self.connections,
        }


@dataclass(frozen=True)
class DownloadResult:
    """A completed download: where it is, its size and SHA-256, and the server's file name."""

    destination: str
    size: int
    sha256: str
    file_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "size": self.size,
            "sha256": self.sha256,
            "file_name": self.file_name,
        }


def judge_connection_test(failure: CallFailure | None) -> tuple[bool, str]:
    """The verdict of a connection test: a status call for a resource that cannot exist.

    The service's own error codes (``DQC.*``) come from behind the API gateway, so any answer
    carrying one proves the credentials passed it, whatever its status (the status page
    documents errors as HTTP 500) — unless it is 401/403. A 401/403, or a gateway code about
    authentication (``APIGW.03xx``, but not ``APIGW.0308``, throttling), proves they did not.
    """
    if failure is None:
        return True, "Connection works"
    code = (failure.error_code or "").upper()
    if failure.status_code in (401, 403) or (code.startswith("APIGW.03") and code != "APIGW.0308"):
        return False, f"Credentials rejected: {failure.message()}"
    if failure.status_code is not None and code and not code.startswith("APIGW"):
        if "workspace" in (failure.error_msg or "").lower():
            return False, f"Credentials accepted, but the workspace was refused: {failure.message()}"
        return True, (
            "Connection works: the credentials were accepted (a status query for a resource that cannot "
            f"exist was answered HTTP {failure.status_code} {printable(code)}: {printable(failure.error_msg)})"
        )
    return False, failure.message()
