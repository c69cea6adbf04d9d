"""Streamed request bodies handed to a worker thread (``rawbody``), through ``HttpConnection`` on a
real unix socket: chunked and Content-Length bodies, a request pipelined right behind a body, keep-
alive after it, iteration on the loop, an early answer while the client still sends, malformed
framing, and a client that goes away mid-body (no descriptor left behind)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from berth.api.application import Application
from berth.api.bodies import BodyStream
from berth.api.connection import HttpConnection
from berth.api.http import Request, Response
from berth.api.router import Router, route
from berth.errors import InvalidParameter
from berth.security.identity import ANONYMOUS
from tests.lib.wait import until

seen: list[str] = []  # how each body was read: "thread" or "loop", or what ended it
shutdowns: list[Any] = []  # closes every connection from the server's side, as the daemon does when it stops


def _read_all(reader: Any, limit: int = -1) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    try:
        while chunk := reader.read(65536):
            h.update(chunk)
            n += len(chunk)
            if 0 <= limit <= n:
                break
    except ConnectionAbortedError:
        seen.append("aborted")
        raise
    return h.hexdigest(), n


async def digest(req: Request) -> Response:
    body = req.connection.body_stream()
    reader = body.take_reader() if isinstance(body, BodyStream) else None
    seen.append("thread" if reader is not None else "loop")
    assert reader is not None
    hexed, n = await asyncio.to_thread(_read_all, reader)
    return Response.json({"sha256": hexed, "size": n})


async def iterate(req: Request) -> Response:
    h, n = hashlib.sha256(), 0
    async for chunk in req.connection.body_stream():
        h.update(chunk)
        n += len(chunk)
    return Response.json({"sha256": h.hexdigest(), "size": n})


async def refuse(req: Request) -> Response:
    raise InvalidParameter("refused before reading")


async def part(req: Request) -> Response:
    body = req.connection.body_stream()
    assert isinstance(body, BodyStream)
    _, n = await asyncio.to_thread(_read_all, body.take_reader(), 100_000)
    return Response.json({"read": n})


async def late(req: Request) -> Response:
    await asyncio.sleep(0.3)
    body = req.connection.body_stream()
    assert isinstance(body, BodyStream)
    reader = body.take_reader()
    seen.append("late")
    await asyncio.to_thread(_read_all, reader)
    return Response.text("read")


def ping(req: Request) -> Response:
    return Response.text("pong")


def big(req: Request) -> Response:
    return Response.text("x" * 260_000)  # more than the socket takes: the rest waits in the transport


async def count(req: Request) -> Response:  # a stream_body route on the loop, for comparison
    n = 0
    async for chunk in req.connection.body_stream():
        n += len(chunk)
    return Response.json({"size": n})


@pytest.fixture
def server() -> Iterator[str]:
    a = "test.route"
    app = Application(Router([
        route("POST", "/digest", digest, body_in_thread=True, action=a), route("POST", "/iterate", iterate, body_in_thread=True, action=a),
        route("POST", "/refuse", refuse, body_in_thread=True, action=a), route("POST", "/part", part, body_in_thread=True, action=a),
        route("POST", "/late", late, body_in_thread=True, action=a), route("GET", "/ping", ping, action=a),
        route("GET", "/big", big, action=a), route("POST", "/count", count, stream_body=True, action=a)]), server="t")
    tmpdir = tempfile.mkdtemp(prefix="berth-rawbody-")
    path = os.path.join(tmpdir, "s.sock")
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        holder["server"] = await loop.create_unix_server(lambda: HttpConnection(app, lambda t: ANONYMOUS), path)
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True)
    thread.start()
    started.wait(10)
    seen.clear()
    shutdowns.clear()
    shutdowns.append(lambda: loop.call_soon_threadsafe(lambda: [c.shutdown() for c in list(app.connections)]))
    try:
        yield path
    finally:
        async def stop() -> None:
            holder["server"].close()
            await holder["server"].wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        os.unlink(path)
        os.rmdir(tmpdir)


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    return s


def _responses(s: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` answers (Content-Length bodies) read off ``s``."""
    f = s.makefile("rb")
    out = []
    for _ in range(count):
        status = int(f.readline().split()[1])
        length = 0
        while (line := f.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        out.append((status, f.read(length)))
    return out


def _chunked(data: bytes, size: int = 32768) -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(data[i:i + size]), data[i:i + size])
                    for i in range(0, len(data), size)) + b"0\r\n\r\n"


