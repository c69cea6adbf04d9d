"""The connection's bounds, fed bytes in memory: header size (431), body size (413, and no handler
ever runs on a cut body), pipelining depth, answers held back while the client does not read,
deadlines closed by the sweeper, the read buffer's size, and the JSON Content-Type rule."""

from __future__ import annotations

import asyncio

from berth.api.application import Application, Limits
from berth.api.connection import _READ_BUFFER, HttpConnection
from berth.api.http import Request, Response
from berth.api.router import Router, route
from berth.security.identity import Identity
from tests.unit.api.test_connection_bytes import MemoryTransport

ran: list[str] = []


def record(req: Request) -> Response:
    ran.append(f"{req.method} {req.path} {len(req.body)}")
    return Response.text("ok")


async def json_handler(req: Request) -> Response:
    return Response.json({"got": req.json_body()})


def make(limits: Limits | None = None) -> tuple[HttpConnection, MemoryTransport, Application]:
    router = Router([route("GET", "/r", record, action="test.route"), route("POST", "/r", record, action="test.route"), route("POST", "/json", json_handler, action="test.route")])
    app = Application(router, server="t", limits=limits)
    conn = HttpConnection(app, lambda t: Identity("unix", user="u", uid=1))
    t = MemoryTransport()
    conn.connection_made(t)
    return conn, t, app


def test_header_block_over_the_limit_is_431_and_closed():
    async def main() -> MemoryTransport:
        conn, t, _ = make(Limits(max_header_bytes=4096))
        conn.data_received(b"GET /r HTTP/1.1\r\nX-Big: ")
        for _ in range(10):
            conn.data_received(b"a" * 1024)  # never finished: the limit cuts it while it comes
        conn.data_received(b"\r\n\r\n")
        return t

    t = asyncio.run(main())
    assert t.out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large") and t.closed


def test_a_body_over_the_limit_never_reaches_a_handler():
    """413, and the rest of what arrived in the same read (the end of that body, another request)
    is not parsed or dispatched."""
    ran.clear()

    async def main() -> MemoryTransport:
        conn, t, _ = make(Limits(max_body=100))
        conn.data_received(b"POST /r HTTP/1.1\r\nContent-Length: 200\r\n\r\n" + b"x" * 200
                           + b"GET /r HTTP/1.1\r\n\r\n")
        await asyncio.sleep(0.01)
        return t

    t = asyncio.run(main())
    assert t.out.startswith(b"HTTP/1.1 413") and t.closed
    assert ran == []


def test_pipelining_is_bounded_and_resumes():
    ran.clear()

    async def main() -> tuple[bool, bool]:
        conn, t, _ = make(Limits(pipeline=4))
        conn.pause_writing()  # the client reads nothing: no request runs, parsed ones wait
        conn.data_received(b"GET /r HTTP/1.1\r\n\r\n" * 6)
        paused = not t.reading
        conn.resume_writing()
        return paused, t.reading

    paused, reading = asyncio.run(main())
    assert paused and reading
    assert len(ran) == 6


def test_answers_wait_while_the_client_does_not_read():
    ran.clear()

    async def main() -> int:
        conn, t, _ = make()
        conn.pause_writing()
        conn.data_received(b"GET /r HTTP/1.1\r\n\r\n" * 3)
        return len(ran)

    assert asyncio.run(main()) == 0


def test_sweeper_closes_a_slow_loris_and_an_idle_connection():
    async def main() -> tuple[bool, bool, bool]:
        conn, t, app = make(Limits(header_timeout=0.05, idle_timeout=0.05))
        busy = HttpConnection(app, lambda t: Identity("unix", user="u", uid=1))
        bt = MemoryTransport()
        busy.connection_made(bt)
        conn.data_received(b"GET /r HTTP/1.1\r\nX-Slow: ")  # never ends
        idle = HttpConnection(app, lambda t: Identity("unix", user="u", uid=1))
        it = MemoryTransport()
        idle.connection_made(it)
        idle.data_received(b"GET /r HTTP/1.1\r\n\r\n")  # answered, then idle
        await asyncio.sleep(0.1)
        busy.data_received(b"GET /r HTTP/1.1\r\n\r\n")  # a fresh request: a new deadline
        app.sweep()
        return t.closed, it.closed, bt.closed

    slow_closed, idle_closed, busy_closed = asyncio.run(main())
    assert slow_closed and idle_closed and not busy_closed


