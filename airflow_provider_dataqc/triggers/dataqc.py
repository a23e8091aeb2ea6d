"""DataQCResourceStatusTrigger: waits for an import/export task on the triggerer's event loop.

The trigger drives the same call plan as the sync hook (:func:`core.calls.call`:
authentication, signing, the one token refresh, retries) with ``aiohttp``.
Nothing here blocks the loop: the connection is read with Airflow's async
lookup, IAM tokens are fetched with ``aiohttp`` under an ``asyncio.Lock``, and
one ``aiohttp`` session (keep-alive pool) is shared by every trigger of the
process and closed when the last one ends.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_dataqc.core import api
from airflow_provider_dataqc.core.auth import (
    TOKEN_CACHE,
    PreparedRequest,
    parse_token_answer,
    token_cache_key,
)
from airflow_provider_dataqc.core.calls import Answer, CallPlan, GetToken, NoAnswer, Send, Sleep, call
from airflow_provider_dataqc.core.errors import CallFailure
from airflow_provider_dataqc.core.settings import ConnectionSettings, InvalidSettingError, resolve_workspace
from airflow_provider_dataqc.core.status import Outcome, ResourceStatus, assess
from airflow_provider_dataqc.hooks.dataqc import (
    MAX_ANSWER_BYTES,
    DataQCApiError,
    DataQCHook,
    error_for,
    iam_request,
    mask_secret_value,
    settings_from_connection,
    status_from_answer,
)

#: Event ``status`` values; :meth:`DataQCResourceStatusSensor.execute_complete` accepts only these.
EVENT_SUCCESS = "success"
EVENT_FAILED = "failed"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"
EVENT_STATUSES = frozenset({EVENT_SUCCESS, EVENT_FAILED, EVENT_TIMEOUT, EVENT_ERROR})


class _SharedSession:
    """One ``aiohttp.ClientSession`` per event loop and TLS setting, reference-counted:
    triggers share its keep-alive connections, and the last one out closes it."""

    _pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, _SharedSession]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, verify: bool | str) -> None:
        ssl: Any = None
        if verify is False:
            ssl = False
        elif isinstance(verify, str):
            import ssl as ssl_module

            ssl = ssl_module.create_default_context(cafile=verify)
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ssl=ssl, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True)
        self.users = 0

    @classmethod
    def acquire(cls, verify: bool | str) -> _SharedSession:
        pools = cls._pools.setdefault(asyncio.get_running_loop(), {})
        shared = pools.get(verify)
        if shared is None or shared.session.closed:
            shared = pools[verify] = cls(verify)
        shared.users += 1
        return shared

    async def release(self) -> None:
        self.users -= 1
        if self.users <= 0 and not self.session.closed:
            pools = self._pools.get(asyncio.get_running_loop(), {})
            for key, value in list(pools.items()):
                if value is self:
                    del pools[key]
            await self.session.close()


_token_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, ...], asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


class AsyncDataQCClient:
    """The async counterpart of :class:`DataQCHook`'s status call, for triggers.

    Use as ``async with AsyncDataQCClient(conn_id) as client:``.
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

    async def __aenter__(self) -> AsyncDataQCClient:
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        conn = await get_async_connection(self.dataqc_conn_id, DataQCHook)
        extra = await get_async_extra_dejson(conn)
        self.settings = settings_from_connection(conn, extra, project_id=self.project_id)
        if self.settings.verify is False:
            self.log.warning(
                "TLS certificate verification is OFF for connection %r (extra verify=false)", self.dataqc_conn_id
            )
        self._shared = _SharedSession.acquire(self.settings.verify)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._shared is not None:
            shared, self._shared = self._shared, None
            await shared.release()

    def _settings(self) -> ConnectionSettings:
        if self.settings is None:
            raise RuntimeError("use AsyncDataQCClient as an async context manager")
        return self.settings

    async def get_resource_status(self, resource_id: str, *, workspace: str | None = None) -> ResourceStatus:
        """See :meth:`DataQCHook.get_resource_status`."""
        settings = self._settings()
        try:
            request = api.status_request(
                settings.project_id, resolve_workspace(settings, workspace, self.workspace), resource_id
            )
        except InvalidSettingError as err:
            raise DataQCApiError(str(err)) from None
        answer = await self._run(call(settings, request, log=self.log))
        return status_from_answer(answer, "status")

    async def _run(self, plan: CallPlan) -> Answer:
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
                else:  # pragma: no cover
                    raise TypeError(f"unknown action {action!r}")
        except StopIteration as done:
            outcome = done.value
        if isinstance(outcome, CallFailure):
            raise error_for(outcome)
        return outcome

    async def _token(self, rejected: str | None) -> str | CallFailure:
        settings = self._settings()
        key = token_cache_key(settings)
        if rejected:
            TOKEN_CACHE.discard(key, rejected)
        cached = TOKEN_CACHE.get(key)
        if cached is not None:
            return cached.value
        locks = _token_locks.setdefault(asyncio.get_running_loop(), {})
        async with locks.setdefault(key, asyncio.Lock()):
            cached = TOKEN_CACHE.get(key)
            if cached is not None:
                return cached.value
            try:
                answer = await self._run(call(settings, iam_request(settings), log=self.log))
            except DataQCApiError as err:
                return CallFailure(
                    operation="IAM token",
                    status_code=err.status_code,
                    error_code=err.error_code,
                    error_msg=err.error_msg,
                    request_id=err.request_id,
                    problem="could not get an IAM token for the connection's user",
                )
            token = parse_token_answer(answer.status_code, answer.headers, answer.body)
            if isinstance(token, CallFailure):
                return token
            mask_secret_value(token.value)
            TOKEN_CACHE.put(key, token)
            return token.value

    async def _send(self, prepared: PreparedRequest) -> Answer | NoAnswer:
        assert self._shared is not None
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=prepared.connect_timeout, sock_read=prepared.read_timeout
        )
        try:
            async with self._shared.session.request(
                prepared.method,
                prepared.url,
                headers=prepared.headers,
                data=prepared.body,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                body = await response.content.read(MAX_ANSWER_BYTES + 1)
                truncated = len(body) > MAX_ANSWER_BYTES
                if not truncated and response.content_length is not None and len(body) < response.content_length:
                    return NoAnswer(f"the answer was cut short after {len(body)} bytes")
                return Answer(
                    response.status,
                    dict(response.headers),
                    body[:MAX_ANSWER_BYTES],
                    truncated=truncated,
                )
        except aiohttp.ClientConnectorError as err:
            return NoAnswer(f"connection error: {err}", maybe_processed=False)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            return NoAnswer(f"read timeout after {prepared.read_timeout:g}s")
        except aiohttp.ClientError as err:
            return NoAnswer(f"the answer was cut short: {type(err).__name__}: {err}")


@dataclass(frozen=True)
class _Event:
    status: str
    message: str
    extra: dict[str, Any]

    def as_trigger_event(self, resource_id: str) -> TriggerEvent:
        return TriggerEvent({"status": self.status, "message": self.message, "resource_id": resource_id, **self.extra})


class DataQCResourceStatusTrigger(BaseTrigger):
    """Polls the status of an import/export task until it ends, without holding a worker.

    Yields exactly one event, a dict with ``status``:

    * ``success`` — ``record``: the status record (as in the sensor's XCom);
    * ``failed`` — FAILED or TIMEOUT (or, with ``wait_for_file``, no file);
      ``record`` and ``message`` (with the service's ``error_msg``);
    * ``timeout`` — ``end_time`` passed first;
    * ``error`` — a permanent error, or ``max_consecutive_errors`` transient
      ones in a row; ``error``: the last error's details.

    :param resource_id: the task to follow.
    :param dataqc_conn_id: the ``dataqc`` connection.
    :param workspace: the workspace (default: the connection's).
    :param poll_interval: seconds between polls, on every path, errors included.
    :param wait_for_file: also wait for ``file_status`` GENERATED.
    :param end_time: epoch seconds after which a ``timeout`` event ends the wait.
    :param max_consecutive_errors: transient failed polls in a row before giving up.
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
    ) -> None:
        super().__init__()
        self.resource_id = resource_id
        self.dataqc_conn_id = dataqc_conn_id
        self.workspace = workspace
        self.poll_interval = float(poll_interval)
        self.wait_for_file = bool(wait_for_file)
        self.end_time = float(end_time) if end_time is not None else None
        self.max_consecutive_errors = max(int(max_consecutive_errors), 1)
        self.project_id = project_id

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
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        event = await self._wait()
        yield event.as_trigger_event(self.resource_id)

    async def _wait(self) -> _Event:
        try:
            client = AsyncDataQCClient(
                self.dataqc_conn_id, workspace=self.workspace, project_id=self.project_id, log=self.log
            )
            async with client:
                return await self._poll(client)
        except DataQCApiError as err:
            return _error_event(err)

    async def _poll(self, client: AsyncDataQCClient) -> _Event:
        errors = 0
        while True:
            if self.end_time is not None and time.time() >= self.end_time:
                return _Event(
                    EVENT_TIMEOUT,
                    f"Stopped waiting for DataArts Quality task {self.resource_id!r}: the timeout passed",
                    {},
                )
            try:
                status = await client.get_resource_status(self.resource_id)
            except DataQCApiError as err:
                errors += 1
                if not err.transient or errors >= self.max_consecutive_errors:
                    return _error_event(err, errors)
                self.log.warning(
                    "Poll %d/%d of %r failed, polling again in %gs: %s",
                    errors,
                    self.max_consecutive_errors,
                    self.resource_id,
                    self.poll_interval,
                    err,
                )
            else:
                errors = 0
                verdict = assess(status, wait_for_file=self.wait_for_file)
                if verdict.outcome is Outcome.SUCCESS:
                    return _Event(EVENT_SUCCESS, verdict.message, {"record": status.to_dict()})
                if verdict.outcome is Outcome.FAILED:
                    return _Event(EVENT_FAILED, verdict.message, {"record": status.to_dict()})
                (self.log.warning if verdict.unknown_status else self.log.info)("%s", verdict.message)
            await asyncio.sleep(self._next_sleep())

    def _next_sleep(self) -> float:
        if self.end_time is None:
            return self.poll_interval
        return max(min(self.poll_interval, self.end_time - time.time()), 0.0)


def _error_event(err: DataQCApiError, errors: int = 1) -> _Event:
    detail = {
        "status_code": err.status_code,
        "error_code": err.error_code,
        "error_msg": err.error_msg,
        "request_id": err.request_id,
        "transient": err.transient,
    }
    prefix = f"gave up after {errors} failed polls in a row: " if err.transient else ""
    return _Event(EVENT_ERROR, prefix + str(err), {"error": detail})
