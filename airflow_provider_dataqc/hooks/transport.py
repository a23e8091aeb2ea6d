"""Sending prepared requests with ``requests``: the sync hook's transport, its download sink,
and the reading of ``requests``' failures (TLS, network) as the call plan needs them.

The call plan (:mod:`airflow_provider_dataqc.core.calls`) decides what to do with what this
reports; nothing here retries.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from airflow_provider_dataqc.core.answers import CappedBody, shortfall
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
                    short = shortfall(headers, written.size)
                    if short is not None:
                        Path(written.temp_path).unlink(missing_ok=True)
                        return NoAnswer(f"the download stopped {short}", request_id=request_id_of(headers))
                    return Answer(response.status_code, headers, b"", streamed=written)
                capped = CappedBody()
                for chunk in response.iter_content(_READ_CHUNK_BYTES):
                    if capped.add(chunk):
                        break
                body, truncated = capped.body(), capped.truncated
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
