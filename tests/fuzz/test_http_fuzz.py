"""Property-based fuzzing of the HTTP connection: arbitrary bytes, and requests made of random parts,
fed in memory and split at every point. Whatever arrives, the connection never raises, never
answers with a traceback or an "internal error", and every answer it writes is a well-formed HTTP
status line. Examples are bounded for CI (``FUZZ_EXAMPLES`` raises them: ``make fuzz``)."""

from __future__ import annotations

import asyncio
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth.api.application import Application, Limits
from berth.api.connection import HttpConnection
from berth.api.http import Request, Response
from berth.api.router import Router, route
from berth.security.identity import Identity
from tests.unit.api.test_connection_bytes import MemoryTransport

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


async def echo_json(req: Request) -> Response:
    return Response.json({"body": req.json_body()})


def stream_body_len(req: Request) -> Response:
    return Response.text(str(len(req.body)))


async def hijack(req: Request) -> None:
    s = await req.connection.hijack()  # type: ignore[union-attr]
    while data := await s.read():
        await s.write(data)


ROUTER = Router([route("GET", "/_ping", lambda r: Response.text("OK")), route("POST", "/json", echo_json, action="test.route"),
                 route("PUT", "/len", stream_body_len, action="test.route"), route("POST", "/containers/{id}/attach", hijack, action="test.route")])


def feed(chunks: list[bytes], limits: Limits | None = None) -> bytes:
    async def main() -> bytes:
        conn = HttpConnection(Application(ROUTER, server="t", limits=limits or Limits(max_header_bytes=8192,
                                                                                      max_body=65536)),
                              lambda t: Identity("unix", user="u", uid=1))
        t = MemoryTransport()
        conn.connection_made(t)
        for c in chunks:
            if t.closed:
                break
            conn.data_received(c)
            await asyncio.sleep(0)
        conn.eof_received()
        await asyncio.sleep(0.001)
        conn.connection_lost(None)
        return bytes(t.out)

    return asyncio.run(main())


def check(out: bytes) -> None:
    assert b"Traceback" not in out and b"internal error" not in out
    if out:
        assert out.startswith(b"HTTP/1.1 "), out[:80]
        assert out[9:12].isdigit()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return [c for c in out if c]


@SETTINGS
@given(st.binary(max_size=4096), st.lists(st.integers(min_value=0), max_size=8))
def test_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    check(feed(split(data, cuts)))


token = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1,
                max_size=20)
header = st.tuples(token, st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "BREW"]))
    path = draw(st.sampled_from(["/_ping", "/v1.47/_ping", "/json", "/len", "/v9.99/_ping", "/containers/x/attach",
                                 "/%2e%2e/x", "/nope"])) + draw(st.sampled_from(["", "?a=1", "?filters=%7B", "?x"]))
    headers = draw(st.lists(header, max_size=6))
    body = draw(st.binary(max_size=300))
    chunked = draw(st.booleans())
    parts = [f"{method} {path} HTTP/1.1\r\n".encode(), b"Host: x\r\n"]
    parts += [f"{k}: {v}\r\n".encode() for k, v in headers]
    if draw(st.booleans()):
        parts.append(b"Content-Type: application/json\r\n")
    if draw(st.booleans()):
        parts.append(b"Connection: Upgrade\r\nUpgrade: tcp\r\n")
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
        parts.append(b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n")
    else:
        parts.append(b"Content-Length: %d\r\n\r\n" % len(body))
        parts.append(body)
    return b"".join(parts)


@SETTINGS
@given(st.lists(requests(), min_size=1, max_size=4), st.lists(st.integers(min_value=0), max_size=10))
def test_random_requests_split_anywhere(reqs: list[bytes], cuts: list[int]) -> None:
    check(feed(split(b"".join(reqs), cuts)))


@SETTINGS
@given(st.integers(min_value=1, max_value=64), st.integers(min_value=0, max_value=200))
def test_every_split_point_of_a_pipelined_pair(step: int, offset: int) -> None:
    raw = (b"POST /json HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
           b"GET /_ping HTTP/1.1\r\n\r\n")
    chunks = [raw[:offset]] + [raw[i:i + step] for i in range(offset, len(raw), step)]
    out = feed([c for c in chunks if c])
    check(out)
    assert out.count(b"HTTP/1.1 200 OK") == 2
