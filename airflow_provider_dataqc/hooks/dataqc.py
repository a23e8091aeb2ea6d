"""DataQCHook: authenticated calls to Huawei Cloud DataArts Studio Data Quality (DQC)."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from airflow.providers.common.compat.sdk import AirflowException, BaseHook

from airflow_provider_dataqc.core import api
from airflow_provider_dataqc.core.auth import TOKEN_CACHE, IamToken, settle_token, token_cache_key
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
    is_transient,
    read_json_object,
)
from airflow_provider_dataqc.core.errors import CallFailure, header, request_id_of
from airflow_provider_dataqc.core.settings import (
    AuthType,
    ConnectionSettings,
    InvalidSettingError,
    resolve_workspace,
)
from airflow_provider_dataqc.core.status import ResourceStatus, StatusPayloadError
from airflow_provider_dataqc.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR

__all__ = [
    "DataQCApiError",
    "DataQCHook",
    "DownloadResult",
    "ResourceStatus",
    "UploadResult",
]

_T = TypeVar("_T")

#: Non-streamed answers larger than this are cut and reported, never loaded whole.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
DOWNLOAD_CHUNK_BYTES = 256 * 1024
#: A resource ID that cannot exist, asked for by :meth:`DataQCHook.test_connection`.
CONNECTION_TEST_RESOURCE_ID = "airflow-provider-dataqc-connection-test"


class DataQCApiError(AirflowException):
    """A DataArts Quality call failed, or answered something that cannot be used.

    :ivar status_code: HTTP status, or ``None`` when no answer came.
    :ivar error_code: the service's ``error_code`` (``DQC.*``, ``APIGW.*``), if any.
    :ivar error_msg: the service's ``error_msg``, if any.
    :ivar request_id: the answer's ``X-Request-Id`` (support asks for it).
    :ivar transient: whether waiting could make it go away (no answer, 429, 5xx,
        or a 2xx answer that is not usable, such as a gateway's maintenance page).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        error_msg: str | None = None,
        request_id: str | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        # AirflowException declares status_code for the REST API; here it is the DQC answer's.
        self.status_code = status_code  # type: ignore[assignment]
        self.error_code = error_code
        self.error_msg = error_msg
        self.request_id = request_id
        self.transient = transient

    @classmethod
    def from_failure(cls, failure: CallFailure) -> DataQCApiError:
        return cls(
            failure.message(),
            status_code=failure.status_code,
            error_code=failure.error_code,
            error_msg=failure.error_msg,
            request_id=failure.request_id,
            transient=is_transient(failure),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_api_error, (str(self), self.__dict__))


def _rebuild_api_error(message: str, state: dict[str, Any]) -> DataQCApiError:
    error = DataQCApiError(message)
    error.__dict__.update(state)
    return error


@dataclass(frozen=True)
class UploadResult:
    """What the upload call answered: the new ``resource_id`` and what may need mapping on import."""

    resource_id: str
    topics: list[Any] = field(default_factory=list)
    matched_topics: list[Any] = field(default_factory=list)
    directories: list[Any] = field(default_factory=list)
    queues: list[Any] = field(default_factory=list)
    connections: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "resource_id": self.resource_id,
            "topics": self.topics,
            "matched_topics": self.matched_topics,
            "directories": self.directories,
            "queues": self.queues,
            "connections": self.connections,
        }


@dataclass(frozen=True)
class DownloadResult:
    """A completed download: where it is, its size and SHA-256, and the server's file name."""

    destination: str
    size: int
    sha256: str
    file_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "size": self.size,
            "sha256": self.sha256,
            "file_name": self.file_name,
        }


