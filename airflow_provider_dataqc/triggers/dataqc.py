"""DataQCResourceStatusTrigger: waits for an import/export task on the triggerer's event loop.

The trigger drives the same call plan as the sync hook (:func:`core.calls.call`:
authentication, signing, the one token refresh, retries) with ``aiohttp``.
Nothing here blocks the loop: the connection is read with Airflow's async
lookup, secrets are registered with the log masker asynchronously, IAM tokens
are fetched with ``aiohttp`` under an ``asyncio.Lock``, and one ``aiohttp``
session (keep-alive pool) is shared by every trigger of the process and closed
when the last one ends or is cancelled.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import replace
from typing import Any, TypeVar

import aiohttp
from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.triggers.base import BaseTrigger, TriggerEvent
from yarl import URL

from airflow_provider_dataqc.core import api
from airflow_provider_dataqc.core.auth import TOKEN_CACHE, IamToken, PreparedRequest, settle_token, token_cache_key
from airflow_provider_dataqc.core.calls import (
    Action,
    Answer,
    CallPlan,
    GetToken,
    NoAnswer,
    Send,
    Sleep,
    call,
    fetch_token,
)
from airflow_provider_dataqc.core.errors import CallFailure, request_id_of
from airflow_provider_dataqc.core.settings import ConnectionSettings, InvalidSettingError, resolve_workspace
from airflow_provider_dataqc.core.status import Outcome, ResourceStatus, assess
from airflow_provider_dataqc.hooks.dataqc import (
    MAX_ANSWER_BYTES,
    DataQCApiError,
    DataQCHook,
    mask_secret_value,
    settings_from_connection,
    status_from_answer,
)

_T = TypeVar("_T")
_AsyncMask = Callable[[str], Awaitable[None]]
try:  # Airflow 3: tells the supervisor without a blocking round trip from the event loop
    from airflow.sdk.log import amask_secret as _amask_secret_sdk

    _amask_secret: _AsyncMask | None = _amask_secret_sdk
except ImportError:  # Airflow 2: the masker lives in this process; masking does no I/O
    _amask_secret = None

#: Event ``status`` values; :meth:`DataQCResourceStatusSensor.execute_complete` accepts only these.
EVENT_SUCCESS = "success"
EVENT_FAILED = "failed"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"
EVENT_STATUSES = frozenset({EVENT_SUCCESS, EVENT_FAILED, EVENT_TIMEOUT, EVENT_ERROR})

#: Open connections per host at most, shared by all triggers of the process (requests beyond wait for one).
MAX_CONNECTIONS_PER_HOST = 100
#: Idle keep-alive connections are kept this long, so a poll every minute reuses its connection.
KEEPALIVE_SECONDS = 75.0

_CONNECT_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = tuple(
    error for error in (getattr(aiohttp, "ConnectionTimeoutError", None),) if error is not None
)


async def _mask(*secrets: str | None) -> None:
    """Register secrets with Airflow's log masker without blocking the event loop."""
    for secret in secrets:
        if not secret:
            continue
        if _amask_secret is not None:
            await _amask_secret(secret)
        else:
            mask_secret_value(secret)


class _SharedSession:
    """One ``aiohttp.ClientSession`` per event loop and TLS setting, reference-counted:
    triggers share its keep-alive connections, and the last one out closes it."""

    _pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[bool | str, _SharedSession]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, ssl: Any) -> None:
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=MAX_CONNECTIONS_PER_HOST, ssl=ssl, keepalive_timeout=KEEPALIVE_SECONDS
        )
        self.session = aiohttp.ClientSession(connector=connector, trust_env=False)
        self.users = 0

    @classmethod
    def pools(cls) -> dict[bool | str, _SharedSession]:
        """The open sessions of the running loop, by ``verify`` setting."""
        return cls._pools.setdefault(asyncio.get_running_loop(), {})

    @classmethod
    async def acquire(cls, verify: bool | str) -> _SharedSession:
        """A session for ``verify``; pair every call with :meth:`release`.

        Nothing is awaited after the count goes up, so a cancelled caller never
        leaves a reference behind.
        """
        shared = cls.pools().get(verify)
        if shared is None or shared.session.closed:
            ssl: Any = None
            if verify is False:
                ssl = False
            elif isinstance(verify, str):
                import ssl as ssl_module

                # Reading the CA bundle is file I/O: keep it off the loop.
                try:
                    ssl = await asyncio.to_thread(ssl_module.create_default_context, cafile=verify)
                except OSError as err:  # a missing or unreadable bundle: waiting will not help
                    raise DataQCApiError(f"TLS set-up error (extra verify): {err}") from None
            shared = cls.pools().get(verify)
            if shared is None or shared.session.closed:
                shared = cls.pools()[verify] = cls(ssl)
        shared.users += 1
        return shared

    async def release(self) -> None:
        """Drop one reference; the last one closes the session and its connections."""
        self.users -= 1
        if self.users > 0 or self.session.closed:
            return
        pools = self.pools()
        for key, value in list(pools.items()):
            if value is self:
                del pools[key]
        await self.session.close()


