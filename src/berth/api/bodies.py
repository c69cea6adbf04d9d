"""Request bodies read as they arrive, and chunked responses written as the handler makes them,
each bounded: reading pauses while more than ``BODY_HIGH_WATER`` waits, writing waits while the
client does not read."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from berth.api.rawbody import SocketBody
from berth.errors import BerthError

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
    """A request body read as it arrives (image load, import, archive upload, build context).

    For a ``body_in_thread`` route on a plain socket the connection hands the body over ``raw``
    (``rawbody.SocketBody``): a worker thread takes it with ``take_reader`` and reads the socket
    itself. Iterating such a body, or discarding it, reads it in a thread of its own."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None  # the raw pump waits for the consumer
        self._raw: SocketBody | None = None
        self._raw_taken = False
        self._on_take: Callable[[], None] | None = None
        self._failure: BerthError | None = None  # why the pump could not read the body (a 400)
        self.discarded = -1  # >= 0 once the handler answered early and the rest is thrown away

    def go_raw(self, raw: SocketBody, on_take: Callable[[], None]) -> None:
        """The connection stopped reading: the body is ``raw``'s to read (``on_take``: when a thread
        starts to)."""
        self._raw, self._on_take = raw, on_take
        if self.discarded >= 0:  # answered already (a refusal before the handler ran)
            self._pump()

    def take_reader(self) -> SocketBody | None:
        """The body as a file object for one worker thread, when it is read from the socket and
        nothing has read it yet; else None (then iterate)."""
        if self._raw is None or self._raw_taken:
            return None
        return self._claim()

    def _claim(self) -> SocketBody:
        """The raw body, for the one thread that reads it from now on."""
        assert self._raw is not None
        self._raw_taken = True
        if self._on_take is not None:
            self._on_take()
        return self._raw

    def discard(self) -> None:
        """The handler answered before reading everything: drop what is buffered and what comes."""
        self.discarded = 0
        self._chunks.clear()
        self._size = 0
        self._make_room()
        raw = self._raw
        if raw is not None:
            if raw.finished:  # failed: the connection cannot be read further
                if self._conn.transport is not None:
                    self._conn.transport.close()
            else:  # whoever read it before has stopped (the handler has returned)
                self._pump()
            return
        if self._paused:
            self._paused = False
            self._conn.resume_reading("body")

    def feed(self, data: bytes) -> None:
        if self.discarded >= 0:
            self.discarded += len(data)
            if self.discarded > MAX_DISCARD:
                if self._raw is not None:
                    self._raw.abort()  # the close below waits for unsent output: the reader would not
                if self._conn.transport is not None:
                    self._conn.transport.close()
            return
        self._chunks.append(data)
        self._size += len(data)
        if not self._paused and self._size > BODY_HIGH_WATER and self._raw is None:
            self._paused = True
            self._conn.pause_reading("body")
        self._wake()

    def end(self) -> None:
        """The body is complete, or the connection is gone (a raw read in progress stops)."""
        self._eof = True
        if self._raw is not None and not self._raw.finished:
            if self._raw_taken:
                self._raw.abort()  # the reading thread fails at once, and lets go of the socket
            else:
                self._raw.close()
        self._make_room()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _make_room(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    def _pump(self) -> None:
        """Read the raw body in a thread into this stream (for iteration, or to drop it)."""
        raw = self._claim()
        loop = asyncio.get_running_loop()

        def run() -> None:
            failure = None
            try:
                while chunk := raw.read(1 << 20):
                    arrive = self._arrive(chunk)
                    try:
                        done = asyncio.run_coroutine_threadsafe(arrive, loop)
                    except RuntimeError:  # the loop is closed: the daemon has stopped
                        arrive.close()
                        return
                    done.result()
            except BerthError as exc:  # a malformed body: the iterating handler fails with it
                failure = exc
            except Exception:  # noqa: BLE001 - the client is gone: the reader has told the connection
                pass
            try:
                loop.call_soon_threadsafe(self._pumped, failure)
            except RuntimeError:  # the loop is closed: the daemon has stopped
                pass

        threading.Thread(target=run, name="berth-body", daemon=True).start()

    def _pumped(self, failure: BerthError | None) -> None:
        self._failure = failure
        self.end()

    async def _arrive(self, chunk: bytes) -> None:
        self.feed(chunk)
        while self._size > BODY_HIGH_WATER and not self._eof and self.discarded < 0:
            self._room = asyncio.get_running_loop().create_future()
            await self._room

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._raw is not None and not self._raw_taken:
            self._pump()
        while True:
            while not self._chunks and not self._eof:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            if not self._chunks:
                if self._failure is not None:
                    raise self._failure
                return
            chunk = self._chunks.popleft()
            self._size -= len(chunk)
            if self._size < BODY_HIGH_WATER // 2:
                self._make_room()
                if self._paused:
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
