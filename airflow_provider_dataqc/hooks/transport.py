"""Sending prepared requests with ``requests``: the sync hook's transport, its download sink,
and the reading of ``requests``' failures (TLS, network) as the call plan needs them.

The call plan (:mod:`airflow_provider_dataqc.core.calls`) decides what to do with what this
reports; nothing here retries.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from airflow_provider_dataqc.core.answers import CappedBody, framed, looks_like_an_error_page, shortfall
from airflow_provider_dataqc.core.calls import Answer, NoAnswer
from airflow_provider_dataqc.core.errors import header, request_id_of
from airflow_provider_dataqc.exceptions import DataQCApiError, DataQCInvalidArgumentError

DOWNLOAD_CHUNK_BYTES = 256 * 1024
_READ_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Written:
    temp_path: str
    size: int
    sha256: str


class DownloadSink:
    """Writes a streamed body to a temporary file beside the destination."""

    def __init__(self, destination: Path) -> None:
        self.destination = destination
        #: Bytes received so far by the current :meth:`write` (told when a download is cut short).
        self.received = 0

    def write(self, chunks: Iterator[bytes]) -> Written:
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
        return Written(temp_path, size, digest.hexdigest())


class RequestsTransport:
    """Sends prepared requests with one ``requests.Session`` (connections kept alive)."""

    def __init__(self, verify: bool | str) -> None:
        import requests

        self.session = requests.Session()
        self.session.verify = verify
        self.session.trust_env = False

    def send(self, prepared: Any, sink: DownloadSink | None = None) -> Answer | NoAnswer:
        import requests

        budget = prepared.attempt_timeout
        started = time.monotonic()
        # requests bounds only the gap between bytes: the attempt's own bound is kept below.
        read_timeout = prepared.read_timeout if budget is None else max(min(prepared.read_timeout, budget), 0.001)
        try:
            # Built and sent as is: the session's own defaults and environment merging
            # (Session.request) cost more than the rest of a poke and add nothing here.
            wire = requests.Request(
                prepared.method, prepared.url, headers=dict(prepared.headers), data=prepared.body
            ).prepare()
            response = self.session.send(
                wire,
                timeout=(prepared.connect_timeout, read_timeout),
                allow_redirects=False,
                stream=True,
                verify=self.session.verify,
                proxies={},
            )
        except requests.exceptions.ConnectTimeout:
            return NoAnswer(f"connect timeout after {prepared.connect_timeout:g}s", maybe_processed=False)
        except requests.exceptions.ReadTimeout:
            return NoAnswer(f"read timeout after {read_timeout:g}s")
        except requests.exceptions.SSLError as err:
            # A rejected certificate is refused in the handshake, before anything is sent: never
            # retried. requests raises SSLError while reading the answer too, after the request
            # went out: then the service may have acted on it.
            rejected = _cert_rejected(err)
            return NoAnswer(f"TLS error: {_short(err)}", maybe_processed=not rejected, permanent=rejected)
        except requests.exceptions.ConnectionError as err:
            return NoAnswer(f"connection error: {_short(err)}", maybe_processed=_maybe_processed(err))
        except requests.exceptions.RequestException as err:
            return NoAnswer(f"request error: {_short(err)}")
        except OSError as err:  # requests raises a bare OSError for a missing CA bundle (extra verify)
            return NoAnswer(f"TLS set-up error (extra verify): {_short(err)}", maybe_processed=False, permanent=True)
        deadline = started + budget if budget is not None else None
        with response:
            headers = dict(response.headers)
            request_id = request_id_of(headers)
            download = sink is not None and prepared.stream and 200 <= response.status_code < 300
            try:
                if download:
                    assert sink is not None
                    return _store(
                        sink, response, headers, _chunks(response, DOWNLOAD_CHUNK_BYTES, deadline, read_timeout)
                    )
                capped = CappedBody()
                for chunk in _chunks(response, _READ_CHUNK_BYTES, deadline, read_timeout):
                    if capped.add(chunk):
                        break
            except _Overdue:
                return NoAnswer(
                    f"read timeout after {budget:g}s: the answer was not complete in time", request_id=request_id
                )
            except Exception as err:
                # requests' and urllib3's errors (some are OSErrors too) mean the answer was cut
                # short; any other OSError comes from writing the file.
                if not isinstance(err, _network_errors()):
                    if isinstance(err, OSError):
                        raise DataQCApiError(f"could not write the download: {err}") from None
                    raise
                if download:
                    assert sink is not None
                    expected = header(headers, "Content-Length") or "an unknown number of"
                    return NoAnswer(
                        f"the download was cut short after {sink.received} of {expected} bytes: {_short(err)}",
                        request_id=request_id,
                    )
                return NoAnswer(f"the answer was cut short: {_short(err)}", request_id=request_id)
            return Answer(response.status_code, headers, capped.body(), truncated=capped.truncated)


class _Overdue(Exception):
    """The attempt's time ran out while the answer was still coming."""


