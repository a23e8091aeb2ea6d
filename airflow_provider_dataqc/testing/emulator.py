"""A local HTTP emulator of DataArts Studio Data Quality (DQC) and IAM token issuance.

It serves, on loopback only, the five ``/v2/{project_id}/quality/resource/`` calls
(status, export, upload, import, download) and IAM's ``POST /v3/auth/tokens``,
with the authentication, workspace checks and error bodies described in
``dataarts-quality-api.md``. Tests, benchmarks and the demo run against it.

Life cycles are deterministic: a task moves ONE step per status poll that it
answers; injected faults never move it. Resource IDs nobody created follow a
naming convention so that separate processes can use them (``N`` polls, then the
final state, which then repeats; a ``-suffix`` such as ``success-3-run7`` is allowed):

* ``success-N``: WAITING, then RUNNING..., then SUCCESS with file_status GENERATED;
* ``failed-N``: the same, ending FAILED with :data:`FAILED_MESSAGE`;
* ``timeout-N``: the same, ending TIMEOUT with an error_msg;
* ``filefail-N``: the same, ending SUCCESS with file_status FAILED;
* ``slowfile-N``: SUCCESS with file_status PREPARING for N polls, then GENERATED;
* ``unknown-N``: the undocumented status PAUSED for N polls, then SUCCESS.

Any other ID answers 404 ``DQC.1016`` unless it was created by an export or upload
or scripted with :meth:`Emulator.script`.

Run it standalone with ``python -m airflow_provider_dataqc.testing.emulator --port 8080``.
No Airflow import here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from io import BytesIO
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from airflow_provider_dataqc.core.api import (
    IAM_TOKEN_PATH,
    QUALITY_RESOURCE_PATH,
    ExportType,
    ImportStrategy,
    ImportType,
    ObsType,
)
from airflow_provider_dataqc.core.settings import is_loopback_host
from airflow_provider_dataqc.core.status import API_FIELDS, TERMINAL_STATUSES, FileStatus, TaskStatus

__all__ = [
    "CONVENTION_KINDS",
    "DEFAULT_AKSK",
    "DEFAULT_PROJECT_ID",
    "DEFAULT_TOKEN",
    "DEFAULT_USER",
    "DEFAULT_WORKSPACE",
    "DEFAULT_WORKSPACES",
    "FAILED_MESSAGE",
    "FAULT_KINDS",
    "OPERATIONS",
    "Emulator",
    "FaultPlan",
    "RecordedRequest",
    "is_loopback_host",
    "main",
    "read_manifest",
    "running_emulator",
    "running_emulator_async",
]

DEFAULT_PROJECT_ID = "0123456789abcdef0123456789abcdef"
DEFAULT_WORKSPACE = "ws-dev"
DEFAULT_WORKSPACES = ("ws-dev", "ws-prod")
#: A static IAM token accepted in ``X-Auth-Token`` (besides tokens the emulator issued).
DEFAULT_TOKEN = "emulator-token"
#: IAM user name, password and domain (account) name accepted by ``POST /v3/auth/tokens``.
DEFAULT_USER = ("dq-user", "dq-password", "dq-domain")
#: Access key and secret key accepted for ``SDK-HMAC-SHA256`` signatures.
DEFAULT_AKSK = ("EMULATORAK000000", "EMULATORSK00000000000000000000000000000000")
DEFAULT_DOMAIN_ID = "fedcba9876543210fedcba9876543210"
DEFAULT_REGION = "cn-north-4"

FAILED_MESSAGE = "Emulated failure: rule template 'null_check' references a missing data connection"
TIMEOUT_MESSAGE = "Emulated timeout: the task did not finish within the service's time limit"

#: Operation names used in :class:`RecordedRequest`, :meth:`Emulator.count` and :class:`FaultPlan`.
OPERATIONS = ("status", "export", "upload", "import", "download", "iam", "unknown")
#: What a :class:`FaultPlan` can inject instead of the real answer.
FAULT_KINDS = ("http500_json", "http502_html", "http503", "http429", "reset", "slow", "truncated")
#: The mix used when a :class:`FaultPlan` names none: every kind but ``slow``, equally likely.
DEFAULT_FAULT_MIX: Mapping[str, float] = {kind: 1.0 for kind in FAULT_KINDS if kind != "slow"}

#: Resource-ID conventions answered without any set-up: ``<kind>-<N>`` optionally followed
#: by ``-<anything>`` (``success-3-run42``) to keep IDs unique between runs.
CONVENTION_KINDS = ("success", "failed", "timeout", "filefail", "slowfile", "unknown")
_CONVENTION = re.compile(r"^(success|failed|timeout|filefail|slowfile|unknown)-(\d{1,9})(?:[-_.].*)?$", re.S)
#: Longest life cycle a convention ID gets (``success-999999999`` is clamped to this).
MAX_CONVENTION_STEPS = 100_000

DEFAULT_EXPORT_SCRIPT: tuple[str, ...] = ("WAITING", "RUNNING", "SUCCESS")
DEFAULT_IMPORT_SCRIPT: tuple[str, ...] = ("RUNNING", "SUCCESS")

#: Keys of a scripted step that shape the HTTP answer rather than a status field.
STEP_ANSWER_KEYS = frozenset({"http_status", "raw_body", "content_type", "headers", "json", "delay"})
_STEP_KEYS = STEP_ANSWER_KEYS | set(API_FIELDS) | {"error_code"}

_SECRET_HEADERS = frozenset({"x-auth-token", "authorization", "x-security-token"})
_RESOURCE_TYPES = {
    ExportType.RULE_TEMPLATE.value: "RULE_TEMPLATE",
    ExportType.QUALITY_TASK.value: "QUALITY_TASK",
    ExportType.CONSISTENCY_TASK.value: "CONSISTENCY_TASK",
    ExportType.REPORT.value: "REPORT",
}
_EXPORT_TYPES = frozenset(t.value for t in ExportType)
_IMPORT_TYPES = frozenset(t.value for t in ImportType)
_STRATEGIES = frozenset(s.value for s in ImportStrategy)
_OBS_TYPES = frozenset(o.value for o in ObsType)
_AKSK_BODY_LIMIT = 12 * 1024 * 1024
_CHUNK = 256 * 1024
_MANIFEST_NAME = "manifest.json"
_PADDING_NAME = "padding.bin"
_HTML_502 = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    b"<hr><center>emulated gateway</center></body></html>"
)
_QUALITY_HEAD, _QUALITY_TAIL = QUALITY_RESOURCE_PATH.split("{project_id}")
_SAMPLE_TOPICS = ("Data Quality",)
_SAMPLE_DIRECTORIES = ("/quality/rules",)
_SAMPLE_CONNECTIONS = ({"name": "dws_default", "type": "DWS"},)


def _json_object(body: bytes) -> dict[str, Any] | str:
    """A request's JSON object, or what is wrong with it."""
    try:
        payload = json.loads(body)
    except ValueError:
        return "the body is not JSON"
    return payload if isinstance(payload, dict) else "the body must be a JSON object"


