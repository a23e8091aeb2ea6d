"""Routing: which operation a request is, and the order of what happens to it.

Order: unknown routes (a gateway 404), injected faults, the body, IAM, the gateway's checks
(authentication, then flow control), the service's (project, workspace), then the handler.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from airflow_provider_dataqc.core.api import IAM_TOKEN_PATH, QUALITY_RESOURCE_PATH
from airflow_provider_dataqc.testing.emulator.defaults import JOB_OPERATIONS
from airflow_provider_dataqc.testing.emulator.faults import FaultsMixin
from airflow_provider_dataqc.testing.emulator.flow import THROTTLE_CODE, throttle_message
from airflow_provider_dataqc.testing.emulator.identity import IdentityMixin
from airflow_provider_dataqc.testing.emulator.job_handlers import JobHandlersMixin, classify_job_path
from airflow_provider_dataqc.testing.emulator.state import Exchange

_QUALITY_HEAD, _QUALITY_TAIL = QUALITY_RESOURCE_PATH.split("{project_id}")
_JOBS_HEAD = "/quality/"  # jobs, instances: /v2/{project_id}/quality/...


class RoutingMixin(FaultsMixin, IdentityMixin, JobHandlersMixin):
    """Classifies each request and dispatches it."""

    @staticmethod
    def _classify(method: str, path: str) -> tuple[str, str | None, str | None]:
        """``(operation, project_id, resource_id from the path)`` of a request."""
        if path == IAM_TOKEN_PATH:
            return ("iam" if method == "POST" else "unknown"), None, None
        if not path.startswith(_QUALITY_HEAD):
            return "unknown", None, None
        project, _, rest = path[len(_QUALITY_HEAD) :].partition("/")
        rest = "/" + rest
        if rest.startswith(_JOBS_HEAD) and not rest.startswith(_QUALITY_TAIL + "/"):
            job = classify_job_path(method, rest[len(_JOBS_HEAD) :])
            if job is None:
                return "unknown", unquote(project), None
            return job[0], unquote(project), (unquote(job[1]) if job[1] is not None else None)
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
        exchange = Exchange(request, path, raw_query, request_id, operation, resource_id)
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
        exchange: Exchange,
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
        denied = self._check_credentials(request, path, query, body, request_id)
        if denied is None:
            denied = self._throttle(request, operation, request_id)
        if denied is None:
            denied = self._check_scope(project, exchange.workspace, request_id)
        if denied is not None:
            return denied
        if fault == "truncated":
            return await self._truncated(request, exchange, query, request_id)
        if operation in JOB_OPERATIONS:
            return self._job_call(operation, exchange.resource_id, path, query, body, exchange.workspace, request_id)
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

    def _throttle(self, request: web.Request, operation: str, request_id: str) -> web.Response | None:
        """The gateway's flow control: a 429 ``APIGW.0308`` past a window's limit, else ``None``."""
        control = self.flow_control
        policy = self._gateway.admit(control, operation, self._identity_of(request))
        if policy is None or control is None:
            return None
        headers = {} if control.retry_after is None else {"Retry-After": f"{control.retry_after:g}"}
        body = {"error_code": THROTTLE_CODE, "error_msg": throttle_message(control, operation, policy)}
        return self._json(429, body, request_id, headers)
