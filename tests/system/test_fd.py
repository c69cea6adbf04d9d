"""fd://: sockets passed by systemd (LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES), READY=1 on NOTIFY_SOCKET,
and the unit files shipped in contrib/systemd."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess

import pytest

from tests.lib.clis import docker
from tests.lib.daemon import BERTHD, public_tmpdir, unix_ping
from tests.lib.wait import until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ACTIVATE = shutil.which("systemd-socket-activate")


@pytest.fixture
def workdir(cleanup):  # type: ignore[no-untyped-def]
    return cleanup.path(public_tmpdir("berth-fd-"))


def _start(cleanup, workdir: str, listen: list[str], names: str, host: str):  # type: ignore[no-untyped-def]
    if ACTIVATE is None:
        pytest.skip("systemd-socket-activate is not installed (Debian package systemd)")
    notify_path = os.path.join(workdir, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(15)
    cleanup.add("notify socket", notify.close)
    argv = [ACTIVATE]
    for addr in listen:
        argv += ["-l", addr]
    argv += [f"--fdname={names}", "-E", f"NOTIFY_SOCKET={notify_path}", BERTHD, "-H", host,
             "--data-root", f"{workdir}/data", "--exec-root", f"{workdir}/exec", "--pidfile", f"{workdir}/pid",
             "--config-file", f"{workdir}/none.json", "--bridge=none"]
    open(f"{workdir}/none.json", "w").write("{}")
    log = open(f"{workdir}/log", "wb")
    proc = cleanup.process(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return proc, notify


def _wait(path: str, workdir: str) -> None:
    """Until systemd-socket-activate listens on ``path``: it says so after listen(), while the socket
    file exists from bind() on (a connection in between is refused)."""
    until(lambda: f"Listening on {path} as" in open(f"{workdir}/log").read(),
          f"systemd-socket-activate to listen on {path}")


def test_fd_socket_activation_and_ready_notification(cleanup, workdir):
    sock = f"{workdir}/activated.sock"
    proc, notify = _start(cleanup, workdir, [sock], "berth.socket", "fd://")
    _wait(sock, workdir)
    # systemd-socket-activate starts berthd on the first connection, as systemd would
    r = docker("-H", f"unix://{sock}", "version", "--format", "{{.Server.APIVersion}}")
    assert r.returncode == 0, r.stderr + open(f"{workdir}/log").read()
    assert r.stdout.strip() == "1.47"
    assert notify.recv(4096) == b"READY=1"
    log = open(f"{workdir}/log").read()
    assert "API listen on fd://3 (berth.socket)" in log
    # the socket belongs to systemd: stopping berthd must not remove it
    proc.terminate()
    proc.wait(10)
    assert os.path.exists(sock)


def test_fd_number_selects_one_of_several(cleanup, workdir):
    a, b = f"{workdir}/a.sock", f"{workdir}/b.sock"
    proc, notify = _start(cleanup, workdir, [a, b], "a:b", "fd://4")
    _wait(b, workdir)
    with socket.socket(socket.AF_UNIX) as s:  # wake the activator through the socket berthd will serve
        s.connect(b)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.1 200")
    assert unix_ping(b)
    assert "API listen on fd://4 (b)" in open(f"{workdir}/log").read()
    assert "fd://3" not in open(f"{workdir}/log").read()


def test_fd_without_systemd_refuses(tmp_path):
    r = subprocess.run([BERTHD, "-H", "fd://", "--data-root", str(tmp_path / "d"), "--exec-root",
                        str(tmp_path / "e"), "--pidfile", str(tmp_path / "p"), "--config-file", "/dev/null"],
                       capture_output=True, text=True, timeout=20, env={k: v for k, v in os.environ.items()
                                                                       if not k.startswith("LISTEN_")})
    assert r.returncode == 1 and "no sockets found via socket activation" in r.stderr


def test_contrib_unit_files():
    service = configparser.ConfigParser(strict=False)
    service.read(os.path.join(ROOT, "contrib/systemd/berth.service"))
    assert service["Service"]["Type"] == "notify"
    assert "-H fd://" in service["Service"]["ExecStart"]
    assert "berth.socket" in service["Unit"]["Requires"]
    sock = configparser.ConfigParser(strict=False)
    sock.read(os.path.join(ROOT, "contrib/systemd/berth.socket"))
    assert sock["Socket"]["ListenStream"] == "/var/run/docker.sock"
    assert sock["Socket"]["SocketMode"] == "0660" and sock["Socket"]["SocketGroup"] == "docker"
