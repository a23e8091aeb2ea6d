"""DataQCResourceStatusTrigger over real HTTP on 127.0.0.1: the emulator (in this process or in a
separate one) or a small aiohttp server of the test's own. Events, errors, timeouts, auth modes,
token renewal, cancellation, connection reuse, and an event loop that is never blocked."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import itertools
import json
import logging
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from aiohttp import web
from conftest import connection_json

from airflow_provider_dataqc.core.status import API_FIELDS
from airflow_provider_dataqc.testing.emulator import (
    DEFAULT_AKSK,
    DEFAULT_PROJECT_ID,
    DEFAULT_USER,
    FAILED_MESSAGE,
    TIMEOUT_MESSAGE,
    Emulator,
    FaultPlan,
)
from airflow_provider_dataqc.triggers.dataqc import (
    EVENT_STATUSES,
    DataQCResourceStatusTrigger,
    _SharedSession,
)

STATUS_PATH = f"/v2/{DEFAULT_PROJECT_ID}/quality/resource/status/{{rid}}"


# ------------------------------------------------------------------------------------------- helpers
def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def first_event(trigger: DataQCResourceStatusTrigger, limit: float = 30.0) -> dict[str, Any]:
    """The trigger's events, checked to be exactly one with a known status."""
    events: list[dict[str, Any]] = []

    async def collect() -> None:
        async for event in trigger.run():
            events.append(event.payload)

    await asyncio.wait_for(collect(), limit)
    assert len(events) == 1, events
    assert events[0]["status"] in EVENT_STATUSES and events[0]["resource_id"] == trigger.resource_id
    json.dumps(events[0])  # what the triggerer stores must be JSON
    return events[0]