def test_read_buffer_starts_small_grows_for_bodies_and_shrinks_when_idle():
    async def main() -> tuple[int, int, int]:
        conn, t, _ = make()
        first = len(conn.get_buffer(-1))
        body = b"x" * 100_000
        data = b"POST /r HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        grown = 0
        while data:
            buf = conn.get_buffer(-1)
            n = min(len(buf), len(data))
            buf[:n] = data[:n]
            data = data[n:]
            conn.buffer_updated(n)
            grown = max(grown, len(buf))
        buf = conn.get_buffer(-1)
        buf[:1] = b"\r"  # any read after the answer: the buffer goes back to its small size
        conn.buffer_updated(0)
        return first, grown, len(conn.get_buffer(-1))

    first, grown, after = asyncio.run(main())
    assert first == _READ_BUFFER and grown > _READ_BUFFER and after == _READ_BUFFER


def test_json_body_needs_json_content_type():
    async def main(ct: bytes) -> bytes:
        conn, t, _ = make()
        conn.data_received(b"POST /json HTTP/1.1\r\nContent-Length: 2\r\n" + ct + b"\r\n{}")
        await asyncio.sleep(0.01)
        return bytes(t.out)

    refused = asyncio.run(main(b"Content-Type: text/plain\r\n"))
    assert refused.startswith(b"HTTP/1.1 400")
    assert b"unsupported Content-Type header (text/plain): must be 'application/json'" in refused
    assert asyncio.run(main(b"")).startswith(b"HTTP/1.1 400")
    assert asyncio.run(main(b"Content-Type: application/json; charset=utf-8\r\n")).startswith(b"HTTP/1.1 200")


def test_websocket_origin_must_be_the_host():
    import pytest

    from berth.api.websocket import check_origin
    from berth.errors import Forbidden

    check_origin({"host": "127.0.0.1:2375"})  # no Origin: not a browser
    check_origin({"host": "127.0.0.1:2375", "origin": "http://127.0.0.1:2375"})
    check_origin({"host": "berth.example", "origin": "https://berth.example"}, tls=True)
    for origin in ("http://evil.example", "http://127.0.0.1:8080", "null", "file://", "http://127.0.0.1:2375@evil"):
        with pytest.raises(Forbidden):
            check_origin({"host": "127.0.0.1:2375", "origin": origin})


def test_pipelined_bodies_are_bounded_in_bytes_too():
    """Behind a request that runs long, pipelined bodies stop being read once 4 MiB wait."""
    async def main() -> tuple[bool, int]:
        conn, t, _ = make(Limits(pipeline=64))
        conn.pause_writing()  # nothing runs: everything parsed waits in the queue
        body = b"x" * (1 << 20)
        one = b"POST /r HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        for _ in range(8):
            if t.reading:
                conn.data_received(one)
        return t.reading, conn._queued_bytes

    reading, queued = asyncio.run(main())
    assert not reading and queued <= 5 << 20


def test_a_client_that_never_reads_is_closed_after_the_idle_time():
    async def main() -> bool:
        conn, t, app = make(Limits(idle_timeout=0.05))
        conn.data_received(b"GET /r HTTP/1.1\r\n\r\n")
        conn.pause_writing()
        conn.data_received(b"GET /r HTTP/1.1\r\n\r\n" * 3)
        await asyncio.sleep(0.1)
        app.sweep()
        return t.closed

    assert asyncio.run(main())


def test_an_empty_upload_does_not_leave_a_large_buffer():
    async def main() -> int:
        router = Router([route("POST", "/up", record, action="test.route", stream_body=True)])
        app = Application(router, server="t")
        conn = HttpConnection(app, lambda t: Identity("unix", user="u", uid=1))
        conn.connection_made(MemoryTransport())
        data = b"POST /up HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        buf = conn.get_buffer(-1)
        buf[:len(data)] = data
        conn.buffer_updated(len(data))
        await asyncio.sleep(0.01)
        return len(conn.get_buffer(-1))

    assert asyncio.run(main()) == _READ_BUFFER
