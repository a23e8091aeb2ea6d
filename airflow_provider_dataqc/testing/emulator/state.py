"""What every part of the emulator shares: its settings and state, request records, JSON answers.

:class:`EmulatorState` holds the attributes; the other modules add behaviour to it as mixins
(resources, identity, faults, handlers, routing) and :class:`~.server.Emulator` combines them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import secrets
import threading
import time
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web

from airflow_provider_dataqc.core.settings import is_loopback_host
from airflow_provider_dataqc.testing.emulator.defaults import (
    DEFAULT_AKSK,
    DEFAULT_DOMAIN_ID,
    DEFAULT_EXPORT_SCRIPT,
    DEFAULT_IMPORT_SCRIPT,
    DEFAULT_PROJECT_ID,
    DEFAULT_STOPPED_STATUS,
    DEFAULT_TOKEN,
    DEFAULT_USER,
    DEFAULT_WORKSPACES,
    FIRST_JOB_ID,
    NOT_FOUND_CODE,
    NOT_FOUND_MESSAGE,
    NOT_FOUND_STATUSES,
)
from airflow_provider_dataqc.testing.emulator.flow import FlowControl, FlowStats, Gateway

if TYPE_CHECKING:
    from airflow_provider_dataqc.testing.emulator.faults import FaultPlan
    from airflow_provider_dataqc.testing.emulator.jobs import JobRun, QualityJob
    from airflow_provider_dataqc.testing.emulator.resources import Resource

_SECRET_HEADERS = frozenset({"x-auth-token", "authorization", "x-security-token"})
#: Bytes of random padding reused for every download (seeded: archives are reproducible).
CHUNK = 256 * 1024


def json_object(body: bytes) -> dict[str, Any] | str:
    """A request's JSON object, or what is wrong with it."""
    try:
        payload = json.loads(body)
    except ValueError:
        return "the body is not JSON"
    return payload if isinstance(payload, dict) else "the body must be a JSON object"


def iso(epoch: float) -> str:
    """IAM's timestamp form: ``2019-02-13T06:52:13.855000Z``."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_ms() -> int:
    return int(time.time() * 1000)


def stable_id(text: str) -> str:
    return str(zlib.crc32(text.encode("utf-8")) + 100_000)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received, with secret header values replaced by ``***``.

    ``status`` is the HTTP status answered (``None`` when the connection was reset);
    ``fault`` names the injected fault, if any; ``resource_id`` is the one the request
    named (status path, download query, import body), if any.
    """

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    status: int | None
    operation: str
    workspace: str | None
    fault: str | None
    resource_id: str | None
    request_id: str
    time: float


class Exchange:
    """One request and what the handler learnt about it, for its record."""

    __slots__ = (
        "fault",
        "operation",
        "path",
        "raw_query",
        "recorded",
        "request",
        "request_id",
        "resource_id",
        "workspace",
    )

    def __init__(
        self,
        request: web.BaseRequest,
        path: str,
        raw_query: str,
        request_id: str,
        operation: str,
        resource_id: str | None,
    ) -> None:
        self.request = request
        self.path = path
        self.raw_query = raw_query
        self.request_id = request_id
        self.operation = operation
        self.workspace = request.headers.get("workspace")
        self.resource_id = resource_id
        self.fault: str | None = None
        self.recorded = False


