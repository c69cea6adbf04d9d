"""Containers through the Engine API itself (raw HTTP, WebSocket): dockerd's statuses and words for
errors, and what berthd sweeps at start. The tests that drive the docker CLI are in
``tests/cli/test_docker_containers.py``."""

from __future__ import annotations

import os
import signal

import docker
import pytest

from tests.lib import rawhttp
from tests.lib.clis import docker_at as run
from tests.lib.images import busybox_rootfs_tar
from tests.lib.wait import until


def test_errors_have_dockerd_status_and_words(bb):
    c = docker.APIClient(base_url=bb.url, version="1.47")
    c.create_container("bb", ["true"], name="dup")
    with pytest.raises(docker.errors.APIError) as e:
        c.create_container("bb", ["true"], name="dup")
    assert e.value.status_code == 409 and 'The container name "/dup" is already in use' in str(e.value)
    with pytest.raises(docker.errors.ImageNotFound):
        c.create_container("nosuch:image", ["true"])
    with pytest.raises(docker.errors.NotFound):
        c.start("nosuchcontainer")
    r = rawhttp.request(bb.sock, "POST", "/containers/dup/kill")
    assert r.status == 409 and "is not running" in r.json()["message"]
    r = rawhttp.request(bb.sock, "POST", "/containers/create", body=b'{"Image": "bb", "Cmd": ["true"], '
                        b'"HostConfig": {"DeviceRequests": [{"Count": -1}]}}',
                        headers={"Content-Type": "application/json"})
    assert r.status == 501 and "HostConfig.DeviceRequests (--gpus) is not supported" in r.json()["message"]
    r = rawhttp.request(bb.sock, "POST", "/containers/create", body=b'{"Image": "bb", "Cmd": ["true"], '
                        b'"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "eighty"}]}}}',
                        headers={"Content-Type": "application/json"})
    assert r.status == 400 and "invalid port specification" in r.json()["message"]
    r = rawhttp.request(bb.sock, "POST", "/containers/create", body=b"{not json",
                        headers={"Content-Type": "application/json"})
    assert r.status == 400
    r = rawhttp.request(bb.sock, "DELETE", "/images/bb")
    assert r.status == 409 and "being used by a container" in r.json()["message"]


def test_container_leftovers_are_swept_at_start(make_berthd):

    d = make_berthd().start()
    d.stop()
    orphan = "f" * 64  # a container directory whose row is gone (a crash in the middle of a removal)
    os.makedirs(os.path.join(d.root, "data", "containers", orphan, "upper"))
    os.makedirs(os.path.join(d.root, "exec", "containers", orphan, "rootfs"))
    d.start()
    assert f"removed containers/{orphan}" in d.log()
    assert not os.path.exists(os.path.join(d.root, "data", "containers", orphan))
    assert not os.path.exists(os.path.join(d.root, "exec", "containers", orphan))


def test_a_container_whose_row_went_is_swept_entirely(make_berthd):
    """A crash in a removal after the row is deleted and before the runtime's cleanup (`--rm` answers
    there): at the next start the runtime's state, the process, the mount and the files all go."""
    import sqlite3

    d = make_berthd().start()
    r = rawhttp.request(d.sock, "POST", "/images/create?fromSrc=-&repo=bb&tag=latest", body=busybox_rootfs_tar())
    assert r.status == 200
    cid = run(d, "run", "-d", "bb", "sleep", "300").stdout.strip()
    pid = docker.APIClient(base_url=d.url, version="1.47").inspect_container(cid)["State"]["Pid"]
    assert d.proc is not None
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    db = sqlite3.connect(os.path.join(d.root, "data", "berth.db"))
    db.execute("DELETE FROM containers WHERE id = ?", (cid,))
    db.commit()
    db.close()
    d.start()
    assert f"state of {cid[:12]}" in d.log()
    assert until(lambda: not os.path.exists(f"/proc/{pid}"), "the process gone")
    assert d.root + "/exec/containers/" + cid not in open("/proc/mounts").read()
    assert not os.path.exists(os.path.join(d.root, "data", "containers", cid))


def _ws_frames(sock) -> list[tuple[int, bytes]]:  # type: ignore[no-untyped-def]
    """Server frames until a close frame or the end of the connection."""
    import struct

    buf, out = b"", []
    while True:
        while len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7F if buf[1] & 0x7F < 126 else 0):
            chunk = sock.recv(65536)
            if not chunk:
                return out
            buf += chunk
        n, pos = buf[1] & 0x7F, 2
        if n == 126:
            n, pos = struct.unpack_from("!H", buf, 2)[0], 4
        while len(buf) < pos + n:
            buf += sock.recv(65536)
        out.append((buf[0] & 0x0F, buf[pos:pos + n]))
        buf = buf[pos + n:]
        if out[-1][0] == 0x8:
            return out


def test_attach_over_websocket(bb):
    c = docker.APIClient(base_url=bb.url, version="1.47")
    cid = c.create_container("bb", ["sh", "-c", "read line; echo got:$line; echo err >&2"], stdin_open=True)["Id"]
    c.start(cid)
    s = rawhttp.websocket(bb.sock, f"/v1.47/containers/{cid}/attach/ws?stream=1&stdin=1&stdout=1&stderr=1")
    rawhttp.ws_send(s, b"hello\n", opcode=0x1)
    frames = _ws_frames(s)
    s.close()
    data = b"".join(p for op, p in frames if op == 0x2)
    assert b"got:hello\n" in data and b"err\n" in data and b"\x01\x00\x00\x00" not in data  # raw, not multiplexed
    assert frames[-1][0] == 0x8
    r = rawhttp.request(bb.sock, "GET", f"/containers/{cid}/attach/ws?stream=1")
    assert r.status == 400 and "WebSocket handshake" in r.json()["message"]