def _network_errors() -> tuple[type[BaseException], ...]:
    import requests
    import urllib3

    return (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def _chunks(response: Any, size: int, deadline: float | None, read_timeout: float) -> Iterator[bytes]:
    """The body as it comes (each piece as soon as it is there), within ``deadline``.

    Each socket read waits at most ``read_timeout`` and never past ``deadline``, so an answer
    that trickles in ends when the attempt's time does.
    """
    raw = response.raw
    read = getattr(raw, "read1", None)
    if read is None:  # not urllib3 2 (read1 is what returns a piece as soon as it is there)
        yield from response.iter_content(size)
        return
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Overdue
            if sock is not None:
                sock.settimeout(max(min(read_timeout, left), 0.001))
        try:
            chunk = read(size, decode_content=True)
        except Exception:
            if deadline is not None and time.monotonic() >= deadline - 0.005:
                raise _Overdue from None
            raise
        if not chunk:
            return
        yield chunk


def _store(sink: DownloadSink, response: Any, headers: dict[str, str], chunks: Iterator[bytes]) -> Answer | NoAnswer:
    """Write a download and check it is the file: complete, and not an error page in its place."""
    request_id = request_id_of(headers)
    encoding = (header(headers, "Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        # Identity was asked for; a server that compresses all the same gets its body inflated,
        # but never without bound (a small gzip answer must not fill the disk).
        chunks = _bounded_inflation(response.raw, chunks)
    try:
        written = sink.write(chunks)
    except _Inflated as inflated:
        return NoAnswer(str(inflated), permanent=True, request_id=request_id)
    problem: str | None = None
    short = shortfall(headers, written.size)
    head = _head(written.temp_path)
    if short is not None:
        problem = f"the download stopped {short}"
    elif head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(written.temp_path):
                pass
        except (zipfile.BadZipFile, OSError):
            problem = f"the download is a ZIP file that does not open ({written.size} bytes): cut short or damaged"
    elif looks_like_an_error_page(head, headers):
        Path(written.temp_path).unlink(missing_ok=True)
        return Answer(response.status_code, headers, head)  # no file: the hook reads what it says
    elif not framed(headers):
        problem = f"the download ({written.size} bytes) had no length and no chunked framing: cannot tell it is whole"
    if problem is not None:
        Path(written.temp_path).unlink(missing_ok=True)
        return NoAnswer(problem, request_id=request_id)
    return Answer(response.status_code, headers, b"", streamed=written)


#: A compressed download may inflate to this many times the bytes received (or to the floor below).
MAX_INFLATION_RATIO = 200
MIN_INFLATION_BYTES = 64 * 1024 * 1024


class _Inflated(Exception):
    """A compressed body inflating far beyond what came over the wire."""


def _bounded_inflation(raw: Any, chunks: Iterator[bytes]) -> Iterator[bytes]:
    decoded = 0
    for chunk in chunks:
        decoded += len(chunk)
        wire = raw.tell() if hasattr(raw, "tell") else 0
        if decoded > max(MIN_INFLATION_BYTES, MAX_INFLATION_RATIO * wire):
            raise _Inflated(
                f"the compressed download inflates to more than {MAX_INFLATION_RATIO}x the {wire} bytes "
                f"received (Content-Encoding was not asked for); refused"
            )
        yield chunk


def _head(path: str, size: int = 64 * 1024) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


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


def read_upload_source(source: str | os.PathLike[str] | BinaryIO, *, file_name: str | None = None) -> tuple[str, bytes]:
    """The name and bytes of a file to upload, from a local path or a binary file object.

    :raises DataQCApiError: when ``source`` is a path that does not exist or a file
        object opened in text mode (no request is made).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DataQCInvalidArgumentError(f"upload source {str(path)!r} does not exist or is not a file")
        name, content = path.name, path.read_bytes()
    else:
        name = os.path.basename(str(getattr(source, "name", "") or "")) or "resources.zip"
        content = source.read()
        if not isinstance(content, (bytes, bytearray)):
            raise DataQCInvalidArgumentError(f"upload source {name!r} must be opened in binary mode ('rb')")
    return (os.path.basename(str(file_name)) if file_name else "") or name, bytes(content)