def _iso(epoch: float) -> str:
    """IAM's timestamp form: ``2019-02-13T06:52:13.855000Z``."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _stable_id(text: str) -> str:
    return str(zlib.crc32(text.encode("utf-8")) + 100_000)


# --------------------------------------------------------------------------------------------
# Fault plan and request records
# --------------------------------------------------------------------------------------------
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


class _Exchange:
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


# --------------------------------------------------------------------------------------------
# Resources and their life cycles
# --------------------------------------------------------------------------------------------
def _normalise_step(step: str | Mapping[str, Any]) -> dict[str, Any]:
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
class _Resource:
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


def _convention_steps(kind: str, count: int) -> list[dict[str, Any]]:
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


# --------------------------------------------------------------------------------------------
# Export files: a real ZIP (manifest.json + padding.bin) of exactly the requested size
# --------------------------------------------------------------------------------------------
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_DESCRIPTOR = struct.Struct("<IIII")
_END = struct.Struct("<IHHHHIIH")
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01: deterministic archives


def _zip_overhead(manifest: bytes) -> int:
    names = len(_MANIFEST_NAME) + len(_PADDING_NAME)
    return 2 * _LOCAL.size + 2 * _CENTRAL.size + 2 * names + len(manifest) + _DESCRIPTOR.size + _END.size


class _ExportFile:
    """Streams an export file of exactly ``size`` bytes without holding it in memory.

    When ``size`` allows it (at least the ZIP overhead, below 4 GiB) the file is a valid ZIP
    whose ``manifest.json`` lets :meth:`Emulator` recognise it on upload; otherwise it is the
    manifest JSON line followed by padding, cut to ``size``.
    """

    def __init__(self, manifest: Mapping[str, Any], size: int, block: bytes) -> None:
        self.manifest = json.dumps(manifest, sort_keys=True).encode("utf-8")
        self.size = max(int(size), 0)
        self.block = block
        overhead = _zip_overhead(self.manifest)
        self.is_zip = overhead <= self.size < 0xFFFFFFFF
        self.padding = self.size - overhead if self.is_zip else 0

    def _padding_chunks(self, length: int) -> Iterator[memoryview]:
        view = memoryview(self.block)
        while length > 0:
            piece = view[: min(length, len(view))]
            length -= len(piece)
            yield piece

    def chunks(self, limit: int | None = None) -> Iterator[bytes | memoryview]:
        """The file's bytes in pieces; with ``limit``, only its first ``limit`` bytes."""
        remaining = self.size if limit is None else min(limit, self.size)
        for piece in self._pieces():
            if remaining <= 0:
                return
            if len(piece) > remaining:
                piece = piece[:remaining]
            remaining -= len(piece)
            yield piece

    def _pieces(self) -> Iterator[bytes | memoryview]:
        if not self.is_zip:
            head = self.manifest + b"\n"
            yield head[: self.size]
            yield from self._padding_chunks(self.size - min(len(head), self.size))
            return
        manifest_crc = zlib.crc32(self.manifest)
        m_name, p_name = _MANIFEST_NAME.encode(), _PADDING_NAME.encode()
        yield _LOCAL.pack(
            0x04034B50, 20, 0, 0, 0, _DOS_DATE, manifest_crc, len(self.manifest), len(self.manifest), len(m_name), 0
        )
        yield m_name
        yield self.manifest
        padding_offset = _LOCAL.size + len(m_name) + len(self.manifest)
        yield _LOCAL.pack(0x04034B50, 20, 0x08, 0, 0, _DOS_DATE, 0, 0, 0, len(p_name), 0)
        yield p_name
        crc = 0
        for piece in self._padding_chunks(self.padding):
            crc = zlib.crc32(piece, crc)
            yield piece
        yield _DESCRIPTOR.pack(0x08074B50, crc, self.padding, self.padding)
        central_offset = padding_offset + _LOCAL.size + len(p_name) + self.padding + _DESCRIPTOR.size
        central = (
            _CENTRAL.pack(
                0x02014B50,
                20,
                20,
                0,
                0,
                0,
                _DOS_DATE,
                manifest_crc,
                len(self.manifest),
                len(self.manifest),
                len(m_name),
                0,
                0,
                0,
                0,
                0,
                0,
            )
            + m_name
        )
        central += (
            _CENTRAL.pack(
                0x02014B50,
                20,
                20,
                0x08,
                0,
                0,
                _DOS_DATE,
                crc,
                self.padding,
                self.padding,
                len(p_name),
                0,
                0,
                0,
                0,
                0,
                padding_offset,
            )
            + p_name
        )
        yield central
        yield _END.pack(0x06054B50, 0, 0, 2, 2, len(central), central_offset, 0)


