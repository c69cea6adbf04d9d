"""The connection state machine fed bytes in memory (no sockets): keep-alive, pipelining, errors,
chunked streams, upgrade with a body, hijack and half-close."""

from __future__ import annotations

import asyncio

import pytest

from berth.api.application import Application
from berth.api.connection import HttpConnection
from berth.api.http import Request, Response
from berth.api.router import Router, route
from berth.errors import Conflict
from berth.security.identity import Identity


class MemoryTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.eof_written = False
        self.reading = True

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


async def slow(req: Request) -> Response:
    await asyncio.sleep(0.01)
    return Response.text("slow")


async def boom(req: Request) -> Response:
    raise RuntimeError("secret internals")


def conflict(req: Request) -> Response:
    raise Conflict("name is taken")


async def stream(req: Request) -> None:
    w = await req.connection.start_stream()
    await w.write(b'{"a":1}\n')
    await w.write(b'{"b":2}\n')
    await w.close()


async def echo_hijack(req: Request) -> None:
    s = await req.connection.hijack()
    await s.write(b"body=" + req.body + b";")
    while True:
        data = await s.read()
        if not data:
            break
        await s.write(data.upper())
    await s.write(b"<eof>")
    s.send_eof()


def make() -> tuple[HttpConnection, MemoryTransport]:
    router = Router([route("GET", "/fast", lambda r: Response.text("fast"), action="test.route"), route("GET", "/slow", slow, action="test.route"),
                     route("GET", "/boom", boom, action="test.route"), route("POST", "/conflict", conflict, action="test.route"),
                     route("GET", "/stream", stream, action="test.route"), route("POST", "/hijack", echo_hijack, action="test.route")])
    conn = HttpConnection(Application(router, server="t"), lambda t: Identity("unix", user="u", uid=1))
    t = MemoryTransport()
    conn.connection_made(t)
    return conn, t


def run(coro_fn):  # type: ignore[no-untyped-def]
    return asyncio.run(coro_fn())


def test_pipelined_requests_answer_in_order():
    async def main() -> bytes:
        conn, t = make()
        conn.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.05)
        return bytes(t.out)

    out = run(main)
    assert out.index(b"slow") < out.index(b"fast")
    assert out.count(b"HTTP/1.1 200 OK") == 2


def test_bug_is_500_without_internals_and_kind_maps_to_status():
    async def main() -> bytes:
        conn, t = make()
        conn.data_received(b"GET /boom HTTP/1.1\r\n\r\nPOST /conflict HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        await asyncio.sleep(0.02)
        return bytes(t.out)

    out = run(main)
    assert b"HTTP/1.1 500" in out and b"secret internals" not in out and b"Traceback" not in out
    assert b"HTTP/1.1 409 Conflict" in out and b'{"message": "name is taken"}' in out


def test_malformed_request_gets_400_and_close():
    async def main() -> MemoryTransport:
        conn, t = make()
        conn.data_received(b"NOT HTTP AT ALL\r\n\r\n")
        return t

    t = run(main)
    assert t.out.startswith(b"HTTP/1.1 400") and t.closed


def test_connection_close_honoured():
    async def main() -> MemoryTransport:
        conn, t = make()
        conn.data_received(b"GET /fast HTTP/1.1\r\nConnection: close\r\n\r\n")
        return t

    t = run(main)
    assert b"Connection: close" in t.out and t.closed


def test_chunked_stream():
    async def main() -> bytes:
        conn, t = make()
        conn.data_received(b"GET /stream HTTP/1.1\r\n\r\n")
        await asyncio.sleep(0.02)
        return bytes(t.out)

    out = run(main)
    assert b"Transfer-Encoding: chunked" in out
    assert out.endswith(b'8\r\n{"a":1}\n\r\n8\r\n{"b":2}\n\r\n0\r\n\r\n')


@pytest.mark.parametrize("split", [1, 7, 1000])
def test_upgrade_with_body_then_raw_stream_and_half_close(split: int):
    """exec start sends a JSON body *and* Upgrade: the body is taken from the raw bytes, whatever
    follows is stdin; our EOF arrives after the client's half-close."""
    request = (b"POST /hijack HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
               b"Content-Length: 9\r\n\r\n" + b'{"Tty":1}' + b"abc")

    async def main() -> MemoryTransport:
        conn, t = make()
        for i in range(0, len(request), split):
            conn.data_received(request[i:i + split])
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        conn.data_received(b"def")
        await asyncio.sleep(0.01)
        assert conn.eof_received() is True  # keep our side open after the client's half-close
        await asyncio.sleep(0.01)
        return t

    t = run(main)
    head, _, raw = bytes(t.out).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED")
    assert b"Upgrade: tcp" in head and b"application/vnd.docker.raw-stream" in head
    assert raw == b'body={"Tty":1};ABCDEF<eof>'
    assert t.eof_written


def test_peer_disconnect_cancels_handler():
    async def main() -> bool:
        conn, t = make()
        conn.data_received(b"GET /slow HTTP/1.1\r\n\r\n")
        await asyncio.sleep(0)
        conn.connection_lost(None)
        await asyncio.sleep(0.03)
        return bool(t.out)

    assert run(main) is False
