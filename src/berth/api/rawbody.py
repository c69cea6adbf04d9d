"""A request body read by a worker thread straight from the connection's socket (``body_in_thread``
routes: ``POST /build``).

A build context is consumed by a worker thread that does little more than hash it. Read on the
event loop, every 32 KiB chunk of it cost a parser callback, a copy and a hand-over between
threads, and the loop and the worker contended for the interpreter: for a 200 MB context that was
more CPU than the hashing, on two cores the docker CLI needs half of. Here the loop stops reading
the connection once such a request's headers are complete, and the thread that consumes the body
reads it itself, from its own duplicate of the socket, decoding the framing (``Content-Length`` or
chunked) as it goes. When the body ends, whatever the client sent after it goes back to the
connection, which parses it as the next request. (``docker load`` stays on the loop: its worker
hashes and writes, and the loop's reading alongside it was faster than one thread doing both;
measured in docs/performance.md.)

Only for plain sockets (unix and TCP): a TLS connection's bytes must go through its TLS object, on
the loop. The framing is checked as strictly as llhttp checks it: a chunk size is 1 to 16 hex digits
followed by its extensions or its CRLF, extensions and trailer lines have no control bytes (no bare CR
or LF that a proxy in front might read as a line's end), a chunk's data ends with CRLF, a size line
and the trailer have a bound. A malformed body is a 400
(``InvalidParameter``), and the connection closes after the answer; a client gone, or silent for
the body timeout, ends the read with ``ConnectionAbortedError``, and the connection closes at once.
"""

from __future__ import annotations

import re
import select
import socket
import threading
from collections.abc import Callable

from berth.errors import InvalidParameter

BUFFER = 1 << 20  # one read takes at most this much
FIRST_BUFFER = 64 << 10  # what a read starts with; ×4 while reads fill it (an idle upload holds little)
MAX_LINE = 4096  # a chunk-size line, extensions included
MAX_TRAILER = 64 << 10
_HEX = frozenset(b"0123456789abcdefABCDEF")
# as llhttp reads them: an extension is ";" name ["=" value] with no control bytes; a trailer line is a
# header field (a token, ":", a value of visible bytes, spaces and tabs)
_EXTENSIONS = re.compile(rb"(?:;[\t -~\x80-\xff]*)?")
_TRAILER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t \x21-\x7e\x80-\xff]*")


def framing(headers: dict[str, str]) -> int | None:
    """The body length a request's headers give (-1: chunked), or None when the body is none, or
    framed in a way best left to llhttp (both headers, other codings, a bad length)."""
    te = headers.get("transfer-encoding")
    cl = headers.get("content-length")
    if te is not None:
        return -1 if cl is None and te.strip().lower() == "chunked" else None
    if cl is not None and cl.isdigit() and len(cl) <= 18 and int(cl) > 0:
        return int(cl)
    return None


def header_end(prefix: bytes, data: bytes) -> int:
    """Where a request's header block ends in ``data`` (``prefix``: its earlier bytes, from the start
    of the request): after the first empty line. llhttp skips CR and LF before a request line and
    accepts CRLF line ends only, so the first CRLFCRLF after them is its end too. -1 when not there."""
    blob = prefix + data if prefix else data
    start = len(blob) - len(blob.lstrip(b"\r\n"))
    at = blob.find(b"\r\n\r\n", start)
    if at < 0 or at + 4 < len(prefix):
        return -1
    return at + 4 - len(prefix)


def _chunk_size(line: bytes) -> int | None:
    """A chunk-size line's size, or None unless it is 1 to 16 hex digits right before its extensions
    (no space between) or its end, and the extensions hold no control bytes."""
    size, semi, _ = line.partition(b";")
    if not 0 < len(size) <= 16 or not _HEX.issuperset(size):
        return None
    if semi and not _EXTENSIONS.fullmatch(line, len(size)):
        return None
    return int(size, 16)


