"""Triggers: waits on the triggerer's event loop.

:class:`DataQCWaitTrigger` is the one async driver of the core wait engine
(:class:`airflow_provider_dataqc.core.wait.Wait`): each poll is one fetch through the async
hook (:class:`~airflow_provider_dataqc.hooks.dataqc_async.AsyncDataQCClient`), whose outcome
the engine judges; the engine's event is the trigger's one event. A kind of wait is a
subclass that says what to fetch and which rules judge it:
:class:`DataQCResourceStatusTrigger` for an import/export task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_dataqc.core import api
from airflow_provider_dataqc.core.wait import (
    EVENT_ERROR,
    EVENT_FAILED,
    EVENT_KINDS,
    EVENT_SUCCESS,
    EVENT_TIMEOUT,
    Finish,
    Keep,
    PollError,
    ResourceStatusRules,
    Wait,
)
from airflow_provider_dataqc.exceptions import DataQCApiError
from airflow_provider_dataqc.hooks.dataqc import DataQCHook
from airflow_provider_dataqc.hooks.dataqc_async import AsyncDataQCClient, _SharedSession

__all__ = [
    "EVENT_ERROR",
    "EVENT_FAILED",
    "EVENT_STATUSES",
    "EVENT_SUCCESS",
    "EVENT_TIMEOUT",
    "AsyncDataQCClient",
    "DataQCResourceStatusTrigger",
    "DataQCWaitTrigger",
    "_SharedSession",
]

#: Former name of :data:`airflow_provider_dataqc.core.wait.EVENT_KINDS`.
EVENT_STATUSES = EVENT_KINDS


class DataQCWaitTrigger(BaseTrigger):
    """Polls until a wait ends, without holding a worker, and yields exactly one event (the
    schema is :mod:`airflow_provider_dataqc.core.wait`'s).

    Between polls it sleeps ``poll_interval`` seconds on every path, errors included (never
    past ``end_time``). Each poll's calls run under the connection's retry settings, and no
    retry starts after ``end_time``. Subclasses say what is fetched (:meth:`prepare`,
    :meth:`fetch`), which :attr:`rules` judge it, and their own :meth:`serialize` fields.

    :param dataqc_conn_id: the ``dataqc`` connection.
    :param workspace: the workspace (default: the connection's).
    :param poll_interval: seconds between polls.
    :param end_time: epoch seconds after which a ``timeout`` event ends the wait.
    :param max_consecutive_errors: transient failed polls in a row before giving up.
    :param project_id: overrides the connection's extra ``project_id``.
    :param consecutive_errors: failed polls in a row already counted before deferring.
    :param result: JSON-able value put in the ``success`` event (what the deferring
        operator returns once the wait succeeded).
    :param first_poll_after: seconds to wait before the first poll (the deferring task polled
        just before; a spread delay keeps waits that defer together out of lock-step).
    """

    def __init__(
        self,
        *,
        dataqc_conn_id: str = DataQCHook.default_conn_name,
        workspace: str | None = None,
        poll_interval: float = 60.0,
        end_time: float | None = None,
        max_consecutive_errors: int = 3,
        project_id: str | None = None,
        consecutive_errors: int = 0,
        result: Any = None,
        first_poll_after: float = 0.0,
    ) -> None:
        super().__init__()
        self.dataqc_conn_id = dataqc_conn_id
        self.workspace = workspace
        self.poll_interval = max(float(poll_interval), 0.0)
        self.end_time = float(end_time) if end_time is not None else None
        self.max_consecutive_errors = max(int(max_consecutive_errors), 1)
        self.project_id = project_id
        self.consecutive_errors = max(int(consecutive_errors), 0)
        self.result = result
        self.first_poll_after = max(float(first_poll_after), 0.0)

    def _common_kwargs(self) -> dict[str, Any]:
        return {
            "dataqc_conn_id": self.dataqc_conn_id,
            "workspace": self.workspace,
            "poll_interval": self.poll_interval,
            "end_time": self.end_time,
            "max_consecutive_errors": self.max_consecutive_errors,
            "project_id": self.project_id,
            "consecutive_errors": self.consecutive_errors,
            "result": self.result,
            "first_poll_after": self.first_poll_after,
        }

    @property
    def rules(self) -> Any:
        """The rules that judge each answer (see :class:`~airflow_provider_dataqc.core.wait.Rules`)."""
        raise NotImplementedError

    async def prepare(self, client: AsyncDataQCClient) -> Any:
        """What every poll re-uses (a request built once); raise to end the wait at once."""
        return None

    async def fetch(self, client: AsyncDataQCClient, prepared: Any, *, within: float | None) -> Any:
        """One poll's answer for the rules; raise ``DataQCApiError`` when the poll failed."""
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._wait())

    async def _wait(self) -> dict[str, Any]:
        wait = Wait(
            self.rules,
            max_consecutive_errors=self.max_consecutive_errors,
            consecutive_errors=self.consecutive_errors,
            poll_interval=self.poll_interval,
            quiet=True,
            # The last record feeds only the timeout event: kept only when there can be one.
            keep_last=self.end_time is not None,
            result=self.result,
        )
        if self._timed_out():
            return wait.on_deadline().event
        try:
            client = AsyncDataQCClient(
                self.dataqc_conn_id, workspace=self.workspace, project_id=self.project_id, log=self.log
            )
            async with client:
                prepared = await self.prepare(client)
                if self.first_poll_after:
                    await asyncio.sleep(self._next_sleep(self.first_poll_after))
                while True:
                    if self._timed_out():
                        return wait.on_deadline().event
                    stretched = wait.note_poll(time.monotonic())
                    if stretched:
                        self.log.info("%s", stretched)
                    step = await self._poll_once(client, prepared, wait)
                    if isinstance(step, Finish):
                        return step.event
                    await asyncio.sleep(self._next_sleep())
        except DataQCApiError as err:
            return wait.on_fatal(PollError.of(err)).event
        except Exception as err:
            # A missing connection, or something nobody foresaw: end with one event that names it.
            self.log.exception("Waiting for %s failed", wait.rules.label)
            return wait.on_fatal(PollError(f"{type(err).__name__}: {err}")).event

    async def _poll_once(self, client: AsyncDataQCClient, prepared: Any, wait: Wait) -> Keep | Finish:
        """One poll judged and logged. Kept apart from the loop so nothing of the answer
        stays alive while thousands of triggers sleep."""
        try:
            answer = await self.fetch(
                client, prepared, within=self.end_time - time.time() if self.end_time is not None else None
            )
        except DataQCApiError as err:
            step = wait.on_error(PollError.of(err))
        else:
            step = wait.on_answer(answer)
        if isinstance(step, Keep):
            getattr(self.log, step.level.value)("%s", step.message)
        return step

    def _timed_out(self) -> bool:
        return self.end_time is not None and time.time() >= self.end_time

    def _next_sleep(self, seconds: float | None = None) -> float:
        seconds = self.poll_interval if seconds is None else seconds
        if self.end_time is None:
            return seconds
        return max(min(seconds, self.end_time - time.time()), 0.0)


class DataQCResourceStatusTrigger(DataQCWaitTrigger):
    """Polls the status of an import/export task until it ends, without holding a worker.

    Yields exactly one event, a dict with ``status``, ``message`` and ``resource_id``:

    * ``success`` — ``record``: the status record (as in the sensor's XCom), and
      ``result`` when the deferring operator gave one;
    * ``failed`` — FAILED or TIMEOUT (or, with ``wait_for_file``, no file will
      come); ``record``, and ``message`` with the service's ``error_msg``;
    * ``timeout`` — ``end_time`` passed first; ``record``: the last status seen, if any;
    * ``error`` — a permanent error (bad connection, 401/403/404 ...), or
      ``max_consecutive_errors`` transient ones in a row; ``error``: the last
      error's ``status_code``, ``error_code``, ``error_msg``, ``request_id``, ``transient``.

    :param resource_id: the task to follow.
    :param wait_for_file: also wait for ``file_status`` GENERATED.

    The other parameters are :class:`DataQCWaitTrigger`'s.
    """

    def __init__(
        self,
        resource_id: str,
        dataqc_conn_id: str = DataQCHook.default_conn_name,
        workspace: str | None = None,
        poll_interval: float = 60.0,
        wait_for_file: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataqc_conn_id=dataqc_conn_id, workspace=workspace, poll_interval=poll_interval, **kwargs)
        self.resource_id = resource_id
        self.wait_for_file = bool(wait_for_file)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"resource_id": self.resource_id, "wait_for_file": self.wait_for_file, **self._common_kwargs()},
        )

    @property
    def rules(self) -> ResourceStatusRules:
        return ResourceStatusRules(self.resource_id, wait_for_file=self.wait_for_file)

    async def prepare(self, client: AsyncDataQCClient) -> api.ApiRequest:
        return client.status_request(self.resource_id)

    async def fetch(self, client: AsyncDataQCClient, prepared: Any, *, within: float | None) -> Any:
        return await client.status(prepared, within=within)
