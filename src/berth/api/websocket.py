"""WebSocket (RFC 6455) over a hijacked stream, for ``GET /containers/{id}/attach/ws``.

Only what attach needs: the handshake answer, server frames (unmasked, binary or text), and a reader
that unmasks the client's frames, answers pings, and turns a close frame into end of input.
"""

from __future__ import annotations

import base64
import hashlib
import struct

from berth.api.hijack import HijackedStream
from berth.errors import InvalidParameter

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_FRAME = 1 << 20


def accept_key(headers: dict[str, str]) -> str:
    """Sec-WebSocket-Accept for a handshake request; InvalidParameter when it is not one."""
    if "websocket" not in headers.get("upgrade", "").lower():
        raise InvalidParameter("this endpoint needs a WebSocket handshake (Upgrade: websocket)")
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except ValueError:
        raise InvalidParameter("bad Sec-WebSocket-Key") from None
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(payload: bytes, opcode: int = BINARY) -> bytes:
    """One final, unmasked server frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


class Reader:
    """The client's messages as a byte stream (``read`` like HijackedStream's): data frames are
    unmasked and concatenated; a ping is answered; a close frame (or the connection's end) is EOF."""

    def __init__(self, stream: HijackedStream) -> None:
        self.stream = stream
        self._buf = bytearray()
        self._data = bytearray()
        self._eof = False

    async def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = await self.stream.read(65536)
            if not chunk:
                return False
            self._buf += chunk
        return True

    async def _frame(self) -> tuple[int, bytes] | None:
        if not await self._fill(2):
            return None
        b0, b1 = self._buf[0], self._buf[1]
        opcode, masked, n = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
        pos = 2
        if n == 126:
            if not await self._fill(4):
                return None
            n, pos = struct.unpack_from("!H", self._buf, 2)[0], 4
        elif n == 127:
            if not await self._fill(10):
                return None
            n, pos = struct.unpack_from("!Q", self._buf, 2)[0], 10
        if n > MAX_FRAME:
            return None
        mask_len = 4 if masked else 0
        if not await self._fill(pos + mask_len + n):
            return None
        mask = bytes(self._buf[pos:pos + mask_len])
        payload = bytearray(self._buf[pos + mask_len:pos + mask_len + n])
        del self._buf[:pos + mask_len + n]
        if mask:
            for i in range(len(payload)):
                payload[i] ^= mask[i & 3]
        return opcode, bytes(payload)

    async def read(self, n: int = 65536) -> bytes:
        while not self._data and not self._eof:
            got = await self._frame()
            if got is None:
                self._eof = True
                break
            opcode, payload = got
            if opcode == CLOSE:
                self._eof = True
                await self.stream.write(frame(payload[:2], CLOSE))
            elif opcode == PING:
                await self.stream.write(frame(payload, PONG))
            elif opcode in (TEXT, BINARY, CONT):
                self._data += payload
        out = bytes(self._data[:n])
        del self._data[:n]
        return out


def demultiplex(chunk: bytes, pending: bytearray) -> bytes:
    """The payloads of stdcopy frames (8-byte headers) in ``pending`` + ``chunk``; an incomplete frame
    stays in ``pending``."""
    pending += chunk
    out = bytearray()
    while len(pending) >= 8:
        size = struct.unpack_from(">I", pending, 4)[0]
        if len(pending) < 8 + size:
            break
        out += pending[8:8 + size]
        del pending[:8 + size]
    return bytes(out)