class SocketBody:
    """A file object (``read``) over the rest of one request's body, for one thread at a time."""

    def __init__(self, sock: socket.socket, initial: bytes, length: int, timeout: float,
                 done: Callable[[bytes, BaseException | None], None]) -> None:
        """``sock``: a duplicate of the connection's socket, owned from now on; ``initial``: the body's
        bytes that came with the headers; ``length``: from ``framing`` (-1: chunked); ``timeout``: the
        most seconds between two reads that bring bytes; ``done(leftover, error)`` is called once, from
        the reading thread, when the body has ended (error None) or cannot be read any more."""
        self._sock = sock
        self._buf = bytearray(initial)  # grown at the first read from the socket (FIRST_BUFFER, up to BUFFER)
        self._view = memoryview(self._buf)
        self._filled = True  # the last read filled the buffer: the next may take more
        self._pos, self._end = 0, len(initial)
        self._chunked = length < 0
        self._left = 0 if self._chunked else length  # data bytes left in this chunk, or in the body
        self._state = "size" if self._chunked else "data"  # size, data, crlf, trailer, done, failed
        self._timeout = timeout
        self._done = done
        self._lock = threading.Lock()  # closing the socket against an abort from the loop
        self._closed = False

    @property
    def finished(self) -> bool:
        return self._state in ("done", "failed")

    # ---- the reading thread's side ------------------------------------------------------------
    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of the body (all that is left for n < 0); b"" at its end."""
        if n < 0:
            parts = []
            while chunk := self.read(BUFFER):
                parts.append(chunk)
            return b"".join(parts)
        if self._state == "failed":
            raise ConnectionAbortedError("the request body could not be read")
        while not self._left:
            if self._state == "done":
                return b""
            self._framing()
        if self._pos == self._end:
            self._fill()
        # The data in the buffer, up to n bytes: across chunk boundaries whose framing is in the buffer
        # already (an upload comes in 32 KiB chunks; one read gives the consumer several), copied once.
        spans = []
        got = 0
        while True:
            k = min(n - got, self._left, self._end - self._pos)
            spans.append(self._view[self._pos:self._pos + k])
            got += k
            self._pos += k
            self._left -= k
            if self._left or not self._chunked:
                break
            self._state = "crlf"
            if got == n or not self._next_buffered():
                break
        out = spans[0].tobytes() if len(spans) == 1 else b"".join(spans)
        for span in spans:
            span.release()
        if not self._left and not self._chunked:
            self._finish()
        return out

    def _next_buffered(self) -> bool:
        """Past a chunk's CRLF and the next size line, when both are in the buffer and the size is not
        0 (the last chunk and the trailer are left to ``_framing``, which may wait for them)."""
        pos = self._pos
        if self._end - pos < 2 or self._buf[pos] != 13 or self._buf[pos + 1] != 10:
            return False
        at = self._buf.find(b"\r\n", pos + 2, min(self._end, pos + 2 + MAX_LINE))
        if at < 0:
            return False
        size = _chunk_size(bytes(self._view[pos + 2:at]))
        if not size:
            return False
        self._pos, self._left, self._state = at + 2, size, "data"
        return True

    def _framing(self) -> None:
        """Consume what comes between two chunks' data: a CRLF, a size line, the trailer."""
        try:
            if self._state == "crlf":
                if self._line() != b"":
                    raise InvalidParameter("malformed chunked request body: no CRLF after a chunk's data")
                self._state = "size"
            elif self._state == "size":
                size = _chunk_size(self._line())
                if size is None:
                    raise InvalidParameter("malformed chunked request body: a bad chunk size")
                self._left = size
                if self._left:
                    self._state = "data"
                else:
                    self._state = "trailer"
                    self._trailer()
                    self._finish()
        except BaseException as exc:
            self._fail(exc)
            raise

    def _trailer(self) -> None:
        total = 0
        while line := self._line():
            total += len(line) + 2
            if total > MAX_TRAILER:
                raise InvalidParameter("malformed chunked request body: the trailer is too large")
            if not _TRAILER_LINE.fullmatch(line):
                raise InvalidParameter("malformed chunked request body: a bad trailer line")

    def _line(self) -> bytes:
        """The next CRLF-terminated line, without its CRLF."""
        while True:
            at = self._buf.find(b"\r\n", self._pos, self._end)
            if at >= 0:
                line = bytes(self._view[self._pos:at])
                self._pos = at + 2
                if len(line) > MAX_LINE:
                    break
                return line
            if self._end - self._pos > MAX_LINE:
                break
            self._fill()
        raise InvalidParameter("malformed chunked request body: a line is too long")

    def _fill(self) -> None:
        """Read more into the buffer (keeping what is not consumed yet); fail at the end of the stream."""
        if self._pos == self._end:
            self._pos = self._end = 0
        if len(self._buf) < BUFFER and (self._filled or len(self._buf) < FIRST_BUFFER):
            grown = bytearray(min(BUFFER, max(FIRST_BUFFER, len(self._buf) * 4)))
            grown[:self._end - self._pos] = self._view[self._pos:self._end]
            self._view.release()
            self._buf, self._view = grown, memoryview(grown)
            self._pos, self._end = 0, self._end - self._pos
        elif self._end == len(self._buf):  # a line across the end: its start (under MAX_LINE) moves
            rest = self._end - self._pos
            self._buf[:rest] = bytes(self._view[self._pos:self._end])  # a copy: the two may overlap
            self._pos, self._end = 0, rest
        while True:
            try:
                got = self._sock.recv_into(self._view[self._end:])
            except BlockingIOError:
                if not self._wait():
                    raise self._fail(ConnectionAbortedError(
                        f"the client sent no more of the request body in {self._timeout:g} s")) from None
                continue
            except OSError as exc:
                raise self._fail(ConnectionAbortedError(f"the client went away: {exc.strerror or exc}")) from None
            if not got:
                raise self._fail(ConnectionAbortedError("the client went away before the end of the request body"))
            self._end += got
            self._filled = self._end == len(self._buf)
            return

    def _wait(self) -> bool:
        """Until the socket has bytes (or an error or end); False after the timeout."""
        with self._lock:
            if self._closed:
                return True  # recv_into then fails: the read was aborted
            fd = self._sock.fileno()
        poll = select.poll()
        poll.register(fd, select.POLLIN | select.POLLRDHUP)
        return bool(poll.poll(self._timeout * 1000))

    def _finish(self) -> None:
        self._state = "done"
        leftover = bytes(self._view[self._pos:self._end])
        self._release()
        self._done(leftover, None)

    def _fail(self, error: BaseException) -> BaseException:
        """The body cannot be read (``error``, returned to be raised)."""
        if not self.finished:
            self._state = "failed"
            self._release()
            self._done(b"", error)
        return error

    def _release(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._sock.close()
        self._view.release()
        self._buf = bytearray()
        self._view = memoryview(self._buf)

    # ---- any thread ---------------------------------------------------------------------------
    def close(self) -> None:
        """Let go of the socket when no thread has started to read (the connection is gone): a read
        after this fails."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._sock.close()

    def abort(self) -> None:
        """Stop the body (the client went away, the daemon stops, the handler gave up): a read in
        progress fails at once, and the connection is shut down both ways."""
        with self._lock:
            if self._closed:
                return
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
