"""Files the emulator sends and receives: export files (a streamed ZIP) and multipart uploads.

An export file is a real ZIP (``manifest.json`` + ``padding.bin``) of exactly the requested
size, written piece by piece so that a multi-GiB download never sits in memory. Its headers
are built from named fields (:class:`LocalHeader`, :class:`CentralHeader` ...) in the order
of the ZIP specification (APPNOTE 4.3.7, 4.3.9, 4.3.12, 4.3.16).
"""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from email.message import Message
from io import BytesIO
from typing import Any, NamedTuple

MANIFEST_NAME = "manifest.json"
PADDING_NAME = "padding.bin"
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01: deterministic archives
_DOS_TIME = 0
_VERSION = 20  # 2.0: deflate/stored with data descriptors
_FLAG_DESCRIPTOR = 0x08  # sizes and CRC follow the data (the padding is streamed)
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_LOCAL_SIGNATURE = 0x04034B50
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_CENTRAL_SIGNATURE = 0x02014B50
_DESCRIPTOR = struct.Struct("<IIII")
_DESCRIPTOR_SIGNATURE = 0x08074B50
_END = struct.Struct("<IHHHHIIH")
_END_SIGNATURE = 0x06054B50


class LocalHeader(NamedTuple):
    """A local file header (APPNOTE 4.3.7)."""

    flags: int
    crc32: int
    compressed_size: int
    size: int
    name_length: int

    def pack(self) -> bytes:
        return _LOCAL.pack(
            _LOCAL_SIGNATURE,
            _VERSION,  # version needed to extract
            self.flags,
            0,  # compression: stored
            _DOS_TIME,
            _DOS_DATE,
            self.crc32,
            self.compressed_size,
            self.size,
            self.name_length,
            0,  # extra field length
        )


class CentralHeader(NamedTuple):
    """A central directory file header (APPNOTE 4.3.12)."""

    flags: int
    crc32: int
    compressed_size: int
    size: int
    name_length: int
    local_header_offset: int

    def pack(self) -> bytes:
        return _CENTRAL.pack(
            _CENTRAL_SIGNATURE,
            _VERSION,  # version made by
            _VERSION,  # version needed to extract
            self.flags,
            0,  # compression: stored
            _DOS_TIME,
            _DOS_DATE,
            self.crc32,
            self.compressed_size,
            self.size,
            self.name_length,
            0,  # extra field length
            0,  # comment length
            0,  # disk number start
            0,  # internal attributes
            0,  # external attributes
            self.local_header_offset,
        )


class DataDescriptor(NamedTuple):
    """The CRC and sizes written after a streamed entry (APPNOTE 4.3.9)."""

    crc32: int
    compressed_size: int
    size: int

    def pack(self) -> bytes:
        return _DESCRIPTOR.pack(_DESCRIPTOR_SIGNATURE, self.crc32, self.compressed_size, self.size)


class EndOfCentralDirectory(NamedTuple):
    """The end of central directory record (APPNOTE 4.3.16)."""

    entries: int
    directory_size: int
    directory_offset: int

    def pack(self) -> bytes:
        return _END.pack(
            _END_SIGNATURE,
            0,  # number of this disk
            0,  # disk where the central directory starts
            self.entries,  # entries on this disk
            self.entries,  # entries in total
            self.directory_size,
            self.directory_offset,
            0,  # comment length
        )


def zip_overhead(manifest: bytes) -> int:
    """Bytes of an export ZIP that are not padding, for a given manifest."""
    names = len(MANIFEST_NAME) + len(PADDING_NAME)
    return 2 * _LOCAL.size + 2 * _CENTRAL.size + 2 * names + len(manifest) + _DESCRIPTOR.size + _END.size


