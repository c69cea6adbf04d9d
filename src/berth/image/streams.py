"""Byte streams for layers: hashing while reading, and transparent gzip/zstd decompression."""

from __future__ import annotations

import gzip
import hashlib
from typing import BinaryIO, cast

from berth.errors import InvalidParameter

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class HashingReader:
    """Reads from ``f`` while computing the sha256 and the count of the bytes read."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._h = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._h.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


class PeekReader:
    """A reader that can look at its first bytes without consuming them."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._head = b""

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            chunk = self._f.read(n - len(self._head))
            if not chunk:
                break
            self._head += chunk
        return self._head[:n]

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._f.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            if len(data) < n:
                data += self._f.read(n - len(data))
            return data
        return self._f.read(n)


def decompressed(f: BinaryIO) -> BinaryIO:
    """``f`` itself when it is a plain tar, else a decompressing reader (gzip or zstd)."""
    return open_layer(f)[0]


def open_layer(f: BinaryIO) -> tuple[BinaryIO, HashingReader | None]:
    """(uncompressed reader, hashing reader of the compressed bytes or None when not compressed).

    For a plain tar the compressed digest *is* the uncompressed one, so it is computed once."""
    p = PeekReader(f)
    head = p.peek(4)
    if head[:2] == GZIP_MAGIC or head == ZSTD_MAGIC:
        raw = HashingReader(cast(BinaryIO, p))
        if head[:2] == GZIP_MAGIC:
            return cast(BinaryIO, gzip.GzipFile(fileobj=cast(BinaryIO, raw), mode="rb")), raw
        import zstandard

        return cast(BinaryIO, zstandard.ZstdDecompressor().stream_reader(cast(BinaryIO, raw),
                                                                          read_across_frames=True)), raw
    if head[:3] == b"BZh" or head == b"\xfd7zX":
        raise InvalidParameter("layer is compressed with bzip2 or xz, which berth does not support "
                               "(use gzip, zstd or no compression)")
    return cast(BinaryIO, p), None
