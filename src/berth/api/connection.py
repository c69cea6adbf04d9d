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
  For a ``body_in_thread`` route on a plain socket the parser stops at the end of the headers and the
  loop stops reading: the worker thread that consumes the body reads it from the socket itself
  (``rawbody``), then gives back what followed it, which a fresh parser takes (``parsing.py``).
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
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

from berth.api import wire
from berth.api.application import Application
from berth.api.bodies import ChunkedWriter
from berth.api.hijack import HijackedStream
from berth.api.http import Response
from berth.api.parsing import Job, RequestParsing
from berth.security.identity import ANONYMOUS, Identity

log = logging.getLogger("berth.api")

_READ_BUFFER = 4096  # what a connection starts with, and returns to when idle
_GROWN_BUFFER = 65536  # the most a buffer grows to while reads fill it
_UPLOAD_BUFFER = 1 << 20  # while a request body streams in (image load): fewer, larger reads
_QUEUED_BODY_BUDGET = 4 << 20  # bodies of pipelined requests held while an earlier one runs


class _ClosedParser:
    """Stands in for the parser once the connection is closed (nothing is fed after that)."""

    def feed_data(self, data: object) -> None:
        return None


_CLOSED_PARSER = _ClosedParser()


class HttpConnection(RequestParsing, asyncio.BufferedProtocol):
    """asyncio reads into this connection's own buffer (``get_buffer``/``buffer_updated``): a plain
    Protocol makes asyncio allocate a fresh 256 KiB bytes object per read, which costs an mmap, an
    mremap and a munmap syscall for every request (measured: see docs/performance.md)."""

    __slots__ = ("app", "_rbuf", "_rview", "_grow_to", "_identify", "transport", "identity", "_queue", "_running",
                 "_task", "_hijack", "_can_write", "_write_waiter", "_writer", "_peer_eof", "deadline", "_dead",
                 "_pauses", "on_close", "_queued_bytes", "_audit_memo", "authz_memo", "_deadline_unpaused")

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
        self._init_parsing()
        self._url = b""
        self._headers: dict[str, str] = {}
        self._current: Job | None = None  # the job being parsed
        self._queue: deque[Job] = deque()  # parsed, waiting to run
        self._running: Job | None = None
        self._task: asyncio.Task[None] | None = None
        self._state = "IDLE"
        self._hijack: HijackedStream | None = None
        self._raw: bytearray | None = None  # bytes after an upgrade request, before the hijack
        self._upgrade_job: Job | None = None
        self._upgrade_need = 0
        self._can_write = True
        self._write_waiter: asyncio.Future[None] | None = None
        self._writer: ChunkedWriter | None = None
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
        self._parse(data)

    def eof_received(self) -> bool | None:
        if self._hijack is not None:
            self._hijack.feed_eof()
            return True  # keep our sending side open: the client only half-closed
        if self._raw is not None:
            return True
        if self._running is not None or self._queue:
            self._peer_eof = True
            self._end_body()  # cut short: its reader sees the end now, not at the timeout
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
        self._end_body()
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

    def count_sent(self, n: int) -> None:
        if self._running is not None:
            self._running.sent += n

    async def drain(self) -> None:
        """Wait while the client is not reading what we send (asyncio's write buffer is full)."""
        while not self._can_write and self.transport is not None:
            if self._write_waiter is None:
                self._write_waiter = asyncio.get_running_loop().create_future()
            await self._write_waiter
        if self.transport is None:
            raise ConnectionResetError("client disconnected")

    def pause_reading(self, why: str) -> None:
        if not self._pauses and self.transport is not None:
            self.transport.pause_reading()
        self._pauses.add(why)

    def resume_reading(self, why: str) -> None:
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
        self.shutdown()

    # ---- running handlers in order ----------------------------------------------------------
    def _enqueue(self, job: Job) -> None:
        self._queue.append(job)
        if job.request is not None:
            self._queued_bytes += len(job.request.body)
        if len(self._queue) >= self.app.limits.pipeline or self._queued_bytes > _QUEUED_BODY_BUDGET:
            self.pause_reading("pipeline")
        if self._running is None:
            self._run_next()

    def _run_next(self) -> None:
        # Only while the client reads our answers: one that does not stalls its own connection only.
        while self._queue and self._running is None and self.transport is not None and self._can_write:
            job = self._queue.popleft()
            if job.request is not None:
                self._queued_bytes -= len(job.request.body)
            if len(self._queue) < self.app.limits.pipeline // 2 and self._queued_bytes <= _QUEUED_BODY_BUDGET // 2:
                self.resume_reading("pipeline")
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
                    self._send(job, wire.exception_response(exc, req))
                    continue
            if not route.is_async and pending is None and req.review is None:
                try:
                    resp = route.handler(req)
                except Exception as exc:  # noqa: BLE001 - mapped to a status in one place
                    resp = wire.exception_response(exc, req)
                assert resp is None or isinstance(resp, Response)
                self._send(job, resp if resp is not None else Response.empty())
                continue
            self._state = "RESPONDING"
            self._task = asyncio.get_running_loop().create_task(self._run_async(job, pending))
            return

    async def _run_async(self, job: Job, pending: Awaitable[None] | None = None) -> None:
        route, req = job.route, job.request
        assert route is not None and req is not None
        try:
            try:
                if pending is not None:
                    await pending  # an authorization that has to wait (a plugin's answer)
                resp = await route.handler(req) if route.is_async else route.handler(req)  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - mapped to a status in one place
                resp = wire.exception_response(exc, req)
            if req.review is not None and self.app.authorizer is not None:
                streamed = self._hijack is not None or self._writer is not None
                try:
                    reviewed = await self.app.authorizer.review(
                        req, resp if not streamed and isinstance(resp, Response) else None)
                except Exception as exc:  # noqa: BLE001 - a plugin's refusal of the response, or its failure
                    reviewed = wire.exception_response(exc, req)
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

    def _send(self, job: Job, resp: Response) -> None:
        t = self.transport
        if t is None:
            return
        req = job.request
        keep_alive = job.keep_alive and not job.upgrade and job.complete
        out = wire.encode(resp, self.app.common_headers, req is not None and req.method == "HEAD", keep_alive)
        t.write(out)
        job.status, job.sent = resp.status, len(out)
        if self.app.debug and req is not None:
            log.debug("%s %s %s%s -> %d", self.identity.principal, req.method, req.path,
                      "?" + req.raw_query if req.raw_query else "", resp.status)
        self._finish(job, keep_alive)

    def _finish(self, job: Job, keep_alive: bool) -> None:
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

    def _audit(self, job: Job) -> None:
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
    ) -> ChunkedWriter:
        """Send the head of a chunked response; the handler then writes chunks and returns None."""
        job = self._running
        assert job is not None and self.transport is not None
        head_only = job.request is not None and job.request.method == "HEAD"
        parts = [wire.STATUS_LINES[status], self.app.common_headers, wire.date_header(),
                 b"Content-Type: " + content_type.encode() + b"\r\n"]
        if headers:
            parts.extend(f"{k}: {v}\r\n".encode() for k, v in headers.items())
        parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
        self.transport.write(b"".join(parts))
        job.status = status
        self._state = "STREAMING"
        self._set_deadline(math.inf)
        self._writer = ChunkedWriter(self, head_only)
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

    def body_stream(self) -> AsyncIterable[bytes]:
        job = self._running
        assert job is not None
        if job.body_stream is not None:
            return job.body_stream
        body = job.request.body if job.request is not None else b""

        async def once() -> AsyncIterator[bytes]:
            if body:
                yield body

        return once()

    # ---- errors -------------------------------------------------------------------------------
    def _bad_request(self, message: str, status: int = 400) -> None:
        """Answer an error that ends the connection: nothing after it is parsed or dispatched."""
        if self._dead:
            return
        self._dead = True
        self._queue.clear()
        self._queued_bytes = 0
        t = self.transport
        if t is not None and self._running is None and self._state != "HIJACKED":
            t.write(wire.closing_error(status, message, self.app.common_headers))
        if t is not None:
            t.close()

    def shutdown(self) -> None:
        """Close this connection at once (daemon shutdown, or past its deadline). A body being read ends
        here: close() waits for unsent output, and a thread reading the socket would go on meanwhile."""
        self._end_body()
        if self.transport is not None:
            self.transport.close()

    def _end_body(self) -> None:
        """The body of the request being read (a streamed one, still incomplete) ends here."""
        if self._current is not None and self._current.body_stream is not None:
            self._current.body_stream.end()
