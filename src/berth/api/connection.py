"""One HTTP/1.1 connection: httptools feeds callbacks, handlers answer, in request order.

States (one connection, one request in flight at a time; pipelined requests wait in a queue):

    IDLE ──first byte──► HEADERS ──headers──► BODY ──message complete──► queued ──► RESPONDING ──► IDLE
                                                                                     │   │
                                                                                     │   └──► STREAMING ──► IDLE
                                                                                     └──────► HIJACKED ──► CLOSED
    any state ──parse error──► 400, CLOSED      ──peer gone──► CLOSED (the running handler is cancelled)

Rules:
- Routing happens when the headers are complete. A ``stream_body`` route is dispatched then and reads
  its body as it arrives (reading pauses above 1 MiB buffered); any other route gets its whole body.
- An ``Upgrade: tcp`` request stops the parser (llhttp reports the offset where raw bytes begin and
  does not read a body): its Content-Length bytes are taken from the raw stream here, the handler is
  dispatched, and whatever follows is the client's first stdin for the hijacked stream.
- A handler that raises a ``BerthError`` produces its kind's status with ``{"message": ...}``; any
  other exception is a bug: 500, logged with its traceback, and never shown to the client.
- After a hijack, a stream or an error that cannot be reported any more, the connection closes when
  the handler ends.

Limits (``Limits``; Go's net/http as dockerd configures it, or stricter):
- the request line and headers together: at most 1 MiB (431, as Go answers); a buffered body 64 MiB (413);
  once an error answer is sent nothing more is parsed or dispatched (a handler never runs on a cut body);
- time: from a request's first byte to the end of its headers (slow-loris), between two bytes of a
  body, and on an idle keep-alive connection; the ``Application``'s sweeper closes what is overdue;
- at most ``pipeline`` parsed requests wait; beyond, reading pauses until the queue drains; while the
  client does not read our answers (asyncio's write buffer above its high-water mark) no further
  request is run, so an unread answer stalls only its own connection;
- memory: the read buffer starts at 4 KiB and grows while reads fill it (64 KiB, 1 MiB while an
  upload streams), and shrinks back when the connection is idle.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import math
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import httptools

from berth.api import versions
from berth.api.backends import Auditor, Authorizer
from berth.api.errors import error_body, status_for
from berth.api.hijack import HijackedStream
from berth.api.http import Request, Response
from berth.api.router import Route, Router
from berth.errors import BerthError, InvalidParameter
from berth.security.identity import ANONYMOUS, Identity

log = logging.getLogger("berth.api")

MAX_BUFFERED_BODY = 64 << 20
# After an early answer (a 400 before the whole upload arrived), this much of the rest of the body is
# read and dropped so that the client, still sending, can read the answer instead of a broken pipe.
MAX_DISCARD = 64 << 20
_BODY_HIGH_WATER = 1 << 20

_STATUS_LINES = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}
_STATUS_LINES[101] = b"HTTP/1.1 101 UPGRADED\r\n"

_date_cache: list[Any] = [0, b""]
# Encoded static responses, keyed by (id(response), head_only, keep_alive); rebuilt when the Date
# header changes, i.e. at most once a second per key.
_static_cache: dict[tuple[int, bool, bool], tuple[bytes, bytes]] = {}


def _date_header() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    return _date_cache[1]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one client may make the daemon hold (see the module header)."""

    max_header_bytes: int = 1 << 20  # Go's DefaultMaxHeaderBytes
    max_body: int = MAX_BUFFERED_BODY
    header_timeout: float = 60.0  # first byte of a request to the end of its headers
    body_timeout: float = 300.0  # between two bytes of a request body
    idle_timeout: float = 300.0  # a keep-alive connection with no request
    pipeline: int = 16  # parsed requests waiting behind the running one


