"""``rawbody``: a request body read by a worker thread from the socket itself, over real socket pairs.

The decoding is checked against llhttp (httptools) on random bodies, chunkings and splits of the
bytes into writes; malformed framing, a client gone, a silent client and an abort from another
thread each end the read as the module says."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth.api import rawbody
from berth.errors import InvalidParameter


def test_framing_takes_what_llhttp_would_read_plainly_and_leaves_the_rest() -> None:
    assert rawbody.framing({"transfer-encoding": "chunked"}) == -1
    assert rawbody.framing({"transfer-encoding": " Chunked "}) == -1
    assert rawbody.framing({"content-length": "123"}) == 123
    assert rawbody.framing({}) is None  # no body
    assert rawbody.framing({"content-length": "0"}) is None
    assert rawbody.framing({"content-length": "-1"}) is None
    assert rawbody.framing({"content-length": "1e3"}) is None
    assert rawbody.framing({"transfer-encoding": "gzip, chunked"}) is None
    assert rawbody.framing({"transfer-encoding": "chunked", "content-length": "5"}) is None


def test_header_end_is_found_across_reads_and_after_leading_empty_lines() -> None:
    head = b"POST /x HTTP/1.1\r\nHost: a\r\n\r\n"
    assert rawbody.header_end(b"", head + b"BODY") == len(head)
    assert rawbody.header_end(b"", b"\r\n\r\n" + head + b"BODY") == 4 + len(head)
    for cut in range(1, len(head)):  # the end split between an earlier read and this one
        assert rawbody.header_end(head[:cut], head[cut:] + b"BODY") == len(head) - cut
    assert rawbody.header_end(b"", b"POST /x HTTP/1.1\r\nHost: a\r\n") == -1


_loops_own: list[socket.socket] = []  # the event loop's end of each pair, open until the test ends


@pytest.fixture(autouse=True)
def _close_pairs() -> Iterator[None]:
    yield
    while _loops_own:
        _loops_own.pop().close()


def _pair(initial: bytes, length: int, timeout: float = 5.0) -> tuple[socket.socket, rawbody.SocketBody, list]:
    """A client's socket, and a reader of what it sends, given a duplicate as the connection gives it."""
    a, b = socket.socketpair()
    b.setblocking(False)  # as asyncio leaves it
    _loops_own.append(b)
    done: list[tuple[bytes, bool]] = []
    own = socket.socket(fileno=os.dup(b.fileno()))
    return a, rawbody.SocketBody(own, initial, length, timeout, lambda left, error: done.append((left, error))), done


def _send_in_pieces(sock: socket.socket, data: bytes, cuts: list[int]) -> threading.Thread:
    def run() -> None:
        at = 0
        for c in sorted(set(cuts)) + [len(data)]:
            if c > at:
                sock.sendall(data[at:c])
                at = c
                time.sleep(0)  # let the reader see the pieces one by one, often

    t = threading.Thread(target=run)
    t.start()
    return t


def _llhttp_body(wire: bytes) -> tuple[bytes, int]:
    """What llhttp reads as the body of the first request in ``wire``, and where that request ends."""
    got: list[bytes] = []
    state = {"end": -1}

    class P:
        def on_body(self, b: bytes) -> None:
            got.append(b)

        def on_message_complete(self) -> None:
            state["end"] = 0

    p = httptools.HttpRequestParser(P())
    for i in range(len(wire)):  # byte by byte: the request's end is known exactly
        p.feed_data(wire[i:i + 1])
        if state["end"] == 0:
            return b"".join(got), i + 1
    raise AssertionError("llhttp did not see the end of the request")


@st.composite
def _chunked(draw: st.DrawFn) -> tuple[bytes, bytes]:
    body = draw(st.binary(max_size=3000))
    out, at = [], 0
    while at < len(body):
        n = draw(st.integers(1, 700))
        piece = body[at:at + n]
        at += len(piece)
        size = f"{len(piece):x}" if draw(st.booleans()) else f"{len(piece):X}"
        ext = draw(st.sampled_from(["", ";a=b", ';name="v"']))
        out.append(size.encode() + ext.encode() + b"\r\n" + piece + b"\r\n")
    trailer = draw(st.sampled_from([b"", b"X-Sum: 1\r\n", b"A: b\r\nC: d\r\n"]))
    return body, b"".join(out) + b"0\r\n" + trailer + b"\r\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_chunked(), st.lists(st.integers(0, 4000), max_size=6), st.integers(0, 60),
       st.sampled_from([1, 7, 512, 1 << 20]))
def test_chunked_bodies_read_as_llhttp_reads_them_and_what_follows_is_given_back(
        case: tuple[bytes, bytes], cuts: list[int], initial: int, readsize: int) -> None:
    body, framed = case
    after = b"GET /next HTTP/1.1\r\n\r\n"
    head = b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    expected, end = _llhttp_body(head + framed + after)
    assert expected == body and end == len(head) + len(framed)
    first = framed[:initial]
    a, raw, done = _pair(first, -1)
    rest = framed[len(first):] + after
    sender = _send_in_pieces(a, rest, [c for c in cuts if c < len(rest)])
    got = []
    while chunk := raw.read(readsize):
        assert len(chunk) <= readsize
        got.append(chunk)
    sender.join()
    a.close()
    assert b"".join(got) == body
    assert len(done) == 1 and done[0][1] is None
    assert after.startswith(done[0][0])  # what came after the body (all of it, or what the reads had taken)