def read_manifest(content: bytes) -> dict[str, Any] | None:
    """The manifest of an emulator export file, or ``None`` for any other file."""
    manifest: Any = None
    if content[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(BytesIO(content)) as archive:
                manifest = json.loads(archive.read(_MANIFEST_NAME))
        except (zipfile.BadZipFile, KeyError, ValueError):
            return None
    elif content[:1] == b"{":
        try:
            manifest = json.loads(content.split(b"\n", 1)[0])
        except ValueError:
            return None
    if isinstance(manifest, dict) and manifest.get("emulator") == "dataqc":
        return manifest
    return None


def _parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """``multipart/form-data`` fields: name -> (file name or None, bytes)."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        raise ValueError("the body is not multipart/form-data")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    fields: dict[str, tuple[str | None, bytes]] = {}
    parts = (b"\r\n" + body).split(delimiter)
    if len(parts) < 3:
        raise ValueError("the multipart body has no parts")
    for part in parts[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a multipart part has no header block")
        disposition = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                disposition[name.strip()] = value.strip()
        field_name = disposition.get_param("name", header="content-disposition")
        if isinstance(field_name, str):
            fields[field_name] = (disposition.get_filename(), content)
    return fields


# --------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------
class Emulator:
    """DataArts Quality + IAM on ``http://127.0.0.1:<port>``.

    Use :meth:`start` / :meth:`stop` (or ``with Emulator() as emu:``) to serve from a background
    thread, or :meth:`start_async` / :meth:`stop_async` inside a running event loop. All state
    readers (``requests``, :meth:`count`, :meth:`imported` ...) are safe to call from other threads.

    Attributes you may change at runtime: ``faults`` (a :class:`FaultPlan` or ``None``),
    ``download_size``, ``export_script`` / ``import_script`` (the life cycle of new exports /
    imports: status strings or step mappings as for :meth:`script`), ``token_lifetime``.
    """

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
        self.requests: list[RecordedRequest] = []
        self.faults_injected: Counter[str] = Counter()
        self._static_tokens = set(tokens)
        self._issued: dict[str, float] = {}
        self._revoked: set[str] = set()
        self._rng = random.Random(seed)
        self._block = random.Random(seed).randbytes(_CHUNK)
        self._lock = threading.RLock()
        self._resources: dict[str, _Resource] = {}
        self._exports: dict[str, list[dict[str, Any]]] = {}
        self._uploads: dict[str, list[dict[str, Any]]] = {}
        self._imported: dict[str, dict[str, dict[str, Any]]] = {}
        self._counts: Counter[str] = Counter()
        self._resource_counts: Counter[tuple[str, str]] = Counter()
        self._iam_calls = 0
        self._request_prefix = secrets.token_hex(8)
        self._request_counter = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ---------------------------------------------------------------- life of the server
    def _app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_upload_size)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def start_async(self) -> Emulator:
        """Start listening in the running event loop; ``url`` is set on return."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.SockSite(runner, sock, backlog=1024)
        await site.start()
        self._runner = runner
        self.port = sock.getsockname()[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        return self

    async def stop_async(self) -> None:
        """Stop listening and close open connections."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def start(self) -> Emulator:
        """Serve from a background thread with its own event loop; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as err:  # reported to the caller of start()
                failure.append(err)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop_async())
                loop.close()

        thread = threading.Thread(target=serve, name="dataqc-emulator", daemon=True)
        thread.start()
        if not ready.wait(30):
            raise RuntimeError("the emulator did not start within 30 s")
        if failure:
            thread.join(5)
            raise failure[0]
        self._loop, self._thread = loop, thread
        return self

    def stop(self) -> None:
        """Stop the background server started by :meth:`start` (idempotent)."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self.stop_async(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- test helpers
    @property
    def iam_calls(self) -> int:
        """How many ``POST /v3/auth/tokens`` requests came in (any outcome)."""
        return self._iam_calls

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
        """Forget recorded requests, counters, IAM calls and injected-fault counts."""
        with self._lock:
            self.requests.clear()
            self._counts.clear()
            self._resource_counts.clear()
            self._iam_calls = 0
            self.faults_injected.clear()

    @property
    def issued_tokens(self) -> list[str]:
        """Tokens issued by ``POST /v3/auth/tokens`` and not revoked (expired ones included)."""
        with self._lock:
            return list(self._issued)

    def revoke_tokens(self, *tokens: str) -> int:
        """Make tokens invalid: the given ones (static tokens included), or every issued one.

        Returns how many were revoked; the next DataArts call with them answers 401.
        """
        with self._lock:
            chosen = list(tokens) if tokens else list(self._issued)
            for token in chosen:
                self._issued.pop(token, None)
                self._revoked.add(token)
            return len(chosen)

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
        normalised = [_normalise_step(step) for step in steps]
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
            self._resources[resource_id] = _Resource(resource_id, workspace, base, normalised, "scripted")

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

    # ---------------------------------------------------------------- plumbing
    def _request_id(self) -> str:
        return f"{self._request_prefix}{next(self._request_counter):016x}"

    def _base(self, resource_id: str, export_type: str, action: str, file_name: str) -> dict[str, Any]:
        return {
            "id": f"{self._rng.getrandbits(128):032x}",
            "resource_id": resource_id,
            "resource_type": _RESOURCE_TYPES.get(export_type, "RULE_TEMPLATE"),
            "action": action,
            "file_name": file_name,
            "start_time": _now_ms(),
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

    def _lookup(self, resource_id: str, workspace: str | None) -> _Resource | None:
        """The resource ``resource_id`` as seen from ``workspace`` (creating convention IDs)."""
        resource = self._resources.get(resource_id)
        if resource is None:
            match = _CONVENTION.match(resource_id)
            if match is None:
                return None
            kind, count = match.group(1), int(match.group(2))
            base = self._base(resource_id, "rule-template", "EXPORT", f"{resource_id}.zip")
            base["export_resources"] = "[1, 2, 3]"
            resource = _Resource(resource_id, None, base, _convention_steps(kind, count), "convention")
            resource.manifest = self._manifest(resource_id, "rule-template", [1, 2, 3], None)
            self._resources[resource_id] = resource
        return resource if resource.visible_in(workspace) else None

    def _record(self, exchange: _Exchange, status: int | None) -> None:
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

    @staticmethod
    def _classify(method: str, path: str) -> tuple[str, str | None, str | None]:
        """``(operation, project_id, resource_id from the path)`` of a request."""
        if path == IAM_TOKEN_PATH:
            return ("iam" if method == "POST" else "unknown"), None, None
        if not path.startswith(_QUALITY_HEAD):
            return "unknown", None, None
        project, _, rest = path[len(_QUALITY_HEAD) :].partition("/")
        rest = "/" + rest
        if not rest.startswith(_QUALITY_TAIL + "/"):
            return "unknown", None, None
        action = rest[len(_QUALITY_TAIL) + 1 :]
        project = unquote(project)
        if action.startswith("status/") and method == "GET":
            encoded = action[len("status/") :]
            if encoded and "/" not in encoded:
                return "status", project, unquote(encoded)
            return "unknown", project, None
        expected = {"export": "POST", "upload": "POST", "import": "POST", "download": "GET"}
        if expected.get(action) == method:
            return action, project, None
        return "unknown", project, None

    # ---------------------------------------------------------------- the handler
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path, _, raw_query = request.raw_path.partition("?")
        operation, project, resource_id = self._classify(request.method, path)
        request_id = self._request_id()
        exchange = _Exchange(request, path, raw_query, request_id, operation, resource_id)
        response: web.StreamResponse | None = None
        try:
            response = await self._dispatch(request, path, raw_query, project, exchange, request_id)
            return response
        finally:
            self._record(exchange, response.status if response is not None else None)

    async def _dispatch(
        self,
        request: web.Request,
        path: str,
        raw_query: str,
        project: str | None,
        exchange: _Exchange,
        request_id: str,
    ) -> web.StreamResponse:
        operation = exchange.operation
        if operation == "unknown":
            return self._error(
                404, "APIGW.0101", "The API does not exist or has not been published in the environment", request_id
            )
        plan = self.faults
        fault = plan.draw(operation) if plan is not None else None
        advance = True
        if fault is not None and plan is not None:
            exchange.fault = fault
            if fault == "slow":
                await asyncio.sleep(plan.slow_seconds)
                advance = False
            elif fault != "truncated":
                return self._fault(fault, plan, exchange)
        try:
            body = await request.read() if request.method == "POST" else b""
        except web.HTTPRequestEntityTooLarge:
            return self._error(413, "APIGW.0201", "Request entity too large", request_id)
        if operation == "iam":
            with self._lock:
                self._iam_calls += 1
            return self._iam(body, request_id)
        query = parse_qsl(raw_query, keep_blank_values=True) if raw_query else []
        denied = self._check_access(request, path, query, body, project, exchange.workspace, request_id)
        if denied is not None:
            return denied
        if fault == "truncated":
            return await self._truncated(request, exchange, query, request_id)
        if operation == "status":
            assert exchange.resource_id is not None
            return await self._status(exchange.resource_id, exchange.workspace, request_id, advance=advance)
        if operation == "export":
            return self._export(body, exchange.workspace, request_id)
        if operation == "upload":
            return self._upload(request.headers.get("Content-Type", ""), body, exchange.workspace, request_id)
        if operation == "import":
            return self._import(body, exchange, request_id)
        return await self._download(request, query, exchange, request_id)

    def _fault(self, fault: str, plan: FaultPlan, exchange: _Exchange) -> web.StreamResponse:
        request, request_id = exchange.request, exchange.request_id
        if fault == "http500_json":
            return self._error(500, "DQC.0500", "Emulated internal error: please try again later", request_id)
        if fault == "http502_html":
            response = web.Response(status=502, body=_HTML_502, content_type="text/html")
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
        self, request: web.Request, exchange: _Exchange, query: list[tuple[str, str]], request_id: str
    ) -> web.StreamResponse:
        """Announce more bytes than are sent, then close the connection."""
        response = web.StreamResponse(status=200)
        response.headers["X-Request-Id"] = request_id
        chunks: Iterator[bytes | memoryview]
        if exchange.operation == "download":
            export = self._downloadable(query, exchange)
            if isinstance(export, _ExportFile):
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

    # ---------------------------------------------------------------- auth
    def _check_access(
        self,
        request: web.Request,
        path: str,
        query: list[tuple[str, str]],
        body: bytes,
        project: str | None,
        workspace: str | None,
        request_id: str,
    ) -> web.Response | None:
        problem = self._authenticate(request, path, query, body)
        if problem is not None:
            return self._error(401, "APIGW.0301", f"Incorrect IAM authentication information: {problem}", request_id)
        if "authorization" in request.headers and len(body) > _AKSK_BODY_LIMIT:
            return self._error(
                413, "APIGW.0201", "Request entity too large: AK/SK bodies are limited to 12 MB", request_id
            )
        if project != self.project_id:
            return self._error(
                403, "DQC.0003", f"The project {project!r} is not the project of this service", request_id
            )
        if not workspace:
            return self._error(400, "DQC.0004", "Workspace does not exist: the workspace header is missing", request_id)
        if workspace not in self.workspaces:
            return self._error(400, "DQC.0004", f"Workspace does not exist: {workspace!r}", request_id)
        return None

    def _authenticate(self, request: web.Request, path: str, query: list[tuple[str, str]], body: bytes) -> str | None:
        """``None`` when the request is authenticated, else the reason it is not."""
        token = request.headers.get("X-Auth-Token")
        if token is not None:
            with self._lock:
                if token in self._revoked:
                    return "the token has been revoked"
                if token in self._static_tokens:
                    return None
                expires = self._issued.get(token)
            if expires is None:
                return "the token is not valid"
            if time.time() >= expires:
                return "the token has expired"
            return None
        if "Authorization" not in request.headers:
            return "no X-Auth-Token or Authorization header"
        from airflow_provider_dataqc.core import signer  # lazy: the emulator also works without it

        check = signer.verify(
            method=request.method,
            path=path,
            query=query,
            headers=request.headers,
            body=body or None,
            secret_for=self.aksk.get,
        )
        return None if check.ok else f"AK/SK signature rejected ({check.reason})"

    # ---------------------------------------------------------------- IAM
    def _iam(self, body: bytes, request_id: str) -> web.Response:
        def iam_error(status: int, message: str, title: str) -> web.Response:
            return self._json(status, {"error": {"code": status, "message": message, "title": title}}, request_id)

        try:
            payload = json.loads(body)
            identity = payload["auth"]["identity"]
            user = identity["password"]["user"]
            name, password = user["name"], user["password"]
            domain_name = (user.get("domain") or {}).get("name")
            scope = payload["auth"].get("scope") or {}
            if "password" not in identity.get("methods", []):
                raise KeyError("methods")
        except (ValueError, KeyError, TypeError, AttributeError):
            return iam_error(400, "The request body is invalid.", "Bad Request")
        if (name, password, domain_name) != self.user:
            return iam_error(401, "The username or password is wrong.", "Unauthorized")
        project = scope.get("project") if isinstance(scope, Mapping) else None
        if isinstance(project, Mapping) and project.get("id") not in (None, self.project_id):
            return iam_error(401, "The project ID in the scope is not valid.", "Unauthorized")
        issued = time.time()
        expires = issued + self.token_lifetime
        token = "MIIemu" + secrets.token_urlsafe(96)
        with self._lock:
            self._issued[token] = expires
        region = project.get("name") if isinstance(project, Mapping) and project.get("name") else DEFAULT_REGION
        domain_info = {"id": self.domain_id, "name": self.user[2]}
        answer = {
            "token": {
                "expires_at": _iso(expires),
                "issued_at": _iso(issued),
                "methods": ["password"],
                "project": {"id": self.project_id, "name": region, "domain": domain_info},
                "user": {"id": _stable_id(self.user[0]), "name": self.user[0], "domain": domain_info},
                "roles": [{"id": "0", "name": "te_admin"}],
                "catalog": [],
            }
        }
        return self._json(201, answer, request_id, {"X-Subject-Token": token})

    # ---------------------------------------------------------------- status
    def _record_from(self, resource: _Resource, step: Mapping[str, Any]) -> dict[str, Any]:
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
                resource.end_time = max(_now_ms(), int(resource.base["start_time"]))
            record["end_time"] = resource.end_time
        return record

    def _peek(self, resource: _Resource) -> dict[str, Any]:
        """The record the next poll would answer, without moving the life cycle."""
        if not resource.steps:
            return dict(resource.base)
        step = resource.steps[min(resource.position, len(resource.steps) - 1)]
        return self._record_from(resource, step)

    async def _status(self, resource_id: str, workspace: str | None, request_id: str, *, advance: bool) -> web.Response:
        with self._lock:
            resource = self._lookup(resource_id, workspace)
            if resource is None:
                return self._error(404, "DQC.1016", "The resource does not exist", request_id)
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

    def _export(self, body: bytes, workspace: str | None, request_id: str) -> web.Response:
        def bad(message: str) -> web.Response:
            return self._error(400, "DQC.0001", f"Invalid parameter: {message}", request_id)

        payload = _json_object(body)
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
        steps = [_normalise_step(step) for step in self.export_script] or [{"status": "SUCCESS"}]
        resource_id = self._new_resource_id()
        with self._lock:
            base = self._base(resource_id, export_type, "EXPORT", f"{export_type}-{resource_id}.zip")
            base["export_resources"] = json.dumps(resources)
            resource = _Resource(resource_id, workspace, base, steps, "export")
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
            fields = _parse_multipart(content_type, body)
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
            resource = _Resource(resource_id, workspace, base, [], "upload")
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
            "matched_topics": [{"id": _stable_id(t), "name": t} for t in topics],
            "directories": directories,
            "queues": [],
            "connections": connections,
        }
        return self._json(200, answer, request_id)

    def _import(self, body: bytes, exchange: _Exchange, request_id: str) -> web.Response:
        def bad(message: str) -> web.Response:
            return self._error(400, "DQC.0001", f"Invalid parameter: {message}", request_id)

        payload = _json_object(body)
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
                return self._error(404, "DQC.1016", "The resource does not exist", request_id)
            if resource.upload["type"] != import_type:
                return bad(f"type {import_type!r} does not match the uploaded file's type {resource.upload['type']!r}")
            steps = [_normalise_step(step) for step in self.import_script] or [{"status": "SUCCESS"}]
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
            resource.base["start_time"] = _now_ms()
            resource.on_success = self._importer(resource, str(exchange.workspace), strategy, mappings)
        response = web.Response(status=204)
        response.headers["X-Request-Id"] = request_id
        return response

    def _importer(
        self, resource: _Resource, workspace: str, strategy: str, mappings: Mapping[str, Mapping[str, str]]
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
    def _downloadable(self, query: list[tuple[str, str]], exchange: _Exchange) -> _ExportFile | tuple[int, str, str]:
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
                return 404, "DQC.1016", "The resource does not exist"
            if resource.base.get("resource_type") == "REPORT" and obs_type is None:
                return 400, "DQC.0001", "Invalid parameter: obs_type is required to download a report"
            if not resource.downloadable:
                return 400, "DQC.1017", "The export file is not ready: the export has not succeeded"
            manifest = resource.manifest or {"emulator": "dataqc", "resource_id": resource_id}
        return _ExportFile(manifest, self.download_size, self._block)

    async def _download(
        self, request: web.Request, query: list[tuple[str, str]], exchange: _Exchange, request_id: str
    ) -> web.StreamResponse:
        export = self._downloadable(query, exchange)
        if not isinstance(export, _ExportFile):
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


@contextlib.contextmanager
def running_emulator(**kwargs: Any) -> Iterator[Emulator]:
    """``with running_emulator(download_size=4096) as emu: ... emu.url ...`` (a started emulator)."""
    emulator = Emulator(**kwargs)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@contextlib.asynccontextmanager
async def running_emulator_async(**kwargs: Any) -> AsyncIterator[Emulator]:
    """The same as :func:`running_emulator`, in the running event loop."""
    emulator = Emulator(**kwargs)
    await emulator.start_async()
    try:
        yield emulator
    finally:
        await emulator.stop_async()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def _parse_mix(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    mix: dict[str, float] = {}
    for item in text.split(","):
        name, _, weight = item.partition("=")
        mix[name.strip()] = float(weight) if weight.strip() else 1.0
    return mix


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m airflow_provider_dataqc.testing.emulator --port N``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_dataqc.testing.emulator",
        description="Serve a local DataArts Quality + IAM emulator on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--project-id", default=DEFAULT_PROJECT_ID)
    parser.add_argument("--workspace", action="append", help="known workspace (repeatable)")
    parser.add_argument("--download-size", type=int, default=1024, help="bytes of each downloaded file")
    parser.add_argument("--token-lifetime", type=float, default=86400.0, help="IAM token lifetime in seconds")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="fraction of requests that get a fault")
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--fault-mix", help=f"kind=weight,... of {', '.join(FAULT_KINDS)}")
    parser.add_argument("--fault-operations", default="status", help="comma-separated operations to fault")
    parser.add_argument("--slow-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    if not is_loopback_host(args.host):
        parser.error(f"--host {args.host!r} is not a loopback address: the emulator only serves this machine")
    faults = None
    if args.fault_rate > 0:
        try:
            faults = FaultPlan(
                rate=args.fault_rate,
                mix=_parse_mix(args.fault_mix),
                seed=args.fault_seed,
                operations=tuple(op.strip() for op in args.fault_operations.split(",") if op.strip()),
                slow_seconds=args.slow_seconds,
            )
        except ValueError as err:
            parser.error(str(err))
    emulator = Emulator(
        host=args.host,
        port=args.port,
        project_id=args.project_id,
        workspaces=tuple(args.workspace or DEFAULT_WORKSPACES),
        token_lifetime=args.token_lifetime,
        download_size=args.download_size,
        faults=faults,
    )

    async def serve() -> None:
        await emulator.start_async()
        print(f"DataQC emulator listening on {emulator.url}", flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        try:
            await stopping.wait()
        finally:
            await emulator.stop_async()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