class DataQCHook(BaseHook):
    """Calls Huawei Cloud DataArts Studio Data Quality with a ``dataqc`` connection.

    Nothing is looked up or sent when the hook is built: the connection is read
    on the first call, so operators can build hooks at DAG parse time for free.

    :param dataqc_conn_id: the ``dataqc`` connection to use.
    :param workspace: DataArts Studio workspace ID for every call of this hook;
        default: the connection's extra ``workspace``.
    :param project_id: overrides the connection's extra ``project_id``.
    """

    conn_name_attr = "dataqc_conn_id"
    default_conn_name = "dataqc_default"
    conn_type = "dataqc"
    hook_name = "Huawei Cloud DataArts Quality"

    def __init__(
        self,
        dataqc_conn_id: str = default_conn_name,
        *,
        workspace: str | None = None,
        project_id: str | None = None,
    ) -> None:
        super().__init__()
        self.dataqc_conn_id = dataqc_conn_id
        self.workspace = workspace
        self.project_id = project_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dataqc_conn_id={self.dataqc_conn_id!r}, workspace={self.workspace!r})"

    # ----------------------------------------------------------------- connection form

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Field labels for Airflow 2 (Airflow 3 reads them from the provider info)."""
        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields for Airflow 2's form (Airflow 3 reads ``conn-fields`` from the provider info)."""
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import PasswordField, StringField

        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            secret = spec["schema"].get("format") == "password"
            field_class, widget = (
                (PasswordField, BS3PasswordFieldWidget) if secret else (StringField, BS3TextFieldWidget)
            )
            widgets[name] = field_class(
                lazy_gettext(spec["label"]), widget=widget(), description=spec.get("description")
            )
        return widgets

    # ----------------------------------------------------------------- settings and transport

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The validated connection (read once per hook; secrets registered with the log masker).

        :raises DataQCApiError: when a connection field is wrong (the message says which and why).
        """
        conn = self.get_connection(self.dataqc_conn_id)
        return settings_from_connection(conn, conn.extra_dejson, project_id=self.project_id)

    def get_conn(self) -> Any:
        """The ``requests.Session`` used for calls (kept open and reused by this hook)."""
        return self._transport.session

    @cached_property
    def _transport(self) -> _RequestsTransport:
        settings = self.settings
        if settings.verify is False:
            self.log.warning(
                "TLS certificate verification is OFF for connection %r (extra verify=false): "
                "answers from %s cannot be trusted",
                self.dataqc_conn_id,
                settings.endpoint,
            )
        return _RequestsTransport(settings.verify)

    def _workspace(self, workspace: str | None) -> str:
        try:
            return resolve_workspace(self.settings, workspace, self.workspace)
        except InvalidSettingError as err:
            raise DataQCApiError(str(err)) from None

    def _drive(self, plan: Generator[Action, Any, _T], sink: _DownloadSink | None = None) -> _T:
        """Run a call plan with ``requests`` and ``time.sleep`` (the one place where the sync hook
        does I/O) and return what it returns."""
        reply: Any = None
        try:
            while True:
                action = plan.send(reply)
                if isinstance(action, Send):
                    reply = self._transport.send(action.request, sink)
                elif isinstance(action, Sleep):
                    time.sleep(action.seconds)
                    reply = None
                elif isinstance(action, GetToken):
                    reply = self._token(action.rejected)
                else:  # pragma: no cover - the plan yields nothing else
                    raise TypeError(f"unknown action {action!r}")
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            plan.close()

    def _run(self, plan: CallPlan, sink: _DownloadSink | None = None) -> Answer:
        outcome = self._drive(plan, sink)
        if isinstance(outcome, CallFailure):
            raise DataQCApiError.from_failure(outcome)
        return outcome

    def _request(self, request: api.ApiRequest, sink: _DownloadSink | None = None) -> Answer:
        return self._run(call(self.settings, request, log=self.log), sink)

    def _token(self, rejected: str | None) -> str | CallFailure:
        """A current IAM token for ``auth_type="password"``: cached per process, one fetch at a
        time per user, and callers that waited for a fetch share its token or its failure."""
        ticket = TOKEN_CACHE.ticket(token_cache_key(self.settings), rejected)
        if ticket.token is not None:
            return ticket.token
        with TOKEN_CACHE.fetch_lock(ticket.key):
            shared = TOKEN_CACHE.shared(ticket)
            if shared is not None:
                return shared
            token = self._drive(fetch_token(self.settings, log=self.log))
            if isinstance(token, IamToken):
                mask_secret_value(token.value)
            return settle_token(ticket.key, token, user=self.settings.login, log=self.log)

    # ----------------------------------------------------------------- calls

    def get_resource_status(self, resource_id: str, *, workspace: str | None = None) -> ResourceStatus:
        """The status of an import/export task.

        :param resource_id: the ``resource_id`` an export or upload answered.
        :param workspace: overrides the hook's and the connection's workspace.
        :raises DataQCApiError: on an error answer, no answer, or an answer that
            is not a status record (the message quotes a short excerpt).
        """
        request = self._build(api.status_request, self._workspace(workspace), resource_id)
        answer = self._request(request)
        return status_from_answer(answer, "status")

    def export_resources(
        self,
        resource_type: str,
        *,
        resources: Iterable[int | str] | None = None,
        select_all: bool = False,
        export_mode: str | None = None,
        obs_service_type: str | None = None,
        workspace: str | None = None,
    ) -> str:
        """Start an export and return its ``resource_id`` (poll it with :meth:`get_resource_status`).

        :param resource_type: ``rule-template``, ``quality-task``, ``consistency-task`` or ``report``.
        :param resources: IDs to export (or ``select_all=True``).
        :param export_mode: ``None`` (local file) or ``"obs"`` (reports only).
        :param obs_service_type: ``technology`` or ``business`` (reports only).
        :raises DataQCApiError: on bad arguments (before any request) or a failed call.
            An export is never repeated after the service may have acted on it.
        """
        request = self._build(
            api.export_request,
            self._workspace(workspace),
            resource_type,
            resources=resources,
            select_all=select_all,
            export_mode=export_mode,
            obs_service_type=obs_service_type,
        )
        payload = json_from_answer(self._request(request), "export")
        return resource_id_from(payload, "export")

    def upload_resource_file(
        self,
        resource_type: str,
        source: str | os.PathLike[str] | BinaryIO,
        *,
        workspace: str | None = None,
        file_name: str | None = None,
    ) -> UploadResult:
        """Upload an exported file (multipart) ahead of :meth:`import_resources`.

        :param resource_type: ``rule-template``, ``quality-task`` or ``consistency-task``.
        :param source: a local path or a binary file object (read whole: the call sends one body).
        :param file_name: the file name sent to the service; default: the path's or the file object's name.
        :returns: the upload's ``resource_id`` and the topics, directories, queues and
            connections found in the file (what may need a mapping on import).
        :raises DataQCApiError: when an argument is wrong or the file is missing (before any
            request), or the call fails. An upload is never repeated after the service may have acted.
        """
        workspace_id = self._workspace(workspace)
        name, content = read_upload_source(source, file_name=file_name)
        request = self._build(api.upload_request, workspace_id, resource_type, file_name=name, content=content)
        body = request.body or b""
        if self.settings.auth_type is AuthType.AKSK and len(body) > 12 * 1024 * 1024:
            raise DataQCApiError(
                f"the upload is {len(body)} bytes; AK/SK requests are limited to 12 MB: use token or password auth"
            )
        payload = json_from_answer(self._request(request), "upload")
        return upload_result_from(payload)

    def import_resources(
        self,
        resource_id: str,
        resource_type: str,
        *,
        strategy: str = "SKIP",
        directories: api.MappingInput = None,
        topics: api.MappingInput = None,
        connections: api.MappingInput = None,
        queues: api.MappingInput = None,
        workspace: str | None = None,
    ) -> None:
        """Import an uploaded file. Poll the upload's ``resource_id`` to follow the import.

        :param strategy: ``SKIP``, ``OVERRIDE`` or ``TERMINATION`` (on duplicate names).
        :param directories: mappings as ``{old: new}`` or a list of
            ``{"old_value", "new_value", "mapping_value"}`` (likewise topics, connections, queues).
        :raises DataQCApiError: on bad arguments (before any request) or a failed call.
        """
        request = self._build(
            api.import_request,
            self._workspace(workspace),
            resource_id,
            resource_type,
            strategy=strategy,
            directories=directories,
            topics=topics,
            connections=connections,
            queues=queues,
        )
        self._request(request)

    def download_resource_file(
        self,
        resource_id: str,
        destination: str | os.PathLike[str],
        *,
        obs_type: str | None = None,
        workspace: str | None = None,
        resource_type: str | None = None,
    ) -> DownloadResult:
        """Download an exported file to a local path, streaming it in chunks (memory stays flat).

        The file is written under a temporary name beside ``destination`` and
        moved into place only when complete; an interrupted download leaves
        nothing at ``destination`` (an existing file there is kept as it was).
        A download cut short is retried like any idempotent call.

        :param resource_id: the export's ``resource_id`` (its status should be SUCCESS / GENERATED).
        :param destination: the local file to write (parent folders are created).
        :param obs_type: ``technology`` or ``business``; the service requires it for reports.
        :param resource_type: the exported type, if known (``report``, ``rule-template`` ...):
            only used to check ``obs_type`` before any request (required for ``report``,
            refused otherwise). Without it, a report downloaded without ``obs_type`` is
            refused by the service (HTTP 400).
        :returns: the destination, the byte count, the SHA-256 and the service's file name.
        :raises DataQCApiError: on bad arguments (before any request), a failed call,
            an incomplete body after the retries, or a file that cannot be written.
        """
        if resource_type is not None:
            try:
                kind = api.choose(api.ExportType, resource_type, "resource_type")
            except InvalidSettingError as err:
                raise DataQCApiError(str(err)) from None
            if kind is api.ExportType.REPORT and obs_type is None:
                allowed = ", ".join(member.value for member in api.ObsType)
                raise DataQCApiError(f"obs_type is required to download a report; one of: {allowed}")
            if kind is not api.ExportType.REPORT and obs_type is not None:
                raise DataQCApiError(f"obs_type applies to reports only, not to {kind.value!r}")
        request = self._build(api.download_request, self._workspace(workspace), resource_id, obs_type=obs_type)
        target = Path(destination)
        if target.is_dir():
            raise DataQCApiError(f"download destination {str(target)!r} is a directory: name the file")
        target.parent.mkdir(parents=True, exist_ok=True)
        sink = _DownloadSink(target)
        answer = self._request(request, sink)
        written: _Written = answer.streamed
        os.replace(written.temp_path, target)
        return DownloadResult(
            str(target),
            written.size,
            written.sha256,
            api.file_name_from_disposition(header(answer.headers, "Content-Disposition")),
        )

    def test_connection(self) -> tuple[bool, str]:
        """Make one authenticated status call for a resource that cannot exist.

        A DQC "not found" answer proves the endpoint, project and credentials
        work; 401/403 proves the credentials do not.
        """
        try:
            self.get_resource_status(CONNECTION_TEST_RESOURCE_ID)
        except DataQCApiError as err:
            if err.status_code in (401, 403):
                return False, f"Credentials rejected: {err}"
            if err.status_code in (400, 404) and err.error_code and not err.error_code.startswith("APIGW"):
                if "workspace" in (err.error_msg or "").lower():
                    return False, f"Credentials accepted, but the workspace was refused: {err}"
                return True, (
                    "Connection works: the credentials were accepted (a status query for a resource "
                    f"that cannot exist was answered {err.error_code}: {err.error_msg})"
                )
            return False, str(err)
        except Exception as err:
            return False, f"{type(err).__name__}: {err}"
        return True, "Connection works"

    def _build(self, builder: Callable[..., api.ApiRequest], *args: Any, **kwargs: Any) -> api.ApiRequest:
        try:
            return builder(self.settings.project_id, *args, **kwargs)
        except InvalidSettingError as err:
            raise DataQCApiError(str(err)) from None


# --------------------------------------------------------------------- shared with the trigger


def settings_from_connection(
    conn: Any, extra: Mapping[str, Any], *, project_id: str | None = None, mask: bool = True
) -> ConnectionSettings:
    """Validate an Airflow connection and register its secrets with the log masker.

    :param mask: register the secrets here (synchronously); the trigger passes
        ``False`` and masks them without blocking its event loop.
    :raises DataQCApiError: naming the field that is wrong.
    """
    for secret in (conn.password, extra.get("security_token")) if mask else ():
        if secret:
            mask_secret_value(str(secret))
    try:
        return ConnectionSettings.from_connection(
            host=conn.host,
            login=conn.login,
            password=conn.password,
            port=conn.port,
            schema=conn.schema,
            extra=extra,
            conn_id=conn.conn_id,
            project_id=project_id,
        )
    except InvalidSettingError as err:
        raise DataQCApiError(f"connection {conn.conn_id!r} is not usable: {err}") from None


def mask_secret_value(value: str) -> None:
    """Register a secret with Airflow's masker so it never reaches a log."""
    from airflow.providers.common.compat.sdk import mask_secret

    mask_secret(value)


