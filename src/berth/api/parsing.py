"""The request side of an HTTP connection: httptools' callbacks, from a request's first byte to its
last (``IDLE ──► HEADERS ──► BODY ──► queued``), routing when the headers are complete, and the raw
bytes of an ``Upgrade: tcp`` request before its hijack. ``HttpConnection`` (``connection.py``) runs
what is queued and answers."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from typing import TYPE_CHECKING, Any

import httptools

from berth.api import rawbody, versions, wire
from berth.api.bodies import BODY_HIGH_WATER, BodyStream
from berth.api.http import Request, Response
from berth.api.router import Route
from berth.errors import InvalidParameter

if TYPE_CHECKING:
    from collections import deque

    from berth.api.application import Application
    from berth.security.identity import Identity


class Job:
    """A request waiting for its turn, or a canned response (routing or version errors)."""

    __slots__ = ("request", "route", "response", "keep_alive", "upgrade", "body_parts", "body_size",
                 "body_stream", "complete", "method", "target", "started", "status", "sent")

    def __init__(self) -> None:
        self.method = ""
        self.target = b""
        self.started = 0.0
        self.status = 0
        self.sent = 0
        self.request: Request | None = None
        self.route: Route | None = None
        self.response: Response | None = None
        self.keep_alive = True
        self.upgrade = False
        self.body_parts: list[bytes] = []
        self.body_size = 0
        self.body_stream: BodyStream | None = None
        self.complete = False


class Abort(Exception):
    """Raised from a parser callback to stop parsing the rest of the bytes at once (an error answer
    has been sent; nothing after it may be dispatched)."""


class RequestParsing:
    """httptools' callbacks, as a part of ``HttpConnection``."""

    # the state of the request being parsed (the connection's own is in its __slots__)
    __slots__ = ("_parser", "_url", "_headers", "_current", "_state", "_in_headers", "_header_bytes", "_uploading",
                 "_shrink", "_raw", "_upgrade_job", "_upgrade_need", "_head_seen", "_clean_start", "_completed_here",
                 "_detach")
    _parser: Any
    _url: bytes
    _headers: dict[str, str]
    _current: Job | None
    _state: str
    _in_headers: bool
    _header_bytes: int
    _uploading: bool
    _shrink: bool
    _raw: bytearray | None
    _upgrade_job: Job | None
    _upgrade_need: int
    _head_seen: list[bytes]  # the request's bytes from earlier reads, while its headers are incomplete
    _clean_start: bool  # the request began at the start of a read (only CR and LF before it)
    _completed_here: bool  # a request ended in the bytes being parsed now
    _detach: tuple[Job, int, socket.socket] | None  # a body to hand to a thread: framing, own socket

    if TYPE_CHECKING:  # the connection's, which these callbacks use
        app: Application
        transport: asyncio.Transport | None
        identity: Identity
        _running: Job | None
        _queue: deque[Job]
        _dead: bool

        def _set_deadline(self, when: float) -> None: ...

        def _bad_request(self, message: str, status: int = 400) -> None: ...

        def _enqueue(self, job: Job) -> None: ...

        def pause_reading(self, why: str) -> None: ...

        def resume_reading(self, why: str) -> None: ...

        def data_received(self, data: bytes | memoryview) -> None: ...

    def _init_parsing(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._head_seen = []
        self._clean_start = False
        self._completed_here = False
        self._detach = None

    def _parse(self, data: bytes | memoryview) -> None:
        """Feed ``data`` to the parser (its callbacks below do the rest)."""
        self._completed_here = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._raw = bytearray()
            self._raw_received(data[exc.args[0]:])
            return
        except httptools.HttpParserCallbackError:
            if self._detach is not None:
                self._to_thread(data)
                return
            if self._dead:
                return
            raise
        except httptools.HttpParserError as exc:
            self._bad_request(f"malformed HTTP request: {exc}")
            return
        if self._in_headers:
            if self._clean_start:
                self._head_seen.append(bytes(data))
            self._header_bytes += len(data)
            if self._header_bytes > self.app.limits.max_header_bytes:
                self._bad_request("request header fields too large", status=431)

    # ---- a streamed body read by a worker thread from the socket (rawbody) ----------------------
    def _own_socket(self) -> socket.socket | None:
        """A duplicate of the connection's socket for a thread to read a body from, when the request
        began at the start of a read and the connection is a plain socket; None otherwise (or when no
        descriptor is left: the loop reads the body then)."""
        t = self.transport
        if not self._clean_start or t is None or t.get_extra_info("ssl_object") is not None:
            return None
        sock = t.get_extra_info("socket")
        if sock is None:
            return None
        try:
            return socket.socket(fileno=os.dup(sock.fileno()))  # stays valid whatever the loop does with its own
        except OSError:
            return None

    def _to_thread(self, data: bytes | memoryview) -> None:
        """The parser stopped at the end of a streamed request's headers: the rest of ``data`` is its
        body's start. Reading stops here until the thread that reads the body gives back what the
        client sent after it; a fresh parser takes the requests that follow."""
        assert self._detach is not None and self.transport is not None
        (job, length, own), self._detach = self._detach, None
        seen, self._head_seen = b"".join(self._head_seen), []
        end = rawbody.header_end(seen, bytes(data))
        if end < 0:  # cannot be: llhttp found the end of these headers
            own.close()
            self._bad_request("malformed HTTP request: no end of headers")
            return
        self._parser = httptools.HttpRequestParser(self)
        loop = asyncio.get_running_loop()

        def done(leftover: bytes, error: BaseException | None) -> None:  # in the reading thread
            try:
                loop.call_soon_threadsafe(self._body_read, job, leftover, error)
            except RuntimeError:  # the loop is closed: the daemon has stopped
                pass

        raw = rawbody.SocketBody(own, bytes(data[end:]), length, self.app.limits.body_timeout, done)
        self.pause_reading("thread")
        assert job.body_stream is not None
        job.body_stream.go_raw(raw, on_take=lambda: self._set_deadline(math.inf))  # the reader has a timeout

    def _body_read(self, job: Job, leftover: bytes, error: BaseException | None) -> None:
        """The thread has read the whole body (``leftover``: what followed it), or could not (``error``)."""
        if self._current is job:
            self._current = None
        self._uploading = False
        self._shrink = True
        stream = job.body_stream
        assert stream is not None
        if self.transport is None:
            return
        if error is not None or stream.discarded >= 0:
            if self._running is job and isinstance(error, InvalidParameter):
                job.keep_alive = False  # malformed: the handler answers (400), then the connection closes
            else:
                self.transport.close()  # the client is gone or silent (the handler is cancelled), or the
            return  # early answer is out and the upload over
        job.complete = True
        self._set_deadline(math.inf)  # the request is read: now it waits for us
        self.resume_reading("thread")
        if leftover:
            self.data_received(leftover)

    # ---- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._clean_start = not self._completed_here
        self._head_seen = []
        self._url = b""
        self._headers = {}
        self._current = Job()
        self._in_headers = True
        self._header_bytes = 0
        self._state = "HEADERS" if self._running is None else self._state
        self._set_deadline(time.monotonic() + self.app.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower().decode("latin-1")] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self._dead:
            raise Abort
        self._in_headers = False
        if self._header_bytes + len(self._url) > self.app.limits.max_header_bytes:
            self._bad_request("request header fields too large", status=431)
            raise Abort
        self._set_deadline(time.monotonic() + self.app.limits.body_timeout)
        job = self._current
        assert job is not None
        job.keep_alive = self._parser.should_keep_alive()
        job.upgrade = self._parser.should_upgrade()
        method = self._parser.get_method().decode("latin-1")
        if self.app.auditor is not None:
            job.method, job.target, job.started = method, self._url, time.monotonic()
        try:
            parsed = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            job.response = wire.error_response(400, f"invalid URL: {self._url[:200]!r}")
            return
        raw = parsed.path
        raw_path = raw.decode("latin-1") if b"%" not in raw and raw.isascii() else wire.decode_path(raw)
        if raw_path is None:
            job.response = wire.error_response(400, f"invalid URL escape in {self._url[:200]!r}")
            return
        query = parsed.query.decode("latin-1") if parsed.query else ""
        version, path = versions.split_version(raw_path)
        if version is not None:
            try:
                versions.check_version(version)
            except InvalidParameter as exc:
                job.response = wire.error_response(400, exc.message)
                return
        found = self.app.router.match(method, path)
        if found is None:
            job.response = wire.error_response(404, "page not found")
            return
        route, params = found
        api_version = version or versions.API_VERSION
        if route.min_version and not versions.at_least(api_version, route.min_version):
            job.response = wire.error_response(404, "page not found")
            return
        job.route = route
        conn: Any = self  # the HttpConnection this is a part of
        job.request = Request(method, path, query, self._headers, api_version, self.identity, params,
                              connection=conn,
                              raw_target=self._url.decode("latin-1") if self.app.authorizer is not None else "")
        if self._headers.get("expect", "").lower() == "100-continue" and not job.upgrade and \
                self.transport is not None and not self._queue and conn._running is None:
            # curl waits a second for this before it sends a body (Go's server sends it too); only with
            # no earlier response outstanding, so that it cannot come before one
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if route.stream_body and not job.upgrade:
            assert self.transport is not None
            job.body_stream = BodyStream(conn)
            self._uploading = True  # reads may grow up to 1 MiB, as fast as the upload fills them
            self._enqueue(job)
            length = rawbody.framing(self._headers) if route.body_in_thread else None
            own = self._own_socket() if length is not None else None
            if length is not None and own is not None:
                self._detach = (job, length, own)
                raise Abort  # llhttp stops here; _parse hands the body over (_to_thread)

    def on_body(self, body: bytes) -> None:
        if self._dead:
            raise Abort
        self._set_deadline(time.monotonic() + self.app.limits.body_timeout)
        job = self._current
        assert job is not None
        if job.body_stream is not None:
            job.body_stream.feed(body)
            return
        job.body_size += len(body)
        if job.body_size > self.app.limits.max_body:
            self._bad_request("request body too large", status=413)
            raise Abort
        job.body_parts.append(body)

    def on_message_complete(self) -> None:
        self._completed_here = True
        self._head_seen = []
        if self._dead:
            raise Abort
        job = self._current
        assert job is not None
        self._current = None
        job.complete = True
        self._set_deadline(math.inf)  # the request is read: now it waits for us
        if job.body_stream is not None:
            job.body_stream.end()
            self._shrink = True
            self._uploading = False
            if job.body_stream.discarded >= 0 and self.transport is not None:
                self.transport.close()  # the early answer is sent; the upload is over
            return  # dispatched at headers-complete
        if job.request is not None:
            job.request.body = b"".join(job.body_parts)
            job.body_parts = []
        if job.upgrade:
            need = int(self._headers.get("content-length", "0") or 0)
            if need > self.app.limits.max_body:
                self._bad_request("request body too large", status=413)
                raise Abort
            if need > 0:  # llhttp does not read an upgrade request's body: we do, from the raw bytes
                self._upgrade_job, self._upgrade_need = job, need
                self._set_deadline(time.monotonic() + self.app.limits.body_timeout)
                return
        self._enqueue(job)

    # ---- upgrade: raw bytes before and after the hijack ------------------------------------
    def _raw_received(self, data: bytes | memoryview) -> None:
        assert self._raw is not None
        self._raw += data
        job = self._upgrade_job
        if job is not None and len(self._raw) >= self._upgrade_need:
            if job.request is not None:
                job.request.body = bytes(self._raw[: self._upgrade_need])
            del self._raw[: self._upgrade_need]
            self._upgrade_job = None
            self._enqueue(job)
        if len(self._raw) > BODY_HIGH_WATER:
            self.pause_reading("raw")  # the hijack takes over reading (and resumes it) once the handler runs
