"""The status record of an import/export task, as answered by the status call.

Pure: no Airflow import, no I/O. The service documents every field as a string;
real answers may differ, so parsing is lenient on everything except the one field
that decides what a sensor does (``status``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any

from airflow_provider_dataqc.core.errors import printable


class TaskStatus(str, Enum):
    """The documented values of ``status``."""

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    TIMEOUT = "TIMEOUT"
    FAILED = "FAILED"
    SUCCESS = "SUCCESS"


class FileStatus(str, Enum):
    """The documented values of ``file_status``."""

    PREPARING = "PREPARING"
    GENERATED = "GENERATED"
    DELETED = "DELETED"
    FAILED = "FAILED"


#: Task states after which the status never changes again.
TERMINAL_STATUSES = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.TIMEOUT})
#: Terminal task states that mean the task did not do its work.
FAILURE_STATUSES = frozenset({TaskStatus.FAILED, TaskStatus.TIMEOUT})
#: File states after which no file will ever be generated.
FILE_FAILURE_STATUSES = frozenset({FileStatus.FAILED, FileStatus.DELETED})
#: Status values the documentation lists; anything else is kept but reported as unknown.
KNOWN_STATUSES = frozenset(s.value for s in TaskStatus)


class StatusPayloadError(ValueError):
    """A status answer that cannot be interpreted (not an object, no usable ``status``)."""


_EPOCH_MS = re.compile(r"^\d{12,14}$")
_EPOCH_S = re.compile(r"^\d{9,11}$")
_PLAIN = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S")


def parse_service_time(value: Any, *, default_tz: timezone = UTC) -> datetime | None:
    """Parse a service timestamp into an aware datetime, or ``None`` when it is not one.

    Accepts epoch milliseconds (13 digits, as number or string), epoch seconds
    (10 digits), ISO-8601 (with ``Z`` or an offset, or naive) and
    ``yyyy-MM-dd HH:mm:ss``. Naive values are read in ``default_tz`` (UTC unless
    the caller knows better). Never raises.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            return _from_epoch(float(value))
        if not isinstance(value, str):
            return None
        text = value.strip()
        if not text:
            return None
        if _EPOCH_MS.match(text) or _EPOCH_S.match(text):
            return _from_epoch(float(text))
        for fmt in _PLAIN:
            try:
                return datetime.strptime(text, fmt).replace(tzinfo=default_tz)
            except ValueError:
                pass
        iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
        parsed = datetime.fromisoformat(iso)
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=default_tz)


def _from_epoch(number: float) -> datetime | None:
    # 13-digit values are milliseconds; 10-digit values are seconds.
    seconds = number / 1000.0 if abs(number) >= 1e11 else number
    if seconds <= 0:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)


def _text(value: Any) -> str | None:
    """Coerce a field the docs type as String; ``None`` and blank stay ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, (int, float, bool)):
        return str(value)
    return None


@dataclass(frozen=True, repr=False)
class ResourceStatus:
    """One answer of ``GET /v2/{project_id}/quality/resource/status/{resource_id}``.

    Every documented field is kept under its API name as a string (or ``None``);
    values outside the documented enums are kept as they came. ``start_time`` and
    ``end_time`` are aware datetimes when the service's value could be parsed;
    the service's own values stay in ``start_time_raw`` / ``end_time_raw`` and
    in ``raw``, the whole decoded answer.
    """

    status: str
    id: str | None = None
    resource_id: str | None = None
    resource_type: str | None = None
    action: str | None = None
    file_name: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    error_msg: str | None = None
    project_id: str | None = None
    domain_id: str | None = None
    user_name: str | None = None
    export_resources: str | None = None
    import_body: str | None = None
    file_status: str | None = None
    start_time_raw: Any = None
    end_time_raw: Any = None
    #: ``X-Request-Id`` of the answer this record came from (not an API field).
    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_api(cls, payload: Any, *, request_id: str | None = None) -> ResourceStatus:
        """Build from a decoded JSON answer.

        :raises StatusPayloadError: when ``payload`` is not an object or has no
            string ``status`` (a number, ``null``, an object ...): deciding
            success from such an answer would be a guess.
        """
        if not isinstance(payload, Mapping):
            raise StatusPayloadError(f"expected a JSON object, got {type(payload).__name__}")
        status = payload.get("status")
        if status is None:
            raise StatusPayloadError("the answer has no 'status' field")
        if not isinstance(status, str) or not status.strip():
            raise StatusPayloadError(f"'status' is not a non-empty string: {status!r:.60}")
        values: dict[str, Any] = {name: _text(payload.get(name)) for name in API_TEXT_FIELDS if name != "status"}
        start_raw, end_raw = payload.get("start_time"), payload.get("end_time")
        return cls(
            status=status.strip().upper(),
            start_time=parse_service_time(start_raw),
            end_time=parse_service_time(end_raw),
            start_time_raw=start_raw,
            end_time_raw=end_raw,
            raw=dict(payload),
            request_id=request_id,
            **values,
        )

    @property
    def is_known_status(self) -> bool:
        """Whether ``status`` is one of the documented values."""
        return self.status in KNOWN_STATUSES

    @property
    def is_terminal(self) -> bool:
        """SUCCESS, FAILED or TIMEOUT: the status will not change again."""
        return self.status in TERMINAL_STATUSES

    @property
    def is_success(self) -> bool:
        """The task finished and did its work."""
        return self.status == TaskStatus.SUCCESS

    @property
    def is_failure(self) -> bool:
        """The task ended as FAILED or TIMEOUT."""
        return self.status in FAILURE_STATUSES

    @property
    def is_file_ready(self) -> bool:
        """The exported file can be downloaded (``file_status`` GENERATED)."""
        return (self.file_status or "").upper() == FileStatus.GENERATED

    @property
    def is_file_lost(self) -> bool:
        """No file will come: ``file_status`` FAILED or DELETED."""
        return (self.file_status or "").upper() in FILE_FAILURE_STATUSES

    def elapsed(self, now: datetime | None = None) -> timedelta | None:
        """How long the task has run: until ``end_time`` if set, else until ``now``."""
        if self.start_time is None:
            return None
        end = self.end_time or now or datetime.now(UTC)
        return max(end - self.start_time, timedelta(0))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable record for XCom and trigger events: API field names,
        times as ISO-8601 strings (or the service's raw value when unparseable)."""
        record: dict[str, Any] = {name: getattr(self, name) for name in API_FIELDS}
        for name in ("start_time", "end_time"):
            parsed: datetime | None = getattr(self, name)
            record[name] = parsed.isoformat() if parsed else _text(getattr(self, f"{name}_raw"))
        record["request_id"] = self.request_id
        return record

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in ("resource_id", "status", "file_status", "action", "resource_type")
        )
        return f"ResourceStatus({shown})"