def json_from_answer(answer: Answer, operation: str) -> dict[str, Any]:
    result = read_json_object(answer, operation)
    if isinstance(result, CallFailure):
        raise DataQCApiError.from_failure(result)
    return result


def status_from_answer(answer: Answer, operation: str) -> ResourceStatus:
    """Turn a 200 status answer into a :class:`ResourceStatus` or a :class:`DataQCApiError`."""
    payload = json_from_answer(answer, operation)
    try:
        return ResourceStatus.from_api(payload, request_id=header(answer.headers, "X-Request-Id"))
    except StatusPayloadError as err:
        raise DataQCApiError.from_failure(
            CallFailure(
                operation=operation,
                status_code=answer.status_code,
                request_id=header(answer.headers, "X-Request-Id"),
                problem=f"the answer is not a status record: {err}",
            )
        ) from None


def resource_id_from(payload: Mapping[str, Any], operation: str) -> str:
    value = payload.get("resource_id")
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value)
    raise DataQCApiError(f"DataArts Quality {operation} answered without a resource_id: {str(payload)[:200]!r}")


def upload_result_from(payload: Mapping[str, Any]) -> UploadResult:
    def listed(name: str) -> list[Any]:
        value = payload.get(name)
        return list(value) if isinstance(value, list) else []

    return UploadResult(
        resource_id=resource_id_from(payload, "upload"),
        topics=listed("topics"),
        matched_topics=listed("matched_topics"),
        directories=listed("directories"),
        queues=listed("queues"),
        connections=listed("connections"),
    )


