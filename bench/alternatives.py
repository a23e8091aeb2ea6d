"""The alternatives our sensor and trigger are compared with (bench-only code, never shipped).

* :class:`SdkHmacAuth` — a ``requests`` auth that signs with our ``core.signer``. The HTTP
  provider cannot sign AK/SK requests by itself: ``HttpSensor`` has no ``auth_type`` parameter
  and builds its ``HttpHook`` inside ``poke()``, whose default auth is HTTP Basic. Signing
  therefore takes custom code: this auth class plus :class:`SignedHttpSensor`, which repeats
  ``HttpSensor.poke()`` with ``HttpHook(auth_type=SdkHmacAuth)``.
* :class:`SyncHookInThreadTrigger` — the usual way to make a trigger from a sync hook: the
  ``requests``-based :class:`DataQCHook` called in the loop's default thread pool
  (``run_in_executor``), one hook (and ``requests.Session``) per trigger.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.providers.http.hooks.http import HttpHook
from airflow.providers.http.sensors.http import HttpSensor
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_dataqc.core import signer
from airflow_provider_dataqc.core.status import Outcome, assess
from airflow_provider_dataqc.hooks.dataqc import DataQCHook


def status_check(response: requests.Response) -> bool:
    """The ``response_check`` equivalent to our sensor's judgement (done / keep waiting / fail)."""
    status = response.json().get("status")
    if status in ("FAILED", "TIMEOUT"):
        raise AirflowFailException(f"the task ended {status}")
    return status == "SUCCESS"


class SdkHmacAuth(requests.auth.AuthBase):
    """Signs a prepared ``requests`` request with ``SDK-HMAC-SHA256`` (AK = login, SK = password).

    ``HttpHook`` builds it as ``auth_type(login, password)``: bind ``project_id`` with
    ``functools.partial``.
    """

    def __init__(self, access_key: str, secret_key: str, project_id: str | None = None) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.project_id = project_id

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        parts = urlsplit(request.url or "")
        body = request.body.encode() if isinstance(request.body, str) else request.body
        request.headers.update(
            signer.sign(
                method=request.method or "GET",
                host=parts.netloc,
                path=parts.path,
                query=parse_qsl(parts.query, keep_blank_values=True),
                headers=request.headers,
                body=body or None,
                access_key=self.access_key,
                secret_key=self.secret_key,
                project_id=self.project_id,
            )
        )
        return request


class SignedHttpSensor(HttpSensor):
    """``HttpSensor`` whose hook signs AK/SK requests (``HttpSensor`` itself cannot)."""

    def __init__(self, *, project_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project_id = project_id

    def poke(self, context: Any) -> Any:
        from airflow.utils.operator_helpers import determine_kwargs

        hook = HttpHook(
            method=self.method,
            http_conn_id=self.http_conn_id,
            auth_type=functools.partial(SdkHmacAuth, project_id=self.project_id),
            tcp_keep_alive=self.tcp_keep_alive,
            tcp_keep_alive_idle=self.tcp_keep_alive_idle,
            tcp_keep_alive_count=self.tcp_keep_alive_count,
            tcp_keep_alive_interval=self.tcp_keep_alive_interval,
        )
        self.log.info("Poking: %s", self.endpoint)
        response = hook.run(
            self.endpoint, data=self.request_params, headers=self.headers, extra_options=self.extra_options
        )
        assert self.response_check is not None
        kwargs = determine_kwargs(self.response_check, [response], context)
        return self.response_check(response, **kwargs)


class SyncHookInThreadTrigger(BaseTrigger):
    """A status trigger built the common way: the sync hook in the loop's default thread pool."""

    def __init__(self, resource_id: str, dataqc_conn_id: str, poll_interval: float = 60.0) -> None:
        super().__init__()
        self.resource_id = resource_id
        self.dataqc_conn_id = dataqc_conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "resource_id": self.resource_id,
                "dataqc_conn_id": self.dataqc_conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = DataQCHook(self.dataqc_conn_id)
        loop = asyncio.get_running_loop()
        while True:
            status = await loop.run_in_executor(None, hook.get_resource_status, self.resource_id)
            verdict = assess(status)
            if verdict.outcome is not Outcome.WAIT:
                yield TriggerEvent({"status": verdict.outcome.value, "record": status.to_dict()})
                return
            self.log.info("%s", verdict.message)
            await asyncio.sleep(self.poll_interval)
