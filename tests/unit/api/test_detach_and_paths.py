"""Detach keys as the docker CLI spells them, the held-back matching, and percent-decoded paths."""

from __future__ import annotations

import asyncio

import pytest

from berth.api.hijack import Detached, DetachReader, parse_detach_keys
from berth.api.wire import decode_path as _decode_path


def test_parse_detach_keys():
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-@,ctrl-_,a,DEL") == b"\x00\x1f" + b"a\x7f"
    for bad in ("ctrl-1", "ctrl-", "", "ab", "ctrl-p,,ctrl-q", "é"):
        with pytest.raises(ValueError):
            parse_detach_keys(bad)


class _Source:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    async def read(self, n: int = 65536) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    at_eof = False


def _drain(chunks: list[bytes], keys: bytes = b"\x10\x11") -> tuple[bytes, bool]:
    async def go() -> tuple[bytes, bool]:
        r = DetachReader(_Source(chunks), keys)  # type: ignore[arg-type]
        out = b""
        try:
            while data := await r.read():
                out += data
        except Detached:
            return out, True
        return out, False
    return asyncio.run(go())


def test_detach_reader():
    assert _drain([b"ab", b"\x10", b"\x11", b"never"]) == (b"ab", True)
    assert _drain([b"a\x10b\x10\x10\x11c"]) == (b"a\x10b\x10", True)  # a broken start is passed on
    assert _drain([b"x\x10"]) == (b"x\x10", False)  # held back, then given at the end of input
    assert _drain([b"\x10\x11"], keys=b"") == (b"\x10\x11", False)


def test_decode_path():
    assert _decode_path(b"/networks/test%2001") == "/networks/test 01"
    assert _decode_path(b"/a+b") == "/a+b"
    assert _decode_path(b"/images/a%2Fb/json") == "/images/a/b/json"
    assert _decode_path(b"/x%ff") is None