def read_upload_source(source: str | os.PathLike[str] | BinaryIO, *, file_name: str | None = None) -> tuple[str, bytes]:
    """The name and bytes of a file to upload, from a local path or a binary file object.

    :raises DataQCApiError: when ``source`` is a path that does not exist or a file
        object opened in text mode (no request is made).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DataQCApiError(f"upload source {str(path)!r} does not exist or is not a file")
        name, content = path.name, path.read_bytes()
    else:
        name = os.path.basename(str(getattr(source, "name", "") or "")) or "resources.zip"
        content = source.read()
        if not isinstance(content, (bytes, bytearray)):
            raise DataQCApiError(f"upload source {name!r} must be opened in binary mode ('rb')")
    return (os.path.basename(str(file_name)) if file_name else "") or name, bytes(content)


# --------------------------------------------------------------------- the requests transport


@dataclass(frozen=True)
class _Written:
    temp_path: str
    size: int
    sha256: str


class _DownloadSink:
    """Writes a streamed body to a temporary file beside the destination."""

    def __init__(self, destination: Path) -> None:
        self.destination = destination
        #: Bytes received so far by the current :meth:`write` (told when a download is cut short).
        self.received = 0

    def write(self, chunks: Iterator[bytes]) -> _Written:
        digest = hashlib.sha256()
        size = self.received = 0
        # Created like any new file (mode 0o666 less the umask), under a name no other download uses.
        temp_path = str(self.destination.parent / f".{self.destination.name}.{uuid.uuid4().hex[:12]}.part")
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    self.received = size
        except BaseException:
            Path(temp_path).unlink(missing_ok=True)
            raise
        return _Written(temp_path, size, digest.hexdigest())


class _RequestsTransport:
    """Sends prepared requests with one ``requests.Session`` (connections kept alive)."""

    def __init__(self, verify: bool | str) -> None:
        import requests

        self.session = requests.Session()
        self.session.verify = verify
        self.session.trust_env = False

    def send(self, prepared: Any, sink: _DownloadSink | None = None) -> Answer | NoAnswer:
        import requests

        try:
            # Built and sent as is: the session's own defaults and environment merging
            # (Session.request) cost more than the rest of a poke and add nothing here.
            wire = requests.Request(
                prepared.method, prepared.url, headers=dict(prepared.headers), data=prepared.body
            ).prepare()
            response = self.session.send(
                wire,
                timeout=(prepared.connect_timeout, prepared.read_timeout),
                allow_redirects=False,
                stream=True,
                verify=self.session.verify,
                proxies={},
            )
        except requests.exceptions.ConnectTimeout:
            return NoAnswer(f"connect timeout after {prepared.connect_timeout:g}s", maybe_processed=False)
        except requests.exceptions.ReadTimeout:
            return NoAnswer(f"read timeout after {prepared.read_timeout:g}s")
        except requests.exceptions.SSLError as err:
            # A rejected certificate stays rejected: not retried. Other TLS failures are
            # handshake hiccups; the request was not sent yet.
            return NoAnswer(f"TLS error: {_short(err)}", maybe_processed=False, permanent=_cert_rejected(err))
        except requests.exceptions.ConnectionError as err:
            return NoAnswer(f"connection error: {_short(err)}", maybe_processed=_maybe_processed(err))
        except requests.exceptions.RequestException as err:
            return NoAnswer(f"request error: {_short(err)}")
        except OSError as err:  # requests raises a bare OSError for a missing CA bundle (extra verify)
            return NoAnswer(f"TLS set-up error (extra verify): {_short(err)}", maybe_processed=False, permanent=True)
        with response:
            headers = dict(response.headers)
            try:
                if sink is not None and prepared.stream and 200 <= response.status_code < 300:
                    written = sink.write(response.iter_content(DOWNLOAD_CHUNK_BYTES))
                    expected = header(headers, "Content-Length")
                    # With a Content-Encoding the length counts encoded bytes (urllib3 checks those).
                    encoded = (header(headers, "Content-Encoding") or "identity").lower() != "identity"
                    if expected and expected.isdigit() and not encoded and int(expected) != written.size:
                        Path(written.temp_path).unlink(missing_ok=True)
                        return NoAnswer(f"the download stopped after {written.size} of {expected} bytes")
                    return Answer(response.status_code, headers, b"", streamed=written)
                body, truncated = _read_capped(response.iter_content(64 * 1024), MAX_ANSWER_BYTES)
            except (requests.exceptions.RequestException, ConnectionError) as err:
                # requests' exceptions are OSErrors too: an answer cut short is checked first.
                if sink is not None and prepared.stream and 200 <= response.status_code < 300:
                    expected = header(headers, "Content-Length") or "an unknown number of"
                    return NoAnswer(
                        f"the download was cut short after {sink.received} of {expected} bytes: {_short(err)}",
                        request_id=request_id_of(headers),
                    )
                return NoAnswer(f"the answer was cut short: {_short(err)}", request_id=request_id_of(headers))
            except OSError as err:
                raise DataQCApiError(f"could not write the download: {err}") from None
            return Answer(response.status_code, headers, body, truncated=truncated)


def _read_capped(chunks: Iterable[bytes], limit: int) -> tuple[bytes, bool]:
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts)[:limit], True
    return b"".join(parts), False


def _maybe_processed(err: BaseException) -> bool:
    """A refused or unresolvable connection never reached the service."""
    text = repr(err)
    return not any(
        marker in text
        for marker in ("NewConnectionError", "Connection refused", "NameResolutionError", "Failed to resolve")
    )


def _cert_rejected(err: BaseException) -> bool:
    """Whether a TLS failure is the server's certificate being rejected (not worth retrying)."""
    import ssl

    seen: set[int] = set()
    pending: list[Any] = [err]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError):
            return True
        pending.extend([*item.args, item.__cause__, item.__context__, getattr(item, "reason", None)])
    return "CERTIFICATE_VERIFY_FAILED" in str(err) or "certificate verify failed" in str(err)


def _short(err: BaseException, limit: int = 200) -> str:
    text = str(err) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
