"""Request bodies read as they arrive, and chunked responses written as the handler makes them,
each bounded: reading pauses while more than ``BODY_HIGH_WATER`` waits, writing waits while the
client does not read."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

# After an early answer (a 400 before the whole upload arrived), this much of the rest of the body is
# read and dropped so that the client, still sending, can read the answer instead of a broken pipe.
MAX_DISCARD = 64 << 20
BODY_HIGH_WATER = 1 << 20


class Conn(Protocol):
    """What a body or a writer needs of its connection."""

    transport: asyncio.Transport | None

    def pause_reading(self, why: str) -> None: ...

    def resume_reading(self, why: str) -> None: ...

    def count_sent(self, n: int) -> None: ...

    async def drain(self) -> None: ...


class BodyStream:
    """A request body read as it arrives (image load, import, archive upload)."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.discarded = -1  # >= 0 once the handler answered early and the rest is thrown away

    def discard(self) -> None:
        """The handler answered before reading everything: drop what is buffered and what comes."""
        self.discarded = 0
        self._chunks.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            self._conn.resume_reading("body")

    def feed(self, data: bytes) -> None:
        if self.discarded >= 0:
            self.discarded += len(data)
            if self.discarded > MAX_DISCARD and self._conn.transport is not None:
                self._conn.transport.close()
            return
        self._chunks.append(data)
        self._size += len(data)
        if not self._paused and self._size > BODY_HIGH_WATER:
            self._paused = True
            self._conn.pause_reading("body")
        self._wake()

    def end(self) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            while not self._chunks and not self._eof:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            if not self._chunks:
                return
            chunk = self._chunks.popleft()
            self._size -= len(chunk)
            if self._paused and self._size < BODY_HIGH_WATER // 2:
                self._paused = False
                self._conn.resume_reading("body")
            yield chunk


class ChunkedWriter:
    def __init__(self, conn: Conn, head_only: bool) -> None:
        self._conn = conn
        self._head_only = head_only
        self.closed = False

    async def write(self, data: bytes) -> None:
        if not data or self._head_only:
            return
        conn = self._conn
        if conn.transport is None or conn.transport.is_closing():
            raise ConnectionResetError("client disconnected")
        conn.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        conn.count_sent(len(data))
        await conn.drain()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        t = self._conn.transport
        if t is not None and not t.is_closing() and not self._head_only:
            t.write(b"0\r\n\r\n")
