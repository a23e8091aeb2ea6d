"""The emulator as a package: its public names, its small modules, its ZIP headers."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import requests

import airflow_provider_dataqc.testing.emulator as emulator_package
from airflow_provider_dataqc.testing.emulator import DEFAULT_PROJECT_ID, DEFAULT_TOKEN, running_emulator
from airflow_provider_dataqc.testing.emulator.files import (
    CentralHeader,
    EndOfCentralDirectory,
    ExportFile,
    LocalHeader,
    read_manifest,
)

PACKAGE = Path(emulator_package.__file__).parent


def test_every_public_name_is_importable_from_the_package() -> None:
    missing = [name for name in emulator_package.__all__ if not hasattr(emulator_package, name)]
    assert missing == []
    for name in ("Emulator", "FaultPlan", "RecordedRequest", "main", "running_emulator", "TIMEOUT_MESSAGE"):
        assert name in emulator_package.__all__


def test_each_module_stays_small() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in PACKAGE.glob("*.py")}
    assert len(sizes) >= 9
    assert {name: n for name, n in sizes.items() if n > 500} == {}


def test_zip_headers_are_named_fields_that_zipfile_reads_back() -> None:
    manifest = {"emulator": "dataqc", "resource_id": "r1", "items": []}
    export = ExportFile(manifest, 4096, b"\x00" * 1000)
    data = b"".join(bytes(piece) for piece in export.chunks())
    assert len(data) == 4096 and export.is_zip
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        padding = archive.getinfo("padding.bin")
        assert padding.flag_bits & 0x08  # streamed: CRC and sizes in a data descriptor
    assert read_manifest(data) == manifest
    local = LocalHeader(flags=0, crc32=1, compressed_size=2, size=2, name_length=4).pack()
    assert local[:4] == b"PK\x03\x04" and len(local) == 30
    assert CentralHeader(0, 1, 2, 2, 4, 0).pack()[:4] == b"PK\x01\x02"
    end = EndOfCentralDirectory(entries=2, directory_size=10, directory_offset=20).pack()
    assert end[:4] == b"PK\x05\x06" and len(end) == 22


def test_the_package_serves_over_http() -> None:
    with running_emulator(download_size=2048) as emu:
        url = f"{emu.url}/v2/{DEFAULT_PROJECT_ID}/quality/resource"
        headers = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": "ws-dev"}
        assert requests.get(f"{url}/status/success-0", headers=headers, timeout=5).json()["status"] == "SUCCESS"
        download = requests.get(f"{url}/download", params={"resource_id": "success-0"}, headers=headers, timeout=5)
        assert download.status_code == 200 and len(download.content) == 2048
        assert read_manifest(download.content) is not None
