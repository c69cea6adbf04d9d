"""The hijack over a real unix socket: 101, raw bytes both ways, the client's shutdown(SHUT_WR) seen
as EOF while the server can still write, then the server's own half-close."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile

from berth.api.application import Application
from berth.api.connection import HttpConnection
from berth.api.http import Request
from berth.api.router import Router, route
from berth.security.identity import ANONYMOUS


async def echo(req: Request) -> None:
    s = await req.connection.hijack()
    got = b""
    while chunk := await s.read():
        got += chunk
    await s.write(b"received " + str(len(got)).encode() + b" bytes: " + got[-10:])
    s.send_eof()


def test_hijack_half_close_over_unix_socket():
    async def main() -> bytes:
        app = Application(Router([route("POST", "/containers/{id}/attach", echo, action="test.route")]), server="t")
        tmpdir = tempfile.mkdtemp(prefix="berth-hijack-")
        path = os.path.join(tmpdir, "s.sock")
        server = await asyncio.get_running_loop().create_unix_server(
            lambda: HttpConnection(app, lambda t: ANONYMOUS), path)
        loop = asyncio.get_running_loop()
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        await loop.sock_connect(c, path)
        payload = os.urandom(300_000).hex().encode()  # more than one socket buffer
        await loop.sock_sendall(c, b"POST /v1.47/containers/x/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: x\r\n"
                                   b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n" + payload)
        c.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := await loop.sock_recv(c, 65536):
            out += chunk
        c.close()
        server.close()
        await server.wait_closed()
        os.unlink(path)
        os.rmdir(tmpdir)
        return out

    out = asyncio.run(main())
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED")
    assert body.startswith(b"received 600000 bytes: ")
