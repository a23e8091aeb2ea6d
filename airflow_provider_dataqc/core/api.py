"""The DataArts Quality calls, each described once as a small :class:`ApiRequest` value.

Pure: no Airflow import, no I/O. A request is built here, authenticated by
:mod:`.auth` and sent by whichever transport is at hand (``requests`` in the
hook, ``aiohttp`` in the trigger); the local emulator serves the same paths.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from enum import Enum
from typing import Any

from airflow_provider_dataqc.core.settings import InvalidSettingError, encode_path_id, validate_id

QUALITY_RESOURCE_PATH = "/v2/{project_id}/quality/resource"
IAM_TOKEN_PATH = "/v3/auth/tokens"


class ExportType(str, Enum):
    """Resource types that can be exported (``type`` of the export call)."""

    RULE_TEMPLATE = "rule-template"
    QUALITY_TASK = "quality-task"
    CONSISTENCY_TASK = "consistency-task"
    REPORT = "report"


class ImportType(str, Enum):
    """Resource types that can be uploaded and imported."""

    RULE_TEMPLATE = "rule-template"
    QUALITY_TASK = "quality-task"
    CONSISTENCY_TASK = "consistency-task"


class ImportStrategy(str, Enum):
    """What an import does with a resource whose name already exists."""

    SKIP = "SKIP"
    OVERRIDE = "OVERRIDE"
    TERMINATION = "TERMINATION"


class ObsType(str, Enum):
    """Report storage kinds (``obs_service_type`` / ``obs_type``)."""

    TECHNOLOGY = "technology"
    BUSINESS = "business"


def choose(enum: type[Enum], value: Any, name: str) -> Any:
    """``value`` as a member of ``enum`` (by value, case-insensitively), or an error listing the allowed values."""
    if isinstance(value, enum):
        return value
    text = str(value.value if isinstance(value, Enum) else value).strip()
    for member in enum:
        if str(member.value).lower() == text.lower():
            return member
    allowed = ", ".join(str(m.value) for m in enum)
    raise InvalidSettingError(f"{name} {value!r:.60} is not one of: {allowed}")


@dataclass(frozen=True)
class ApiRequest:
    """One call, before authentication.

    ``path`` is already percent-encoded; ``query`` is a sequence of string pairs
    sent (and signed) in that canonical form; ``idempotent`` tells the retry
    policy whether the call may be repeated after the service may have acted.
    """

    operation: str
    method: str
    path: str
    workspace: str | None
    query: tuple[tuple[str, str], ...] = ()
    body: bytes | None = field(default=None, repr=False)
    content_type: str | None = "application/json"
    idempotent: bool = True
    #: Multipart uploads are signed with ``UNSIGNED-PAYLOAD`` as the official SDK does.
    unsigned_payload: bool = False
    #: The answer is a file: transports stream it instead of reading it whole.
    stream: bool = False
    #: Send to the IAM endpoint instead of the DataArts one (token requests).
    iam: bool = False
    extra_headers: Mapping[str, str] = field(default_factory=dict)


def _resource_path(project_id: str, suffix: str) -> str:
    return QUALITY_RESOURCE_PATH.format(project_id=validate_id(project_id, "project_id")) + suffix


def status_request(project_id: str, workspace: str, resource_id: str) -> ApiRequest:
    """``GET /v2/{project_id}/quality/resource/status/{resource_id}``."""
    encoded = encode_path_id(resource_id, "resource_id")
    return ApiRequest("status", "GET", _resource_path(project_id, f"/status/{encoded}"), workspace)


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _resource_ids(resources: Iterable[Any] | None) -> list[int]:
    ids: list[int] = []
    for item in resources or ():
        try:
            if isinstance(item, bool):
                raise ValueError
            number = int(str(item).strip()) if isinstance(item, str) else int(item)
        except (TypeError, ValueError):
            raise InvalidSettingError(f"resources must be integer IDs; {item!r:.40} is not one") from None
        ids.append(number)
    return ids


def export_request(
    project_id: str,
    workspace: str,
    resource_type: Any,
    *,
    resources: Iterable[Any] | None = None,
    select_all: bool = False,
    export_mode: str | None = None,
    obs_service_type: Any = None,
) -> ApiRequest:
    """``POST …/export``: starts an export; the answer names the new task's ``resource_id``."""
    kind = choose(ExportType, resource_type, "resource_type")
    ids = _resource_ids(resources)
    if not ids and not select_all:
        raise InvalidSettingError("export needs resources (a list of IDs) or select_all=True")
    body: dict[str, Any] = {"type": kind.value, "is_select_all": bool(select_all), "resources": ids}
    if export_mode is not None or obs_service_type is not None:
        if kind is not ExportType.REPORT:
            raise InvalidSettingError("export_mode and obs_service_type apply to resource_type 'report' only")
        if export_mode is not None:
            if str(export_mode).lower() != "obs":
                raise InvalidSettingError(f"export_mode {export_mode!r:.40} is not one of: obs (or None for local)")
            body["export_mode"] = "obs"
        if obs_service_type is not None:
            body["obs_service_type"] = choose(ObsType, obs_service_type, "obs_service_type").value
    return ApiRequest(
        "export", "POST", _resource_path(project_id, "/export"), workspace, body=_json(body), idempotent=False
    )


