"""Docker's stdcopy framing: a container's output without a TTY goes to the client multiplexed, each
chunk behind an 8-byte header (the stream: 1 stdout, 2 stderr; the length, big-endian). With a TTY
the output is raw. The WebSocket attach takes the payloads out again (it never multiplexes)."""

from __future__ import annotations

import struct

STDOUT, STDERR = 1, 2
_FRAME = struct.Struct(">BxxxI")


def frame(stream: int, data: bytes) -> bytes:
    return _FRAME.pack(stream, len(data)) + data


def encode(stream: int, data: bytes, tty: bool) -> bytes:
    """What the API sends of one chunk of a container's output."""
    return data if tty else frame(stream, data)


def demultiplex(chunk: bytes, pending: bytearray) -> bytes:
    """The payloads of stdcopy frames (8-byte headers) in ``pending`` + ``chunk``; an incomplete frame
    stays in ``pending``."""
    pending += chunk
    out = bytearray()
    while len(pending) >= 8:
        size = int.from_bytes(pending[4:8], "big")
        if len(pending) < 8 + size:
            break
        out += pending[8:8 + size]
        del pending[:8 + size]
    return bytes(out)