#: The documented fields of the status answer, in the documentation's order.
API_FIELDS: tuple[str, ...] = (
    "id",
    "resource_id",
    "resource_type",
    "action",
    "file_name",
    "start_time",
    "end_time",
    "status",
    "error_msg",
    "project_id",
    "domain_id",
    "user_name",
    "export_resources",
    "import_body",
    "file_status",
)
API_TEXT_FIELDS: tuple[str, ...] = tuple(f for f in API_FIELDS if f not in {"start_time", "end_time"})


class Outcome(str, Enum):
    """What a waiter does with a status record."""

    WAIT = "wait"
    SUCCESS = "success"
    FAILED = "failed"


@dataclass(frozen=True)
class Assessment:
    """The verdict on one status record, with the words to log."""

    outcome: Outcome
    message: str
    #: The status is not one the documentation lists (log it as a warning).
    unknown_status: bool = False


def describe(status: ResourceStatus) -> str:
    """One line naming the task, its state, the service's error and the request ID (every
    field the service sent escaped with :func:`~.errors.printable`: none can start a line)."""
    parts = [f"resource_id={status.resource_id!r}", f"status={status.status}"]
    if status.file_status:
        parts.append(f"file_status={status.file_status}")
    if status.resource_type or status.action:
        parts.append(f"{status.action or '?'} of {status.resource_type or '?'}")
    if status.error_msg:
        parts.append(f"error_msg={status.error_msg!r}")
    parts.append(f"X-Request-Id={status.request_id or 'none'}")
    return printable(", ".join(parts))


def assess(status: ResourceStatus, *, wait_for_file: bool = False) -> Assessment:
    """Decide whether a waiter is done, failed or keeps waiting.

    FAILED and TIMEOUT fail. SUCCESS succeeds, unless ``wait_for_file``: then
    the file must be GENERATED (FAILED or DELETED fails; anything else waits).
    WAITING, RUNNING and values the documentation does not list keep waiting.
    """
    if status.is_failure:
        return Assessment(Outcome.FAILED, f"DataArts Quality task ended {status.status}: {describe(status)}")
    if status.is_success:
        if not wait_for_file or status.is_file_ready:
            return Assessment(Outcome.SUCCESS, f"DataArts Quality task succeeded: {describe(status)}")
        if status.is_file_lost:
            return Assessment(
                Outcome.FAILED,
                f"DataArts Quality task succeeded but its file is {printable(status.file_status)}: {describe(status)}",
            )
        return Assessment(Outcome.WAIT, f"task succeeded, waiting for its file: {describe(status)}")
    elapsed = status.elapsed()
    running = f" (running for {_human(elapsed)})" if elapsed is not None else ""
    if not status.is_known_status:
        return Assessment(
            Outcome.WAIT,
            f"undocumented status {status.status!r}, still waiting{running}: {describe(status)}",
            unknown_status=True,
        )
    return Assessment(Outcome.WAIT, f"DataArts Quality task is {status.status}{running}: {describe(status)}")


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
