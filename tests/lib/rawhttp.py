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