def test_a_content_length_body_and_its_leftover() -> None:
    a, raw, done = _pair(b"01234", 12)
    a.sendall(b"56789ab" + b"NEXT")
    assert raw.read(-1) == b"0123456789ab"
    assert raw.read(10) == b""
    assert done == [(b"NEXT", None)]
    a.close()


@pytest.mark.parametrize("framed, words", [
    (b"zz\r\nab\r\n0\r\n\r\n", "a bad chunk size"),
    (b"\r\n", "a bad chunk size"),
    (b" 2\r\nab\r\n0\r\n\r\n", "a bad chunk size"),
    (b"11111111111111111\r\n", "a bad chunk size"),  # 17 hex digits
    (b"2\r\nabX\r\n0\r\n\r\n", "no CRLF after a chunk's data"),
    (b"2;" + b"e" * 5000 + b"\r\nab\r\n", "a line is too long"),
    (b"0\r\n" + b"X: y\r\n" * 12000 + b"\r\n", "the trailer is too large"),
    (b"5 \r\nhello\r\n0\r\n\r\n", "a bad chunk size"),  # nothing between the size and its end
    (b"5 ;a=b\r\nhello\r\n0\r\n\r\n", "a bad chunk size"),
    (b"5;a\nb\r\nhello\r\n0\r\n\r\n", "a bad chunk size"),  # a bare LF a proxy may end a line at
    (b"0\r\nX: y\n\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", "a bad trailer line"),
    (b"0\r\nnot a field\r\n\r\n", "a bad trailer line"),
])
def test_malformed_framing_is_an_invalid_parameter_and_the_read_ends(framed: bytes, words: str) -> None:
    a, raw, done = _pair(b"", -1)
    sender = _send_in_pieces(a, framed, [])
    with pytest.raises(InvalidParameter, match=words) as caught:
        while raw.read(1 << 20):
            pass
    assert done == [(b"", caught.value)]
    with pytest.raises(ConnectionAbortedError):
        raw.read(10)
    sender.join()
    a.close()


def test_a_client_gone_a_silent_client_and_an_abort_end_the_read() -> None:
    a, raw, done = _pair(b"5\r\nab", -1)
    a.close()  # gone mid-chunk
    assert raw.read(100) == b"ab"
    with pytest.raises(ConnectionAbortedError, match="went away") as caught:
        raw.read(100)
    assert done == [(b"", caught.value)]

    a, raw, done = _pair(b"", 10, timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(ConnectionAbortedError, match="no more of the request body in 0.3 s") as caught:
        raw.read(100)
    assert done == [(b"", caught.value)] and time.monotonic() - t0 < 5
    a.close()

    a, raw, done = _pair(b"", 10)
    threading.Timer(0.2, raw.abort).start()  # from another thread, while the read waits
    with pytest.raises(ConnectionAbortedError) as caught:
        raw.read(100)
    assert done == [(b"", caught.value)]
    assert a.recv(10) == b""  # the abort shut the connection down: the client sees its end
    a.close()


def test_a_size_line_across_the_end_of_the_full_buffer_is_moved_to_its_start() -> None:
    """The reader's buffer filled to its end by one read, a chunk-size line cut there: the line's start
    moves to the front and the rest is read after it (the one place where bytes move in the buffer)."""
    a, raw, done = _pair(b"", -1)
    a.setsockopt(socket.SOL_SOCKET, 32, 8 << 20)  # SO_SNDBUFFORCE (root): all of it waits in the socket
    first = rawbody.BUFFER - 32
    line = b"10;" + b"e" * 30 + b"\r\n"  # starts 23 bytes before the buffer's end, ends 12 after it
    data = (bytes(range(256)) * (first // 256 + 1))[:first]
    framed = b"%x\r\n" % first + data + b"\r\n" + line + b"z" * 16 + b"\r\n0\r\n\r\n"
    assert len(b"%x\r\n" % first) + first + 2 + len(line) - rawbody.BUFFER == 12
    a.sendall(framed)
    got = b""
    while chunk := raw.read(1 << 20):
        got += chunk
    assert got == data + b"z" * 16
    assert done == [(b"", None)]
    a.close()


def test_an_idle_upload_holds_a_small_buffer_and_a_busy_one_grows_it() -> None:
    a, raw, done = _pair(b"", 10 << 20)
    a.sendall(b"x" * 100)
    assert raw.read(1 << 20) == b"x" * 100
    assert len(raw._buf) <= rawbody.FIRST_BUFFER  # 64 KiB for a client that sends little
    a.setsockopt(socket.SOL_SOCKET, 32, 8 << 20)  # SO_SNDBUFFORCE: reads can fill the buffer
    a.sendall(bytes(6 << 20))
    got = 100
    while got < 6 << 20:
        got += len(raw.read(1 << 20))
    assert len(raw._buf) == rawbody.BUFFER  # full reads made it grow to the most
    a.close()