async def until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Heartbeat:
    """Measures how late a 10 ms sleep wakes up: the event loop's lag."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            started = loop.time()
            await asyncio.sleep(0.01)
            self.lags.append(loop.time() - started - 0.01)

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._beat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    @property
    def max_lag(self) -> float:
        return max(self.lags)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the garbage collector off the objects that exist now (``gc.freeze()``, as Airflow
    does before it forks workers). A full collection of a process holding Airflow and pytest
    takes 0.1-0.5 s wherever it strikes; lag measured inside this block is the code's own."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class SlowCallbacks(logging.Handler):
    """asyncio debug mode's "Executing <callback> took N seconds" warnings, while active
    (use inside :func:`frozen_heap`: debug mode's tracebacks soon cause full collections)."""

    def __init__(self, threshold: float) -> None:
        super().__init__(logging.WARNING)
        self.threshold = threshold
        self.messages: list[str] = []
        self._logger = logging.getLogger("asyncio")

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing"):
            self.messages.append(message)

    def __enter__(self) -> SlowCallbacks:
        loop = asyncio.get_running_loop()
        self._saved = (loop.get_debug(), loop.slow_callback_duration, self._logger.level)
        self._logger.addHandler(self)
        self._logger.setLevel(logging.WARNING)
        loop.set_debug(True)
        loop.slow_callback_duration = self.threshold
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        debug, duration, level = self._saved
        loop.set_debug(debug)
        loop.slow_callback_duration = duration
        self._logger.removeHandler(self)
        self._logger.setLevel(level)


def client_sockets(port: int) -> list[Any]:
    """This process's open TCP connections to ``port`` (client side)."""
    return [c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port]


def status_codes(emu: Emulator, rid: str) -> list[int | None]:
    return [r.status for r in emu.requests if r.resource_id == rid and r.operation == "status"]


@pytest.fixture(autouse=True)
def _no_session_left() -> Iterator[None]:
    """Every test ends with no shared session open in any loop."""
    yield
    for pools in list(_SharedSession._pools.values()):
        assert not pools, pools


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[SimpleNamespace]:
    """The emulator in a separate process, as ``python -m airflow_provider_dataqc.testing.emulator``."""
    process = subprocess.Popen(
        # Without flow control: 200 triggers polling every 0.1 s measure the loop, not the quota.
        [sys.executable, "-m", "airflow_provider_dataqc.testing.emulator", "--port", "0", "--no-flow-control"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.strip().rsplit(" ", 1)[-1]
        yield SimpleNamespace(url=url, port=int(url.rsplit(":", 1)[-1]))
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
async def piece_server() -> AsyncIterator[SimpleNamespace]:
    """Status answers for ``<mode>-<N>-...`` IDs: RUNNING N times, then SUCCESS. Mode ``plain``
    answers at once; ``sized`` (Content-Length) and ``chunked`` send the body in three pieces
    20 ms apart. ``peers`` records the client port of every request."""
    polls: Counter[str] = Counter()
    peers: list[tuple[str, int]] = []

    async def status(request: web.Request) -> web.StreamResponse:
        rid = request.match_info["rid"]
        mode, running = rid.split("-")[:2]
        polls[rid] += 1
        peers.append((rid, request.transport.get_extra_info("peername")[1]))  # type: ignore[union-attr]
        state = "RUNNING" if polls[rid] <= int(running) else "SUCCESS"
        body = json.dumps({"resource_id": rid, "status": state, "export_resources": "x" * 2000}).encode()
        headers = {"Content-Type": "application/json", "X-Request-Id": f"{rid}-{polls[rid]}"}
        if mode == "plain":
            return web.Response(body=body, headers=headers)
        response = web.StreamResponse(headers=headers)
        if mode == "sized":
            response.content_length = len(body)
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        third = len(body) // 3
        for piece in (body[:third], body[third : 2 * third], body[2 * third :]):
            await response.write(piece)
            await asyncio.sleep(0.02)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get(STATUS_PATH, status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", port=port, peers=peers, polls=polls)
    await runner.cleanup()


# ------------------------------------------------------------------------------------------- outcomes
async def test_success_event_carries_the_status_record(emulator: Emulator, use_connection: Any) -> None:
    use_connection(emulator)
    rid = unique("success-2")
    event = await first_event(DataQCResourceStatusTrigger(rid, poll_interval=0.01))
    assert event["status"] == "success" and "succeeded" in event["message"]
    record = event["record"]
    assert set(record) == set(API_FIELDS) | {"request_id"}
    assert record["resource_id"] == rid and record["status"] == "SUCCESS" and record["request_id"]
    assert emulator.count("status", resource_id=rid) == 3  # WAITING, RUNNING, SUCCESS


@pytest.mark.parametrize(
    ("kind", "status", "message"), [("failed", "FAILED", FAILED_MESSAGE), ("timeout", "TIMEOUT", TIMEOUT_MESSAGE)]
)
async def test_failed_and_timeout_statuses_end_with_a_failed_event(
    emulator: Emulator, use_connection: Any, kind: str, status: str, message: str
) -> None:
    use_connection(emulator)
    rid = unique(f"{kind}-1")
    event = await first_event(DataQCResourceStatusTrigger(rid, poll_interval=0.01))
    assert event["status"] == "failed"
    assert f"ended {status}" in event["message"] and message in event["message"] and rid in event["message"]
    assert event["record"]["status"] == status and event["record"]["error_msg"] == message
    assert emulator.count("status", resource_id=rid) == 2


async def test_wait_for_file(emulator: Emulator, use_connection: Any) -> None:
    use_connection(emulator)
    slow = unique("slowfile-2")
    event = await first_event(DataQCResourceStatusTrigger(slow, poll_interval=0.01, wait_for_file=True))
    assert event["status"] == "success" and event["record"]["file_status"] == "GENERATED"
    assert emulator.count("status", resource_id=slow) == 3  # PREPARING twice, then GENERATED

    not_waiting = unique("slowfile-2")
    event = await first_event(DataQCResourceStatusTrigger(not_waiting, poll_interval=0.01))
    assert event["status"] == "success" and event["record"]["file_status"] == "PREPARING"

    lost = unique("filefail-1")
    event = await first_event(DataQCResourceStatusTrigger(lost, poll_interval=0.01, wait_for_file=True))
    assert event["status"] == "failed" and "its file is FAILED" in event["message"]
    assert event["record"]["status"] == "SUCCESS"


async def test_undocumented_status_keeps_waiting_with_a_warning(
    emulator: Emulator, use_connection: Any, task_logs: Any
) -> None:
    use_connection(emulator)
    rid = unique("unknown-2")
    event = await first_event(DataQCResourceStatusTrigger(rid, poll_interval=0.01))
    assert event["status"] == "success"
    warned = [line for line in task_logs.lines("warning") if "undocumented status 'PAUSED'" in line and rid in line]
    # Two polls answered PAUSED, each logged (lines may be printed by more than one handler).
    assert len({line.rsplit("X-Request-Id=", 1)[1] for line in warned}) == 2


# ------------------------------------------------------------------------------------------- errors
async def test_transient_errors_then_success(fresh_emulator: Emulator, use_connection: Any, task_logs: Any) -> None:
    use_connection(fresh_emulator, max_retries=0)
    rid = unique("scripted")
    fresh_emulator.script(rid, [{"http_status": 503}, {"http_status": 502}, "RUNNING", "SUCCESS"])
    event = await first_event(DataQCResourceStatusTrigger(rid, poll_interval=0.01, max_consecutive_errors=3))
    assert event["status"] == "success"
    assert status_codes(fresh_emulator, rid) == [503, 502, 200, 200]
    warned = " ".join(line for line in task_logs.lines("warning") if "failed, polling again" in line)
    assert "Poll 1/3" in warned and "HTTP 503" in warned and "Poll 2/3" in warned and "HTTP 502" in warned
    assert "Poll 3/3" not in warned


async def test_random_faults_of_every_kind_are_outlasted(fresh_emulator: Emulator, use_connection: Any) -> None:
    use_connection(fresh_emulator, max_retries=3, timeout=2)
    fresh_emulator.faults = FaultPlan(rate=0.4, seed=11)  # 500, 502 page, 503, 429, reset, truncated
    rids = [unique("success-4") for _ in range(5)]
    events = await asyncio.gather(*(first_event(DataQCResourceStatusTrigger(r, poll_interval=0.01)) for r in rids))
    assert [e["status"] for e in events] == ["success"] * 5
    assert sum(fresh_emulator.faults_injected.values()) >= 5


async def test_persistent_errors_give_one_error_event_after_max_consecutive_errors(
    fresh_emulator: Emulator, use_connection: Any
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    fresh_emulator.faults = FaultPlan(rate=1.0, mix={"http503": 1.0})
    rid = unique("success-1")
    interval = 0.5
    started = time.monotonic()
    event = await first_event(DataQCResourceStatusTrigger(rid, poll_interval=interval, max_consecutive_errors=3))
    elapsed = time.monotonic() - started
    assert event["status"] == "error" and "gave up after 3 failed polls in a row" in event["message"]
    assert event["error"]["status_code"] == 503 and event["error"]["transient"] is True
    assert event["error"]["request_id"]
    times = [r.time for r in fresh_emulator.requests if r.resource_id == rid]
    assert len(times) == 3  # one request per poll (max_retries=0), three polls
    assert all(later - earlier >= interval * 0.9 for earlier, later in itertools.pairwise(times))
    assert elapsed < 3 * interval - 0.1  # two sleeps; none after the last poll


async def test_failures_counted_before_deferring_use_up_the_budget(
    fresh_emulator: Emulator, use_connection: Any
) -> None:
    use_connection(fresh_emulator, max_retries=0)
    fresh_emulator.faults = FaultPlan(rate=1.0, mix={"http503": 1.0})
    rid = unique("success-1")
    trigger = DataQCResourceStatusTrigger(rid, poll_interval=0.01, max_consecutive_errors=3, consecutive_errors=2)
    event = await first_event(trigger)
    assert event["status"] == "error" and "gave up after 3 failed polls in a row" in event["message"]
    assert fresh_emulator.count("status", resource_id=rid) == 1  # the sensor's two failed pokes came first


async def test_errors_without_an_answer_are_transient_too(use_connection: Any) -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    use_connection(SimpleNamespace(url=f"http://127.0.0.1:{port}"), max_retries=0)
    event = await first_event(
        DataQCResourceStatusTrigger(unique("success-1"), poll_interval=0.01, max_consecutive_errors=2)
    )
    assert event["status"] == "error" and "connection error" in event["message"]
    assert "gave up after 2 failed polls" in event["message"]
    assert event["error"]["transient"] is True and event["error"]["status_code"] is None


async def test_permanent_error_ends_the_wait_at_once(fresh_emulator: Emulator, use_connection: Any) -> None:
    use_connection(fresh_emulator)
    rid = unique("nobody-made-this")
    started = time.monotonic()
    event = await first_event(DataQCResourceStatusTrigger(rid, poll_interval=30, max_consecutive_errors=5))
    assert time.monotonic() - started < 10  # no 30 s sleep
    assert event["status"] == "error" and "HTTP 404" in event["message"]
    assert event["error"] == {
        "status_code": 404,
        "error_code": "DQC.1016",
        "error_msg": "The resource does not exist",
        "request_id": event["error"]["request_id"],
        "transient": False,
    }
    assert event["error"]["request_id"] and fresh_emulator.count("status", resource_id=rid) == 1


async def test_connection_problems_are_error_events(emulator: Emulator, use_connection: Any) -> None:
    event = await first_event(DataQCResourceStatusTrigger("success-1", dataqc_conn_id="dataqc_nowhere"))
    assert event["status"] == "error" and "dataqc_nowhere" in event["message"]
    use_connection(emulator, conn_id="dataqc_broken", project_id="")
    event = await first_event(DataQCResourceStatusTrigger("success-1", dataqc_conn_id="dataqc_broken"))
    assert event["status"] == "error" and "dataqc_broken" in event["message"] and "project_id" in event["message"]
    assert event["error"]["transient"] is False


# ------------------------------------------------------------------------------------------- timeouts
async def test_end_time_already_passed_times_out_without_a_request(
    fresh_emulator: Emulator, use_connection: Any
) -> None:
    use_connection(fresh_emulator)
    event = await first_event(DataQCResourceStatusTrigger("success-1", end_time=time.time() - 1))
    assert event["status"] == "timeout" and "timeout passed" in event["message"] and event["record"] is None
    assert fresh_emulator.count() == 0


async def test_end_time_during_the_wait_times_out_with_the_last_status(emulator: Emulator, use_connection: Any) -> None:
    use_connection(emulator)
    rid = unique("success-100000")
    started = time.monotonic()
    event = await first_event(DataQCResourceStatusTrigger(rid, poll_interval=5, end_time=time.time() + 0.5))
    assert time.monotonic() - started < 3  # the sleep is cut at end_time, not a whole interval
    assert event["status"] == "timeout" and "last seen" in event["message"] and "WAITING" in event["message"]
    assert event["record"]["status"] == "WAITING" and emulator.count("status", resource_id=rid) == 1


async def test_retries_within_a_poll_stop_at_end_time(fresh_emulator: Emulator, use_connection: Any) -> None:
    # Twenty retries with waits up to 2 s would take ~20 s; end_time comes after 1 s.
    use_connection(fresh_emulator, max_retries=20, backoff_factor=2.0, retry_max_wait=2)
    fresh_emulator.faults = FaultPlan(rate=1.0, mix={"http503": 1.0})
    started = time.monotonic()
    event = await first_event(
        DataQCResourceStatusTrigger(
            unique("success-1"), poll_interval=0.2, end_time=time.time() + 1.0, max_consecutive_errors=100
        )
    )
    assert event["status"] == "timeout"
    assert time.monotonic() - started < 6


# ------------------------------------------------------------------------------------------- serialisation
def test_serialize_round_trips_through_json() -> None:
    trigger = DataQCResourceStatusTrigger(
        resource_id="success-1",
        dataqc_conn_id="dataqc_prod",
        workspace="ws-prod",
        poll_interval=12.5,
        wait_for_file=True,
        end_time=1_900_000_000.25,
        max_consecutive_errors=4,
        project_id="0123456789abcdef0123456789abcdef",
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_dataqc.triggers.dataqc.DataQCResourceStatusTrigger"
    restored = json.loads(json.dumps(kwargs))
    assert restored == kwargs
    assert all(value is None or isinstance(value, (str, int, float, bool)) for value in restored.values())
    module, _, name = classpath.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**restored)
    assert again.serialize() == (classpath, kwargs)
    assert (again.poll_interval, again.end_time, again.wait_for_file) == (12.5, 1_900_000_000.25, True)


# ------------------------------------------------------------------------------------------- auth
@pytest.mark.parametrize("auth", ["token", "password", "aksk"])
async def test_auth_modes(fresh_emulator: Emulator, use_connection: Any, task_logs: Any, auth: str) -> None:
    use_connection(fresh_emulator, auth)
    rids = [unique("success-2") for _ in range(5)]
    events = await asyncio.gather(*(first_event(DataQCResourceStatusTrigger(r, poll_interval=0.01)) for r in rids))
    assert [e["status"] for e in events] == ["success"] * 5
    polls = [r for r in fresh_emulator.requests if r.operation == "status"]
    assert len(polls) == 15 and {r.status for r in polls} == {200}
    headers = {key.lower() for r in polls for key in r.headers}
    if auth == "aksk":
        assert "authorization" in headers and "x-auth-token" not in headers and "x-sdk-date" in headers
    else:
        assert "x-auth-token" in headers and "authorization" not in headers
    assert fresh_emulator.iam_calls == (1 if auth == "password" else 0)  # one token for five triggers
    secrets = [DEFAULT_AKSK[1], DEFAULT_USER[1], *fresh_emulator.issued_tokens]
    shown = task_logs.text() + json.dumps(events)
    assert not [secret for secret in secrets if secret in shown]


async def test_iam_token_is_fetched_without_blocking_the_loop(fresh_emulator: Emulator, use_connection: Any) -> None:
    use_connection(fresh_emulator, "password")
    fresh_emulator.faults = FaultPlan(rate=1.0, mix={"slow": 1.0}, operations=("iam",), slow_seconds=0.6)
    with frozen_heap():
        async with Heartbeat() as beat:
            events = await asyncio.gather(
                *(first_event(DataQCResourceStatusTrigger(unique("success-1"), poll_interval=0.01)) for _ in range(10))
            )
    assert [e["status"] for e in events] == ["success"] * 10
    assert fresh_emulator.iam_calls == 1
    assert beat.max_lag < 0.3  # the 0.6 s IAM answer was awaited, not waited for


async def test_wrong_password_costs_one_iam_call_for_all_waiting_triggers(
    fresh_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = json.loads(connection_json(fresh_emulator, "password"))
    conn["password"] = "not-the-password"
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", json.dumps(conn))
    # IAM answers after 0.5 s, so every trigger asks for a token while the first request is out.
    fresh_emulator.faults = FaultPlan(rate=1.0, mix={"slow": 1.0}, operations=("iam",), slow_seconds=0.5)
    events = await asyncio.gather(
        *(first_event(DataQCResourceStatusTrigger(unique("success-1"), poll_interval=0.01)) for _ in range(8))
    )
    assert {e["status"] for e in events} == {"error"}
    assert all("IAM" in e["message"] and e["error"]["status_code"] == 401 for e in events)
    assert fresh_emulator.iam_calls == 1 and fresh_emulator.count("status") == 0
    assert not [e for e in events if "not-the-password" in json.dumps(e)]


async def test_revoked_token_mid_wait_costs_exactly_one_new_iam_call(
    fresh_emulator: Emulator, use_connection: Any
) -> None:
    use_connection(fresh_emulator, "password")
    rid = unique("success-5")
    waiting = asyncio.create_task(first_event(DataQCResourceStatusTrigger(rid, poll_interval=0.1)))
    await until(lambda: fresh_emulator.count("status", resource_id=rid) >= 2)
    assert fresh_emulator.revoke_tokens() == 1
    event = await waiting
    assert event["status"] == "success"
    assert fresh_emulator.iam_calls == 2
    codes = status_codes(fresh_emulator, rid)
    assert codes.count(401) == 1 and codes.count(200) == 6  # the refused poll was repeated once


async def test_expiring_token_is_renewed_once_during_the_wait(fresh_emulator: Emulator, use_connection: Any) -> None:
    use_connection(fresh_emulator, "password")
    fresh_emulator.token_lifetime = 2.0  # renewed after half its life: between the second and third poll
    rid = unique("success-2")
    event = await first_event(DataQCResourceStatusTrigger(rid, poll_interval=0.7))
    assert event["status"] == "success"
    assert fresh_emulator.iam_calls == 2
    assert status_codes(fresh_emulator, rid) == [200, 200, 200]  # renewed before it expired: no 401


# ------------------------------------------------------------------------------------------- transport
@pytest.mark.parametrize("mode", ["sized", "chunked"])
async def test_answers_arriving_in_pieces_are_read_whole(
    piece_server: SimpleNamespace, use_connection: Any, mode: str
) -> None:
    use_connection(piece_server, max_retries=0)
    rid = unique(f"{mode}-1")
    event = await first_event(DataQCResourceStatusTrigger(rid, poll_interval=0.01, max_consecutive_errors=1))
    assert event["status"] == "success", event
    assert event["record"]["export_resources"] == "x" * 2000 and event["record"]["request_id"] == f"{rid}-2"


async def test_connections_are_reused_across_polls_and_triggers(
    piece_server: SimpleNamespace, use_connection: Any
) -> None:
    use_connection(piece_server)
    rid = unique("plain-5")
    assert (await first_event(DataQCResourceStatusTrigger(rid, poll_interval=0.01)))["status"] == "success"
    assert len({port for r, port in piece_server.peers if r == rid}) == 1  # six polls, one connection

    async def staggered(index: int) -> dict[str, Any]:
        await asyncio.sleep(index * 0.01)
        return await first_event(DataQCResourceStatusTrigger(unique("plain-4"), poll_interval=0.1))

    piece_server.peers.clear()
    events = await asyncio.gather(*(staggered(i) for i in range(10)))
    assert {e["status"] for e in events} == {"success"}
    assert len(piece_server.peers) == 50
    # Without reuse each of the 50 polls opens a connection; with it, at most one per trigger
    # (usually far fewer: triggers take turns on idle keep-alive connections).
    assert len({port for _, port in piece_server.peers}) <= 10


# ------------------------------------------------------------------------------------------- cancellation
async def test_cancellation_leaves_nothing_behind(fresh_emulator: Emulator, use_connection: Any) -> None:
    use_connection(fresh_emulator)
    endless, short = unique("success-100000"), unique("success-3")
    first = asyncio.create_task(first_event(DataQCResourceStatusTrigger(endless, poll_interval=0.05)))
    await until(lambda: fresh_emulator.count("status", resource_id=endless) >= 3)
    shared = _SharedSession.pools()[True]
    second = asyncio.create_task(first_event(DataQCResourceStatusTrigger(short, poll_interval=0.05)))
    await until(lambda: fresh_emulator.count("status", resource_id=short) >= 1)
    assert shared.users == 2 and _SharedSession.pools()[True] is shared  # one session for both

    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert shared.users == 1 and not shared.session.closed  # the other trigger still uses it
    assert (await second)["status"] == "success"
    assert shared.users == 0 and shared.session.closed and _SharedSession.pools() == {}
    await asyncio.sleep(0)
    assert client_sockets(fresh_emulator.port) == []
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_cancellation_during_a_request(fresh_emulator: Emulator, use_connection: Any) -> None:
    use_connection(fresh_emulator)
    rid = unique("stuck")
    fresh_emulator.script(rid, [{"status": "RUNNING", "delay": 5}])
    waiting = asyncio.create_task(first_event(DataQCResourceStatusTrigger(rid, poll_interval=0.05)))
    await until(lambda: len(client_sockets(fresh_emulator.port)) == 1)
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0)
    assert _SharedSession.pools() == {} and client_sockets(fresh_emulator.port) == []
    assert asyncio.all_tasks() == {asyncio.current_task()}


# ------------------------------------------------------------------------------------------- the event loop
async def test_connection_lookup_and_masking_never_block_the_loop(
    emulator: Emulator, use_connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow secrets backend (0.3 s a lookup) and, on Airflow 3, a slow supervisor (0.3 s a
    message): the loop never runs a callback for 0.1 s, so neither ran on it."""
    from airflow.secrets.environment_variables import EnvironmentVariablesBackend

    use_connection(emulator, "password")
    loop_thread = threading.get_ident()
    lookups: list[int] = []
    original = EnvironmentVariablesBackend.get_conn_value

    def slow_lookup(self: Any, conn_id: str) -> Any:
        lookups.append(threading.get_ident())
        time.sleep(0.3)
        return original(self, conn_id)

    monkeypatch.setattr(EnvironmentVariablesBackend, "get_conn_value", slow_lookup)
    supervisor = SlowSupervisor()
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:  # Airflow 2: no supervisor; secrets are masked in this process
        task_runner = None
    if task_runner is not None:
        monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", supervisor, raising=False)

    with frozen_heap(), SlowCallbacks(0.1) as slow:
        async with Heartbeat() as beat:
            event = await first_event(DataQCResourceStatusTrigger(unique("success-1"), poll_interval=0.01))
    assert event["status"] == "success"
    assert lookups and loop_thread not in lookups
    assert slow.messages == [] and beat.max_lag < 0.25
    assert supervisor.on_loop_thread(loop_thread) == []
    if task_runner is not None:  # the password, the extra and the new IAM token, all sent without blocking
        assert supervisor.sent_async.count("MaskSecret") >= 2


async def test_triggers_starting_together_share_one_connection_lookup(
    emulator: Emulator, use_connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.secrets.environment_variables import EnvironmentVariablesBackend

    use_connection(emulator)
    lookups: list[str] = []
    original = EnvironmentVariablesBackend.get_conn_value

    def counted(self: Any, conn_id: str) -> Any:
        lookups.append(conn_id)
        time.sleep(0.1)  # a secrets backend that takes its time
        return original(self, conn_id)

    monkeypatch.setattr(EnvironmentVariablesBackend, "get_conn_value", counted)
    events = await asyncio.gather(
        *(first_event(DataQCResourceStatusTrigger(unique("success-1"), poll_interval=0.01)) for _ in range(20))
    )
    assert {e["status"] for e in events} == {"success"}
    assert lookups == ["dataqc_default"]

    # The trigger reading it is cancelled: the ones waiting for it read it again, once.
    lookups.clear()
    reader = asyncio.create_task(first_event(DataQCResourceStatusTrigger(unique("success-0"))))
    await until(lambda: len(lookups) == 1)
    waiters = [asyncio.create_task(first_event(DataQCResourceStatusTrigger(unique("success-0")))) for _ in range(3)]
    await asyncio.sleep(0.02)
    reader.cancel()
    assert [e["status"] for e in await asyncio.gather(*waiters)] == ["success"] * 3
    assert reader.cancelled() and lookups == ["dataqc_default"] * 2

    # Later triggers read the connection afresh.
    await first_event(DataQCResourceStatusTrigger(unique("success-0")))
    assert len(lookups) == 3


class SlowSupervisor:
    """Stands in for Airflow 3's supervisor channel: every message takes 0.3 s."""

    def __init__(self) -> None:
        self.sent_sync: list[tuple[str, int]] = []
        self.sent_async: list[str] = []

    def send(self, msg: Any) -> Any:
        self.sent_sync.append((type(msg).__name__, threading.get_ident()))
        time.sleep(0.3)
        return None

    async def asend(self, msg: Any) -> Any:
        self.sent_async.append(type(msg).__name__)
        await asyncio.sleep(0.3)
        return None

    def on_loop_thread(self, loop_thread: int) -> list[str]:
        return [name for name, thread in self.sent_sync if thread == loop_thread]


async def test_200_triggers_in_one_loop(emulator_process: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 triggers of every outcome against the emulator in another process, with asyncio
    debug mode watching for callbacks over 100 ms and a heartbeat measuring the loop's lag."""
    monkeypatch.setenv("AIRFLOW_CONN_DATAQC_DEFAULT", connection_json(emulator_process))
    # One trigger first: the first connection lookup of a process imports Airflow's secrets code.
    assert (await first_event(DataQCResourceStatusTrigger(unique("success-0"))))["status"] == "success"

    # Room for the first answer: no attempt runs past end_time, so a wait must be seen before it.
    ends = time.time() + 4.0
    kinds = [
        ("success-3", {}, "success"),
        ("failed-2", {}, "failed"),
        ("timeout-2", {}, "failed"),
        ("slowfile-2", {"wait_for_file": True}, "success"),
        ("nobody-made-this", {}, "error"),
        ("success-100000", {"end_time": ends}, "timeout"),
        ("unknown-2", {}, "success"),
    ]
    cases = [(unique(kinds[i % len(kinds)][0]), *kinds[i % len(kinds)][1:]) for i in range(200)]
    with frozen_heap(), SlowCallbacks(0.1) as slow:
        async with Heartbeat() as beat:
            events = await asyncio.gather(
                *(first_event(DataQCResourceStatusTrigger(rid, poll_interval=0.1, **kw)) for rid, kw, _ in cases)
            )
    assert [e["status"] for e in events] == [expected for _, _, expected in cases]
    for event, (rid, _, expected) in zip(events, cases, strict=True):
        assert event["resource_id"] == rid
        if rid.startswith("timeout-"):
            assert event["record"]["status"] == "TIMEOUT"
        if expected == "timeout":  # the last status seen (Airflow 2 reads the connections one at a time)
            assert event["record"]["status"] in ("WAITING", "RUNNING")
    assert slow.messages == [], slow.messages[:5]
    assert beat.max_lag < 1.0, beat.max_lag
    await asyncio.sleep(0)
    assert client_sockets(emulator_process.port) == []
