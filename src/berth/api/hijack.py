"""The raw two-way stream a connection becomes after ``Upgrade: tcp`` (attach, exec).

Contract of ``HijackedStream``:

- ``read()`` returns the next bytes from the client, or ``b""`` once the client has half-closed its
  sending side or gone away. Half-close is ``shutdown(SHUT_WR)`` on unix and TCP sockets (what the
  docker CLI does when its stdin ends); on TLS it is the client's close_notify alert.
- ``write()`` sends bytes and waits while the transport's buffer is over its high-water mark, so a
  slow client slows the producer instead of growing memory.
- ``send_eof()`` is our half-close: ``shutdown(SHUT_WR)`` on unix and TCP, after which the client
  may still send. asyncio's TLS transport cannot send close_notify and keep reading, so on TLS
  ``send_eof()`` flushes and closes the connection; the client sees the same end of stream.
- ``close()`` ends both directions. Every hijacked stream is closed by the connection when the
  handler that took it returns, so no stream outlives its owner.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

_READ_HIGH_WATER = 1 << 20  # bytes buffered from the client before we stop reading the socket


class HijackedStream:
    def __init__(self, transport: asyncio.Transport, initial: bytes = b"") -> None:
        self._transport = transport
        self._buffer = bytearray(initial)
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._paused = False
        self._closed = False

    # --- fed by the connection -------------------------------------------------------------
    def feed_data(self, data: bytes | memoryview) -> None:
        self._buffer += data
        if not self._paused and len(self._buffer) > _READ_HIGH_WATER:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def connection_lost(self) -> None:
        self._eof = True
        self._closed = True
        self._can_write.set()
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # --- used by the handler ---------------------------------------------------------------
    async def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes from the client; ``b""`` at its half-close or disconnect."""
        while not self._buffer and not self._eof:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        if self._paused and len(self._buffer) < _READ_HIGH_WATER // 2:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        """Send ``data``; raises ConnectionResetError when the client has gone away."""
        if self._closed or self._transport.is_closing():
            raise ConnectionResetError("client disconnected")
        self._transport.write(data)
        await self._can_write.wait()

    @property
    def can_half_close(self) -> bool:
        return self._transport.can_write_eof()

    def send_eof(self) -> None:
        """Half-close our side (see the module contract for TLS)."""
        if self._closed or self._transport.is_closing():
            return
        if self._transport.can_write_eof():
            self._transport.write_eof()
        else:
            self.close()

    async def linger(self, timeout: float = 2.0) -> None:
        """After our half-close: read and drop what the client still sends until it closes too (or
        ``timeout``). Closing a socket with unread input makes the kernel answer with a reset, which
        the docker CLI reports as "connection reset by peer" and exit code 1 (a terminal's reply to a
        cursor query can arrive just after an exec's last output)."""
        if self._closed:
            return
        try:
            async with asyncio.timeout(timeout):
                while await self.read(65536):
                    pass
        except TimeoutError:
            pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.close()

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buffer


# ---- detach keys ------------------------------------------------------------------------------

DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q
_CTRL = "@abcdefghijklmnopqrstuvwxyz[\\]^_"  # ctrl-@ is 0, ctrl-a 1, ... ctrl-_ 31


def parse_detach_keys(spec: str) -> bytes:
    """``ctrl-p,ctrl-q`` → b"\\x10\\x11", with the docker CLI's rules: comma-separated keys, each a
    single character, ``ctrl-`` and one of ``@a-z[\\]^_``, or ``DEL``. ValueError otherwise."""
    codes = bytearray()
    for key in spec.split(","):
        if len(key) == 1 and key.isascii():
            codes.append(ord(key))
        elif key == "DEL":
            codes.append(127)
        elif key.startswith("ctrl-") and len(key) == 6 and key[5] in _CTRL:
            codes.append(_CTRL.index(key[5]))
        else:
            raise ValueError(f"Unknown character: '{key}'")
    return bytes(codes)


class Readable(Protocol):
    async def read(self, n: int = 65536) -> bytes: ...


class Detached(ConnectionResetError):
    """The client typed its detach keys: the session ends, the process goes on."""

    def __init__(self) -> None:
        super().__init__("read escape sequence")


class DetachReader:
    """A hijacked stream's input with the detach keys taken out: bytes that begin the sequence are
    held back until it completes (then ``read`` raises ``Detached`` and ``detached`` is set) or
    breaks (then they are passed on). ``keys`` empty: nothing is watched."""

    def __init__(self, source: Readable, keys: bytes) -> None:
        self.source = source
        self.keys = keys
        self.detached = asyncio.Event()
        self._matched = 0

    async def read(self, n: int = 65536) -> bytes:
        while True:
            if self.detached.is_set():
                raise Detached()
            data = await self.source.read(n)
            if not self.keys:
                return data
            if not data:  # end of input: what was held back is input after all
                held, self._matched = self.keys[:self._matched], 0
                return held
            out = bytearray()
            for b in data:
                if b == self.keys[self._matched]:
                    self._matched += 1
                    if self._matched == len(self.keys):
                        self.detached.set()
                        break
                    continue
                if self._matched:
                    out += self.keys[:self._matched]
                    self._matched = 0
                    if b == self.keys[0]:
                        self._matched = 1
                        continue
                out.append(b)
            if out:
                return bytes(out)  # a detach after these bytes is raised by the next read
            if self.detached.is_set():
                raise Detached()
