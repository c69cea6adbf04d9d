"""Byte streams for layers: hashing while reading, and transparent gzip/zstd decompression."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterable
from typing import Any, BinaryIO, cast

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


class ChunkReader:
    """An iterator of byte chunks as a file whose reads may be short, as a raw file's (the tar
    readers loop): a generated tar read by another without being staged anywhere."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks, self.rest = iter(chunks), b""

    def read(self, n: int = -1) -> bytes:
        while not self.rest:
            nxt = next(self.chunks, None)
            if nxt is None:
                return b""
            self.rest = nxt
        out, self.rest = (self.rest, b"") if n < 0 or n >= len(self.rest) else (self.rest[:n], self.rest[n:])
        return out


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


class Gunzip:
    """gzip decompression read in large pieces (the gzip module reads its source 8 KiB at a time on
    Python 3.11, a Python call per 8 KiB: a third of a pull's time went there), members one after
    another as gzip allows, NUL padding after the last tolerated as the gzip module does. Output is
    bounded by what is asked: a small compressed input cannot expand into memory all at once.

    A read may return fewer bytes than asked (as a raw file's does), so a large read hands zlib's
    output on as it is, uncopied; only what a small read (a tar header) leaves over is kept here."""

    SOURCE_CHUNK = 1 << 18
    MIN_OUT = 1 << 16  # decompressed at least at a time, so small reads do not copy zlib's input tail each

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._d = zlib.decompressobj(31)
        self._buf = b""  # output decompressed beyond a small read
        self._pos = 0
        self._left = b""  # compressed bytes after the end of a member
        self._started = False  # the current member has begun
        self._done = False

    def _step(self, want: int) -> bytes:
        """Decompress one piece of input into at most ``want`` bytes (b"" is not the end: see _done)."""
        if self._d.unconsumed_tail:
            data = self._d.unconsumed_tail
        elif self._left:
            data, self._left = self._left, b""
        else:
            data = self._f.read(self.SOURCE_CHUNK)
            if not data:
                if self._started:
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
                self._done = True
                return b""
        if not self._started and not data.strip(b"\0"):
            return b""  # padding between or after members
        self._started = True
        try:
            out = self._d.decompress(data, want)
        except zlib.error as exc:
            raise gzip.BadGzipFile(f"invalid gzip data: {exc}") from None
        if self._d.eof:
            self._left = self._d.unused_data
            self._d = zlib.decompressobj(31)
            self._started = False
        return out

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = []
            while chunk := self.read(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        if n == 0:
            return b""
        if self._pos < len(self._buf):
            out = self._buf[self._pos:self._pos + n]
            self._pos += len(out)
            return out
        while not self._done:
            out = self._step(max(n, self.MIN_OUT))
            if len(out) > n:
                self._buf, self._pos = out, n
                return out[:n]
            if out:
                return out
        return b""


def decompressed(f: BinaryIO) -> BinaryIO:
    """``f`` itself when it is a plain tar, else a decompressing reader (gzip or zstd)."""
    return open_layer(f)[0]


def open_layer(f: BinaryIO, hashed: Any = None) -> tuple[BinaryIO, Any]:
    """(uncompressed reader, hashing reader of the compressed bytes or None when not compressed).

    For a plain tar the compressed digest *is* the uncompressed one, so it is computed once.
    ``hashed``: ``f`` hashes what is read from it already (``digest``, ``size``, ``drain``), so the
    compressed bytes are not hashed twice."""
    p = PeekReader(f)
    head = p.peek(4)
    if head[:2] == GZIP_MAGIC or head == ZSTD_MAGIC:
        raw = hashed if hashed is not None else HashingReader(cast(BinaryIO, p))
        source = cast(BinaryIO, p) if hashed is not None else cast(BinaryIO, raw)
        if head[:2] == GZIP_MAGIC:
            return cast(BinaryIO, Gunzip(source)), raw
        import zstandard

        return cast(BinaryIO, zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)), raw
    if head[:3] == b"BZh" or head == b"\xfd7zX":
        raise InvalidParameter("layer is compressed with bzip2 or xz, which berth does not support "
                               "(use gzip, zstd or no compression)")
    return cast(BinaryIO, p), None
