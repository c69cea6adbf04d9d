"""Responses on the wire: status lines, the Date header (made once a second), encoded responses
(static ones cached per second), error bodies, and the request path as Go's net/http decodes it."""

from __future__ import annotations

import logging
import time
import urllib.parse
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from berth.api.errors import error_body, status_for
from berth.api.http import Request, Response
from berth.errors import BerthError

log = logging.getLogger("berth.api")

STATUS_LINES = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}
STATUS_LINES[101] = b"HTTP/1.1 101 UPGRADED\r\n"

_date_cache: list[Any] = [0, b""]
# Encoded static responses, keyed by (id(response), head_only, keep_alive); rebuilt when the Date
# header changes, i.e. at most once a second per key.
_static_cache: dict[tuple[int, bool, bool], tuple[bytes, bytes]] = {}


def date_header() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    return _date_cache[1]


def encode(resp: Response, common_headers: bytes, head_only: bool, keep_alive: bool) -> bytes:
    """The whole response; a static one is encoded once a second."""
    date = date_header()
    if not resp.static:
        return _encode(resp, common_headers, date, head_only, keep_alive)
    key = (id(resp), head_only, keep_alive)
    hit = _static_cache.get(key)
    if hit is None or hit[0] is not date:
        hit = _static_cache[key] = (date, _encode(resp, common_headers, date, head_only, keep_alive))
    return hit[1]


def _encode(resp: Response, common_headers: bytes, date: bytes, head_only: bool, keep_alive: bool) -> bytes:
    parts = [STATUS_LINES.get(resp.status) or f"HTTP/1.1 {resp.status} Unknown\r\n".encode(), common_headers, date]
    if resp.content_type:
        parts.append(b"Content-Type: " + resp.content_type.encode() + b"\r\n")
    if resp.headers:
        parts.extend(f"{k}: {v}\r\n".encode() for k, v in resp.headers.items())
    if resp.status != 304 and resp.status != 204 and resp.status >= 200:
        parts.append(b"Content-Length: %d\r\n" % len(resp.body))
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if resp.body and not head_only and resp.status not in (204, 304):
        parts.append(resp.body)
    return b"".join(parts)


def error_response(status: int, message: str) -> Response:
    return Response(status, error_body(message))


def exception_response(exc: BaseException, req: Request) -> Response:
    """A handler's exception as its kind's status; anything else is a bug: 500, logged, never shown."""
    status = status_for(exc)
    if isinstance(exc, BerthError):
        if status >= 500:
            log.error("%s %s: %s", req.method, req.path, exc.message)
        return Response(status, error_body(exc.message))
    log.error("bug: unhandled error in %s %s", req.method, req.path, exc_info=exc)
    return Response(500, error_body(f"internal error in berthd: {type(exc).__name__}"))


def closing_error(status: int, message: str, common_headers: bytes) -> bytes:
    """An error answer after which the connection closes."""
    body = error_body(message)
    return (STATUS_LINES[status] + common_headers
            + b"Content-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body)


def decode_path(raw: bytes) -> str | None:
    """The request path percent-decoded, as Go's net/http gives it to dockerd's router (docker-py quotes a
    network named ``test 01`` as ``test%2001``); ``+`` stays ``+``. None: an escape that is not UTF-8."""
    if b"%" not in raw and raw.isascii():
        return raw.decode("ascii")
    try:
        return urllib.parse.unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None
