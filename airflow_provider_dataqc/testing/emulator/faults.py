"""Fault injection: a seeded plan of failures and the answers that carry them out.

Except ``slow`` on export/upload/import (the service acts after the wait), a faulted
request changes nothing: it never moves a life cycle.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from airflow_provider_dataqc.testing.emulator.defaults import OPERATIONS
from airflow_provider_dataqc.testing.emulator.files import ExportFile
from airflow_provider_dataqc.testing.emulator.handlers import HandlersMixin
from airflow_provider_dataqc.testing.emulator.state import Exchange

#: What a :class:`FaultPlan` can inject instead of the real answer.
FAULT_KINDS = ("http500_json", "http502_html", "http503", "http429", "reset", "slow", "truncated")
#: The mix used when a :class:`FaultPlan` names none: every kind but ``slow``, equally likely.
DEFAULT_FAULT_MIX: Mapping[str, float] = {kind: 1.0 for kind in FAULT_KINDS if kind != "slow"}
HTML_502 = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    b"<hr><center>emulated gateway</center></body></html>"
)


@dataclass
class FaultPlan:
    """Inject failures into a fraction of the requests to some operations.

    :param rate: the fraction (0..1) of requests to ``operations`` that get a fault.
    :param mix: relative weights of the kinds in :data:`FAULT_KINDS` (default
        :data:`DEFAULT_FAULT_MIX`: all but ``slow``, equally likely).
    :param seed: seeds the plan's own random generator (deterministic sequences).
    :param operations: operation names (:data:`OPERATIONS`) the plan applies to.
    :param slow_seconds: how long a ``slow`` fault waits before answering.
    :param retry_after: the ``Retry-After`` value of ``http429``.

    Kinds: ``http500_json`` (500, DQC error body), ``http502_html`` (502, an HTML page),
    ``http503`` (503, empty body), ``http429`` (429 with ``Retry-After``), ``reset`` (the
    connection is aborted without an answer), ``slow`` (waits ``slow_seconds``, then answers
    normally; a status poll then does not advance), ``truncated`` (headers announce a
    ``Content-Length`` larger than the part of the body sent, then the connection closes).
    Except ``slow`` on export/upload/import (the service acts after the wait), a faulted
    request changes nothing.
    """

    rate: float
    mix: Mapping[str, float] | None = None
    seed: int = 0
    operations: Sequence[str] = ("status",)
    slow_seconds: float = 2.0
    retry_after: float = 0.0
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _kinds: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _weights: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.rate) <= 1.0:
            raise ValueError(f"FaultPlan rate must be between 0 and 1, got {self.rate!r}")
        mix = dict(DEFAULT_FAULT_MIX if self.mix is None else self.mix)
        unknown = sorted(set(mix) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; use {', '.join(FAULT_KINDS)}")
        if any(weight < 0 for weight in mix.values()) or not any(weight > 0 for weight in mix.values()):
            raise ValueError("FaultPlan mix weights must be >= 0 with at least one > 0")
        bad_ops = sorted(set(self.operations) - set(OPERATIONS))
        if bad_ops:
            raise ValueError(f"unknown operations {bad_ops}; use {', '.join(OPERATIONS)}")
        self.operations = tuple(self.operations)
        self._kinds = tuple(mix)
        self._weights = tuple(float(mix[kind]) for kind in self._kinds)
        self._rng = random.Random(self.seed)

    def draw(self, operation: str) -> str | None:
        """The fault to inject into the next request to ``operation``, or ``None``."""
        if operation not in self.operations or self.rate <= 0 or self._rng.random() >= self.rate:
            return None
        return self._rng.choices(self._kinds, self._weights)[0]


class FaultsMixin(HandlersMixin):
    """The answers of injected faults."""

    def _fault(self, fault: str, plan: FaultPlan, exchange: Exchange) -> web.StreamResponse:
        request, request_id = exchange.request, exchange.request_id
        if fault == "http500_json":
            return self._error(500, "DQC.0500", "Emulated internal error: please try again later", request_id)
        if fault == "http502_html":
            response = web.Response(status=502, body=HTML_502, content_type="text/html")
            response.headers["X-Request-Id"] = request_id
            return response
        if fault == "http503":
            response = web.Response(status=503)
            response.headers["X-Request-Id"] = request_id
            return response
        if fault == "http429":
            return self._json(
                429,
                {
                    "error_code": "APIGW.0308",
                    "error_msg": "The throttling threshold has been reached: policy user over ratelimit, limit:40",
                },
                request_id,
                {"Retry-After": f"{plan.retry_after:g}"},
            )
        # "reset": abort the connection (RST) without answering
        self._record(exchange, None)
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return web.Response(status=500)  # never sent: the connection is gone

    async def _truncated(
        self, request: web.Request, exchange: Exchange, query: list[tuple[str, str]], request_id: str
    ) -> web.StreamResponse:
        """Announce more bytes than are sent, then close the connection."""
        response = web.StreamResponse(status=200)
        response.headers["X-Request-Id"] = request_id
        chunks: Iterator[bytes | memoryview]
        if exchange.operation == "download":
            export = self._downloadable(query, exchange)
            if isinstance(export, ExportFile):
                response.content_type = "application/octet-stream"
                response.content_length = export.size
                chunks = export.chunks(limit=export.size // 2)
            else:
                return self._error(*export, request_id)
        else:
            payload: Any = {"error_code": "DQC.0500", "error_msg": "partial answer"}
            if exchange.operation == "status" and exchange.resource_id is not None:
                with self._lock:
                    resource = self._lookup(exchange.resource_id, exchange.workspace)
                    if resource is not None:
                        payload = self._peek(resource)
            data = json.dumps(payload).encode("utf-8")
            response.content_type = "application/json"
            response.content_length = len(data) + 64
            chunks = iter([data[: len(data) // 2]])
        await response.prepare(request)
        pieces = list(chunks)
        for piece in pieces[:-1]:
            await response.write(piece)
        self._record(exchange, 200)
        for piece in pieces[-1:]:
            await response.write(piece)
        if request.transport is not None:
            request.transport.close()
        return response
