"""What broke when the provider was attacked from outside, at the level of calls: task retries
around calls that may have been carried out, TLS errors on the answer, answers that take too
long, answers that are not the file, cookies shared between connections, CA folders."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from conftest import set_connection as _set_connection
from pytest_httpserver import HTTPServer
from werkzeug import Response

from airflow_provider_dataqc.exceptions import DataQCApiError, DataQCOutcomeUnknownError
from airflow_provider_dataqc.hooks.dataqc import DataQCHook
from airflow_provider_dataqc.testing.emulator import DEFAULT_PROJECT_ID, DEFAULT_TOKEN, Emulator, FaultPlan

DAGS = Path(__file__).parent / "dags"
BASE = f"/v2/{DEFAULT_PROJECT_ID}/quality/resource"
EXPIRED = json.dumps({"error_code": "DQC.1017", "error_msg": "file expired"}).encode()


# ------------------------------------------------------------------ a raw HTTP peer on loopback
class RawPeer:
    """A TCP server on 127.0.0.1 that reads one request per connection and lets ``answer``
    write whatever bytes it likes (trickled, unframed, cut), then closes the connection."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                piece = conn.recv(65536)
                if not piece:
                    return
                data += piece
            self.requests.append(data)
            with contextlib.suppress(OSError):  # the client may hang up first
                self.answer(conn)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


@pytest.fixture
def raw_peer() -> Iterator[Callable[[Callable[[socket.socket], None]], RawPeer]]:
    peers: list[RawPeer] = []

    def start(answer: Callable[[socket.socket], None]) -> RawPeer:
        peers.append(RawPeer(answer))
        return peers[-1]

    yield start
    for peer in peers:
        peer.close()