_token_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, ...], asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)

#: Connection reads in flight, per loop and (conn_id, project_id).
_Lookups = dict[tuple[str, str | None], "asyncio.Future[ConnectionSettings]"]
_lookups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lookups] = weakref.WeakKeyDictionary()


class _LookupAbandoned(Exception):
    """The trigger reading a connection for others was cancelled: read it yourself."""


async def _connection_settings(conn_id: str, project_id: str | None) -> ConnectionSettings:
    """The validated connection, read without blocking the loop, its secrets masked.

    Triggers that start together (a triggerer starting up with hundreds of them) share
    one read of their connection instead of queueing the same lookup hundreds of times;
    a trigger that starts later reads it afresh.

    :raises DataQCApiError: when a field is wrong; Airflow's error when there is no such connection.
    """
    inflight = _lookups.setdefault(asyncio.get_running_loop(), {})
    key = (conn_id, project_id)
    while (pending := inflight.get(key)) is not None:
        try:
            return await asyncio.shield(pending)
        except _LookupAbandoned:
            continue  # its reader was cancelled: one of the waiters reads it now
    future: asyncio.Future[ConnectionSettings] = asyncio.get_running_loop().create_future()
    inflight[key] = future
    try:
        conn = await get_async_connection(conn_id, DataQCHook)
        extra = await get_async_extra_dejson(conn)
        settings = settings_from_connection(conn, extra, project_id=project_id, mask=False)
        await _mask(*settings.secrets())
    except BaseException as err:
        future.set_exception(err if isinstance(err, Exception) else _LookupAbandoned())
        future.exception()  # retrieved: nobody may be waiting
        raise
    else:
        future.set_result(settings)
        return settings
    finally:
        if inflight.get(key) is future:
            del inflight[key]