class EmulatorState:
    """Settings, state and records of one emulator; see :class:`~.server.Emulator` for the API."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        project_id: str = DEFAULT_PROJECT_ID,
        workspaces: Sequence[str] = DEFAULT_WORKSPACES,
        token_lifetime: float = 86400.0,
        download_size: int = 1024,
        faults: FaultPlan | None = None,
        seed: int = 0,
        user: tuple[str, str, str] = DEFAULT_USER,
        aksk: Mapping[str, str] | None = None,
        tokens: Sequence[str] = (DEFAULT_TOKEN,),
        domain_id: str = DEFAULT_DOMAIN_ID,
        export_script: Sequence[str | Mapping[str, Any]] = DEFAULT_EXPORT_SCRIPT,
        import_script: Sequence[str | Mapping[str, Any]] = DEFAULT_IMPORT_SCRIPT,
        max_upload_size: int = 256 * 1024 * 1024,
        max_recorded: int = 100_000,
        flow_control: FlowControl | bool | None = None,
        not_found_status: int = 404,
    ) -> None:
        if not is_loopback_host(host):
            raise ValueError(f"the emulator only listens on loopback, not on {host!r}")
        self.host = host
        self.port = port
        self.project_id = project_id
        self.workspaces: set[str] = set(workspaces)
        self.token_lifetime = float(token_lifetime)
        self.download_size = int(download_size)
        self.faults = faults
        self.user = user
        self.aksk: dict[str, str] = dict(aksk) if aksk is not None else {DEFAULT_AKSK[0]: DEFAULT_AKSK[1]}
        self.domain_id = domain_id
        self.export_script: Sequence[str | Mapping[str, Any]] = export_script
        self.import_script: Sequence[str | Mapping[str, Any]] = import_script
        self.max_upload_size = max_upload_size
        self.max_recorded = max_recorded
        #: The gateway's limits (:class:`~.flow.FlowControl`), or ``None``: no flow control.
        self.flow_control: FlowControl | None = FlowControl() if flow_control is True else (flow_control or None)
        self._gateway = Gateway()
        if not_found_status not in NOT_FOUND_STATUSES:
            raise ValueError(f"not_found_status must be one of {NOT_FOUND_STATUSES}, got {not_found_status!r}")
        #: The HTTP status of a DQC "not found" answer (``DQC.1016``): 404, 400 or 500.
        self.not_found_status = not_found_status
        self.requests: list[RecordedRequest] = []
        self.faults_injected: Counter[str] = Counter()
        self._static_tokens = set(tokens)
        self._issued: dict[str, float] = {}
        self._revoked: set[str] = set()
        self._rng = random.Random(seed)
        self._block = random.Random(seed).randbytes(CHUNK)
        self._lock = threading.RLock()
        self._resources: dict[str, Resource] = {}
        self._exports: dict[str, list[dict[str, Any]]] = {}
        self._uploads: dict[str, list[dict[str, Any]]] = {}
        self._imported: dict[str, dict[str, dict[str, Any]]] = {}
        self._counts: Counter[str] = Counter()
        self._resource_counts: Counter[tuple[str, str]] = Counter()
        self._iam_calls = 0
        self._jobs: dict[int, QualityJob] = {}
        self._runs: dict[int, JobRun] = {}
        self._jobs_seeded = False
        self._next_job_id = FIRST_JOB_ID
        #: The ``run_status`` a run stopped by ``batch-stop`` answers from then on.
        self.stopped_status = DEFAULT_STOPPED_STATUS
        self._request_prefix = secrets.token_hex(8)
        self._request_counter = itertools.count(1)
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- counters
    def count(self, operation: str | None = None, *, resource_id: str | None = None) -> int:
        """Requests received for ``operation`` (all when ``None``), optionally naming ``resource_id``.

        Exact even when old entries of ``requests`` were dropped (see ``max_recorded``).
        """
        with self._lock:
            if resource_id is None:
                return sum(self._counts.values()) if operation is None else self._counts[operation]
            return sum(
                n
                for (op, rid), n in self._resource_counts.items()
                if rid == resource_id and (operation is None or op == operation)
            )

    def reset_counts(self) -> None:
        """Forget recorded requests, counters, IAM calls, injected-fault and flow-control counts."""
        with self._lock:
            self.requests.clear()
            self._counts.clear()
            self._resource_counts.clear()
            self._iam_calls = 0
            self.faults_injected.clear()
            self._gateway.reset_counts()

    def flow_stats(self) -> FlowStats:
        """What the gateway let through and refused (429), per API and per credential identity."""
        return self._gateway.stats()

    @property
    def throttled(self) -> int:
        """How many requests flow control answered with 429 (``APIGW.0308``)."""
        return self._gateway.stats().throttled

    # ---------------------------------------------------------------- plumbing
    def _request_id(self) -> str:
        return f"{self._request_prefix}{next(self._request_counter):016x}"

    def _record(self, exchange: Exchange, status: int | None) -> None:
        """Record ``exchange`` once; streamed answers call this before their last bytes leave,
        so a client never sees an answer before its record exists."""
        if exchange.recorded:
            return
        exchange.recorded = True
        request, raw_query = exchange.request, exchange.raw_query
        headers = {key: ("***" if key.lower() in _SECRET_HEADERS else value) for key, value in request.headers.items()}
        record = RecordedRequest(
            method=request.method,
            path=exchange.path,
            query=parse_qsl(raw_query, keep_blank_values=True) if raw_query else [],
            headers=headers,
            status=status,
            operation=exchange.operation,
            workspace=exchange.workspace,
            fault=exchange.fault,
            resource_id=exchange.resource_id,
            request_id=exchange.request_id,
            time=time.time(),
        )
        with self._lock:
            self.requests.append(record)
            if len(self.requests) > self.max_recorded:
                del self.requests[: len(self.requests) - self.max_recorded]
            self._counts[exchange.operation] += 1
            if exchange.resource_id is not None:
                self._resource_counts[(exchange.operation, exchange.resource_id)] += 1
            if exchange.fault is not None:
                self.faults_injected[exchange.fault] += 1

    @staticmethod
    def _json(status: int, payload: Any, request_id: str, headers: Mapping[str, str] | None = None) -> web.Response:
        response = web.Response(
            status=status, body=json.dumps(payload).encode("utf-8"), content_type="application/json"
        )
        response.headers["X-Request-Id"] = request_id
        if headers:
            response.headers.update(headers)
        return response

    def _error(self, status: int, code: str, message: str, request_id: str) -> web.Response:
        return self._json(status, {"error_code": code, "error_msg": message}, request_id)

    def _not_found(self, request_id: str, message: str = NOT_FOUND_MESSAGE) -> web.Response:
        """The service's "does not exist" answer: ``DQC.1016`` at ``not_found_status``."""
        return self._error(self.not_found_status, NOT_FOUND_CODE, message, request_id)
