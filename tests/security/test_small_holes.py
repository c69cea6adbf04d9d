"""The smaller holes, each tried for real: labels that disguise events, "%" and "_" in ID prefixes,
names with a trailing newline, proxy credentials in /info, JSON without its Content-Type, a
WebSocket attach from another origin, and seccomp's allow-list."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.parse

import pytest

from tests.lib import rawhttp
from tests.lib.daemon import Berthd
from tests.security.lib import assert_alive, load_image, run


def test_image_labels_cannot_rewrite_event_attributes(berthd):
    d = berthd
    load_image(d, "liar", [], {"Labels": {"name": "innocent", "image": "innocent:latest", "team": "blue"}})
    since = str(int(time.time()) - 1)
    assert run(d, "create", "--name", "real-name", "liar", "true").returncode == 0
    r = rawhttp.request(d.sock, "GET", f"/events?since={since}&until={int(time.time()) + 1}"
                        "&filters=" + urllib.parse.quote(json.dumps({"type": ["container"]})))
    events = [json.loads(line) for line in r.body.decode().splitlines() if line.strip()]
    created = [e for e in events if e.get("Action") == "create"]
    assert created and created[0]["Actor"]["Attributes"]["name"] == "real-name"
    assert created[0]["Actor"]["Attributes"]["image"] == "liar"
    assert created[0]["Actor"]["Attributes"]["team"] == "blue"  # labels are still there


def test_id_prefixes_are_not_patterns(berthd):
    d = berthd
    load_image(d, "bb", [], {})
    assert run(d, "create", "--name", "only", "bb", "true").returncode == 0
    for ref in ("%", "_", "%25", "__"):
        r = rawhttp.request(d.sock, "GET", f"/containers/{ref}/json")
        assert r.status == 404, (ref, r.status)
        r = rawhttp.request(d.sock, "GET", f"/networks/{ref}")
        assert r.status == 404, (ref, r.status)


def test_names_with_a_trailing_newline_are_refused(berthd):
    d = berthd
    load_image(d, "bb", [], {})
    body = json.dumps({"Image": "bb", "Cmd": ["true"]}).encode()
    r = rawhttp.request(d.sock, "POST", "/containers/create?name=evil%0A", body=body)
    assert r.status == 400, r.body
    r = rawhttp.request(d.sock, "POST", "/volumes/create", body=json.dumps({"Name": "vol\n"}).encode())
    assert r.status == 400, r.body
    r = rawhttp.request(d.sock, "POST", "/images/bb/tag?repo=bb&tag=t%0A")
    assert r.status == 400, r.body


def test_info_masks_proxy_credentials(make_berthd):
    d = make_berthd(env={"HTTP_PROXY": "http://alice:s3cret@proxy.example:3128",
                         "HTTPS_PROXY": "http://bob:hunter2@proxy.example:3129"})
    d.start()
    info = rawhttp.request(d.sock, "GET", "/info").json()
    assert info["HttpProxy"] == "http://xxxxx:xxxxx@proxy.example:3128"
    assert "hunter2" not in json.dumps(info) and "s3cret" not in json.dumps(info)


def test_json_bodies_need_their_content_type(berthd):
    """A browser can POST text/plain to a TCP listener without a preflight: dockerd refuses it."""
    d = berthd
    load_image(d, "bb", [], {})
    body = json.dumps({"Image": "bb", "Cmd": ["true"]}).encode()
    r = rawhttp.request(d.sock, "POST", "/containers/create", body=body, headers={"Content-Type": "text/plain"})
    assert r.status == 400
    assert r.json()["message"] == "unsupported Content-Type header (text/plain): must be 'application/json'"
    assert run(d, "ps", "-aq").stdout == ""


def test_websocket_attach_from_another_origin_is_refused(berthd):
    d = berthd
    load_image(d, "bb", [], {})
    cid = run(d, "run", "-d", "bb", "sleep", "300").stdout.strip()
    key = base64.b64encode(os.urandom(16)).decode()

    def handshake(origin: str | None) -> bytes:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(d.sock)
            extra = f"Origin: {origin}\r\n" if origin else ""
            s.sendall(f"GET /containers/{cid}/attach/ws?stream=1&stdout=1 HTTP/1.1\r\nHost: localhost\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\n{extra}\r\n".encode())
            return s.recv(4096)

    assert handshake("http://evil.example").startswith(b"HTTP/1.1 403")
    assert handshake(None).startswith(b"HTTP/1.1 101")
    assert handshake("http://localhost").startswith(b"HTTP/1.1 101")


def test_seccomp_is_an_allow_list(berthd):
    """What Docker's profile does not allow answers EPERM: user namespaces, keyrings, io_uring
    (busybox has no io_uring or keyctl applet: `unshare -U` and a raw syscall through `personality`
    are what a shell can reach), and a custom profile is taken from --security-opt."""
    d = berthd
    load_image(d, "bb", [], {})
    r = run(d, "run", "--rm", "bb", "busybox", "unshare", "-U", "true")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r.stderr
    r = run(d, "run", "--rm", "bb", "sh", "-c", "grep Seccomp: /proc/self/status")
    assert r.stdout.split() == ["Seccomp:", "2"]
    profile = os.path.join(d.root, "deny-mkdir.json")
    with open(profile, "w") as f:
        json.dump({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}, f)
    r = run(d, "run", "--rm", "--security-opt", f"seccomp={profile}", "bb", "mkdir", "/x")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r.stderr
    r = run(d, "run", "--rm", "--security-opt", "seccomp=unconfined", "bb", "sh", "-c",
            "grep Seccomp: /proc/self/status")
    assert r.stdout.split() == ["Seccomp:", "0"]
    bad = os.path.join(d.root, "bad.json")
    with open(bad, "w") as f:
        f.write('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x; rm -rf /"], "action": "SCMP_ACT_ALLOW"}]}')
    r = run(d, "run", "--rm", "--security-opt", f"seccomp={bad}", "bb", "true")
    assert r.returncode != 0 and "seccomp profile" in r.stderr, r.stderr
    assert_alive(d)


SYSCALL_PROBE = r"""
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    return "ok" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
for name, nr, args in (("io_uring_setup", 425, (1, 0)), ("keyctl", 250, (0, 0, 0, 0, 0)),
                       ("personality-other", 135, (0x0400000,)), ("personality-query", 135, (0xffffffff,)),
                       ("unshare-user", 272, (0x10000000,)), ("kexec_load", 246, (0, 0, 0, 0)),
                       ("getpid", 39, ())):
    print(name, call(nr, *args))