class ExportFile:
    """Streams an export file of exactly ``size`` bytes without holding it in memory.

    When ``size`` allows it (at least the ZIP overhead, below 4 GiB) the file is a valid ZIP
    whose ``manifest.json`` lets the emulator recognise it on upload; otherwise it is the
    manifest JSON line followed by padding, cut to ``size``.
    """

    def __init__(self, manifest: Mapping[str, Any], size: int, block: bytes) -> None:
        self.manifest = json.dumps(manifest, sort_keys=True).encode("utf-8")
        self.size = max(int(size), 0)
        self.block = block
        overhead = zip_overhead(self.manifest)
        self.is_zip = overhead <= self.size < 0xFFFFFFFF
        self.padding = self.size - overhead if self.is_zip else 0

    def _padding_chunks(self, length: int) -> Iterator[memoryview]:
        view = memoryview(self.block)
        while length > 0:
            piece = view[: min(length, len(view))]
            length -= len(piece)
            yield piece

    def chunks(self, limit: int | None = None) -> Iterator[bytes | memoryview]:
        """The file's bytes in pieces; with ``limit``, only its first ``limit`` bytes."""
        remaining = self.size if limit is None else min(limit, self.size)
        for piece in self._pieces():
            if remaining <= 0:
                return
            if len(piece) > remaining:
                piece = piece[:remaining]
            remaining -= len(piece)
            yield piece

    def _pieces(self) -> Iterator[bytes | memoryview]:
        if not self.is_zip:
            head = self.manifest + b"\n"
            yield head[: self.size]
            yield from self._padding_chunks(self.size - min(len(head), self.size))
            return
        manifest, manifest_crc = self.manifest, zlib.crc32(self.manifest)
        m_name, p_name = MANIFEST_NAME.encode(), PADDING_NAME.encode()
        yield LocalHeader(0, manifest_crc, len(manifest), len(manifest), len(m_name)).pack()
        yield m_name
        yield manifest
        padding_offset = _LOCAL.size + len(m_name) + len(manifest)
        # The padding's CRC is known only once it is streamed: zeros here, a descriptor after.
        yield LocalHeader(_FLAG_DESCRIPTOR, 0, 0, 0, len(p_name)).pack()
        yield p_name
        crc = 0
        for piece in self._padding_chunks(self.padding):
            crc = zlib.crc32(piece, crc)
            yield piece
        yield DataDescriptor(crc, self.padding, self.padding).pack()
        central_offset = padding_offset + _LOCAL.size + len(p_name) + self.padding
        central_offset += _DESCRIPTOR.size
        central = CentralHeader(0, manifest_crc, len(manifest), len(manifest), len(m_name), 0).pack() + m_name
        central += (
            CentralHeader(_FLAG_DESCRIPTOR, crc, self.padding, self.padding, len(p_name), padding_offset).pack()
            + p_name
        )
        yield central
        yield EndOfCentralDirectory(2, len(central), central_offset).pack()


def read_manifest(content: bytes) -> dict[str, Any] | None:
    """The manifest of an emulator export file, or ``None`` for any other file."""
    manifest: Any = None
    if content[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(BytesIO(content)) as archive:
                manifest = json.loads(archive.read(MANIFEST_NAME))
        except (zipfile.BadZipFile, KeyError, ValueError):
            return None
    elif content[:1] == b"{":
        try:
            manifest = json.loads(content.split(b"\n", 1)[0])
        except ValueError:
            return None
    if isinstance(manifest, dict) and manifest.get("emulator") == "dataqc":
        return manifest
    return None


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """``multipart/form-data`` fields: name -> (file name or None, bytes)."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        raise ValueError("the body is not multipart/form-data")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    fields: dict[str, tuple[str | None, bytes]] = {}
    parts = (b"\r\n" + body).split(delimiter)
    if len(parts) < 3:
        raise ValueError("the multipart body has no parts")
    for part in parts[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a multipart part has no header block")
        disposition = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                disposition[name.strip()] = value.strip()
        field_name = disposition.get_param("name", header="content-disposition")
        if isinstance(field_name, str):
            fields[field_name] = (disposition.get_filename(), content)
    return fields