def trickle(conn: socket.socket) -> None:
    """A 200 whose 400-byte body comes at 5 bytes a second (80 s in all)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n")
    for _ in range(400):
        conn.sendall(b" ")
        time.sleep(0.2)


def use_peer(monkeypatch: pytest.MonkeyPatch, url: str, conn_id: str = "dataqc_default", **extra: Any) -> None:
    """A token connection to a server that is not the emulator."""
    _set_connection(monkeypatch, SimpleNamespace(url=url), conn_id, "token", **extra)


# ------------------------------------------------------------------ task retries and ambiguity
def test_task_retries_never_repeat_an_export_or_import_the_service_may_have_carried_out(
    fresh_emulator: Emulator, use_connection: Any, run_dag: Any, tmp_path: Path
) -> None:
    use_connection(fresh_emulator)
    source = tmp_path / "rules.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("manifest.json", "{}")
    fresh_emulator.faults = FaultPlan(rate=1.0, mix={"reset": 1.0}, operations=("export", "import"))
    state, tasks = run_dag(
        "dataqc_task_retries", files=(DAGS / "dataqc_task_retries.py",), conf={"source": str(source)}
    )
    assert state == "failed" and tasks == {"export": "failed", "import": "failed"}
    # Two task retries were allowed; the service got each call once.
    assert fresh_emulator.count("export") == 1 and fresh_emulator.count("import") == 1
    assert fresh_emulator.count("upload") == 1  # the upload before the import, surely not repeated either


def test_only_failures_the_service_surely_did_not_act_on_stay_retryable(
    fresh_emulator: Emulator, use_connection: Any
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    hook = DataQCHook()
    for kind in ("reset", "http500_json", "http503"):
        fresh_emulator.faults = FaultPlan(rate=1.0, mix={kind: 1.0}, operations=("export",))
        with pytest.raises(DataQCOutcomeUnknownError) as unknown:
            hook.export_resources("quality-task", resources=[1])
        assert isinstance(unknown.value, AirflowFailException) and isinstance(unknown.value, DataQCApiError)
        assert "may have carried out this export" in str(unknown.value)
    fresh_emulator.faults = FaultPlan(rate=1.0, mix={"http429": 1.0}, operations=("export",))
    with pytest.raises(DataQCApiError) as throttled:
        hook.export_resources("quality-task", resources=[1])
    assert not isinstance(throttled.value, AirflowFailException)  # a 429 was surely not acted on
    fresh_emulator.faults = None
    with pytest.raises(DataQCApiError) as refused:
        hook.export_resources("quality-task", resources=[1], workspace="ws-nobody-knows")  # refused, not acted on
    assert not isinstance(refused.value, AirflowFailException) and 400 <= (refused.value.status_code or 0) < 500
    status_error = None
    fresh_emulator.faults = FaultPlan(rate=1.0, mix={"http503": 1.0}, operations=("status",))
    try:
        hook.get_resource_status("success-1")
    except DataQCApiError as err:
        status_error = err
    assert status_error is not None and not isinstance(status_error, AirflowFailException)  # idempotent


# ------------------------------------------------------------------ time bounds
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_trickled_answer_ends_when_the_attempt_time_does(
    raw_peer: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    peer = raw_peer(trickle)
    use_peer(monkeypatch, peer.url, timeout=1, max_retries=0)
    started = time.monotonic()
    with pytest.raises(DataQCApiError, match=r"read timeout after 1s: the answer was not complete in time") as caught:
        if mode == "sync":
            DataQCHook().get_resource_status("r-1")
        else:
            import asyncio

            from airflow_provider_dataqc.hooks.dataqc_async import AsyncDataQCClient

            async def status() -> Any:
                async with AsyncDataQCClient("dataqc_default", log=__import__("logging").getLogger("t")) as client:
                    return await client.get_resource_status("r-1")

            asyncio.run(status())
    assert caught.value.transient and time.monotonic() - started < 3.0


def test_no_attempt_outlives_the_trigger_deadline(raw_peer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

    peer = raw_peer(trickle)
    use_peer(monkeypatch, peer.url, timeout=60, retry_timeout=300, max_retries=3)
    trigger = DataQCResourceStatusTrigger("r-1", poll_interval=0.1, end_time=time.time() + 1.5)

    async def first() -> Any:
        async for event in trigger.run():
            return event.payload

    started = time.monotonic()
    event = asyncio.run(first())
    assert event["status"] == "timeout" and time.monotonic() - started < 3.5
    assert len(peer.requests) >= 1


# ------------------------------------------------------------------ downloads that are not the file
@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer) -> DataQCHook:
    use_peer(monkeypatch, httpserver.url_for("/").rstrip("/"), max_retries=1, backoff_factor=0)
    return DataQCHook()


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"<html><body>Down for maintenance</body></html>", "text/html", None),
        (json.dumps({"error_code": "DQC.1017", "error_msg": "file expired"}).encode(), "application/json", "DQC.1017"),
        (
            json.dumps({"error_code": "DQC.1017", "error_msg": "file expired"}).encode(),
            "application/octet-stream",
            "DQC.1017",
        ),
    ],
)
def test_a_2xx_error_page_is_not_stored_as_the_file(
    served: DataQCHook, httpserver: HTTPServer, tmp_path: Path, body: bytes, content_type: str, code: str | None
) -> None:
    httpserver.expect_request(f"{BASE}/download").respond_with_response(
        Response(body, content_type=content_type, headers={"X-Request-Id": "req-page"})
    )
    with pytest.raises(DataQCApiError, match="not the exported file") as caught:
        served.download_resource_file("r-1", tmp_path / "out.zip")
    assert caught.value.error_code == code and caught.value.request_id == "req-page"
    assert list(tmp_path.iterdir()) == []


def test_a_zip_that_does_not_open_is_retried_then_reported(
    served: DataQCHook, httpserver: HTTPServer, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("rules.json", "x" * 5000)
    broken = buffer.getvalue()[:-30]  # the central directory is cut
    httpserver.expect_request(f"{BASE}/download").respond_with_data(broken, content_type="application/zip")
    with pytest.raises(DataQCApiError, match="ZIP file that does not open"):
        served.download_resource_file("r-1", tmp_path / "out.zip")
    assert len(httpserver.log) == 2 and list(tmp_path.iterdir()) == []


def test_a_gzip_bomb_is_refused_before_it_fills_the_disk(
    served: DataQCHook, httpserver: HTTPServer, tmp_path: Path
) -> None:
    bomb = gzip.compress(b"\0" * (512 * 1024 * 1024), compresslevel=9)  # ~0.5 MB that inflates to 512 MiB
    httpserver.expect_request(f"{BASE}/download").respond_with_response(
        Response(bomb, headers={"Content-Encoding": "gzip"}, content_type="application/zip")
    )
    with pytest.raises(DataQCApiError, match="inflates to more than 200x"):
        served.download_resource_file("r-1", tmp_path / "out.zip")
    assert len(httpserver.log) == 1 and list(tmp_path.iterdir()) == []  # permanent: not retried
    assert httpserver.log[0][0].headers.get("Accept-Encoding") == "identity"


def test_an_unframed_body_cut_short_is_reported_incomplete(
    raw_peer: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def unframed(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
        conn.sendall(b"report,rows\n1,2\n")  # then the connection closes: whole, or cut?

    peer = raw_peer(unframed)
    use_peer(monkeypatch, peer.url, max_retries=1, backoff_factor=0)
    with pytest.raises(DataQCApiError, match="no length and no chunked framing"):
        DataQCHook().download_resource_file("r-1", tmp_path / "out.csv")
    assert len(peer.requests) == 2 and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ cookies
def test_triggers_of_different_connections_share_no_cookies(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import logging

    from airflow_provider_dataqc.hooks.dataqc_async import AsyncDataQCClient

    answer = {"status": "RUNNING", "resource_id": "r-1"}
    httpserver.expect_request(f"{BASE}/status/r-1").respond_with_response(
        Response(json.dumps(answer), content_type="application/json", headers={"Set-Cookie": "team=a; Path=/"})
    )
    url = httpserver.url_for("/").rstrip("/")
    use_peer(monkeypatch, url, conn_id="team_a")
    use_peer(monkeypatch, url, conn_id="team_b")

    async def both() -> None:
        async with AsyncDataQCClient("team_a", log=logging.getLogger("a")) as a:
            await a.get_resource_status("r-1")
            async with AsyncDataQCClient("team_b", log=logging.getLogger("b")) as b:
                assert b._shared is a._shared  # one pool, as before
                await b.get_resource_status("r-1")

    asyncio.run(both())
    assert len(httpserver.log) == 2
    assert all("Cookie" not in request.headers for request, _ in httpserver.log)
    assert all(request.headers.get("X-Auth-Token") == DEFAULT_TOKEN for request, _ in httpserver.log)