"""


def test_seccomp_answers_eperm_for_what_dockers_profile_does_not_name(berthd):
    """Raw syscalls from inside a container (the host's python, bind-mounted read-only, x86_64
    numbers): io_uring, keyctl, personality with other arguments, unshare(CLONE_NEWUSER) and a
    syscall the profile does not name all answer EPERM; what it allows works."""
    import platform

    if platform.machine() != "x86_64" or not os.path.exists("/usr/bin/python3"):
        pytest.skip("syscall numbers are x86_64's; needs the host's python3")
    d = berthd
    load_image(d, "bb", [], {})
    mounts = [a for p in ("/usr", "/lib", "/lib64") if os.path.exists(p) for a in ("-v", f"{p}:{p}:ro")]
    r = run(d, "run", "--rm", *mounts, "bb", "/usr/bin/python3", "-c", SYSCALL_PROBE)
    got = dict(line.split() for line in r.stdout.splitlines())
    assert got == {"io_uring_setup": "EPERM", "keyctl": "EPERM", "personality-other": "EPERM",
                   "personality-query": "ok", "unshare-user": "EPERM", "kexec_load": "EPERM", "getpid": "ok"}, \
        (r.stdout, r.stderr)


def test_nothing_asked_for_is_silently_ignored(berthd):
    d = berthd
    load_image(d, "bb", [], {})
    for args, words in ((["--security-opt", "apparmor=docker-default"], "no AppArmor"),
                        (["--security-opt", "label=type:svirt_t"], "no SELinux"),
                        (["--storage-opt", "size=1G"], "StorageOpt"),
                        (["--gpus", "all"], "DeviceRequests"),
                        (["--ipc", "container:nosuch"], "nosuch"),
                        (["--uts", "host", "--hostname", "x"], "hostname and the UTS mode")):
        r = run(d, "run", "--rm", *args, "bb", "true")
        assert r.returncode != 0 and words in r.stderr, (args, r.stderr)
    r = run(d, "run", "--rm", "--pid", "host", "bb", "sh", "-c", "test -d /proc/1/ns && busybox ps | wc -l")
    assert r.returncode == 0 and int(r.stdout.strip()) > 5, r.stderr  # the host's processes
    r = run(d, "run", "--rm", "--ipc", "none", "bb", "sh", "-c", "test ! -d /dev/shm || ! grep -q ' /dev/shm ' "
            "/proc/mounts")
    assert r.returncode == 0, r.stderr
    r = run(d, "run", "--rm", "--group-add", "777", "--oom-score-adj", "123", "bb", "sh", "-c",
            "id -G; cat /proc/self/oom_score_adj")
    assert r.stdout.split() == ["0", "777", "123"], r.stdout
    r = run(d, "run", "--rm", "--security-opt", "systempaths=unconfined", "bb", "sh", "-c",
            "grep -c /proc/kcore /proc/mounts || true")
    assert r.stdout.strip() == "0", r.stdout
    assert_alive(d)


def test_tls_without_client_certificates_is_refused_off_loopback(tmp_path):
    d = Berthd(hosts=["tcp://0.0.0.0:23760"], args=["--tls", "--tlscert", str(tmp_path / "c.pem"),
                                                    "--tlskey", str(tmp_path / "k.pem")])
    try:
        rc, out = d.run_to_exit()
    finally:
        d.cleanup()
    assert rc == 1 and "without --tlsverify" in out, out
