"""Transport safety: TLS certificates verified by default, a CA bundle path, verification off with
a warning, a missing bundle as a clear permanent error.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from airflow_provider_dataqc.hooks.dataqc import DataQCApiError

from .support import MODES, STATUS_PATH_R1, distinct_lines, fetch_status, set_connection


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost, made here."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dataqc reliability test CA")])
    usage = {
        "digital_signature": True,
        "content_commitment": False,
        "key_encipherment": False,
        "data_encipherment": False,
        "key_agreement": False,
        "encipher_only": False,
        "decipher_only": False,
    }
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(key_cert_sign=True, crl_sign=True, **usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(key_cert_sign=False, crl_sign=False, **usage), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@pytest.fixture(scope="module")
def _https_server(tls_files: dict[str, Path]) -> Iterator[HTTPServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    server.expect_request(STATUS_PATH_R1).respond_with_json({"status": "SUCCESS"}, headers={"X-Request-Id": "tls"})
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def https_server(_https_server: HTTPServer) -> HTTPServer:
    """A TLS server on 127.0.0.1 answering SUCCESS for ``r-1``; its log starts empty."""
    _https_server.clear_log()
    return _https_server


@pytest.mark.parametrize("mode", MODES)
def test_tls_certificates_are_verified_by_default(
    https_server: HTTPServer, monkeypatch: pytest.MonkeyPatch, task_logs: Any, mode: str
) -> None:
    url = f"https://127.0.0.1:{https_server.port}"
    set_connection(monkeypatch, url, max_retries=3, backoff_factor=0.5)
    started = time.monotonic()
    with pytest.raises(DataQCApiError, match="TLS error") as caught:
        fetch_status(mode, "r-1")
    assert "cert" in str(caught.value).lower()
    assert not caught.value.transient  # a rejected certificate is not retried, and ends a wait
    assert time.monotonic() - started < 2.0 and not [line for line in task_logs.lines("warning") if "retrying" in line]
    assert len(https_server.log) == 0  # no request got through


@pytest.mark.parametrize("mode", MODES)
def test_tls_with_a_ca_bundle_path_works(
    https_server: HTTPServer, tls_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, task_logs: Any, mode: str
) -> None:
    set_connection(monkeypatch, f"https://127.0.0.1:{https_server.port}", verify=str(tls_files["ca"]))
    assert fetch_status(mode, "r-1").is_success
    assert len(https_server.log) == 1
    assert not [line for line in task_logs.lines("warning") if "verification is OFF" in line]


@pytest.mark.parametrize("mode", MODES)
def test_tls_verification_off_works_with_a_warning(
    https_server: HTTPServer, monkeypatch: pytest.MonkeyPatch, task_logs: Any, mode: str
) -> None:
    set_connection(monkeypatch, f"https://127.0.0.1:{https_server.port}", verify=False)
    assert fetch_status(mode, "r-1").is_success
    warned = distinct_lines(task_logs, "warning", "verification is OFF", key="verification is OFF")
    assert len(warned) == 1 and "connection 'dataqc_default'" in warned[0]


def test_a_missing_ca_bundle_is_a_clear_permanent_error(
    https_server: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    set_connection(monkeypatch, f"https://127.0.0.1:{https_server.port}", verify=str(missing), max_retries=3)
    with pytest.raises(DataQCApiError, match="extra verify") as caught:
        fetch_status("sync", "r-1")
    assert not caught.value.transient and len(https_server.log) == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_ca_folder_works_in_the_hook_and_the_trigger(
    https_server: HTTPServer, tls_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    import shutil
    import subprocess

    # An OpenSSL hashed CA directory, as `openssl rehash` makes it: <subject hash>.0
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(tls_files["ca"])],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    folder = tmp_path / "cas"
    folder.mkdir()
    shutil.copy(tls_files["ca"], folder / f"{subject_hash}.0")
    set_connection(monkeypatch, f"https://127.0.0.1:{https_server.port}", verify=str(folder))
    assert fetch_status(mode, "r-1").is_success
    assert len(https_server.log) == 1


class _TlsThenGarbage:
    """A TLS server that reads one request, then answers with bytes that are not TLS records:
    the client's TLS layer fails while reading the answer, after its request went out."""

    def __init__(self, tls_files: dict[str, Path]) -> None:
        import socket
        import threading

        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(tls_files["cert"], tls_files["key"])
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import socket

        while True:
            try:
                plain, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn = self.context.wrap_socket(plain, server_side=True)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                self.requests += 1
                raw = socket.socket(fileno=os.dup(conn.fileno()))
                raw.sendall(b"HTTP/1.1 200 OK\r\n\r\n not a TLS record " * 20)
                # Closing with the request body still unread would send a reset, which the
                # client could see before the garbage: end our side, then drain until it hangs up.
                raw.shutdown(socket.SHUT_WR)
                raw.settimeout(5)
                try:
                    while raw.recv(65536):
                        pass
                except OSError:
                    pass
                raw.close()
                conn.close()
            except (OSError, ssl.SSLError):
                plain.close()

    def close(self) -> None:
        self.sock.close()


def test_a_tls_error_after_the_request_is_maybe_processed(
    tls_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_dataqc.exceptions import DataQCOutcomeUnknownError
    from airflow_provider_dataqc.hooks.dataqc import DataQCHook

    server = _TlsThenGarbage(tls_files)
    try:
        set_connection(monkeypatch, f"https://127.0.0.1:{server.port}", verify=str(tls_files["ca"]), max_retries=3)
        with pytest.raises(DataQCOutcomeUnknownError, match="TLS error"):
            DataQCHook().export_resources("quality-task", resources=[1])
        assert server.requests == 1  # the export went out once and was not sent again
        with pytest.raises(DataQCApiError, match="TLS error") as caught:
            DataQCHook().get_resource_status("r-1")
        assert caught.value.transient and server.requests == 1 + 4  # a status call is retried
    finally:
        server.close()