def test_a_chunked_body_read_by_a_thread_and_a_request_pipelined_behind_it(server: str) -> None:
    data = os.urandom(3 << 20)
    s = _connect(server)
    s.sendall(b"POST /digest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(data)
              + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")  # in the same bytes as the body's end
    (st1, b1), (st2, b2) = _responses(s, 2)
    assert st1 == 200 and json.loads(b1) == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert (st2, b2) == (200, b"pong")
    # keep-alive: the connection takes another upload, now with a Content-Length
    s.sendall(b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert json.loads(_responses(s, 1)[0][1]) == {"sha256": hashlib.sha256(b"hello").hexdigest(), "size": 5}
    s.close()
    assert seen == ["thread", "thread"]


def test_a_body_iterated_on_the_loop_is_read_by_a_thread_of_its_own(server: str) -> None:
    data = os.urandom(5 << 20)  # over the stream's high-water mark: the pump waits for the consumer
    s = _connect(server)
    s.sendall(b"POST /iterate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(data, 7000))
    (status, body), = _responses(s, 1)
    assert status == 200 and json.loads(body) == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    s.close()


@pytest.mark.parametrize("where", ["/refuse", "/part"])
def test_an_early_answer_reaches_a_client_that_is_still_sending(server: str, where: str) -> None:
    data = os.urandom(24 << 20)  # many socket buffers: the client is still sending when the answer goes
    s = _connect(server)
    s.sendall(f"POST {where} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode())
    sent: list[BaseException] = []

    def send() -> None:
        try:
            s.sendall(data)
        except OSError as exc:
            sent.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    (status, body), = _responses(s, 1)
    sender.join()
    assert not sent, sent  # the rest of the body was read and dropped, not refused
    if where == "/refuse":
        assert (status, json.loads(body)) == (400, {"message": "refused before reading"})
    else:
        assert status == 200 and 100_000 <= json.loads(body)["read"] < len(data)
    assert s.recv(10) == b""  # and then the connection ends
    s.close()


def test_malformed_framing_is_a_400_and_the_connection_ends(server: str) -> None:
    s = _connect(server)
    s.sendall(b"POST /digest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcdXX\r\n")
    (status, body), = _responses(s, 1)
    assert status == 400 and b"malformed chunked request body" in body
    assert s.recv(10) == b""
    s.close()


def test_a_client_gone_mid_body_leaves_no_descriptor(server: str) -> None:
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    warm = _connect(server)  # the loop's own descriptors made before counting
    warm.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    _responses(warm, 1)
    warm.close()
    time.sleep(0.1)
    before = fds()
    for _ in range(3):
        s = _connect(server)
        s.sendall(b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        until(lambda: "thread" in seen, "the body is being read")
        s.close()
        until(lambda: "aborted" in seen, "the reading thread saw the client go")
        seen.clear()
    # gone before the handler has started to read: the body's descriptor goes with the connection
    s = _connect(server)
    s.sendall(b"POST /late HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
    time.sleep(0.05)
    s.close()
    until(lambda: fds() <= before, f"the descriptor went with the connection ({fds()} open, {before} before)")
    time.sleep(0.2)
    until(lambda: fds() <= before, f"no descriptor left behind ({fds()} open, {before} before)")


def test_the_server_closing_the_connection_ends_a_read_in_progress(server: str) -> None:
    s = _connect(server)
    s.sendall(b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
    until(lambda: "thread" in seen, "the body is being read")
    shutdowns[0]()  # the client is still there, silent: only the server's close can end the read
    until(lambda: "aborted" in seen, "the reading thread stopped")
    assert s.recv(10) == b""  # the client sees the end (the reader's own descriptor does not hold it open)
    s.close()


def _send_until_refused(s: socket.socket, limit: int) -> int:
    """Send zeros until the server stops taking them (or ``limit`` bytes): how many went."""
    block, sent = bytes(1 << 20), 0
    try:
        while sent < limit:
            sent += s.send(block)
    except OSError:
        pass
    return sent


@pytest.mark.parametrize("how", ["an early answer", "the daemon stopping"])
def test_a_client_that_leaves_our_answer_unread_cannot_upload_without_end(server: str, how: str) -> None:
    """An answer the client does not read waits in the transport, and closing then waits for it: the
    thread reading the body must stop by itself (at MAX_DISCARD after an early answer; at once when
    the daemon stops)."""
    s = _connect(server)
    s.settimeout(5)
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
    time.sleep(0.2)
    where = "/refuse" if how == "an early answer" else "/digest"
    s.sendall(f"POST {where} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n".encode())
    if how == "the daemon stopping":
        until(lambda: "thread" in seen, "the body is being read")
        shutdowns[0]()
    sent = _send_until_refused(s, 1 << 30)
    assert sent < 200 << 20, f"{sent >> 20} MiB went into a connection that was closing"
    s.close()


def test_a_malformed_body_iterated_on_the_loop_is_a_400(server: str) -> None:
    s = _connect(server)
    s.sendall(b"POST /iterate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n")
    (status, body), = _responses(s, 1)
    assert status == 400 and b"malformed chunked request body" in body, body
    s.close()


def test_a_body_the_client_ends_early_ends_at_once_on_the_loop_too(server: str) -> None:
    s = _connect(server)
    s.sendall(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
    t0 = time.monotonic()
    s.shutdown(socket.SHUT_WR)  # no more will come
    (status, body), = _responses(s, 1)
    assert (status, json.loads(body)) == (200, {"size": 1000}) and time.monotonic() - t0 < 10
    s.close()