class Application:
    """What every connection shares: the router, the headers every response carries, the logger, the
    limits, and the sweeper that closes connections past their deadline."""

    def __init__(self, router: Router, *, server: str, debug: bool = False, limits: Limits | None = None) -> None:
        self.router = router
        self.debug = debug
        self.limits = limits or Limits()
        self.common_headers = (
            f"Api-Version: {versions.API_VERSION}\r\n"
            "Docker-Experimental: false\r\n"
            "Ostype: linux\r\n"
            f"Server: {server}\r\n"
        ).encode()
        self.connections: set[HttpConnection] = set()
        self.authorizer: Authorizer | None = None  # None: every caller who reaches a listener may do anything
        self.auditor: Auditor | None = None  # None: requests are not recorded
        self._peak = 0  # most connections since memory was last handed back
        self.expired = 0

    def sweep(self) -> None:
        """Close the connections past their deadline; after a storm of connections, hand freed memory
        back to the system (glibc keeps freed heap pages otherwise: measured in bench/http_limits.py)."""
        now = time.monotonic()
        for conn in [c for c in self.connections if c.deadline < now]:
            self.expired += 1
            conn.expire()
        count = len(self.connections)
        self._peak = max(self._peak, count)
        if self._peak - count >= 256:
            self._peak = count
            gc.collect()  # asyncio's transports hold cycles of their own: freed only by the collector
            _trim_memory()

    async def run_sweeper(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep()
            except Exception:  # the sweeper must outlive any one connection's trouble
                log.exception("bug: sweeping connections")


def _trim_memory() -> None:
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _Job:
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
        self.body_stream: _BodyStream | None = None
        self.complete = False


class _BodyStream:
    """A request body read as it arrives (image load, import, archive upload)."""

    def __init__(self, conn: HttpConnection) -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.discarded = -1  # >= 0 once the handler answered early and the rest is thrown away

    def discard(self) -> None:
        """The handler answered before reading everything: drop what is buffered and what comes."""
        self.discarded = 0
        self._chunks.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            self._conn._resume("body")

    def feed(self, data: bytes) -> None:
        if self.discarded >= 0:
            self.discarded += len(data)
            if self.discarded > MAX_DISCARD and self._conn.transport is not None:
                self._conn.transport.close()
            return
        self._chunks.append(data)
        self._size += len(data)
        if not self._paused and self._size > _BODY_HIGH_WATER:
            self._paused = True
            self._conn._pause("body")
        self._wake()

    def end(self) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            while not self._chunks and not self._eof:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            if not self._chunks:
                return
            chunk = self._chunks.popleft()
            self._size -= len(chunk)
            if self._paused and self._size < _BODY_HIGH_WATER // 2:
                self._paused = False
                self._conn._resume("body")
            yield chunk


class _ChunkedWriter:
    def __init__(self, conn: HttpConnection, head_only: bool) -> None:
        self._conn = conn
        self._head_only = head_only
        self.closed = False

    async def write(self, data: bytes) -> None:
        if not data or self._head_only:
            return
        conn = self._conn
        if conn.transport is None or conn.transport.is_closing():
            raise ConnectionResetError("client disconnected")
        conn.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        if conn._running is not None:
            conn._running.sent += len(data)
        await conn.drain()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        t = self._conn.transport
        if t is not None and not t.is_closing() and not self._head_only:
            t.write(b"0\r\n\r\n")


_READ_BUFFER = 4096  # what a connection starts with, and returns to when idle
_GROWN_BUFFER = 65536  # the most a buffer grows to while reads fill it
_UPLOAD_BUFFER = 1 << 20  # while a request body streams in (image load): fewer, larger reads
_QUEUED_BODY_BUDGET = 4 << 20  # bodies of pipelined requests held while an earlier one runs


class _ClosedParser:
    """Stands in for the parser once the connection is closed (nothing is fed after that)."""

    def feed_data(self, data: object) -> None:
        return None


_CLOSED_PARSER = _ClosedParser()


class _Abort(Exception):
    """Raised from a parser callback to stop parsing the rest of the bytes at once (an error answer
    has been sent; nothing after it may be dispatched)."""


class HttpConnection(asyncio.BufferedProtocol):
    """asyncio reads into this connection's own buffer (``get_buffer``/``buffer_updated``): a plain
    Protocol makes asyncio allocate a fresh 256 KiB bytes object per read, which costs an mmap, an
    mremap and a munmap syscall for every request (measured: see docs/performance.md)."""

    __slots__ = ("app", "_rbuf", "_rview", "_grow_to", "_shrink", "_identify", "transport", "identity",
                 "_parser", "_url", "_headers", "_current", "_queue", "_running", "_task", "_state", "_hijack",
                 "_raw", "_upgrade_job", "_upgrade_need", "_can_write", "_write_waiter", "_writer", "_peer_eof", "deadline",
                 "_in_headers", "_header_bytes", "_dead", "_pauses", "on_close", "_queued_bytes", "_audit_memo", "authz_memo",
                 "_deadline_unpaused", "_uploading")

    def __init__(self, app: Application, identify: Callable[[asyncio.BaseTransport], Identity]) -> None:
        self.app = app
        self._rbuf = bytearray(_READ_BUFFER)
        self._rview = memoryview(self._rbuf)
        self._grow_to = 0  # a new buffer size to take at the next get_buffer (0: keep)
        self._shrink = False
        self._identify = identify
        self.transport: asyncio.Transport | None = None
        self.identity: Identity = ANONYMOUS
        self._audit_memo: list[Any] | None = None  # the auditor's, for this connection
        self.authz_memo: list[Any] | None = None  # the authorizer's, for this connection
        self._parser: Any = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[str, str] = {}
        self._current: _Job | None = None  # the job being parsed
        self._queue: deque[_Job] = deque()  # parsed, waiting to run
        self._running: _Job | None = None
        self._task: asyncio.Task[None] | None = None
        self._state = "IDLE"
        self._hijack: HijackedStream | None = None
        self._raw: bytearray | None = None  # bytes after an upgrade request, before the hijack
        self._upgrade_job: _Job | None = None
        self._upgrade_need = 0
        self._can_write = True
        self._write_waiter: asyncio.Future[None] | None = None
        self._writer: _ChunkedWriter | None = None
        self._peer_eof = False
        self.deadline = time.monotonic() + app.limits.idle_timeout  # the sweeper closes us after it
        self._in_headers = False
        self._header_bytes = 0
        self._dead = False  # an error answer went out: nothing more is parsed or dispatched
        self._pauses: set[str] = set()  # why reading is paused: "body", "pipeline", "raw"
        self.on_close: Callable[[], None] | None = None
        self._queued_bytes = 0  # bodies of the parsed requests waiting in the queue
        self._uploading = False  # a stream_body request's body is arriving
        self._deadline_unpaused = math.inf  # the deadline to restore when the client reads again

    # ---- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.app.connections.add(self)
        try:
            self.identity = self._identify(transport)
        except Exception:  # identity must never stop a connection; it is logged and anonymous
            log.exception("could not determine the caller's identity")

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._grow_to:
            self._rbuf = bytearray(self._grow_to)
            self._rview = memoryview(self._rbuf)
            self._grow_to = 0
        return self._rview

    def buffer_updated(self, nbytes: int) -> None:
        # Everything downstream copies what it keeps (httptools hands out bytes; the raw and hijack
        # buffers append), so the read buffer can be replaced or reused at once.
        self.data_received(self._rview[:nbytes])
        size = len(self._rbuf)
        if self._shrink:
            self._shrink = False
            self._grow_to = _READ_BUFFER if size > _READ_BUFFER else 0  # a pending growth is dropped too
        else:
            cap = _UPLOAD_BUFFER if self._uploading else _GROWN_BUFFER
            if nbytes == size and size < cap and not self._queue:
                self._grow_to = min(size * 4, cap)  # reads fill the buffer: a body is coming

    def data_received(self, data: bytes | memoryview) -> None:
        if self._dead:
            return
        if self._raw is not None:
            self._raw_received(data)
            return
        if self._hijack is not None:
            self._hijack.feed_data(data)
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._raw = bytearray()
            self._raw_received(data[exc.args[0]:])
            return
        except httptools.HttpParserCallbackError:
            if self._dead:
                return
            raise
        except httptools.HttpParserError as exc:
            self._bad_request(f"malformed HTTP request: {exc}")
            return
        if self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self.app.limits.max_header_bytes:
                self._bad_request("request header fields too large", status=431)

    def eof_received(self) -> bool | None:
        if self._hijack is not None:
            self._hijack.feed_eof()
            return True  # keep our sending side open: the client only half-closed
        if self._raw is not None:
            return True
        if self._running is not None or self._queue:
            self._peer_eof = True
            return True  # let the responses in flight finish; the transport closes after them
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = "CLOSED"
        self.app.connections.discard(self)
        self._wake_writers()
        if self._hijack is not None:
            self._hijack.connection_lost()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._running is not None and self.app.auditor is not None:
            self._audit(self._running)  # a stream or hijack the client ended (or a request it gave up on)
        if self._current is not None and self._current.body_stream is not None:
            self._current.body_stream.end()
        self._queue.clear()
        self._queued_bytes = 0
        self.transport = None
        self.deadline = math.inf
        # Break the cycles (the parser's callbacks and the jobs' requests point back here), so that
        # reference counting frees a closed connection at once: left to the cycle collector, thousands
        # of them lingered after a storm of connections.
        self._parser = _CLOSED_PARSER
        self._current = self._running = self._upgrade_job = None
        self._writer = None
        if self.on_close is not None:
            on_close, self.on_close = self.on_close, None
            on_close()

    def pause_writing(self) -> None:
        # The client does not read what we send: it has the idle time to start again, then it goes
        # (what it holds here is bounded meanwhile: no further request runs, reading stops).
        if not self._can_write:
            return
        self._deadline_unpaused = self.deadline
        if self._state not in ("STREAMING", "HIJACKED"):  # a stream waits for its reader, bounded by drain()
            self.deadline = min(self.deadline, time.monotonic() + self.app.limits.idle_timeout)
        self._can_write = False
        if self._hijack is not None:
            self._hijack.pause_writing()

    def _set_deadline(self, when: float) -> None:
        """The deadline for the state the connection enters; while the client is not reading our
        answers, the idle deadline set then stays (the new one applies when reading resumes)."""
        if self._can_write or self._state in ("STREAMING", "HIJACKED"):
            self.deadline = when
        else:
            self._deadline_unpaused = when

    def resume_writing(self) -> None:
        if not self._can_write:
            self.deadline = self._deadline_unpaused
        self._wake_writers()
        if self._hijack is not None:
            self._hijack.resume_writing()
        if self._running is None and self._queue:
            self._run_next()  # answers waited for the client to read the earlier ones

    def _wake_writers(self) -> None:
        self._can_write = True
        w, self._write_waiter = self._write_waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    async def drain(self) -> None:
        """Wait while the client is not reading what we send (asyncio's write buffer is full)."""
        while not self._can_write and self.transport is not None:
            if self._write_waiter is None:
                self._write_waiter = asyncio.get_running_loop().create_future()
            await self._write_waiter
        if self.transport is None:
            raise ConnectionResetError("client disconnected")

    def _pause(self, why: str) -> None:
        if not self._pauses and self.transport is not None:
            self.transport.pause_reading()
        self._pauses.add(why)

    def _resume(self, why: str) -> None:
        if why in self._pauses:
            self._pauses.discard(why)
            if not self._pauses and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def expire(self) -> None:
        """The sweeper found this connection past its deadline (slow-loris, a stalled body, idle)."""
        if self.app.debug:
            log.debug("%s: closing a connection in state %s past its deadline", self.identity.principal,
                      self._state)
        self.deadline = math.inf
        if self.transport is not None:
            self.transport.close()

    # ---- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._current = _Job()
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
            raise _Abort
        self._in_headers = False
        if self._header_bytes + len(self._url) > self.app.limits.max_header_bytes:
            self._bad_request("request header fields too large", status=431)
            raise _Abort
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
            job.response = self._error_response(400, f"invalid URL: {self._url[:200]!r}")
            return
        raw = parsed.path
        raw_path = raw.decode("latin-1") if b"%" not in raw and raw.isascii() else _decode_path(raw)
        if raw_path is None:
            job.response = self._error_response(400, f"invalid URL escape in {self._url[:200]!r}")
            return
        query = parsed.query.decode("latin-1") if parsed.query else ""
        version, path = versions.split_version(raw_path)
        if version is not None:
            try:
                versions.check_version(version)
            except InvalidParameter as exc:
                job.response = self._error_response(400, exc.message)
                return
        found = self.app.router.match(method, path)
        if found is None:
            job.response = self._error_response(404, "page not found")
            return
        route, params = found
        api_version = version or versions.API_VERSION
        if route.min_version and not versions.at_least(api_version, route.min_version):
            job.response = self._error_response(404, "page not found")
            return
        job.route = route
        job.request = Request(method, path, query, self._headers, api_version, self.identity, params,
                              connection=self,
                              raw_target=self._url.decode("latin-1") if self.app.authorizer is not None else "")
        if route.stream_body and not job.upgrade:
            assert self.transport is not None
            job.body_stream = _BodyStream(self)
            self._uploading = True  # reads may grow up to 1 MiB, as fast as the upload fills them
            self._enqueue(job)

    def on_body(self, body: bytes) -> None:
        if self._dead:
            raise _Abort
        self._set_deadline(time.monotonic() + self.app.limits.body_timeout)
        job = self._current
        assert job is not None
        if job.body_stream is not None:
            job.body_stream.feed(body)
            return
        job.body_size += len(body)
        if job.body_size > self.app.limits.max_body:
            self._bad_request("request body too large", status=413)
            raise _Abort
        job.body_parts.append(body)

    def on_message_complete(self) -> None:
        if self._dead:
            raise _Abort
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
                raise _Abort
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
        if len(self._raw) > _BODY_HIGH_WATER:
            self._pause("raw")  # the hijack takes over reading (and resumes it) once the handler runs

    # ---- running handlers in order ----------------------------------------------------------
    def _enqueue(self, job: _Job) -> None:
        self._queue.append(job)
        if job.request is not None:
            self._queued_bytes += len(job.request.body)
        if len(self._queue) >= self.app.limits.pipeline or self._queued_bytes > _QUEUED_BODY_BUDGET:
            self._pause("pipeline")
        if self._running is None:
            self._run_next()

    def _run_next(self) -> None:
        # Only while the client reads our answers: one that does not stalls its own connection only.
        while self._queue and self._running is None and self.transport is not None and self._can_write:
            job = self._queue.popleft()
            if job.request is not None:
                self._queued_bytes -= len(job.request.body)
            if len(self._queue) < self.app.limits.pipeline // 2 and self._queued_bytes <= _QUEUED_BODY_BUDGET // 2:
                self._resume("pipeline")
            self._running = job
            if job.response is not None:
                self._send(job, job.response)
                continue
            route, req = job.route, job.request
            assert route is not None and req is not None
            pending = None
            if self.app.authorizer is not None or self.app.auditor is not None:
                try:
                    if self.app.auditor is not None:
                        self.app.auditor.admit()
                    if self.app.authorizer is not None:
                        pending = self.app.authorizer.authorize(req, route)
                except Exception as exc:  # noqa: BLE001 - a denial (Forbidden) or a bad request
                    self._send(job, self._exception_response(exc, req))
                    continue
            if not route.is_async and pending is None and req.review is None:
                try:
                    resp = route.handler(req)
                except Exception as exc:  # noqa: BLE001 - mapped to a status in one place
                    resp = self._exception_response(exc, req)
                assert resp is None or isinstance(resp, Response)
                self._send(job, resp if resp is not None else Response.empty())
                continue
            self._state = "RESPONDING"
            self._task = asyncio.get_running_loop().create_task(self._run_async(job, pending))
            return

    async def _run_async(self, job: _Job, pending: Awaitable[None] | None = None) -> None:
        route, req = job.route, job.request
        assert route is not None and req is not None
        try:
            try:
                if pending is not None:
                    await pending  # an authorization that has to wait (a plugin's answer)
                resp = await route.handler(req) if route.is_async else route.handler(req)  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - mapped to a status in one place
                resp = self._exception_response(exc, req)
            if req.review is not None and self.app.authorizer is not None:
                streamed = self._hijack is not None or self._writer is not None
                try:
                    reviewed = await self.app.authorizer.review(
                        req, resp if not streamed and isinstance(resp, Response) else None)
                except Exception as exc:  # noqa: BLE001 - a plugin's refusal of the response, or its failure
                    reviewed = self._exception_response(exc, req)
                if not streamed and reviewed is not None:
                    resp = reviewed
        except asyncio.CancelledError:
            return
        finally:
            self._task = None
        if self._hijack is not None:
            self._hijack.close()
            self._finish(job, keep_alive=False)
            return
        if self._writer is not None:
            writer, self._writer = self._writer, None
            if not writer.closed:
                if isinstance(resp, Response) and resp.status >= 400:
                    # The stream had started: the error cannot be a status any more.
                    self._finish(job, keep_alive=False)
                    return
                await writer.close()
            self._finish(job, keep_alive=job.keep_alive and job.complete)
            return
        if job.upgrade and resp is None:
            resp = Response.empty()
        self._send(job, resp if isinstance(resp, Response) else Response.empty())

    def _send(self, job: _Job, resp: Response) -> None:
        t = self.transport
        if t is None:
            return
        req = job.request
        head_only = req is not None and req.method == "HEAD"
        keep_alive = job.keep_alive and not job.upgrade and job.complete
        date = _date_header()
        if resp.static:
            key = (id(resp), head_only, keep_alive)
            hit = _static_cache.get(key)
            if hit is None or hit[0] is not date:
                hit = _static_cache[key] = (date, self._encode(resp, date, head_only, keep_alive))
            out = hit[1]
        else:
            out = self._encode(resp, date, head_only, keep_alive)
        t.write(out)
        job.status, job.sent = resp.status, len(out)
        if self.app.debug and req is not None:
            log.debug("%s %s %s%s -> %d", self.identity.principal, req.method, req.path,
                      "?" + req.raw_query if req.raw_query else "", resp.status)
        self._finish(job, keep_alive)

    def _encode(self, resp: Response, date: bytes, head_only: bool, keep_alive: bool) -> bytes:
        parts = [_STATUS_LINES.get(resp.status) or f"HTTP/1.1 {resp.status} Unknown\r\n".encode(),
                 self.app.common_headers, date]
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

    def _finish(self, job: _Job, keep_alive: bool) -> None:
        if self.app.auditor is not None:
            self._audit(job)
        self._running = None
        self._state = "IDLE"
        if self._peer_eof and not self._queue:
            keep_alive = False
        if job.body_stream is not None and not job.complete:
            job.body_stream.discard()  # closed when the rest of the upload has arrived
            self._state = "DRAINING"
            self._queue.clear()
            self._queued_bytes = 0
            self._set_deadline(time.monotonic() + self.app.limits.body_timeout)
            return
        if not keep_alive:
            self._state = "CLOSING"
            if self.transport is not None:
                self.transport.close()
            self._queue.clear()
            self._queued_bytes = 0
            return
        if self._current is None and not self._queue:
            self._set_deadline(time.monotonic() + self.app.limits.idle_timeout)
            self._shrink = True
        self._run_next()

    def _audit(self, job: _Job) -> None:
        auditor = self.app.auditor
        if auditor is None or not job.method:
            return
        method, job.method = job.method, ""  # once
        try:
            if self._audit_memo is None:
                self._audit_memo = [None, None]
            auditor.done(self.identity, method, job.target.decode("latin-1"), job.request, job.route, job.status,
                         job.sent, time.monotonic() - job.started, self._audit_memo)
        except Exception:  # noqa: BLE001 - a record that cannot be made is logged, the answer is sent
            log.exception("could not record a request in the audit log")

    # ---- streaming and hijack (ConnectionControl) --------------------------------------------
    async def start_stream(
        self, status: int = 200, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> _ChunkedWriter:
        """Send the head of a chunked response; the handler then writes chunks and returns None."""
        job = self._running
        assert job is not None and self.transport is not None
        head_only = job.request is not None and job.request.method == "HEAD"
        parts = [_STATUS_LINES[status], self.app.common_headers, _date_header(),
                 b"Content-Type: " + content_type.encode() + b"\r\n"]
        if headers:
            parts.extend(f"{k}: {v}\r\n".encode() for k, v in headers.items())
        parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
        self.transport.write(b"".join(parts))
        job.status = status
        self._state = "STREAMING"
        self._set_deadline(math.inf)
        self._writer = _ChunkedWriter(self, head_only)
        await self.drain()
        return self._writer

    async def hijack(self, content_type: str = "application/vnd.docker.raw-stream",
                     head: bytes | None = None) -> HijackedStream:
        """Answer 101 (or 200 for a client that did not ask to upgrade) and hand over the raw stream;
        ``head``: a response head made elsewhere (the WebSocket handshake's 101), to which the
        headers every response carries are added."""
        job = self._running
        assert job is not None and self.transport is not None
        if head is not None:
            assert head.endswith(b"\r\n\r\n")
            head = head[:-2] + self.app.common_headers + b"\r\n"
        elif job.upgrade:
            head = (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: " + content_type.encode()
                    + b"\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n" + self.app.common_headers + b"\r\n")
        else:
            head = (b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type.encode() + b"\r\n"
                    + self.app.common_headers + b"\r\n")
        self.transport.write(head)
        job.status = int(head[9:12]) if head[9:12].isdigit() else 101
        initial = bytes(self._raw) if self._raw is not None else b""
        self._raw = None
        stream = HijackedStream(self.transport, initial)
        self._hijack = stream
        self._state = "HIJACKED"
        self._set_deadline(math.inf)
        self._pauses.clear()  # the stream decides about reading from now on
        if not self.transport.is_reading():
            self.transport.resume_reading()
        return stream

    def body_stream(self) -> AsyncIterator[bytes]:
        job = self._running
        assert job is not None
        if job.body_stream is not None:
            return job.body_stream.__aiter__()
        body = job.request.body if job.request is not None else b""

        async def once() -> AsyncIterator[bytes]:
            if body:
                yield body

        return once()

    # ---- errors -------------------------------------------------------------------------------
    def _error_response(self, status: int, message: str) -> Response:
        return Response(status, error_body(message))

    def _exception_response(self, exc: BaseException, req: Request) -> Response:
        status = status_for(exc)
        if isinstance(exc, BerthError):
            if status >= 500:
                log.error("%s %s: %s", req.method, req.path, exc.message)
            return Response(status, error_body(exc.message))
        log.error("bug: unhandled error in %s %s", req.method, req.path, exc_info=exc)
        return Response(500, error_body(f"internal error in berthd: {type(exc).__name__}"))

    def _bad_request(self, message: str, status: int = 400) -> None:
        """Answer an error that ends the connection: nothing after it is parsed or dispatched."""
        if self._dead:
            return
        self._dead = True
        self._queue.clear()
        self._queued_bytes = 0
        t = self.transport
        if t is not None and self._running is None and self._state != "HIJACKED":
            body = error_body(message)
            t.write(_STATUS_LINES[status] + self.app.common_headers
                    + b"Content-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                    % len(body) + body)
        if t is not None:
            t.close()

    def shutdown(self) -> None:
        """Close this connection at once (daemon shutdown)."""
        if self.transport is not None:
            self.transport.close()


def _decode_path(raw: bytes) -> str | None:
    """The request path percent-decoded, as Go's net/http gives it to dockerd's router (docker-py quotes a
    network named ``test 01`` as ``test%2001``); ``+`` stays ``+``. None: an escape that is not UTF-8."""
    if b"%" not in raw and raw.isascii():
        return raw.decode("ascii")
    try:
        return urllib.parse.unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None
