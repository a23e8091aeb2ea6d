"""The async hook: DataArts Quality calls on an event loop with ``aiohttp``, for triggers.

The twin of :class:`~airflow_provider_dataqc.hooks.dataqc.DataQCHook`: it drives the same
call plan (:func:`airflow_provider_dataqc.core.calls.call`: authentication, signing, the
one token refresh, retries); the two drivers differ only by ``await``. Nothing here blocks
the loop: the connection is read with Airflow's async lookup, secrets are registered with
the log masker asynchronously, token fetches are serialised with an ``asyncio.Lock``, and
one ``aiohttp`` session (keep-alive pool) is shared by every client of the process and
closed when the last one leaves.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

import aiohttp
from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from yarl import URL

from airflow_provider_dataqc.core import api
from airflow_provider_dataqc.core.answers import CappedBody, read_json_object, read_status, shortfall
from airflow_provider_dataqc.core.calls import Action, Answer, Exclusive, Mask, NoAnswer, Send, Sleep, call
from airflow_provider_dataqc.core.errors import CallFailure, request_id_of
from airflow_provider_dataqc.core.prepare import PreparedRequest
from airflow_provider_dataqc.core.settings import ConnectionSettings, InvalidSettingError, resolve_workspace
from airflow_provider_dataqc.core.status import ResourceStatus
from airflow_provider_dataqc.exceptions import DataQCApiError, DataQCInvalidArgumentError
from airflow_provider_dataqc.hooks.connection import mask_secret_value, settings_from_connection
from airflow_provider_dataqc.hooks.dataqc import DataQCHook

_T = TypeVar("_T")
_AsyncMask = Callable[[str], Awaitable[None]]
try:  # Airflow 3: tells the supervisor without a blocking round trip from the event loop
    from airflow.sdk.log import amask_secret as _amask_secret_sdk

    _amask_secret: _AsyncMask | None = _amask_secret_sdk
except ImportError:  # Airflow 2: the masker lives in this process; masking does no I/O
    _amask_secret = None

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
        # No cookie jar: the service needs no cookies, and triggers of different connections
        # share this session (a cookie set for one must never be sent for another).
        self.session = aiohttp.ClientSession(connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar())
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
                # Reading the CA bundle is file I/O: keep it off the loop.
                try:
                    ssl = await asyncio.to_thread(_ca_context, verify)
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
        workspace_id = self.workspace_of(workspace)
        try:
            return api.status_request(settings.project_id, workspace_id, resource_id)
        except InvalidSettingError as err:
            raise DataQCInvalidArgumentError(str(err)) from None

    def workspace_of(self, workspace: str | None = None) -> str:
        """The workspace a call goes to: ``workspace``, else the client's, else the connection's.

        :raises DataQCInvalidArgumentError: when none is set or it is not valid.
        """
        try:
            return resolve_workspace(self._settings(), workspace, self.workspace)
        except InvalidSettingError as err:
            raise DataQCInvalidArgumentError(str(err)) from None

    async def request(self, request: api.ApiRequest, *, within: float | None = None) -> Answer:
        """Send any call built by :mod:`airflow_provider_dataqc.core.api` under the call plan.

        :param within: start no retry later than this many seconds from now (default: the
            connection's ``retry_timeout``), so a wait with a deadline does not retry past it.
        :raises DataQCApiError: when the call fails (the message names status, codes, request ID).
        """
        return await self._run(call(self._settings(), request, log=self.log, within=within))

    async def json(self, request: api.ApiRequest, *, within: float | None = None) -> dict[str, Any]:
        """:meth:`request`, and the answer's JSON object.

        :raises DataQCApiError: as :meth:`request`, or when the body is not a JSON object.
        """
        payload = read_json_object(await self.request(request, within=within), request.operation)
        if isinstance(payload, CallFailure):
            raise DataQCApiError.from_failure(payload)
        return payload

    async def status(self, request: api.ApiRequest, *, within: float | None = None) -> ResourceStatus:
        """Send a status call built by :meth:`status_request`.

        :param within: as :meth:`request`.
        :raises DataQCApiError: as :meth:`DataQCHook.get_resource_status`.
        """
        status = read_status(await self.request(request, within=within))
        if isinstance(status, CallFailure):
            raise DataQCApiError.from_failure(status)
        return status

    async def get_resource_status(self, resource_id: str, *, workspace: str | None = None) -> ResourceStatus:
        """See :meth:`DataQCHook.get_resource_status`."""
        return await self.status(self.status_request(resource_id, workspace=workspace))

    async def _drive(self, plan: Generator[Action, Any, _T]) -> _T:
        """Carry out a plan's actions with ``aiohttp``, ``asyncio.sleep`` and ``asyncio`` locks
        and return what the plan returns (as :meth:`DataQCHook._drive`, with ``await``)."""
        reply: Any = None
        try:
            while True:
                action = plan.send(reply)
                if isinstance(action, Send):
                    reply = await self._send(action.request)
                elif isinstance(action, Sleep):
                    await asyncio.sleep(action.seconds)
                    reply = None
                elif isinstance(action, Exclusive):
                    locks = _token_locks.setdefault(asyncio.get_running_loop(), {})
                    async with locks.setdefault(action.key, asyncio.Lock()):
                        reply = await self._drive(action.plan)
                elif isinstance(action, Mask):
                    await _mask(action.secret)
                    reply = None
                else:  # pragma: no cover - the plan yields nothing else
                    raise TypeError(f"unknown action {action!r}")
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            plan.close()

    async def _run(self, plan: Generator[Action, Any, Answer | CallFailure]) -> Answer:
        outcome = await self._drive(plan)
        if isinstance(outcome, CallFailure):
            raise DataQCApiError.from_failure(outcome)
        return outcome

    async def _send(self, prepared: PreparedRequest) -> Answer | NoAnswer:
        assert self._shared is not None, "use AsyncDataQCClient as an async context manager"
        url = self._urls.get(prepared.url)
        if url is None:
            # Sent exactly as built (and signed): no re-quoting by yarl; parsed once per URL.
            url = self._urls[prepared.url] = URL(prepared.url, encoded=True)
        budget = prepared.attempt_timeout
        timeout = self._timeout
        if budget is not None:
            # The whole attempt, answer included, within its bound (sock_read bounds only gaps).
            timeout = aiohttp.ClientTimeout(
                total=max(budget, 0.001),
                sock_connect=prepared.connect_timeout,
                sock_read=max(min(prepared.read_timeout, budget), 0.001),
            )
        started = asyncio.get_running_loop().time()
        try:
            async with self._shared.session.request(
                prepared.method,
                url,
                headers=prepared.headers,
                data=prepared.body,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                capped = CappedBody()
                try:
                    while chunk := await response.content.readany():
                        if capped.add(chunk):
                            break
                except aiohttp.ClientPayloadError as err:
                    return NoAnswer(f"the answer was cut short: {err}", request_id=request_id_of(response.headers))
                body = capped.body()
                short = None if capped.truncated else shortfall(response.headers, len(body))
                if short is not None:
                    return NoAnswer(f"the answer was cut short {short}", request_id=request_id_of(response.headers))
                return Answer(response.status, response.headers, body, truncated=capped.truncated)
        except _CONNECT_TIMEOUT_ERRORS:
            return NoAnswer(f"connect timeout after {prepared.connect_timeout:g}s", maybe_processed=False)
        except aiohttp.ClientSSLError as err:
            # A rejected certificate stays rejected: never retried, and it ends a wait.
            rejected = isinstance(err, aiohttp.ClientConnectorCertificateError)
            return NoAnswer(f"TLS error: {err}", maybe_processed=False, permanent=rejected)
        except aiohttp.ClientConnectorError as err:
            return NoAnswer(f"connection error: {err}", maybe_processed=False)
        except TimeoutError:
            if budget is not None and asyncio.get_running_loop().time() - started >= budget - 0.005:
                return NoAnswer(f"read timeout after {budget:g}s: the answer was not complete in time")
            return NoAnswer(f"read timeout after {prepared.read_timeout:g}s")
        except aiohttp.ClientError as err:
            return NoAnswer(f"the answer was cut short: {type(err).__name__}: {err}")


def _ca_context(verify: str) -> Any:
    """The TLS context for extra ``verify`` naming a CA bundle, or a folder read as OpenSSL's
    hashed CA directory (as ``requests`` reads the same setting)."""
    import ssl

    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)
