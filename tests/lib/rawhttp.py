"""Raw HTTP/1.1 over a unix socket, for exact status lines, headers and bodies."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _read_response(f: Any, head_only: bool = False) -> RawResponse:
    status_line = f.readline().decode()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = f.readline().decode().rstrip("\r\n")
        if not line:
            break
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if head_only:
        return RawResponse(status, headers, body)
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int(f.readline().strip(), 16)
            if size == 0:
                f.readline()
                break
            body += f.read(size)
            f.readline()
    return RawResponse(status, headers, body)


def request(sock_path: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
            timeout: float = 10) -> RawResponse:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        hdrs = {"Host": "berth", "Content-Length": str(len(body)), **(headers or {})}
        if body[:1] in (b"{", b"[") and not any(k.lower() == "content-type" for k in hdrs):
            hdrs["Content-Type"] = "application/json"  # what every real client sends with a JSON body
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        s.sendall(head.encode() + body)
        with s.makefile("rb") as f:
            return _read_response(f, head_only=method == "HEAD")


def pipelined(sock_path: str, raw: bytes, count: int, timeout: float = 10) -> list[RawResponse]:
    """Send ``raw`` (several requests at once) and read ``count`` responses from one connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(raw)
        with s.makefile("rb") as f:
            return [_read_response(f) for _ in range(count)]


def websocket(sock_path: str, target: str, timeout: float = 10) -> socket.socket:
    """A WebSocket opened on ``target`` (checked: 101 with the right Sec-WebSocket-Accept)."""
    import base64
    import hashlib
    import os

    key = base64.b64encode(os.urandom(16)).decode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    s.sendall((f"GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    assert head.startswith(b"HTTP/1.1 101") and b"Sec-WebSocket-Accept: " + want in head, head
    return s


def ws_send(s: socket.socket, payload: bytes, opcode: int = 0x2) -> None:
    """One masked client frame (payload under 126 bytes)."""
    import os
    import struct

    mask = os.urandom(4)
    s.sendall(struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask
              + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