class AsyncDataQCClient:
    """The async counterpart of :class:`DataQCHook`'s status call, for triggers.

    Use as ``async with AsyncDataQCClient(conn_id, log=log) as client:``; entering
    reads the connection (without blocking the loop) and takes a reference on the
    shared ``aiohttp`` session, leaving (or being cancelled) gives it back.

    :raises DataQCApiError: on entering, when the connection's fields are wrong.
    """

    def __init__(
        self, dataqc_conn_id: str, *, workspace: str | None = None, project_id: str | None = None, log: Any
    ) -> None:
        self.dataqc_conn_id = dataqc_conn_id
        self.workspace = workspace
        self.project_id = project_id
        self.log = log
        self.settings: ConnectionSettings | None = None
        self._shared: _SharedSession | None = None
        self._timeout: aiohttp.ClientTimeout | None = None
        self._urls: dict[str, URL] = {}

    async def __aenter__(self) -> AsyncDataQCClient:
        settings = await _connection_settings(self.dataqc_conn_id, self.project_id)
        if settings.verify is False:
            self.log.warning(
                "TLS certificate verification is OFF for connection %r (extra verify=false): "
                "answers from %s cannot be trusted",
                self.dataqc_conn_id,
                settings.endpoint,
            )
        self.settings = settings
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        )
        self._shared = await _SharedSession.acquire(settings.verify)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._shared is not None:
            shared, self._shared = self._shared, None
            await shared.release()

    def _settings(self) -> ConnectionSettings:
        if self.settings is None:
            raise RuntimeError("use AsyncDataQCClient as an async context manager")
        return self.settings

    def status_request(self, resource_id: str, *, workspace: str | None = None) -> api.ApiRequest:
        """The status call for ``resource_id``, built once and sent by :meth:`status` as often as needed.

        :raises DataQCApiError: when the resource ID or the workspace is not valid.
        """
        settings = self._settings()
        try:
            return api.status_request(
                settings.project_id, resolve_workspace(settings, workspace, self.workspace), resource_id
            )
        except InvalidSettingError as err:
            raise DataQCApiError(str(err)) from None

    async def status(self, request: api.ApiRequest, *, within: float | None = None) -> ResourceStatus:
        """Send a status call built by :meth:`status_request`.

        :param within: start no retry later than this many seconds from now (default: the
            connection's ``retry_timeout``), so a wait with a deadline does not retry past it.
        :raises DataQCApiError: as :meth:`DataQCHook.get_resource_status`.
        """
        settings = self._settings()
        if within is not None and within < settings.retry.total_timeout:
            settings = replace(settings, retry=replace(settings.retry, total_timeout=max(within, 0.0)))
        answer = await self._run(call(settings, request, log=self.log))
        return status_from_answer(answer, "status")

    async def get_resource_status(self, resource_id: str, *, workspace: str | None = None) -> ResourceStatus:
        """See :meth:`DataQCHook.get_resource_status`."""
        return await self.status(self.status_request(resource_id, workspace=workspace))

    async def _drive(self, plan: Generator[Action, Any, _T]) -> _T:
        """Run a call plan with ``aiohttp`` and ``asyncio.sleep`` and return what it returns."""
        reply: Any = None
        try:
            while True:
                action = plan.send(reply)
                if isinstance(action, Send):
                    reply = await self._send(action.request)
                elif isinstance(action, Sleep):
                    await asyncio.sleep(action.seconds)
                    reply = None
                elif isinstance(action, GetToken):
                    reply = await self._token(action.rejected)
                else:  # pragma: no cover - the plan yields nothing else
                    raise TypeError(f"unknown action {action!r}")
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            plan.close()

    async def _run(self, plan: CallPlan) -> Answer:
        outcome = await self._drive(plan)
        if isinstance(outcome, CallFailure):
            raise DataQCApiError.from_failure(outcome)
        return outcome

    async def _token(self, rejected: str | None) -> str | CallFailure:
        """A current IAM token for ``auth_type="password"``: as :meth:`DataQCHook._token`, with the
        fetch serialised by an ``asyncio.Lock`` and the token masked without blocking the loop."""
        settings = self._settings()
        ticket = TOKEN_CACHE.ticket(token_cache_key(settings), rejected)
        if ticket.token is not None:
            return ticket.token
        locks = _token_locks.setdefault(asyncio.get_running_loop(), {})
        async with locks.setdefault(ticket.key, asyncio.Lock()):
            shared = TOKEN_CACHE.shared(ticket)
            if shared is not None:
                return shared
            token = await self._drive(fetch_token(settings, log=self.log))
            if isinstance(token, IamToken):
                await _mask(token.value)
            return settle_token(ticket.key, token, user=self._settings().login, log=self.log)

    async def _send(self, prepared: PreparedRequest) -> Answer | NoAnswer:
        assert self._shared is not None, "use AsyncDataQCClient as an async context manager"
        url = self._urls.get(prepared.url)
        if url is None:
            # Sent exactly as built (and signed): no re-quoting by yarl; parsed once per URL.
            url = self._urls[prepared.url] = URL(prepared.url, encoded=True)
        try:
            async with self._shared.session.request(
                prepared.method,
                url,
                headers=prepared.headers,
                data=prepared.body,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                try:
                    body, truncated = await _read_capped(response.content, MAX_ANSWER_BYTES)
                except aiohttp.ClientPayloadError as err:
                    return NoAnswer(f"the answer was cut short: {err}", request_id=request_id_of(response.headers))
                expected = response.content_length
                # With a Content-Encoding the announced length counts encoded bytes.
                encoded = (response.headers.get("Content-Encoding") or "identity").lower() != "identity"
                if not truncated and not encoded and expected is not None and len(body) != expected:
                    return NoAnswer(
                        f"the answer was cut short after {len(body)} of {expected} bytes",
                        request_id=request_id_of(response.headers),
                    )
                return Answer(response.status, response.headers, body, truncated=truncated)
        except _CONNECT_TIMEOUT_ERRORS:
            return NoAnswer(f"connect timeout after {prepared.connect_timeout:g}s", maybe_processed=False)
        except aiohttp.ClientSSLError as err:
            # A rejected certificate stays rejected: never retried, and it ends a wait.
            rejected = isinstance(err, aiohttp.ClientConnectorCertificateError)
            return NoAnswer(f"TLS error: {err}", maybe_processed=False, permanent=rejected)
        except aiohttp.ClientConnectorError as err:
            return NoAnswer(f"connection error: {err}", maybe_processed=False)
        except asyncio.TimeoutError:
            return NoAnswer(f"read timeout after {prepared.read_timeout:g}s")
        except aiohttp.ClientError as err:
            return NoAnswer(f"the answer was cut short: {type(err).__name__}: {err}")


async def _read_capped(content: aiohttp.StreamReader, limit: int) -> tuple[bytes, bool]:
    """The whole body (however many pieces it comes in), or its first ``limit`` bytes and ``True``."""
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            return b"".join(parts), False
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts)[:limit], True