def upload_request(
    project_id: str,
    workspace: str,
    resource_type: Any,
    *,
    file_name: str,
    content: bytes,
    boundary: str | None = None,
) -> ApiRequest:
    """``POST …/upload``: a ``multipart/form-data`` body with the fields ``type`` and ``file``."""
    kind = choose(ImportType, resource_type, "resource_type")
    boundary = boundary or uuid.uuid4().hex
    # A file name cannot break out of its quoted header value.
    quoted = (os.path.basename(file_name) or "resources.zip").translate(_UNSAFE_IN_QUOTES)
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\n{kind.value}\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quoted}"\r\n'.encode(),
            b"Content-Type: application/octet-stream\r\n\r\n",
            content,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    return ApiRequest(
        "upload",
        "POST",
        _resource_path(project_id, "/upload"),
        workspace,
        body=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        idempotent=False,
        unsigned_payload=True,
    )


_UNSAFE_IN_QUOTES = str.maketrans({'"': "_", "\r": "_", "\n": "_", "\\": "_"})


def file_name_from_disposition(disposition: str | None) -> str | None:
    """The file name of a ``Content-Disposition`` header (``filename*=`` or ``filename=``),
    without any directory part, or ``None``."""
    if not disposition:
        return None
    message = Message()
    message["content-disposition"] = disposition
    name = message.get_filename()
    return os.path.basename(name) or None if name else None


MappingInput = Mapping[str, str] | Sequence[Mapping[str, Any]] | None


def mapping_entries(value: MappingInput, name: str) -> list[dict[str, str]]:
    """Mappings for the import call, from ``{old: new}`` or a list of
    ``{"old_value", "new_value", "mapping_value"}``."""
    if value is None:
        return []
    entries: list[dict[str, str]] = []
    if isinstance(value, Mapping):
        for old, new in value.items():
            entries.append({"old_value": str(old), "new_value": str(new), "mapping_value": ""})
        return entries
    if isinstance(value, (str, bytes)):
        raise InvalidSettingError(f"{name} must be a dict or a list of dicts, not a string")
    for item in value:
        if not isinstance(item, Mapping) or "old_value" not in item:
            raise InvalidSettingError(
                f"{name} entries need old_value (and new_value or mapping_value); got {item!r:.80}"
            )
        entries.append(
            {
                "old_value": str(item["old_value"]),
                "new_value": str(item.get("new_value") or ""),
                "mapping_value": str(item.get("mapping_value") or ""),
            }
        )
    return entries


def import_request(
    project_id: str,
    workspace: str,
    resource_id: str,
    resource_type: Any,
    *,
    strategy: Any = ImportStrategy.SKIP,
    directories: MappingInput = None,
    topics: MappingInput = None,
    connections: MappingInput = None,
    queues: MappingInput = None,
) -> ApiRequest:
    """``POST …/import``: imports a previously uploaded file (answer 204, no body)."""
    encode_path_id(resource_id, "resource_id")
    body = {
        "resource_id": str(resource_id),
        "type": choose(ImportType, resource_type, "resource_type").value,
        "strategy": choose(ImportStrategy, strategy, "strategy").value,
        "directories": mapping_entries(directories, "directories"),
        "topics": mapping_entries(topics, "topics"),
        "connections": mapping_entries(connections, "connections"),
        "queues": mapping_entries(queues, "queues"),
    }
    return ApiRequest(
        "import", "POST", _resource_path(project_id, "/import"), workspace, body=_json(body), idempotent=False
    )


def download_request(project_id: str, workspace: str, resource_id: str, *, obs_type: Any = None) -> ApiRequest:
    """``GET …/download?resource_id=…[&obs_type=…]``: the exported file, streamed."""
    encode_path_id(resource_id, "resource_id")
    query: list[tuple[str, str]] = [("resource_id", str(resource_id))]
    if obs_type is not None:
        query.append(("obs_type", choose(ObsType, obs_type, "obs_type").value))
    return ApiRequest(
        "download", "GET", _resource_path(project_id, "/download"), workspace, query=tuple(query), stream=True
    )


def iam_token_request(*, user: str, password: str, domain: str, project_id: str) -> ApiRequest:
    """``POST /v3/auth/tokens`` (password method, project scope) on the IAM endpoint."""
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "password": password, "domain": {"name": domain}}},
            },
            "scope": {"project": {"id": project_id}},
        }
    }
    return ApiRequest("IAM token", "POST", IAM_TOKEN_PATH, None, body=_json(body), iam=True)


def check_download_type(resource_type: str, obs_type: str | None) -> None:
    """Refuse a download whose ``obs_type`` does not fit the exported ``resource_type`` (before any
    request): reports need one, other types take none.

    :raises InvalidSettingError: naming what is wrong and what is allowed.
    """
    kind = choose(ExportType, resource_type, "resource_type")
    if kind is ExportType.REPORT and obs_type is None:
        allowed = ", ".join(member.value for member in ObsType)
        raise InvalidSettingError(f"obs_type is required to download a report; one of: {allowed}")
    if kind is not ExportType.REPORT and obs_type is not None:
        raise InvalidSettingError(f"obs_type applies to reports only, not to {kind.value!r}")
