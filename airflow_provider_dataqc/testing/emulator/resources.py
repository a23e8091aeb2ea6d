"""Scripted resources: the export/import tasks the status call knows, and their life cycles.

A task moves ONE step per status poll that it answers; the last step repeats. Resource IDs
nobody created follow the naming convention of :data:`~.defaults.CONVENTION_KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_dataqc.core.api import ExportType
from airflow_provider_dataqc.core.status import API_FIELDS, TERMINAL_STATUSES, FileStatus, TaskStatus
from airflow_provider_dataqc.testing.emulator.defaults import (
    CONVENTION,
    FAILED_MESSAGE,
    MAX_CONVENTION_STEPS,
    TIMEOUT_MESSAGE,
)
from airflow_provider_dataqc.testing.emulator.state import EmulatorState, now_ms

#: Keys of a scripted step that shape the HTTP answer rather than a status field.
STEP_ANSWER_KEYS = frozenset({"http_status", "raw_body", "content_type", "headers", "json", "delay"})
_STEP_KEYS = STEP_ANSWER_KEYS | set(API_FIELDS) | {"error_code"}
_RESOURCE_TYPES = {
    ExportType.RULE_TEMPLATE.value: "RULE_TEMPLATE",
    ExportType.QUALITY_TASK.value: "QUALITY_TASK",
    ExportType.CONSISTENCY_TASK.value: "CONSISTENCY_TASK",
    ExportType.REPORT.value: "REPORT",
}


def normalise_step(step: str | Mapping[str, Any]) -> dict[str, Any]:
    """A scripted step as a dict; a string is a ``status``."""
    if isinstance(step, str):
        return {"status": step}
    if not isinstance(step, Mapping):
        raise TypeError(f"a step must be a status string or a mapping, not {type(step).__name__}")
    unknown = sorted(set(step) - _STEP_KEYS)
    if unknown:
        raise ValueError(f"unknown step keys {unknown}: use status fields or {sorted(STEP_ANSWER_KEYS)}")
    result = dict(step)
    if isinstance(result.get("raw_body"), str):
        result["raw_body"] = result["raw_body"].encode("utf-8")
    return result


@dataclass
class Resource:
    """One task the status call knows: base fields plus its life cycle."""

    resource_id: str
    workspace: str | None  # None: answered in every workspace (conventions, unscoped scripts)
    base: dict[str, Any]
    steps: list[dict[str, Any]]
    kind: str  # "export", "upload", "convention", "scripted"
    position: int = 0
    last: dict[str, Any] | None = None
    end_time: int | None = None
    manifest: dict[str, Any] | None = None
    upload: dict[str, Any] | None = None
    on_success: Callable[[], None] | None = None

    def visible_in(self, workspace: str | None) -> bool:
        return self.workspace is None or self.workspace == workspace

    @property
    def downloadable(self) -> bool:
        """The export succeeded and its file is generated (as last answered)."""
        last = self.last
        return (
            last is not None
            and self.base.get("action") == "EXPORT"
            and last.get("status") == TaskStatus.SUCCESS.value
            and last.get("file_status") == FileStatus.GENERATED.value
        )


def convention_steps(kind: str, count: int) -> list[dict[str, Any]]:
    """The life cycle of a convention ID ``<kind>-<count>``."""
    count = min(count, MAX_CONVENTION_STEPS)
    pending: list[dict[str, Any]] = [{"status": "WAITING"}] + [{"status": "RUNNING"}] * (count - 1) if count else []
    generated = {"status": "SUCCESS", "file_status": "GENERATED"}
    if kind == "success":
        return [*pending, generated]
    if kind == "failed":
        return [*pending, {"status": "FAILED", "error_msg": FAILED_MESSAGE}]
    if kind == "timeout":
        return [*pending, {"status": "TIMEOUT", "error_msg": TIMEOUT_MESSAGE}]
    if kind == "filefail":
        return [*pending, {"status": "SUCCESS", "file_status": "FAILED"}]
    if kind == "slowfile":
        return [{"status": "SUCCESS", "file_status": "PREPARING"}] * count + [generated]
    return [{"status": "PAUSED"}] * count + [generated]  # "unknown"


class ResourcesMixin(EmulatorState):
    """Creating, scripting and reading the export/import tasks."""

    def script(
        self, resource_id: str, steps: Sequence[str | Mapping[str, Any]], *, workspace: str | None = None
    ) -> None:
        """Set the life cycle of ``resource_id``: one step per answered status poll, the last repeats.

        A step is a status string (``"RUNNING"``) or a mapping overriding any status field
        (``{"status": "SUCCESS", "file_status": "PREPARING"}``); ``file_status`` / ``error_msg`` /
        ``end_time`` get sensible defaults. A mapping may instead shape the answer: ``http_status``
        (a non-200 gets a DQC error body from ``error_code``/``error_msg`` unless a body is given),
        ``raw_body`` (bytes or str) with ``content_type``, ``json`` (any JSON value as the whole body),
        ``headers`` (extra headers), ``delay`` (seconds to wait first). Every scripted step is used up
        by the poll that answers it, whatever its HTTP status. An existing resource (e.g. a real
        export) keeps its fields and restarts on the new steps; a new one is an export of rule
        templates visible in ``workspace`` (every workspace when ``None``).
        """
        normalised = [normalise_step(step) for step in steps]
        if not normalised:
            raise ValueError("a script needs at least one step")
        with self._lock:
            existing = self._resources.get(resource_id)
            if existing is not None:
                existing.steps, existing.position, existing.last, existing.end_time = normalised, 0, None, None
                if workspace is not None:
                    existing.workspace = workspace
                return
            base = self._base(resource_id, "rule-template", "EXPORT", f"rule-template-{resource_id}.zip")
            self._resources[resource_id] = Resource(resource_id, workspace, base, normalised, "scripted")

    def exports(self, workspace: str) -> list[dict[str, Any]]:
        """Export requests accepted in ``workspace``: resource_id, type, is_select_all, resources, ..."""
        with self._lock:
            return [dict(item) for item in self._exports.get(workspace, [])]

    def uploads(self, workspace: str) -> list[dict[str, Any]]:
        """Files uploaded to ``workspace``: resource_id, type, file_name, size, content (bytes)."""
        with self._lock:
            return [dict(item) for item in self._uploads.get(workspace, [])]

    def imported(self, workspace: str) -> list[dict[str, Any]]:
        """Resources imported into ``workspace`` (visible once the import's status answered SUCCESS):
        name, type, id, directory, topic, source_workspace, upload_resource_id, strategy, revision."""
        with self._lock:
            return [dict(item) for item in self._imported.get(workspace, {}).values()]

    # ---------------------------------------------------------------- internals
    def _base(self, resource_id: str, export_type: str, action: str, file_name: str) -> dict[str, Any]:
        return {
            "id": f"{self._rng.getrandbits(128):032x}",
            "resource_id": resource_id,
            "resource_type": _RESOURCE_TYPES.get(export_type, "RULE_TEMPLATE"),
            "action": action,
            "file_name": file_name,
            "start_time": now_ms(),
            "end_time": None,
            "status": TaskStatus.WAITING.value,
            "error_msg": None,
            "project_id": self.project_id,
            "domain_id": self.domain_id,
            "user_name": self.user[0],
            "export_resources": None,
            "import_body": None,
            "file_status": None,
        }

    def _new_resource_id(self) -> str:
        with self._lock:
            return f"{self._rng.getrandbits(128):032x}"

    def _lookup(self, resource_id: str, workspace: str | None) -> Resource | None:
        """The resource ``resource_id`` as seen from ``workspace`` (creating convention IDs)."""
        resource = self._resources.get(resource_id)
        if resource is None:
            match = CONVENTION.match(resource_id)
            if match is None:
                return None
            kind, count = match.group(1), int(match.group(2))
            base = self._base(resource_id, "rule-template", "EXPORT", f"{resource_id}.zip")
            base["export_resources"] = "[1, 2, 3]"
            resource = Resource(resource_id, None, base, convention_steps(kind, count), "convention")
            resource.manifest = self._manifest(resource_id, "rule-template", [1, 2, 3], None)
            self._resources[resource_id] = resource
        return resource if resource.visible_in(workspace) else None

    def _manifest(
        self, resource_id: str, export_type: str, resources: Sequence[int], workspace: str | None
    ) -> dict[str, Any]:
        ids = list(resources) or [1, 2, 3]
        kind = export_type.replace("-", "_")
        return {
            "emulator": "dataqc",
            "resource_id": resource_id,
            "type": export_type,
            "workspace": workspace,
            "items": [{"id": rid, "name": f"{kind}_{rid}"} for rid in ids],
            "topics": ["Emulated Topic"],
            "directories": [f"/emulator/{export_type}"],
            "connections": [{"name": "dws_emulated", "type": "DWS"}],
        }

    def _record_from(self, resource: Resource, step: Mapping[str, Any]) -> dict[str, Any]:
        """The status record a step answers (defaults filled in)."""
        record = dict(resource.base)
        for key, value in step.items():
            if key not in STEP_ANSWER_KEYS and key != "error_code":
                record[key] = value
        status = record.get("status")
        if "file_status" not in step and record.get("action") == "EXPORT":
            if status == "SUCCESS":
                record["file_status"] = FileStatus.GENERATED.value
            elif status in ("FAILED", "TIMEOUT"):
                record["file_status"] = FileStatus.FAILED.value
            else:
                record["file_status"] = FileStatus.PREPARING.value
        if "error_msg" not in step:
            record["error_msg"] = {"FAILED": FAILED_MESSAGE, "TIMEOUT": TIMEOUT_MESSAGE}.get(str(status))
        if "end_time" not in step and status in TERMINAL_STATUSES:
            if resource.end_time is None:
                resource.end_time = max(now_ms(), int(resource.base["start_time"]))
            record["end_time"] = resource.end_time
        return record

    def _peek(self, resource: Resource) -> dict[str, Any]:
        """The record the next poll would answer, without moving the life cycle."""
        if not resource.steps:
            return dict(resource.base)
        step = resource.steps[min(resource.position, len(resource.steps) - 1)]
        return self._record_from(resource, step)
