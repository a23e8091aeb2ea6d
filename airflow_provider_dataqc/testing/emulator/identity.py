"""Identity: IAM token issuance, token checks, AK/SK signature checks, project and workspace checks."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from airflow_provider_dataqc.testing.emulator.defaults import DEFAULT_REGION
from airflow_provider_dataqc.testing.emulator.state import EmulatorState, iso, stable_id

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

#: AK/SK-signed bodies are limited to 12 MB by the API gateway.
AKSK_BODY_LIMIT = 12 * 1024 * 1024
_ACCESS = re.compile(r"Access=([^,\s]+)")


class IdentityMixin(EmulatorState):
    """Who may call: IAM's ``POST /v3/auth/tokens`` and the checks before every DataArts call."""

    @property
    def iam_calls(self) -> int:
        """How many ``POST /v3/auth/tokens`` requests came in (any outcome)."""
        return self._iam_calls

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

    # ---------------------------------------------------------------- checks
    def _check_credentials(
        self, request: web.Request, path: str, query: list[tuple[str, str]], body: bytes, request_id: str
    ) -> web.Response | None:
        """The gateway's checks: authentication (401) and the AK/SK body limit (413)."""
        problem = self._authenticate(request, path, query, body)
        if problem is not None:
            return self._error(401, "APIGW.0301", f"Incorrect IAM authentication information: {problem}", request_id)
        if "authorization" in request.headers and len(body) > AKSK_BODY_LIMIT:
            return self._error(
                413, "APIGW.0201", "Request entity too large: AK/SK bodies are limited to 12 MB", request_id
            )
        return None

    def _check_scope(self, project: str | None, workspace: str | None, request_id: str) -> web.Response | None:
        """The service's checks: the path's project (403) and the ``workspace`` header (400)."""
        if project != self.project_id:
            return self._error(
                403, "DQC.0003", f"The project {project!r} is not the project of this service", request_id
            )
        if not workspace:
            return self._error(400, "DQC.0004", "Workspace does not exist: the workspace header is missing", request_id)
        if workspace not in self.workspaces:
            return self._error(400, "DQC.0004", f"Workspace does not exist: {workspace!r}", request_id)
        return None

    def _identity_of(self, request: web.Request) -> str:
        """Who an authenticated request comes from, for per-user flow control; never a secret.

        Tokens issued by IAM belong to the emulator's IAM user (``user:<name>``); an access key
        is its own identity (``ak:<AK>``); a static token is named by a digest of it.
        """
        token = request.headers.get("X-Auth-Token")
        if token is not None:
            with self._lock:
                if token in self._issued:
                    return f"user:{self.user[0]}"
            return "token:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]
        match = _ACCESS.search(request.headers.get("Authorization", ""))
        return f"ak:{match.group(1)}" if match else "anonymous"

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
        return self._check_signature(request.method, path, query, request.headers, body)

    def _check_signature(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: CIMultiDictProxy[str],
        body: bytes,
    ) -> str | None:
        from airflow_provider_dataqc.core import signer  # lazy: the emulator also works without it

        check = signer.verify(
            method=method, path=path, query=query, headers=headers, body=body or None, secret_for=self.aksk.get
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
                "expires_at": iso(expires),
                "issued_at": iso(issued),
                "methods": ["password"],
                "project": {"id": self.project_id, "name": region, "domain": domain_info},
                "user": {"id": stable_id(self.user[0]), "name": self.user[0], "domain": domain_info},
                "roles": [{"id": "0", "name": "te_admin"}],
                "catalog": [],
            }
        }
        return self._json(201, answer, request_id, {"X-Subject-Token": token})
