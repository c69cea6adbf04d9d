"""A client that tries to stall or exhaust the daemon over its socket: slow-loris headers, a 64 MiB
header, a pipelining flood it never reads, more connections than the listener takes, a tar with a
negative size. Each checks that the daemon keeps answering and that its memory stays bounded
(RSS is compared, no time is measured; the waits are bounds on a hang)."""

from __future__ import annotations

import gzip
import io
import socket
import tarfile
import time

import pytest

from tests.lib import rawhttp
from tests.security.lib import assert_alive


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


def closed_by_peer(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@pytest.fixture
def quick(make_berthd):  # type: ignore[no-untyped-def]
    d = make_berthd(env={"BERTH_HTTP_HEADER_TIMEOUT": "1", "BERTH_HTTP_IDLE_TIMEOUT": "2",
                         "BERTH_HTTP_BODY_TIMEOUT": "1", "BERTH_MAX_CONNECTIONS": "40"})
    return d.start()


def test_slow_loris_and_idle_connections_are_closed(quick):
    d = quick
    loris = [connect(d.sock) for _ in range(20)]
    for s in loris:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    idle = connect(d.sock)
    idle.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(4096).startswith(b"HTTP/1.1 200")
    stalled = connect(d.sock)
    stalled.sendall(b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{")
    for _ in range(3):  # trickling keeps nobody alive: the deadline runs from the request's first byte
        for s in loris:
            s.sendall(b"a")
        assert_alive(d)
        time.sleep(0.3)  # not a wait: the pace of the trickle
    assert all(closed_by_peer(s, 10) for s in loris)
    assert closed_by_peer(stalled, 10)
    assert closed_by_peer(idle, 10)
    assert_alive(d)


def test_a_64_mib_header_gets_431_without_being_read(quick):
    d = quick
    before = rss_mib(d.proc.pid)
    s = connect(d.sock)
    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: ")
    chunk = b"a" * (1 << 20)
    sent = 0
    try:
        for _ in range(64):
            s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sent < 64 << 20, "the daemon read the whole 64 MiB header"
    s.settimeout(10)
    try:
        answer = s.recv(4096)
    except ConnectionResetError:
        answer = b""
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert rss_mib(d.proc.pid) - before < 32
    assert_alive(d)


def test_pipelining_flood_never_read_stays_bounded(quick):
    d = quick
    before = rss_mib(d.proc.pid)
    s = connect(d.sock)
    s.setblocking(False)
    request = b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n" * 1000
    pushed, deadline = 0, time.monotonic() + 5
    while time.monotonic() < deadline and pushed < 200 << 20:
        try:
            pushed += s.send(request)
        except BlockingIOError:
            time.sleep(0.01)  # the daemon stopped reading: back-pressure reached the client
    assert pushed < 200 << 20, "the daemon read everything without answering being read"
    assert rss_mib(d.proc.pid) - before < 48
    assert_alive(d)
    s.close()


def test_the_listener_takes_a_bounded_number_of_connections(quick):
    d = quick
    conns = [connect(d.sock) for _ in range(40)]
    for s in conns:  # each one accepted and served: the listener holds 40 now
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
    extra = [connect(d.sock) for _ in range(5)]
    assert all(closed_by_peer(s, 5) for s in extra)
    for s in conns:
        s.close()
    assert "the most this listener takes" in d.log()
    assert_alive(d)


def test_a_negative_pax_size_in_a_gzipped_load_is_refused(berthd):
    """A negative pax `size` once became read(-n): the whole stream into memory."""
    d = berthd
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("manifest.json")
        info.size = 2
        info.pax_headers = {"size": "-1000000000"}
        tf.addfile(info, io.BytesIO(b"[]"))
    raw = buf.getvalue()
    payload = gzip.compress(raw + bytes(32 << 20))  # plenty behind it that must never be slurped
    before = rss_mib(d.proc.pid)
    r = rawhttp.request(d.sock, "POST", "/images/load?quiet=1", body=payload,
                        headers={"Content-Type": "application/x-tar"}, timeout=60)
    assert r.status == 400 and "pax" in r.json()["message"], r.body
    assert rss_mib(d.proc.pid) - before < 24
    assert_alive(d)
