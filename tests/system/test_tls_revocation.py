"""Issue #11, point 4: certificate revocation (--tlscrl) and reloading the TLS material on SIGHUP,
with the real docker CLI and a raw TLS client that stays connected across the reload."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
from collections.abc import Iterator

import pytest

from tests.lib.ca import make_crl, odd_cert, serial_of
from tests.lib.clis import base_env, berth, docker
from tests.lib.daemon import Berthd, free_port, public_tmpdir


def pki(*args: str) -> None:
    r = berth("pki", *args)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def pki_root() -> Iterator[str]:
    root = public_tmpdir("berth-crl-")
    pki("init", "--dir", f"{root}/ca")
    pki("server", "--dir", f"{root}/ca", "--cn", "localhost", "--san", "DNS:localhost", "--san", "IP:127.0.0.1",
        "--out", f"{root}/server")
    for who in ("alice", "carol"):
        pki("client", "--dir", f"{root}/ca", "--cn", who, "--out", f"{root}/{who}")
    yield root
    import shutil

    shutil.rmtree(root, ignore_errors=True)


def start(make_berthd, root: str, crl: str, server: str = "server") -> tuple[Berthd, int]:  # type: ignore[no-untyped-def]
    port = free_port()
    d = make_berthd()
    d.hosts = [f"unix://{d.sock}", f"tcp://127.0.0.1:{port}"]
    d.args = ["--tlsverify", "--tlscacert", f"{root}/ca/ca.pem", "--tlscert", f"{root}/{server}/cert.pem",
              "--tlskey", f"{root}/{server}/key.pem", *(["--tlscrl", crl] if crl else [])]
    d.start(wait_for=[port])
    return d, port


def as_docker(port: int, cert_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = base_env(DOCKER_HOST=f"tcp://127.0.0.1:{port}", DOCKER_CERT_PATH=cert_dir, DOCKER_TLS_VERIFY="1")
    return docker(*args, env=env)


def write(path: str, data: bytes) -> None:
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def test_a_revoked_client_is_refused_at_the_handshake_and_the_log_names_it(make_berthd, pki_root):
    carol = serial_of(f"{pki_root}/carol/cert.pem")
    r = berth("pki", "revoke", "--dir", f"{pki_root}/ca", f"{pki_root}/carol/cert.pem")
    assert r.returncode == 0 and f"revoked {carol:x}" in r.stdout, r.stderr
    crl = f"{pki_root}/ca/crl.pem"
    d, port = start(make_berthd, pki_root, crl)
    ok = as_docker(port, f"{pki_root}/alice", "version", "--format", "{{.Server.APIVersion}}")
    assert ok.returncode == 0 and ok.stdout.strip() == "1.47", ok.stderr
    refused = as_docker(port, f"{pki_root}/carol", "version")
    assert refused.returncode != 0 and "revoked certificate" in refused.stderr, refused.stderr
    assert "Server:" not in refused.stdout
    assert f"a revoked client certificate, serial {carol:x} (CN=carol" in d.log()
    # the same CRL as DER does the same
    der = f"{pki_root}/crl.der"
    write(der, make_crl(f"{pki_root}/ca", [carol], der=True))
    d2, port2 = start(make_berthd, pki_root, der)
    assert as_docker(port2, f"{pki_root}/alice", "version").returncode == 0
    assert "revoked certificate" in as_docker(port2, f"{pki_root}/carol", "version").stderr


def test_crl_files_that_cannot_serve_stop_the_daemon(make_berthd, pki_root):
    bad = f"{pki_root}/bad.crl"
    write(bad, b"not a CRL")
    port = free_port()
    d = make_berthd(hosts=[f"tcp://127.0.0.1:{port}"])
    d.args = ["--tlsverify", "--tlscacert", f"{pki_root}/ca/ca.pem", "--tlscert", f"{pki_root}/server/cert.pem",
              "--tlskey", f"{pki_root}/server/key.pem", "--tlscrl", bad]
    code, out = d.run_to_exit()
    assert code != 0 and f"could not parse the CRL file {bad}" in out
    d.args = ["--tls", "--tlscert", f"{pki_root}/server/cert.pem", "--tlskey", f"{pki_root}/server/key.pem",
              "--tlscrl", bad, "--tlsverify=false"]
    code, out = d.run_to_exit()
    assert code != 0 and "--tlscrl needs --tlsverify" in out


def _tls_client(port: int, cert_dir: str) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=f"{cert_dir}/ca.pem")
    ctx.load_cert_chain(f"{cert_dir}/cert.pem", f"{cert_dir}/key.pem")
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1")


def _ping(s: ssl.SSLSocket) -> bytes:
    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while not data.endswith(b"OK"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_sighup_reloads_the_crl_and_the_certificates_for_new_connections_only(make_berthd, pki_root):
    pki("revoke", "--dir", f"{pki_root}/ca", f"{pki_root}/carol/cert.pem")
    crl = f"{pki_root}/ca/crl.pem"
    d, port = start(make_berthd, pki_root, crl)
    held = _tls_client(port, f"{pki_root}/alice")  # a connection open across the reload
    assert _ping(held).startswith(b"HTTP/1.1 200")
    first_server = held.getpeercert()["serialNumber"]
    # revoke alice too, and give the server a new certificate at the same paths
    pki("revoke", "--dir", f"{pki_root}/ca", f"{serial_of(f'{pki_root}/alice/cert.pem'):x}")  # by serial
    pki("server", "--dir", f"{pki_root}/ca", "--cn", "localhost", "--san", "DNS:localhost", "--san", "IP:127.0.0.1",
        "--out", f"{pki_root}/server2")
    for name in ("cert.pem", "key.pem"):
        os.chmod(f"{pki_root}/server/{name}", 0o600)
        with open(f"{pki_root}/server2/{name}", "rb") as f:
            write(f"{pki_root}/server/{name}", f.read())
    d.reload()
    assert "reloaded the TLS certificate" in d.log()
    assert _ping(held).startswith(b"HTTP/1.1 200")  # the open connection goes on
    refused = as_docker(port, f"{pki_root}/alice", "version")
    assert refused.returncode != 0 and "revoked certificate" in refused.stderr
    pki("client", "--dir", f"{pki_root}/ca", "--cn", "bob", "--out", f"{pki_root}/bob")
    fresh = _tls_client(port, f"{pki_root}/bob")
    assert _ping(fresh).startswith(b"HTTP/1.1 200")
    assert fresh.getpeercert()["serialNumber"] != first_server  # new connections get the new certificate
    fresh.close()
    # a CRL that cannot be read keeps the material in use
    write(crl, b"garbage")
    d.reload()
    assert "TLS reload failed, keeping the certificates in use" in d.log()
    assert "revoked certificate" in as_docker(port, f"{pki_root}/alice", "version").stderr
    assert as_docker(port, f"{pki_root}/bob", "version").returncode == 0
    held.close()


def test_certificates_near_their_expiry_are_warned_about(make_berthd, pki_root):
    odd_cert(f"{pki_root}/ca", f"{pki_root}/short", "localhost", eku="server", days=10)
    d, port = start(make_berthd, pki_root, "", server="short")
    warning = f"WARNING: the server certificate {pki_root}/short/cert.pem (CN=localhost) expires on"
    assert warning in d.log()
    info = as_docker(port, f"{pki_root}/alice", "info", "--format", "{{json .Warnings}}")
    assert info.returncode == 0 and warning in info.stdout and "in 9 days" in info.stdout, info.stdout
    # after a reload onto a certificate good for long, the warning is gone
    for name in ("cert.pem", "key.pem"):
        with open(f"{pki_root}/server/{name}", "rb") as f:
            write(f"{pki_root}/short/{name}", f.read())
    d.reload()
    info = as_docker(port, f"{pki_root}/alice", "info", "--format", "{{json .Warnings}}")
    assert "expires on" not in info.stdout


def test_a_crl_past_its_next_update_refuses_everyone_and_is_warned_about(make_berthd, pki_root):
    """OpenSSL refuses every client of a CA whose CRL is past its next update ("CRL has expired"):
    berthd says so in its log and in /info's warnings, and `berth pki revoke` signing a new one plus
    SIGHUP lets the clients back in."""
    crl = f"{pki_root}/crl.pem"
    write(crl, make_crl(f"{pki_root}/ca", [], expired=True))
    d, port = start(make_berthd, pki_root, crl)
    assert "was due for renewal on" in d.log()
    refused = as_docker(port, f"{pki_root}/alice", "version")
    assert refused.returncode != 0
    pki("revoke", "--dir", f"{pki_root}/ca", "ffff")  # signs a fresh CRL (ca/crl.pem)
    with open(f"{pki_root}/ca/crl.pem", "rb") as f:
        write(crl, f.read())
    d.reload()
    info = as_docker(port, f"{pki_root}/alice", "info", "--format", "{{json .Warnings}}")
    assert info.returncode == 0 and "due for renewal" not in info.stdout, info.stderr