class DataQCResourceStatusTrigger(BaseTrigger):
    """Polls the status of an import/export task until it ends, without holding a worker.

    Yields exactly one event, a dict with ``status``, ``message`` and ``resource_id``:

    * ``success`` — ``record``: the status record (as in the sensor's XCom);
    * ``failed`` — FAILED or TIMEOUT (or, with ``wait_for_file``, no file will
      come); ``record``, and ``message`` with the service's ``error_msg``;
    * ``timeout`` — ``end_time`` passed first; ``record``: the last status seen, if any;
    * ``error`` — a permanent error (bad connection, 401/403/404 ...), or
      ``max_consecutive_errors`` transient ones in a row; ``error``: the last
      error's ``status_code``, ``error_code``, ``error_msg``, ``request_id``, ``transient``.

    Between polls it sleeps ``poll_interval`` seconds on every path, errors included
    (never past ``end_time``). Each poll is one call of the hook's call plan, so the
    connection's retry settings apply within a poll (no retry starts after ``end_time``).

    :param resource_id: the task to follow.
    :param dataqc_conn_id: the ``dataqc`` connection.
    :param workspace: the workspace (default: the connection's).
    :param poll_interval: seconds between polls.
    :param wait_for_file: also wait for ``file_status`` GENERATED.
    :param end_time: epoch seconds after which a ``timeout`` event ends the wait.
    :param max_consecutive_errors: transient failed polls in a row before giving up.
    :param project_id: overrides the connection's extra ``project_id``.
    :param consecutive_errors: failed polls in a row already counted before deferring
        (the sensor's first poke).
    """

    def __init__(
        self,
        resource_id: str,
        dataqc_conn_id: str = DataQCHook.default_conn_name,
        workspace: str | None = None,
        poll_interval: float = 60.0,
        wait_for_file: bool = False,
        end_time: float | None = None,
        max_consecutive_errors: int = 3,
        project_id: str | None = None,
        consecutive_errors: int = 0,
    ) -> None:
        super().__init__()
        self.resource_id = resource_id
        self.dataqc_conn_id = dataqc_conn_id
        self.workspace = workspace
        self.poll_interval = max(float(poll_interval), 0.0)
        self.wait_for_file = bool(wait_for_file)
        self.end_time = float(end_time) if end_time is not None else None
        self.max_consecutive_errors = max(int(max_consecutive_errors), 1)
        self.project_id = project_id
        self.consecutive_errors = max(int(consecutive_errors), 0)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "resource_id": self.resource_id,
                "dataqc_conn_id": self.dataqc_conn_id,
                "workspace": self.workspace,
                "poll_interval": self.poll_interval,
                "wait_for_file": self.wait_for_file,
                "end_time": self.end_time,
                "max_consecutive_errors": self.max_consecutive_errors,
                "project_id": self.project_id,
                "consecutive_errors": self.consecutive_errors,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        payload = await self._wait()
        yield TriggerEvent({"resource_id": self.resource_id, **payload})

    async def _wait(self) -> dict[str, Any]:
        if self._timed_out():
            return self._timeout_event(None)
        try:
            client = AsyncDataQCClient(
                self.dataqc_conn_id, workspace=self.workspace, project_id=self.project_id, log=self.log
            )
            async with client:
                return await self._poll(client)
        except DataQCApiError as err:
            return _error_event(err)
        except Exception as err:
            # A missing connection, or something nobody foresaw: end with one event that names it.
            self.log.exception("Waiting for DataArts Quality task %r failed", self.resource_id)
            return _error_event(DataQCApiError(f"{type(err).__name__}: {err}"))

    async def _poll(self, client: AsyncDataQCClient) -> dict[str, Any]:
        request = client.status_request(self.resource_id)
        progress = _Progress()
        progress.errors = self.consecutive_errors
        while True:
            if self._timed_out():
                return self._timeout_event(progress.last_record)
            event = await self._poll_once(client, request, progress)
            if event is not None:
                return event
            await asyncio.sleep(self._next_sleep())

    async def _poll_once(
        self, client: AsyncDataQCClient, request: api.ApiRequest, progress: _Progress
    ) -> dict[str, Any] | None:
        """One poll: the final event, or ``None`` to poll again. Kept apart from :meth:`_poll`
        so nothing of the answer stays alive while thousands of triggers sleep."""
        try:
            status = await client.status(
                request, within=self.end_time - time.time() if self.end_time is not None else None
            )
        except DataQCApiError as err:
            progress.errors += 1
            if not err.transient or progress.errors >= self.max_consecutive_errors:
                return _error_event(err, progress.errors)
            self.log.warning(
                "Poll %d/%d of %r failed, polling again in %gs: %s",
                progress.errors,
                self.max_consecutive_errors,
                self.resource_id,
                self.poll_interval,
                err,
            )
            return None
        progress.errors = 0
        verdict = assess(status, wait_for_file=self.wait_for_file)
        if verdict.outcome is Outcome.SUCCESS:
            return {"status": EVENT_SUCCESS, "message": verdict.message, "record": status.to_dict()}
        if verdict.outcome is Outcome.FAILED:
            return {"status": EVENT_FAILED, "message": verdict.message, "record": status.to_dict()}
        if self.end_time is not None:
            progress.last_record = status.to_dict()
        if verdict.unknown_status:
            self.log.warning("%s", verdict.message)
        elif progress.worth_telling((status.status, status.file_status)):
            self.log.info("%s", verdict.message)
        else:
            self.log.debug("%s", verdict.message)
        return None

    def _timed_out(self) -> bool:
        return self.end_time is not None and time.time() >= self.end_time

    def _timeout_event(self, last: dict[str, Any] | None) -> dict[str, Any]:
        seen = f"; last seen: status={last.get('status')}, file_status={last.get('file_status')}" if last else ""
        return {
            "status": EVENT_TIMEOUT,
            "message": f"Stopped waiting for DataArts Quality task {self.resource_id!r}: the timeout passed{seen}",
            "record": last,
        }

    def _next_sleep(self) -> float:
        if self.end_time is None:
            return self.poll_interval
        return max(min(self.poll_interval, self.end_time - time.time()), 0.0)


class _Progress:
    """What one trigger remembers between polls (kept small: thousands of them sleep at once)."""

    #: A still-waiting status is logged at INFO when it changes, and at least this often.
    INFO_EVERY_SECONDS = 600.0

    __slots__ = ("_told", "_told_at", "errors", "last_record")

    def __init__(self) -> None:
        self.errors = 0
        self.last_record: dict[str, Any] | None = None
        self._told: tuple[str | None, ...] | None = None
        self._told_at = 0.0

    def worth_telling(self, state: tuple[str | None, ...]) -> bool:
        now = time.monotonic()
        if state != self._told or now - self._told_at >= self.INFO_EVERY_SECONDS:
            self._told, self._told_at = state, now
            return True
        return False


def _error_event(err: DataQCApiError, errors: int = 1) -> dict[str, Any]:
    prefix = f"gave up after {errors} failed polls in a row: " if err.transient and errors > 1 else ""
    return {
        "status": EVENT_ERROR,
        "message": prefix + str(err),
        "error": {
            "status_code": err.status_code,
            "error_code": err.error_code,
            "error_msg": err.error_msg,
            "request_id": err.request_id,
            "transient": err.transient,
        },
    }
