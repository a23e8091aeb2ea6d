"""Helpers shared by the reliability tests: connections, one status call through either
transport, a trigger's first event, and log lines picked out of a task's log."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from typing import Any

import pytest

from airflow_provider_dataqc.hooks.dataqc import DataQCHook
from airflow_provider_dataqc.testing.emulator import DEFAULT_PROJECT_ID, DEFAULT_TOKEN
from airflow_provider_dataqc.triggers.dataqc import AsyncDataQCClient, DataQCResourceStatusTrigger

PROJECT = DEFAULT_PROJECT_ID
STATUS_PREFIX = f"/v2/{PROJECT}/quality/resource/status/"
LOG = logging.getLogger("airflow_provider_dataqc.tests.reliability")
MODES = ("sync", "async")

STATUS_PATH_R1 = STATUS_PREFIX + "r-1"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def set_connection(monkeypatch: pytest.MonkeyPatch, host: str, conn_id: str = "dataqc_default", **extra: Any) -> str:
    """A token connection to ``host`` (an emulator or pytest-httpserver URL)."""
    settings: dict[str, Any] = {"project_id": PROJECT, "workspace": "ws-dev", "backoff_factor": 0.001, "rate_limit": 0}
    settings.update(extra)
    conn = {"conn_type": "dataqc", "host": host, "password": DEFAULT_TOKEN, "extra": settings}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


async def _async_status(conn_id: str, resource_id: Any, workspace: str | None) -> Any:
    async with AsyncDataQCClient(conn_id, log=LOG) as client:
        return await client.get_resource_status(resource_id, workspace=workspace)


def fetch_status(mode: str, resource_id: Any, *, conn_id: str = "dataqc_default", workspace: str | None = None) -> Any:
    """One status call through the sync hook or the trigger's async client."""
    if mode == "sync":
        return DataQCHook(conn_id).get_resource_status(resource_id, workspace=workspace)
    return asyncio.run(_async_status(conn_id, resource_id, workspace))


def run_trigger(trigger: DataQCResourceStatusTrigger, limit: float = 60.0) -> dict[str, Any]:
    """The one event a trigger yields (within ``limit`` seconds)."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(first(), limit)

    return asyncio.run(bounded())


def distinct_lines(
    task_logs: Any, level: str, needle: str, key: str = r"(?:attempt|Poll) \d+/\d+.*?X-Request-Id=\w+"
) -> list[str]:
    """Lines at ``level`` containing ``needle``, one per distinct message (``key`` picks what makes
    it distinct): a message can be captured twice, printed by Airflow's handler and as a record."""
    found: dict[str, str] = {}
    for line in task_logs.lines(level):
        if needle in line:
            match = re.search(key, line)
            found.setdefault(match.group(0) if match else line, line)
    return list(found.values())
