"""The handlers of the five import/export calls: status, export, upload, import, download.

Each one validates its request on its own, from the API reference (``dataarts-quality-api.md``),
using only core's vocabulary (paths and enums), never the client's request builders: a fake
that shares the client's bugs proves nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from airflow_provider_dataqc.core.api import ExportType, ImportStrategy, ImportType, ObsType
from airflow_provider_dataqc.testing.emulator.defaults import NOT_FOUND_CODE, NOT_FOUND_MESSAGE
from airflow_provider_dataqc.testing.emulator.files import ExportFile, parse_multipart, read_manifest
from airflow_provider_dataqc.testing.emulator.resources import (
    STEP_ANSWER_KEYS,
    Resource,
    ResourcesMixin,
    normalise_step,
)
from airflow_provider_dataqc.testing.emulator.state import Exchange, json_object, now_ms, stable_id

_EXPORT_TYPES = frozenset(t.value for t in ExportType)
_IMPORT_TYPES = frozenset(t.value for t in ImportType)
_STRATEGIES = frozenset(s.value for s in ImportStrategy)
_OBS_TYPES = frozenset(o.value for o in ObsType)
_SAMPLE_TOPICS = ("Data Quality",)
_SAMPLE_DIRECTORIES = ("/quality/rules",)
_SAMPLE_CONNECTIONS = ({"name": "dws_default", "type": "DWS"},)


class HandlersMixin(ResourcesMixin):
    """Answers to the import/export calls, once a request passed routing, faults and access checks."""

    # ---------------------------------------------------------------- status
    async def _status(self, resource_id: str, workspace: str | None, request_id: str, *, advance: bool) -> web.Response:
        with self._lock:
            resource = self._lookup(resource_id, workspace)
            if resource is None:
                return self._not_found(request_id)
            if not resource.steps:  # an upload not imported yet: waits, never advances
                return self._json(200, dict(resource.base), request_id)
            index = min(resource.position, len(resource.steps) - 1)
            step = resource.steps[index]
            if advance:
                resource.position = index + 1
            raw = STEP_ANSWER_KEYS.intersection(step)
            if not raw:
                record = self._record_from(resource, step)
                resource.last = record
                callback = resource.on_success if record["status"] == "SUCCESS" and advance else None
                if callback is not None:
                    resource.on_success = None
                    callback()
                return self._json(200, record, request_id)
            record = self._record_from(resource, step)
        return await self._raw_step(step, record, request_id)

    async def _raw_step(self, step: Mapping[str, Any], record: dict[str, Any], request_id: str) -> web.Response:
        delay = float(step.get("delay") or 0)
        if delay > 0:
            await asyncio.sleep(delay)
        status = int(step.get("http_status", 200))
        extra = dict(step.get("headers") or {})
        if "raw_body" in step:
            response = web.Response(status=status, body=step["raw_body"])
            response.headers["Content-Type"] = str(step.get("content_type") or "application/octet-stream")
        elif "json" in step:
            response = web.Response(status=status, body=json.dumps(step["json"]).encode("utf-8"))
            response.headers["Content-Type"] = str(step.get("content_type") or "application/json")
        elif status != 200:
            code = str(step.get("error_code") or ("DQC.0500" if status >= 500 else "DQC.0001"))
            message = str(step.get("error_msg") or "Emulated error")
            return self._json(status, {"error_code": code, "error_msg": message}, request_id, extra)
        else:
            return self._json(200, record, request_id, extra)
        response.headers["X-Request-Id"] = request_id
        response.headers.update(extra)
        return response

    # ---------------------------------------------------------------- export
    def _export(self, body: bytes, workspace: str | None, request_id: str) -> web.Response:
        def bad(message: str) -> web.Response:
            return self._error(400, "DQC.0001", f"Invalid parameter: {message}", request_id)

        payload = json_object(body)
        if isinstance(payload, str):
            return bad(payload)
        export_type = payload.get("type")
        if export_type not in _EXPORT_TYPES:
            return bad(f"type must be one of {sorted(_EXPORT_TYPES)}")
        select_all = payload.get("is_select_all", False)
        if select_all is None:
            select_all = False
        if not isinstance(select_all, bool):
            return bad("is_select_all must be a boolean")
        resources = payload.get("resources") or []
        if not isinstance(resources, list) or not all(
            isinstance(item, int) and not isinstance(item, bool) for item in resources
        ):
            return bad("resources must be an array of integer IDs")
        if not resources and not select_all:
            return bad("resources is required when is_select_all is false")
        export_mode, obs_service_type = payload.get("export_mode"), payload.get("obs_service_type")
        if export_type != ExportType.REPORT.value and (export_mode is not None or obs_service_type is not None):
            return bad("export_mode and obs_service_type apply to reports only")
        if export_mode not in (None, "obs"):
            return bad("export_mode must be null or 'obs'")
        if obs_service_type is not None and obs_service_type not in _OBS_TYPES:
            return bad(f"obs_service_type must be one of {sorted(_OBS_TYPES)}")
        steps = [normalise_step(step) for step in self.export_script] or [{"status": "SUCCESS"}]
        resource_id = self._new_resource_id()
        with self._lock:
            base = self._base(resource_id, export_type, "EXPORT", f"{export_type}-{resource_id}.zip")
            base["export_resources"] = json.dumps(resources)
            resource = Resource(resource_id, workspace, base, steps, "export")
            resource.manifest = self._manifest(resource_id, export_type, resources, workspace)
            self._resources[resource_id] = resource
            self._exports.setdefault(str(workspace), []).append(
                {
                    "resource_id": resource_id,
                    "type": export_type,
                    "is_select_all": select_all,
                    "resources": list(resources),
                    "export_mode": export_mode,
                    "obs_service_type": obs_service_type,
                }
            )
        return self._json(200, {"resource_id": resource_id}, request_id)

    # ---------------------------------------------------------------- upload and import
    def _upload(self, content_type: str, body: bytes, workspace: str | None, request_id: str) -> web.Response:
        def bad(message: str) -> web.Response:
            return self._error(400, "DQC.0001", f"Invalid parameter: {message}", request_id)

        try:
            fields = parse_multipart(content_type, body)
        except ValueError as err:
            return bad(str(err))
        kind = fields.get("type")
        file = fields.get("file")
        if kind is None or kind[1].decode("utf-8", "replace") not in _IMPORT_TYPES:
            return bad(f"type must be one of {sorted(_IMPORT_TYPES)}")
        if file is None or file[0] is None:
            return bad("file is required (a file part named 'file')")
        import_type = kind[1].decode("utf-8")
        file_name, content = file[0] or "upload.zip", file[1]
        manifest = read_manifest(content)
        if manifest is not None:
            topics = [str(t) for t in manifest.get("topics", [])]
            directories = [str(d) for d in manifest.get("directories", [])]
            connections = [dict(c) for c in manifest.get("connections", []) if isinstance(c, dict)]
            items = [dict(i) for i in manifest.get("items", []) if isinstance(i, dict)]
        else:
            topics, directories = list(_SAMPLE_TOPICS), list(_SAMPLE_DIRECTORIES)
            connections = [dict(c) for c in _SAMPLE_CONNECTIONS]
            items = [{"id": 1, "name": "null_check"}, {"id": 2, "name": "row_count"}]
        resource_id = self._new_resource_id()
        with self._lock:
            base = self._base(resource_id, import_type, "IMPORT", file_name)
            resource = Resource(resource_id, workspace, base, [], "upload")
            resource.manifest = manifest
            resource.upload = {
                "type": import_type,
                "items": items,
                "topics": topics,
                "directories": directories,
                "source_workspace": manifest.get("workspace") if manifest else None,
            }
            self._resources[resource_id] = resource
            self._uploads.setdefault(str(workspace), []).append(
                {
                    "resource_id": resource_id,
                    "type": import_type,
                    "file_name": file_name,
                    "size": len(content),
                    "content": content,
                    "from_emulator": manifest is not None,
                }
            )
        answer = {
            "resource_id": resource_id,
            "topics": topics,
            "matched_topics": [{"id": stable_id(t), "name": t} for t in topics],
            "directories": directories,
            "queues": [],
            "connections": connections,
        }
        return self._json(200, answer, request_id)

    def _import(self, body: bytes, exchange: Exchange, request_id: str) -> web.Response:
        def bad(message: str) -> web.Response:
            return self._error(400, "DQC.0001", f"Invalid parameter: {message}", request_id)

        payload = json_object(body)
        if isinstance(payload, str):
            return bad(payload)
        resource_id = payload.get("resource_id")
        if not isinstance(resource_id, str) or not resource_id:
            return bad("resource_id is required")
        exchange.resource_id = resource_id
        import_type, strategy = payload.get("type"), payload.get("strategy", ImportStrategy.SKIP.value)
        if import_type not in _IMPORT_TYPES:
            return bad(f"type must be one of {sorted(_IMPORT_TYPES)}")
        if strategy not in _STRATEGIES:
            return bad(f"strategy must be one of {sorted(_STRATEGIES)}")
        mappings: dict[str, dict[str, str]] = {}
        for name in ("directories", "topics", "connections", "queues"):
            entries = payload.get(name) or []
            if not isinstance(entries, list):
                return bad(f"{name} must be an array")
            mappings[name] = {}
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("old_value"), str):
                    return bad(f"{name} entries need a string old_value")
                mappings[name][entry["old_value"]] = str(entry.get("mapping_value") or entry.get("new_value") or "")
        with self._lock:
            resource = self._resources.get(resource_id)
            if resource is None or resource.upload is None or not resource.visible_in(exchange.workspace):
                return self._not_found(request_id)
            if resource.upload["type"] != import_type:
                return bad(f"type {import_type!r} does not match the uploaded file's type {resource.upload['type']!r}")
            steps = [normalise_step(step) for step in self.import_script] or [{"status": "SUCCESS"}]
            conflicts = [
                item["name"]
                for item in resource.upload["items"]
                if f"{import_type}:{item['name']}" in self._imported.get(str(exchange.workspace), {})
            ]
            if strategy == ImportStrategy.TERMINATION.value and conflicts:
                message = f"Import terminated: {import_type} {conflicts[0]!r} already exists in the workspace"
                steps = [*steps[:-1], {"status": "FAILED", "error_msg": message}]
            resource.steps, resource.position, resource.last, resource.end_time = steps, 0, None, None
            resource.base["import_body"] = json.dumps(payload)
            resource.base["start_time"] = now_ms()
            resource.on_success = self._importer(resource, str(exchange.workspace), strategy, mappings)
        response = web.Response(status=204)
        response.headers["X-Request-Id"] = request_id
        return response

    def _importer(
        self, resource: Resource, workspace: str, strategy: str, mappings: Mapping[str, Mapping[str, str]]
    ) -> Callable[[], None]:
        """What the import does when its status first answers SUCCESS (called under the lock)."""
        upload = dict(resource.upload or {})

        def apply() -> None:
            target = self._imported.setdefault(workspace, {})
            topic = (upload.get("topics") or [None])[0]
            directory = (upload.get("directories") or [None])[0]
            for item in upload.get("items", []):
                key = f"{upload['type']}:{item['name']}"
                previous = target.get(key)
                if previous is not None and strategy != ImportStrategy.OVERRIDE.value:
                    continue
                target[key] = {
                    "name": item["name"],
                    "type": upload["type"],
                    "id": item.get("id"),
                    "directory": mappings["directories"].get(directory, directory) if directory else None,
                    "topic": mappings["topics"].get(topic, topic) if topic else None,
                    "source_workspace": upload.get("source_workspace"),
                    "upload_resource_id": resource.resource_id,
                    "strategy": strategy,
                    "revision": previous["revision"] + 1 if previous else 1,
                }

        return apply

    # ---------------------------------------------------------------- download
    def _downloadable(self, query: list[tuple[str, str]], exchange: Exchange) -> ExportFile | tuple[int, str, str]:
        """The file to send, or ``(status, error_code, error_msg)``."""
        params = dict(query)
        resource_id = params.get("resource_id")
        if not resource_id:
            return 400, "DQC.0001", "Invalid parameter: resource_id is required"
        exchange.resource_id = resource_id
        obs_type = params.get("obs_type")
        if obs_type is not None and obs_type not in _OBS_TYPES:
            return 400, "DQC.0001", f"Invalid parameter: obs_type must be one of {sorted(_OBS_TYPES)}"
        with self._lock:
            resource = self._lookup(resource_id, exchange.workspace)
            if resource is None:
                return self.not_found_status, NOT_FOUND_CODE, NOT_FOUND_MESSAGE
            if resource.base.get("resource_type") == "REPORT" and obs_type is None:
                return 400, "DQC.0001", "Invalid parameter: obs_type is required to download a report"
            if not resource.downloadable:
                return 400, "DQC.1017", "The export file is not ready: the export has not succeeded"
            manifest = resource.manifest or {"emulator": "dataqc", "resource_id": resource_id}
        return ExportFile(manifest, self.download_size, self._block)

    async def _download(
        self, request: web.Request, query: list[tuple[str, str]], exchange: Exchange, request_id: str
    ) -> web.StreamResponse:
        export = self._downloadable(query, exchange)
        if not isinstance(export, ExportFile):
            return self._error(*export, request_id)
        with self._lock:
            resource = self._resources[str(exchange.resource_id)]
            file_name = str(resource.base.get("file_name") or f"{resource.resource_id}.zip")
        response = web.StreamResponse(status=200)
        response.headers["X-Request-Id"] = request_id
        response.headers["Content-Type"] = "application/octet-stream"
        response.headers["Content-Disposition"] = f'attachment; filename="{file_name}"'
        response.content_length = export.size
        await response.prepare(request)
        previous: bytes | memoryview | None = None
        for piece in export.chunks():
            if previous is not None:
                await response.write(previous)
            previous = piece
        self._record(exchange, 200)
        if previous is not None:
            await response.write(previous)
        await response.write_eof()
        return response
