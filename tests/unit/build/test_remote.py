"""Downloads for remote contexts and ADD's URLs, from a server on loopback: a server that sends a
byte now and then is not waited for beyond the deadline, and a body over the limit is refused."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from berth.daemon.backends import buildremote
from berth.errors import InvalidParameter, Unavailable


class _Drip(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "1000000" if self.path == "/drip" else "4096")
        self.end_headers()
        if self.path == "/drip":
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass
        else:
            self.wfile.write(bytes(4096))

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_dripping_server_meets_the_deadline_and_a_large_body_the_limit(server: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="not done in 0.5 s"):
        buildremote.download(f"{server}/drip", str(tmp_path / "a"), deadline=0.5)
    assert time.monotonic() - t0 < 5
    with pytest.raises(InvalidParameter, match="larger than"):
        buildremote.download(f"{server}/big", str(tmp_path / "b"), limit=1000)
    got = buildremote.download(f"{server}/big", str(tmp_path / "c"))
    assert (tmp_path / "c").stat().st_size == 4096 and got.path == str(tmp_path / "c")
